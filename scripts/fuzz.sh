#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors header parser (clang, ASan +
# UBSan) and runs it for a bounded time. Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
cmake --preset fuzz
cmake --build --preset fuzz --target fuzz_header -j "$(nproc)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp fuzz/corpus/* "$work/"
./build-fuzz/fuzz/fuzz_header "$work" -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1
echo "fuzz: no crash in ${seconds}s"
