#!/usr/bin/env bash
# Data-parallel scaling on one machine (part of make bench when Open MPI is installed): the same PPO step and
# the same pre-training step with 1 rank x 1 thread, 1 rank x 2 threads and 2 MPI ranks x 1 thread, same
# global batch, same seed. Prints seconds per step and the ratios; asserts nothing about speed.
#
#   efficiency(2 ranks) = t(1 rank x 1 thread) / (2 t(2 ranks x 1 thread))
#   ranks / threads     = t(1 rank x 2 threads) / t(2 ranks x 1 thread)   (> 1: ranks beat threads)
#
# Model: the demo's shape (V ~1024, C 128, 4 layers, 4 heads), random weights; PPO: 32 rollouts of 24 tokens,
# 2 epochs of 2 minibatches; pre-training: 16 windows of 64 tokens. Steps 2..N are timed (step 1 allocates).
set -euo pipefail
B=${1:-build-mpi}
L="$B/leash"
W=$(mktemp -d /tmp/leash-scaling-XXXXXX)
trap 'rm -rf "$W"' EXIT
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)

"$L" world --out "$W/world" --corpus 4000 --prompts 200 --judge 10 --heldout 10 >/dev/null
OMP_NUM_THREADS=2 "$L" pretrain --data "$W/world/corpus.txt" --vocab-size 1024 --n-layer 4 --n-embd 128 --n-head 4 \
  --seq-len 64 --batch 16 --steps 1 --out "$W/sft" -q

# mean of a metric over lines 2.. of a metrics.jsonl
mean_after_first() { grep -o "\"$2\": [0-9.e+-]*" "$1" | tail -n +2 | awk '{ s += $2; n++ } END { printf "%.4f", s / n }'; }

declare -A T
for cfg in 1x1 1x2 2x1; do
  ranks=${cfg%x*} threads=${cfg#*x}
  launch=()
  [ "$ranks" -gt 1 ] && launch=("${MPIRUN[@]}" -np "$ranks" -x OMP_NUM_THREADS)
  export OMP_NUM_THREADS=$threads
  "${launch[@]}" "$L" ppo --policy "$W/sft" --gold-reward --prompts "$W/world/prompts.jsonl" --steps 4 --batch 32 \
    --minibatch 16 --epochs 2 --max-new 24 --out "$W/ppo-$cfg" -q
  T[ppo-$cfg]=$(mean_after_first "$W/ppo-$cfg/metrics.jsonl" "time/step_s")
  "${launch[@]}" "$L" pretrain --data "$W/world/corpus.txt" --tokenizer "$W/sft" --n-layer 4 --n-embd 128 --n-head 4 \
    --seq-len 64 --batch 16 --steps 12 --val-every 0 --out "$W/pt-$cfg" -q
  tps=$(grep -o '"tokens_per_s": [0-9.]*' "$W/pt-$cfg/metrics.jsonl" | tail -n +2 | awk '{ s += $2; n++ } END { print s / n }')
  T[pt-$cfg]=$(awk -v t="$tps" 'BEGIN { printf "%.4f", 1024 / t }')
done
printf '%-28s %12s %12s %12s %12s %14s\n' "step (s)" "1 rank x 1" "1 rank x 2" "2 ranks x 1" "efficiency" "ranks/threads"
for w in ppo pt; do
  name=$([ $w = ppo ] && echo "PPO step (32 x 24 tokens)" || echo "pretrain step (16 x 64)")
  awk -v n="$name" -v a="${T[$w-1x1]}" -v b="${T[$w-1x2]}" -v c="${T[$w-2x1]}" \
    'BEGIN { printf "%-28s %12.4f %12.4f %12.4f %11.0f%% %13.2fx\n", n, a, b, c, 100 * a / (2 * c), b / c }'
done
