/* Peak memory of a training step per model size, with and without activation checkpointing
 * (leash_gpt_set_checkpoint_activations), and what the recompute costs in time:
 *   GPT-2 small's shapes (124M: V 50257, C 768, L 12, 12 heads; random weights), full fine-tuning;
 *   SmolLM2-135M-Instruct (the real GGUF: $LEASH_SMOLLM2_GGUF, else /opt/leash-ref/...; random weights of its
 *   shapes when neither is there), full fine-tuning and LoRA (r 16 on all linear layers, as demo-real).
 * A step is forward, cross-entropy, backward and AdamW at batch B x T tokens. Each (model, setting) runs in its
 * own process, so its peak RSS (wait4's ru_maxrss) is its own; the two settings alternate, and their order
 * flips every round (the machine is shared). Step time is the second step's (the first allocates).
 *   bench_memory [B [T [ROUNDS]]]     (default 8 128 1: about a minute and a half on 2 cores)
 * Exits 1 if checkpointing does not lower the peak at every size. */
#define _DEFAULT_SOURCE /* wait4 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/optim.h"
#include "leash/rng.h"

#include "bench.h"

enum { GPT2, SMOL, SMOL_LORA, KINDS };
static const char *const KIND_NAME[KINDS] = {"gpt2-124M", "smollm2-135M", "smollm2-135M-lora"};

static void die(const char *what) {
    fprintf(stderr, "bench_memory: %s: %s\n", what, leash_errmsg());
    exit(1);
}

static const char *gguf_path(void) {
    const char *p = getenv("LEASH_SMOLLM2_GGUF");
    if (!p || !*p) p = "/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf";
    return access(p, R_OK) == 0 ? p : NULL;
}

static leash_gpt *make_model(int kind) {
    leash_gpt *m = NULL;
    const char *gguf = gguf_path();
    if (kind == GPT2) {
        leash_gpt_config c = {.vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12, .n_head = 12,
                              .bos_token_id = 50256, .eos_token_id = 50256, .layer_norm_epsilon = 1e-5f};
        if (leash_gpt_create(&m, &c)) die("gpt2 model");
        leash_gpt_init(m, 1);
        return m;
    }
    if (gguf) {
        if (kind == SMOL ? leash_gpt_load(&m, gguf) : leash_gpt_load_lora(&m, gguf, 16, 32.0f, 0.0f, "all-linear", 1))
            die(gguf);
        return m;
    }
    leash_gpt_config c = {.vocab_size = 49152, .n_positions = 2048, .n_embd = 576, .n_layer = 30, .n_head = 9,
                          .arch = LEASH_ARCH_LLAMA, .n_kv_head = 3, .n_inner = 1536, .layer_norm_epsilon = 1e-5f,
                          .rope_theta = 100000.0f};
    snprintf(c.model_type, sizeof c.model_type, "llama");
    if (leash_gpt_create(&m, &c)) die("smollm2-shaped model");
    leash_gpt_init(m, 1);
    if (kind == SMOL) return m;
    leash_lora_config lc = {.rank = 16, .alpha = 32.0f};
    leash_gpt *lm;
    if (leash_lora_parse_targets("all-linear", LEASH_ARCH_LLAMA, &lc.targets) || leash_gpt_add_lora(&lm, m, &lc, 1))
        die("LoRA");
    leash_gpt_free(m);
    return lm;
}

/* The child: two steps of one model and setting; prints the second step's seconds and the bytes leash accounts
 * for (model, activations, logits, AdamW's two moments). */
static int child(int kind, int ckpt, int B, int T) {
    leash_gpt *m = make_model(kind);
    leash_gpt_set_checkpoint_activations(m, ckpt);
    int V = leash_gpt_cfg(m)->vocab_size, *in = malloc(sizeof(int) * B * T), *tg = malloc(sizeof(int) * B * T);
    if (!in || !tg) die("tokens");
    leash_rng r;
    leash_rng_seed(&r, 3, 0);
    for (int i = 0; i < B * T; i++) in[i] = (int)(leash_rng_uniform(&r) * (V - 1));
    for (int i = 0; i < B * T; i++) tg[i] = i % T == T - 1 ? -1 : in[i + 1];
    leash_adamw_config oc = leash_adamw_defaults();
    oc.lr = 1e-5f;
    leash_adamw opt;
    if (leash_adamw_create(&opt, &oc, leash_gpt_num_trainable(m))) die("optimizer");
    double t = 0.0;
    for (int step = 0; step < 2; step++) {
        double t0 = bench_now(), loss, gn, lr;
        leash_gpt_zero_grad(m);
        if (leash_gpt_forward(m, in, NULL, B, T) || leash_gpt_cross_entropy(m, tg, &loss, NULL) || leash_gpt_backward(m) ||
            leash_adamw_step(&opt, m, &gn, &lr))
            die("train step");
        t = bench_now() - t0;
    }
    printf("%.6f %.0f\n", t, (double)leash_gpt_memory_bytes(m) + 8.0 * leash_gpt_num_trainable(m));
    leash_adamw_free(&opt);
    leash_gpt_free(m);
    free(in), free(tg);
    return 0;
}

/* Runs this program as a child for (kind, ckpt); *peak_mb its peak RSS, *secs its step time, *acct_mb what
 * leash accounts for. */
static void run_child(const char *self, int kind, int ckpt, int B, int T, double *peak_mb, double *secs, double *acct_mb) {
    int fd[2];
    if (pipe(fd)) die("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        char k[8], c[8], b[16], t[16];
        snprintf(k, sizeof k, "%d", kind), snprintf(c, sizeof c, "%d", ckpt);
        snprintf(b, sizeof b, "%d", B), snprintf(t, sizeof t, "%d", T);
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        execl(self, self, "--child", k, c, b, t, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    double bytes = 0.0;
    int got = f && fscanf(f, "%lf %lf", secs, &bytes) == 2;
    if (f) fclose(f);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) || !got) {
        fprintf(stderr, "bench_memory: the %s step (checkpointing %s) failed\n", KIND_NAME[kind], ckpt ? "on" : "off");
        exit(1);
    }
    *peak_mb = ru.ru_maxrss / 1024.0; // kB
    *acct_mb = bytes / (1024.0 * 1024.0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "--child")) return child(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    int B = argc > 1 ? atoi(argv[1]) : 8, T = argc > 2 ? atoi(argv[2]) : 128, R = argc > 3 ? atoi(argv[3]) : 1;
    if (B < 1 || T < 2 || T > 1024 || R < 1 || R > 50) {
        fprintf(stderr, "usage: bench_memory [B [T [ROUNDS]]]   (B >= 1, 2 <= T <= 1024, 1 <= ROUNDS <= 50)\n");
        return 2;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) die("/proc/self/exe");
    self[n] = 0;
    const char *gguf = gguf_path();
    printf("peak RSS of one training step (forward, loss, backward, AdamW) at batch %d x %d tokens, activation "
           "checkpointing off and on, %d round(s), each in its own process; SmolLM2: %s\n",
           B, T, R, gguf ? gguf : "random weights of its shapes (no GGUF: set LEASH_SMOLLM2_GGUF)");
    printf("%-19s %11s %11s %8s %13s %13s %10s %10s %7s\n", "model", "peak off MB", "peak on MB", "saved", "leash off MB",
           "leash on MB", "step off s", "step on s", "on/off");
    int bad = 0;
    for (int kind = 0; kind < KINDS; kind++) {
        double peak[2] = {0, 0}, acct[2] = {0, 0}, secs[2][50], ratio[50];
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 2; j++) {
                int ckpt = (r & 1) ? 1 - j : j; // off, on; then on, off
                double p, a;
                run_child(self, kind, ckpt, B, T, &p, &secs[ckpt][r], &a);
                peak[ckpt] = fmax(peak[ckpt], p), acct[ckpt] = a;
            }
        for (int r = 0; r < R; r++) ratio[r] = secs[1][r] / secs[0][r];
        qsort(secs[0], R, sizeof(double), cmp_double), qsort(secs[1], R, sizeof(double), cmp_double);
        qsort(ratio, R, sizeof(double), cmp_double);
        printf("%-19s %11.0f %11.0f %7.1f%% %13.0f %13.0f %10.2f %10.2f %6.2fx\n", KIND_NAME[kind], peak[0], peak[1],
               100.0 * (1.0 - peak[1] / peak[0]), acct[0], acct[1], secs[0][R / 2], secs[1][R / 2], ratio[R / 2]);
        if (!(peak[1] < peak[0])) bad = 1;
    }
    printf("(peak: the process's maximum resident set; leash: what leash_gpt_memory_bytes accounts for plus AdamW's "
           "moments; step: median seconds of the second step; on/off: median ratio of the paired steps)\n");
    if (bad) fprintf(stderr, "bench_memory: FAILED: activation checkpointing did not lower the peak at every size\n");
    return bad;
}
