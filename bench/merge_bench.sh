#!/usr/bin/env bash
# rvec merge versus the raw I/O floor, measured in the same run on the same files.
#
#   bench/merge_bench.sh SHAPE K [K ...]      e.g. bench/merge_bench.sh 1.5b 1 4
#   bench/merge_bench.sh methods SHAPE [T] [CACHE]
#                                             every merge method against task arithmetic (K = 1,
#                                             --threads T, default 1; CACHE warm (default) or cold)
#
# Two floors, measured in the same run on the same files: the overlapped one
# (the three inputs read with `cat` while K copies of the target's bytes are
# written with O_DIRECT, at the same time) and the sequential one (`cat`, then
# `dd ... conv=fdatasync`). Each row is run warm (inputs in the page cache)
# and cold (page cache dropped first; needs root); RVEC_BENCH_REPS
# repetitions (default 3) alternate the floors and rvec; the ratio is rvec
# over the overlapped floor. Peak RSS comes from /usr/bin/time -v,
# bytes read from rvec's own /proc/self/io. Families are generated once under
# $RVEC_BENCH_DIR (default: ./bench-data) after checking free space.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=weights
if [[ "$1" == methods ]]; then mode=methods; shift; fi
shape="$1"; shift
ks=("$@")
threads="${1:-1}"  # methods mode: its optional arguments
method_cache="${2:-warm}"
rvec=build/rvec
data="${RVEC_BENCH_DIR:-bench-data}"
fam="$data/$shape"
out="$data/out"
mkdir -p "$data"

model_bytes() { du -cb "$1"/*.safetensors | tail -1 | cut -f1; }
free_bytes() { df -B1 --output=avail "$data" | tail -1 | tr -d ' '; }

if [[ ! -d "$fam/target" ]]; then
  need=$($rvec gen-family "$data/probe-$shape" --shape "$shape" --sparse -q >/dev/null && du -cb --apparent-size "$data/probe-$shape"/*/*.safetensors | tail -1 | cut -f1)
  rm -rf "$data/probe-$shape"
  if (( need > $(free_bytes) )); then echo "not enough disk for the $shape family ($need bytes)"; exit 1; fi
  $rvec gen-family "$fam" --shape "$shape" -q
fi
in_bytes=$(( $(model_bytes "$fam/pre") + $(model_bytes "$fam/post") + $(model_bytes "$fam/target") ))
out_model=$(model_bytes "$fam/target")

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; }
can_drop=no; if drop_caches; then can_drop=yes; fi

seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }

# Real (incompressible) bytes for dd to write: the target model's own data,
# repeated K times (zeros would flatter a compressing or thin-provisioned disk).
write_outputs() {  # $1 = K, $2 = dd flags
  sh -c "for i in \$(seq $1); do cat '$fam'/target/*.safetensors; done | dd of='$out.floor' bs=64M iflag=fullblock $2"
}

# The sequential floor: every input read, then the outputs written with fdatasync.
floor_sequential() {  # $1 = K
  local r w
  r=$(seconds cat "$fam"/pre/*.safetensors "$fam"/post/*.safetensors "$fam"/target/*.safetensors)
  w=$(seconds write_outputs "$1" conv=fdatasync)
  rm -f "$out.floor"
  echo "$r + $w" | bc -l
}

# The overlapped floor: the inputs read while the outputs' bytes are written
# with O_DIRECT at the same time, fsync included; what a merge could reach if
# reading, computing and writing overlapped perfectly.
floor_overlapped() {  # $1 = K
  local s e reader
  s=$(date +%s.%N)
  cat "$fam"/pre/*.safetensors "$fam"/post/*.safetensors "$fam"/target/*.safetensors > /dev/null &
  reader=$!
  write_outputs "$1" "oflag=direct conv=fsync" > /dev/null 2>&1
  wait $reader
  e=$(date +%s.%N)
  rm -f "$out.floor"
  echo "$e - $s" | bc -l
}

prepare_cache() {  # $1 = warm|cold
  if [[ $1 == warm ]]; then cat "$fam"/*/*.safetensors >/dev/null; else drop_caches; fi
}

# Every method with its default parameters, one output (w = 1), warm or
# cold; RVEC_BENCH_REPS repetitions (default 3), each running the overlapped
# floor for K = 1 and then every method in turn, so each method's ratio to
# task arithmetic compares runs of the same minutes. Repetition r starts the
# turn at method r (rotating), so a disk or machine that slows down during a
# turn does not always hit the same methods. The median of the repetitions
# is shown beside each one, and beside it the median ratio of the merge
# thread's own time (--json's read_s + compute_s + write_wait_s: what the
# merge's thread did, without the final fsync's wait, which varies most) and
# of its work (read_s + compute_s: without waiting for the writer either, so
# warm, the ratio does not move with the disk's speed).
methods() {
  local runs="$data/methods.txt" reps="${RVEC_BENCH_REPS:-3}"
  if [[ $method_cache == cold && $can_drop == no ]]; then echo "cold needs root (the page cache cannot be dropped)"; exit 1; fi
  local methods=(task_arithmetic magnitude ties dare_linear dare_ties breadcrumbs)
  declare -A passes
  for method in "${methods[@]}"; do
    passes[$method]=$($rvec merge --pre "$fam/pre" --post "$fam/post" --target "$fam/target" -w 1 -o "$out" \
      --method "$method" --dry-run --json |
      python3 -c "import json,sys;print(max(t['statistics_passes'] for t in json.load(sys.stdin)['tensors']))")
  done
  : > "$runs"
  for rep in $(seq "$reps"); do
    prepare_cache "$method_cache"
    echo "floor $rep $(floor_overlapped 1) 0 0 0 0 0" >> "$runs"
    local first=$(( (rep - 1) % ${#methods[@]} ))
    for method in "${methods[@]:first}" "${methods[@]:0:first}"; do
      rm -rf "$out"
      prepare_cache "$method_cache"
      /usr/bin/time -v -o "$data/time.txt" $rvec merge --pre "$fam/pre" --post "$fam/post" --target "$fam/target" \
        -w 1 -o "$out" --method "$method" --threads "$threads" --json -q > "$data/result.json"
      python3 - "$method" "$rep" "${passes[$method]}" "$data/result.json" "$data/time.txt" >> "$runs" <<'PY'
import json, re, sys
method, rep, passes, result, timing = sys.argv[1:]
r = json.load(open(result))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(timing).read()).group(1))
s = r["stages"]
print(method, rep, r["seconds"], rss, r["process"]["rchar"], passes, s["read_s"] + s["compute_s"] + s["write_wait_s"],
      s["read_s"] + s["compute_s"])
PY
      rm -rf "$out"
    done
  done
  python3 - "$shape" "$threads" "$method_cache" "$runs" <<'PY'
import statistics, sys
shape, threads, cache, path = sys.argv[1:]
runs = {}
for line in open(path):
    name, rep, secs, rss, rchar, passes, thread, work = line.split()
    runs.setdefault(name, {})[int(rep)] = (float(secs), int(rss), int(rchar), passes, float(thread), float(work))
ta, floor = runs["task_arithmetic"], runs["floor"]
print(f"(cache {cache}, --threads {threads}, {len(floor)} repetitions; per repetition, then the median)")
print("| shape | method | threads | cache | statistics passes | rvec s | vs task_arithmetic | median | merge thread vs task_arithmetic (median) | its work vs task_arithmetic (median) | vs floor (median) | peak RSS MiB | rchar GB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
fmt = lambda xs, d: ", ".join(f"{x:.{d}f}" for x in xs)
for name, reps in runs.items():
    if name == "floor":
        continue
    order = sorted(reps)
    secs = [reps[r][0] for r in order]
    vs_ta = [reps[r][0] / ta[r][0] for r in order]
    thread_vs_ta = [reps[r][4] / ta[r][4] for r in order]
    work_vs_ta = [reps[r][5] / ta[r][5] for r in order]
    vs_floor = [reps[r][0] / floor[r][0] for r in order]
    rss = [reps[r][1] / 1024 for r in order]
    print(f"| {shape} | {name} | {threads} | {cache} | {reps[order[0]][3]} | {fmt(secs, 1)} | {fmt(vs_ta, 2)} | "
          f"{statistics.median(vs_ta):.2f} | {statistics.median(thread_vs_ta):.2f} | {statistics.median(work_vs_ta):.2f} | "
          f"{statistics.median(vs_floor):.2f} | "
          f"{min(rss):.0f}-{max(rss):.0f} | "
          f"{statistics.median(reps[r][2] for r in order) / 1e9:.2f} |")
print(f"overlapped floor s: {fmt([floor[r][0] for r in sorted(floor)], 1)}")
PY
}
if [[ $mode == methods ]]; then methods; exit 0; fi


reps="${RVEC_BENCH_REPS:-3}"
[[ $can_drop == yes ]] && echo "(cold runs drop the page cache before each run: running as root)" \
                       || echo "(not root: cold runs skipped, the page cache cannot be dropped)"
printf "| shape | K | cache | rep | rvec s | overlapped floor s | ratio | sequential floor s | peak RSS MiB | rchar GB | input GB |\n"
printf "|---|---|---|---|---|---|---|---|---|---|---|\n"
for k in "${ks[@]}"; do
  weights=$(python3 -c "print(','.join(str(0.25*(i+1)) for i in range($k)))")
  for cache in warm cold; do
    if [[ $cache == cold && $can_drop == no ]]; then continue; fi
    for rep in $(seq "$reps"); do
      rm -rf "$out"
      prepare_cache $cache
      over=$(floor_overlapped "$k")
      prepare_cache $cache
      seq_floor=$(floor_sequential "$k")
      rm -rf "$out"
      prepare_cache $cache
      /usr/bin/time -v -o "$data/time.txt" $rvec merge --pre "$fam/pre" --post "$fam/post" --target "$fam/target" \
        -w "$weights" -o "$out" --json -q > "$data/result.json"
      rss=$(grep "Maximum resident" "$data/time.txt" | awk '{print $NF}')
      python3 - "$shape" "$k" "$cache" "$rep" "$over" "$seq_floor" "$rss" "$in_bytes" "$data/result.json" <<'PY'
import json, sys
shape, k, cache, rep, over, seq_floor, rss, in_bytes, path = sys.argv[1:]
r = json.load(open(path))
secs, over, seq_floor, in_bytes = float(r["seconds"]), float(over), float(seq_floor), int(in_bytes)
print(f"| {shape} | {k} | {cache} | {rep} | {secs:.1f} | {over:.1f} | {secs/over:.2f} | {seq_floor:.1f} | "
      f"{int(rss)/1024:.0f} | {r['process']['rchar']/1e9:.2f} | {in_bytes/1e9:.2f} |")
PY
      rm -rf "$out"
    done
  done
done
