"""The per-step cost of a Python reward function against the CLI's --reward-cmd scorer and a C reward (the
default world's gold scorer, --gold-reward), on one GRPO shape; the numbers in docs/python.md come from here.

    python3 python/bench_reward.py POLICY_DIR WORLD_DIR [STEPS]

Each run is GRPO with the same options; time/step_s (metrics.jsonl) is averaged over the steps after the
first. For the Python path the time inside the reward callback (decoding the texts, the function, writing
the rewards back) is measured too. Environment: LEASH_BIN (the CLI), LEASH_LIBRARY (libleash.so).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import leash
import leash.train

POSITIVE = {"splendid", "calm", "cozy", "reasonable", "enjoyable", "neat", "great", "good", "comfortable", "lovely"}


def positive_words(prompts, completions, **kwargs):
    """A TRL-style reward: positive words in the completion."""
    return [float(sum(w.strip(".,") in POSITIVE for w in c.split())) for c in completions]


SCORER = f'''
import json, sys
POSITIVE = {sorted(POSITIVE)!r}
for line in sys.stdin:
    q = json.loads(line)
    r = float(sum(w.strip(".,") in POSITIVE for w in q["response"].split()))
    print(json.dumps({{"id": q["id"], "reward": r}}), flush=True)
'''


def mean_step_s(out):
    s = [json.loads(line)["time/step_s"] for line in Path(out, "metrics.jsonl").read_text().splitlines()]
    return sum(s[1:]) / len(s[1:])


def main():
    policy, world = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    opts = dict(steps=steps, batch=8, group=8, max_new=24, seed=1, sample_every=0)
    cli = os.environ.get("LEASH_BIN", "build/leash")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]
    tmp = Path(tempfile.mkdtemp(prefix="leash-bench-"))
    scorer = tmp / "scorer.py"
    scorer.write_text(SCORER)
    # the Python path, with the time inside the callback
    inside = []
    call = leash.train._Rewards._call

    def timed(self, *a):
        t = time.perf_counter()
        rc = call(self, *a)
        inside.append(time.perf_counter() - t)
        return rc

    leash.train._Rewards._call = timed
    leash.grpo(policy=policy, prompts=f"{world}/prompts.jsonl", out=tmp / "py", reward_funcs=positive_words, **opts)
    py = mean_step_s(tmp / "py")
    for name, extra in (("cmd", ["--reward-cmd", f"{sys.executable} {scorer}"]), ("gold", ["--gold-reward"])):
        subprocess.run([cli, "grpo", "--policy", policy, "--prompts", f"{world}/prompts.jsonl", "--out", tmp / name,
                        "-q", *extra, *args], check=True)
    cmd, gold = mean_step_s(tmp / "cmd"), mean_step_s(tmp / "gold")
    n = opts["batch"] * opts["group"]
    print(f"GRPO {opts['batch']} prompts x {opts['group']} responses = {n} responses of <= {opts['max_new']} tokens, "
          f"policy {policy}; mean time/step_s over steps 2..{steps}")
    print(f"  Python reward (leash.grpo):   {py * 1e3:8.1f} ms/step  (inside the callback: "
          f"{sum(inside[1:]) / len(inside[1:]) * 1e3:.2f} ms/step)")
    print(f"  --reward-cmd (Python scorer): {cmd * 1e3:8.1f} ms/step")
    print(f"  --gold-reward (C):            {gold * 1e3:8.1f} ms/step")
    same = Path(tmp / "py/policy/model.safetensors").read_bytes() == Path(tmp / "cmd/policy/model.safetensors").read_bytes()
    print(f"  Python reward and --reward-cmd policies bit-identical: {same}")


if __name__ == "__main__":
    main()
