#!/usr/bin/env bash
# make demo: the whole story on the built-in default world, on a laptop.
#   world -> SFT model -> AI judge -> RLAIF preference labels -> reward model
#   -> PPO with the KL leash (adaptive beta)  and  the same PPO with beta = 0
#   -> a side-by-side report: proxy reward, gold reward, grammaticality, KL, fluency, samples.
# Stages already finished in build/demo are reused. About 12 minutes on 2 cores from scratch (README).
# Every stage shows its progress: one updating line on a terminal, a plain line every 5 s in a log.
#   DEMO_QUICK=1 scripts/demo.sh    a tiny version of every stage (CI checks the pipeline with it)
#   LEASH=path/to/leash DEMO_DIR=dir scripts/demo.sh    another binary, another directory for the stages
set -euo pipefail
cd "$(dirname "$0")/.."
L=${LEASH:-build/leash}
if [ "${DEMO_QUICK:-0}" = 1 ]; then
  D=${DEMO_DIR:-build/demo-quick}; CORPUS=5000; SFT_STEPS=60; JUDGE_N=3000; PROMPTS=300; STEPS=6; BATCH=16; LR=3e-4
else
  D=${DEMO_DIR:-build/demo}; CORPUS=200000; SFT_STEPS=1500; JUDGE_N=50000; PROMPTS=10000; STEPS=60; BATCH=64; LR=3e-4
fi
mkdir -p "$D"
stage() { echo; echo "== $1"; }

# a stage that did not finish (interrupted) continues from its checkpoint, or starts over when it has none
again() { if [ -d "$1/checkpoint" ]; then echo --resume; else echo --overwrite; fi; }

if [ ! -f "$D/world/prompts.jsonl" ]; then
  stage "the default world: review grammar, gold scorer"
  $L world --out "$D/world" --corpus $CORPUS --prompts $PROMPTS --judge $JUDGE_N --heldout 1000
fi
if [ ! -f "$D/sft/model.safetensors" ]; then
  stage "supervised fine-tuning: a 0.9M-parameter GPT on the review corpus (the reference model)"
  $L pretrain --data "$D/world/corpus.txt" --out "$D/sft" "$(again "$D/sft")" --vocab-size 1024 --n-layer 4 --n-embd 128 --n-head 4 \
      --seq-len 64 --batch 32 --steps $SFT_STEPS --lr 2e-3 --warmup 100 --val-every 500
fi
if [ ! -f "$D/judge/model.safetensors" ]; then
  stage "the AI judge: a sentiment classifier trained on labelled grammatical reviews"
  $L judge train --data "$D/world/judge.jsonl" --tokenizer "$D/sft" --out "$D/judge" --n-layer 2 --n-embd 64 \
      --n-head 4 --n-positions 128
fi
if [ ! -s "$D/prefs.jsonl" ]; then
  stage "RLAIF: the judge labels pairs of SFT samples"
  $L judge label --policy "$D/sft" --prompts "$D/world/prompts.jsonl" --judge "$D/judge" --out "$D/prefs.jsonl" --overwrite
  echo "$(wc -l < "$D/prefs.jsonl") preference pairs"
fi
if [ ! -f "$D/rm/model.safetensors" ]; then
  stage "the reward model: Bradley-Terry on the judge's labels (the proxy reward)"
  $L rm train --data "$D/prefs.jsonl" --init "$D/sft" --out "$D/rm" --gold-world
fi
common=(--policy "$D/sft" --reward "$D/rm" --prompts "$D/world/prompts.jsonl" --steps $STEPS --batch $BATCH
        --lr $LR --gold-metrics --sample-every 20)
if [ ! -f "$D/ppo-leash/policy/model.safetensors" ]; then
  stage "PPO with the KL leash: adaptive beta from 0.2 towards 3 nats per sequence (horizon 1000)"
  $L ppo "${common[@]}" --out "$D/ppo-leash" "$(again "$D/ppo-leash")" --beta 0.2 --kl-target 3 --kl-horizon 1000
fi
if [ ! -f "$D/ppo-no-leash/policy/model.safetensors" ]; then
  stage "the same PPO without the leash: beta = 0"
  $L ppo "${common[@]}" --out "$D/ppo-no-leash" "$(again "$D/ppo-no-leash")" --beta 0
fi
stage "report"
$L report "$D/ppo-leash" "$D/ppo-no-leash"
if command -v gnuplot >/dev/null 2>&1; then
  $L plot "$D/ppo-leash" "$D/ppo-no-leash" --out "$D/curves.png"
fi
