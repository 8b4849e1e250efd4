"""An independent Llama-family transformer in plain PyTorch (float64), the reference leash's Llama
architecture is checked against: RMSNorm, rotary embeddings (rope_theta; rope_scaling linear or llama3),
SwiGLU, grouped-query attention, optional q/k/v, o and MLP biases (Qwen2: q/k/v only), tied or untied
LM head, and leash's scalar head.

usage: python3 tests/ref/llama_ref.py DIR

Same files in and out as gpt2_ref.py (whose safetensors reader and loss/gradient writer it uses): DIR holds
config.json, model.safetensors and inputs.json; writes DIR/ref.safetensors with "logits", "loss",
"values" (scalar head) and "grad.<name>" for every parameter. Written from the Hugging Face config
semantics (transformers' LlamaConfig / Qwen2Config), sharing no code with leash.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_ref import finish, read_safetensors  # noqa: E402

torch.set_default_dtype(torch.float64)


def rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def inv_frequencies(cfg, hs):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, lo, hi = rs["factor"], rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old = rs["original_max_position_embeddings"]
        out = []
        for f in inv.tolist():
            wavelen = 2 * math.pi / f
            if wavelen < old / hi:
                out.append(f)
            elif wavelen > old / lo:
                out.append(f / factor)
            else:
                s = (old / wavelen - lo) / (hi - lo)
                out.append((1 - s) * f / factor + s * f)
        inv = torch.tensor(out)
    else:
        assert kind == "default", kind
    return inv


def rotate(x, pos, inv):
    # x (B, H, T, hs): pairs (i, i + hs/2) rotated by pos * inv[i]
    ang = pos[:, None, :, None].double() * inv[None, None, None, :]
    c, s = torch.cos(ang), torch.sin(ang)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * c - b * s, b * c + a * s], dim=-1)


def main(d):
    cfg = json.load(open(f"{d}/config.json"))
    inp = json.load(open(f"{d}/inputs.json"))
    P = {k: v.requires_grad_(True) for k, v in read_safetensors(f"{d}/model.safetensors").items()}
    C, L, NH = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    NKV = cfg.get("num_key_value_heads", NH)
    hs = cfg.get("head_dim") or C // NH
    eps = cfg.get("rms_norm_eps", 1e-6)
    inv = inv_frequencies(cfg, hs)
    tokens = torch.tensor(inp["tokens"])
    mask = torch.tensor(inp["mask"], dtype=torch.bool)
    targets = torch.tensor(inp["targets"])
    B, T = tokens.shape
    pos = torch.where(mask, torch.cumsum(mask.long(), dim=1) - 1, torch.zeros_like(tokens))

    def lin(x, name):
        y = x @ P[name + ".weight"].T
        return y + P[name + ".bias"] if name + ".bias" in P else y

    x = P["model.embed_tokens.weight"][tokens]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = causal[None, None, :, :] & mask[:, None, None, :]
    for l in range(L):
        pre = f"model.layers.{l}."
        h = rms_norm(x, P[pre + "input_layernorm.weight"], eps)
        q = lin(h, pre + "self_attn.q_proj").view(B, T, NH, hs).transpose(1, 2)
        k = lin(h, pre + "self_attn.k_proj").view(B, T, NKV, hs).transpose(1, 2)
        v = lin(h, pre + "self_attn.v_proj").view(B, T, NKV, hs).transpose(1, 2)
        q, k = rotate(q, pos, inv), rotate(k, pos, inv)
        k, v = k.repeat_interleave(NH // NKV, dim=1), v.repeat_interleave(NH // NKV, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        scores = scores.masked_fill(~allowed, float("-inf"))
        att = torch.softmax(scores, dim=-1)
        att = torch.where(allowed.any(-1, keepdim=True), att, torch.zeros_like(att))
        y = (att @ v).transpose(1, 2).reshape(B, T, NH * hs)
        x = x + lin(y, pre + "self_attn.o_proj")
        h = rms_norm(x, P[pre + "post_attention_layernorm.weight"], eps)
        g = lin(h, pre + "mlp.gate_proj")
        x = x + lin(torch.nn.functional.silu(g) * lin(h, pre + "mlp.up_proj"), pre + "mlp.down_proj")
    hf = rms_norm(x, P["model.norm.weight"], eps)
    head = P["lm_head.weight"] if "lm_head.weight" in P else P["model.embed_tokens.weight"]
    finish(d, P, hf, hf @ head.T, targets, inp)

if __name__ == "__main__":
    main(sys.argv[1])
