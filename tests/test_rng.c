/* The random number generator: reproducible streams, independent streams, correct distributions. */
#include <criterion/criterion.h>
#include <math.h>

#include "leash/rng.h"

Test(rng, same_seed_same_stream) {
    leash_rng a, b;
    leash_rng_seed(&a, 123, 4);
    leash_rng_seed(&b, 123, 4);
    for (int i = 0; i < 1000; i++) cr_assert_eq(leash_rng_next(&a), leash_rng_next(&b));
}

Test(rng, streams_and_seeds_differ) {
    leash_rng a, b, c;
    leash_rng_seed(&a, 123, 0);
    leash_rng_seed(&b, 123, 1);
    leash_rng_seed(&c, 124, 0);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = leash_rng_next(&a);
        same_ab += x == leash_rng_next(&b);
        same_ac += x == leash_rng_next(&c);
    }
    cr_assert(same_ab == 0 && same_ac == 0);
}

Test(rng, uniform_and_normal_moments) {
    leash_rng g;
    leash_rng_seed(&g, 9, 0);
    const int S = 1000000;
    double su = 0, su2 = 0, sn = 0, sn2 = 0;
    for (int i = 0; i < S; i++) {
        double u = leash_rng_uniform(&g), n = leash_rng_normal(&g);
        cr_assert(u >= 0.0 && u < 1.0);
        su += u, su2 += u * u, sn += n, sn2 += n * n;
    }
    // standard errors: uniform mean sqrt(1/12/S) ~ 2.9e-4; normal mean 1e-3, variance sqrt(2/S) ~ 1.4e-3
    cr_assert(fabs(su / S - 0.5) < 4 * 2.9e-4, "uniform mean %g", su / S);
    cr_assert(fabs(su2 / S - 1.0 / 3.0) < 4 * 3e-4, "uniform E[u^2] %g", su2 / S);
    cr_assert(fabs(sn / S) < 4e-3, "normal mean %g", sn / S);
    cr_assert(fabs(sn2 / S - 1.0) < 6e-3, "normal variance %g", sn2 / S);
}

Test(rng, categorical_frequencies) {
    const double p[5] = {0.5, 0.0, 0.25, 0.125, 0.125};
    int count[5] = {0};
    leash_rng g;
    leash_rng_seed(&g, 10, 0);
    const int S = 400000;
    for (int i = 0; i < S; i++) count[leash_rng_categorical(&g, p, 5)]++;
    cr_assert_eq(count[1], 0, "a zero-probability outcome was drawn");
    for (int k = 0; k < 5; k++) {
        double f = (double)count[k] / S, se = sqrt(p[k] * (1 - p[k]) / S);
        cr_assert(fabs(f - p[k]) <= 4 * se, "outcome %d: frequency %g, p %g", k, f, p[k]);
    }
}
