"""leash: RL fine-tuning of language models with a KL leash, from Python.

A thin layer over the C library (libleash.so, loaded with ctypes): numpy arrays in and out, errors as
LeashError carrying the library's message. See docs/python.md.

    import leash
    leash.kl_exact(logits, ref_logits)                 # KL math on numpy arrays (leash.kl)
    leash.frontier_fit(kl, gold_gain, form="rl")       # Gao et al.'s frontier; bon_kl_beirami (leash.frontier)
    m = leash.Model.load("model-dir-or.gguf")          # models (leash.model)
    m.score(["a text"]); m.generate("a prompt", seed=1); m.tokenizer.encode("text")

    leash.grpo(policy="sft", prompts="prompts.jsonl", out="run", reward_funcs=[f], steps=10)  # trainers (leash.train)
    leash.dpo(policy="sft", data="prefs.jsonl", out="run3"); leash.rm_train(data="prefs.jsonl", init="sft", out="rm")
    leash.pretrain(data="corpus.txt", out="sft", steps=100)                                    # (leash.trainers)
"""
from ._lib import LIBRARY_PATH, LeashError
from .kl import (bon, bon_kl_formula, entropy, k1, k2, k3, kl_estimate, kl_exact, kl_objective, log_softmax,
                 masked_reduce, optimum, pi_star)
from .frontier import FrontierFit, bon_kl_beirami, frontier_fit
from .model import Generation, Model, Score
from .tokenizer import Tokenizer
from .train import TrainResult, grpo, ppo
from .trainers import dpo, pretrain, rm_train

__version__ = "0.1.0"

__all__ = [
    "LIBRARY_PATH", "LeashError", "Generation", "Model", "Score", "Tokenizer",
    "bon", "bon_kl_formula", "entropy", "k1", "k2", "k3", "kl_estimate", "kl_exact", "kl_objective",
    "log_softmax", "masked_reduce", "optimum", "pi_star", "TrainResult", "grpo", "ppo",
    "dpo", "pretrain", "rm_train", "FrontierFit", "bon_kl_beirami", "frontier_fit",
]
