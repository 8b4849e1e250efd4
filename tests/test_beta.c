/* beta controllers: a hand-computed adaptive trajectory, clipping, positivity, convergence to the
 * target on a simple plant, and bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "leash/beta.h"
#include "leash/error.h"
#include "leash/rng.h"

Test(beta, fixed_never_moves) {
    leash_beta_ctl c;
    cr_assert_eq(leash_beta_fixed(&c, 0.05), LEASH_OK);
    for (int i = 0; i < 10; i++) cr_assert_eq(leash_beta_update(&c, 100.0 * i - 300.0, 64), LEASH_OK);
    cr_assert_eq(c.beta, 0.05);
    cr_assert_eq(leash_beta_fixed(&c, 0.0), LEASH_OK, "beta = 0 (no leash) is allowed");
}

Test(beta, adaptive_hand_computed_trajectory) {
    // target 6 nats/sequence, horizon 10000, batch of 256 sequences: n/horizon = 0.0256
    //   KL 12   -> e = clip(1.0)   = +0.2 -> beta = 0.2 * (1 + 0.2*0.0256) = 0.2 * 1.00512 = 0.201024
    //   KL 3    -> e = clip(-0.5)  = -0.2 -> 0.201024 * 0.99488          = 0.19999475712
    //   KL 6.6  -> e = 0.1               -> * 1.00256                   = 0.200506743698227...
    //   KL 6    -> e = 0                 -> unchanged
    //   KL -1   -> e = clip(-7/6)  = -0.2 -> * 0.99488                   = 0.199480149170492...
    //   KL 7    -> e = 1/6               -> * (1 + 0.0256/6)            = 0.200331264473619...
    const double kl[6] = {12, 3, 6.6, 6, -1, 7};
    const double want_e[6] = {0.2, -0.2, 0.1, 0.0, -0.2, 1.0 / 6.0};
    const double want_beta[6] = {0.201024, 0.19999475712, 0.19999475712 * 1.00256, 0.19999475712 * 1.00256,
                                 0.19999475712 * 1.00256 * 0.99488, 0.19999475712 * 1.00256 * 0.99488 * (1 + 0.0256 / 6)};
    leash_beta_ctl c;
    cr_assert_eq(leash_beta_adaptive(&c, LEASH_BETA_DEFAULT_INIT, LEASH_BETA_DEFAULT_TARGET, LEASH_BETA_DEFAULT_HORIZON),
                 LEASH_OK);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(leash_beta_update(&c, kl[i], 256), LEASH_OK);
        cr_assert(fabs(c.error - want_e[i]) < 1e-12, "step %d: e = %.17g, want %.17g", i, c.error, want_e[i]);
        cr_assert(fabs(c.beta - want_beta[i]) < 1e-9, "step %d: beta = %.17g, want %.17g", i, c.beta, want_beta[i]);
    }
}

Test(beta, clipped_and_never_negative) {
    leash_rng rng;
    leash_rng_seed(&rng, 21, 0);
    leash_beta_ctl c;
    cr_assert_eq(leash_beta_adaptive(&c, 0.1, 6.0, 1000.0), LEASH_OK);
    for (int i = 0; i < 20000; i++) {
        double kl = (leash_rng_uniform(&rng) - 0.5) * 1e6; // wild KLs, negative included
        long n = 1 + (long)(leash_rng_uniform(&rng) * 1000.0);
        double before = c.beta;
        cr_assert_eq(leash_beta_update(&c, kl, n), LEASH_OK);
        cr_assert(c.error >= -0.2 && c.error <= 0.2, "e = %g escaped the clip", c.error);
        cr_assert(c.beta > 0.0, "beta went to %g", c.beta);
        double step = c.beta / before;
        cr_assert(step >= 0.8 - 1e-15 && step <= 1.2 + 1e-15, "one update scaled beta by %g", step);
    }
}

Test(beta, steers_kl_to_the_target) {
    // a plant in which the measured KL is inversely proportional to beta: KL = 1.2 / beta. The fixed
    // point is beta = 0.2 for target 6; start far off and check the controller gets there.
    leash_beta_ctl c;
    cr_assert_eq(leash_beta_adaptive(&c, 0.02, 6.0, 10000.0), LEASH_OK);
    double kl = 0.0;
    for (int step = 0; step < 3000; step++) {
        kl = 1.2 / c.beta;
        cr_assert_eq(leash_beta_update(&c, kl, 512), LEASH_OK);
    }
    cr_assert(fabs(kl - 6.0) < 0.06, "KL after 3000 steps = %g, target 6", kl);
}

Test(beta, bad_input) {
    leash_beta_ctl c;
    cr_assert_eq(leash_beta_fixed(&c, -0.1), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "beta = -0.1"), "message: %s", leash_errmsg());
    cr_assert_eq(leash_beta_fixed(&c, NAN), LEASH_EINVAL);
    cr_assert_eq(leash_beta_fixed(&c, INFINITY), LEASH_EINVAL);
    cr_assert_eq(leash_beta_adaptive(&c, 0.0, 6.0, 1e4), LEASH_EINVAL);
    cr_assert_eq(leash_beta_adaptive(&c, -1.0, 6.0, 1e4), LEASH_EINVAL);
    cr_assert_eq(leash_beta_adaptive(&c, 0.1, 0.0, 1e4), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "target"), "message: %s", leash_errmsg());
    cr_assert_eq(leash_beta_adaptive(&c, 0.1, 6.0, -5.0), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "horizon"), "message: %s", leash_errmsg());
    cr_assert_eq(leash_beta_adaptive(&c, 0.1, 6.0, 100.0), LEASH_OK);
    cr_assert_eq(leash_beta_update(&c, NAN, 10), LEASH_ENUMERIC);
    cr_assert_eq(leash_beta_update(&c, 5.0, 0), LEASH_EINVAL);
    cr_assert_eq(leash_beta_update(&c, 5.0, 101), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "exceeds the KL horizon"), "message: %s", leash_errmsg());
    cr_assert_eq(c.beta, 0.1, "a refused update changed beta");
}
