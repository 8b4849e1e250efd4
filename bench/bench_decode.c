/* Generation against batch size, against this machine's limits (issue 20, part 2): tokens/s of leash_generate
 * (prefill of a short prompt, then KV-cache decode steps with sampling) at batch 1 .. 64, for SmolLM2-135M
 * (the real GGUF: LEASH_SMOLLM2_GGUF, else /opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf; skipped with the
 * reason when absent) and GPT-2 small's shapes (random weights: V 50257, C 768, 12 layers, 12 heads).
 * The limits, measured here in the same run:
 *   FLOP bound:      a token costs 2 x params FLOPs (attention over the cache left out: under 2% at these
 *                    lengths); the bound is the measured FP32 peak (OpenBLAS sgemm 2048^3, the same threads)
 *                    over that. % of FLOP bound = tokens/s / bound.
 *   bandwidth floor: a decode step reads every weight once (4 bytes a parameter, F32), so a step takes at
 *                    least weight bytes / memory bandwidth (a read-only sum over 1 GiB, the same threads).
 *                    x of floor = a step's measured time / that floor.
 * Prints one table a model; asserts nothing about speed.
 *   bench_decode [--quick] [--model smollm2|gpt2] [--batches 1,2,4] [--new N] [--reps R] [--tsv]
 * --tsv prints "model batch tokens/s bare-step-ms tokens/s-with-prefill" lines only (bench/decode_compare.sh reads them). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/rng.h"
#include "leash/sample.h"
#include "../src/matmul_stats.h" // the benchmark hooks of leash_sgemm, not public

#include "bench.h"

enum { PROMPT = 16, MAX_BATCHES = 16 };

static void die(const char *what) {
    fprintf(stderr, "bench_decode: %s: %s\n", what, leash_errmsg());
    exit(1);
}

/* FP32 matrix-product peak in FLOP/s: OpenBLAS sgemm at 2048^3, best of 3. */
static double measure_peak(void) {
    int n = 2048;
    float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4), *c = calloc((size_t)n * n, 4);
    if (!a || !b || !c) die("peak buffers");
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = 1e-3f * (float)(i % 97);
    double best = INFINITY;
    for (int r = 0; r < 4; r++) { // r = 0 warms up
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (r) best = fmin(best, bench_now() - t0);
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * n / best;
}

/* Memory read bandwidth in bytes/s: a sum over 1 GiB of floats by every thread, best of 3. */
static double measure_bandwidth(void) {
    size_t n = (size_t)1 << 28;
    float *x = malloc(n * sizeof *x);
    if (!x) die("bandwidth buffer");
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = (float)(i & 7);
    double best = INFINITY, sink = 0.0;
    for (int r = 0; r < 4; r++) {
        double t0 = bench_now();
        float s = 0.0f;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
        for (size_t i = 0; i < n; i++) s += x[i];
        if (r) best = fmin(best, bench_now() - t0);
        sink += s;
    }
    free(x);
    if (sink < 0) printf("%g\n", sink); // keeps the sums
    return (double)n * sizeof(float) / best;
}

static double median(double *t, int n) {
    for (int i = 1; i < n; i++) // insertion sort
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* One batch size's figures, medians over reps rounds (after a warm-up): gen, the seconds of leash_generate for B
 * prompts of PROMPT random ids and M new tokens at temperature 1 (no EOS: every sequence runs all M steps);
 * pre, the same with 1 new token (the prefill and one sampling); step, a bare decode step (no sampling) and
 * gemm, the share of it in leash_sgemm. */
typedef struct {
    double gen, pre, step, gemm;
} timing;

static timing time_batch(leash_gpt *m, int B, int M, int reps) {
    const leash_gpt_config *cfg = leash_gpt_cfg(m);
    int *prompts = malloc((size_t)B * PROMPT * sizeof(int)), *lens = malloc((size_t)B * sizeof(int));
    int *out = malloc((size_t)B * M * sizeof(int)), *olens = malloc((size_t)B * sizeof(int));
    int *tok = malloc((size_t)B * sizeof(int));
    float *lps = malloc((size_t)B * M * sizeof(float));
    double g[16], p[16], st[16], gm[16];
    if (!prompts || !lens || !out || !olens || !tok || !lps) die("generate buffers");
    leash_rng rng;
    leash_rng_seed(&rng, 1, 0);
    for (int i = 0; i < B * PROMPT; i++) prompts[i] = (int)(leash_rng_uniform(&rng) * cfg->vocab_size);
    for (int b = 0; b < B; b++) lens[b] = PROMPT;
    leash_sample_config sc = leash_sample_defaults();
    if (reps > 16) reps = 16;
    for (int r = 0; r <= reps; r++) {
        double t0 = bench_now();
        sc.max_new_tokens = 1;
        if (leash_generate(m, &sc, prompts, lens, B, NULL, out, lps, olens)) die("generate");
        double t1 = bench_now();
        sc.max_new_tokens = M;
        if (leash_generate(m, &sc, prompts, lens, B, NULL, out, lps, olens)) die("generate");
        double t2 = bench_now();
        leash_kv_cache *kv; // bare decode steps: the sampled ids fed back, no sampling
        if (leash_kv_cache_create(&kv, m, B, PROMPT + M) || leash_gpt_prefill(m, kv, prompts, NULL, PROMPT))
            die("prefill");
        double s0, s1, t3 = bench_now();
        leash_sgemm_stats(&s0, NULL, 0);
        for (int i = 0; i < M - 1; i++) {
            for (int b = 0; b < B; b++) tok[b] = out[(size_t)b * M + i];
            if (leash_gpt_decode_step(m, kv, tok)) die("decode step");
        }
        leash_sgemm_stats(&s1, NULL, 0);
        double t4 = bench_now();
        leash_kv_cache_free(kv);
        if (r) g[r - 1] = t2 - t1, p[r - 1] = t1 - t0, st[r - 1] = (t4 - t3) / (M - 1), gm[r - 1] = (s1 - s0) / (t4 - t3);
    }
    free(prompts), free(lens), free(out), free(olens), free(tok), free(lps);
    return (timing){median(g, reps), median(p, reps), median(st, reps), median(gm, reps)};
}

static void table(const char *name, leash_gpt *m, const int *batches, int nb, int M, int reps, double peak, double bw,
                  int tsv) {
    double params = (double)leash_gpt_num_params(m), flop_bound = peak / (2.0 * params);
    double floor_s = 4.0 * params / bw; // one decode step reads every F32 weight once
    if (!tsv) {
        printf("\n%s: %.1fM parameters, %.0f MB of F32 weights; prompt %d, %d new tokens, temperature 1\n", name,
               params / 1e6, 4.0 * params / 1e6, PROMPT, M);
        printf("  FLOP bound %.0f tokens/s (2 x params a token at %.0f GFLOP/s); bandwidth floor %.1f ms a step "
               "(%.0f MB at %.1f GB/s)\n",
               flop_bound, peak / 1e9, 1e3 * floor_s, 4.0 * params / 1e6, bw / 1e9);
        printf("  tokens/s: new tokens over generation less its prefill (leash_generate of %d tokens less that of 1);\n"
               "  ms/step: that per new token; bare step: a decode step alone (no sampling), its share in sgemm;\n"
               "  with prefill: new tokens/s of the whole leash_generate call\n",
               M);
        printf("  %5s %10s %9s %13s %11s %14s %9s %14s\n", "batch", "tokens/s", "ms/step", "% FLOP bound", "x bw floor",
               "bare step ms", "in sgemm", "with prefill");
    }
    for (int i = 0; i < nb; i++) {
        int B = batches[i];
        timing t = time_batch(m, B, M, reps);
        double step = (t.gen - t.pre) / (M - 1), tps = B / step;
        double all = (double)B * M / t.gen; // with the prefill
        if (tsv) printf("%s\t%d\t%.2f\t%.3f\t%.2f\n", name, B, tps, 1e3 * t.step, all);
        else
            printf("  %5d %10.1f %9.2f %12.1f%% %10.2fx %14.2f %8.0f%% %14.1f\n", B, tps, 1e3 * step,
                   100.0 * tps / flop_bound, step / floor_s, 1e3 * t.step, 100.0 * t.gemm, all);
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    int batches[MAX_BATCHES] = {1, 2, 4, 8, 16, 32, 64}, nb = 7, M = 32, reps = 3, tsv = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) nb = 3, M = 8, reps = 1;
        else if (!strcmp(argv[i], "--tsv")) tsv = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--model")) only = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--new")) M = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--batches")) {
            nb = 0;
            for (char *s = argv[++i]; *s && nb < MAX_BATCHES; s += *s == ',') batches[nb++] = (int)strtol(s, &s, 10);
        } else {
            fprintf(stderr, "usage: bench_decode [--quick] [--model smollm2|gpt2] [--batches 1,2,4] [--new N] [--reps R] "
                            "[--tsv]\n");
            return 2;
        }
    }
    if (M < 2 || reps < 1 || nb < 1) return fprintf(stderr, "bench_decode: --new needs >= 2, --reps and --batches >= 1\n"), 2;
    double peak = 0, bw = 0;
    if (!tsv) {
        peak = measure_peak(), bw = measure_bandwidth();
        printf("%d thread(s); FP32 peak (OpenBLAS sgemm 2048^3) %.1f GFLOP/s; memory read bandwidth %.1f GB/s\n",
               omp_get_max_threads(), peak / 1e9, bw / 1e9);
    }
    if (!only || !strcmp(only, "smollm2")) {
        const char *path = getenv("LEASH_SMOLLM2_GGUF");
        if (!path || !*path) path = "/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf";
        FILE *f = fopen(path, "rb");
        leash_gpt *m;
        if (!f) printf("\nSmolLM2-135M skipped: %s is absent (scripts/deps.sh --ref fetches it)\n", path);
        else {
            fclose(f);
            if (leash_gpt_load(&m, path)) die(path);
            table("SmolLM2-135M", m, batches, nb, M, reps, peak, bw, tsv);
            leash_gpt_free(m);
        }
    }
    if (!only || !strcmp(only, "gpt2")) {
        leash_gpt_config cfg = {.vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12, .n_head = 12,
                                .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
        leash_gpt *m;
        if (leash_gpt_create(&m, &cfg)) die("create");
        leash_gpt_init(m, 0);
        table("GPT-2 small shapes", m, batches, nb, M, reps, peak, bw, tsv);
        leash_gpt_free(m);
    }
    return 0;
}
