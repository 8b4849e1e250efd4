"""leash.grpo / leash.ppo (python/leash/train.py over leash_api_rl_train) against the CLI.

The reference for a Python reward is the same function run by the CLI as a --reward-cmd scorer: the rewards
cross as exact doubles both ways (the scorer prints repr-exact JSON), so the runs must agree bit for bit
(policy weights, checkpoint and metrics.jsonl but its timings).
"""
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import pytest

import leash
from leash.train import option_known

SMALL = dict(steps=3, batch=2, group=4, max_new=8, seed=3, sample_every=0)

SCORER = r'''
import json, sys
for line in sys.stdin:
    q = json.loads(line)
    print(json.dumps({"id": q["id"], "reward": len(q["response"]) / 4 + q["response"].count(" ") / 8}), flush=True)
'''


def length_reward(prompts, completions, **kwargs):
    """The scorer's function: exact in binary (quarters and eighths)."""
    return [len(c) / 4 for c in completions]


def space_reward(prompts, completions, **kwargs):
    return [c.count(" ") / 4 for c in completions]


@pytest.fixture(scope="module")
def gpt2(cli, world, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "model"
    cli("pretrain", "--data", world / "corpus.txt", "--vocab-size", 300, "--n-layer", 1, "--n-embd", 32, "--n-head", 2,
        "--seq-len", 32, "--batch", 4, "--steps", 3, "--val-every", 0, "--arch", "gpt2", "--out", out, "-q")
    return out


def metric_lines(path, drop=("time/",)):
    """metrics.jsonl's lines without the keys that start with one of drop (the timings, by default)."""
    lines = [json.loads(line, parse_float=str) for line in Path(path).read_text().splitlines()]
    return [{k: v for k, v in d.items() if not k.startswith(tuple(drop))} for d in lines]


def test_grpo_python_rewards_equal_the_cli_with_a_scorer(cli, world, gpt2, tmp_path):
    """Two weighted Python rewards (length/4 + 0.5 * spaces/4) against the CLI's --reward-cmd computing the same."""
    seen = []
    r = leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "py",
                   reward_funcs=[length_reward, space_reward], reward_weights=[1, 0.5], on_step=seen.append, **SMALL)
    assert (r.step, r.steps, r.stopped) == (3, 3, False)
    scorer = tmp_path / "scorer.py"
    scorer.write_text(SCORER)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    cli("grpo", "--policy", gpt2, "--prompts", world / "prompts.jsonl", "--out", tmp_path / "cli", "-q",
        "--reward-cmd", f"{sys.executable} {scorer}", *args)
    for f in ("policy/model.safetensors", "checkpoint/policy_optimizer.safetensors"):
        a, b = (tmp_path / "py" / f).read_bytes(), (tmp_path / "cli" / f).read_bytes()
        assert a == b, f"{f}: the Python-reward run differs from the --reward-cmd run"
    assert metric_lines(tmp_path / "py" / "metrics.jsonl") == metric_lines(tmp_path / "cli" / "metrics.jsonl")
    # the per-function means of the last step: length and spaces of the same responses
    assert seen[-1]["rewards/length_reward/mean"] > 0 and "rewards/space_reward/mean" in seen[-1]


def test_on_step_sees_every_metric_of_metrics_jsonl(world, gpt2, tmp_path):
    seen = []
    leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "run", reward_funcs=length_reward,
               on_step=seen.append, **SMALL)
    lines = metric_lines(tmp_path / "run" / "metrics.jsonl", drop=())
    assert len(lines) == len(seen) == 3
    worst = 0.0
    for got, line in zip(seen, lines):
        assert set(got) - {"rewards/length_reward/mean"} == set(line)
        for k, text in line.items():
            v = got[k]
            if text is None or isinstance(text, str) and not text[:1].isdigit() and text[:1] != "-":
                assert v == text, k  # null and text entries as they are
            elif isinstance(text, int):
                assert v == text, k
            else:  # a REAL: printed with a fixed number of decimals (%.6f, %.4f, %g): within half the last digit
                decimals = len(text.split(".")[1]) if "." in text else 0
                tol = 0.5 * 10.0 ** -decimals * (1 + 1e-9) + 1e-12
                worst = max(worst, abs(v - float(text)) / tol)
                assert abs(v - float(text)) <= tol, f"{k}: on_step {v!r}, metrics.jsonl {text}"
    print(f"worst |on_step - metrics.jsonl| / (half the last printed digit) = {worst:.3f}")


def test_on_step_false_stops_with_a_checkpoint_and_resume_finishes_bit_identical(world, gpt2, tmp_path):
    opts = dict(SMALL, steps=4)
    r = leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "a", reward_funcs=length_reward,
                   on_step=lambda m: m["step"] < 2, **opts)
    assert (r.step, r.stopped) == (2, True)
    assert (tmp_path / "a" / "checkpoint").is_dir()
    assert len(metric_lines(tmp_path / "a" / "metrics.jsonl")) == 2
    r = leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "a", reward_funcs=length_reward,
                   resume=True, **opts)
    assert (r.step, r.stopped) == (4, False)
    leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "b", reward_funcs=length_reward, **opts)
    f = "policy/model.safetensors"
    assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_sigint_stops_the_run_with_a_checkpoint(world, gpt2, tmp_path):
    """SIGINT arriving inside the reward function of step 1 (Python's own handler would raise KeyboardInterrupt
    there and fail the run) finishes step 1, writes the checkpoint and returns; Python's handler is back after."""
    before = signal.getsignal(signal.SIGINT)
    calls = []

    def interrupting_reward(prompts, completions, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return length_reward(prompts, completions)

    r = leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "run", reward_funcs=interrupting_reward,
                   **SMALL)
    assert (r.step, r.stopped) == (1, True)
    assert (tmp_path / "run" / "checkpoint").is_dir() and len(metric_lines(tmp_path / "run" / "metrics.jsonl")) == 1
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):  # and it is Python's again
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes
            pass


def test_tensorboard_option_writes_an_event_file(world, gpt2, tmp_path):
    leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "run", reward_funcs=length_reward,
               tensorboard=tmp_path / "tb", **SMALL)
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].stat().st_size > 1000, files


def test_reward_exception_surfaces_with_its_traceback(world, gpt2, tmp_path):
    def broken_reward(prompts, completions, **kwargs):
        raise ZeroDivisionError("the reward function's own error")

    with pytest.raises(ZeroDivisionError, match="own error") as e:
        leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "run", reward_funcs=[broken_reward],
                   **SMALL)
    assert "broken_reward" in [f.name for f in traceback.extract_tb(e.value.__traceback__)]


def test_on_step_exception_surfaces(world, gpt2, tmp_path):
    def bad(m):
        raise KeyError("from on_step")

    with pytest.raises(KeyError, match="from on_step"):
        leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "run", reward_funcs=length_reward,
                   on_step=bad, **SMALL)
    assert len(metric_lines(tmp_path / "run" / "metrics.jsonl")) == 1  # stopped after the first step


def test_prompt_dicts_pass_their_columns_to_the_reward(gpt2, tmp_path):
    rows = [{"prompt": "The opening looked", "target": 3}, {"prompt": "Their class seemed", "target": 5}]
    got = []

    def target_reward(prompts, completions, target, **kwargs):
        got.append((list(prompts), list(target)))
        return [-abs(len(c) - t) for c, t in zip(completions, target)]

    leash.grpo(policy=gpt2, prompts=rows, out=tmp_path / "run", reward_funcs=target_reward, **SMALL)
    want = {r["prompt"]: r["target"] for r in rows}
    assert got and all(want[p] == t for ps, ts in got for p, t in zip(ps, ts))


def test_one_prompt_text_with_two_sets_of_columns_is_refused(gpt2, tmp_path):
    """A reward function gets a prompt's columns by its text: two rows with one text and other answers would
    hand one of them the other's answer, so the run is refused before it starts."""
    rows = [{"prompt": "What is 2 + 2?", "answer": 4}, {"prompt": "What is 2 + 2?", "answer": 5}]
    with pytest.raises(ValueError, match="row 2 repeats an earlier row's prompt text with other columns"):
        leash.grpo(policy=gpt2, prompts=rows, out=tmp_path / "run", reward_funcs=length_reward, **SMALL)
    assert not (tmp_path / "run").exists()
    same = [{"prompt": "What is 2 + 2?", "answer": 4}, {"prompt": "What is 2 + 2?", "answer": 4}]
    r = leash.grpo(policy=gpt2, prompts=same, out=tmp_path / "ok", reward_funcs=length_reward, **dict(SMALL, steps=1))
    assert r.step == 1


def test_ppo_runs_with_a_python_reward(world, gpt2, tmp_path):
    seen = []
    r = leash.ppo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "run", reward_funcs=length_reward,
                  on_step=seen.append, steps=2, batch=4, max_new=8, epochs=1, sample_every=0, kl_target=2.0)
    assert (r.step, r.stopped) == (2, False) and len(seen) == 2
    assert "loss/value_avg" in seen[-1] and (tmp_path / "run" / "policy" / "model.safetensors").is_file()


def test_unknown_and_wrong_trainer_options_are_refused(world, gpt2, tmp_path):
    with pytest.raises(leash.LeashError, match="max_neww"):
        leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "a", reward_funcs=length_reward,
                   max_neww=8)
    with pytest.raises(leash.LeashError, match="vf_coef.*other trainer"):
        leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "b", reward_funcs=length_reward,
                   vf_coef=0.5)
    with pytest.raises(leash.LeashError, match="max-new"):  # the C range check, as the CLI's
        leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "c", reward_funcs=length_reward,
                   max_new=0)
    with pytest.raises(leash.LeashError, match="exactly one reward"):
        leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "d", reward_funcs=length_reward,
                   gold_reward=True)


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_every_cli_option_is_a_keyword(cli, algo):
    """The options of `leash ALGO --help` against leash_api_rl_train's table, both ways for the algorithm."""
    import re
    names = set(re.findall(r"--([a-z][a-z0-9-]*)", cli(algo, "--help"))) - {"help"}
    missing = sorted(n for n in names if not option_known(algo, n))
    assert not missing, f"leash {algo} options the Python trainer does not take: {missing}"
    other = "ppo" if algo == "grpo" else "grpo"
    other_names = set(re.findall(r"--([a-z][a-z0-9-]*)", cli(other, "--help"))) - names
    assert not [n for n in other_names if option_known(algo, n)]


def test_stop_at_peak_is_an_option_and_says_why_it_stopped(world, gpt2, tmp_path):
    """stop_at_peak=True (the CLI's --stop-at-peak): the tiny model's gold is flat, so no peak: every step runs
    and stop_reason is empty; without it the result is the same."""
    r = leash.grpo(policy=gpt2, prompts=world / "prompts.jsonl", out=tmp_path / "run", reward_funcs=length_reward,
                   gold_metrics=True, stop_at_peak=True, **SMALL)
    assert r.step == r.steps and not r.stopped and r.stop_reason == ""
    assert "gold/reward" in r.metrics
