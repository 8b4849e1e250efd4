"""PyTorch reference timings for bench/bench_kl.c (Debian's python3-torch).

usage: python3 bench/ref_kl.py N V THREADS REPS
Prints one line: "<seconds per exact-KL call with gradient> <seconds per log_softmax call>" for N rows
of V float32 logits, best of REPS, on THREADS threads. The exact KL is computed as a user of PyTorch
would: log_softmax of both rows, sum p * (log p - log q), backward to the policy logits.
"""
import sys
import time

import torch

N, V, threads, reps = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
z = (torch.rand(N, V, generator=g) * 20 - 10).requires_grad_(True)
r = torch.rand(N, V, generator=g) * 20 - 10


def kl_with_grad():
    lp = torch.log_softmax(z, dim=-1)
    lq = torch.log_softmax(r, dim=-1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    z.grad = None
    kl.sum().backward()
    return kl


def log_softmax_only():
    with torch.no_grad():
        return torch.log_softmax(z, dim=-1)


def best(fn):
    fn()  # warm-up
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


print(f"{best(kl_with_grad):.9f} {best(log_softmax_only):.9f}")
