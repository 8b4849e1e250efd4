/* Helpers shared by the unit tests: random inputs, finite differences, worst-difference reports. */
#ifndef LEASH_TESTUTIL_H
#define LEASH_TESTUTIL_H

#include <math.h>

#include "leash/rng.h"

/* Random logits on a grid of 2^-10 in [-range, range]: x +- 2^-7 and x +- 2^-8 are then exact in
 * float32, so finite differences of a float-input function perturb by exactly the step. */
static inline void grid_logits(leash_rng *rng, float *x, int n, double range) {
    for (int i = 0; i < n; i++) x[i] = (float)(round((2.0 * leash_rng_uniform(rng) - 1.0) * range * 1024.0) / 1024.0);
}

/* d f / d x[i] by central differences with Richardson extrapolation (steps 2^-7 and 2^-8; error
 * O(h^4) ~ 4e-9 times the fifth derivative). f takes float32 inputs and returns float64. */
typedef double (*float_fn)(const float *x, void *ctx);
static inline double fd_richardson(float_fn f, float *x, int i, void *ctx) {
    float x0 = x[i];
    double d[2];
    for (int k = 0; k < 2; k++) {
        float h = k == 0 ? 0x1p-7f : 0x1p-8f;
        x[i] = x0 + h;
        double fp = f(x, ctx);
        x[i] = x0 - h;
        double fm = f(x, ctx);
        d[k] = (fp - fm) / (2.0 * h);
    }
    x[i] = x0;
    return (4.0 * d[1] - d[0]) / 3.0;
}

/* max_i |a_i - b_i| / max_i |b_i|: the worst error relative to the scale of the reference b. */
static inline double rel_err_f(const float *a, const double *b, int n) {
    double worst = 0.0, scale = 0.0;
    for (int i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    return scale > 0.0 ? worst / scale : worst;
}

/* Skips a test whose reference (a Python package, GPT-2's files) is missing, saying so on stderr, which
 * Criterion shows without --verbose. With LEASH_REQUIRE_REF=1 (CI) a missing reference fails instead. */
#include <stdio.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#define LEASH_SKIP_OR_FAIL(...)                                                                                      \
    do {                                                                                                             \
        const char *req_ = getenv("LEASH_REQUIRE_REF");                                                              \
        cr_assert(!(req_ && strcmp(req_, "1") == 0), "LEASH_REQUIRE_REF=1 but the reference is missing: " __VA_ARGS__); \
        fprintf(stderr, "[SKIP] %s: ", __func__);                                                                    \
        fprintf(stderr, __VA_ARGS__);                                                                                \
        fputc('\n', stderr);                                                                                         \
        cr_skip_test(__VA_ARGS__);                                                                                   \
    } while (0)

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/tokenizer.h"
#include "leash/world.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* text into path (created or truncated); a failure fails the test. */
static inline void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* The text of path (NUL-terminated, the caller frees it; at most 64 MiB), or NULL when it cannot be read. */
static inline char *read_text(const char *path) {
    char *text = NULL;
    return leash_read_file(path, 1 << 26, &text, NULL) ? NULL : text;
}

/* Runs a shell command from the source directory, stdout and stderr together into out (at most cap - 1 bytes,
 * NUL-terminated); returns its exit status, -1 when a signal ended it. */
static inline int run_capture(const char *cmd, char *out, size_t cap) {
    char full[8192];
    snprintf(full, sizeof full, "cd '%s' && %s 2>&1", LEASH_SRCDIR, cmd);
    FILE *f = popen(full, "r");
    cr_assert(f, "popen failed");
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A model directory for tests: a byte-level BPE of `vocab` ids trained on text, and a 1-layer, 2-head GPT of
 * width 32 over it with n_positions positions (GPT-2 initialisation, seed 1), saved in dir. */
static inline void tiny_model_dir(const char *dir, const char *text, size_t n, int vocab, int n_positions) {
    cr_assert_eq(leash_tokenizer_train(text, n, vocab, 2, dir), 0, "%s", leash_errmsg());
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, dir), 0);
    leash_gpt_config cfg = {.vocab_size = leash_tokenizer_vocab_size(tok), .n_positions = n_positions, .n_embd = 32,
                            .n_layer = 1, .n_head = 2, .bos_token_id = -1,
                            .eos_token_id = leash_tokenizer_special_id(tok, "<|endoftext|>"), .layer_norm_epsilon = 1e-5f};
    leash_tokenizer_free(tok);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0);
    leash_gpt_init(m, 1);
    cr_assert_eq(leash_gpt_save(m, dir), 0);
    leash_gpt_free(m);
}

/* A trained-looking LoRA adapter: every lora_B tensor of m drawn from N(0, 0.3^2) (stream 5, 5), so B != 0. */
static inline void lora_randomise_b(leash_gpt *m) {
    leash_rng r;
    leash_rng_seed(&r, 5, 5);
    for (int i = leash_gpt_first_trainable(m); i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        if (strstr(t->name, "lora_B"))
            for (size_t k = 0; k < t->numel; k++) leash_gpt_params(m)[t->offset + k] = (float)(0.3 * leash_rng_normal(&r));
    }
}

/* A tiny policy on the world's words (tokenizer of 400, untrained weights) and 20 prompts.jsonl beside it. */
static inline void tiny_policy(const char *dir) {
    leash_rng rng;
    leash_rng_seed(&rng, 3, 0);
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap), line[512];
    while (n + 600 < cap / 4) {
        int k = leash_world_review(&rng, 0.0, line, sizeof line);
        memcpy(text + n, line, k), n += k, text[n++] = '\n';
    }
    tiny_model_dir(dir, text, n, 400, 32);
    free(text);
    char path[256];
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 20; i++) {
        leash_world_opening(&rng, line, sizeof line);
        fprintf(f, "{\"prompt\": \"%s\"}\n", line);
    }
    fclose(f);
}

/* A scratch directory for an RL test: tiny_policy() in it, and the paths of its prompts and of a run. */
typedef struct {
    char dir[64], prompts[128], out[128];
} rl_scratch;

static inline void rl_scratch_make(rl_scratch *w, const char *tag) {
    snprintf(w->dir, sizeof w->dir, "/tmp/leash-%s-XXXXXX", tag);
    cr_assert(mkdtemp(w->dir));
    tiny_policy(w->dir);
    snprintf(w->prompts, sizeof w->prompts, "%s/prompts.jsonl", w->dir);
    snprintf(w->out, sizeof w->out, "%s/run", w->dir);
}

static inline void rl_scratch_drop(const rl_scratch *w) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    cr_assert_eq(system(cmd), 0);
}

#endif
