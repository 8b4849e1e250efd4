"""A GPT-2 in plain PyTorch, written the way a PyTorch user would (nanoGPT-style modules, manual causal
attention: torch 1.13 has no fused attention on CPU), for the side-by-side benchmarks in bench/. The same
architecture as leash: pre-LayerNorm, tanh GELU, tied LM head; an optional scalar head."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def make(V, P, C, L, NH, head=False):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x, cache=None):
            b, t, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (z.view(b, t, NH, C // NH).transpose(1, 2) for z in (q, k, v))
            if cache is not None:
                if cache[0] is not None:
                    k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
                cache[0], cache[1] = k, v
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
            s = k.shape[2]
            mask = torch.ones(t, s, dtype=torch.bool).tril(s - t)
            att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
            x = x + self.c_proj((att @ v).transpose(1, 2).reshape(b, t, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(C, 1) if head else None
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(P, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C)

        def forward(self, idx, pos0=0, caches=None, values=False):
            pos = torch.arange(pos0, pos0 + idx.shape[1])
            x = self.wte(idx) + self.wpe(pos)
            for i, blk in enumerate(self.h):
                x = blk(x, caches[i] if caches is not None else None)
            h = self.ln_f(x)
            logits = h @ self.wte.weight.T
            return (logits, self.head(h)[..., 0]) if values else logits

    return GPT()
