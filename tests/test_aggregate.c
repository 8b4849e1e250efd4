/* Masked aggregation over a batch (B, T): per-sequence sums, per-token mean, mean of sequence means,
 * and the weights d out / d x a loss backpropagates through. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "leash/error.h"
#include "leash/kl.h"

enum { B = 3, T = 5 };
// left-padded prompt+response rows: the mask marks response tokens only; sequence 2 is empty
static const float X[B * T] = {9, 1, 2, 3, 9, /**/ 9, 9, 4, 9, 9, /**/ 9, 9, 9, 9, 9};
static const uint8_t M[B * T] = {0, 1, 1, 1, 0, /**/ 0, 0, 1, 0, 0, /**/ 0, 0, 0, 0, 0};

Test(aggregate, row_sums_and_counts) {
    double s[B];
    int c[B];
    cr_assert_eq(leash_masked_row_sums(X, M, B, T, s, c), LEASH_OK);
    cr_assert(s[0] == 6.0 && s[1] == 4.0 && s[2] == 0.0);
    cr_assert(c[0] == 3 && c[1] == 1 && c[2] == 0);
}

Test(aggregate, the_three_reductions) {
    double out;
    cr_assert_eq(leash_masked_reduce(X, M, B, T, LEASH_AGG_SEQ_SUM, &out, NULL), LEASH_OK);
    cr_assert_eq(out, 10.0 / 3.0, "per-sequence KL = mean of sums, empty sequences count: %g", out);
    cr_assert_eq(leash_masked_reduce(X, M, B, T, LEASH_AGG_TOKEN_MEAN, &out, NULL), LEASH_OK);
    cr_assert_eq(out, 10.0 / 4.0, "per-token mean: %g", out);
    cr_assert_eq(leash_masked_reduce(X, M, B, T, LEASH_AGG_SEQ_MEAN, &out, NULL), LEASH_OK);
    cr_assert_eq(out, (2.0 + 4.0) / 2.0, "mean of sequence means, empty sequences left out: %g", out);
    cr_assert_eq(leash_masked_reduce(X, NULL, B, T, LEASH_AGG_TOKEN_MEAN, &out, NULL), LEASH_OK);
    cr_assert(fabs(out - 109.0 / 15.0) < 1e-15, "no mask selects all: %g", out);
}

Test(aggregate, weights_are_the_derivative) {
    // every reduction is linear in x: out(x + h e_i) - out(x) = h * weight_i exactly (h a power of 2)
    for (int agg = 0; agg < 3; agg++) {
        float w[B * T], x[B * T];
        double base, moved;
        memcpy(x, X, sizeof x);
        cr_assert_eq(leash_masked_reduce(x, M, B, T, agg, &base, w), LEASH_OK);
        for (int i = 0; i < B * T; i++) {
            x[i] += 0.5f;
            cr_assert_eq(leash_masked_reduce(x, M, B, T, agg, &moved, NULL), LEASH_OK);
            x[i] = X[i];
            cr_assert(fabs((moved - base) / 0.5 - w[i]) < 1e-7, "agg %d, entry %d: weight %g, difference %g", agg, i,
                      (double)w[i], (moved - base) / 0.5);
            if (!M[i]) cr_assert_eq(w[i], 0.0f, "masked entry %d has weight", i);
        }
    }
}

Test(aggregate, padding_values_never_leak) {
    float x[B * T];
    memcpy(x, X, sizeof x);
    for (int i = 0; i < B * T; i++)
        if (!M[i]) x[i] = NAN; // garbage in padding must not reach any sum
    double out;
    for (int agg = 0; agg < 3; agg++) {
        cr_assert_eq(leash_masked_reduce(x, M, B, T, agg, &out, NULL), LEASH_OK);
        cr_assert(isfinite(out));
    }
}

Test(aggregate, bad_input) {
    uint8_t none[B * T] = {0};
    double out = 7.0;
    cr_assert_eq(leash_masked_reduce(X, none, B, T, LEASH_AGG_TOKEN_MEAN, &out, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "selects no token"), "message: %s", leash_errmsg());
    cr_assert_eq(out, 7.0);
    float x[B * T];
    memcpy(x, X, sizeof x);
    x[7] = INFINITY;
    cr_assert_eq(leash_masked_reduce(x, M, B, T, LEASH_AGG_SEQ_SUM, &out, NULL), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "sequence 1, token 2"), "message: %s", leash_errmsg());
    cr_assert_eq(leash_masked_reduce(X, M, 0, T, LEASH_AGG_SEQ_SUM, &out, NULL), LEASH_EINVAL);
    cr_assert_eq(leash_masked_reduce(X, M, B, T, (leash_agg)5, &out, NULL), LEASH_EINVAL);
}
