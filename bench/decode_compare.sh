#!/usr/bin/env bash
# Generation tokens/s of two builds side by side (issue 20): bench_decode --tsv of BASE and NEW run alternately,
# ROUNDS rounds, on the same batch sizes; prints the median tokens/s of each and their ratio. The machine is
# shared: interleaving puts its changing load on both alike.
#   bench/decode_compare.sh BASE_BENCH_DECODE NEW_BENCH_DECODE [ROUNDS] [BATCHES] [NEW_TOKENS] [MODEL]
set -euo pipefail
base=$1 new=$2 rounds=${3:-3} batches=${4:-1,2,4,8,16,32,64} M=${5:-16} model=${6:-}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
W=$(mktemp /tmp/leash-decode-compare-XXXXXX)
trap 'rm -f "$W"' EXIT
for r in $(seq "$rounds"); do
  for which in base new; do
    bin=$base; [ "$which" = new ] && bin=$new
    "$bin" --tsv --reps 1 --new "$M" --batches "$batches" ${model:+--model "$model"} | sed "s/^/$which\t/" >> "$W"
  done
done
python3 - "$W" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    which, model, batch, tps, step, full = line.rstrip("\n").split("\t")
    rows[(model, int(batch), which)].append((float(tps), float(step), float(full)))
print("tok/s: new tokens over generation less its prefill; with prefill: over the whole call; step: a bare decode step")
print(f"{'model':20} {'batch':>5} {'base tok/s':>11} {'new tok/s':>10} {'new/base':>9} {'base step ms':>13} {'new step ms':>12}"
      f" {'base w/ prefill':>16} {'new w/ prefill':>15} {'new/base':>9}")
for model, batch in sorted({(m, b) for m, b, _ in rows}, key=lambda k: (k[0], k[1])):
    b = rows[(model, batch, "base")]; n = rows[(model, batch, "new")]
    bt, nt = statistics.median(x[0] for x in b), statistics.median(x[0] for x in n)
    bs, ns = statistics.median(x[1] for x in b), statistics.median(x[1] for x in n)
    bf, nf = statistics.median(x[2] for x in b), statistics.median(x[2] for x in n)
    print(f"{model:20} {batch:5d} {bt:11.1f} {nt:10.1f} {nt / bt:8.2f}x {bs:13.1f} {ns:12.1f} {bf:16.1f} {nf:15.1f}"
          f" {nf / bf:8.2f}x   ({len(b)} rounds)")
PY
