/* Benchmark of the transformer engine, side by side in one run: training tokens/s (forward, loss,
 * backward, AdamW) and KV-cache generation tokens/s for a small model and for GPT-2 small's shapes,
 * against PyTorch (Debian's python3-torch, same shapes, same thread count) where it is installed; and
 * the matrix products inside a training step against OpenBLAS sgemm alone on the same shapes.
 * Prints figures and ratios; asserts nothing about speed. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/ops.h"
#include "leash/optim.h"
#include "leash/rng.h"
#include "leash/sample.h"
#include "../src/matmul_stats.h" // the benchmark hooks of leash_sgemm, not public

#include "bench.h"

char *openblas_get_corename(void);
char *openblas_get_config(void);
int openblas_get_parallel(void);

static void die(const char *what) {
    fprintf(stderr, "bench_gpt: %s: %s\n", what, leash_errmsg());
    exit(1);
}

typedef struct {
    const char *name;
    int V, T, C, L, NH, B, steps, prompt, new_tokens;
} shape;

/* The recorded products of one step again, on their own buffers, through cblas_sgemm directly. */
static double replay_gflops(const leash_sgemm_shape *s, int n, int reps) {
    size_t big = 0;
    for (int i = 0; i < n; i++) {
        size_t a = (size_t)s[i].M * s[i].K, b = (size_t)s[i].K * s[i].N, c = (size_t)s[i].M * s[i].N;
        big = a > big ? a : big, big = b > big ? b : big, big = c > big ? c : big;
    }
    float *A = calloc(big, 4), *B = calloc(big, 4), *C = calloc(big, 4);
    double flops = 0, t0 = 0, total = 0;
    for (int r = 0; r <= reps; r++) { // r = 0 warms up
        t0 = bench_now();
        for (int i = 0; i < n; i++) {
            const leash_sgemm_shape *x = &s[i];
            cblas_sgemm(CblasRowMajor, x->trans_a ? CblasTrans : CblasNoTrans, x->trans_b ? CblasTrans : CblasNoTrans,
                        x->M, x->N, x->K, 1.0f, A, x->trans_a ? x->M : x->K, B, x->trans_b ? x->K : x->N, 1.0f, C, x->N);
            if (r) flops += 2.0 * x->M * x->N * x->K;
        }
        if (r) total += bench_now() - t0;
    }
    free(A), free(B), free(C);
    return flops / total / 1e9;
}

int main(int argc, char **argv) {
    int threads = omp_get_max_threads();
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int have_torch = system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
    printf("OpenBLAS %s, kernel %s, threading %s; %d thread(s)\n", openblas_get_config(), openblas_get_corename(),
           openblas_get_parallel() == 2 ? "OpenMP" : openblas_get_parallel() == 1 ? "pthreads" : "none", threads);
    if (!have_torch) printf("(PyTorch columns skipped: /usr/bin/python3 cannot import torch; apt-get install python3-torch)\n");
    const shape shapes[] = {
        {"small (V 2048, T 128, C 256, L 6, NH 8, B 8)", 2048, 128, 256, 6, 8, 8, 5, 16, 64},
        {"GPT-2 small shapes (V 50257, T 256, C 768, L 12, NH 12, B 4)", 50257, 256, 768, 12, 12, 4, 2, 16, 32},
    };
    for (int k = 0; k < (quick ? 1 : 2); k++) {
        const shape *s = &shapes[k];
        leash_gpt_config cfg = {.vocab_size = s->V, .n_positions = s->T + s->prompt + s->new_tokens, .n_embd = s->C,
                                .n_layer = s->L, .n_head = s->NH, .bos_token_id = -1, .eos_token_id = -1,
                                .layer_norm_epsilon = 1e-5f};
        leash_gpt *m;
        if (leash_gpt_create(&m, &cfg)) die("create");
        leash_gpt_init(m, 0);
        leash_adamw_config oc = leash_adamw_defaults();
        oc.lr = 1e-4f;
        leash_adamw opt;
        if (leash_adamw_create(&opt, &oc, leash_gpt_num_params(m))) die("optimizer");
        int N = s->B * s->T, *in = malloc(N * sizeof *in), *tg = malloc(N * sizeof *tg);
        leash_rng rng;
        leash_rng_seed(&rng, 1, 0);
        for (int i = 0; i < N; i++) in[i] = (int)(leash_rng_uniform(&rng) * s->V), tg[i] = (int)(leash_rng_uniform(&rng) * s->V);
        leash_sgemm_shape rec[512];
        int n_rec = 0;
        double t_train = 0, sg_s = 0, sg_f = 0;
        for (int step = 0; step <= s->steps; step++) { // step 0 warms up (allocations)
            if (step == 1) leash_sgemm_stats(NULL, NULL, 1), leash_sgemm_record(rec, 512);
            double t0 = bench_now(), loss, gn, lr;
            leash_gpt_zero_grad(m);
            if (leash_gpt_forward(m, in, NULL, s->B, s->T) || leash_gpt_cross_entropy(m, tg, &loss, NULL) ||
                leash_gpt_backward(m) || leash_adamw_step(&opt, m, &gn, &lr))
                die("train step");
            if (step == 1) n_rec = leash_sgemm_record(NULL, 0);
            if (step) t_train += bench_now() - t0;
        }
        leash_sgemm_stats(&sg_s, &sg_f, 1);
        double train_tps = (double)s->steps * N / t_train, in_step = sg_f / sg_s / 1e9;
        double alone = replay_gflops(rec, n_rec, s->steps);

        int *prompts = malloc(s->B * s->prompt * sizeof *prompts), *lens = malloc(s->B * sizeof *lens);
        int *out = malloc(s->B * s->new_tokens * sizeof *out), *olens = malloc(s->B * sizeof *olens);
        float *lps = malloc(s->B * s->new_tokens * sizeof *lps);
        for (int i = 0; i < s->B * s->prompt; i++) prompts[i] = (int)(leash_rng_uniform(&rng) * s->V);
        for (int b = 0; b < s->B; b++) lens[b] = s->prompt;
        leash_sample_config sc = leash_sample_defaults();
        sc.max_new_tokens = s->new_tokens;
        double best_gen = INFINITY;
        for (int r = 0; r < 2; r++) {
            double t0 = bench_now();
            if (leash_generate(m, &sc, prompts, lens, s->B, NULL, out, lps, olens)) die("generate");
            best_gen = fmin(best_gen, bench_now() - t0);
        }
        double gen_tps = (double)s->B * s->new_tokens / best_gen;

        printf("\n%s, %.1fM parameters\n", s->name, leash_gpt_num_params(m) / 1e6);
        printf("  training   leash %9.0f tokens/s", train_tps);
        double tt = 0, tg2 = 0;
        if (have_torch) {
            char cmd[512];
            snprintf(cmd, sizeof cmd, TORCH_ENV "/usr/bin/python3 bench/ref_gpt.py %d %d %d %d %d %d %d %d %d %d", s->V, s->T, s->C, s->L,
                     s->NH, s->B, s->steps, s->prompt, s->new_tokens, threads);
            FILE *f = popen(cmd, "r");
            if (!f || fscanf(f, "%lf %lf", &tt, &tg2) != 2) tt = tg2 = 0;
            if (f) pclose(f);
        }
        if (tt > 0) printf("   PyTorch %9.0f tokens/s   leash/PyTorch %.2fx\n", tt, train_tps / tt);
        else printf("\n");
        printf("  generation leash %9.0f tokens/s", gen_tps);
        if (tg2 > 0) printf("   PyTorch %9.0f tokens/s   leash/PyTorch %.2fx\n", tg2, gen_tps / tg2);
        else printf("\n");
        printf("  matrix products in a training step %.1f GFLOP/s (%.0f%% of the step), OpenBLAS alone on the same "
               "%d shapes %.1f GFLOP/s: %.0f%%\n",
               in_step, 100.0 * sg_s / t_train, n_rec, alone, 100.0 * in_step / alone);
        free(in), free(tg), free(prompts), free(lens), free(out), free(olens), free(lps);
        leash_adamw_free(&opt);
        leash_gpt_free(m);
    }
    return 0;
}
