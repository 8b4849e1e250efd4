"""The other trainers from Python: leash.dpo(...), leash.rm_train(...) and leash.pretrain(...).

As leash.grpo and leash.ppo (leash.train): the options are the CLI's (`leash dpo --help`, `leash rm train
--help`, `leash pretrain --help`) as keyword arguments with underscores, checked by the C library with the
CLI's ranges (leash_api_train in src/api_trainers.c); on_step(metrics) gets every step's metrics by their
metrics.jsonl names (rm_train: step, epoch, loss; after each epoch's validation val/accuracy,
val/gold_accuracy, val/n); returning False stops the run after that step with a checkpoint, as Ctrl-C does.
"""
import ctypes
import os
from ctypes import POINTER, c_char_p, c_int, c_void_p

from ._lib import LeashError, check, lib
from .train import _STEP_FN, TrainResult, _option_text, _Steps

for _name, _res, _args in [
    ("leash_api_train", c_int, [c_char_p, POINTER(c_char_p), POINTER(c_char_p), c_int, _STEP_FN, c_void_p,
                                POINTER(c_int), POINTER(c_int)]),
    ("leash_api_train_option_known", c_int, [c_char_p, c_char_p]),
]:
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args


def train_option_known(trainer, name):
    """True when the trainer ("dpo", "rm_train", "pretrain") takes the option name (underscores or dashes)."""
    return bool(lib.leash_api_train_option_known(trainer.encode(), name.replace("_", "-").encode()))


def _run(trainer, out, on_step, options):
    pairs = []
    for k, v in options.items():
        if not train_option_known(trainer, k):
            raise LeashError(f"leash.{trainer}: {k} is not an option (the options are those of `leash "
                             f"{trainer.replace('_', ' ')} --help`, with _ for -)", -1, "invalid argument")
        if v is None:
            continue
        many = isinstance(v, (list, tuple)) and k == "data"  # pretrain: one --data per file
        pairs += [(k.replace("_", "-"), _option_text(x)) for x in (v if many else [v])]
    pairs.append(("out", _option_text(out)))
    keys = (c_char_p * len(pairs))(*[k.encode() for k, _ in pairs])
    values = (c_char_p * len(pairs))(*[v.encode() for _, v in pairs])
    steps = _Steps(on_step, None)
    final, total = c_int(0), c_int(0)
    lib.leash_request_stop.restype, lib.leash_request_stop.argtypes = None, []
    check(lib.leash_api_sigint_stop(1))
    try:
        rc = lib.leash_api_train(trainer.encode(), keys, values, len(pairs), steps.c_fn, None, ctypes.byref(final),
                                 ctypes.byref(total))
    finally:
        lib.leash_api_sigint_stop(0)
    if steps.error is not None:
        raise steps.error
    check(rc, f"leash.{trainer}")
    return TrainResult(os.fspath(out), final.value, total.value, final.value < total.value, steps.last)


def dpo(policy, data, out, on_step=None, **options):
    """DPO (`leash dpo`): policy, a model directory (or .gguf); data, preference JSONL ({"prompt", "chosen",
    "rejected"}, what `leash judge label` writes); out, the run directory. Options: beta, loss ("sigmoid" or
    "ipo"), lr, batch, epochs, steps, lora_r, ... Returns a TrainResult."""
    return _run("dpo", out, on_step, dict(policy=policy, data=data, **options))


def rm_train(data, out, on_step=None, **options):
    """A Bradley-Terry reward model (`leash rm train`): data, preference JSONL; out, the model directory; init,
    the SFT model to start from (or tokenizer and n_layer, n_embd, ... for a new one). Returns a TrainResult
    (step and steps: updates)."""
    return _run("rm_train", out, on_step, dict(data=data, **options))


def pretrain(data, out, on_step=None, **options):
    """Pre-training / SFT (`leash pretrain`): data, a text file or a list of them; out, the run directory.
    Options: init, tokenizer, vocab_size, n_layer, n_embd, n_head, arch ("gpt2", "llama"), steps, batch,
    seq_len, lr, ... Returns a TrainResult."""
    return _run("pretrain", out, on_step, dict(data=data, **options))
