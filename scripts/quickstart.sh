#!/usr/bin/env bash
# Sets up, builds, runs rvec's main job on a generated tiny model family (compatibility
# check, inspection, a four-weight merge sweep), and then the whole study on the bundled
# mini family (rvec demo: build every w, serve, evaluate, report with a plot). Takes a few
# minutes on a fresh 2-core machine after compiling. Output lands in demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
rm -rf demo-out
echo "== rvec gen-family demo-out/family"
build/rvec gen-family demo-out/family --max-shard-size 100kB
echo "== rvec check pre post target"
build/rvec check demo-out/family/pre demo-out/family/post demo-out/family/target -o demo-out
echo "== rvec inspect target"
build/rvec inspect demo-out/family/target
echo "== rvec merge: target + w (post - pre) for four weights in one pass"
build/rvec merge --pre demo-out/family/pre --post demo-out/family/post --target demo-out/family/target \
  -w 0.25,0.5,0.75,1 -o demo-out/sweep
echo "== rvec inspect demo-out/sweep/w0.5"
build/rvec inspect demo-out/sweep/w0.5
echo "== rvec demo: the paper's study on the bundled mini family (docs/demo.md)"
build/rvec demo
