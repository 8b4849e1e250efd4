/* Every layer's backward against central finite differences of its forward, in float32 with a stated
 * tolerance: the loss is sum_i w_i out_i (random w, summed in float64), steps of 1e-2 with Richardson
 * extrapolation, and the check is max |analytic - numeric| / max |numeric| < 1e-2 per input tensor
 * (float32 forward rounding is ~1e-7 relative; the bound leaves room for it, and a wrong backward is
 * off by O(1)). The PyTorch comparison (test_gpt_ref.c) checks the same code to 1e-4. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/ops.h"
#include "leash/rng.h"

typedef void (*fwd_fn)(float *out, void *ctx);

static double weighted(fwd_fn f, void *ctx, float *out, const float *w, int n_out) {
    f(out, ctx);
    double acc = 0.0;
    for (int j = 0; j < n_out; j++) acc += (double)w[j] * out[j];
    return acc;
}

/* d (sum w * out) / d x[i] numerically, for i in [0, n). */
static void numeric_grad(fwd_fn f, void *ctx, float *x, int n, const float *w, int n_out, double *g) {
    float *out = malloc(n_out * sizeof *out);
    for (int i = 0; i < n; i++) {
        float x0 = x[i];
        double d[2];
        for (int k = 0; k < 2; k++) {
            float h = k == 0 ? 2e-2f : 1e-2f;
            x[i] = x0 + h;
            double fp = weighted(f, ctx, out, w, n_out);
            x[i] = x0 - h;
            double fm = weighted(f, ctx, out, w, n_out);
            d[k] = (fp - fm) / ((double)(x0 + h) - (double)(x0 - h));
        }
        x[i] = x0;
        g[i] = (4.0 * d[1] - d[0]) / 3.0;
    }
    free(out);
}

static double rel(const float *a, const double *b, int n) {
    double worst = 0, scale = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i])), scale = fmax(scale, fabs(b[i]));
    return worst / fmax(scale, 1e-30);
}

static void randn(leash_rng *r, float *x, int n, double s) {
    for (int i = 0; i < n; i++) x[i] = (float)(s * leash_rng_normal(r));
}

/* ---- layernorm ---- */
enum { N = 5, C = 8, OC = 6 };
static float ln_x[N * C], ln_w[C], ln_b[C];
static void ln_fwd(float *out, void *ctx) {
    (void)ctx;
    float mean[N], rstd[N];
    leash_layernorm_forward(out, mean, rstd, ln_x, ln_w, ln_b, N, C, 1e-5f);
}

Test(ops_grad, layernorm) {
    leash_rng r;
    leash_rng_seed(&r, 1, 0);
    randn(&r, ln_x, N * C, 1.0), randn(&r, ln_w, C, 1.0), randn(&r, ln_b, C, 1.0);
    float w[N * C], out[N * C], mean[N], rstd[N], dx[N * C] = {0}, dw[C] = {0}, db[C] = {0};
    randn(&r, w, N * C, 1.0);
    leash_layernorm_forward(out, mean, rstd, ln_x, ln_w, ln_b, N, C, 1e-5f);
    leash_layernorm_backward(dx, dw, db, w, ln_x, ln_w, mean, rstd, N, C);
    double g[N * C];
    float *ins[3] = {ln_x, ln_w, ln_b}, *grads[3] = {dx, dw, db};
    int sizes[3] = {N * C, C, C};
    for (int k = 0; k < 3; k++) {
        numeric_grad(ln_fwd, NULL, ins[k], sizes[k], w, N * C, g);
        double e = rel(grads[k], g, sizes[k]);
        cr_assert(e < 1e-2, "layernorm input %d: relative error %g", k, e);
    }
}

/* ---- matmul ---- */
static float mm_x[N * C], mm_w[C * OC], mm_b[OC];
static void mm_fwd(float *out, void *ctx) {
    (void)ctx;
    leash_matmul_forward(out, mm_x, mm_w, mm_b, N, C, OC);
}

Test(ops_grad, matmul) {
    leash_rng r;
    leash_rng_seed(&r, 2, 0);
    randn(&r, mm_x, N * C, 1.0), randn(&r, mm_w, C * OC, 1.0), randn(&r, mm_b, OC, 1.0);
    float w[N * OC], dx[N * C] = {0}, dw[C * OC] = {0}, db[OC] = {0};
    randn(&r, w, N * OC, 1.0);
    leash_matmul_backward(dx, dw, db, w, mm_x, mm_w, N, C, OC);
    double g[C * OC];
    float *ins[3] = {mm_x, mm_w, mm_b}, *grads[3] = {dx, dw, db};
    int sizes[3] = {N * C, C * OC, OC};
    for (int k = 0; k < 3; k++) {
        numeric_grad(mm_fwd, NULL, ins[k], sizes[k], w, N * OC, g);
        double e = rel(grads[k], g, sizes[k]);
        cr_assert(e < 1e-2, "matmul input %d: relative error %g", k, e);
    }
}

/* ---- gelu ---- */
static float ge_x[64];
static void ge_fwd(float *out, void *ctx) {
    (void)ctx;
    leash_gelu_forward(out, ge_x, 64);
}

Test(ops_grad, gelu) {
    leash_rng r;
    leash_rng_seed(&r, 3, 0);
    randn(&r, ge_x, 64, 2.0);
    float w[64], dx[64] = {0};
    randn(&r, w, 64, 1.0);
    leash_gelu_backward(dx, ge_x, w, 64);
    double g[64];
    numeric_grad(ge_fwd, NULL, ge_x, 64, w, 64, g);
    double e = rel(dx, g, 64);
    cr_assert(e < 1e-2, "gelu: relative error %g", e);
}

/* ---- attention with a key mask ---- */
enum { AB = 2, AT = 5, AC = 8, ANH = 2 };
static float at_qkv[AB * AT * 3 * AC];
static const uint8_t at_mask[AB * AT] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1}; // row 1 left-padded by 2
static void at_fwd(float *out, void *ctx) {
    (void)ctx;
    static float att[AB * ANH * AT * AT];
    leash_attention_forward(out, att, at_qkv, at_mask, AB, AT, ANH, ANH, AC / ANH);
}

Test(ops_grad, attention_with_padding) {
    leash_rng r;
    leash_rng_seed(&r, 4, 0);
    randn(&r, at_qkv, AB * AT * 3 * AC, 1.0);
    float w[AB * AT * AC], out[AB * AT * AC], att[AB * ANH * AT * AT], scratch[AB * ANH * AT];
    float dqkv[AB * AT * 3 * AC] = {0};
    randn(&r, w, AB * AT * AC, 1.0);
    for (int t = 0; t < 2; t++)
        for (int c = 0; c < AC; c++) w[(AT + t) * AC + c] = 0.0f; // padded queries: output unused
    leash_attention_forward(out, att, at_qkv, at_mask, AB, AT, ANH, ANH, AC / ANH);
    leash_attention_backward(dqkv, scratch, w, at_qkv, att, AB, AT, ANH, ANH, AC / ANH);
    double g[AB * AT * 3 * AC];
    numeric_grad(at_fwd, NULL, at_qkv, AB * AT * 3 * AC, w, AB * AT * AC, g);
    double e = rel(dqkv, g, AB * AT * 3 * AC);
    cr_assert(e < 1e-2, "attention: relative error %g", e);
    // padded keys receive no gradient and padded queries attend to nothing
    for (int t = 0; t < 2; t++)
        for (int c = 0; c < 3 * AC; c++) cr_assert_eq(dqkv[(AT + t) * 3 * AC + c], 0.0f, "padded position %d got gradient", t);
    for (int c = 0; c < AC; c++) cr_assert_eq(out[AT * AC + c], 0.0f, "a query with no key must output 0");
}

/* ---- encoder ---- */
Test(ops_grad, encoder_scatters_to_shared_rows) {
    enum { V = 4, P = 3, NN = 4, CC = 3 };
    const int tok[NN] = {1, 3, 1, 0}, pos[NN] = {0, 1, 2, 0};
    float dout[NN * CC], dwte[V * CC] = {0}, dwpe[P * CC] = {0};
    for (int i = 0; i < NN * CC; i++) dout[i] = (float)(i + 1);
    leash_encoder_backward(dwte, dwpe, dout, tok, pos, NN, CC);
    for (int c = 0; c < CC; c++) {
        cr_assert_eq(dwte[1 * CC + c], dout[0 * CC + c] + dout[2 * CC + c], "token 1 appears twice");
        cr_assert_eq(dwpe[0 * CC + c], dout[0 * CC + c] + dout[3 * CC + c], "position 0 appears twice");
        cr_assert_eq(dwte[2 * CC + c], 0.0f);
    }
}
