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


from torch_gpt import make

model = make(V, T + NEW + PROMPT, C, L, NH)
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
