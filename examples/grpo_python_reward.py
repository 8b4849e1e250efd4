#!/usr/bin/env python3
"""GRPO with a Python reward function on the default world, in under a minute on 2 cores.

    python3 examples/grpo_python_reward.py [WORKDIR]     (default build/example-python-reward)

Makes the default world and a small SFT model with the leash CLI (as scripts/demo.sh does, smaller), then
trains it with leash.grpo and a TRL-style reward: the share of positive words in the completion. A TRL reward
function (reward(prompts, completions, **kwargs) -> list of floats) drops in unchanged. The KL leash (beta)
keeps the policy near the SFT model; on_step prints the reward, the KL and the gold reward as it goes.

Environment: LEASH_BIN (the CLI; default build/leash), LEASH_LIBRARY (libleash.so, when the package is not
installed: build/libleash.so), PYTHONPATH=python when running from the repository without installing.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import leash

POSITIVE = {"splendid", "calm", "cozy", "reasonable", "enjoyable", "neat", "comfortable", "lovely", "great",
            "wonderful", "pleasant", "delightful", "excellent", "fantastic", "superb", "good", "nice", "charming"}


def positive_share(prompts, completions, **kwargs):
    """The share of the completion's words that are positive (0 for an empty completion)."""
    out = []
    for c in completions:
        words = [w.strip(".,!").lower() for w in c.split()]
        out.append(sum(w in POSITIVE for w in words) / len(words) if words else 0.0)
    return out


def main():
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "build/example-python-reward")
    cli = os.environ.get("LEASH_BIN", "build/leash")
    t0 = time.time()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "world" / "prompts.jsonl").is_file():
        subprocess.run([cli, "world", "--out", work / "world", "--corpus", "5000", "--prompts", "200", "--judge", "100",
                        "--heldout", "10"], check=True, stdout=subprocess.DEVNULL)
    if not (work / "sft" / "model.safetensors").is_file():
        print("SFT: a 2-layer GPT on the world's reviews ...", flush=True)
        subprocess.run([cli, "pretrain", "--data", work / "world" / "corpus.txt", "--out", work / "sft", "--overwrite",
                        "--vocab-size", "512", "--n-layer", "2", "--n-embd", "64", "--n-head", "2", "--seq-len", "48",
                        "--batch", "16", "--steps", "600", "--lr", "3e-3", "--warmup", "50", "--val-every", "0", "-q"],
                       check=True)
    print(f"SFT ready ({time.time() - t0:.0f} s); GRPO with a Python reward:", flush=True)

    def on_step(m):
        print(f"step {m['step']:3d}  positive share {m['rewards/positive_share/mean']:.3f}  "
              f"KL {m['objective/kl']:.3f} nats/seq  gold {m['gold/reward']:+.3f}  {m['time/step_s']:.2f} s", flush=True)

    r = leash.grpo(policy=work / "sft", prompts=work / "world" / "prompts.jsonl", out=work / "grpo",
                   reward_funcs=[positive_share], on_step=on_step, steps=30, batch=8, group=8, max_new=12,
                   lr=1e-3, beta=0.04, gold_metrics=True, sample_every=10, overwrite=True)
    print(f"done in {time.time() - t0:.0f} s: {r.step} steps, policy in {r.out}/policy, metrics in "
          f"{r.out}/metrics.jsonl")


if __name__ == "__main__":
    main()
