#!/usr/bin/env bash
# make MPI=1 test-mpi: leash across 2 MPI ranks on one machine, against 1 rank with the same global batch.
#
#   1. the collectives (sums, split, the check that catches ranks whose weights differ)
#   2. pretraining, reward-model training, PPO and GRPO: 2 ranks x 1 thread against 1 rank x 1 thread, same
#      seed and global batch. Every step each trainer checks that both ranks hold bit-identical weights (a
#      64-bit hash of the weights compared across ranks; a difference stops the run), and here the final
#      weights are compared with `leash diff`: they may differ only by float summation order (a batch split
#      in two halves sums its gradient in another order), bounded by TOL of each tensor's scale, while
#      training itself moves them by ~1e-1 of that scale.
#   3. resume with another number of ranks: pretraining 2 ranks for 10 steps then 1 rank to 20 (and the other
#      way), PPO and GRPO 2 ranks for 2 steps then 1 rank to 4, against uninterrupted 1-rank runs
#   4. failures: a rank whose command fails stops the job at once; a rank that hangs (SIGSTOP) makes the
#      others time out (LEASH_DIST_TIMEOUT) and stop the job; a rank killed with SIGKILL ends the job. Each
#      must end with a non-zero status and a message, never hang.
set -euo pipefail
B=${1:-build-mpi}
L="$B/leash"
TOL=1e-3
W=$(mktemp -d /tmp/leash-mpi-XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
run1() { "$L" "$@"; }
run2() { "${MPIRUN[@]}" -np 2 "$L" "$@"; }
pass() { echo "test-mpi: ok: $*"; }
fail() { echo "test-mpi: FAILED: $*" >&2; exit 1; }
same() { # A B what: final weights within TOL
  local out
  out=$("$L" diff "$1" "$2" -q --tol $TOL) || fail "$3: 2 ranks differ from 1 rank beyond $TOL: $out"
  pass "$3: $out"
}

"${MPIRUN[@]}" -np 2 "$B/tests/mpi-collectives" || fail "collectives"

# a small world and an SFT model
"$L" world --out "$W/world" --corpus 3000 --prompts 100 --judge 10 --heldout 10 >/dev/null
PT=(pretrain --data "$W/world/corpus.txt" --vocab-size 400 --n-layer 2 --n-embd 64 --n-head 4 --seq-len 32 --batch 8
    --val-every 10 -q)
run1 "${PT[@]}" --steps 20 --out "$W/sft1"
run2 "${PT[@]}" --steps 20 --out "$W/sft2"
same "$W/sft1" "$W/sft2" "pretrain (8 windows a step, 20 steps)"
# resume with another number of ranks, both ways
run2 "${PT[@]}" --steps 10 --out "$W/sft21" && run1 "${PT[@]}" --steps 20 --out "$W/sft21" --resume
same "$W/sft1" "$W/sft21" "pretrain: 10 steps on 2 ranks, resumed on 1 rank to 20"
run1 "${PT[@]}" --steps 10 --out "$W/sft12" && run2 "${PT[@]}" --steps 20 --out "$W/sft12" --resume
same "$W/sft1" "$W/sft12" "pretrain: 10 steps on 1 rank, resumed on 2 ranks to 20"

# reward model: preference pairs made from the prompts (a fluent and a broken continuation)
sed 's/{"prompt": "\(.*\)"}/{"prompt": "\1", "chosen": " good.", "rejected": " was was the."}/' "$W/world/prompts.jsonl" > "$W/prefs.jsonl"
RM=(rm train --data "$W/prefs.jsonl" --init "$W/sft1" --epochs 1 --batch 8 -q)
run1 "${RM[@]}" --out "$W/rm1" 2>/dev/null
run2 "${RM[@]}" --out "$W/rm2" 2>/dev/null
same "$W/rm1" "$W/rm2" "rm train (Bradley-Terry, batches of 8 pairs)"

# PPO and GRPO, scored by a command (the length of the request line: a reward that varies between responses,
# so that GRPO's groups have non-zero advantages); also the metrics both runs logged
REPLY='while IFS= read -r l; do id=$(printf "%s\n" "$l" | sed "s/.*\"id\":\([0-9]*\).*/\1/"); echo "{\"id\": $id, \"reward\": 0}"; done'
LENGTH='while IFS= read -r l; do id=$(printf "%s\n" "$l" | sed "s/.*\"id\":\([0-9]*\).*/\1/"); echo "{\"id\": $id, \"reward\": ${#l}}"; done'
for algo in ppo grpo; do
  if [ $algo = ppo ]; then batch=(--batch 8 --minibatch 4); else batch=(--batch 2 --group 4); fi
  RL=($algo --policy "$W/sft1" --reward-cmd "$LENGTH" --prompts "$W/world/prompts.jsonl" --steps 4 "${batch[@]}" --max-new 8
      --seed 3 --lr 1e-3 -q)
  run1 "${RL[@]}" --out "$W/${algo}1"
  run2 "${RL[@]}" --out "$W/${algo}2"
  same "$W/${algo}1/policy" "$W/${algo}2/policy" "$algo (4 steps, global batch ${batch[*]})"
  k1=$(grep -o '"objective/kl": [-0-9.e]*' "$W/${algo}1/metrics.jsonl" | tail -1 | cut -d' ' -f2)
  k2=$(grep -o '"objective/kl": [-0-9.e]*' "$W/${algo}2/metrics.jsonl" | tail -1 | cut -d' ' -f2)
  awk -v a="$k1" -v b="$k2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 + 1e-3 * (a < 0 ? -a : a)) }' ||
    fail "$algo: last objective/kl $k1 (1 rank) vs $k2 (2 ranks)"
  pass "$algo: last objective/kl $k1 (1 rank), $k2 (2 ranks)"
  # resume with another number of ranks: 2 steps on 2 ranks, then on to 4 on 1 rank
  run2 "${RL[@]}" --out "$W/${algo}21" --steps 2 && run1 "${RL[@]}" --out "$W/${algo}21" --resume
  same "$W/${algo}1/policy" "$W/${algo}21/policy" "$algo: 2 steps on 2 ranks, resumed on 1 rank to 4"
done

# LoRA with the base in BF16: only the adapters are summed across ranks and compared by hash
LORA=(ppo --policy "$W/sft1" --reward-cmd "$LENGTH" --prompts "$W/world/prompts.jsonl" --steps 3 --batch 8 --minibatch 4
      --max-new 8 --seed 3 --lr 1e-3 --lora-r 4 --lora-targets c_attn,c_fc --frozen-bf16 -q)
run1 "${LORA[@]}" --out "$W/lora1"
run2 "${LORA[@]}" --out "$W/lora2"
same "$W/lora1/policy" "$W/lora2/policy" "ppo with LoRA and a BF16 base (3 steps)"

# a scorer's metrics (issue 17): each rank scores its own rows and the batch means are over both ranks' rows, so
# step 1 (the same responses on 1 and 2 ranks) logs the same gold/len and gold/reward (the run's gold reward)
METRICS='while IFS= read -r l; do id=$(printf "%s\n" "$l" | sed "s/.*\"id\":\([0-9]*\).*/\1/"); echo "{\"id\": $id, \"reward\": ${#l}, \"metrics\": {\"gold/len\": ${#l}, \"gold/reward\": $(( ${#l} % 3 ))}}"; done'
SM=(grpo --policy "$W/sft1" --reward-cmd "$METRICS" --prompts "$W/world/prompts.jsonl" --steps 2 --batch 2 --group 3 --max-new 8 --seed 3 -q)
run1 "${SM[@]}" --out "$W/metrics1"
run2 "${SM[@]}" --out "$W/metrics2"
m1=$(head -1 "$W/metrics1/metrics.jsonl" | grep -o '"gold/reward": [-0-9.e]*\|"gold/len": [-0-9.e]*' | tr '\n' ' ')
m2=$(head -1 "$W/metrics2/metrics.jsonl" | grep -o '"gold/reward": [-0-9.e]*\|"gold/len": [-0-9.e]*' | tr '\n' ' ')
[ -n "$m1" ] && [ "$m1" = "$m2" ] || fail "scorer metrics: step 1 logs '$m1' on 1 rank, '$m2' on 2 ranks"
pass "scorer metrics: step 1 logs ${m1}on 1 and on 2 ranks"

# failures end the job with a message, never a hang
BAD="if [ \"\$OMPI_COMM_WORLD_RANK\" = 1 ]; then exit 3; fi; $REPLY"
set +e
out=$(timeout 120 "${MPIRUN[@]}" -np 2 "$L" ppo --policy "$W/sft1" --reward-cmd "$BAD" --prompts "$W/world/prompts.jsonl" \
      --steps 2 --batch 4 --max-new 4 --out "$W/fail" -q 2>&1)
rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "a failing rank: status $rc"
echo "$out" | grep -q "exit status 3" && echo "$out" | grep -q "stopping every rank" || fail "a failing rank: no clear message: $out"
pass "a rank whose reward command fails stops the job (status $rc)"

for how in STOP KILL; do
  log="$W/$how.log"
  LEASH_DIST_TIMEOUT=5 timeout 120 "${MPIRUN[@]}" -np 2 "$L" ppo --policy "$W/sft1" --gold-reward \
    --prompts "$W/world/prompts.jsonl" --steps 100000 --batch 4 --max-new 4 --out "$W/$how" -q >"$log" 2>&1 &
  job=$!
  victim=""
  for _ in $(seq 100); do # rank 1's process, once it runs
    for p in $(pgrep -f "$L ppo" || true); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$p; fi
    done
    [ -n "$victim" ] && [ -s "$W/$how/metrics.jsonl" ] && break
    sleep 0.2
  done
  [ -n "$victim" ] || fail "$how: rank 1 never started"
  kill -$how "$victim"
  set +e
  wait $job
  rc=$?
  set -e
  kill -KILL "$victim" 2>/dev/null || true
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "rank 1 got SIG$how: status $rc (124: the job hung)"
  if [ $how = STOP ]; then
    grep -q "no answer from the other ranks" "$log" || fail "a hung rank: no clear message: $(cat "$log")"
  fi
  pass "rank 1 got SIG$how: the job ended with status $rc ($(grep -m1 -o 'no answer from the other ranks[^:]*\|exited on signal [0-9]*\|killed by signal [0-9]*' "$log" || echo 'Open MPI ended it'))"
done
echo "test-mpi: all passed"
