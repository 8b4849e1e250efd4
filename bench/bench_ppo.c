/* Benchmark of one PPO step on the demo's model shape (V 1024, C 128, 4 layers, 4 heads; 64 rollouts of 24
 * tokens; 4 epochs), split by phase, side by side with the same step in PyTorch (bench/ref_ppo.py,
 * Debian's python3-torch, same thread count) where it is installed. Random weights: the work, not the
 * learning, is measured. Prints times and ratios; asserts nothing about speed. */
#define _DEFAULT_SOURCE
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/rl.h"
#include "leash/tokenizer.h"
#include "leash/world.h"

#include "bench.h"

static void die(const char *what) {
    fprintf(stderr, "bench_ppo: %s: %s\n", what, leash_errmsg());
    exit(1);
}

typedef struct {
    double phase[4];
    int counted;
} acc;

static int collect(const leash_rl_progress *p, void *ctx) {
    acc *a = ctx;
    if (p->step == 1) return 0; // warm-up: allocations
    for (int k = 0; k < 4; k++) a->phase[k] += p->phase_seconds[k];
    a->counted++;
    return 0;
}

int main(void) {
    enum { STEPS = 4, B = 64, NEW = 24, EPOCHS = 4 };
    int threads = omp_get_max_threads();
    char dir[] = "/tmp/leash-bench-ppo-XXXXXX", path[512], rmdir_[512];
    if (!mkdtemp(dir)) return 1;
    // the world's tokenizer (1024 tokens) and openings; a random policy; a reward model from it
    leash_rng rng;
    leash_rng_seed(&rng, 1, 0);
    size_t cap = 4 << 20, n = 0;
    char *text = malloc(cap), line[512];
    while (n + 600 < cap) {
        int k = leash_world_review(&rng, 0.0, line, sizeof line);
        memcpy(text + n, line, k), n += k, text[n++] = '\n';
    }
    if (leash_tokenizer_train(text, n, 1024, 2, dir)) die("tokenizer");
    free(text);
    leash_tokenizer *tok;
    if (leash_tokenizer_load_dir(&tok, dir)) die("tokenizer");
    leash_gpt_config cfg = {.vocab_size = leash_tokenizer_vocab_size(tok), .n_positions = 64, .n_embd = 128, .n_layer = 4,
                            .n_head = 4, .bos_token_id = -1, .eos_token_id = leash_tokenizer_special_id(tok, "<|endoftext|>"),
                            .layer_norm_epsilon = 1e-5f};
    leash_tokenizer_free(tok);
    leash_gpt *m, *rm;
    if (leash_gpt_create(&m, &cfg)) die("model");
    leash_gpt_init(m, 1);
    if (leash_gpt_save(m, dir) || leash_gpt_copy_with_head(&rm, m, 0, 2)) die("save");
    snprintf(rmdir_, sizeof rmdir_, "%s/rm", dir);
    if (leash_gpt_save(rm, rmdir_) || leash_tokenizer_copy(dir, rmdir_)) die("reward model");
    leash_gpt_free(m), leash_gpt_free(rm);
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 1000; i++) {
        leash_world_opening(&rng, line, sizeof line);
        fprintf(f, "{\"prompt\": \"%s\"}\n", line);
    }
    fclose(f);
    leash_rl_config c = leash_rl_defaults(LEASH_PPO);
    char out[600];
    snprintf(out, sizeof out, "%s/run", dir);
    c.policy_dir = dir, c.reward = (leash_reward_source){.kind = LEASH_REWARD_MODEL, .dir = rmdir_}, c.prompts = path, c.out_dir = out, c.steps = STEPS, c.batch = B;
    c.max_new = NEW, c.epochs = EPOCHS, c.sample_every = 0, c.optim.lr = 1e-4f;
    leash_beta_fixed(&c.beta, 0.1);
    acc a = {0};
    if (leash_rl_train(&c, collect, &a, NULL)) die("ppo");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_ppo: could not remove %s\n", dir);
    double lt[4], total = 0, tt[4] = {0}, ttot = 0;
    for (int k = 0; k < 4; k++) lt[k] = a.phase[k] / a.counted, total += lt[k];
    int have_torch = system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
    if (have_torch) {
        snprintf(cmd, sizeof cmd, "cd bench && " TORCH_ENV "/usr/bin/python3 ref_ppo.py %d 128 4 4 %d 5 %d %d 2 %d", cfg.vocab_size, B, NEW,
                 EPOCHS, threads);
        FILE *p = popen(cmd, "r");
        if (!p || fscanf(p, "%lf %lf %lf %lf", &tt[0], &tt[1], &tt[2], &tt[3]) != 4) have_torch = 0;
        if (p) pclose(p);
        for (int k = 0; k < 4; k++) ttot += tt[k];
    }
    printf("one PPO step: 64 rollouts x 24 tokens, V %d, C 128, 4 layers; 4 epochs; %d thread(s)\n", cfg.vocab_size, threads);
    if (!have_torch) printf("(PyTorch column skipped: /usr/bin/python3 cannot import torch)\n");
    const char *names[4] = {"rollout (KV-cache sampling)", "policy + reference scoring, values", "reward model",
                            "updates (policy and value)"};
    printf("%-38s %10s %10s %12s\n", "phase", "leash s", "PyTorch s", "PyTorch/leash");
    for (int k = 0; k < 4; k++) {
        printf("%-38s %10.3f", names[k], lt[k]);
        if (have_torch) printf(" %10.3f %12.2f\n", tt[k], tt[k] / lt[k]);
        else printf("\n");
    }
    printf("%-38s %10.3f", "whole step", total);
    if (have_torch) printf(" %10.3f %12.2f\n", ttot, ttot / total);
    else printf("\n");
    return 0;
}
