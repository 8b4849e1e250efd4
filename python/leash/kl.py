"""The KL math of include/leash/kl.h and optimum.h on numpy arrays (docs/kl.md has the derivations).

Shapes: logits (..., V) with V the vocabulary (the last axis); any leading axes are rows. Token log-probs
(...) of any shape. Outcome distributions (M,) in float64. Logit inputs are read as float32 (the library's
storage type; sums over a row run in float64), outcome distributions as float64. Arrays already of that
dtype and C-contiguous are read in place; outputs are new arrays the C code writes into.

Units: a per-token KL is in nats per token; a sum over a response's tokens in nats per sequence.
"""
import ctypes

import numpy as np

from ._lib import as_array, c_int_size, check, lib, ptr

ESTIMATORS = ("k1", "k2", "k3", "abs", "k3+")  # also "kl" (k1), "mse" (k2), "low_var_kl" (k3)
AGGREGATIONS = {"seq_sum": 0, "token_mean": 1, "seq_mean": 2}


def _rows(logits, name):
    a = as_array(logits, np.float32, name)
    if a.ndim == 0:
        raise ValueError(f"{name}: a scalar; logits need a vocabulary axis (..., V)")
    V = a.shape[-1]
    N = a.size // V if V else 0
    return a, c_int_size(N, f"{name} rows"), c_int_size(V, f"{name} V")


def log_softmax(logits, temperature=1.0):
    """log softmax(logits / temperature) over the last axis: float32, the shape of logits."""
    a, N, V = _rows(logits, "logits")
    out = np.empty(a.shape, np.float32)
    check(lib.leash_api_log_softmax_rows(ptr(a), N, V, float(temperature), ptr(out), None))
    return out


def entropy(logits, temperature=1.0):
    """Entropy -sum pi log pi of pi = softmax(logits / temperature) per row, in nats: float64, shape (...)."""
    a, N, V = _rows(logits, "logits")
    out = np.empty(a.shape[:-1], np.float64)
    check(lib.leash_api_entropy_rows(ptr(a), N, V, float(temperature), ptr(out)))
    return out if out.ndim else float(out)


def kl_exact(logits, ref_logits, temperature=1.0, grad=False):
    """Exact KL(pi || pi_ref) per row over the full vocabulary, pi = softmax(logits / T), pi_ref =
    softmax(ref_logits / T): nats per token, float64 of shape (...) (a float for one row).

    With grad=True returns (kl, grad): grad = d KL / d logits (float32, the shape of logits) =
    (1/T) pi (log pi - log pi_ref - KL); the reference gets no gradient."""
    a, N, V = _rows(logits, "logits")
    b = as_array(ref_logits, np.float32, "ref_logits")
    if b.shape != a.shape:
        raise ValueError(f"ref_logits has shape {b.shape}, logits {a.shape}; they must be equal")
    kl = np.empty(a.shape[:-1], np.float64)
    g = np.empty(a.shape, np.float32) if grad else None
    check(lib.leash_kl_exact_rows(ptr(a), ptr(b), N, V, float(temperature), ptr(kl), ptr(g)))
    kl = kl if kl.ndim else float(kl)
    return (kl, g) if grad else kl


def _estimator(name):
    est = ctypes.c_int()
    check(lib.leash_kl_estimator_parse(str(name).encode(), ctypes.byref(est)))
    return est.value


def kl_estimate(logp, ref_logp, estimator="k3", mask=None, grad=False):
    """Per-token sampled estimates of KL(pi || pi_ref) from tokens x ~ pi: logp = log pi(x), ref_logp =
    log pi_ref(x) (any equal shapes). estimator: "k1" (unbiased, -log r), "k2" ((log r)^2 / 2), "k3"
    (unbiased, (r - 1) - log r), "abs" or "k3+" (k3's value, k2's gradient); log r = ref_logp - logp.
    Computed in float64, returned as float32 of the inputs' shape; 0 where mask (bool, same shape) is False.

    With grad=True returns (kl, grad), grad = d kl / d logp per token (for a KL inside a loss)."""
    lp = as_array(logp, np.float32, "logp")
    rp = as_array(ref_logp, np.float32, "ref_logp")
    if lp.shape != rp.shape:
        raise ValueError(f"ref_logp has shape {rp.shape}, logp {lp.shape}; they must be equal")
    m = None
    if mask is not None:
        m = as_array(np.asarray(mask) != 0, np.uint8, "mask")
        if m.shape != lp.shape:
            raise ValueError(f"mask has shape {m.shape}, logp {lp.shape}; they must be equal")
    est = _estimator(estimator)
    kl = np.empty(lp.shape, np.float32)
    g = np.empty(lp.shape, np.float32) if grad else None
    n = c_int_size(lp.size, "token count")
    check(lib.leash_kl_tokens(est, ptr(lp), ptr(rp), ptr(m), n, ptr(kl), ptr(g)))
    return (kl, g) if grad else kl


def k1(logp, ref_logp, mask=None):
    """k1 = -log r = logp - ref_logp per token (unbiased, high variance)."""
    return kl_estimate(logp, ref_logp, "k1", mask)


def k2(logp, ref_logp, mask=None):
    """k2 = (log r)^2 / 2 per token (biased, never negative; its gradient is the exact KL gradient)."""
    return kl_estimate(logp, ref_logp, "k2", mask)


def k3(logp, ref_logp, mask=None):
    """k3 = (r - 1) - log r per token (unbiased, never negative)."""
    return kl_estimate(logp, ref_logp, "k3", mask)


def masked_reduce(x, mask=None, agg="seq_sum", weights=False):
    """One number from x (B, T) under mask (B, T): "seq_sum" (mean over sequences of each sequence's sum:
    nats per sequence for a per-token KL), "token_mean" (nats per token) or "seq_mean" (mean of the
    per-sequence means). With weights=True returns (value, d value / d x) (float32 (B, T))."""
    a = as_array(x, np.float32, "x")
    if a.ndim != 2:
        raise ValueError(f"x has shape {a.shape}; masked_reduce takes (B, T)")
    m = None if mask is None else as_array(np.asarray(mask) != 0, np.uint8, "mask")
    if m is not None and m.shape != a.shape:
        raise ValueError(f"mask has shape {m.shape}, x {a.shape}; they must be equal")
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg = {agg!r}; use one of {', '.join(AGGREGATIONS)}")
    out = ctypes.c_double()
    w = np.empty(a.shape, np.float32) if weights else None
    check(lib.leash_masked_reduce(ptr(a), ptr(m), a.shape[0], a.shape[1], AGGREGATIONS[agg], ctypes.byref(out),
                                  ptr(w)))
    return (out.value, w) if weights else out.value


def _outcomes(x, name, M=None):
    a = as_array(x, np.float64, name)
    if a.ndim != 1:
        raise ValueError(f"{name} has shape {a.shape}; outcomes are one axis (M,)")
    if M is not None and a.shape[0] != M:
        raise ValueError(f"{name} has {a.shape[0]} outcomes, the first argument {M}; they must be equal")
    return a


def optimum(ref_logp, reward, beta):
    """The closed-form optimum of max E_pi[r] - beta KL(pi || pi_ref) over M outcomes:
    pi* = pi_ref exp(r / beta) / Z. ref_logp (M,) is log pi_ref, normalised (-inf allowed); reward (M,).
    Returns (logp_star, log_z): log pi* (float64 (M,)) and log Z (the optimal value is beta log Z)."""
    rp = _outcomes(ref_logp, "ref_logp")
    r = _outcomes(reward, "reward", rp.shape[0])
    out = np.empty(rp.shape, np.float64)
    log_z = ctypes.c_double()
    check(lib.leash_optimum(ptr(rp), ptr(r), c_int_size(rp.shape[0], "M"), float(beta), ptr(out),
                            ctypes.byref(log_z)))
    return out, log_z.value


def pi_star(ref_logp, reward, beta):
    """pi* = pi_ref exp(r / beta) / Z as probabilities (float64 (M,)): exp of optimum()'s logp_star."""
    return np.exp(optimum(ref_logp, reward, beta)[0])


def kl_objective(logp, ref_logp, reward, beta):
    """J(pi) = E_pi[r] - beta KL(pi || pi_ref) over M outcomes (logp, ref_logp normalised log-probs).
    Returns (objective, expected_reward, kl)."""
    lp = _outcomes(logp, "logp")
    rp = _outcomes(ref_logp, "ref_logp", lp.shape[0])
    r = _outcomes(reward, "reward", lp.shape[0])
    j, er, kl = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    check(lib.leash_kl_objective(ptr(lp), ptr(rp), ptr(r), lp.shape[0], float(beta), ctypes.byref(j),
                                 ctypes.byref(er), ctypes.byref(kl)))
    return j.value, er.value, kl.value


def bon_kl_formula(n):
    """log n - (n - 1) / n: the textbook KL of best-of-n (nats per sequence); exact without reward ties."""
    if int(n) < 1:
        raise ValueError(f"n = {n}; best-of-n needs n >= 1")
    return lib.leash_bon_kl_formula(int(n))


def bon(p, reward, n):
    """The exact best-of-n distribution over M outcomes of distribution p (sums to 1) with rewards, ties
    broken uniformly. Returns (p_bon, kl): float64 (M,) and KL(pi_bon || p) in nats."""
    pp = _outcomes(p, "p")
    r = _outcomes(reward, "reward", pp.shape[0])
    out = np.empty(pp.shape, np.float64)
    kl = ctypes.c_double()
    check(lib.leash_bon(ptr(pp), ptr(r), pp.shape[0], int(n), ptr(out), ctypes.byref(kl)))
    return out, kl.value
