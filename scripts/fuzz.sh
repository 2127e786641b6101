#!/usr/bin/env bash
# Builds the libFuzzer targets for the safetensors and GGUF header parsers
# (clang, ASan + UBSan) and runs each for a bounded time on its seed corpus.
# Usage: scripts/fuzz.sh [seconds per target]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
cmake --preset fuzz
cmake --build --preset fuzz --target fuzz_header fuzz_gguf -j "$(nproc)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in header:corpus gguf:corpus_gguf; do
  name="${target%%:*}" corpus="${target#*:}"
  mkdir -p "$work/$name"
  cp "fuzz/$corpus"/* "$work/$name/"
  ./build-fuzz/fuzz/fuzz_"$name" "$work/$name" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1
  echo "fuzz: fuzz_$name: no crash in ${seconds}s"
done
