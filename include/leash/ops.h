/* The layers of the transformer, each a forward/backward pair, and the one matrix-product function.
 *
 * Dimensions: B batch, T time, C channels, OC output channels, NH heads, hs = C / NH head size,
 * N rows (usually B * T). Row-major everywhere. Weights use the Hugging Face GPT-2 Conv1D layout
 * (C, OC): out = inp @ w + bias, or, where a function takes w_out_in, optionally the torch.nn.Linear
 * layout (OC, C) of Llama-family checkpoints: out = inp @ w^T + bias. Backward functions accumulate
 * (+=) into every gradient they take, so gradients of shared inputs add up; the caller zeroes them.
 */
#ifndef LEASH_OPS_H
#define LEASH_OPS_H

#include <stddef.h>
#include <stdint.h>

/* C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C, row-major; op transposes when trans_* is
 * non-zero. Every matrix product in leash goes through here (OpenBLAS cblas_sgemm). */
void leash_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc);

/* BF16 compute for frozen weights stored in BF16 (leash_gpt_store_bf16). The same product as
 * leash_linear_forward (ldo >= OC; w (C, OC), or (OC, C) when w_out_in; bias (OC) or NULL) with w in BF16 and
 * inp rounded to BF16 (nearest, ties to even), the products summed in FP32 (oneDNN's matmul). Each output then
 * differs from the F32 product of the same BF16 weight by at most about 2^-8 sum_k |inp_k w_k| (the input's
 * rounding) plus FP32's own summation error. Where BF16 compute is not available (or oneDNN fails on a
 * shape) the product runs in F32 on the BF16 weight. Call it outside parallel regions; products asked from
 * several threads run one at a time (they share oneDNN's primitives and a buffer). */
void leash_linear_forward_bf16(float *out, int ldo, const float *inp, const uint16_t *w, const float *bias, int N,
                               int C, int OC, int w_out_in);
/* 1 when this CPU multiplies BF16 natively (AVX512_BF16 or AMX) and oneDNN has a kernel of its own for it. */
int leash_bf16_compute_available(void);
/* x rounded to the nearest BF16 (ties to even; a NaN stays a NaN), as its upper 16 bits. */
uint16_t leash_bf16_round(float x);
/* 1 when every one of the n values is a BF16 value (its low 16 bits are 0): storing them in BF16 is exact. */
int leash_bf16_exact(const float *x, size_t n);

/* out (N, OC) = inp (N, C) @ w (C, OC) + bias (OC); bias may be NULL. */
void leash_matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C, int OC);
/* dinp (N, C) += dout @ w^T; dw (C, OC) += inp^T @ dout; dbias (OC) += column sums of dout.
 * Any of dinp, dw, dbias may be NULL (not needed). */
void leash_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                           int N, int C, int OC);

/* The same with the weight in either layout (w_out_in: (OC, C)) and an output row stride ldo >= OC, so
 * several projections can write side by side into one buffer; backward reads dout with stride ldd. */
void leash_linear_forward(float *out, int ldo, const float *inp, const float *w, const float *bias, int N, int C,
                          int OC, int w_out_in);
void leash_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, int ldd, const float *inp,
                           const float *w, int N, int C, int OC, int w_out_in);

/* out (N, C) = (inp - mean) * rstd * w + b over each row; mean, rstd (N) are saved for backward. */
void leash_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                             int N, int C, float eps);
/* dw and db NULL: the weights are frozen, only dinp is computed. */
void leash_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                              const float *mean, const float *rstd, int N, int C);

/* GELU, tanh approximation (GPT-2's "gelu_new"), elementwise over n values. */
void leash_gelu_forward(float *out, const float *inp, size_t n);
void leash_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/* out (N, C) = tok_emb[tokens] + pos_emb[pos]; tokens, pos (N); wpe (and dwpe) NULL: no position term. */
void leash_encoder_forward(float *out, const int *tokens, const int *pos, const float *wte, const float *wpe, int N,
                           int C);
void leash_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, const int *pos, int N,
                            int C);

/* RMSNorm (Llama): out (N, C) = inp * rstd * w with rstd = 1 / sqrt(mean(inp^2) + eps) per row, saved. */
void leash_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
void leash_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                            const float *rstd, int N, int C); /* dw NULL: frozen */

/* SwiGLU (Llama's MLP): out (N, H) = silu(gate) * up where gu (N, 2H) holds gate then up in each row. */
void leash_swiglu_forward(float *out, const float *gu, int N, int H);
void leash_swiglu_backward(float *dgu, const float *gu, const float *dout, int N, int H);

/* Rotary position embeddings, in place: in each of N rows (stride ld), the first nheads heads of hs
 * columns have their pairs (i, i + hs/2) rotated by the angle pos[n] * inv_freq[i] (Hugging Face's
 * rotate_half layout). sign = -1 rotates back by the same angle, which is the backward of sign = +1. */
void leash_rope(float *x, int ld, const int *pos, const float *inv_freq, int N, int nheads, int hs, int sign);

/* Causal self-attention with a key mask and grouped-query heads. Each row of qkv (B, T, (NH + 2 NKV) hs)
 * holds NH query heads, then NKV key heads, then NKV value heads; query head h reads key/value head
 * h / (NH / NKV) (NKV = NH: multi-head attention, GPT-2's c_attn layout). mask (B, T) marks real tokens
 * (NULL: all real). Query t attends to keys s <= t with mask[s] != 0; a query with no such key (left
 * padding) gets zero output. att (B, NH, T, T) keeps the probabilities for backward; out (B, T, NH hs). */
void leash_attention_forward(float *out, float *att, const float *qkv, const uint8_t *mask, int B, int T, int NH,
                             int NKV, int hs);
/* dqkv (B, T, (NH + 2 NKV) hs) += ...; scratch (B, NH, T) is workspace. */
void leash_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                              int B, int T, int NH, int NKV, int hs);

#endif
