#!/usr/bin/env bash
# The TRL peer row (part of make bench, issue 20): GRPO with TRL 1.16's GRPOTrainer (PyTorch, CPU) and with
# `leash grpo` on the same model directory, prompts and reward, interleaved rounds; prints seconds per step,
# response tokens per step and per second, peak RSS of each, and leash's speed as a multiple of TRL's.
# bench/trl_grpo.py says what is matched and how each is timed. Skipped with the reason when the --ref venv
# (scripts/deps.sh --ref: transformers 5, TRL) is missing; asserts nothing.
#
# Model: the demo's shape written by leash (GPT-2 layout, V 1024, C 128, 4 layers, 4 heads: leash world +
# one pretrain step), Hugging Face's files, which transformers loads as they are; or, with MODEL smollm2 (make
# bench runs 2 rounds x 2 steps: about 25 s a step and 9.3 GB for TRL's process, so it is skipped with less
# than 12 GB available), SmolLM2-135M-Instruct's GGUF file (LEASH_SMOLLM2_GGUF) written out by leash as a
# Hugging Face LlamaForCausalLM directory in F32 (one GRPO step at lr 1e-12).
# GRPO: 8 prompts x 8 responses of up to 32 tokens, STEPS steps a run (the first a warm-up), ROUNDS rounds.
#   bench/trl_grpo.sh [BUILD_DIR] [ROUNDS] [STEPS] [gpt2|smollm2]     LEASH_HF5_PYTHON: the venv's python
set -euo pipefail
B=${1:-build}
ROUNDS=${2:-5}
STEPS=${3:-5}
MODEL=${4:-gpt2}
PY=${LEASH_HF5_PYTHON:-/opt/leash-hf5/bin/python}
G=${LEASH_SMOLLM2_GGUF:-/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ "$MODEL" = smollm2 ] && [ ! -f "$G" ]; then
  echo "skipped: $G is missing (scripts/deps.sh --ref, or set LEASH_SMOLLM2_GGUF)"; exit 0
fi
AVAIL_KB=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
if [ "$MODEL" = smollm2 ] && [ "${AVAIL_KB:-0}" -lt 12000000 ]; then
  echo "skipped: $((${AVAIL_KB:-0} / 1000000)) GB of memory available; the SmolLM2 row needs about 12 (TRL's process: 9.3 GB)"; exit 0
fi
if [ ! -x "$PY" ]; then echo "skipped: $PY is missing (scripts/deps.sh --ref, or set LEASH_HF5_PYTHON)"; exit 0; fi
if ! "$PY" -c 'import trl, datasets' 2>/dev/null; then
  echo "skipped: $PY has no TRL or datasets (scripts/deps.sh --ref installs them)"; exit 0
fi
if ! command -v python3 >/dev/null; then echo "skipped: no python3 for leash's --reward-cmd scorer"; exit 0; fi
L="$B/leash"
W=$(mktemp -d /tmp/leash-trl-XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
"$L" world --out "$W/world" --corpus 4000 --prompts 200 --judge 10 --heldout 10 >/dev/null 2>"$W/world.log" \
  || { cat "$W/world.log"; exit 1; }
if [ "$MODEL" = smollm2 ]; then
  "$L" grpo --policy "$G" --reward-cmd "python3 $(dirname "$0")/trl_reward.py" --prompts "$W/world/prompts.jsonl" \
    --steps 1 --batch 1 --group 2 --max-new 2 --lr 1e-12 --out "$W/w" -q
  M="$W/w/policy"
else
  "$L" pretrain --data "$W/world/corpus.txt" --vocab-size 1024 --n-layer 4 --n-embd 128 --n-head 4 --seq-len 64 \
    --batch 16 --steps 1 --out "$W/sft" -q
  M="$W/sft"
fi
"$PY" "$(dirname "$0")/trl_grpo.py" bench "$L" "$M" "$W/world/prompts.jsonl" "$ROUNDS" "$STEPS" 8 8 32 3e-5 "$W"
