/* Benchmark of a Llama-family model at SmolLM2-135M's shapes (random weights: V 49152, C 576, L 30,
 * 9 query heads on 3 key/value heads, MLP 1536, tied head, rope_theta 1e5), side by side in one run:
 *   training tokens/s (forward, loss, backward, AdamW) with full fine-tuning and with LoRA (r 16 on
 *   q_proj and v_proj, and on all linear layers), KV-cache generation tokens/s, and the memory each way
 *   takes (weights, gradients, optimizer state, activations; and what PPO adds: a frozen reference for
 *   full fine-tuning, nothing for LoRA, whose reference is the base with adapters off);
 *   the same shapes in PyTorch (Debian's python3-torch, same thread count; bench/ref_llama.py) where it is
 *   installed, with ratios. Prints figures; asserts nothing about speed. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/optim.h"
#include "leash/rng.h"
#include "leash/sample.h"

#include "bench.h"

static void die(const char *what) {
    fprintf(stderr, "bench_llama: %s: %s\n", what, leash_errmsg());
    exit(1);
}

enum { B = 2, T = 128, PROMPT = 16, NEW = 32, STEPS = 2 };

/* Training tokens/s over STEPS steps after a warm-up; *bytes: the model's memory plus AdamW's two moments. */
static double train(leash_gpt *m, const int *in, const int *tg, double *bytes) {
    leash_adamw_config oc = leash_adamw_defaults();
    oc.lr = 1e-4f;
    leash_adamw opt;
    if (leash_adamw_create(&opt, &oc, leash_gpt_num_trainable(m))) die("optimizer");
    double t = 0.0;
    for (int step = 0; step <= STEPS; step++) {
        double t0 = bench_now(), loss, gn, lr;
        leash_gpt_zero_grad(m);
        if (leash_gpt_forward(m, in, NULL, B, T) || leash_gpt_cross_entropy(m, tg, &loss, NULL) || leash_gpt_backward(m) ||
            leash_adamw_step(&opt, m, &gn, &lr))
            die("train step");
        if (step) t += bench_now() - t0;
    }
    *bytes = (double)leash_gpt_memory_bytes(m) + 2.0 * 4.0 * leash_gpt_num_trainable(m);
    leash_adamw_free(&opt);
    return (double)STEPS * B * T / t;
}

static double generate(leash_gpt *m, leash_rng *rng) {
    int prompts[B * PROMPT], lens[B], out[B * NEW], olens[B];
    float lps[B * NEW];
    for (int i = 0; i < B * PROMPT; i++) prompts[i] = (int)(leash_rng_uniform(rng) * 49152);
    for (int b = 0; b < B; b++) lens[b] = PROMPT;
    leash_sample_config sc = leash_sample_defaults();
    sc.max_new_tokens = NEW;
    double best = INFINITY;
    for (int r = 0; r < 2; r++) {
        double t0 = bench_now();
        if (leash_generate(m, &sc, prompts, lens, B, NULL, out, lps, olens)) die("generate");
        best = fmin(best, bench_now() - t0);
    }
    return (double)B * NEW / best;
}

int main(void) {
    int threads = omp_get_max_threads();
    int have_torch = system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
    leash_gpt_config cfg = {.vocab_size = 49152, .n_positions = 2048, .n_embd = 576, .n_layer = 30, .n_head = 9,
                            .arch = LEASH_ARCH_LLAMA, .n_kv_head = 3, .n_inner = 1536, .bos_token_id = 0,
                            .eos_token_id = 0, .layer_norm_epsilon = 1e-5f, .rope_theta = 100000.0f};
    snprintf(cfg.model_type, sizeof cfg.model_type, "llama");
    leash_gpt *full;
    if (leash_gpt_create(&full, &cfg)) die("create");
    leash_gpt_init(full, 0);
    printf("SmolLM2-135M shapes (random weights), B %d x T %d tokens per step, %d thread(s): %.1fM parameters\n", B, T,
           threads, leash_gpt_num_params(full) / 1e6);
    if (!have_torch) printf("(PyTorch columns skipped: /usr/bin/python3 cannot import torch; apt-get install python3-torch)\n");
    int in[B * T], tg[B * T];
    leash_rng rng;
    leash_rng_seed(&rng, 1, 0);
    for (int i = 0; i < B * T; i++) in[i] = (int)(leash_rng_uniform(&rng) * 49152), tg[i] = (int)(leash_rng_uniform(&rng) * 49152);

    struct {
        const char *name, *targets, *torch_mode;
    } runs[] = {{"full fine-tuning", NULL, "full"}, {"LoRA r 16 (q_proj, v_proj)", "q_proj,v_proj", "lora-qv"},
                {"LoRA r 16 (all-linear)", "all-linear", "lora-all"}};
    double torch_t[3] = {0}, torch_gen = 0.0;
    if (have_torch) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "cd bench && " TORCH_ENV "/usr/bin/python3 ref_llama.py %d %d %d %d %d %d", B, T, STEPS, PROMPT, NEW, threads);
        FILE *f = popen(cmd, "r");
        if (!f || fscanf(f, "%lf %lf %lf %lf", &torch_t[0], &torch_t[1], &torch_t[2], &torch_gen) != 4) torch_t[0] = 0;
        if (f) pclose(f);
    }
    double full_bytes = 0.0;
    for (int k = 0; k < 3; k++) {
        leash_gpt *m = full;
        if (runs[k].targets) {
            leash_lora_config lc = {.rank = 16, .alpha = 32.0f};
            if (leash_lora_parse_targets(runs[k].targets, LEASH_ARCH_LLAMA, &lc.targets) ||
                leash_gpt_add_lora(&m, full, &lc, 1))
                die("lora");
        }
        double bytes, tps = train(m, in, tg, &bytes);
        // PPO adds a reference: a frozen copy for full fine-tuning (weights, no gradients; scores in chunks),
        // nothing with LoRA (the base with adapters off)
        double ref = runs[k].targets ? 0.0 : 4.0 * leash_gpt_num_params(full);
        if (!runs[k].targets) full_bytes = bytes + ref;
        printf("\n%s: %.2fM trainable parameters\n", runs[k].name, leash_gpt_num_trainable(m) / 1e6);
        printf("  training   leash %7.0f tokens/s", tps);
        if (torch_t[0] > 0) printf("   PyTorch %7.0f tokens/s   leash/PyTorch %.2fx", torch_t[k], tps / torch_t[k]);
        printf("\n  memory     %.0f MB (weights, gradients, AdamW, activations) + reference %.0f MB = %.0f MB", bytes / 1e6,
               ref / 1e6, (bytes + ref) / 1e6);
        if (runs[k].targets) printf(" (%.0f%% of full fine-tuning's)", 100.0 * (bytes + ref) / full_bytes);
        printf("\n");
        if (m != full) leash_gpt_free(m);
    }
    double gen = generate(full, &rng);
    printf("\ngeneration (KV cache, %d sequences, %d-token prompts, %d new tokens)\n  leash %7.0f tokens/s", B, PROMPT, NEW, gen);
    if (torch_gen > 0) printf("   PyTorch %7.0f tokens/s   leash/PyTorch %.2fx", torch_gen, gen / torch_gen);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("\npeak resident memory of this process: %.0f MB\n", ru.ru_maxrss / 1e3);
    leash_gpt_free(full);
    return 0;
}
