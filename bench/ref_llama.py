"""PyTorch reference timings for bench/bench_llama.c (Debian's python3-torch, float32, CPU).

usage: python3 bench/ref_llama.py B T STEPS PROMPT NEW THREADS

A Llama at SmolLM2-135M's shapes written the way a PyTorch user would (nn.Linear projections, RMSNorm,
rotary embeddings, SwiGLU, grouped-query attention by repeating key/value heads, tied head), trained with
torch.optim.AdamW: full fine-tuning, then LoRA r 16 on q_proj/v_proj and on every linear layer (frozen
base, trainable A and B as PEFT initialises them); then sampled with a KV cache. Prints
"<full tokens/s> <lora-qv tokens/s> <lora-all tokens/s> <generate tokens/s>".
"""
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

B, T, STEPS, PROMPT, NEW, THREADS = (int(a) for a in sys.argv[1:7])
torch.set_num_threads(THREADS)
torch.manual_seed(0)
V, C, L, NH, NKV, I, THETA = 49152, 576, 30, 9, 3, 1536, 100000.0
HS = C // NH


class LoRALinear(nn.Module):
    def __init__(self, base, r=16, alpha=32):
        super().__init__()
        self.base, self.s = base, alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features).uniform_(-1, 1) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))

    def forward(self, x):
        return self.base(x) + self.s * ((x @ self.A.T) @ self.B.T)


class RMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * self.w


def rope(x, pos):
    inv = 1.0 / THETA ** (torch.arange(0, HS, 2).float() / HS)
    ang = pos[:, None].float() * inv[None, :]
    c, s = ang.cos(), ang.sin()
    a, b = x[..., : HS // 2], x[..., HS // 2 :]
    return torch.cat([a * c - b * s, b * c + a * s], -1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = RMSNorm(), RMSNorm()
        self.q, self.k, self.v = nn.Linear(C, NH * HS, bias=False), nn.Linear(C, NKV * HS, bias=False), nn.Linear(C, NKV * HS, bias=False)
        self.o = nn.Linear(NH * HS, C, bias=False)
        self.gate, self.up, self.down = nn.Linear(C, I, bias=False), nn.Linear(C, I, bias=False), nn.Linear(I, C, bias=False)

    def forward(self, x, pos, cache=None):
        b, t, _ = x.shape
        h = self.n1(x)
        q = rope(self.q(h).view(b, t, NH, HS).transpose(1, 2), pos)
        k = rope(self.k(h).view(b, t, NKV, HS).transpose(1, 2), pos)
        v = self.v(h).view(b, t, NKV, HS).transpose(1, 2)
        if cache is not None:
            if cache[0] is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[0], cache[1] = k, v
        k, v = k.repeat_interleave(NH // NKV, 1), v.repeat_interleave(NH // NKV, 1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        s = k.shape[2]
        att = F.softmax(att.masked_fill(~torch.ones(t, s, dtype=torch.bool).tril(s - t), float("-inf")), -1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, NH * HS))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, C)
        self.layers = nn.ModuleList(Block() for _ in range(L))
        self.norm = RMSNorm()

    def forward(self, idx, pos0=0, caches=None):
        pos = torch.arange(pos0, pos0 + idx.shape[1])
        x = self.emb(idx)
        for i, blk in enumerate(self.layers):
            x = blk(x, pos, caches[i] if caches is not None else None)
        return self.norm(x) @ self.emb.weight.T


def train_tps(model, params):
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, V, (B, T + 1))

    def step():
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, V), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(STEPS):
        step()
    return STEPS * B * T / (time.perf_counter() - t0)


def with_lora(names):
    m = Llama()
    for p in m.parameters():
        p.requires_grad_(False)
    for blk in m.layers:
        for n in names:
            setattr(blk, n, LoRALinear(getattr(blk, n)))
    return m, [p for p in m.parameters() if p.requires_grad]


full = Llama()
out = [train_tps(full, list(full.parameters()))]
for names in (["q", "v"], ["q", "k", "v", "o", "gate", "up", "down"]):
    m, params = with_lora(names)
    out.append(train_tps(m, params))


@torch.no_grad()
def generate():
    caches = [[None, None] for _ in range(L)]
    logits = full(torch.randint(0, V, (B, PROMPT)), 0, caches)[:, -1]
    for i in range(NEW):
        nxt = torch.multinomial(F.softmax(logits, -1), 1)
        logits = full(nxt, PROMPT + i, caches)[:, -1]


generate()
t0 = time.perf_counter()
generate()
out.append(B * NEW / (time.perf_counter() - t0))
print(" ".join(f"{x:.1f}" for x in out))
