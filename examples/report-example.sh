#!/usr/bin/env bash
# The report example of README.md and docs/evaluation.md: writes three results
# files with known success rates (30 problems x 4 samples at w = 0, 0.5 and 1;
# a seeded generator, not model output) and reports them with a plot, the
# JSON numbers and the HTML page.
#
#   examples/report-example.sh [OUT]      # default OUT: out/report-example; uses build/rvec (or $RVEC)
set -euo pipefail
out=${1:-out/report-example}
rvec=${RVEC:-build/rvec}
mkdir -p "$out"

state=2024
draw() {  # a number in [0, 1000) in $r
  state=$(((state * 1103515245 + 12345) % 2147483648))
  r=$((state / 65536 % 1000))
}

# label, w, per mille correct, per mille answered in English
write_results() {
  local label=$1 w=$2 correct=$3 english=$4 file="$out/w$2.jsonl"
  : >"$file"
  for i in $(seq 0 29); do
    local answer=$(((i * 37 + 11) % 1000))
    for s in 0 1 2 3; do
      draw
      local given=$answer
      ((r < correct + (i % 5 - 2) * 60)) || given=$((answer + 1))
      draw
      local text="計算すると、答えは \\\\boxed{$given} です。"
      ((r >= english)) || text="So the answer is \\\\boxed{$given}."
      draw
      printf '{"id": "p%02d", "sample": %d, "label": "%s", "w": %s, "run": "example-%s", "model": "example", ' \
        "$i" "$s" "$label" "$w" "$w" >>"$file"
      printf '"temperature": 0.6, "answer": "%d", "response": "%s", "finish_reason": "stop", "completion_tokens": %d}\n' \
        "$answer" "$text" $((300 + r / 2)) >>"$file"
    done
  done
}

write_results "w=0" 0 130 100
write_results "w=0.5" 0.5 190 250
write_results "w=1" 1 320 400
"$rvec" report "$out"/w0.jsonl "$out"/w0.5.jsonl "$out"/w1.jsonl --dev-fraction 0.5 --style-pattern 'です。' \
  --plot "$out/report.svg" --json-out "$out/report.json" --html "$out/report.html"
