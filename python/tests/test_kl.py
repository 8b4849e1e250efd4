"""The KL functions against numpy closed forms (float64 from the same float32 inputs), finite differences and
sampling. Each test prints its worst difference (pytest -s shows it) and asserts a stated tolerance."""
import math

import numpy as np
import pytest

import leash


def np_log_softmax(x, T=1.0):
    z = x.astype(np.float64) / float(np.float32(T))  # the C functions take the temperature as a float
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_kl(x, y, T=1.0):
    lp, lq = np_log_softmax(x, T), np_log_softmax(y, T)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def report(name, worst, tol):
    print(f"{name}: worst difference {worst:.3g} (tolerance {tol:.3g})")
    assert worst <= tol, f"{name}: worst difference {worst:.3g} > {tol:.3g}"


@pytest.fixture
def rows():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((6, 4, 50)) * 2).astype(np.float32)  # (..., V): leading axes are rows
    y = (x + rng.standard_normal(x.shape) * 0.7).astype(np.float32)
    return x, y


@pytest.mark.parametrize("T", [1.0, 0.7, 2.5])
def test_kl_exact_matches_numpy(rows, T):
    x, y = rows
    kl = leash.kl_exact(x, y, temperature=T)
    assert kl.shape == x.shape[:-1] and kl.dtype == np.float64
    ref = np_kl(x, y, T)
    report(f"kl_exact T={T}", np.abs(kl - ref).max(), 1e-13)
    assert (kl >= 0).all()
    assert leash.kl_exact(x, x, temperature=T).max() == 0.0  # identical rows: exactly 0
    assert isinstance(leash.kl_exact(x[0, 0], y[0, 0], temperature=T), float)


def test_kl_exact_gradient_closed_form_and_finite_differences(rows):
    x, y = rows
    T = 0.8
    kl, g = leash.kl_exact(x, y, temperature=T, grad=True)
    assert g.shape == x.shape and g.dtype == np.float32
    lp, lq = np_log_softmax(x, T), np_log_softmax(y, T)
    closed = np.exp(lp) * (lp - lq - kl[..., None]) / T
    report("kl_exact grad vs closed form", np.abs(g - closed).max(), 1e-6)
    # central differences of leash's own KL on one row, with the float32 steps actually taken
    r, worst = x[2, 1].copy(), 0.0
    for v in range(r.size):
        hi, lo = r.copy(), r.copy()
        hi[v] += np.float32(1e-2)
        lo[v] -= np.float32(1e-2)
        fd = (leash.kl_exact(hi, y[2, 1], T) - leash.kl_exact(lo, y[2, 1], T)) / (float(hi[v]) - float(lo[v]))
        worst = max(worst, abs(fd - float(g[2, 1, v])))
    report("kl_exact grad vs central differences (h = 1e-2)", worst, 2e-4)


def test_log_softmax_and_entropy(rows):
    x, _ = rows
    ls = leash.log_softmax(x, temperature=1.3)
    report("log_softmax", np.abs(ls - np_log_softmax(x, 1.3)).max(), 1e-5)
    lp = np_log_softmax(x, 1.3)
    report("entropy", np.abs(leash.entropy(x, 1.3) - (-(np.exp(lp) * lp).sum(-1))).max(), 1e-10)


def test_estimators_per_token_formulas():
    rng = np.random.default_rng(3)
    logp = rng.uniform(-8, -0.1, 1000).astype(np.float32)
    ref = (logp + rng.normal(0, 1.5, 1000)).astype(np.float32)
    lr = ref.astype(np.float64) - logp.astype(np.float64)  # log r
    forms = {"k1": (-lr, np.ones_like(lr)), "k2": (lr**2 / 2, -lr), "k3": (np.expm1(lr) - lr, -np.expm1(lr)),
             "abs": (np.abs(lr), np.sign(-lr)), "k3+": (np.expm1(lr) - lr, -lr)}
    for name, (value, grad) in forms.items():
        k, g = leash.kl_estimate(logp, ref, name, grad=True)
        assert k.dtype == np.float32 and k.shape == logp.shape
        report(f"{name} value", np.abs(k - value).max() / max(1.0, np.abs(value).max()), 1e-6)
        report(f"{name} grad", np.abs(g - grad).max() / max(1.0, np.abs(grad).max()), 1e-6)
    assert np.array_equal(leash.k1(logp, ref), leash.kl_estimate(logp, ref, "kl"))
    assert np.array_equal(leash.k2(logp, ref), leash.kl_estimate(logp, ref, "mse"))
    assert np.array_equal(leash.k3(logp, ref), leash.kl_estimate(logp, ref, "low_var_kl"))
    mask = np.arange(1000) % 3 == 0
    km = leash.k3(logp.reshape(10, 100), ref.reshape(10, 100), mask=mask.reshape(10, 100)).reshape(-1)
    assert np.array_equal(km[mask], leash.k3(logp, ref)[mask]) and (km[~mask] == 0).all()


def test_estimator_means_on_sampled_tokens():
    """Tokens x ~ pi from a 40-way distribution: the means of k1 and k3 are the exact KL within 4 standard
    errors; k2's within 4 standard errors plus its third-order bias |E[(log r)^3]| / 6 (docs/kl.md)."""
    rng = np.random.default_rng(11)
    V, n = 40, 400_000
    logits = rng.standard_normal(V).astype(np.float32)
    ref_logits = (logits + 0.4 * rng.standard_normal(V)).astype(np.float32)
    exact = leash.kl_exact(logits, ref_logits)
    lp, lq = np_log_softmax(logits), np_log_softmax(ref_logits)
    x = rng.choice(V, size=n, p=np.exp(lp) / np.exp(lp).sum())
    logp, ref = lp[x].astype(np.float32), lq[x].astype(np.float32)
    bias3 = abs(np.mean((lq[x] - lp[x]) ** 3)) / 6
    for name, extra in (("k1", 0.0), ("k3", 0.0), ("k2", bias3)):
        k = leash.kl_estimate(logp, ref, name).astype(np.float64)
        se = k.std() / math.sqrt(n)
        print(f"{name}: mean {k.mean():.6f}, exact KL {exact:.6f}, standard error {se:.2g}")
        assert abs(k.mean() - exact) <= 4 * se + extra, name


def test_masked_reduce_matches_numpy():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 7)).astype(np.float32)
    mask = rng.random((4, 7)) < 0.6
    mask[2] = False  # a sequence with no token
    xs, m = x.astype(np.float64), mask
    sums, counts = (xs * m).sum(1), m.sum(1)
    assert math.isclose(leash.masked_reduce(x, mask, "seq_sum"), sums.mean(), rel_tol=1e-12)
    assert math.isclose(leash.masked_reduce(x, mask, "token_mean"), sums.sum() / counts.sum(), rel_tol=1e-12)
    ok = counts > 0
    v, w = leash.masked_reduce(x, mask, "seq_mean", weights=True)
    assert math.isclose(v, (sums[ok] / counts[ok]).mean(), rel_tol=1e-12)
    assert (w[~mask] == 0).all()
    with pytest.raises(ValueError):
        leash.masked_reduce(x, mask, "mean")


def test_optimum_is_the_tilted_reference():
    rng = np.random.default_rng(2)
    M, beta = 30, 0.4
    ref = np_log_softmax(rng.standard_normal(M))
    ref[3] = -np.inf  # an outcome the reference never produces
    ref -= np.log(np.exp(ref).sum())
    r = rng.uniform(-1, 1, M)
    logp_star, log_z = leash.optimum(ref, r, beta)
    p = leash.pi_star(ref, r, beta)
    w = np.exp(ref) * np.exp(r / beta)
    report("pi* vs pi_ref exp(r/beta)/Z", np.abs(p - w / w.sum()).max(), 1e-15)
    report("pi* sums to 1", abs(p.sum() - 1.0), 1e-14)
    report("log Z", abs(log_z - math.log(w.sum())), 1e-13)
    assert p[3] == 0.0
    j, er, kl = leash.kl_objective(logp_star, ref, r, beta)
    report("J(pi*) = beta log Z", abs(j - beta * log_z), 1e-13)
    for _ in range(20):  # and no other distribution beats it
        other = ref + rng.normal(0, 0.3, M)
        other -= np.log(np.exp(other[np.isfinite(other)]).sum())
        assert leash.kl_objective(other, ref, r, beta)[0] <= j + 1e-12


def test_best_of_n_kl():
    for n in (1, 2, 4, 16, 100):
        report(f"bon_kl_formula({n})", abs(leash.bon_kl_formula(n) - (math.log(n) - (n - 1) / n)), 1e-15)
    # M equally likely outcomes with distinct rewards: pi_bon(i) = F_i^n - F_(i-1)^n, and its KL tends to
    # log n - (n-1)/n as M grows (the gap is O(1/M^2))
    M, n = 10_000, 4
    p, r = np.full(M, 1.0 / M), np.random.default_rng(1).permutation(M).astype(np.float64)
    p_bon, kl = leash.bon(p, r, n)
    F = np.arange(1, M + 1) / M
    closed = np.empty(M)
    closed[np.argsort(r)] = F**n - np.concatenate([[0.0], F[:-1] ** n])
    report("best-of-n distribution", np.abs(p_bon - closed).max(), 1e-15)
    report("best-of-n KL vs log n - (n-1)/n", abs(kl - (math.log(n) - (n - 1) / n)), 1e-7)
    ties, kl_ties = leash.bon(np.full(4, 0.25), np.array([1.0, 1.0, 2.0, 2.0]), n)
    assert kl_ties < leash.bon_kl_formula(n) and math.isclose(ties.sum(), 1.0)


def test_errors_carry_the_library_message():
    x = np.zeros((2, 5), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(leash.LeashError) as e:
        leash.kl_exact(x, np.zeros_like(x))
    assert "row 1" in str(e.value) or "nan" in str(e.value).lower(), str(e.value)
    assert e.value.code < 0 and e.value.kind
    with pytest.raises(leash.LeashError, match="k9"):
        leash.kl_estimate([0.1], [0.2], "k9")
    with pytest.raises(leash.LeashError, match="beta"):
        leash.optimum(np.log([0.5, 0.5]), [0.0, 1.0], 0.0)
    with pytest.raises(leash.LeashError, match="normalised"):
        leash.optimum(np.log([0.5, 0.6]), [0.0, 1.0], 1.0)
    with pytest.raises(ValueError):
        leash.kl_exact(np.zeros((2, 5)), np.zeros((2, 4)))


def test_no_copy_for_float32_inputs():
    """A C-contiguous float32 array is read in place: kl_exact's input is not converted."""
    from leash._lib import as_array
    x = np.zeros((3, 8), np.float32)
    assert as_array(x, np.float32, "x") is x
    assert as_array(x.astype(np.float64), np.float32, "x") is not x
