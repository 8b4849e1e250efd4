/* Exact KL, log-softmax and entropy: closed forms, invariances, extreme inputs, finite-difference
 * gradients and bad input. Dimensions: V vocabulary, N rows. */
#define _DEFAULT_SOURCE // mkdtemp, used by a helper in testutil.h
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/kl.h"
#include "testutil.h"

Test(log_softmax, matches_closed_form_and_normalises) {
    float z[4] = {1.0f, 2.0f, 3.0f, 4.0f}, out[4];
    double lse;
    cr_assert_eq(leash_log_softmax(z, 4, 1.0f, out, &lse), LEASH_OK);
    double ref_lse = log(exp(1.0) + exp(2.0) + exp(3.0) + exp(4.0)), total = 0.0;
    cr_assert(fabs(lse - ref_lse) < 1e-12, "lse %.17g vs %.17g", lse, ref_lse);
    for (int i = 0; i < 4; i++) {
        cr_assert(fabs(out[i] - (z[i] - ref_lse)) < 1e-6, "out[%d] = %g", i, (double)out[i]);
        total += exp((double)out[i]);
    }
    cr_assert(fabs(total - 1.0) < 1e-6);
}

Test(log_softmax, temperature_divides_logits) {
    float z[5] = {0.5f, -1.0f, 2.0f, 0.0f, 3.5f}, zt[5], a[5], b[5];
    for (int i = 0; i < 5; i++) zt[i] = z[i] / 0.7f;
    cr_assert_eq(leash_log_softmax(z, 5, 0.7f, a, NULL), LEASH_OK);
    cr_assert_eq(leash_log_softmax(zt, 5, 1.0f, b, NULL), LEASH_OK);
    for (int i = 0; i < 5; i++) cr_assert(fabs(a[i] - b[i]) < 1e-6, "token %d: %g vs %g", i, (double)a[i], (double)b[i]);
}

Test(log_softmax, extreme_logits_stay_finite_at_large_vocab) {
    int V = 262144;
    float *z = malloc(V * sizeof *z), *out = malloc(V * sizeof *out);
    leash_rng rng;
    leash_rng_seed(&rng, 1, 0);
    for (int v = 0; v < V; v++) z[v] = leash_rng_uniform(&rng) < 0.5 ? 1e4f : -1e4f;
    z[7] = 1e4f;
    double lse;
    cr_assert_eq(leash_log_softmax(z, V, 1.0f, out, &lse), LEASH_OK);
    cr_assert(isfinite(lse));
    for (int v = 0; v < V; v++) cr_assert(isfinite(out[v]) && out[v] <= 0.0f, "out[%d] = %g", v, (double)out[v]);
    cr_assert(fabs(out[7] + log((double)(V / 2))) < 0.01, "out[7] = %g", (double)out[7]);
    free(z), free(out);
}

Test(entropy, uniform_and_one_hot) {
    float u[8] = {0}, h1[3] = {1e4f, -1e4f, -1e4f};
    double h;
    cr_assert_eq(leash_entropy(u, 8, 1.0f, &h), LEASH_OK);
    cr_assert(fabs(h - log(8.0)) < 1e-12, "H(uniform 8) = %.17g", h);
    cr_assert_eq(leash_entropy(h1, 3, 1.0f, &h), LEASH_OK);
    cr_assert(h >= 0.0 && h < 1e-12, "H(one-hot) = %g", h);
}

Test(kl_exact, zero_for_identical_rows_exactly) {
    leash_rng rng;
    leash_rng_seed(&rng, 2, 0);
    for (int V = 1; V <= 50257; V = V * 7 + 1) {
        float *z = malloc(V * sizeof *z), *g = malloc(V * sizeof *g);
        grid_logits(&rng, z, V, 30.0);
        double kl = -1.0;
        cr_assert_eq(leash_kl_exact(z, z, V, 0.8f, &kl, g), LEASH_OK);
        cr_assert_eq(kl, 0.0, "KL(p||p) = %g at V = %d", kl, V);
        for (int v = 0; v < V; v++) cr_assert_eq(g[v], 0.0f);
        free(z), free(g);
    }
}

Test(kl_exact, two_outcome_closed_form) {
    const double ps[] = {0.5, 0.1, 0.9, 0.01}, qs[] = {0.3, 0.7, 0.5, 0.99};
    for (int k = 0; k < 4; k++) {
        double p = ps[k], q = qs[k];
        // grid-free logits: log-probs as logits, rounded to float; compare to the closed form of the
        // distributions those floats define
        float z[2] = {(float)log(p), (float)log1p(-p)}, r[2] = {(float)log(q), (float)log1p(-q)};
        double pz = exp((double)z[0]) / (exp((double)z[0]) + exp((double)z[1]));
        double qr = exp((double)r[0]) / (exp((double)r[0]) + exp((double)r[1]));
        double want = pz * log(pz / qr) + (1 - pz) * log((1 - pz) / (1 - qr)), kl;
        cr_assert_eq(leash_kl_exact(z, r, 2, 1.0f, &kl, NULL), LEASH_OK);
        cr_assert(fabs(kl - want) < 1e-13 * fmax(1.0, want), "p=%g q=%g: KL %.17g, closed form %.17g", p, q, kl, want);
    }
}

Test(kl_exact, uniform_reference_is_log_v_minus_entropy) {
    leash_rng rng;
    leash_rng_seed(&rng, 3, 0);
    int V = 1000;
    float z[1000], u[1000] = {0};
    grid_logits(&rng, z, V, 4.0);
    double kl, h;
    cr_assert_eq(leash_kl_exact(z, u, V, 1.0f, &kl, NULL), LEASH_OK);
    cr_assert_eq(leash_entropy(z, V, 1.0f, &h), LEASH_OK);
    cr_assert(fabs(kl - (log((double)V) - h)) < 1e-12, "KL %.17g vs log V - H %.17g", kl, log((double)V) - h);
}

Test(kl_exact, nonnegative_and_shift_invariant) {
    leash_rng rng;
    leash_rng_seed(&rng, 4, 0);
    float z[64], r[64], zs[64];
    for (int trial = 0; trial < 200; trial++) {
        grid_logits(&rng, z, 64, 1.0 + trial * 0.1);
        grid_logits(&rng, r, 64, 1.0 + trial * 0.1);
        for (int v = 0; v < 64; v++) zs[v] = z[v] + 16.0f; // exact on the grid
        double a, b;
        cr_assert_eq(leash_kl_exact(z, r, 64, 1.0f, &a, NULL), LEASH_OK);
        cr_assert_eq(leash_kl_exact(zs, r, 64, 1.0f, &b, NULL), LEASH_OK);
        cr_assert(a >= 0.0, "KL = %g < 0", a);
        cr_assert(fabs(a - b) < 1e-12 * fmax(1.0, a), "shift changed KL: %.17g vs %.17g", a, b);
    }
}

Test(kl_exact, temperature_matches_prescaled_logits) {
    leash_rng rng;
    leash_rng_seed(&rng, 5, 0);
    float z[100], r[100], zt[100], rt[100];
    grid_logits(&rng, z, 100, 3.0);
    grid_logits(&rng, r, 100, 3.0);
    const float T = 0.7f;
    for (int v = 0; v < 100; v++) zt[v] = z[v] / T, rt[v] = r[v] / T;
    double a, b, one;
    cr_assert_eq(leash_kl_exact(z, r, 100, T, &a, NULL), LEASH_OK);
    cr_assert_eq(leash_kl_exact(zt, rt, 100, 1.0f, &b, NULL), LEASH_OK);
    cr_assert_eq(leash_kl_exact(z, r, 100, 1.0f, &one, NULL), LEASH_OK);
    cr_assert(fabs(a - b) < 1e-6 * a, "KL at T=0.7 %.10g vs prescaled %.10g", a, b);
    cr_assert(fabs(a - one) > 1e-3, "temperature had no effect: %g vs %g", a, one);
}

Test(kl_exact, extreme_logits_stay_finite) {
    int V = 262144;
    float *z = malloc(V * sizeof *z), *r = malloc(V * sizeof *r), *g = malloc(V * sizeof *g);
    for (int v = 0; v < V; v++) z[v] = -1e4f, r[v] = -1e4f;
    z[0] = 1e4f; // the policy is certain of token 0
    r[1] = 1e4f; // the reference of token 1: log pi_ref(0) = -2e4
    double kl;
    cr_assert_eq(leash_kl_exact(z, r, V, 1.0f, &kl, g), LEASH_OK);
    cr_assert(isfinite(kl) && fabs(kl - 2e4) < 1e-6 * 2e4, "KL = %g, expected ~2e4", kl);
    for (int v = 0; v < V; v++) cr_assert(isfinite(g[v]), "grad[%d] = %g", v, (double)g[v]);
    cr_assert_eq(leash_kl_exact(z, r, V, 1e-3f, &kl, g), LEASH_OK);
    cr_assert(isfinite(kl) && kl > 1e7, "KL at T=1e-3 = %g", kl);
    free(z), free(r), free(g);
}

typedef struct {
    const float *ref;
    int V;
    float T;
} kl_ctx;

static double kl_of(const float *z, void *ctx) {
    kl_ctx *c = ctx;
    double kl;
    cr_assert_eq(leash_kl_exact(z, c->ref, c->V, c->T, &kl, NULL), LEASH_OK);
    return kl;
}

Test(kl_exact, gradient_matches_finite_differences) {
    leash_rng rng;
    leash_rng_seed(&rng, 6, 0);
    const float temps[] = {1.0f, 0.7f, 2.0f};
    enum { V = 40 };
    float z[V], r[V], g[V];
    double fd[V];
    for (int k = 0; k < 3; k++) {
        grid_logits(&rng, z, V, 3.0);
        grid_logits(&rng, r, V, 3.0);
        kl_ctx c = {r, V, temps[k]};
        double kl;
        cr_assert_eq(leash_kl_exact(z, r, V, temps[k], &kl, g), LEASH_OK);
        for (int v = 0; v < V; v++) fd[v] = fd_richardson(kl_of, z, v, &c);
        double err = rel_err_f(g, fd, V);
        cr_log_info("exact KL gradient, T = %g: worst relative error %.3g", (double)temps[k], err);
        cr_assert(err < 1e-6, "T = %g: gradient vs finite differences, relative error %g", (double)temps[k], err);
    }
}

Test(kl_exact, rows_match_single_row_calls) {
    enum { N = 9, V = 333 };
    static float z[N * V], r[N * V], g[N * V], g1[V];
    leash_rng rng;
    leash_rng_seed(&rng, 7, 0);
    grid_logits(&rng, z, N * V, 5.0);
    grid_logits(&rng, r, N * V, 5.0);
    double kl[N], k1;
    cr_assert_eq(leash_kl_exact_rows(z, r, N, V, 0.9f, kl, g), LEASH_OK);
    for (int n = 0; n < N; n++) {
        cr_assert_eq(leash_kl_exact(z + n * V, r + n * V, V, 0.9f, &k1, g1), LEASH_OK);
        cr_assert_eq(kl[n], k1, "row %d", n);
        cr_assert_eq(memcmp(g + n * V, g1, sizeof g1), 0, "row %d gradient", n);
    }
}

Test(kl_exact, bad_input_is_a_clear_error) {
    float z[3] = {0.0f, 1.0f, 2.0f}, r[3] = {0.0f, 0.0f, 0.0f}, g[3] = {7, 7, 7};
    double kl = 42.0;
    z[1] = NAN;
    cr_assert_eq(leash_kl_exact(z, r, 3, 1.0f, &kl, g), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "logits[1] = nan"), "message: %s", leash_errmsg());
    cr_assert_eq(kl, 42.0, "output written on failure");
    z[1] = INFINITY;
    cr_assert_eq(leash_kl_exact(z, r, 3, 1.0f, &kl, NULL), LEASH_ENUMERIC);
    z[1] = 1.0f;
    r[2] = -INFINITY;
    cr_assert_eq(leash_kl_exact(z, r, 3, 1.0f, &kl, NULL), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "ref_logits[2]"), "message: %s", leash_errmsg());
    r[2] = 0.0f;
    cr_assert_eq(leash_kl_exact(z, r, 0, 1.0f, &kl, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "V = 0"), "message: %s", leash_errmsg());
    cr_assert_eq(leash_kl_exact(z, r, 3, 0.0f, &kl, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "temperature"), "message: %s", leash_errmsg());
    cr_assert_eq(leash_kl_exact(z, r, 3, -1.0f, &kl, NULL), LEASH_EINVAL);
    cr_assert_eq(leash_kl_exact(z, r, 3, NAN, &kl, NULL), LEASH_EINVAL);
    cr_assert_eq(leash_kl_exact(NULL, r, 3, 1.0f, &kl, NULL), LEASH_EINVAL);
    float out[3];
    cr_assert_eq(leash_log_softmax(z, -5, 1.0f, out, NULL), LEASH_EINVAL);
    double h;
    z[0] = -NAN;
    cr_assert_eq(leash_entropy(z, 3, 1.0f, &h), LEASH_ENUMERIC);
}

Test(kl_exact, rows_report_the_failing_row) {
    enum { N = 6, V = 5 };
    float z[N * V] = {0}, r[N * V] = {0};
    double kl[N];
    z[4 * V + 2] = NAN;
    z[5 * V + 1] = INFINITY;
    cr_assert_eq(leash_kl_exact_rows(z, r, N, V, 1.0f, kl, NULL), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "row 4: logits[2] = nan"), "message: %s", leash_errmsg());
}

Test(log_softmax, lse_matches_libm_across_the_exp_range) {
    // leash evaluates exp with its own vectorised polynomial; compare with libm's exp in float64 on
    // rows whose spread crosses exp's underflow (terms below e^-708 are dropped next to the max's 1)
    leash_rng rng;
    leash_rng_seed(&rng, 8, 0);
    enum { V = 4099 };
    static float z[V];
    const double ranges[] = {1.0, 30.0, 400.0, 2000.0};
    for (int k = 0; k < 4; k++) {
        grid_logits(&rng, z, V, ranges[k]);
        double mx = -INFINITY, s = 0.0, h_ref = 0.0, lse, h;
        for (int v = 0; v < V; v++) mx = fmax(mx, z[v]);
        for (int v = 0; v < V; v++) s += exp(z[v] - mx);
        double want = mx + log(s);
        for (int v = 0; v < V; v++) h_ref -= exp(z[v] - want) * (z[v] - want);
        static float out[V];
        cr_assert_eq(leash_log_softmax(z, V, 1.0f, out, &lse), LEASH_OK);
        cr_assert_eq(leash_entropy(z, V, 1.0f, &h), LEASH_OK);
        cr_assert(fabs(lse - want) < 1e-13 * fmax(1.0, fabs(want)), "range %g: lse %.17g vs libm %.17g", ranges[k], lse, want);
        cr_assert(fabs(h - h_ref) < 1e-12 * fmax(1.0, h_ref), "range %g: entropy %.17g vs libm %.17g", ranges[k], h, h_ref);
    }
}
