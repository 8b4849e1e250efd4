"""The RL trainers (include/leash/rl.h) from Python: leash.grpo(...) and leash.ppo(...).

Options are the CLI's (`leash grpo --help`, `leash ppo --help`) as keyword arguments with underscores
(max_new=16 is --max-new 16; a flag is True); they cross to the C library as the CLI's texts
(leash_api_rl_train in src/api.c), which checks them with the CLI's ranges and refuses unknown ones.

Rewards are Python callables with TRL's signature, reward(prompts, completions, **kwargs) -> list of floats,
called once per step with every response of the step; several are summed with reward_weights. The prompt
rows' other JSONL columns come as keyword lists (TRL's convention), found by the prompt's text.
on_step(metrics) gets every metric of a step by its metrics.jsonl name; returning False stops the run after
that step with a checkpoint, as Ctrl-C does.
"""
import ctypes
import json
import math
import os
import tempfile
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_double, c_int, c_void_p
from dataclasses import dataclass, field

from ._lib import LeashError, check, lib

_REWARD_FN = CFUNCTYPE(c_int, POINTER(c_char_p), POINTER(c_char_p), c_int, POINTER(c_double), c_void_p)
_STEP_FN = CFUNCTYPE(c_int, c_void_p, c_int, c_int, c_void_p)

for _name, _res, _args in [
    ("leash_api_rl_train", c_int, [c_char_p, POINTER(c_char_p), POINTER(c_char_p), c_int, _REWARD_FN, c_void_p,
                                   _STEP_FN, c_void_p, POINTER(c_int)]),
    ("leash_api_rl_option_known", c_int, [c_char_p, c_char_p]),
    ("leash_api_metric", c_int, [c_void_p, c_int, POINTER(c_char_p), POINTER(c_int), POINTER(c_double),
                                 POINTER(c_char_p), POINTER(c_char_p)]),
    ("leash_api_sigint_stop", c_int, [c_int]),
    ("leash_api_rl_stop_reason", c_char_p, []),
]:
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

_METRIC_REAL, _METRIC_INT, _METRIC_TEXT = 0, 1, 2


@dataclass
class TrainResult:
    """What a run did: step, the last step done; steps, the steps asked; stopped, True when on_step, Ctrl-C or
    stop_at_peak ended it early (a checkpoint is in out/checkpoint: resume with resume=True); metrics, the last
    step's; stop_reason, why the run stopped itself (stop_at_peak: the fit and the KLs), else ""."""
    out: str
    step: int
    steps: int
    stopped: bool
    metrics: dict = field(default_factory=dict)
    stop_reason: str = ""


def option_known(algo, name):
    """True when `leash ALGO` takes the option name (underscores or dashes)."""
    return bool(lib.leash_api_rl_option_known(algo.encode(), name.replace("_", "-").encode()))


def metrics_dict(table):
    """A C metrics table (leash_metrics *) as {name: value}: REAL and INT as numbers (None for not measured),
    TEXT as str."""
    out = {}
    name, kind, value, text, fmt = c_char_p(), c_int(), c_double(), c_char_p(), c_char_p()
    n = lib.leash_api_metric(table, 0, name, kind, value, text, fmt)
    for i in range(n):
        lib.leash_api_metric(table, i, name, kind, value, text, fmt)
        key = name.value.decode()
        if kind.value == _METRIC_TEXT:
            out[key] = (text.value or b"").decode("utf-8", "replace")
        elif kind.value == _METRIC_INT:
            out[key] = int(value.value)
        else:
            out[key] = None if math.isnan(value.value) else value.value
    return out


def _option_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return os.fspath(v) if isinstance(v, os.PathLike) else str(v)


def _prompt_rows(prompts):
    """(path of a JSONL file, its rows): a list of dicts is written to a temporary file (the caller removes it)."""
    if isinstance(prompts, (str, os.PathLike)):
        with open(prompts, encoding="utf-8") as f:
            return os.fspath(prompts), [json.loads(line) for line in f if line.strip()], None
    rows = [dict(r) if not isinstance(r, str) else {"prompt": r} for r in prompts]
    fd, path = tempfile.mkstemp(prefix="leash-prompts-", suffix=".jsonl")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for r in rows:
            if "prompt" not in r:
                os.unlink(path)
                raise ValueError(f"prompts: a row without a \"prompt\" key: {r!r}")
            f.write(json.dumps(r) + "\n")
    return path, rows, path


class _Rewards:
    """The C batch reward callback over TRL-style reward functions; an exception is kept to re-raise."""

    def __init__(self, funcs, weights, rows):
        self.funcs, self.weights = funcs, weights
        self.extra = {}  # prompt text -> its row's other columns (the C callback hands over the texts, not the rows)
        for i, r in enumerate(rows):
            cols = {k: v for k, v in r.items() if k != "prompt"}
            if self.extra.setdefault(r["prompt"], cols) != cols:
                raise ValueError(f"prompts: row {i + 1} repeats an earlier row's prompt text with other columns "
                                 f"({cols!r} against {self.extra[r['prompt']]!r}); a Python reward function gets a "
                                 f"prompt's columns by its text, so give each such row a distinct prompt or the same "
                                 f"columns")
        self.columns = sorted({k for r in rows for k in r if k != "prompt"})
        self.error = None
        self.means = {}  # the last step's batch mean of each function, by name
        self.c_fn = _REWARD_FN(self._call)

    def _call(self, c_prompts, c_completions, n, rewards, _ctx):
        try:
            prompts = [c_prompts[i].decode("utf-8", "replace") for i in range(n)]
            completions = [c_completions[i].decode("utf-8", "replace") for i in range(n)]
            kwargs = {k: [self.extra.get(p, {}).get(k) for p in prompts] for k in self.columns}
            total = [0.0] * n
            for f, w in zip(self.funcs, self.weights):
                vals = f(prompts=prompts, completions=completions, **kwargs)
                vals = [float("nan") if v is None else float(v) for v in vals]
                if len(vals) != n:
                    raise ValueError(f"reward function {_name_of(f)} returned {len(vals)} rewards for {n} completions")
                self.means[_name_of(f)] = sum(vals) / n if n else float("nan")
                total = [t + w * v for t, v in zip(total, vals)] if len(self.funcs) > 1 or w != 1 else vals
            for i in range(n):
                rewards[i] = total[i]
            return 0
        except BaseException as e:  # KeyboardInterrupt too: it stops the run, then is re-raised
            self.error = e
            return 1


def _name_of(f):
    return getattr(f, "__name__", None) or type(f).__name__


class _Steps:
    """The C step callback over on_step; returning False or raising stops the run after the step."""

    def __init__(self, on_step, rewards):
        self.on_step, self.rewards = on_step, rewards
        self.error, self.last, self.stopped_by_user = None, {}, False
        self.c_fn = _STEP_FN(self._call)

    def _call(self, table, step, steps, _ctx):
        try:
            m = metrics_dict(table) if table else {"step": step}
            if self.rewards:
                for name, mean in self.rewards.means.items():
                    m[f"rewards/{name}/mean"] = mean
            self.last = m
            if self.on_step is not None and self.on_step(m) is False:
                self.stopped_by_user = True
                return 1
            return 0
        except KeyboardInterrupt:
            lib.leash_request_stop()
            return 1
        except BaseException as e:
            self.error = e
            return 1


def _train(algo, policy, prompts, out, reward_funcs, reward_weights, on_step, options):
    if reward_funcs is not None and callable(reward_funcs):
        reward_funcs = [reward_funcs]
    reward_funcs = list(reward_funcs or [])
    if reward_weights is None:
        reward_weights = [1.0] * len(reward_funcs)
    if len(reward_weights) != len(reward_funcs):
        raise ValueError(f"reward_weights: {len(reward_weights)} weights for {len(reward_funcs)} reward functions")
    for k in options:
        if not option_known(algo, k):
            what = "is an option of the other trainer" if option_known("ppo" if algo == "grpo" else "grpo", k) else \
                "is not an option"
            raise LeashError(f"leash.{algo}: {k} {what} (the options are those of `leash {algo} --help`, "
                             "with _ for -)", -1, "invalid argument")
    path, rows, tmp = _prompt_rows(prompts)
    try:
        opts = {"policy": policy, "prompts": path, "out": out}
        opts.update({k.replace("_", "-"): v for k, v in options.items() if v is not None})
        keys = [k.encode() for k in opts]
        values = [_option_text(v).encode() for v in opts.values()]
        c_keys, c_values = (c_char_p * len(keys))(*keys), (c_char_p * len(values))(*values)
        rewards = _Rewards(reward_funcs, [float(w) for w in reward_weights], rows) if reward_funcs else None
        steps = _Steps(on_step, rewards)
        final = c_int(0)
        lib.leash_request_stop.restype, lib.leash_request_stop.argtypes = None, []
        check(lib.leash_api_sigint_stop(1))
        try:
            rc = lib.leash_api_rl_train(algo.encode(), c_keys, c_values, len(keys),
                                        rewards.c_fn if rewards else _REWARD_FN(), None, steps.c_fn, None,
                                        ctypes.byref(final))
        finally:
            lib.leash_api_sigint_stop(0)
        for err in (rewards.error if rewards else None, steps.error):
            if err is not None:
                raise err
        check(rc, f"leash.{algo}")
        n_steps = int(opts.get("steps", 100))
        return TrainResult(os.fspath(out), final.value, n_steps, final.value < n_steps, steps.last,
                           lib.leash_api_rl_stop_reason().decode())
    finally:
        if tmp:
            os.unlink(tmp)


def grpo(policy, prompts, out, reward_funcs=None, reward_weights=None, on_step=None, **options):
    """GRPO (`leash grpo`): policy, a model directory (or .gguf); prompts, a JSONL path or a list of dicts
    ({"prompt": ..., other columns passed to the reward functions}) or strings; out, the run directory.
    reward_funcs: TRL-style functions (or give reward=DIR, reward_cmd=CMD or gold_reward=True instead).
    Returns a TrainResult; a reward function's or on_step's exception is re-raised after the run stops."""
    return _train("grpo", policy, prompts, out, reward_funcs, reward_weights, on_step, options)


def ppo(policy, prompts, out, reward_funcs=None, reward_weights=None, on_step=None, **options):
    """PPO (`leash ppo`), with the arguments of grpo() and PPO's options."""
    return _train("ppo", policy, prompts, out, reward_funcs, reward_weights, on_step, options)
