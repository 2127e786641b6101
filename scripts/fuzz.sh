#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a
# bounded time: the safetensors header parser, the GGUF header parser, then
# the HTTP request path of `rvec serve`.
# Usage: scripts/fuzz.sh [seconds per target, default 45]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-45}"
cmake --preset fuzz
cmake --build --preset fuzz --target fuzz_header fuzz_gguf fuzz_http -j "$(nproc)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# run TARGET CORPUS [libFuzzer options...]: fuzzes from a copy of the seed corpus.
run() {
  local target="$1" corpus="$2"
  shift 2
  mkdir -p "$work/$target"
  cp "$corpus"/* "$work/$target/"
  ./build-fuzz/fuzz/"$target" "$work/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$@"
  echo "fuzz: $target, no crash in ${seconds}s"
}
run fuzz_header fuzz/corpus -max_len=8192
run fuzz_gguf fuzz/corpus_gguf -max_len=8192
run fuzz_http fuzz/corpus-http -max_len=16384 -dict=fuzz/http.dict
