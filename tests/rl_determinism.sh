#!/usr/bin/env bash
# Proof that a refactor of the RL trainers changed nothing: tiny PPO, GRPO, --reward-cmd and LoRA runs (and a
# resumed one) with fixed seeds, every output file kept, compared with cmp against a reference set.
#   tests/rl_determinism.sh record LEASH_BIN DIR    write the reference outputs into DIR
#   tests/rl_determinism.sh check  LEASH_BIN DIR    rerun into DIR.new and cmp every file with DIR's
# Not run by make test (about 1-2 minutes on 2 cores). metrics.jsonl's "time/step_s" varies and is cut out
# before comparing; everything else (weights, checkpoints, samples, metrics) must be byte-identical.
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
cat > "$out/scorer.sh" <<'SH'
#!/bin/sh
# reward: the response length mod 7, as a number
python3 -u -c '
import json, sys
for line in sys.stdin:
    q = json.loads(line)
    print(json.dumps({"id": q["id"], "reward": (len(q["response"]) % 7) / 7.0}), flush=True)
'
SH
chmod +x "$out/scorer.sh"
common=(--policy "$P" --prompts "$W" --max-new 8 --seed 5 --sample-every 2 -q)
"$L" ppo  "${common[@]}" --out "$out/ppo" --gold-reward --steps 4 --batch 8 --minibatch 4 --kl-target 2 --kl-horizon 100 --gold-metrics
"$L" grpo "${common[@]}" --out "$out/grpo" --gold-reward --steps 4 --batch 2 --group 4 --kl-estimator k3+
"$L" ppo  "${common[@]}" --out "$out/ppo-cmd" --reward-cmd "$out/scorer.sh" --steps 3 --batch 6 --kl-estimator exact
"$L" grpo "${common[@]}" --out "$out/grpo-lora" --gold-reward --steps 3 --batch 2 --group 3 --lora-r 4 --token-level-loss
"$L" ppo  "${common[@]}" --out "$out/ppo-lora" --gold-reward --steps 3 --batch 4 --lora-r 2 --lora-targets all-linear --whiten-rewards
# a resumed run: 2 steps, then --resume to 4 (equal to ppo's first 4 steps is not asserted; compared as files)
"$L" ppo  "${common[@]}" --out "$out/ppo-resume" --gold-reward --steps 2 --batch 8 --minibatch 4 --kl-target 2 --kl-horizon 100 --gold-metrics
"$L" ppo  "${common[@]}" --out "$out/ppo-resume" --gold-reward --steps 4 --batch 8 --minibatch 4 --kl-target 2 --kl-horizon 100 --gold-metrics --resume
for f in "$out"/*/metrics.jsonl; do sed -i 's/, "time\/step_s": [0-9.e+-]*//' "$f"; done
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
