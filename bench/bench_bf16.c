/* Benchmark of BF16 compute for frozen models (src/matmul_bf16.c): the forward of a frozen model stored in BF16
 * (--frozen-bf16) with its projections multiplied in BF16 (oneDNN, FP32 sums) against the same model converting
 * its layers to F32 a layer at a time (the path before BF16 compute, and the one on CPUs without AVX512_BF16).
 * SmolLM2-135M's shapes (random weights: V 49152, C 576, L 30, 9 query heads on 3 key/value heads, MLP 1536) as
 * a reference (LM head over the vocabulary) and as a reward model (a scalar head), 4 sequences of 128 tokens;
 * and the reward model as leash_rm_score_texts runs it, its scalar head without the logits
 * (leash_gpt_forward_values), against its full forward in F32. The LM head, the embeddings and attention stay
 * F32 either way. Rounds interleave the two paths so that the
 * shared machine's load falls on both alike; prints the median seconds per forward and the ratio; asserts
 * nothing about speed. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/ops.h"

#include "bench.h"

enum { B = 4, T = 128, ROUNDS = 3 };

static void die(const char *what) {
    fprintf(stderr, "bench_bf16: %s: %s\n", what, leash_errmsg());
    exit(1);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run(const char *name, int scalar_head, const int *tokens) {
    leash_gpt_config cfg = {.vocab_size = 49152, .n_positions = 2048, .n_embd = 576, .n_layer = 30, .n_head = 9,
                            .n_kv_head = 3, .n_inner = 1536, .arch = LEASH_ARCH_LLAMA, .rope_theta = 1e5f,
                            .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f,
                            .scalar_head = scalar_head};
    leash_gpt *m;
    if (leash_gpt_create(&m, &cfg)) die("create");
    leash_gpt_init(m, 1);
    leash_gpt_freeze(m);
    if (leash_gpt_store_bf16(m)) die("store_bf16");
    if (!scalar_head && leash_gpt_store_head_bf16(m)) die("store_head_bf16"); // a reference: its LM head too
    double t[3][ROUNDS]; // F32, BF16, BF16 values only (a reward model)
    for (int r = -1; r < ROUNDS; r++) // round -1 warms up (allocations, oneDNN's kernels for these shapes)
        for (int k = scalar_head ? 2 : 1; k >= 0; k--) {
            leash_gpt_set_bf16_compute(m, k > 0);
            double t0 = bench_now();
            if (k == 2 ? leash_gpt_forward_values(m, tokens, NULL, B, T) : leash_gpt_forward(m, tokens, NULL, B, T))
                die("forward");
            if (r >= 0) t[k][r] = bench_now() - t0;
        }
    for (int k = 0; k <= (scalar_head ? 2 : 1); k++) qsort(t[k], ROUNDS, sizeof(double), cmp);
    double f32 = t[0][ROUNDS / 2], b16 = t[1][ROUNDS / 2];
    printf("%-34s %10.3f %10.3f %9.2fx\n", name, f32, b16, f32 / b16);
    if (scalar_head)
        printf("%-34s %10.3f %10.3f %9.2fx\n", "  the same, values only (no logits)", f32, t[2][ROUNDS / 2],
               f32 / t[2][ROUNDS / 2]);
    leash_gpt_free(m);
}

int main(void) {
    if (!leash_bf16_compute_available()) {
        printf("BF16 compute: not available on this CPU (no AVX512_BF16, or oneDNN has no kernel for it): skipped\n");
        return 0;
    }
    int *tokens = malloc(sizeof(int) * B * T);
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 7919 + 13) % 49152;
    printf("frozen-model forward at SmolLM2-135M shapes, %d x %d tokens, %d threads, median of %d interleaved rounds\n",
           B, T, omp_get_max_threads(), ROUNDS);
    printf("%-34s %10s %10s %10s\n", "model", "F32 s", "BF16 s", "F32/BF16");
    run("reference (LM head, V 49152)", 0, tokens);
    run("reward model (scalar head)", 1, tokens);
    free(tokens);
    return 0;
}
