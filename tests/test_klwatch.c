/* Pitfall 5 (docs/kl-pitfalls.md), negative KL: a single negative batch is reported and tolerated, a
 * running mean that stays below the band warns with the usual cause; a high running KL warns too.
 * (Dropping the LEASH_KLWATCH_MIN_STEPS condition, or testing `kl < low` instead of the running mean,
 * made the second, respectively the first, test fail.) */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "leash/error.h"
#include "leash/klwatch.h"

Test(klwatch, one_negative_batch_is_no_alarm) {
    leash_klwatch w;
    cr_assert_eq(leash_klwatch_init(&w, LEASH_KLWATCH_DEFAULT_LOW, LEASH_KLWATCH_DEFAULT_HIGH), LEASH_OK);
    const double kl[] = {0.3, 0.2, 0.1, -0.4, -0.05, 0.4};
    for (int i = 0; i < 6; i++) cr_assert_eq(leash_klwatch_update(&w, kl[i], 0.0), 0, "step %d", i + 1);
    cr_assert(fabs(w.running - (0.2 + 0.1 - 0.4 - 0.05 + 0.4) / 5) < 1e-15, "running %g", w.running);
}

Test(klwatch, a_mean_that_stays_negative_warns) {
    leash_klwatch w;
    cr_assert_eq(leash_klwatch_init(&w, -0.1, 10.0), LEASH_OK);
    // running means: -0.5 (1 step: too early), -0.35, -0.3 -> warns from step 3 on
    cr_assert_eq(leash_klwatch_update(&w, -0.5, 0.0), 0);
    cr_assert_eq(leash_klwatch_update(&w, -0.2, 0.0), 0);
    cr_assert_eq(leash_klwatch_update(&w, -0.2, 0.0), LEASH_KLWATCH_NEGATIVE);
    cr_assert(strstr(leash_klwatch_advice(LEASH_KLWATCH_NEGATIVE), "sampled from another distribution"));
    // recovery: the window forgets the old batches (5 steps)
    for (int i = 0; i < 5; i++) leash_klwatch_update(&w, 0.5, 0.0);
    cr_assert_eq(leash_klwatch_update(&w, 0.5, 0.0), 0);
    cr_assert(fabs(w.running - 0.5) < 1e-15);
}

Test(klwatch, a_noisy_negative_mean_is_no_alarm) {
    // the same means as above, but from small batches: a standard error of 0.3 per batch makes a running
    // mean of -0.3 over 3 batches (standard error 0.17) well within chance; at 0.05 it is not
    leash_klwatch w;
    cr_assert_eq(leash_klwatch_init(&w, -0.1, 10.0), LEASH_OK);
    for (int i = 0; i < 3; i++) cr_assert_eq(leash_klwatch_update(&w, -0.3, 0.3), 0, "step %d", i + 1);
    cr_assert_eq(leash_klwatch_init(&w, -0.1, 10.0), LEASH_OK);
    for (int i = 0; i < 2; i++) cr_assert_eq(leash_klwatch_update(&w, -0.3, 0.05), 0);
    cr_assert_eq(leash_klwatch_update(&w, -0.3, 0.05), LEASH_KLWATCH_NEGATIVE);
}

Test(klwatch, high_kl_warns_at_once) {
    leash_klwatch w;
    cr_assert_eq(leash_klwatch_init(&w, -0.1, 10.0), LEASH_OK);
    cr_assert_eq(leash_klwatch_update(&w, 25.0, 0.0), LEASH_KLWATCH_HIGH);
    cr_assert(strstr(leash_klwatch_advice(LEASH_KLWATCH_HIGH), "--beta"));
    cr_assert_str_eq(leash_klwatch_advice(0), "");
}

Test(klwatch, bad_input) {
    leash_klwatch w;
    cr_assert_eq(leash_klwatch_init(&w, 1.0, 1.0), LEASH_EINVAL);
    cr_assert_eq(leash_klwatch_init(&w, -0.1, NAN), LEASH_EINVAL);
    cr_assert_eq(leash_klwatch_init(&w, -0.1, 10.0), LEASH_OK);
    cr_assert_eq(leash_klwatch_update(&w, NAN, 0.0), -1);
    cr_assert(strstr(leash_errmsg(), "step 1"), "%s", leash_errmsg());
}
