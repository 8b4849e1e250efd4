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

void leash_linear_forward(float *out, int ldo, const float *inp, const float *w, const float *bias, int N, int C,
                          int OC, int w_out_in) {
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * ldo, bias, OC * sizeof *out);
    }
    if (w_out_in) leash_sgemm(0, 1, N, OC, C, 1.0f, inp, C, w, C, bias ? 1.0f : 0.0f, out, ldo);
    else leash_sgemm(0, 0, N, OC, C, 1.0f, inp, C, w, OC, bias ? 1.0f : 0.0f, out, ldo);
}

void leash_matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C, int OC) {
    leash_linear_forward(out, OC, inp, w, bias, N, C, OC, 0);
}

/* dst (M) += column sums of src (N, M) with row stride ld, columns split between threads. */
static void add_column_sums(float *dst, const float *src, int N, int M, int ld) {
    enum { CHUNK = 64 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < M; c0 += CHUNK) {
        int c1 = c0 + CHUNK < M ? c0 + CHUNK : M;
        float acc[CHUNK] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = src + (size_t)n * ld;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) dst[c] += acc[c - c0];
    }
}

void leash_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, int ldd, const float *inp,
                           const float *w, int N, int C, int OC, int w_out_in) {
    if (w_out_in) {
        if (dinp) leash_sgemm(0, 0, N, C, OC, 1.0f, dout, ldd, w, C, 1.0f, dinp, C);
        if (dw) leash_sgemm(1, 0, OC, C, N, 1.0f, dout, ldd, inp, C, 1.0f, dw, C);
    } else {
        if (dinp) leash_sgemm(0, 1, N, C, OC, 1.0f, dout, ldd, w, OC, 1.0f, dinp, C);
        if (dw) leash_sgemm(1, 0, C, OC, N, 1.0f, inp, C, dout, ldd, 1.0f, dw, OC);
    }
    if (dbias) add_column_sums(dbias, dout, N, OC, ldd);
}

void leash_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                           int N, int C, int OC) {
    leash_linear_backward(dinp, dw, dbias, dout, OC, inp, w, N, C, OC, 0);
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
    // dw, db: sums over rows, columns split between threads (none for frozen weights)
    if (!dw) return;
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
        const float *te = wte + (size_t)tokens[n] * C;
        float *o = out + (size_t)n * C;
        if (!wpe) {
            memcpy(o, te, (size_t)C * sizeof *o);
            continue;
        }
        const float *pe = wpe + (size_t)pos[n] * C;
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
            float *te = dwte + (size_t)tokens[n] * C;
            if (!dwpe) {
                for (int c = c0; c < c1; c++) te[c] += d[c];
                continue;
            }
            float *pe = dwpe + (size_t)pos[n] * C;
            for (int c = c0; c < c1; c++) te[c] += d[c], pe[c] += d[c];
        }
    }
}

/* ---- attention --------------------------------------------------------------------------------- */

/* Row layout of qkv: NH query heads, then NKV key heads, then NKV value heads, hs columns each; query
 * head h reads key/value head h / (NH / NKV). */
VEC_KERNEL void leash_attention_forward(float *out, float *att, const float *qkv, const uint8_t *mask, int B, int T,
                                        int NH, int NKV, int hs) {
    int W = (NH + 2 * NKV) * hs, G = NH / NKV, OW = NH * hs;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                int kh = h / G;
                const float *q = qkv + ((size_t)b * T + t) * W + h * hs;
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float *o = out + ((size_t)b * T + t) * OW + h * hs;
                float mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    if (mask && !mask[(size_t)b * T + s]) {
                        a[s] = -INFINITY;
                        continue;
                    }
                    const float *k = qkv + ((size_t)b * T + s) * W + (NH + kh) * hs;
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
                    const float *v = qkv + ((size_t)b * T + s) * W + (NH + NKV + kh) * hs;
                    for (int i = 0; i < hs; i++) o[i] += a[s] * v[i];
                }
            }
        }
    }
}

VEC_KERNEL void leash_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                                         const float *att, int B, int T, int NH, int NKV, int hs) {
    int W = (NH + 2 * NKV) * hs, G = NH / NKV, OW = NH * hs;
    float scale = 1.0f / sqrtf((float)hs);
    // one (b, key/value head) per task: it owns those k, v columns and the q columns of the heads that read them
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int kh = 0; kh < NKV; kh++) {
            for (int h = kh * G; h < (kh + 1) * G; h++) {
                float *datt = scratch + ((size_t)b * NH + h) * T;
                for (int t = 0; t < T; t++) {
                    const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                    const float *dy = dout + ((size_t)b * T + t) * OW + h * hs;
                    const float *q = qkv + ((size_t)b * T + t) * W + h * hs;
                    float *dq = dqkv + ((size_t)b * T + t) * W + h * hs;
                    // datt[s] = dy . v_s, and dv_s += a[s] dy
                    float dot_a_datt = 0.0f;
                    for (int s = 0; s <= t; s++) {
                        const float *v = qkv + ((size_t)b * T + s) * W + (NH + NKV + kh) * hs;
                        float *dv = dqkv + ((size_t)b * T + s) * W + (NH + NKV + kh) * hs;
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
                        const float *k = qkv + ((size_t)b * T + s) * W + (NH + kh) * hs;
                        float *dk = dqkv + ((size_t)b * T + s) * W + (NH + kh) * hs;
                        for (int i = 0; i < hs; i++) {
                            dq[i] += dpre * k[i];
                            dk[i] += dpre * q[i];
                        }
                    }
                }
            }
        }
    }
}

/* ---- rotary position embeddings ---------------------------------------------------------------- */

/* Rotates pairs (i, i + hs/2) of each of the first nheads heads of every row by pos * inv_freq[i]
 * (the "rotate_half" layout of Hugging Face's Llama); sign -1 rotates back, which is the backward. */
void leash_rope(float *x, int ld, const int *pos, const float *inv_freq, int N, int nheads, int hs, int sign) {
    int half = hs / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float c[half], s[half];
        for (int i = 0; i < half; i++) {
            // angle in float32 like the reference (pos * inv_freq), sin and cos in double
            float ang = (float)pos[n] * inv_freq[i];
            c[i] = (float)cos((double)ang);
            s[i] = (float)(sign * sin((double)ang));
        }
        float *row = x + (size_t)n * ld;
        for (int h = 0; h < nheads; h++) {
            float *v = row + (size_t)h * hs;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

/* ---- rmsnorm ----------------------------------------------------------------------------------- */

void leash_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double v = 0.0;
        for (int c = 0; c < C; c++) v += (double)x[c] * x[c];
        float s = (float)(1.0 / sqrt(v / C + eps));
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = x[c] * s * w[c];
        rstd[n] = s;
    }
}

void leash_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                            const float *rstd, int N, int C) {
    // y = x r w with r = (mean x^2 + eps)^-1/2: dx = r (g - x r^2 mean(g x)), g = w dy
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float s = rstd[n];
        double gx = 0.0;
        for (int c = 0; c < C; c++) gx += (double)w[c] * dy[c] * x[c];
        float k = (float)(gx / C) * s * s;
        float *dx = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++) dx[c] += s * (w[c] * dy[c] - x[c] * k);
    }
    if (!dw) return; // frozen weight
    enum { CHUNK = 64 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CHUNK) {
        int c1 = c0 + CHUNK < C ? c0 + CHUNK : C;
        float aw[CHUNK] = {0};
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float s = rstd[n];
            for (int c = c0; c < c1; c++) aw[c - c0] += x[c] * s * dy[c];
        }
        for (int c = c0; c < c1; c++) dw[c] += aw[c - c0];
    }
}

/* ---- swiglu ------------------------------------------------------------------------------------ */

VEC_HELPER float sigmoidf_vec(float x) {
    float e = expf_nonpos(x < 0.0f ? x : -x); // exp(-|x|)
    return x < 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
}

VEC_KERNEL void leash_swiglu_forward(float *out, const float *gu, int N, int I) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gu + (size_t)n * 2 * I, *u = g + I;
        float *o = out + (size_t)n * I;
        for (int i = 0; i < I; i++) o[i] = g[i] * sigmoidf_vec(g[i]) * u[i];
    }
}

VEC_KERNEL void leash_swiglu_backward(float *dgu, const float *gu, const float *dout, int N, int I) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = gu + (size_t)n * 2 * I, *u = g + I, *dy = dout + (size_t)n * I;
        float *dg = dgu + (size_t)n * 2 * I, *du = dg + I;
        for (int i = 0; i < I; i++) {
            float sg = sigmoidf_vec(g[i]), silu = g[i] * sg;
            du[i] += dy[i] * silu;
            dg[i] += dy[i] * u[i] * (sg + silu * (1.0f - sg));
        }
    }
}
