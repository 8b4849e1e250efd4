"""The reward of the TRL peer row (bench/trl_grpo.sh): the number of letters "e" in the response, over 10.

Deterministic and cheap, with a spread inside every group so that the advantages are not all zero. Two uses:
bench/trl_grpo.py imports reward() as TRL's reward function, and `leash grpo --reward-cmd "python3
bench/trl_reward.py"` runs this file as a scorer (docs/rl.md, "Scorer commands": {"id", "response", ...}
lines on stdin, {"id", "reward"} lines on stdout, each flushed), so both trainers optimise the same function.
"""
import json
import sys


def reward(response):
    return response.count("e") / 10


if __name__ == "__main__":
    for line in sys.stdin:
        d = json.loads(line)
        print(json.dumps({"id": d["id"], "reward": reward(d["response"])}), flush=True)
