"""PyTorch reference timings for bench/bench_gpt.c (Debian's python3-torch, float32, CPU).

usage: python3 bench/ref_gpt.py V T C L NH B STEPS PROMPT NEW THREADS

The same GPT-2 as leash (pre-LayerNorm, tanh GELU, tied head), written the way a PyTorch user would
(nanoGPT-style modules, manual causal attention: torch 1.13 has no fused attention on CPU), trained with
torch.optim.AdamW, and sampled with a KV cache. Prints "<train tokens/s> <generate tokens/s>".
"""
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

V, T, C, L, NH, B, STEPS, PROMPT, NEW, THREADS = (int(a) for a in sys.argv[1:11])
torch.set_num_threads(THREADS)
torch.manual_seed(0)


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
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(T + NEW + PROMPT, C)
        self.h = nn.ModuleList(Block() for _ in range(L))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, idx, pos0=0, caches=None):
        pos = torch.arange(pos0, pos0 + idx.shape[1])
        x = self.wte(idx) + self.wpe(pos)
        for i, blk in enumerate(self.h):
            x = blk(x, caches[i] if caches is not None else None)
        return self.ln_f(x) @ self.wte.weight.T


model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
x = torch.randint(0, V, (B, T + 1))


def train_step():
    logits = model(x[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


train_step()  # warm-up
t0 = time.perf_counter()
for _ in range(STEPS):
    train_step()
train_tps = STEPS * B * T / (time.perf_counter() - t0)


@torch.no_grad()
def generate():
    caches = [[None, None] for _ in range(L)]
    idx = torch.randint(0, V, (B, PROMPT))
    logits = model(idx, 0, caches)[:, -1]
    for i in range(NEW):
        nxt = torch.multinomial(F.softmax(logits, -1), 1)
        logits = model(nxt, PROMPT + i, caches)[:, -1]


generate()
t0 = time.perf_counter()
generate()
gen_tps = B * NEW / (time.perf_counter() - t0)
print(f"{train_tps:.1f} {gen_tps:.1f}")
