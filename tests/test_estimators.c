/* Sampled KL estimators k1, k2, k3, abs: closed forms, gradients, Monte Carlo bias, what each one's
 * gradient estimates inside a loss, and the masked per-token API. Dimension: K outcomes. */
#define _DEFAULT_SOURCE // mkdtemp, used by a helper in testutil.h
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "leash/error.h"
#include "leash/kl.h"
#include "testutil.h"

static const leash_kl_estimator ALL[] = {LEASH_KL_K1, LEASH_KL_K2, LEASH_KL_K3, LEASH_KL_ABS, LEASH_KL_K3_PLUS};

Test(estimators, closed_form_values) {
    double lp = -1.2, lq = -0.4, lr = lq - lp; // log r = 0.8
    cr_assert_eq(leash_kl_estimate(LEASH_KL_K1, lp, lq), -lr);
    cr_assert(fabs(leash_kl_estimate(LEASH_KL_K2, lp, lq) - 0.32) < 1e-15);
    cr_assert(fabs(leash_kl_estimate(LEASH_KL_K3, lp, lq) - (exp(0.8) - 1.0 - 0.8)) < 1e-15);
    cr_assert(fabs(leash_kl_estimate(LEASH_KL_ABS, lp, lq) - 0.8) < 1e-15);
    for (int e = 0; e < 4; e++) cr_assert_eq(leash_kl_estimate(ALL[e], -0.3, -0.3), 0.0, "%d at r = 1", e);
    // k3 near r = 1 stays accurate (expm1): (r-1) - log r = lr^2/2 + lr^3/6 + ...
    double tiny = 1e-6, k3 = leash_kl_estimate(LEASH_KL_K3, 0.0, tiny);
    cr_assert(fabs(k3 - (tiny * tiny / 2 + tiny * tiny * tiny / 6)) < 1e-12 * tiny * tiny, "k3(1e-6) = %.17g", k3);
}

Test(estimators, gradients_match_finite_differences) {
    leash_rng rng;
    leash_rng_seed(&rng, 11, 0);
    for (int trial = 0; trial < 200; trial++) {
        double lp = -5.0 * leash_rng_uniform(&rng), lq = -5.0 * leash_rng_uniform(&rng);
        if (fabs(lp - lq) < 1e-3) continue; // abs has a kink at log r = 0
        for (int e = 0; e < 4; e++) {
            double h = 1e-5;
            double fd = (leash_kl_estimate(ALL[e], lp + h, lq) - leash_kl_estimate(ALL[e], lp - h, lq)) / (2 * h);
            double g = leash_kl_estimate_grad(ALL[e], lp, lq);
            double err = fabs(g - fd) / fmax(fabs(fd), 1.0);
            cr_assert(err < 1e-6, "%s at (%g, %g): grad %.12g, finite difference %.12g", leash_kl_estimator_name(ALL[e]),
                      lp, lq, g, fd);
        }
    }
}

/* A pair of categoricals over K outcomes, far enough apart that k2's bias is large. */
enum { K = 6 };
static const double P[K] = {0.35, 0.25, 0.15, 0.12, 0.08, 0.05};
static const double Q[K] = {0.10, 0.15, 0.30, 0.20, 0.05, 0.20};

static double exact_kl(void) {
    double d = 0.0;
    for (int k = 0; k < K; k++) d += P[k] * log(P[k] / Q[k]);
    return d;
}

static double exact_mean(leash_kl_estimator e) {
    double m = 0.0;
    for (int k = 0; k < K; k++) m += P[k] * leash_kl_estimate(e, log(P[k]), log(Q[k]));
    return m;
}

Test(estimators, monte_carlo_bias_matches_theory) {
    leash_rng rng;
    leash_rng_seed(&rng, 12, 0);
    const int S = 400000;
    double sum[4] = {0}, sum2[4] = {0}, k3_min = INFINITY;
    for (int s = 0; s < S; s++) {
        int x = leash_rng_categorical(&rng, P, K);
        for (int e = 0; e < 4; e++) {
            double k = leash_kl_estimate(ALL[e], log(P[x]), log(Q[x]));
            sum[e] += k, sum2[e] += k * k;
            if (ALL[e] == LEASH_KL_K3 && k < k3_min) k3_min = k;
        }
    }
    double kl = exact_kl();
    for (int e = 0; e < 4; e++) {
        double mean = sum[e] / S, se = sqrt((sum2[e] / S - mean * mean) / S);
        const char *name = leash_kl_estimator_name(ALL[e]);
        cr_log_info("%s: mean %.5f +- %.5f, exact KL %.5f", name, mean, se, kl);
        // every estimator's sample mean agrees with its own exact expectation
        cr_assert(fabs(mean - exact_mean(ALL[e])) < 4 * se, "%s: MC mean %g vs exact expectation %g (se %g)", name,
                  mean, exact_mean(ALL[e]), se);
        if (ALL[e] == LEASH_KL_K1 || ALL[e] == LEASH_KL_K3)
            cr_assert(fabs(mean - kl) < 4 * se, "%s should be unbiased: mean %g, KL %g, se %g", name, mean, kl, se);
        else
            cr_assert(fabs(mean - kl) > 4 * se, "%s should be biased here: mean %g, KL %g, se %g", name, mean, kl, se);
    }
    cr_assert(k3_min >= 0.0, "k3 took a negative value %g", k3_min);
    cr_assert(exact_mean(LEASH_KL_ABS) >= kl, "E|log r| >= KL by Jensen");
}

Test(estimators, k2_bias_is_third_order) {
    // pi_ref = pi tilted by eps * d: E[k2] - KL = -E[(log r)^3]/6 + O(eps^4), so halving eps divides the
    // bias by ~8, and its sign and size follow the third moment.
    enum { V = 30 };
    float z[V], d[V], r[V], lp[V], lq[V];
    leash_rng rng;
    leash_rng_seed(&rng, 13, 0);
    grid_logits(&rng, z, V, 2.0);
    grid_logits(&rng, d, V, 1.0);
    double bias[2], third[2];
    for (int k = 0; k < 2; k++) {
        float eps = k == 0 ? 0.1f : 0.05f;
        for (int v = 0; v < V; v++) r[v] = z[v] + eps * d[v];
        double kl;
        cr_assert_eq(leash_kl_exact(z, r, V, 1.0f, &kl, NULL), LEASH_OK);
        cr_assert_eq(leash_log_softmax(z, V, 1.0f, lp, NULL), LEASH_OK);
        cr_assert_eq(leash_log_softmax(r, V, 1.0f, lq, NULL), LEASH_OK);
        double ek2 = 0.0, m3 = 0.0;
        for (int v = 0; v < V; v++) {
            double p = exp((double)lp[v]), lr = (double)lq[v] - lp[v];
            ek2 += p * leash_kl_estimate(LEASH_KL_K2, lp[v], lq[v]);
            m3 += p * lr * lr * lr;
        }
        bias[k] = ek2 - kl;
        third[k] = -m3 / 6.0;
    }
    double ratio = bias[0] / bias[1];
    cr_assert(ratio > 7.0 && ratio < 9.0, "bias(0.1)/bias(0.05) = %g, third order predicts ~8", ratio);
    cr_assert(fabs(bias[1] - third[1]) < 0.15 * fabs(third[1]), "bias %g vs -E[lr^3]/6 = %g", bias[1], third[1]);
}

Test(estimators, expected_loss_gradients) {
    // Inside a loss, d k / d log pi(x) times d log pi(x) / d logits = e_x - pi, averaged over x ~ pi:
    //   k1 -> 0;  k2 -> grad KL(pi || pi_ref);  k3 -> grad KL(pi_ref || pi) = pi - pi_ref;  k3+ -> as k2.
    // (Swapping k3+'s gradient for k3's own made the k3+ row fail with an error of 0.106.)
    enum { V = 12 };
    float z[V], r[V], gkl[V], lp[V], lq[V];
    leash_rng rng;
    leash_rng_seed(&rng, 14, 0);
    grid_logits(&rng, z, V, 2.0);
    grid_logits(&rng, r, V, 2.0);
    double kl;
    cr_assert_eq(leash_kl_exact(z, r, V, 1.0f, &kl, gkl), LEASH_OK);
    cr_assert_eq(leash_log_softmax(z, V, 1.0f, lp, NULL), LEASH_OK);
    cr_assert_eq(leash_log_softmax(r, V, 1.0f, lq, NULL), LEASH_OK);
    double want_k2[V], want_k3[V], want_k1[V] = {0};
    for (int j = 0; j < V; j++) want_k2[j] = gkl[j], want_k3[j] = exp((double)lp[j]) - exp((double)lq[j]);
    const double *want[5] = {want_k1, want_k2, want_k3, NULL, want_k2};
    for (int e = 0; e < 5; e++) {
        if (!want[e]) continue; // abs: no KL gradient
        double g[V] = {0}, worst = 0.0;
        for (int x = 0; x < V; x++) {
            double px = exp((double)lp[x]), dk = leash_kl_estimate_grad(ALL[e], lp[x], lq[x]);
            for (int j = 0; j < V; j++) g[j] += px * dk * ((j == x) - exp((double)lp[j]));
        }
        for (int j = 0; j < V; j++) worst = fmax(worst, fabs(g[j] - want[e][j]));
        cr_assert(worst < 1e-6, "%s: expected loss gradient off by %g", leash_kl_estimator_name(ALL[e]), worst);
    }
}

Test(estimators, tokens_respect_the_mask) {
    float lp[6] = {-0.5f, NAN, -2.0f, -0.1f, INFINITY, -3.0f};
    float lq[6] = {-0.7f, -1.0f, -1.5f, -0.1f, -1.0f, -2.0f};
    uint8_t mask[6] = {1, 0, 1, 1, 0, 1};
    float kl[6], g[6];
    for (int e = 0; e < 5; e++) {
        memset(kl, 0xff, sizeof kl);
        cr_assert_eq(leash_kl_tokens(ALL[e], lp, lq, mask, 6, kl, g), LEASH_OK, "%s", leash_errmsg());
        for (int i = 0; i < 6; i++) {
            if (!mask[i]) {
                cr_assert(kl[i] == 0.0f && g[i] == 0.0f, "masked token %d not zero", i);
                continue;
            }
            cr_assert_eq(kl[i], (float)leash_kl_estimate(ALL[e], lp[i], lq[i]));
            cr_assert_eq(g[i], (float)leash_kl_estimate_grad(ALL[e], lp[i], lq[i]));
        }
    }
}

Test(estimators, tokens_bad_input) {
    float lp[3] = {-0.5f, NAN, -1.0f}, lq[3] = {-0.5f, -0.5f, -0.5f}, kl[3];
    cr_assert_eq(leash_kl_tokens(LEASH_KL_K3, lp, lq, NULL, 3, kl, NULL), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "token 1"), "message: %s", leash_errmsg());
    lp[1] = -1e20f; // log r = 1e20: k2 = 5e39 overflows float32
    cr_assert_eq(leash_kl_tokens(LEASH_KL_K2, lp, lq, NULL, 3, kl, NULL), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "overflows float32"), "message: %s", leash_errmsg());
    lp[1] = -200.0f; // log r = 199.5: k3 runs on its tangent line and fits; so does k1 = -199.5
    cr_assert_eq(leash_kl_tokens(LEASH_KL_K3, lp, lq, NULL, 3, kl, NULL), LEASH_OK);
    cr_assert_eq(leash_kl_tokens(LEASH_KL_K1, lp, lq, NULL, 3, kl, NULL), LEASH_OK);
    cr_assert_eq(leash_kl_tokens(LEASH_KL_K1, lp, lq, NULL, -1, kl, NULL), LEASH_EINVAL);
    cr_assert_eq(leash_kl_tokens((leash_kl_estimator)9, lp, lq, NULL, 3, kl, NULL), LEASH_EINVAL);
}

Test(estimators, names) {
    const char *names[] = {"k1", "kl", "k2", "mse", "k3", "low_var_kl", "abs", "k3+"};
    const leash_kl_estimator want[] = {LEASH_KL_K1, LEASH_KL_K1, LEASH_KL_K2, LEASH_KL_K2,
                                       LEASH_KL_K3, LEASH_KL_K3, LEASH_KL_ABS, LEASH_KL_K3_PLUS};
    for (int i = 0; i < 8; i++) {
        leash_kl_estimator e;
        cr_assert_eq(leash_kl_estimator_parse(names[i], &e), LEASH_OK);
        cr_assert_eq(e, want[i], "%s", names[i]);
    }
    leash_kl_estimator e;
    cr_assert_eq(leash_kl_estimator_parse("k4", &e), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "'k4' is unknown"), "message: %s", leash_errmsg());
}

Test(estimators, pitfall_extreme_log_ratio_stays_finite) {
    // Pitfall 11 (docs/kl-pitfalls.md): |log r| up to 1e3 must give finite values and gradients. Without
    // the tangent line (k3 = expm1(lr) - lr everywhere) k3 is +inf at lr = 1e3 and this test fails.
    const double lrs[] = {-1e3, -700.0, -100.0, -20.5, -20.0, -1.0, 0.0, 1.0, 19.999, 20.0, 20.001, 100.0, 709.0, 1e3};
    int n = (int)(sizeof lrs / sizeof lrs[0]);
    for (int e = 0; e < 5; e++) {
        double prev = -INFINITY;
        for (int i = 0; i < n; i++) {
            double lp = -3.0, lq = lp + lrs[i];
            double k = leash_kl_estimate(ALL[e], lp, lq), g = leash_kl_estimate_grad(ALL[e], lp, lq);
            cr_assert(fabs(k) <= FLT_MAX && fabs(g) <= FLT_MAX, "%s at log r = %g: value %g, gradient %g",
                      leash_kl_estimator_name(ALL[e]), lrs[i], k, g);
            int clamped = leash_kl_estimate_clamped(ALL[e], lp, lq);
            cr_assert_eq(clamped, (ALL[e] == LEASH_KL_K3 || ALL[e] == LEASH_KL_K3_PLUS) && lrs[i] > LEASH_KL_LOG_RATIO_MAX,
                         "%s at log r = %g", leash_kl_estimator_name(ALL[e]), lrs[i]);
            if ((ALL[e] == LEASH_KL_K3 || ALL[e] == LEASH_KL_K3_PLUS) && lrs[i] >= 0) {
                cr_assert(k > prev, "k3 must keep growing with log r (%g)", lrs[i]);
                prev = k;
            }
        }
        float flp[2] = {-1000.5f, -0.5f}, flq[2] = {-0.5f, -1000.5f}, fk[2], fg[2];
        cr_assert_eq(leash_kl_tokens(ALL[e], flp, flq, NULL, 2, fk, fg), LEASH_OK, "%s: %s", leash_kl_estimator_name(ALL[e]), leash_errmsg());
        for (int i = 0; i < 2; i++) cr_assert(isfinite(fk[i]) && isfinite(fg[i]));
    }
    // continuity of k3 and its slope at the bound, and the slope beyond it
    double b = LEASH_KL_LOG_RATIO_MAX, h = 1e-7;
    double below = leash_kl_estimate(LEASH_KL_K3, 0.0, b - h), above = leash_kl_estimate(LEASH_KL_K3, 0.0, b + h);
    cr_assert(fabs(above - below) < 1e-6 * below, "k3 jumps at the bound: %g vs %g", below, above);
    cr_assert_eq(leash_kl_estimate_grad(LEASH_KL_K3, 0.0, b + 50.0), leash_kl_estimate_grad(LEASH_KL_K3, 0.0, b));
    cr_assert(leash_kl_estimate_grad(LEASH_KL_K3, 0.0, b + 50.0) < -4e8, "beyond the bound k3 still pulls back");
    double slope = (leash_kl_estimate(LEASH_KL_K3, 0.0, b + 10.0) - leash_kl_estimate(LEASH_KL_K3, 0.0, b + 5.0)) / 5.0;
    cr_assert(fabs(slope - expm1(b)) < 1e-6 * expm1(b), "slope beyond the bound %g, want e^20 - 1", slope);
}
