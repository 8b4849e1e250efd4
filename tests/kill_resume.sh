#!/usr/bin/env bash
# Kill-and-resume (run by tests/test_resume.c): a training run SIGKILLed at several points, each time resumed
# with --resume from its last checkpoint (or started again when it was killed before the first one), and
# once stopped with SIGTERM (which must exit 0 after writing a checkpoint), must end bit-identical to an
# uninterrupted run with the same seed and thread count: the final weights compared with cmp, the metrics
# line by line with the timings taken out.
#
#   tests/kill_resume.sh LEASH_BIN WORKDIR ppo|grpo|pretrain SEED [ENOSPC_SO]
# WORKDIR must hold model/ (a model with its tokenizer), prompts.jsonl and corpus.txt.
#
# With ENOSPC_SO (tests/shim/enospc.c) the fault is a full disk instead: the run is started with the disk
# "filling up" after a budget of bytes; it must fail with an error that says the disk is full, and the
# run resumed afterwards (with space again) must end bit-identical to the uninterrupted one: the last
# checkpoint was intact.
set -euo pipefail
L=$1 W=$2 WHAT=$3 SEED=$4 ENOSPC_SO=${5:-}
export OMP_NUM_THREADS=2
case $WHAT in
  ppo)  args=(ppo --policy "$W/model" --gold-reward --prompts "$W/prompts.jsonl" --steps 40 --batch 8 --minibatch 4
              --max-new 6 --lr 1e-3 --save-every 1 -q); final=policy/model.safetensors ;;
  grpo) args=(grpo --policy "$W/model" --gold-reward --prompts "$W/prompts.jsonl" --steps 40 --batch 2 --group 4
              --max-new 6 --lr 1e-3 --save-every 1 -q); final=policy/model.safetensors ;;
  pretrain) args=(pretrain --data "$W/corpus.txt" --tokenizer "$W/model" --n-layer 1 --n-embd 32 --n-head 2
              --seq-len 16 --batch 4 --steps 200 --val-every 10 --save-every 1 -q); final=model.safetensors ;;
esac
strip_times() { sed -e 's/"time\/[a-z_]*": [0-9.e+-]*//g' -e 's/"tokens_per_s": [0-9.e+-]*//' "$1"; }

"$L" "${args[@]}" --out "$W/$WHAT-a"                       # uninterrupted

out="$W/$WHAT-b"
has_checkpoint() { [ -d "$out/checkpoint" ] || [ -d "$out/checkpoint.old" ]; }
compare() {
  cmp "$W/$WHAT-a/$final" "$out/$final" || { echo "kill_resume: $WHAT: final weights differ" >&2; exit 1; }
  if ! diff <(strip_times "$W/$WHAT-a/metrics.jsonl") <(strip_times "$out/metrics.jsonl") >/dev/null; then
    echo "kill_resume: $WHAT: metrics differ:" >&2
    diff <(strip_times "$W/$WHAT-a/metrics.jsonl") <(strip_times "$out/metrics.jsonl") | head -5 >&2
    exit 1
  fi
}
if [ -n "$ENOSPC_SO" ]; then
  # the budget: what 10 checkpoints take (the run writes one every step), so that the disk fills in the
  # middle of the run
  ckpt=$(du -sb "$W/$WHAT-a/checkpoint" | cut -f1)
  budget=$(( ckpt * 10 + (SEED * 7919) % 4096 ))
  set +e
  LD_PRELOAD="$ENOSPC_SO" LEASH_TEST_ENOSPC_AFTER=$budget ASAN_OPTIONS=verify_asan_link_order=0 \
    "$L" "${args[@]}" --out "$out" 2>"$W/$WHAT-full.log"
  rc=$?
  set -e
  [ $rc -ne 0 ] || { echo "kill_resume: $WHAT: a full disk went unnoticed" >&2; exit 1; }
  grep -q "disk is full" "$W/$WHAT-full.log" || { echo "kill_resume: $WHAT: no clear message: $(cat "$W/$WHAT-full.log")" >&2; exit 1; }
  has_checkpoint || { echo "kill_resume: $WHAT: the disk filled before the first checkpoint; raise the budget" >&2; exit 1; }
  "$L" "${args[@]}" --out "$out" --resume
  compare
  echo "kill_resume: $WHAT: disk full after $budget bytes: '$(grep -o "[^:]*disk is full[^)]*" "$W/$WHAT-full.log" | head -1)'; resumed: identical"
  exit 0
fi
# waits until the run has logged `n` steps (it checkpoints every step), then a random 0 to 20 ms more: the
# signal lands at a random moment of a later step (sampling, scoring, the update, or writing a checkpoint).
# The marks leave many steps after each, so that a fast machine cannot finish the run before the signal.
at_step() {
  local n=$1 pid=$2
  while kill -0 "$pid" 2>/dev/null && [ "$( { wc -l < "$out/metrics.jsonl"; } 2>/dev/null || echo 0)" -lt "$n" ]; do sleep 0.005; done
  sleep "$(awk -v s="$SEED$n" 'BEGIN { srand(s); printf "%.3f", rand() * 0.02 }')"
}
case $WHAT in pretrain) marks="15 45 75 105"; term=135 ;; *) marks="3 9 15 21"; term=27 ;; esac
kills=0 stopped=0
for n in $marks; do
  resume=(); has_checkpoint && resume=(--resume)
  "$L" "${args[@]}" --out "$out" "${resume[@]}" &
  pid=$!
  at_step "$n" $pid
  if kill -KILL $pid 2>/dev/null; then kills=$((kills + 1)); fi
  wait $pid 2>/dev/null || true
done
# SIGTERM: the run finishes its step, writes a checkpoint and exits 0
resume=(); has_checkpoint && resume=(--resume)
"$L" "${args[@]}" --out "$out" "${resume[@]}" 2>"$W/$WHAT-term.log" &
pid=$!
at_step $term $pid
if kill -TERM $pid 2>/dev/null; then
  wait $pid || { echo "kill_resume: $WHAT: SIGTERM gave exit status $?" >&2; cat "$W/$WHAT-term.log" >&2; exit 1; }
  grep -q "stopped" "$W/$WHAT-term.log" && stopped=1
else
  wait $pid
fi
resume=(); has_checkpoint && resume=(--resume)
"$L" "${args[@]}" --out "$out" "${resume[@]}"             # to the end

compare
# the test must not pass vacuously: the kills and the SIGTERM must have landed inside runs
[ $kills -eq 4 ] && [ $stopped = 1 ] || { echo "kill_resume: $WHAT: only $kills SIGKILLs and $stopped SIGTERM stops landed" >&2; exit 1; }
echo "kill_resume: $WHAT: $kills SIGKILLs (after steps $marks) and a SIGTERM stop (after step $term), each resumed: final weights and every metrics line identical"
