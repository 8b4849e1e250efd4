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

/* ---- the Llama family's layers ---- */

/* rmsnorm: input and weight */
static float rn_x[N * C], rn_w[C];
static void rn_fwd(float *out, void *ctx) {
    (void)ctx;
    float rstd[N];
    leash_rmsnorm_forward(out, rstd, rn_x, rn_w, N, C, 1e-6f);
}

Test(ops_grad, rmsnorm) {
    leash_rng r;
    leash_rng_seed(&r, 11, 0);
    randn(&r, rn_x, N * C, 1.0);
    randn(&r, rn_w, C, 1.0);
    float w[N * C], out[N * C], rstd[N], dx[N * C] = {0}, dw[C] = {0};
    randn(&r, w, N * C, 1.0);
    leash_rmsnorm_forward(out, rstd, rn_x, rn_w, N, C, 1e-6f);
    leash_rmsnorm_backward(dx, dw, w, rn_x, rn_w, rstd, N, C);
    double gx[N * C], gw[C];
    numeric_grad(rn_fwd, NULL, rn_x, N * C, w, N * C, gx);
    numeric_grad(rn_fwd, NULL, rn_w, C, w, N * C, gw);
    cr_assert(rel(dx, gx, N * C) < 1e-2, "rmsnorm input: relative error %g", rel(dx, gx, N * C));
    cr_assert(rel(dw, gw, C) < 1e-2, "rmsnorm weight: relative error %g", rel(dw, gw, C));
}

/* swiglu: gate and up halves, over negative and positive gates */
static float sw_gu[N * 2 * C];
static void sw_fwd(float *out, void *ctx) {
    (void)ctx;
    leash_swiglu_forward(out, sw_gu, N, C);
}

Test(ops_grad, swiglu) {
    leash_rng r;
    leash_rng_seed(&r, 12, 0);
    randn(&r, sw_gu, N * 2 * C, 2.0);
    float w[N * C], dgu[N * 2 * C] = {0};
    randn(&r, w, N * C, 1.0);
    leash_swiglu_backward(dgu, sw_gu, w, N, C);
    double g[N * 2 * C];
    numeric_grad(sw_fwd, NULL, sw_gu, N * 2 * C, w, N * C, g);
    cr_assert(rel(dgu, g, N * 2 * C) < 1e-2, "swiglu: relative error %g", rel(dgu, g, N * 2 * C));
}

/* rope: the backward is the rotation back; a rotation keeps norms, and position 0 is the identity */
enum { RH = 3, RHS = 6, RLD = RH * RHS + 4 }; // 3 heads of 6 in rows of 22 (4 columns left alone)
static float rp_x[N * RLD];
static const int rp_pos[N] = {0, 1, 2, 7, 300};
static const float rp_freq[RHS / 2] = {1.0f, 0.1f, 0.01f};
static void rp_fwd(float *out, void *ctx) {
    (void)ctx;
    memcpy(out, rp_x, sizeof rp_x);
    leash_rope(out, RLD, rp_pos, rp_freq, N, RH, RHS, 1);
}

Test(ops_grad, rope) {
    leash_rng r;
    leash_rng_seed(&r, 13, 0);
    randn(&r, rp_x, N * RLD, 1.0);
    float w[N * RLD], out[N * RLD], dx[N * RLD];
    randn(&r, w, N * RLD, 1.0);
    memcpy(dx, w, sizeof w);
    leash_rope(dx, RLD, rp_pos, rp_freq, N, RH, RHS, -1);
    double g[N * RLD];
    numeric_grad(rp_fwd, NULL, rp_x, N * RLD, w, N * RLD, g);
    cr_assert(rel(dx, g, N * RLD) < 1e-2, "rope: relative error %g", rel(dx, g, N * RLD));
    rp_fwd(out, NULL);
    for (int c = 0; c < RLD; c++) cr_assert_eq(out[c], rp_x[c], "position 0 is not rotated");
    for (int c = RH * RHS; c < RLD; c++) cr_assert_eq(out[4 * RLD + c], rp_x[4 * RLD + c], "columns past the heads stay");
    double n0 = 0, n1 = 0;
    for (int c = 0; c < RHS; c++) n0 += rp_x[4 * RLD + c] * rp_x[4 * RLD + c], n1 += out[4 * RLD + c] * out[4 * RLD + c];
    cr_assert(fabs(n0 - n1) < 1e-5 * n0, "a rotation keeps the norm: %g vs %g", n0, n1);
}

/* grouped-query attention: 4 query heads on 2 key/value heads, with padding */
enum { GNH = 4, GNKV = 2, GHS = 3, GW = (GNH + 2 * GNKV) * GHS };
static float gq_qkv[AB * AT * GW];
static void gq_fwd(float *out, void *ctx) {
    (void)ctx;
    static float att[AB * GNH * AT * AT];
    leash_attention_forward(out, att, gq_qkv, at_mask, AB, AT, GNH, GNKV, GHS);
}

Test(ops_grad, grouped_query_attention) {
    leash_rng r;
    leash_rng_seed(&r, 14, 0);
    randn(&r, gq_qkv, AB * AT * GW, 1.0);
    enum { OW = GNH * GHS };
    float w[AB * AT * OW], out[AB * AT * OW], att[AB * GNH * AT * AT], scratch[AB * GNH * AT], dqkv[AB * AT * GW] = {0};
    randn(&r, w, AB * AT * OW, 1.0);
    for (int t = 0; t < 2; t++)
        for (int c = 0; c < OW; c++) w[(AT + t) * OW + c] = 0.0f; // padded queries: output unused
    leash_attention_forward(out, att, gq_qkv, at_mask, AB, AT, GNH, GNKV, GHS);
    leash_attention_backward(dqkv, scratch, w, gq_qkv, att, AB, AT, GNH, GNKV, GHS);
    double g[AB * AT * GW];
    numeric_grad(gq_fwd, NULL, gq_qkv, AB * AT * GW, w, AB * AT * OW, g);
    cr_assert(rel(dqkv, g, AB * AT * GW) < 1e-2, "GQA attention: relative error %g", rel(dqkv, g, AB * AT * GW));
    // query heads 0 and 1 share key/value head 0: with equal queries they give equal outputs
    memcpy(gq_qkv + GHS, gq_qkv, GHS * sizeof(float));
    gq_fwd(out, NULL);
    for (int i = 0; i < GHS; i++) cr_assert_eq(out[i], out[GHS + i], "heads 0 and 1 read the same keys and values");
}

/* linear in the (out, in) layout with a strided output: the same numbers as the Conv1D layout */
Test(ops, linear_layouts_agree) {
    enum { LN = 4, LC = 5, LO = 3, LD = 7 };
    leash_rng r;
    leash_rng_seed(&r, 15, 0);
    float x[LN * LC], w_io[LC * LO], w_oi[LO * LC], b[LO], a[LN * LO], s[LN * LD];
    randn(&r, x, LN * LC, 1.0), randn(&r, w_io, LC * LO, 1.0), randn(&r, b, LO, 1.0);
    for (int i = 0; i < LC; i++)
        for (int o = 0; o < LO; o++) w_oi[o * LC + i] = w_io[i * LO + o];
    leash_matmul_forward(a, x, w_io, b, LN, LC, LO);
    for (int i = 0; i < LN * LD; i++) s[i] = 42.0f;
    leash_linear_forward(s, LD, x, w_oi, b, LN, LC, LO, 1);
    for (int n = 0; n < LN; n++) {
        for (int o = 0; o < LO; o++) cr_assert(fabsf(s[n * LD + o] - a[n * LO + o]) < 1e-5f);
        for (int o = LO; o < LD; o++) cr_assert_eq(s[n * LD + o], 42.0f, "columns past OC are left alone");
    }
    float dy[LN * LD], dx1[LN * LC] = {0}, dx2[LN * LC] = {0}, dw1[LC * LO] = {0}, dw2[LO * LC] = {0}, db1[LO] = {0},
          db2[LO] = {0}, dyc[LN * LO];
    randn(&r, dy, LN * LD, 1.0);
    for (int n = 0; n < LN; n++) memcpy(dyc + n * LO, dy + n * LD, LO * sizeof(float));
    leash_matmul_backward(dx1, dw1, db1, dyc, x, w_io, LN, LC, LO);
    leash_linear_backward(dx2, dw2, db2, dy, LD, x, w_oi, LN, LC, LO, 1);
    for (int i = 0; i < LN * LC; i++) cr_assert(fabsf(dx1[i] - dx2[i]) < 1e-5f);
    for (int i = 0; i < LC; i++)
        for (int o = 0; o < LO; o++) cr_assert(fabsf(dw1[i * LO + o] - dw2[o * LC + i]) < 1e-5f);
    for (int o = 0; o < LO; o++) cr_assert(fabsf(db1[o] - db2[o]) < 1e-5f);
}
