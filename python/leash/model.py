"""Language models (include/leash/gpt.h): load, score texts, generate with the KV-cache sampler.

A Model is frozen at load (no gradients: about half the activation memory), since scoring and sampling are
all it does here; training goes through the trainers, which load their models from paths themselves.
"""
import ctypes
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

from ._lib import LeashError, check, lib, ptr
from .tokenizer import Tokenizer

_MAX_EOS = 8  # LEASH_MAX_EOS


@dataclass
class Score:
    """One scored text, as `leash score --json` reports it. tokens (n,) int32; logprobs (n,) float32 with
    logprobs[t] = log p(tokens[t] | tokens[<t]) in nats, and logprobs[0] = nan: the first token has nothing
    before it and is not scored (use logprobs[1:]). sum: nats per sequence over the n - 1 scored tokens
    (float64, summed in order); mean: nats per token; perplexity = exp(-mean)."""
    text: str
    tokens: np.ndarray
    logprobs: np.ndarray
    sum: float
    mean: float
    perplexity: float
    n_scored: int


@dataclass
class Generation:
    """One sampled continuation. text: the new tokens' text (the ending EOS token left out, as `leash sample`
    prints it); tokens (k,) int32 the new ids, the EOS included when it stopped there; logprobs (k,) float32
    each token's log-prob under the distribution it was drawn from (temperature, then top-k / top-p
    renormalised); finish_reason "eos" or "length"."""
    prompt: str
    text: str
    tokens: np.ndarray
    logprobs: np.ndarray
    finish_reason: str


class Model:
    """A model loaded with Model.load(path): a Hugging Face-style directory (config.json, model.safetensors,
    the tokenizer files), a PEFT LoRA directory, or a .gguf file."""

    def __init__(self, handle, tokenizer, path):
        self._h = handle
        self.tokenizer = tokenizer
        self.path = path
        self._lock = threading.Lock()  # one forward at a time: the model's activation buffers are shared
        keys = lib.leash_api_config_keys().decode().split(",")
        cfg = {"model_type": lib.leash_api_model_type(handle).decode()}
        for k in keys:
            v = ctypes.c_double()
            check(lib.leash_api_config_value(handle, k.encode(), ctypes.byref(v)))
            cfg[k] = v.value if k in ("rope_theta", "layer_norm_epsilon") else int(v.value)
        cfg["arch"] = "gpt2" if cfg["model_type"] == "gpt2" else "llama"
        ids = np.empty(_MAX_EOS, np.int32)
        n = lib.leash_api_eos_ids(handle, tokenizer._handle(), ptr(ids), _MAX_EOS)
        self.eos_token_ids = [int(i) for i in ids[:n]]
        self.config = cfg

    @classmethod
    def load(cls, path):
        """Loads the model and its tokenizer from path (a directory or a .gguf file)."""
        path = os.fspath(path)
        h = ctypes.c_void_p()
        check(lib.leash_gpt_load(ctypes.byref(h), path.encode()))
        try:
            tok = Tokenizer.load(path)
            lib.leash_gpt_freeze(h)
            return cls(h, tok, path)
        except BaseException:
            lib.leash_gpt_free(h)
            raise

    def close(self):
        """Frees the C model (and its tokenizer) now, otherwise when the object is collected."""
        h, self._h = getattr(self, "_h", None), None
        if h:
            lib.leash_gpt_free(h)
        tok = getattr(self, "tokenizer", None)
        if tok is not None:
            tok.close()

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._h:
            raise LeashError(f"the model {self.path} is closed")
        return self._h

    def __repr__(self):
        c = self.config
        return (f"leash.Model({self.path!r}, {c['model_type']}, {c['n_layer']} layers, n_embd {c['n_embd']}, "
                f"vocab {c['vocab_size']}, {c['num_params']} parameters)")

    # ---- scoring -------------------------------------------------------------------------------------

    def _score_ids(self, text, bos):
        ids = self.tokenizer.encode(text)
        if bos:
            b = self.config["bos_token_id"]
            if b < 0:
                raise LeashError(f"bos=True: the model in {self.path} has no BOS token (config.json bos_token_id)")
            ids = np.concatenate([np.array([b], np.int32), ids])
        if ids.size < 2:
            raise LeashError(f"{text!r} has {ids.size} token(s): nothing to score (a token's log-prob needs a "
                             "token before it; bos=True scores the first token against BOS)")
        if ids.size > self.config["n_positions"]:
            raise LeashError(f"{text[:40]!r}... has {ids.size} tokens, more than the model's n_positions = "
                             f"{self.config['n_positions']}; shorten it (no sliding window)")
        return ids

    def score(self, texts, temperature=1.0, bos=False):
        """Per-token log-probs of each text, as `leash score --json` computes them (the same numbers, bit for
        bit): special-token strings in the text are their ids; bos=True puts the model's BOS token first
        (off by default, as Hugging Face's GPT-2 and SmolLM2 tokenizers add none); log-softmax of
        logits / temperature. texts: a str (returns one Score) or a list of str (returns a list)."""
        one = isinstance(texts, str)
        results = [self._score(self._score_ids(t, bos), t, temperature) for t in ([texts] if one else texts)]
        return results[0] if one else results

    def score_ids(self, ids, temperature=1.0):
        """score() of a token sequence (ids: ints, at least 2): the same Score, text decoded from the ids."""
        a = np.ascontiguousarray(ids, dtype=np.int32).reshape(-1)
        return self._score(a, self.tokenizer.decode(a), temperature)

    def _score(self, ids, text, temperature):
        lp = np.empty(ids.size, np.float32)  # (n): lp[0] is the unscored first token
        lp[0] = np.nan
        with self._lock:
            status = lib.leash_api_score(self._handle(), ptr(ids), int(ids.size), float(temperature), ptr(lp[1:]))
            check(status)
        total = 0.0
        for v in lp[1:].tolist():  # in order, in float64: the CLI's sum
            total += v
        n = ids.size - 1
        return Score(text, ids, lp, total, total / n, math.exp(-total / n), n)

    # ---- generation ----------------------------------------------------------------------------------

    def generate(self, prompts, max_new_tokens=64, temperature=1.0, top_k=0, top_p=1.0, seed=0, num_samples=1):
        """Samples continuations with the KV cache, stopping at the model's end-of-text ids (eos_token_ids).

        prompts: a str or a list of str (special-token strings in them are their ids). Each prompt gets
        num_samples continuations; sequence i of the batch (prompt i // num_samples) draws from random stream
        i of seed, so one prompt with num_samples = n gives exactly `leash sample --num n` with the same seed
        and options, and a sequence's tokens do not depend on the rest of the batch. top_k 0 and top_p 1 are
        off. Returns a list of Generation (prompt-major); for a single str prompt and num_samples = 1, one
        Generation."""
        one = isinstance(prompts, str)
        plist = [prompts] if one else list(prompts)
        if not plist:
            return []
        if int(num_samples) < 1 or int(max_new_tokens) < 1:
            raise ValueError(f"num_samples = {num_samples}, max_new_tokens = {max_new_tokens}; both must be >= 1")
        encoded = [self.tokenizer.encode(p) for p in plist]
        seqs = [e for e in encoded for _ in range(int(num_samples))]
        B, M = len(seqs), int(max_new_tokens)
        packed = np.concatenate(seqs).astype(np.int32, copy=False)
        lens = np.array([s.size for s in seqs], np.int32)
        out = np.empty((B, M), np.int32)
        lps = np.empty((B, M), np.float32)
        olens = np.empty(B, np.int32)
        with self._lock:
            status = lib.leash_api_generate(self._handle(), self.tokenizer._handle(), float(temperature), int(top_k),
                                            float(top_p), M, int(seed), ptr(packed), ptr(lens), B, None, ptr(out),
                                            ptr(lps), ptr(olens))
            check(status)
        eos = set(self.eos_token_ids)
        results = []
        for i in range(B):
            k = int(olens[i])
            toks, lp = out[i, :k].copy(), lps[i, :k].copy()
            ended = k > 0 and int(toks[-1]) in eos
            text = self.tokenizer.decode(toks[:-1] if ended else toks)
            results.append(Generation(plist[i // int(num_samples)], text, toks, lp, "eos" if ended else "length"))
        return results[0] if one and int(num_samples) == 1 else results
