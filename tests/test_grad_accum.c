/* Gradient accumulation (--grad-accum) and the update's forward as the scoring pass, on a tiny model.
 *
 * Accumulation: one step with K = 1 against K = 2, 3, 4 micro-batches, for every loss's normalisation (PPO's
 * token mean and value loss, GRPO's per-sequence mean, bnpo/dapo's token mean, Dr. GRPO's constant, GSPO's
 * sequence ratio, masked truncated responses, the exact KL and the entropy bonus in the loss, LoRA, several
 * minibatches). The policy's responses end at an
 * end-of-text token often (the model is biased towards it), so the micro-batches hold unequal token counts and
 * a micro-batch's own mean would differ from the minibatch's. AdamW runs with eps 10 and no clipping, so its
 * first step is lr g / (|g| + 10), nearly linear in the gradient: a wrong denominator moves the weights. The
 * reference is the K = 1 run; the tolerance 1e-5 of the step (the weights' change) is float summation order
 * (the worst seen is printed).
 *
 * Scoring in the update: with one epoch of one minibatch the separate scoring forward is skipped; the runs must
 * be bit-identical to separate_scoring = 1 (weights, value model, metrics.jsonl but for its timings), and the
 * first ratio exactly 1. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/metrics.h"
#include "leash/rl.h"
#include "leash/rng.h"
#include "leash/tokenizer.h"
#include "leash/world.h"
#include "testutil.h"

/* The tiny policy with its end-of-text logit raised (the final norm's bias along one axis, the token's
 * embedding along it): about a quarter of the tokens end the response, so responses have unequal lengths. */
static void eos_heavy(const char *dir) {
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, dir), 0, "%s", leash_errmsg());
    int eos = leash_gpt_cfg(m)->eos_token_id, C = leash_gpt_cfg(m)->n_embd, done = 0;
    cr_assert(eos >= 0);
    float *p = leash_gpt_params(m);
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        size_t n = strlen(t->name);
        if (n >= 9 && !strcmp(t->name + n - 9, "ln_f.bias")) p[t->offset] = 1.0f, done++;
        if (n >= 10 && !strcmp(t->name + n - 10, "wte.weight")) p[t->offset + (size_t)eos * C] = 4.0f, done++;
    }
    cr_assert_eq(done, 2, "ln_f.bias and wte.weight not found");
    cr_assert_eq(leash_gpt_save(m, dir), 0, "%s", leash_errmsg());
    leash_gpt_free(m);
}

typedef struct {
    float *w;          // the policy's trainable weights after the run
    size_t n;
    double grad_norm, first_dev;
    long lengths[9];   // response lengths (1..8) of step 1
} seen;

static int on_step(const leash_rl_progress *p, void *ctx) {
    seen *s = ctx;
    leash_gpt *m = (leash_gpt *)p->batch->policy;
    s->n = leash_gpt_num_trainable(m);
    free(s->w);
    s->w = malloc(s->n * sizeof *s->w);
    memcpy(s->w, leash_gpt_trainable(m), s->n * sizeof *s->w);
    s->grad_norm = leash_metrics_value(p->metrics, "grad_norm");
    if (p->first_ratio_dev > s->first_dev) s->first_dev = p->first_ratio_dev;
    if (p->step == 1)
        for (int b = 0; b < p->batch->rows; b++) s->lengths[p->batch->resp_len[b] < 9 ? p->batch->resp_len[b] : 0]++;
    return 0;
}

typedef struct {
    const char *name;
    leash_rl_algo algo;
    const char *loss;    // GRPO's loss_type (NULL: grpo)
    int exact, lora, minibatch, epochs;
    float entropy_coef;
    float lr;            // 0: 1 (several optimiser steps need a smaller one, or the later steps blow up)
} variant;

/* A reward that varies within every group: the response's ids and length, hashed to [0, 1). */
static double reward(const char *prompt, const char *response, const int *tokens, int n, void *ctx) {
    (void)prompt, (void)response, (void)ctx;
    unsigned h = 2166136261u;
    for (int i = 0; i < n; i++) h = (h ^ (unsigned)tokens[i]) * 16777619u;
    return (h % 1000) / 1000.0;
}

static float value_lr; // > 0: the value model's learning rate instead of the policy's
static int checkpoint; // --checkpoint-activations

static leash_rl_config config(const rl_scratch *s, const variant *v, int steps, int K, int separate, const char *out) {
    leash_rl_config c = leash_rl_defaults(v->algo);
    c.policy_dir = s->dir, c.prompts = s->prompts, c.out_dir = out, c.reward.kind = LEASH_REWARD_FUNCTION;
    c.reward.fn = reward;
    c.steps = steps, c.batch = v->algo == LEASH_PPO ? 8 : 2, c.grpo.group = 4, c.max_new = 8, c.seed = 7;
    c.epochs = v->epochs ? v->epochs : 1, c.minibatch = v->minibatch, c.grad_accum = K, c.separate_scoring = separate;
    c.optim.lr = v->lr > 0 ? v->lr : 1.0f, c.optim.eps = 10.0f, c.optim.grad_clip = 0.0f; // step ~ g / 10: linear in the gradient
    c.ppo.value_optim = c.optim;
    if (value_lr > 0) c.ppo.value_optim.lr = value_lr;
    c.checkpoint_activations = checkpoint;
    c.sample_every = 0;
    if (v->loss) cr_assert_eq(leash_grpo_choice(&c.grpo, "loss", v->loss), 0);
    if (!strcmp(v->name, "gspo")) cr_assert_eq(leash_grpo_choice(&c.grpo, "importance-sampling-level", "sequence"), 0);
    c.grpo.mask_truncated = !strcmp(v->name, "masked"); // rows without an end token add no loss (nor tokens)
    if (v->exact) c.kl_estimator = LEASH_KL_EXACT;
    c.grpo.entropy_coef = v->entropy_coef;
    if (v->lora) c.lora_rank = 2;
    return c;
}

static seen run(const rl_scratch *s, const variant *v, int steps, int K, int separate, const char *tag) {
    char out[160];
    snprintf(out, sizeof out, "%s/%s-%s-k%d-s%d", s->dir, v->name, tag, K, separate);
    leash_rl_config c = config(s, v, steps, K, separate, out);
    seen r = {0};
    cr_assert_eq(leash_rl_train(&c, on_step, &r, NULL), 0, "%s K=%d: %s", v->name, K, leash_errmsg());
    cr_assert(r.w);
    return r;
}

/* The value model's weights of a PPO run (its checkpoint). */
static float *value_weights(const rl_scratch *s, const variant *v, const char *tag, int K, int separate, size_t *n) {
    char dir[200];
    snprintf(dir, sizeof dir, "%s/%s-%s-k%d-s%d/checkpoint/value", s->dir, v->name, tag, K, separate);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, dir), 0, "%s", leash_errmsg());
    *n = leash_gpt_num_params(m);
    float *w = malloc(*n * sizeof *w);
    memcpy(w, leash_gpt_params(m), *n * sizeof *w);
    leash_gpt_free(m);
    return w;
}

/* max |a - b| / max |b - w0|: the difference of two steps relative to the step's size. */
static double step_err(const float *a, const float *b, const float *w0, size_t n) {
    double d = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i] - w0[i]));
    }
    return scale > 0 ? d / scale : INFINITY;
}

static const variant VARIANTS[] = {
    {"ppo", LEASH_PPO, NULL, 0, 0, 0, 0, 0.0f, 0},
    {"grpo", LEASH_GRPO, NULL, 0, 0, 0, 0, 0.0f, 0},
    {"bnpo", LEASH_GRPO, "bnpo", 0, 0, 0, 0, 0.0f, 0},
    {"dapo", LEASH_GRPO, "dapo", 0, 0, 0, 0, 0.0f, 0},
    {"dr_grpo", LEASH_GRPO, "dr_grpo", 0, 0, 0, 0, 0.0f, 0},
    {"gspo", LEASH_GRPO, NULL, 0, 0, 0, 0, 0.0f, 0},
    {"masked", LEASH_GRPO, "bnpo", 0, 0, 0, 0, 0.0f, 0},
    {"exact-entropy", LEASH_GRPO, NULL, 1, 0, 0, 0, 0.05f, 0},
    {"lora-exact-bnpo", LEASH_GRPO, "bnpo", 1, 1, 0, 0, 0.0f, 0},
    {"lora-ppo", LEASH_PPO, NULL, 0, 1, 0, 0, 0.0f, 0},
    {"minibatches", LEASH_GRPO, "bnpo", 0, 0, 4, 2, 0.0f, 1e-2f}, // 4 optimiser steps, each accumulated
};
#define N_VARIANTS (sizeof VARIANTS / sizeof VARIANTS[0])

Test(grad_accum, one_step_equals_the_unaccumulated_step, .timeout = 600) {
    rl_scratch s;
    rl_scratch_make(&s, "accum");
    eos_heavy(s.dir);
    double worst = 0, worst_norm = 0, worst_value = 0;
    for (size_t k = 0; k < N_VARIANTS; k++) {
        const variant *v = &VARIANTS[k];
        // the weights before the step: the K = 1 run's step is measured from them
        seen zero = {0};
        {
            leash_gpt *m;
            if (v->lora) {
                cr_assert_eq(leash_gpt_load_lora(&m, s.dir, 2, 4.0f, 0.0f, NULL, 7), 0, "%s", leash_errmsg());
            } else {
                cr_assert_eq(leash_gpt_load(&m, s.dir), 0, "%s", leash_errmsg());
            }
            zero.n = leash_gpt_num_trainable(m);
            zero.w = malloc(zero.n * sizeof *zero.w);
            memcpy(zero.w, leash_gpt_trainable(m), zero.n * sizeof *zero.w);
            leash_gpt_free(m);
        }
        seen one = run(&s, v, 1, 1, 0, "acc");
        cr_assert_eq(one.n, zero.n);
        long distinct = 0;
        for (int L = 1; L <= 8; L++) distinct += one.lengths[L] > 0;
        cr_assert(distinct >= 3, "%s: the responses should have unequal lengths", v->name);
        size_t nv = 0;
        float *v1 = v->algo == LEASH_PPO ? value_weights(&s, v, "acc", 1, 0, &nv) : NULL, *v0 = NULL;
        if (v1) { // the value model before its step: a run whose value model barely moves (lr 1e-12)
            value_lr = 1e-12f;
            seen still = run(&s, v, 1, 1, 0, "v0");
            value_lr = 0.0f;
            free(still.w);
            v0 = value_weights(&s, v, "v0", 1, 0, &nv);
        }
        for (int K = 2; K <= 4; K++) {
            seen acc = run(&s, v, 1, K, 0, "acc");
            double e = step_err(acc.w, one.w, zero.w, one.n), en = fabs(acc.grad_norm - one.grad_norm) / one.grad_norm;
            cr_assert(e < 5e-6, "%s K=%d: the step differs from K=1's by %.3g of its size (grad_norm %.9g vs %.9g)", v->name, K,
                      e, acc.grad_norm, one.grad_norm);
            cr_assert(en < 5e-6, "%s K=%d: grad_norm %.9g, K=1 %.9g", v->name, K, acc.grad_norm, one.grad_norm);
            worst = fmax(worst, e), worst_norm = fmax(worst_norm, en);
            if (v1) { // the value model: its step against the K = 1 one's
                float *vk = value_weights(&s, v, "acc", K, 0, &nv);
                double ev = step_err(vk, v1, v0, nv);
                cr_assert(ev < 5e-6, "%s K=%d: the value model's step differs by %.3g of its size", v->name, K, ev);
                worst_value = fmax(worst_value, ev);
                free(vk);
            }
            free(acc.w);
        }
        free(v0), free(v1), free(one.w), free(zero.w);
    }
    printf("grad_accum: %zu loss variants, K = 2, 3, 4 against K = 1: the step agrees within %.3g of its size, grad_norm "
           "within %.3g relative, PPO's value model's step within %.3g of its size\n",
           N_VARIANTS, worst, worst_norm, worst_value);
    rl_scratch_drop(&s);
}

/* metrics.jsonl without its timings ("time/step_s", "time/rollout_s", ..., "tokens_per_s"), which vary between runs. */
static char *metrics_untimed(const rl_scratch *s, const char *name, const char *tag, int K, int separate) {
    char path[220];
    snprintf(path, sizeof path, "%s/%s-%s-k%d-s%d/metrics.jsonl", s->dir, name, tag, K, separate);
    char *t = read_text(path);
    cr_assert(t, "cannot read %s", path);
    const char *keys[] = {", \"time/", ", \"tokens_per_s\": "};
    for (size_t k = 0; k < 2; k++)
        for (char *p; (p = strstr(t, keys[k]));) {
            char *e = p + strlen(keys[k]);
            while (*e && *e != ',' && *e != '}') e++;
            memmove(p, e, strlen(e) + 1);
        }
    return t;
}

Test(grad_accum, the_updates_forward_scores_bit_identically, .timeout = 600) {
    rl_scratch s;
    rl_scratch_make(&s, "fused");
    eos_heavy(s.dir);
    static const struct {
        variant v;
        int K, checkpoint;
    } cases[] = {
        {{"ppo", LEASH_PPO, NULL, 0, 0, 0, 0, 0.0f, 0}, 1, 0},                 // one micro-batch: scored, then the advantages
        {{"grpo", LEASH_GRPO, NULL, 0, 0, 0, 0, 0.0f, 0}, 1, 0},
        {{"grpo-k3", LEASH_GRPO, "bnpo", 0, 0, 0, 0, 0.0f, 0}, 3, 0},          // each micro-batch scored before its loss
        {{"exact-entropy", LEASH_GRPO, NULL, 1, 0, 0, 0, 0.05f, 0}, 2, 0},     // the reference's logits from the scoring
        {{"lora-exact", LEASH_GRPO, "dr_grpo", 1, 1, 0, 0, 0.0f, 0}, 2, 0},   // LoRA: the reference's logits kept aside
        {{"lora-ppo", LEASH_PPO, NULL, 0, 1, 0, 0, 0.0f, 0}, 1, 0},
        {{"minibatches", LEASH_GRPO, NULL, 0, 0, 4, 1, 0.0f, 0}, 2, 0},        // not fused: two optimiser steps
        {{"ckpt-lora", LEASH_GRPO, NULL, 1, 1, 0, 0, 0.05f, 0}, 2, 1},    // the backward recomputes the scoring's forward
        {{"ckpt-ppo", LEASH_PPO, NULL, 0, 0, 0, 0, 0.0f, 0}, 1, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const variant *v = &cases[k].v;
        int K = cases[k].K;
        checkpoint = cases[k].checkpoint;
        seen fused = run(&s, v, 3, K, 0, "fz"), sep = run(&s, v, 3, K, 1, "fz");
        cr_assert_eq(fused.n, sep.n);
        cr_assert(!memcmp(fused.w, sep.w, fused.n * sizeof(float)), "%s K=%d: the weights differ", v->name, K);
        cr_assert(fused.first_dev == 0.0 && sep.first_dev == 0.0, "%s: first ratio deviates by %g / %g", v->name, fused.first_dev,
                  sep.first_dev);
        char *a = metrics_untimed(&s, v->name, "fz", K, 0), *b = metrics_untimed(&s, v->name, "fz", K, 1);
        cr_assert_str_eq(a, b, "%s K=%d: metrics.jsonl differs", v->name, K);
        if (v->algo == LEASH_PPO) {
            size_t n1, n2;
            float *w1 = value_weights(&s, v, "fz", K, 0, &n1), *w2 = value_weights(&s, v, "fz", K, 1, &n2);
            cr_assert(n1 == n2 && !memcmp(w1, w2, n1 * sizeof(float)), "%s: the value models differ", v->name);
            free(w1), free(w2);
        }
        free(a), free(b), free(fused.w), free(sep.w);
    }
    checkpoint = 0;
    printf("grad_accum: the update's forward as the scoring pass: 9 runs of 3 steps bit-identical to a separate pass "
           "(weights, value models, metrics), first ratio exactly 1\n");
    rl_scratch_drop(&s);
}

Test(grad_accum, bad_values_are_named) {
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = "/nonexistent", c.prompts = "/nonexistent", c.out_dir = "/tmp/leash-accum-bad", c.reward.kind = LEASH_REWARD_GOLD;
    c.grad_accum = -1;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "--grad-accum -1"), "%s", leash_errmsg());
}

/* A reference whose logits are NaN (every weight 3e38: its sums overflow): the scoring fails, in the update as in
 * the separate pass, and under skip_nonfinite the batch (not an update) is skipped with the same reason. */
Test(grad_accum, a_scoring_failure_in_the_update_skips_the_batch, .timeout = 120) {
    rl_scratch s;
    rl_scratch_make(&s, "fzfail");
    char nan_dir[128], cmd[512], why[2][600];
    snprintf(nan_dir, sizeof nan_dir, "%s/nan", s.dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/*.json %s/*.txt %s/", nan_dir, s.dir, s.dir, nan_dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, s.dir), 0, "%s", leash_errmsg());
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) leash_gpt_params(m)[i] = 3e38f;
    cr_assert_eq(leash_gpt_save(m, nan_dir), 0, "%s", leash_errmsg());
    leash_gpt_free(m);
    const variant v = {"nan", LEASH_GRPO, NULL, 0, 0, 0, 0, 0.0f, 0};
    for (int K = 1; K <= 2; K++) {
        for (int separate = 0; separate < 2; separate++) {
            char out[160];
            snprintf(out, sizeof out, "%s/nan-k%d-s%d", s.dir, K, separate);
            leash_rl_config c = config(&s, &v, 2, K, separate, out);
            c.ref_dir = nan_dir, c.skip_nonfinite = 1;
            leash_rl_progress fin;
            cr_assert_eq(leash_rl_train(&c, NULL, NULL, &fin), LEASH_ENUMERIC, "K=%d: %s", K, leash_errmsg());
            cr_assert_eq(fin.skipped, 2, "K=%d separate=%d: %ld skipped", K, separate, fin.skipped);
            snprintf(why[separate], sizeof why[separate], "%s", fin.skip_reason);
        }
        cr_assert(strstr(why[0], "step 2 was skipped: "), "K=%d: %s", K, why[0]);
        cr_assert_str_eq(why[0], why[1], "K=%d: the update's scoring says %s, the separate pass %s", K, why[0], why[1]);
    }
    printf("grad_accum: a NaN reference skips every batch, the same reason in the update's scoring and the separate pass\n");
    rl_scratch_drop(&s);
}
