/* DPO: the pair losses and the model gradient against finite differences, the Bayesian check (DPO on
 * Bradley-Terry preferences lands on pi* = pi_ref exp(r / beta) / Z), and `leash dpo` end to end. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "leash/dpo.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/optim.h"
#include "leash/rng.h"
#include "testutil.h"

Test(dpo, pair_losses_and_their_derivative) {
    const double hs[] = {-30.0, -2.0, -0.1, 0.0, 0.3, 1.7, 40.0}, betas[] = {0.05, 0.5, 2.0};
    double worst = 0.0;
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < 7; i++) {
                double beta = betas[b], h = hs[i], dh, eps = 1e-5;
                double l = leash_dpo_pair_loss((leash_dpo_loss)k, beta, h, &dh);
                double want = k == 0 ? log(1.0 + exp(-beta * h)) : pow(h - 1.0 / (2.0 * beta), 2.0);
                cr_assert(isfinite(l) && fabs(l - want) <= 1e-9 * fmax(1.0, fabs(want)), "loss %d beta %g h %g: %.15g, want %.15g", k,
                          beta, h, l, want);
                double fd = (leash_dpo_pair_loss((leash_dpo_loss)k, beta, h + eps, NULL) -
                             leash_dpo_pair_loss((leash_dpo_loss)k, beta, h - eps, NULL)) / (2.0 * eps);
                worst = fmax(worst, fabs(fd - dh) / fmax(1.0, fabs(fd)));
            }
    fprintf(stderr, "dpo pair losses: worst relative derivative error %.2e (bar 1e-6)\n", worst);
    cr_assert(worst < 1e-6, "worst derivative error %.3g", worst);
}

/* A tiny GPT-2 over V tokens (1 layer, width 16, untrained), its token embedding scaled by wte_scale so that
 * its next-token distributions are far from uniform. */
static leash_gpt *tiny_gpt(int V, float wte_scale, uint64_t seed) {
    leash_gpt_config cfg = {.vocab_size = V, .n_positions = 8, .n_embd = 16, .n_layer = 1, .n_head = 2, .bos_token_id = -1,
                            .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, seed);
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *ti = leash_gpt_tensor(m, i);
        if (!strcmp(ti->name, "wte.weight"))
            for (size_t j = 0; j < ti->numel; j++) leash_gpt_params(m)[ti->offset + j] *= wte_scale;
    }
    return m;
}

typedef struct {
    leash_gpt *m;
    leash_dpo_loss kind;
    leash_dpo_seq *w, *l;
    double *ref_w, *ref_l;
    int n;
} fd_ctx;

static double fd_loss(const float *x, void *p) {
    (void)x; // x points into the model's parameters
    fd_ctx *c = p;
    leash_dpo_metrics mt;
    cr_assert_eq(leash_dpo_accumulate(c->m, c->kind, 0.7, c->w, c->l, c->ref_w, c->ref_l, NULL, c->n, 0.0, &mt), 0, "%s",
                 leash_errmsg());
    return mt.loss;
}

/* The gradient leash_dpo_accumulate adds, against central differences (Richardson) of its loss, on pairs of
 * different lengths (padding) whose prompts differ: every parameter with a gradient above 1e-3 of the largest,
 * plus 40 at random. Bar: 2e-3 of the largest gradient (float32 forward noise through the differences). */
Test(dpo, model_gradient_matches_finite_differences, .timeout = 30) {
    const int V = 12, n = 4;
    omp_set_num_threads(1); // tiny matrices: threads only add waiting on a busy machine (0.9 s alone, ~30 s contended)
    static const int ids[8][6] = {{1, 2, 3, 4}, {1, 2, 5}, {7, 3, 8, 9, 10}, {7, 3, 11}, {4, 4, 6, 6, 6, 2},
                                  {4, 4, 6}, {9, 1, 0}, {9, 1, 2, 2}};
    static const int len[8] = {4, 3, 5, 3, 6, 3, 3, 4}, plen[8] = {2, 2, 2, 2, 2, 2, 2, 2};
    for (int kind = 0; kind < 2; kind++) {
        leash_gpt *m = tiny_gpt(V, 10.0f, 5);
        leash_dpo_seq w[4], l[4];
        for (int i = 0; i < n; i++) {
            w[i] = (leash_dpo_seq){ids[2 * i], len[2 * i], plen[2 * i]};
            l[i] = (leash_dpo_seq){ids[2 * i + 1], len[2 * i + 1], plen[2 * i + 1]};
        }
        double ref_w[4] = {-3.0, -5.5, -2.0, -1.0}, ref_l[4] = {-2.5, -2.0, -4.0, -3.0};
        fd_ctx c = {m, (leash_dpo_loss)kind, w, l, ref_w, ref_l, n};
        leash_gpt_zero_grad(m);
        cr_assert_eq(leash_dpo_accumulate(m, c.kind, 0.7, w, l, ref_w, ref_l, NULL, n, 1.0, NULL), 0, "%s", leash_errmsg());
        size_t P = leash_gpt_num_params(m);
        float *g = malloc(P * sizeof *g);
        memcpy(g, leash_gpt_grads(m), P * sizeof *g);
        double gmax = 0.0, worst = 0.0;
        for (size_t j = 0; j < P; j++) gmax = fmax(gmax, fabs(g[j]));
        leash_rng rng;
        leash_rng_seed(&rng, 9, (uint64_t)kind);
        int checked = 0;
        for (size_t j = 0; j < P; j++) {
            int pick = fabs(g[j]) > 1e-3 * gmax || leash_rng_uniform(&rng) < 40.0 / P;
            if (!pick) continue;
            double fd = fd_richardson(fd_loss, leash_gpt_params(m), (int)j, &c);
            worst = fmax(worst, fabs(fd - g[j]));
            checked++;
        }
        fprintf(stderr, "dpo %s gradient: %d parameters checked, worst |fd - grad| = %.2e, largest |grad| %.3g (bar 2e-3 of it)\n",
                kind ? "ipo" : "sigmoid", checked, worst, gmax);
        cr_assert(gmax > 1e-3 && worst < 2e-3 * gmax, "worst %.3g vs largest gradient %.3g", worst, gmax);
        free(g);
        leash_gpt_free(m);
    }
}

/* ---- the Bayesian check ---------------------------------------------------------------------------- */

enum { BV = 8 }; // responses: the single token after the prompt token 0
#define BAYES_WTE 5.0f // pi_ref(. | 0) then has TV 0.32 to uniform (0.44 on token 0, 0.04 on token 5)
static const double bayes_r[BV] = {1.0, -0.6, 0.2, 0.8, -1.0, 0.0, 0.5, -0.3};

/* log pi(y | prompt 0) for every y, with the model */
static void response_logps(leash_gpt *m, double *logp) {
    int ids[BV][2];
    leash_dpo_seq rows[BV];
    for (int y = 0; y < BV; y++) ids[y][0] = 0, ids[y][1] = y, rows[y] = (leash_dpo_seq){ids[y], 2, 1};
    cr_assert_eq(leash_dpo_seq_logps(m, rows, BV, logp), 0, "%s", leash_errmsg());
}

/* Trains DPO to convergence (full batch, AdamW, 600 steps) on the pair counts, mode 0: as it is; 1: chosen and
 * rejected swapped (beta's sign wrong); 2: the reference term left out (ref log-probs 0). Returns TV to pi*. */
static double dpo_tv(const double counts[BV][BV], double beta, int mode, double *tv_ref) {
    leash_gpt *m = tiny_gpt(BV, BAYES_WTE, 7);
    double ref[BV], pistar[BV], z = 0.0;
    response_logps(m, ref); // computed once, before any update: the cached reference
    for (int y = 0; y < BV; y++) pistar[y] = exp(ref[y] + bayes_r[y] / beta), z += pistar[y];
    int ids[BV][2], n = 0;
    leash_dpo_seq seqs[BV], w[BV * BV], l[BV * BV];
    double rw[BV * BV], rl[BV * BV], weight[BV * BV];
    for (int y = 0; y < BV; y++) ids[y][0] = 0, ids[y][1] = y, seqs[y] = (leash_dpo_seq){ids[y], 2, 1};
    for (int a = 0; a < BV; a++)
        for (int b = 0; b < BV; b++)
            if (counts[a][b] > 0) {
                int x = mode == 1 ? b : a, y = mode == 1 ? a : b;
                w[n] = seqs[x], l[n] = seqs[y];
                rw[n] = mode == 2 ? 0.0 : ref[x], rl[n] = mode == 2 ? 0.0 : ref[y];
                weight[n++] = counts[a][b];
            }
    leash_adamw_config oc = leash_adamw_defaults();
    oc.lr = 0.02f, oc.weight_decay = 0.0f, oc.grad_clip = 0.0f, oc.total_steps = 600, oc.min_lr_ratio = 0.01f;
    leash_adamw opt;
    cr_assert_eq(leash_adamw_create(&opt, &oc, leash_gpt_num_trainable(m)), 0);
    leash_dpo_metrics mt = {0};
    for (int s = 0; s < oc.total_steps; s++) {
        leash_gpt_zero_grad(m);
        cr_assert_eq(leash_dpo_accumulate(m, LEASH_DPO_SIGMOID, beta, w, l, rw, rl, weight, n, 1.0, &mt), 0, "%s", leash_errmsg());
        cr_assert_eq(leash_adamw_step(&opt, m, NULL, NULL), 0, "%s", leash_errmsg());
    }
    double pi[BV], tv = 0.0, tr = 0.0;
    response_logps(m, pi);
    for (int y = 0; y < BV; y++) {
        tv += 0.5 * fabs(exp(pi[y]) - pistar[y] / z);
        tr += 0.5 * fabs(exp(ref[y]) - pistar[y] / z);
    }
    if (tv_ref) *tv_ref = tr;
    double tu = 0.0;
    for (int y = 0; y < BV; y++) tu += 0.5 * fabs(exp(ref[y]) - 1.0 / BV);
    fprintf(stderr, "pi_ref TV to uniform %.3f; pi_ref:", tu);
    for (int y = 0; y < BV; y++) fprintf(stderr, " %.3f", exp(ref[y]));
    fputc('\n', stderr);
    fprintf(stderr, "dpo bayes (%s): loss %.4f, TV(pi, pi*) = %.4f, TV(pi_ref, pi*) = %.4f\n",
            mode == 0 ? "as is" : mode == 1 ? "beta's sign wrong" : "no reference term", mt.loss, tv, tr);
    leash_adamw_free(&opt);
    leash_gpt_free(m);
    return tv;
}

/* The Bayesian check. A tiny model (V = 8, its embedding scaled so pi_ref(. | token 0) is far from uniform:
 * TV(pi_ref, uniform) about 0.3) is the reference; a reward r(y) over its 8 single-token responses; 400000 pairs
 * drawn i.i.d. from pi_ref (ties dropped) and ordered by the Bradley-Terry model of r; DPO (sigmoid, beta 0.5)
 * trained to convergence on them. Theory: the population optimum is pi* = pi_ref exp(r / beta) / Z exactly, so
 * what is left is the pairs' sampling noise (about 1e-3 in TV at this count) and the optimiser's residual.
 * Bar: TV(pi, pi*) < 0.01, a tenth of TV(pi_ref, pi*). It can fail: the same training with chosen and rejected
 * swapped (beta's sign wrong) or with the reference term left out lands far from pi*; both are asserted below
 * (TV > 0.05), so a trainer that lost the reference or flipped the sign fails this test. */
Test(dpo, bayes_lands_on_pi_star, .timeout = 60) {
    omp_set_num_threads(1); // as above: 0.6 s on one thread
    leash_gpt *m = tiny_gpt(BV, BAYES_WTE, 7);
    double ref[BV], cdf[BV], acc = 0.0, counts[BV][BV] = {{0}}, beta = 0.5;
    response_logps(m, ref);
    leash_gpt_free(m);
    for (int y = 0; y < BV; y++) acc += exp(ref[y]), cdf[y] = acc;
    leash_rng rng;
    leash_rng_seed(&rng, 11, 0);
    for (int i = 0; i < 400000; i++) {
        int a = 0, b = 0;
        double u = leash_rng_uniform(&rng) * acc, v = leash_rng_uniform(&rng) * acc;
        while (a < BV - 1 && cdf[a] < u) a++;
        while (b < BV - 1 && cdf[b] < v) b++;
        if (a == b) continue;
        double p = 1.0 / (1.0 + exp(-(bayes_r[a] - bayes_r[b]))); // P(a preferred to b)
        if (leash_rng_uniform(&rng) < p) counts[a][b] += 1.0;
        else counts[b][a] += 1.0;
    }
    double tv_ref, tv = dpo_tv(counts, beta, 0, &tv_ref);
    cr_assert(tv < 0.01, "TV(pi, pi*) = %.4f; bar 0.01 (TV(pi_ref, pi*) = %.4f)", tv, tv_ref);
    cr_assert(tv_ref > 0.1, "the check needs pi* far from pi_ref: TV %.4f", tv_ref);
    double tv_sign = dpo_tv(counts, beta, 1, NULL), tv_noref = dpo_tv(counts, beta, 2, NULL);
    cr_assert(tv_sign > 0.05 && tv_noref > 0.05, "the broken trainers must miss pi*: sign %.4f, no reference %.4f", tv_sign, tv_noref);
}

/* ---- `leash dpo` end to end ------------------------------------------------------------------------ */

/* Runs a shell command; its exit status, and its stderr in err (cap bytes). */
static int sh(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *err, size_t cap, const char *fmt, ...) {
    char cmd[4096], path[] = "/tmp/leash-dpo-err-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(cmd + k, sizeof cmd - k, " 2>%s", path);
    int st = system(cmd);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(err, 1, cap - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char *path, char *last, size_t cap) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        if (last) snprintf(last, cap, "%s", line);
    }
    fclose(f);
    return n;
}

/* A judge-label-style preference file (prompt, chosen, rejected, margin) over the tiny policy's prompts. */
static void write_prefs(const char *dir, char *path, size_t cap) {
    snprintf(path, cap, "%s/prefs.jsonl", dir);
    char pp[256], line[1024];
    snprintf(pp, sizeof pp, "%s/prompts.jsonl", dir);
    FILE *in = fopen(pp, "r"), *out = fopen(path, "w");
    cr_assert(in && out);
    while (fgets(line, sizeof line, in)) {
        char *p = strstr(line, "\": \"") + 4, *e = strrchr(p, '"');
        *e = 0;
        fprintf(out, "{\"prompt\": \"%s\", \"chosen\": \" a great film, loved it\", \"rejected\": \" dull and bad\", \"margin\": 1.5}\n", p);
    }
    fclose(in), fclose(out);
}

/* A run writes OUT/policy (model + tokenizer) and TRL-named metrics, its first step's implicit rewards are 0 (the
 * reference is the initial policy) and the margin grows; a second run into OUT is refused, --resume with a grown
 * --steps continues and lands on the same numbers as a straight run, --resume with another --beta is refused
 * naming it, --overwrite replaces; a LoRA run writes an adapter directory and resumes; --resume of a directory
 * without a checkpoint is refused. */
Test(dpo, cli_end_to_end_and_resume, .timeout = 60) {
    rl_scratch w;
    rl_scratch_make(&w, "dpo");
    char prefs[256], err[8192], path[512], last[4096], straight[4096];
    write_prefs(w.dir, prefs, sizeof prefs);
    const char *common = "--beta 0.1 --lr 3e-3 --batch 4 --seed 3 -q";
    int rc = sh(err, sizeof err, "%s dpo --policy %s --data %s --out %s/straight --steps 6 %s", LEASH_BIN, w.dir, prefs, w.dir, common);
    cr_assert_eq(rc, 0, "straight run: %d %s", rc, err);
    snprintf(path, sizeof path, "%s/straight/metrics.jsonl", w.dir);
    cr_assert_eq(count_lines(path, straight, sizeof straight), 6);
    rc = sh(err, sizeof err, "%s dpo --policy %s --data %s --out %s --steps 4 %s", LEASH_BIN, w.dir, prefs, w.out, common);
    cr_assert_eq(rc, 0, "run: %d %s", rc, err);
    snprintf(path, sizeof path, "%s/metrics.jsonl", w.out);
    cr_assert_eq(count_lines(path, last, sizeof last), 4);
    static const char *const keys[] = {"\"loss\"", "\"beta\"", "\"rewards/chosen\"", "\"rewards/rejected\"", "\"rewards/accuracies\"",
                                       "\"rewards/margins\"", "\"logps/chosen\"", "\"logps/rejected\""};
    for (int k = 0; k < 8; k++) cr_assert(strstr(last, keys[k]), "metrics line lacks %s: %s", keys[k], last);
    FILE *f = fopen(path, "r");
    char first[4096];
    cr_assert(fgets(first, sizeof first, f));
    fclose(f);
    double rchosen = atof(strstr(first, "\"rewards/chosen\": ") + 18), rrej = atof(strstr(first, "\"rewards/rejected\": ") + 20);
    double margin4 = atof(strstr(last, "\"rewards/margins\": ") + 19);
    fprintf(stderr, "dpo cli: step 1 rewards chosen %.2e rejected %.2e (the reference is the initial policy); step 4 margin %.4f\n",
            rchosen, rrej, margin4);
    cr_assert(fabs(rchosen) < 1e-5 && fabs(rrej) < 1e-5, "step 1's implicit rewards must be 0: %g %g", rchosen, rrej);
    cr_assert(margin4 > 0.0, "the margin must grow: %g", margin4);
    const char *files[] = {"policy/config.json", "policy/model.safetensors", "policy/tokenizer.json", "checkpoint/state.json"};
    struct stat sb;
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/%s", w.out, files[k]);
        if (k == 2 && stat(path, &sb) != 0) snprintf(path, sizeof path, "%s/policy/vocab.json", w.out);
        cr_assert_eq(stat(path, &sb), 0, "%s missing", path);
    }
    rc = sh(err, sizeof err, "%s dpo --policy %s --data %s --out %s --steps 4 %s", LEASH_BIN, w.dir, prefs, w.out, common);
    cr_assert(rc == 2 && strstr(err, "--resume"), "a second run must be refused: %d %s", rc, err);
    rc = sh(err, sizeof err, "%s dpo --policy %s --data %s --out %s --steps 6 --resume --beta 0.2 --lr 3e-3 --batch 4 --seed 3 -q",
            LEASH_BIN, w.dir, prefs, w.out);
    cr_assert(rc == 2 && strstr(err, "--beta"), "another --beta must be refused by name: %d %s", rc, err);
    snprintf(path, sizeof path, "%s/metrics.jsonl", w.out);
    f = fopen(path, "a"); // as a run killed after logging step 5 past its checkpoint leaves it: the resume drops it
    fputs("{\"step\": 5, \"loss\": 99}\n{\"step\": 6, \"lo", f);
    fclose(f);
    rc = sh(err, sizeof err, "%s dpo --policy %s --data %s --out %s --steps 6 --resume %s", LEASH_BIN, w.dir, prefs, w.out, common);
    cr_assert_eq(rc, 0, "resume: %d %s", rc, err);
    snprintf(path, sizeof path, "%s/metrics.jsonl", w.out);
    cr_assert_eq(count_lines(path, last, sizeof last), 6);
    cr_assert_str_eq(last, straight, "resumed and straight runs differ at step 6:\n%s%s", last, straight);
    rc = sh(err, sizeof err, "%s dpo --policy %s --data %s --out %s --steps 2 --overwrite --lora-r 2 --loss ipo %s", LEASH_BIN, w.dir,
            prefs, w.out, common);
    cr_assert_eq(rc, 0, "overwrite with LoRA: %d %s", rc, err);
    cr_assert_eq(count_lines(path, NULL, 0), 2);
    rc = sh(err, sizeof err, "%s dpo --policy %s --data %s --out %s --steps 3 --resume --lora-r 2 --loss ipo %s", LEASH_BIN, w.dir,
            prefs, w.out, common);
    cr_assert_eq(rc, 0, "LoRA resume: %d %s", rc, err);
    cr_assert_eq(count_lines(path, NULL, 0), 3);
    rc = sh(err, sizeof err, "%s dpo --policy %s --data %s --out %s/empty --steps 3 --resume %s", LEASH_BIN, w.dir, prefs, w.dir, common);
    cr_assert(rc == 2 && strstr(err, "no checkpoint"), "--resume without a checkpoint must be refused: %d %s", rc, err);
    snprintf(path, sizeof path, "%s/policy/adapter_config.json", w.out);
    cr_assert_eq(stat(path, &sb), 0, "%s missing", path);
    rl_scratch_drop(&w);
}
