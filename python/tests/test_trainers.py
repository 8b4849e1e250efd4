"""leash.dpo, leash.rm_train and leash.pretrain (python/leash/trainers.py over leash_api_train in
src/api_trainers.c) against the CLI: the same options give the same bytes (model weights) and the same
metrics.jsonl (timings aside), on_step sees each step's metrics as metrics.jsonl has them, returning False
stops a run with its checkpoint, and every option of `leash CMD --help` is a keyword of the Python trainer.
"""
import json
import math
import re
from pathlib import Path

import pytest

import leash
from leash.trainers import train_option_known

TIMINGS = ("tokens_per_s", "time", "elapsed_s", "seconds")  # and every "time/..." key (the RL trainers' step phases)


@pytest.fixture(scope="module")
def gpt2(cli, world, tmp_path_factory):
    out = tmp_path_factory.mktemp("trainers") / "model"
    cli("pretrain", "--data", world / "corpus.txt", "--vocab-size", 300, "--n-layer", 1, "--n-embd", 32, "--n-head", 2,
        "--seq-len", 32, "--batch", 4, "--steps", 3, "--val-every", 0, "--arch", "gpt2", "--out", out, "-q")
    return out


@pytest.fixture(scope="module")
def prefs(world, tmp_path_factory):
    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    rows = [json.loads(line) for line in (world / "prompts.jsonl").read_text().splitlines() if line.strip()]
    with open(path, "w") as f:
        for i in range(16):
            good, bad = (" good", " bad") if i % 2 else (" great.", " awful.")
            f.write(json.dumps({"prompt": rows[i % len(rows)]["prompt"], "chosen": good, "rejected": bad}) + "\n")
    return path


def metric_lines(path):
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [{k: v for k, v in d.items() if k not in TIMINGS and not k.startswith("time/")} for d in lines]


def same_bytes(a, b):
    assert Path(a).read_bytes() == Path(b).read_bytes(), f"{a} and {b} differ"


def close(seen, logged):
    """on_step's full-precision value against metrics.jsonl's printed one."""
    if isinstance(logged, (int, float)) and isinstance(seen, (int, float)):
        return math.isclose(seen, logged, rel_tol=1e-5, abs_tol=1e-6)
    return seen == logged


def test_dpo_equals_the_cli(cli, gpt2, prefs, tmp_path):
    seen = []
    r = leash.dpo(policy=gpt2, data=prefs, out=tmp_path / "py", steps=3, batch=4, beta=0.2, lr=1e-3, seed=2,
                  quiet=True, on_step=seen.append)
    cli("dpo", "--policy", gpt2, "--data", prefs, "--out", tmp_path / "cli", "--steps", 3, "--batch", 4, "--beta", 0.2,
        "--lr", 1e-3, "--seed", 2, "-q")
    assert (r.step, r.steps, r.stopped) == (3, 3, False)
    same_bytes(tmp_path / "py" / "policy" / "model.safetensors", tmp_path / "cli" / "policy" / "model.safetensors")
    py, ref = metric_lines(tmp_path / "py" / "metrics.jsonl"), metric_lines(tmp_path / "cli" / "metrics.jsonl")
    assert py == ref
    assert len(seen) == 3 and "rewards/margins" in seen[0]
    for s, line in zip(seen, ref):
        assert all(close(s[k], v) for k, v in line.items() if k in s), (s, line)
    with pytest.raises(leash.LeashError, match="sigmoid or ipo"):
        leash.dpo(policy=gpt2, data=prefs, out=tmp_path / "bad", loss="hinge")


def test_rm_train_equals_the_cli(cli, gpt2, prefs, tmp_path):
    seen = []
    r = leash.rm_train(data=prefs, init=gpt2, out=tmp_path / "py", epochs=2, batch=4, val_fraction=0.25, seed=5,
                       gold_world=True, quiet=True, on_step=seen.append)
    cli("rm", "train", "--data", prefs, "--init", gpt2, "--out", tmp_path / "cli", "--epochs", 2, "--batch", 4,
        "--val-fraction", 0.25, "--seed", 5, "--gold-world", "-q")
    same_bytes(tmp_path / "py" / "model.safetensors", tmp_path / "cli" / "model.safetensors")
    assert r.step == r.steps == 6 and not r.stopped  # 12 training pairs, batch 4, 2 epochs
    vals = [s for s in seen if "val/accuracy" in s]
    assert [s["epoch"] for s in vals] == [1, 2] and all(s["val/n"] == 4 for s in vals)
    assert all(isinstance(s["loss"], float) for s in seen if "val/accuracy" not in s)


def test_pretrain_equals_the_cli_and_on_step_false_stops(cli, world, tmp_path):
    opts = dict(vocab_size=300, n_layer=1, n_embd=32, n_head=2, seq_len=32, batch=4, steps=4, val_every=0, seed=7)
    seen = []
    r = leash.pretrain(data=[world / "corpus.txt"], out=tmp_path / "py", quiet=True, on_step=seen.append, **opts)
    args = [x for k, v in opts.items() for x in ("--" + k.replace("_", "-"), v)]
    cli("pretrain", "--data", world / "corpus.txt", "--out", tmp_path / "cli", "-q", *args)
    same_bytes(tmp_path / "py" / "model.safetensors", tmp_path / "cli" / "model.safetensors")
    assert metric_lines(tmp_path / "py" / "metrics.jsonl") == metric_lines(tmp_path / "cli" / "metrics.jsonl")
    assert [s["step"] for s in seen] == [1, 2, 3, 4] and r.step == r.steps == 4
    # on_step returning False: stops after that step, with a checkpoint
    r = leash.pretrain(data=world / "corpus.txt", out=tmp_path / "stop", on_step=lambda m: m["step"] < 2, **opts)
    assert (r.step, r.stopped) == (2, True) and (tmp_path / "stop" / "checkpoint").is_dir()


@pytest.mark.parametrize("trainer,cmd,extra", [("dpo", ["dpo"], set()), ("pretrain", ["pretrain"], set()),
                                               ("rm_train", ["rm", "train"], {"file", "text"})])
def test_every_cli_option_is_a_keyword(cli, trainer, cmd, extra):
    """The options of `leash CMD --help` (rm's help also lists rm score's --file and --text) against
    leash_api_train's table; an unknown one is refused naming it."""
    names = set(re.findall(r"--([a-z][a-z0-9-]*)", cli(*cmd, "--help"))) - {"help"} - extra
    missing = sorted(n for n in names if not train_option_known(trainer, n))
    assert not missing, f"leash {' '.join(cmd)} options the Python trainer does not take: {missing}"
    assert not train_option_known(trainer, "no-such-option") and not train_option_known("nope", "lr")
    with pytest.raises(leash.LeashError, match="no_such_option is not an option"):
        getattr(leash, trainer)(**{"data": "x", "out": "y", "no_such_option": 1, **({"policy": "p"} if trainer == "dpo" else {})})
