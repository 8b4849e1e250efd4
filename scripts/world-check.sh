#!/usr/bin/env bash
# The default world end to end at full size, printing the figures docs/world.md records: the SFT model's
# grammaticality, the judge's held-out accuracy, and the reward model's held-out pairwise accuracy against
# the judge and against gold. About 7 minutes on 2 cores.
#   scripts/world-check.sh [DIR]      (default: build/world-check)
set -euo pipefail
cd "$(dirname "$0")/.."
L=build/leash
D=${1:-build/world-check}
make -s build/leash
rm -rf "$D" && mkdir -p "$D"
$L world --out "$D/world"
$L pretrain --data "$D/world/corpus.txt" --out "$D/sft" --vocab-size 1024 --n-layer 4 --n-embd 128 --n-head 4 \
    --seq-len 64 --batch 32 --steps 1500 --lr 2e-3 --warmup 100 --val-every 500 -q
echo "sft: $(tail -1 "$D/sft/metrics.jsonl")"
$L judge train --data "$D/world/judge.jsonl" --tokenizer "$D/sft" --out "$D/judge" --n-layer 2 --n-embd 64 \
    --n-head 4 --n-positions 128 -q
# judge accuracy on the separate held-out file: sign of the score against the sign of the gold sentiment
sed 's/, "sentiment".*/}/' "$D/world/heldout.jsonl" > "$D/heldout-texts.jsonl"
$L rm score "$D/judge" --file "$D/heldout-texts.jsonl" > "$D/heldout-scores.jsonl"
paste -d' ' <(sed 's/.*"sentiment": \([-0-9.e]*\)}/\1/' "$D/world/heldout.jsonl") \
            <(sed 's/{"score": \([-0-9.e]*\),.*/\1/' "$D/heldout-scores.jsonl") |
    awk '$1 != 0 { n++; if (($1 > 0) == ($2 > 0)) ok++ } END { printf "judge: held-out accuracy %.2f%% on %d reviews\n", 100 * ok / n, n }'
$L judge label --policy "$D/sft" --prompts "$D/world/prompts.jsonl" --judge "$D/judge" --out "$D/prefs.jsonl" -q
echo "labelled pairs: $(wc -l < "$D/prefs.jsonl")"
$L rm train --data "$D/prefs.jsonl" --init "$D/sft" --out "$D/rm" --gold-world -q
# SFT grammaticality on 200 samples of one opening
$L sample "$D/sft" --prompt "The pasta was" -n 200 --max-new 48 --seed 3 > "$D/samples.txt"
ok=0; n=0
while IFS= read -r line; do
    n=$((n + 1))
    $L world score "$line" | grep -q '"grammatical": true' && ok=$((ok + 1))
done < "$D/samples.txt"
echo "sft: $ok of $n samples grammatical"
