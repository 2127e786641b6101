#!/usr/bin/env bash
# GGUF output against the I/O floor, on a generated family:
#
#   bench/gguf_bench.sh SHAPE        e.g. bench/gguf_bench.sh 0.5b
#
# Rows: export-gguf of the target and merge --format gguf (w = 1) for each
# type, each against its floor: `cat` of the inputs it reads plus `dd`
# writing as many bytes as it writes (fdatasync'd like rvec's output). The
# last row is what one GGUF merge replaces: merge to safetensors, convert to
# F16 GGUF, quantise to Q4_K_M, timed as three rvec passes (merge; export-gguf
# f16 of the merge; export-gguf q4_k_m of the merge standing in for
# llama-quantize reading the F16 file). Warm cache, 2 threads' machine.
set -euo pipefail
cd "$(dirname "$0")/.."
shape="$1"
rvec=build/rvec
data="${RVEC_BENCH_DIR:-bench-data}"
fam="$data/$shape"
out="$data/gguf-out"
mkdir -p "$data"
if [[ ! -d "$fam/target" ]]; then $rvec gen-family "$fam" --shape "$shape" -q; fi

bytes() { du -cb "$@" | tail -1 | cut -f1; }
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
warm() { cat "$fam"/*/*.safetensors >/dev/null; }
floor() {  # $1 = bytes written; the rest = files read
  local w="$1"; shift
  local r d
  head -c "$w" /dev/urandom > "$out.rand"  # incompressible bytes, in the page cache
  r=$(seconds cat "$@")
  d=$(seconds dd if="$out.rand" of="$out.floor" bs=16M conv=fdatasync)
  rm -f "$out.floor" "$out.rand"
  echo "$r + $d" | bc -l
}
row() {  # $1 = label, $2 = output file, $3.. = inputs read
  local label="$1" file="$2" secs="$3"; shift 3
  local written f
  written=$(bytes "$file")
  f=$(floor "$written" "$@")
  printf "| %s | %s | %.2f | %.2f | %.2f |\n" "$label" "$(numfmt --to=si "$written")" "$secs" "$f" "$(echo "$secs / $f" | bc -l)"
}

printf "| %s | written | rvec s | floor s | ratio |\n|---|---|---|---|---|\n" "$shape (warm)"
for type in f16 bf16 q8_0 q4_k_m; do
  rm -rf "$out"; mkdir -p "$out"; warm
  s=$(seconds $rvec export-gguf "$fam/target" -o "$out/t.gguf" --type $type -q)
  row "export-gguf $type" "$out/t.gguf" "$s" "$fam"/target/*.safetensors
  warm
  s=$(seconds $rvec merge --pre "$fam/pre" --post "$fam/post" --target "$fam/target" -w 1 --format gguf --type $type \
      -o "$out/m.gguf" -q)
  row "merge --format gguf $type" "$out/m.gguf" "$s" "$fam"/{pre,post,target}/*.safetensors
done
rm -rf "$out"; mkdir -p "$out"; warm
s1=$(seconds $rvec merge --pre "$fam/pre" --post "$fam/post" --target "$fam/target" -w 1 -o "$out/st" -q)
s2=$(seconds $rvec export-gguf "$out/st" -o "$out/f16.gguf" --type f16 -q)
s3=$(seconds $rvec export-gguf "$out/st" -o "$out/q.gguf" --type q4_k_m -q)
printf "| three passes: merge + f16 + q4_k_m | | %.2f (%.2f + %.2f + %.2f) | | |\n" "$(echo "$s1 + $s2 + $s3" | bc -l)" "$s1" "$s2" "$s3"
rm -rf "$out"
