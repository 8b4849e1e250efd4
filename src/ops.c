/* Transformer layers, forward and backward: see include/leash/ops.h.
 *
 * Dimensions: B batch, T time, C channels, OC output channels, NH heads, hs = C / NH, N rows.
 * Parallel loops give each thread its own outputs, so results do not depend on the thread count;
 * reductions over rows (bias and LayerNorm parameter gradients) split the columns between threads,
 * never the rows.
 */
#include "leash/ops.h"

#include <math.h>
#include <string.h>

#include "vecmath.h"

/* ---- matmul ------------------------------------------------------------------------------------ */

void leash_matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C, int OC) {
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, OC * sizeof *out);
    }
    leash_sgemm(0, 0, N, OC, C, 1.0f, inp, C, w, OC, bias ? 1.0f : 0.0f, out, OC);
}

/* dst (M) += column sums of src (N, M), columns split between threads. */
static void add_column_sums(float *dst, const float *src, int N, int M) {
    enum { CHUNK = 64 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < M; c0 += CHUNK) {
        int c1 = c0 + CHUNK < M ? c0 + CHUNK : M;
        float acc[CHUNK] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = src + (size_t)n * M;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) dst[c] += acc[c - c0];
    }
}

void leash_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                           int N, int C, int OC) {
    if (dinp) leash_sgemm(0, 1, N, C, OC, 1.0f, dout, OC, w, OC, 1.0f, dinp, C);
    if (dw) leash_sgemm(1, 0, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, OC);
    if (dbias) add_column_sums(dbias, dout, N, OC);
}

/* ---- layernorm --------------------------------------------------------------------------------- */

void leash_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                             int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        float s = (float)(1.0 / sqrt(v + eps)), mf = (float)m;
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - mf) * s * w[c] + b[c];
        mean[n] = mf;
        rstd[n] = s;
    }
}

void leash_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                              const float *mean, const float *rstd, int N, int C) {
    // dinp: rows are independent
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s, dnorm = w[c] * dy[c];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * xhat;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        float *dx = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s, dnorm = w[c] * dy[c];
            dx[c] += s * (dnorm - dnorm_mean - xhat * dnorm_norm_mean);
        }
    }
    // dw, db: sums over rows, columns split between threads
    enum { CHUNK = 64 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CHUNK) {
        int c1 = c0 + CHUNK < C ? c0 + CHUNK : C;
        float aw[CHUNK] = {0}, ab[CHUNK] = {0};
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float m = mean[n], s = rstd[n];
            for (int c = c0; c < c1; c++) {
                aw[c - c0] += (x[c] - m) * s * dy[c];
                ab[c - c0] += dy[c];
            }
        }
        for (int c = c0; c < c1; c++) dw[c] += aw[c - c0], db[c] += ab[c - c0];
    }
}

/* ---- gelu -------------------------------------------------------------------------------------- */

#define GELU_SCALE 0.7978845608028654f // sqrt(2 / pi)

VEC_KERNEL void leash_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf_vec(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

VEC_KERNEL void leash_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float t = tanhf_vec(u), sech2 = 1.0f - t * t;
        float local = 0.5f * (1.0f + t) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += local * dout[i];
    }
}

/* ---- encoder ----------------------------------------------------------------------------------- */

void leash_encoder_forward(float *out, const int *tokens, const int *pos, const float *wte, const float *wpe, int N,
                           int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *te = wte + (size_t)tokens[n] * C, *pe = wpe + (size_t)pos[n] * C;
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    }
}

void leash_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, const int *pos, int N,
                            int C) {
    // rows may share a token or a position: columns split between threads, rows in order
    enum { CHUNK = 64 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CHUNK) {
        int c1 = c0 + CHUNK < C ? c0 + CHUNK : C;
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * C;
            float *te = dwte + (size_t)tokens[n] * C, *pe = dwpe + (size_t)pos[n] * C;
            for (int c = c0; c < c1; c++) te[c] += d[c], pe[c] += d[c];
        }
    }
}

/* ---- attention --------------------------------------------------------------------------------- */

VEC_KERNEL void leash_attention_forward(float *out, float *att, const float *qkv, const uint8_t *mask, int B, int T, int C,
                             int NH) {
    int C3 = 3 * C, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * C3 + h * hs;
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float *o = out + ((size_t)b * T + t) * C + h * hs;
                float mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    if (mask && !mask[(size_t)b * T + s]) {
                        a[s] = -INFINITY;
                        continue;
                    }
                    const float *k = qkv + ((size_t)b * T + s) * C3 + C + h * hs;
                    float dot = 0.0f;
                    for (int i = 0; i < hs; i++) dot += q[i] * k[i];
                    a[s] = dot * scale;
                    if (a[s] > mx) mx = a[s];
                }
                float sum = 0.0f;
                for (int s = 0; s <= t; s++) {
                    float e = mx == -INFINITY || a[s] == -INFINITY ? 0.0f : expf_nonpos(a[s] - mx);
                    a[s] = e;
                    sum += e;
                }
                float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
                for (int s = 0; s <= t; s++) a[s] *= inv;
                for (int s = t + 1; s < T; s++) a[s] = 0.0f;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int s = 0; s <= t; s++) {
                    if (a[s] == 0.0f) continue;
                    const float *v = qkv + ((size_t)b * T + s) * C3 + 2 * C + h * hs;
                    for (int i = 0; i < hs; i++) o[i] += a[s] * v[i];
                }
            }
        }
    }
}

VEC_KERNEL void leash_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B,
                              int T, int C, int NH) {
    int C3 = 3 * C, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    // one (b, h) per task: it owns the q, k, v columns of head h of sequence b
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float *datt = scratch + ((size_t)b * NH + h) * T;
            for (int t = 0; t < T; t++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                const float *dy = dout + ((size_t)b * T + t) * C + h * hs;
                const float *q = qkv + ((size_t)b * T + t) * C3 + h * hs;
                float *dq = dqkv + ((size_t)b * T + t) * C3 + h * hs;
                // datt[s] = dy . v_s, and dv_s += a[s] dy
                float dot_a_datt = 0.0f;
                for (int s = 0; s <= t; s++) {
                    const float *v = qkv + ((size_t)b * T + s) * C3 + 2 * C + h * hs;
                    float *dv = dqkv + ((size_t)b * T + s) * C3 + 2 * C + h * hs;
                    float d = 0.0f;
                    for (int i = 0; i < hs; i++) {
                        d += dy[i] * v[i];
                        dv[i] += a[s] * dy[i];
                    }
                    datt[s] = d;
                    dot_a_datt += a[s] * d;
                }
                // softmax backward, then the q.k product
                for (int s = 0; s <= t; s++) {
                    float dpre = a[s] * (datt[s] - dot_a_datt) * scale;
                    if (dpre == 0.0f) continue;
                    const float *k = qkv + ((size_t)b * T + s) * C3 + C + h * hs;
                    float *dk = dqkv + ((size_t)b * T + s) * C3 + C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += dpre * k[i];
                        dk[i] += dpre * q[i];
                    }
                }
            }
        }
    }
}
