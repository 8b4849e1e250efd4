"""leash.frontier_fit and leash.bon_kl_beirami (python/leash/frontier.py over src/frontier.c and src/bon.c)
against independent references: numpy's least squares on the same design matrix, a grid search for the
peak, and leash.bon's exact best-of-n KL on a distribution where Beirami et al.'s formula is exact."""
import math

import numpy as np
import pytest

import leash


@pytest.mark.parametrize("form", ["rl", "best-of-n"])
def test_fit_equals_numpy_least_squares_and_the_peak_a_grid_search(form):
    rng = np.random.default_rng(4)
    kl = rng.uniform(0.05, 9.0, 60)
    d = np.sqrt(kl)
    x2 = -d * np.log(d) if form == "rl" else -d * d
    gain = d * 0.8 + 0.5 * x2 + rng.normal(0, 0.05, kl.size)
    fit = leash.frontier_fit(kl, gain, form)
    want, *_ = np.linalg.lstsq(np.stack([d, x2], 1), gain, rcond=None)
    print(f"{form}: alpha {fit.alpha:.6f} (numpy {want[0]:.6f}), beta {fit.beta:.6f} (numpy {want[1]:.6f}), "
          f"peak KL {fit.kl_peak:.4f}")
    assert fit.alpha == pytest.approx(want[0], rel=1e-9) and fit.beta == pytest.approx(want[1], rel=1e-9)
    assert fit.rmse == pytest.approx(np.sqrt(np.mean((gain - np.stack([d, x2], 1) @ want) ** 2)), rel=1e-9)
    grid = np.linspace(0, 3 * fit.d_peak, 200001)[1:] ** 2
    best = grid[np.argmax(fit(grid))]
    assert fit.has_peak and math.sqrt(best) == pytest.approx(fit.d_peak, rel=1e-4)
    assert fit(fit.kl_peak) == pytest.approx(fit.gain_peak, rel=1e-12)


def test_degenerate_points_raise_and_a_rising_gain_has_no_peak():
    with pytest.raises(leash.LeashError, match="do not determine alpha and beta"):
        leash.frontier_fit([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], "best-of-n")
    with pytest.raises(ValueError):
        leash.frontier_fit([1.0, 2.0], [0.1], "rl")
    fit = leash.frontier_fit([1, 2, 4, 8], [0.1, 0.2, 0.35, 0.6], "best-of-n")
    assert fit.beta < 0 and not fit.has_peak and math.isinf(fit.kl_peak)


def test_beirami_is_the_exact_kl_of_a_top_outcome_over_a_thin_continuum():
    n, eps, K = 8, 0.3, 20000
    p = np.concatenate([[eps], np.full(K, (1 - eps) / K)])
    r = np.concatenate([[K + 1.0], np.arange(1, K + 1, dtype=np.float64)])
    _, exact = leash.bon(p, r, n)
    est = leash.bon_kl_beirami(n, eps)
    print(f"exact {exact:.9f}, Beirami {est:.9f}, bound {leash.bon_kl_formula(n):.6f}")
    assert est == pytest.approx(exact, abs=1e-7)
    assert leash.bon_kl_beirami(n, 0.0) == pytest.approx(leash.bon_kl_formula(n), abs=1e-15)
    assert leash.bon_kl_beirami(n, 1.0) == 0.0
    with pytest.raises(ValueError):
        leash.bon_kl_beirami(n, 1.5)
