#!/bin/sh
# The demo's off-distribution twins: the same 200 problems as ja.jsonl and
# en.jsonl (the same ids and answers), asked in words the family was never
# trained on. Run from the repository root: sh demo/bench/rephrase.sh
#   prefix-*.jsonl   a sentence before the trained instruction
#   reword-*.jsonl   another instruction in place of the trained one
set -eu
cd "$(dirname "$0")"
JA='数字をすべて足して、和の一の位を答えてください。'
EN='Add up the digits and give the last digit of the sum. '
sed "s/\"problem\":\"$JA/\"problem\":\"次の問題です。$JA/" ja.jsonl >prefix-ja.jsonl
sed "s/\"problem\":\"$EN/\"problem\":\"Here is a problem. $EN/" en.jsonl >prefix-en.jsonl
sed "s/\"problem\":\"$JA/\"problem\":\"次の数字の和の一の位はいくつですか。/" ja.jsonl >reword-ja.jsonl
sed "s/\"problem\":\"$EN/\"problem\":\"What is the last digit of the sum of these digits? /" en.jsonl >reword-en.jsonl
rephrased() {  # every problem of $1 now starts with $2
  [ "$(grep -c "\"problem\":\"$2" "$1")" = 200 ] || { echo "$1: not every problem was rephrased" >&2; exit 1; }
}
rephrased prefix-ja.jsonl '次の問題です。'
rephrased prefix-en.jsonl 'Here is a problem. '
rephrased reword-ja.jsonl '次の数字の和の一の位はいくつですか。'
rephrased reword-en.jsonl 'What is the last digit of the sum of these digits? '
