/* The layers of the transformer, each a forward/backward pair, and the one matrix-product function.
 *
 * Dimensions: B batch, T time, C channels, OC output channels, NH heads, hs = C / NH head size,
 * N rows (usually B * T). Row-major everywhere. Weights use the Hugging Face GPT-2 Conv1D layout
 * (C, OC): out = inp @ w + bias. Backward functions accumulate (+=) into every gradient they take,
 * so gradients of shared inputs add up; the caller zeroes them.
 */
#ifndef LEASH_OPS_H
#define LEASH_OPS_H

#include <stddef.h>
#include <stdint.h>

/* C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C, row-major; op transposes when trans_* is
 * non-zero. Every matrix product in leash goes through here (OpenBLAS cblas_sgemm). */
void leash_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc);

/* Seconds and floating-point operations spent in leash_sgemm since the last reset, for benchmarks that
 * compare the products inside a training step with OpenBLAS alone. reset != 0 zeroes the counters. */
void leash_sgemm_stats(double *seconds, double *flops, int reset);

typedef struct {
    int trans_a, trans_b, M, N, K;
} leash_sgemm_shape;

/* Records the shapes of the following leash_sgemm calls into shapes (up to max; shapes = NULL stops).
 * Returns how many calls were recorded since recording started. For benchmarks. */
int leash_sgemm_record(leash_sgemm_shape *shapes, int max);

/* out (N, OC) = inp (N, C) @ w (C, OC) + bias (OC); bias may be NULL. */
void leash_matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C, int OC);
/* dinp (N, C) += dout @ w^T; dw (C, OC) += inp^T @ dout; dbias (OC) += column sums of dout.
 * Any of dinp, dw, dbias may be NULL (not needed). */
void leash_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                           int N, int C, int OC);

/* out (N, C) = (inp - mean) * rstd * w + b over each row; mean, rstd (N) are saved for backward. */
void leash_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                             int N, int C, float eps);
void leash_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                              const float *mean, const float *rstd, int N, int C);

/* GELU, tanh approximation (GPT-2's "gelu_new"), elementwise over n values. */
void leash_gelu_forward(float *out, const float *inp, size_t n);
void leash_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/* out (N, C) = tok_emb[tokens] + pos_emb[pos]; tokens, pos (N). */
void leash_encoder_forward(float *out, const int *tokens, const int *pos, const float *wte, const float *wpe, int N,
                           int C);
void leash_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, const int *pos, int N,
                            int C);

/* Causal self-attention with a key mask. qkv (B, T, 3C) holds q, k, v per position; mask (B, T) marks
 * real tokens (NULL: all real). Query t attends to keys s <= t with mask[s] != 0; a query with no
 * such key (left padding) gets zero output. att (B, NH, T, T) keeps the probabilities for backward;
 * out (B, T, C). */
void leash_attention_forward(float *out, float *att, const float *qkv, const uint8_t *mask, int B, int T, int C, int NH);
/* dqkv (B, T, 3C) += ...; scratch (B, NH, T) is workspace. */
void leash_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B,
                              int T, int C, int NH);

#endif
