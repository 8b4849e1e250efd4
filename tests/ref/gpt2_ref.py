"""An independent GPT-2 in plain PyTorch (float64), the reference leash's transformer is checked against.

usage: python3 tests/ref/gpt2_ref.py DIR

DIR holds config.json and model.safetensors (as leash or Hugging Face writes them) and inputs.json:
{"tokens": [[...]], "mask": [[...]], "targets": [[...]], "value_weights": [[...]]} (value_weights only
for a model with a scalar head). Writes DIR/ref.safetensors with "logits" (B, T, V), "loss" (1), "values"
(B, T) if there is a head, and "grad.<name>" for every parameter, all float32 from float64 compute.

loss = mean over positions with target >= 0 of -log softmax(logits)[target]
       + sum_{b,t} value_weights[b][t] * value[b][t]

Shares no code with leash: it reads safetensors with struct + json, and writes the same way.
"""
import json
import math
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", e["dtype"]
        b, en = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:en]), dtype=torch.float32).reshape(e["shape"])
        out[name] = t.to(torch.float64)
    return out


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def main(d):
    cfg = json.load(open(f"{d}/config.json"))
    inp = json.load(open(f"{d}/inputs.json"))
    P = {k.removeprefix("transformer."): v.requires_grad_(True) for k, v in read_safetensors(f"{d}/model.safetensors").items()}
    C, L, NH, eps = cfg["n_embd"], cfg["n_layer"], cfg["n_head"], cfg.get("layer_norm_epsilon", 1e-5)
    hs = C // NH
    tokens = torch.tensor(inp["tokens"])
    mask = torch.tensor(inp["mask"], dtype=torch.bool)
    targets = torch.tensor(inp["targets"])
    B, T = tokens.shape

    # positions count real tokens; padding sits at position 0
    pos = torch.where(mask, torch.cumsum(mask.long(), dim=1) - 1, torch.zeros_like(tokens))
    x = P["wte.weight"][tokens] + P["wpe.weight"][pos]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = causal[None, None, :, :] & mask[:, None, None, :]  # (B, 1, T query, T key)
    for l in range(L):
        p = lambda n: P[f"h.{l}.{n}"]
        h = layer_norm(x, p("ln_1.weight"), p("ln_1.bias"), eps)
        qkv = h @ p("attn.c_attn.weight") + p("attn.c_attn.bias")
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        scores = scores.masked_fill(~allowed, float("-inf"))
        att = torch.softmax(scores, dim=-1)
        att = torch.where(allowed.any(-1, keepdim=True), att, torch.zeros_like(att))  # no key: zero output
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p("attn.c_proj.weight") + p("attn.c_proj.bias")
        h = layer_norm(x, p("ln_2.weight"), p("ln_2.bias"), eps)
        x = x + gelu_tanh(h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias")) @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias")
    hf = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"], eps)
    finish(d, P, hf, hf @ P["wte.weight"].T, targets, inp)


def finish(d, P, hf, logits, targets, inp):
    """The loss (mean next-token NLL + value_weights . values), its backward, and DIR/ref.safetensors."""
    sel = targets >= 0
    logp = torch.log_softmax(logits, dim=-1)
    loss = -logp[sel].gather(-1, targets[sel][:, None]).mean()
    out = {"logits": logits}
    if "score.weight" in P:
        values = (hf @ P["score.weight"].T)[..., 0] + P["score.bias"][0]
        loss = loss + (values * torch.tensor(inp["value_weights"])).sum()
        out["values"] = values
    loss.backward()
    out["loss"] = loss.detach().reshape(1)
    for name, t in P.items():
        out[f"grad.{name}"] = t.grad
    write_safetensors(f"{d}/ref.safetensors", out)


if __name__ == "__main__":
    main(sys.argv[1])
