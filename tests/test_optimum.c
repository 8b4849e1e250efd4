/* The Bayesian view: the closed-form optimum pi* of E[r] - beta KL, reached by plain gradient ascent;
 * the identity J(pi) = beta log Z - beta KL(pi || pi*); and the exact best-of-n KL against brute-force
 * enumeration and the textbook formula. Dimension: M outcomes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/kl.h"
#include "leash/optimum.h"
#include "leash/rng.h"

enum { M = 64 };

static void normalise_log(double *x, int n) {
    double mx = -INFINITY, s = 0.0;
    for (int i = 0; i < n; i++) mx = fmax(mx, x[i]);
    for (int i = 0; i < n; i++) s += exp(x[i] - mx);
    for (int i = 0; i < n; i++) x[i] -= mx + log(s);
}

Test(optimum, gradient_ascent_converges_to_pi_star) {
    leash_rng rng;
    leash_rng_seed(&rng, 31, 0);
    float ref_logits[M], theta_f[M], gkl[M];
    double ref_logp[M], r[M], theta[M], logp_star[M], log_z;
    for (int i = 0; i < M; i++) {
        ref_logits[i] = (float)(2.0 * leash_rng_normal(&rng));
        ref_logp[i] = ref_logits[i];
        r[i] = leash_rng_uniform(&rng);
        theta[i] = 0.0; // start from the uniform policy
    }
    normalise_log(ref_logp, M);
    const double beta = 0.25;
    cr_assert_eq(leash_optimum(ref_logp, r, M, beta, logp_star, &log_z), LEASH_OK);

    // J(theta) = E_pi[r] - beta KL(pi || pi_ref), pi = softmax(theta); exact gradient:
    //   d E_pi[r] / d theta_j = pi_j (r_j - E_pi[r]);  d KL / d theta from leash_kl_exact
    double tv = 1.0;
    int it;
    for (it = 0; it < 200000 && tv >= 1e-5; it++) {
        double pi[M], mx = -INFINITY, s = 0.0, er = 0.0, kl;
        for (int i = 0; i < M; i++) mx = fmax(mx, theta[i]);
        for (int i = 0; i < M; i++) s += (pi[i] = exp(theta[i] - mx));
        for (int i = 0; i < M; i++) pi[i] /= s, er += pi[i] * r[i], theta_f[i] = (float)theta[i];
        cr_assert_eq(leash_kl_exact(theta_f, ref_logits, M, 1.0f, &kl, gkl), LEASH_OK);
        tv = 0.0;
        for (int i = 0; i < M; i++) {
            theta[i] += 20.0 * (pi[i] * (r[i] - er) - beta * gkl[i]);
            tv += 0.5 * fabs(pi[i] - exp(logp_star[i]));
        }
    }
    cr_log_info("gradient ascent: total variation to pi* %.3g after %d steps", tv, it);
    cr_assert(tv < 1e-4, "total variation to pi* = %g after %d steps", tv, it);
}

Test(optimum, value_is_beta_log_z_and_the_kl_identity_holds) {
    leash_rng rng;
    leash_rng_seed(&rng, 32, 0);
    double ref[M], r[M], star[M], pi[M], log_z;
    for (int i = 0; i < M; i++) ref[i] = leash_rng_normal(&rng), r[i] = 3.0 * leash_rng_normal(&rng);
    normalise_log(ref, M);
    const double betas[] = {0.05, 0.5, 5.0};
    for (int b = 0; b < 3; b++) {
        double beta = betas[b], j_star;
        cr_assert_eq(leash_optimum(ref, r, M, beta, star, &log_z), LEASH_OK);
        cr_assert_eq(leash_kl_objective(star, ref, r, M, beta, &j_star, NULL, NULL), LEASH_OK);
        cr_assert(fabs(j_star - beta * log_z) < 1e-9 * fmax(1.0, fabs(j_star)), "J(pi*) %.15g vs beta log Z %.15g",
                  j_star, beta * log_z);
        for (int trial = 0; trial < 20; trial++) {
            // any other policy: J(pi) = beta log Z - beta KL(pi || pi*) < J(pi*)
            for (int i = 0; i < M; i++) pi[i] = star[i] + 0.5 * leash_rng_normal(&rng);
            normalise_log(pi, M);
            double j, kl_star = 0.0;
            cr_assert_eq(leash_kl_objective(pi, ref, r, M, beta, &j, NULL, NULL), LEASH_OK);
            for (int i = 0; i < M; i++) kl_star += exp(pi[i]) * (pi[i] - star[i]);
            cr_assert(fabs(j - (beta * log_z - beta * kl_star)) < 1e-9 * fmax(1.0, fabs(j)), "identity off: %.15g vs %.15g",
                      j, beta * log_z - beta * kl_star);
            cr_assert(j < j_star);
        }
    }
}

Test(optimum, reference_outside_support_and_bad_input) {
    double ref[3] = {log(0.5), log(0.5), -INFINITY}, r[3] = {0.0, 1.0, 100.0}, star[3], z;
    cr_assert_eq(leash_optimum(ref, r, 3, 1.0, star, &z), LEASH_OK);
    cr_assert_eq(star[2], -INFINITY, "an outcome pi_ref never makes stays impossible");
    cr_assert(fabs(exp(star[1]) - exp(1.0) / (1.0 + exp(1.0))) < 1e-15);
    cr_assert_eq(leash_optimum(ref, r, 3, 0.0, star, &z), LEASH_EINVAL);
    cr_assert_eq(leash_optimum(ref, r, 3, -1.0, star, &z), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "beta = -1"), "message: %s", leash_errmsg());
    r[1] = NAN;
    cr_assert_eq(leash_optimum(ref, r, 3, 1.0, star, &z), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "reward[1]"), "message: %s", leash_errmsg());
    r[1] = 1.0;
    ref[0] = log(0.9); // sums to 1.4
    cr_assert_eq(leash_optimum(ref, r, 3, 1.0, star, &z), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "not normalised"), "message: %s", leash_errmsg());
    cr_assert_eq(leash_optimum(ref, r, 0, 1.0, star, &z), LEASH_EINVAL);
}

/* Brute force: every n-tuple of samples from p; the kept sample is a uniformly random one among those
 * with the highest reward. */
static void bon_brute_force(const double *p, const double *r, int K, int n, double *out) {
    memset(out, 0, K * sizeof *out);
    int idx[8] = {0};
    for (;;) {
        double prob = 1.0, best = -INFINITY;
        for (int j = 0; j < n; j++) prob *= p[idx[j]], best = fmax(best, r[idx[j]]);
        int ties = 0;
        for (int j = 0; j < n; j++) ties += r[idx[j]] == best;
        for (int j = 0; j < n; j++)
            if (r[idx[j]] == best) out[idx[j]] += prob / ties;
        int j = 0;
        while (j < n && ++idx[j] == K) idx[j++] = 0;
        if (j == n) break;
    }
}

Test(best_of_n, matches_brute_force_enumeration_with_ties) {
    enum { K = 6 };
    const double p[K] = {0.3, 0.1, 0.2, 0.15, 0.05, 0.2};
    const double r[K] = {1.0, 2.0, 2.0, 0.5, 3.0, 1.0}; // two ties
    for (int n = 1; n <= 6; n++) {
        double want[K], got[K], kl, want_kl = 0.0;
        bon_brute_force(p, r, K, n, want);
        cr_assert_eq(leash_bon(p, r, K, n, got, &kl), LEASH_OK);
        for (int k = 0; k < K; k++) {
            cr_assert(fabs(got[k] - want[k]) < 1e-12, "n=%d outcome %d: %.15g vs brute force %.15g", n, k, got[k], want[k]);
            if (want[k] > 0) want_kl += want[k] * log(want[k] / p[k]);
        }
        cr_assert(fabs(kl - want_kl) < 1e-12, "n=%d: KL %.15g vs brute force %.15g", n, kl, want_kl);
        cr_assert(kl <= leash_bon_kl_formula(n) + 1e-12, "n=%d: exact KL above the formula's bound", n);
        if (n == 1) cr_assert(kl < 1e-15, "best-of-1 is pi_ref itself: KL %g", kl);
    }
}

Test(best_of_n, formula_is_the_continuous_limit) {
    // many equiprobable outcomes with distinct rewards: the exact KL approaches log n - (n-1)/n
    enum { K = 200000 };
    double *p = malloc(K * sizeof *p), *r = malloc(K * sizeof *r);
    for (int k = 0; k < K; k++) p[k] = 1.0 / K, r[k] = (double)((k * 7919L) % K); // distinct, shuffled
    const long ns[] = {2, 8, 64};
    for (int i = 0; i < 3; i++) {
        double kl;
        cr_assert_eq(leash_bon(p, r, K, ns[i], NULL, &kl), LEASH_OK);
        double f = leash_bon_kl_formula(ns[i]);
        cr_assert(fabs(kl - f) < 1e-3, "n=%ld: exact %.9g vs formula %.9g", ns[i], kl, f);
    }
    free(p), free(r);
}

Test(best_of_n, bad_input) {
    double p[3] = {0.5, 0.25, 0.25}, r[3] = {0, 1, 2}, kl;
    cr_assert_eq(leash_bon(p, r, 3, 0, NULL, &kl), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "n = 0"), "message: %s", leash_errmsg());
    p[0] = 0.6;
    cr_assert_eq(leash_bon(p, r, 3, 2, NULL, &kl), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "sums to"), "message: %s", leash_errmsg());
    p[0] = -0.5;
    cr_assert_eq(leash_bon(p, r, 3, 2, NULL, &kl), LEASH_EINVAL);
    p[0] = 0.5;
    r[2] = INFINITY;
    cr_assert_eq(leash_bon(p, r, 3, 2, NULL, &kl), LEASH_ENUMERIC);
}
