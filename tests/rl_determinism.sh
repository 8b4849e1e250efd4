#!/usr/bin/env bash
# Proof that a refactor of the trainers changed nothing: tiny PPO, GRPO, --reward-cmd and LoRA runs, a resumed
# one, and pretraining (plain and resumed) with fixed seeds, every output file kept, compared with cmp against a
# reference set.
#   tests/rl_determinism.sh record LEASH_BIN DIR    write the reference outputs into DIR
#   tests/rl_determinism.sh check  LEASH_BIN DIR    rerun into DIR.new and cmp every file with DIR's
# Not run by make test (about 1-2 minutes on 2 cores). metrics.jsonl's timings ("time/step_s", "time/rollout_s", ...)
# and "tokens_per_s" vary and are cut out before comparing; everything else (weights, checkpoints, samples,
# metrics) must be byte-identical.
set -euo pipefail
mode=$1 L=$(realpath "$2") ref=$3
export OMP_NUM_THREADS=2
out=$ref
[ "$mode" = check ] && out=$ref.new
rm -rf "$out"; mkdir -p "$out"
base=${ref}.base
if [ ! -f "$base/sft/model.safetensors" ]; then
  rm -rf "$base"; mkdir -p "$base"
  "$L" world --out "$base/world" --corpus 3000 --prompts 200 --judge 10 --heldout 10 >/dev/null
  "$L" pretrain --data "$base/world/corpus.txt" --out "$base/sft" --vocab-size 300 --n-layer 2 --n-embd 32 \
      --n-head 2 --n-positions 64 --seq-len 32 --batch 8 --steps 20 --seed 1 -q >/dev/null
fi
P=$base/sft W=$base/world/prompts.jsonl
cat > "$base/scorer.sh" <<'SH'
#!/bin/sh
# reward: the response length mod 7, as a number
python3 -u -c '
import json, sys
for line in sys.stdin:
    q = json.loads(line)
    print(json.dumps({"id": q["id"], "reward": (len(q["response"]) % 7) / 7.0}), flush=True)
'
SH
chmod +x "$base/scorer.sh"
common=(--policy "$P" --prompts "$W" --max-new 8 --seed 5 --sample-every 2 -q)
"$L" ppo  "${common[@]}" --out "$out/ppo" --gold-reward --steps 4 --batch 8 --minibatch 4 --kl-target 2 --kl-horizon 100 --gold-metrics
"$L" grpo "${common[@]}" --out "$out/grpo" --gold-reward --steps 4 --batch 2 --group 4 --kl-estimator k3+
"$L" ppo  "${common[@]}" --out "$out/ppo-cmd" --reward-cmd "$base/scorer.sh" --steps 3 --batch 6 --kl-estimator exact
"$L" grpo "${common[@]}" --out "$out/grpo-lora" --gold-reward --steps 3 --batch 2 --group 3 --lora-r 4 --token-level-loss
"$L" ppo  "${common[@]}" --out "$out/ppo-lora" --gold-reward --steps 3 --batch 4 --lora-r 2 --lora-targets all-linear --whiten-rewards
# a resumed run: 2 steps, then --resume to 4 (equal to ppo's first 4 steps is not asserted; compared as files)
"$L" ppo  "${common[@]}" --out "$out/ppo-resume" --gold-reward --steps 2 --batch 8 --minibatch 4 --kl-target 2 --kl-horizon 100 --gold-metrics
"$L" ppo  "${common[@]}" --out "$out/ppo-resume" --gold-reward --steps 4 --batch 8 --minibatch 4 --kl-target 2 --kl-horizon 100 --gold-metrics --resume
# pretraining (the trainer skeleton it shares with RL): 6 updates, and 3 + a resume to 6
pre=(--data "$base/world/corpus.txt" --tokenizer "$P" --n-layer 1 --n-embd 16 --n-head 2 --n-positions 32 --seq-len 16 --batch 4
     --seed 3 --val-every 2 --val-batches 1 -q)
"$L" pretrain "${pre[@]}" --out "$out/pretrain" --steps 6 --save-every 2 >/dev/null
"$L" pretrain "${pre[@]}" --out "$out/pretrain-resume" --steps 3 >/dev/null
"$L" pretrain "${pre[@]}" --out "$out/pretrain-resume" --steps 6 --resume >/dev/null
for f in "$out"/*/metrics.jsonl; do sed -i -e 's/, "time\/[a-z_]*": [0-9.e+-]*//g' -e 's/, "tokens_per_s": [0-9.e+-]*//' "$f"; done
rm -f "$out"/*/.lock
if [ "$mode" = check ]; then
  bad=0 n=0
  while IFS= read -r f; do
    n=$((n + 1))
    if ! cmp -s "$ref/$f" "$out/$f"; then echo "DIFFERS: $f"; bad=1; fi
  done < <(cd "$ref" && find . -type f | sort)
  [ "$(cd "$ref" && find . -type f | sort)" = "$(cd "$out" && find . -type f | sort)" ] || { echo "the file lists differ"; bad=1; }
  [ $bad = 0 ] && echo "rl_determinism: all $n files byte-identical"
  exit $bad
fi
echo "rl_determinism: recorded $(find "$ref" -type f | wc -l) files in $ref"
