/* Beirami et al.'s best-of-n KL estimate (leash_bon_kl_beirami, src/bon.c) against the bound log n - (n-1)/n
 * and the exact KL by enumerating every n-tuple of draws: its limits, its exactness on the distribution it is
 * derived for (one top outcome of mass eps, the rest spread thin), and on small discrete distributions where
 * the estimate, as the expectation over the kept outcome y of d_n(pi_ref(y)), lies between the exact KL and
 * the bound. Dimension: K outcomes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "leash/bon.h"
#include "leash/error.h"
#include "leash/optimum.h"

/* The kept outcome's distribution by enumerating all K^n tuples (rewards distinct: no ties), and its KL. */
static double enumerate_bon(const double *p, const double *r, int K, int n, double *q) {
    int idx[8] = {0};
    for (int k = 0; k < K; k++) q[k] = 0.0;
    for (;;) {
        double pr = 1.0;
        int best = idx[0];
        for (int i = 0; i < n; i++) pr *= p[idx[i]], best = r[idx[i]] > r[best] ? idx[i] : best;
        q[best] += pr;
        int i = 0;
        while (i < n && ++idx[i] == K) idx[i++] = 0;
        if (i == n) break;
    }
    double kl = 0.0;
    for (int k = 0; k < K; k++)
        if (q[k] > 0) kl += q[k] * log(q[k] / p[k]);
    return kl;
}

Test(bon_beirami, limits_and_the_bound) {
    for (long n = 1; n <= 1024; n *= 2) {
        double bound = leash_bon_kl_formula(n);
        cr_assert(fabs(leash_bon_kl_beirami(n, 0.0) - bound) < 1e-12, "n=%ld: d_n(0) %g, bound %g", n, leash_bon_kl_beirami(n, 0.0), bound);
        cr_assert(fabs(leash_bon_kl_beirami(n, 1e-300) - bound) < 1e-9);
        cr_assert_eq(leash_bon_kl_beirami(n, 1.0), 0.0);
        for (double e = 1e-6; e < 1.0; e *= 1.7) {
            double v = leash_bon_kl_beirami(n, e);
            cr_assert(v >= -1e-12 && v <= bound + 1e-12, "n=%ld eps=%g: d_n %g outside [0, bound %g]", n, e, v, bound);
        }
    }
    cr_assert(isnan(leash_bon_kl_beirami(0, 0.5)) && isnan(leash_bon_kl_beirami(4, -0.1)) && isnan(leash_bon_kl_beirami(4, 1.5)));
    cr_assert(isnan(leash_bon_kl_beirami(4, NAN)));
}

/* One outcome of mass eps above K others of mass (1 - eps)/K (its reward the highest): leash_bon's exact KL
 * tends to d_n(eps) as K grows (the others become the continuous part), while the bound stays off. */
Test(bon_beirami, exact_on_a_top_outcome_over_a_thin_continuum) {
    const double eps = 0.3;
    const int n = 8;
    double prev = INFINITY;
    for (int K = 100; K <= 100000; K *= 10) {
        double *p = malloc((K + 1) * sizeof *p), *r = malloc((K + 1) * sizeof *r), kl;
        p[0] = eps, r[0] = K + 1.0;
        for (int k = 1; k <= K; k++) p[k] = (1.0 - eps) / K, r[k] = k;
        cr_assert_eq(leash_bon(p, r, K + 1, n, NULL, &kl), LEASH_OK, "%s", leash_errmsg());
        double est = leash_bon_kl_beirami(n, eps), err = fabs(est - kl);
        printf("top eps %.2f over K=%6d: exact %.6f  Beirami %.6f (|diff| %.2e)  bound %.6f\n", eps, K, kl, est, err,
               leash_bon_kl_formula(n));
        cr_assert(err < prev, "no convergence at K=%d", K);
        prev = err;
        free(p), free(r);
    }
    cr_assert(prev < 1e-9, "|d_n(eps) - exact| = %g at K = 1e5", prev);
    cr_assert(leash_bon_kl_formula(n) - leash_bon_kl_beirami(n, eps) > 0.15, "the bound should be 0.2 nats off here");
}

/* Small distributions, every n-tuple enumerated: exact <= estimate <= bound, and the estimate the closer. */
Test(bon_beirami, between_exact_and_bound_on_small_distributions) {
    enum { K = 6 };
    const double ps[4][K] = {{0.4, 0.2, 0.15, 0.1, 0.1, 0.05}, {0.05, 0.1, 0.1, 0.15, 0.2, 0.4},
                             {1. / 6, 1. / 6, 1. / 6, 1. / 6, 1. / 6, 1. / 6}, {0.3, 0.3, 0.2, 0.1, 0.05, 0.05}};
    const double rs[4][K] = {{6, 5, 4, 3, 2, 1}, {6, 5, 4, 3, 2, 1}, {6, 5, 4, 3, 2, 1}, {1, 2, 3, 4, 5, 6}};
    const int ns[4] = {2, 3, 4, 6};
    double worst_gain = INFINITY;
    for (int d = 0; d < 4; d++)
        for (int j = 0; j < 4; j++) {
            int n = ns[j];
            double q[K], q2[K], kl2;
            double kl = enumerate_bon(ps[d], rs[d], K, n, q);
            cr_assert_eq(leash_bon(ps[d], rs[d], K, n, q2, &kl2), LEASH_OK);
            cr_assert(fabs(kl - kl2) < 1e-12, "enumeration %g, leash_bon %g", kl, kl2);
            double est = 0.0, bound = leash_bon_kl_formula(n);
            for (int k = 0; k < K; k++) est += q[k] * leash_bon_kl_beirami(n, ps[d][k]);
            printf("distribution %d, n=%d: exact %.4f  Beirami %.4f  bound %.4f\n", d, n, kl, est, bound);
            cr_assert(kl <= est + 1e-12 && est <= bound + 1e-12, "not exact <= estimate <= bound");
            worst_gain = fmin(worst_gain, (bound - kl) - (est - kl));
        }
    printf("the estimate is closer than the bound by at least %.4f nats\n", worst_gain);
    cr_assert(worst_gain > 0);
}
