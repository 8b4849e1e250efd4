#!/usr/bin/env bash
# OpenMP wait policy (part of make bench): the same short GRPO run with libgomp's default wait (threads spin
# about 300000 turns before sleeping: leash's behaviour before it chose its own), with leash's default (no OMP_*
# variable set: src/cli/main.c keeps libgomp's default on a free machine and makes the threads wait passively
# when other programs occupy the cores), always passive, and with a shorter spin (GOMP_SPINCOUNT=10000),
# each on the machine as it is and beside a busy loop (one process spinning on a core, like a data loader or
# another user's job). Rounds are interleaved so that the machine's changing load falls on every configuration
# alike. Prints the median and the minimum wall time over the rounds (the minimum is the run that met the least
# other work: the nearest to an idle machine) and each as a ratio to libgomp's default; asserts nothing.
#
# Model: the demo's shape (V ~1024, C 128, 4 layers, 4 heads), random weights; GRPO: 4 prompts x 8 responses of
# up to 24 tokens, STEPS steps (4), 2 threads.   bench/threads.sh [BUILD_DIR] [ROUNDS] [STEPS]
set -euo pipefail
B=${1:-build}
ROUNDS=${2:-5}
STEPS=${3:-4}
L="$B/leash"
W=$(mktemp -d /tmp/leash-threads-XXXXXX)
BUSY=
trap '[ -n "$BUSY" ] && kill "$BUSY" 2>/dev/null; rm -rf "$W"' EXIT
export OMP_NUM_THREADS=2

OMP_WAIT_POLICY=PASSIVE "$L" world --out "$W/world" --corpus 4000 --prompts 200 --judge 10 --heldout 10 >/dev/null
OMP_WAIT_POLICY=PASSIVE "$L" pretrain --data "$W/world/corpus.txt" --vocab-size 1024 --n-layer 4 --n-embd 128 \
  --n-head 4 --seq-len 64 --batch 16 --steps 1 --out "$W/sft" -q

configs=("libgomp default" "leash default" "OMP_WAIT_POLICY=PASSIVE" "GOMP_SPINCOUNT=10000")
envs=("GOMP_SPINCOUNT=300000" "" "OMP_WAIT_POLICY=PASSIVE" "GOMP_SPINCOUNT=10000")
run() { # $1 config index -> wall seconds on stdout
  local t0=$EPOCHREALTIME
  env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT ${envs[$1]} "$L" grpo --policy "$W/sft" --gold-reward \
    --prompts "$W/world/prompts.jsonl" --steps "$STEPS" --batch 4 --group 8 --max-new 24 --out "$W/g" --overwrite -q
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'
}
declare -A T
for cond in as-is busy; do
  if [ $cond = busy ]; then (while :; do :; done) & BUSY=$!; fi
  for r in $(seq "$ROUNDS"); do
    for i in "${!configs[@]}"; do T[$cond,$i]+="$(run "$i") "; done
  done
  if [ $cond = busy ]; then kill "$BUSY"; wait "$BUSY" 2>/dev/null || true; BUSY=; fi
done
stat() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk -v w="$2" '{ v[NR] = $1 } END {
  m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print (w == "min" ? v[1] : m) }'; }
echo "GRPO run, $STEPS steps, 2 threads, wall seconds over $ROUNDS interleaved rounds (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-24s %-8s %9s %9s %11s %11s\n' "wait policy" machine median min "median/def" "min/def"
for cond in as-is busy; do
  d_med=$(stat "${T[$cond,0]}" med) d_min=$(stat "${T[$cond,0]}" min)
  for i in "${!configs[@]}"; do
    med=$(stat "${T[$cond,$i]}" med) mn=$(stat "${T[$cond,$i]}" min)
    awk -v n="${configs[$i]}" -v c="$cond" -v a="$med" -v b="$mn" -v da="$d_med" -v db="$d_min" \
      'BEGIN { printf "%-24s %-8s %9.3f %9.3f %10.2fx %10.2fx\n", n, c, a, b, a / da, b / db }'
  done
done
