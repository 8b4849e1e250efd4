"""The over-optimisation frontier (include/leash/frontier.h) and Beirami et al.'s best-of-n KL (leash/bon.h).

    fit = leash.frontier_fit(kl=[0.4, 1.6, 2.9, 4.3], gain=[0.47, 0.94, 1.0, 0.86], form="rl")
    fit.alpha, fit.beta, fit.kl_peak        # Gao et al.'s gain(d) = d (alpha - beta log d), d = sqrt(KL)
    leash.bon_kl_beirami(16, eps=0.3)       # best-of-16's KL when the kept response had probability 0.3
"""
import ctypes
import math
from ctypes import POINTER, c_double, c_int, c_long
from dataclasses import dataclass

import numpy as np

from ._lib import check, lib


class _Fit(ctypes.Structure):  # leash_frontier_fit
    _fields_ = [("form", c_int), ("points", c_int), ("alpha", c_double), ("beta", c_double), ("has_peak", c_int),
                ("d_peak", c_double), ("kl_peak", c_double), ("gain_peak", c_double), ("rmse", c_double)]


_D = POINTER(c_double)
for _name, _res, _args in [
    ("leash_frontier_fit_points", c_int, [c_int, _D, _D, c_int, POINTER(_Fit)]),
    ("leash_bon_kl_beirami", c_double, [c_long, c_double]),
]:
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args

_FORMS = {"rl": 0, "best-of-n": 1, "bon": 1}


@dataclass
class FrontierFit:
    """Gao et al.'s form fitted by least squares: form "rl" (gain = d (alpha - beta log d)) or "best-of-n"
    (gain = d (alpha - beta d)), d = sqrt(KL). has_peak: beta > 0 and a peak at d > 0; d_peak, kl_peak (nats
    per sequence) and gain_peak there (inf, inf, nan without one); rmse of the fit in gain units."""
    form: str
    points: int
    alpha: float
    beta: float
    has_peak: bool
    d_peak: float
    kl_peak: float
    gain_peak: float
    rmse: float

    def __call__(self, kl):
        """The fitted gain at KL (nats per sequence; a number or an array)."""
        d = np.sqrt(np.asarray(kl, np.float64))
        if self.form == "rl":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(d > 0, d * (self.alpha - self.beta * np.log(np.where(d > 0, d, 1.0))), 0.0)
        return d * (self.alpha - self.beta * d)


def frontier_fit(kl, gain, form="rl"):
    """Fits gain (the gold reward gained over the reference) against d = sqrt(kl) (kl in nats per sequence,
    >= 0) with the RL or best-of-n form. Raises LeashError when the points do not determine alpha and beta."""
    if form not in _FORMS:
        raise ValueError(f"form {form!r}: expected 'rl' or 'best-of-n'")
    k = np.ascontiguousarray(kl, np.float64).ravel()
    g = np.ascontiguousarray(gain, np.float64).ravel()
    if k.shape != g.shape:
        raise ValueError(f"{k.size} KLs and {g.size} gains")
    d = np.sqrt(np.maximum(k, 0.0)) if np.all(np.isfinite(k)) else k
    out = _Fit()
    check(lib.leash_frontier_fit_points(_FORMS[form], d.ctypes.data_as(_D), g.ctypes.data_as(_D), int(d.size),
                                        ctypes.byref(out)), "frontier_fit")
    return FrontierFit("rl" if out.form == 0 else "best-of-n", out.points, out.alpha, out.beta, bool(out.has_peak),
                       out.d_peak, out.kl_peak, out.gain_peak, out.rmse)


def bon_kl_beirami(n, eps):
    """Beirami et al. 2024's estimate of KL(best-of-n || pi_ref) when the kept response has probability eps
    under pi_ref (nats): d_n(eps) = (1-eps)^n [log n + (n-1) log(1-eps) - (n-1)/n]
    + (1-(1-eps)^n) log((1-(1-eps)^n)/eps); d_n(0) = log n - (n-1)/n (the bound), d_n(1) = 0."""
    v = lib.leash_bon_kl_beirami(int(n), float(eps))
    if math.isnan(v):
        raise ValueError(f"n = {n}, eps = {eps}: need n >= 1 and eps in [0, 1]")
    return v
