"""PyTorch reference timings for bench/bench_ppo.c: one PPO step of the demo's shape, split by phase.

usage: python3 bench/ref_ppo.py V C L NH B PROMPT NEW EPOCHS STEPS THREADS

The same work as a leash PPO step, written the way a PyTorch user would: B rollouts of NEW tokens with a
KV cache at temperature 1; policy and reference log-probs of the responses and the exact KL; values; reward
model scores at the last token; per-token rewards with the KL, GAE, whitened advantages; EPOCHS passes of
one minibatch each: clipped policy loss and clipped value loss, AdamW on policy and value model.
Prints "<rollout s> <scoring s> <reward s> <update s>" per step, averaged over STEPS after a warm-up step.
"""
import sys
import time

import torch
import torch.nn.functional as F

from torch_gpt import make

V, C, L, NH, B, PROMPT, NEW, EPOCHS, STEPS, THREADS = (int(a) for a in sys.argv[1:11])
torch.set_num_threads(THREADS)
torch.manual_seed(0)
T = PROMPT + NEW
policy, ref = make(V, T, C, L, NH), make(V, T, C, L, NH)
value, rm = make(V, T, C, L, NH, head=True), make(V, T, C, L, NH, head=True)
ref.load_state_dict(policy.state_dict())
for p in list(ref.parameters()) + list(rm.parameters()):
    p.requires_grad_(False)
popt = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.0)
vopt = torch.optim.AdamW(value.parameters(), lr=1e-4, weight_decay=0.0)


def step():
    t = [time.perf_counter()]
    with torch.no_grad():  # rollout
        caches = [[None, None] for _ in range(L)]
        seq = torch.randint(0, V, (B, PROMPT))
        logits = policy(seq, 0, caches)[:, -1]
        for i in range(NEW):
            nxt = torch.multinomial(F.softmax(logits, -1), 1)
            seq = torch.cat([seq, nxt], 1)
            logits = policy(nxt, PROMPT + i, caches)[:, -1]
    t.append(time.perf_counter())
    with torch.no_grad():  # scoring: policy and reference log-probs, exact KL, values
        tgt = seq[:, PROMPT:]
        lp_all = F.log_softmax(policy(seq)[:, PROMPT - 1:-1], -1)
        lq_all = F.log_softmax(ref(seq)[:, PROMPT - 1:-1], -1)
        old_lp = lp_all.gather(-1, tgt[..., None])[..., 0]
        ref_lp = lq_all.gather(-1, tgt[..., None])[..., 0]
        kl_exact = (lp_all.exp() * (lp_all - lq_all)).sum(-1)
        _, vals = value(seq, values=True)
        old_v = vals[:, PROMPT - 1:-1]
    t.append(time.perf_counter())
    with torch.no_grad():  # rewards
        _, scores = rm(seq, values=True)
        score = scores[:, -1]
    t.append(time.perf_counter())
    kl = old_lp - ref_lp  # k1 in the reward, beta 0.1
    rewards = -0.1 * kl
    rewards[:, -1] += score
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B)
    for j in reversed(range(NEW)):  # GAE, gamma 1, lambda 0.95
        nv = old_v[:, j + 1] if j + 1 < NEW else torch.zeros(B)
        delta = rewards[:, j] + nv - old_v[:, j]
        last = delta + 0.95 * last
        adv[:, j] = last
    ret = adv + old_v
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    for _ in range(EPOCHS):  # updates: one minibatch per epoch
        lp = F.log_softmax(policy(seq)[:, PROMPT - 1:-1], -1).gather(-1, tgt[..., None])[..., 0]
        ratio = (lp - old_lp).exp()
        loss = torch.max(-adv * ratio, -adv * ratio.clamp(0.8, 1.2)).mean()
        popt.zero_grad(set_to_none=True)
        loss.backward()
        popt.step()
        _, v = value(seq, values=True)
        v = v[:, PROMPT - 1:-1]
        vc = old_v + (v - old_v).clamp(-0.2, 0.2)
        vloss = 0.1 * 0.5 * torch.max((v - ret) ** 2, (vc - ret) ** 2).mean()
        vopt.zero_grad(set_to_none=True)
        vloss.backward()
        vopt.step()
    t.append(time.perf_counter())
    del kl_exact
    return [t[i + 1] - t[i] for i in range(4)]


step()
tot = [0.0] * 4
for _ in range(STEPS):
    tot = [a + b for a, b in zip(tot, step())]
print(" ".join(f"{x / STEPS:.6f}" for x in tot))
