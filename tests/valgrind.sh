#!/usr/bin/env bash
# make valgrind: a short PPO run (reward model, value model, reference, KV-cache sampling, updates, a
# checkpoint) under valgrind memcheck: no invalid read or write, no use of uninitialised values, no
# definitely or indirectly lost block. One thread (valgrind serialises threads anyway).
set -euo pipefail
L=${1:-build/leash}
W=$(mktemp -d /tmp/leash-valgrind-XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=1
export OMP_WAIT_POLICY=PASSIVE # set, leash does not run itself again (src/cli/main.c), which valgrind would not follow
"$L" world --out "$W/world" --corpus 2000 --prompts 50 --judge 10 --heldout 10 >/dev/null
"$L" pretrain --data "$W/world/corpus.txt" --vocab-size 300 --n-layer 1 --n-embd 32 --n-head 2 --seq-len 32 --batch 4 \
  --steps 3 --val-every 0 --out "$W/sft" -q
sed 's/{"prompt": "\(.*\)"}/{"prompt": "\1", "chosen": " good.", "rejected": " was was the."}/' "$W/world/prompts.jsonl" > "$W/prefs.jsonl"
"$L" rm train --data "$W/prefs.jsonl" --init "$W/sft" --epochs 1 --batch 8 --out "$W/rm" -q 2>/dev/null
valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite,indirect -q \
  "$L" ppo --policy "$W/sft" --reward "$W/rm" --prompts "$W/world/prompts.jsonl" --out "$W/ppo" --steps 2 --batch 4 \
  --minibatch 2 --max-new 6 --save-every 1 -q
echo "valgrind: a 2-step PPO run is clean (no memory errors, no leaks)"
