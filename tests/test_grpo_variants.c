/* The GRPO family's options (TRL's names): RLOO's leave-one-out baseline, scale_rewards group | batch | none,
 * loss_type grpo | bnpo | dr_grpo, epsilon_high, mask_truncated_completions, importance_sampling_level
 * sequence (GSPO), the entropy bonus and the exact KL in the loss. Each against a hand computation or central
 * finite differences of the loss the update optimises (update_stats.loss_opt), with the worst difference
 * printed; and the CLI's names, refusals and --resume checks. The Bayesian table (tests/test_bayes.c) has
 * where each lands. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/rl_internal.h"
#include "leash/error.h"
#include "leash/rl.h"
#include "leash/rng.h"
#include "testutil.h"

/* Two groups of three: rewards and the advantages of each baseline and scaling, by hand. */
Test(grpo_variants, rloo_and_batch_scaling_advantages_by_hand) {
    rollout r;
    cr_assert_eq(rollout_alloc(&r, 6, 1, 2, 6), 0);
    for (int i = 0; i < 6 * r.T; i++) r.targets[i] = i % r.T == 0 ? 3 : -1;
    const double sc[6] = {1.0, 2.0, 6.0, 0.0, 0.0, 3.0};
    for (int b = 0; b < 6; b++) r.shaped[b] = sc[b];
    leash_grpo_config c = leash_rl_defaults(LEASH_GRPO).grpo;
    c.group = 3;
    double bm = 2.0, bsd = sqrt((1 + 0 + 16 + 4 + 4 + 1) / 5.0); // the batch: mean 2, sample std
    double worst = 0;
    for (int mode = 0; mode < 4; mode++) {
        c.baseline = mode == 0 || mode == 1 ? LEASH_BASELINE_LOO : LEASH_BASELINE_GROUP;
        c.scale_rewards = mode == 0 ? LEASH_SCALE_NONE : mode == 1 ? LEASH_SCALE_GROUP : mode == 2 ? LEASH_SCALE_BATCH : LEASH_SCALE_NONE;
        cr_assert_eq(grpo_advantages(&r, &c), 0);
        for (int b = 0; b < 6; b++) {
            int g0 = b / 3 * 3;
            double sum = sc[g0] + sc[g0 + 1] + sc[g0 + 2], m = sum / 3, s2 = 0;
            for (int k = 0; k < 3; k++) s2 += (sc[g0 + k] - m) * (sc[g0 + k] - m);
            double want = c.baseline == LEASH_BASELINE_LOO ? sc[b] - (sum - sc[b]) / 2 : sc[b] - m;
            if (mode == 1) want /= sqrt(s2 / 2) + 1e-4;
            if (mode == 2) want /= bsd + 1e-4;
            double d = fabs(r.adv[b * r.T] - want);
            worst = fmax(worst, d);
            cr_assert(d < 1e-6, "mode %d row %d: advantage %g, by hand %g", mode, b, r.adv[b * r.T], want);
        }
    }
    (void)bm;
    // RLOO's advantage is G / (G - 1) times the group mean's
    c.baseline = LEASH_BASELINE_LOO, c.scale_rewards = LEASH_SCALE_NONE;
    cr_assert_eq(grpo_advantages(&r, &c), 0);
    cr_assert(fabs(r.adv[0] - 1.5 * (1.0 - 3.0)) < 1e-6, "RLOO: %g", r.adv[0]);
    cr_log_info("advantages: worst |difference| %.3g over 4 modes", worst);
    rollout_free(&r);
}

/* A rollout of 4 rows (P = 2, M = 5) of response lengths 5, 2, 4, 1; rows 1 and 3 without EOS; random old,
 * reference and new log-probs, the new within +-0.15 of the old (no clip boundary within the FD step). */
enum { RB = 4, RP = 2, RM = 5 };
static void variant_rollout(rollout *r, float *newlp) {
    cr_assert_eq(rollout_alloc(r, RB, RP, RM, RB), 0);
    int T = r->T, lens[RB] = {5, 2, 4, 1};
    leash_rng rng;
    leash_rng_seed(&rng, 11, 0);
    for (int i = 0; i < RB * T; i++) r->targets[i] = -1, r->tokens[i] = 1, r->mask[i] = 1, r->adv[i] = 0;
    for (int b = 0; b < RB; b++) {
        r->resp_len[b] = lens[b], r->has_eos[b] = b % 2 == 0;
        double a = leash_rng_uniform(&rng) * 2 - 1;
        for (int j = 0; j < lens[b]; j++) {
            int t = b * T + RP + j - 1;
            r->targets[t] = 2;
            r->old_logp[t] = (float)(-0.5 - 2 * leash_rng_uniform(&rng));
            r->ref_logp[t] = (float)(r->old_logp[t] + 0.6 * (leash_rng_uniform(&rng) - 0.5));
            r->adv[t] = (float)a;
        }
    }
    for (int i = 0; i < RB * T; i++) newlp[i] = r->targets[i] >= 0 ? (float)(r->old_logp[i] + 0.3 * (leash_rng_uniform(&rng) - 0.5)) : 0.0f;
}

static double loss_at(const rollout *r, const leash_grpo_config *c, leash_kl_estimator est, double eps, const int *rows,
                      const float *newlp, float *dlogp) {
    update_stats st = {0};
    grpo_policy_loss(r, c, est, eps, 0.1, rows, RB, 0, RB, 13, newlp, dlogp, &st);
    return st.loss_opt;
}

/* d loss / d new log-prob of every token against central differences of the loss, for each variant (not k3+,
 * whose gradient is by design not that of its value). */
Test(grpo_variants, every_loss_gradient_matches_finite_differences) {
    rollout r;
    float newlp[RB * (RP + RM)], d[RB * (RP + RM)], scratch[RB * (RP + RM)];
    variant_rollout(&r, newlp);
    int rows[RB] = {0, 1, 2, 3}, T = r.T;
    rollout_gather(&r, rows, RB);
    struct {
        const char *name;
        leash_grpo_loss loss;
        int mask, seq;
        leash_kl_estimator est;
    } v[] = {{"grpo k3", LEASH_LOSS_GRPO, 0, 0, LEASH_KL_K3},      {"bnpo k2", LEASH_LOSS_BNPO, 0, 0, LEASH_KL_K2},
             {"dr_grpo k3", LEASH_LOSS_DR_GRPO, 0, 0, LEASH_KL_K3}, {"grpo masked", LEASH_LOSS_GRPO, 1, 0, LEASH_KL_K3},
             {"bnpo masked", LEASH_LOSS_BNPO, 1, 0, LEASH_KL_K2},   {"gspo grpo", LEASH_LOSS_GRPO, 0, 1, LEASH_KL_K3},
             {"gspo dr_grpo masked", LEASH_LOSS_DR_GRPO, 1, 1, LEASH_KL_K2}};
    double worst = 0;
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        leash_grpo_config c = leash_rl_defaults(LEASH_GRPO).grpo;
        c.loss = v[k].loss, c.mask_truncated = v[k].mask, c.is_level = v[k].seq ? LEASH_IS_SEQUENCE : LEASH_IS_TOKEN;
        loss_at(&r, &c, v[k].est, 0.2, rows, newlp, d);
        for (int i = 0; i < RB * T; i++) {
            if (r.targets[i] < 0) continue;
            const float h = 1e-3f, x = newlp[i];
            newlp[i] = x + h;
            double up = loss_at(&r, &c, v[k].est, 0.2, rows, newlp, scratch);
            newlp[i] = x - h;
            double dn = loss_at(&r, &c, v[k].est, 0.2, rows, newlp, scratch);
            newlp[i] = x;
            double fd = (up - dn) / ((double)(x + h) - (double)(x - h)), err = fabs(fd - d[i]);
            worst = fmax(worst, err);
            cr_assert(err < 2e-5 + 1e-3 * fabs(fd), "%s, token %d: d loss / d logp %.8g, finite differences %.8g", v[k].name, i, d[i], fd);
            if (v[k].mask && !r.has_eos[i / T]) cr_assert_eq(d[i], 0.0f, "%s: a truncated row's token %d has gradient %g", v[k].name, i, d[i]);
        }
    }
    cr_log_info("loss gradients: worst |d - fd| %.3g over %zu variants", worst, sizeof v / sizeof v[0]);
    rollout_free(&r);
}

/* The weights by hand at ratio 1 and beta 0 (the gradient is -A w): per sequence 1 / (len S), per token
 * 1 / (tokens), Dr. GRPO 1 / (S M); masking drops rows 1 and 3 but keeps them in S (TRL). */
Test(grpo_variants, loss_weights_by_hand) {
    rollout r;
    float newlp[RB * (RP + RM)], d[RB * (RP + RM)];
    variant_rollout(&r, newlp);
    int rows[RB] = {0, 1, 2, 3}, T = r.T, lens[RB] = {5, 2, 4, 1};
    rollout_gather(&r, rows, RB);
    for (int i = 0; i < RB * T; i++) newlp[i] = r.old_logp[i];
    for (int mode = 0; mode < 5; mode++) {
        leash_grpo_config c = leash_rl_defaults(LEASH_GRPO).grpo;
        c.loss = mode == 0 ? LEASH_LOSS_GRPO : mode == 1 || mode == 4 ? LEASH_LOSS_BNPO : LEASH_LOSS_DR_GRPO;
        c.mask_truncated = mode >= 3;
        update_stats st = {0};
        grpo_policy_loss(&r, &c, LEASH_KL_K3, 0.2, 0.0, rows, RB, 0, RB, 12, newlp, d, &st);
        for (int i = 0; i < RB * T; i++) {
            if (r.targets[i] < 0) continue;
            int b = i / T;
            double w = c.loss == LEASH_LOSS_GRPO ? 1.0 / (lens[b] * 4.0) : c.loss == LEASH_LOSS_BNPO ? 1.0 / (c.mask_truncated ? 9 : 12)
                                                                                                  : 1.0 / (4.0 * RM);
            if (c.mask_truncated && !r.has_eos[b]) w = 0;
            double want = -r.adv[i] * w;
            cr_assert(fabs(d[i] - want) < 1e-7, "mode %d token %d: %.9g, by hand %.9g", mode, i, d[i], want);
        }
    }
    rollout_free(&r);
}

/* DAPO's clip-higher: at ratio 1.25 with A > 0 the upper clip 1.2 stops the gradient; epsilon_high 0.28 lets
 * it through; below 1 - eps the lower clip is unchanged. */
Test(grpo_variants, epsilon_high_moves_only_the_upper_clip) {
    update_stats st = {0};
    double d;
    double lr = log(1.25);
    ppo_clipped_surrogate(1.0, lr, 0.0, 0.2, 0.2, &st, &d);
    cr_assert_eq(d, 0.0, "ratio 1.25, eps 0.2: clipped");
    ppo_clipped_surrogate(1.0, lr, 0.0, 0.2, 0.28, &st, &d);
    cr_assert(fabs(d + 1.25) < 1e-12, "ratio 1.25, eps_high 0.28: -A ratio, not %g", d);
    ppo_clipped_surrogate(-1.0, log(0.75), 0.0, 0.2, 0.28, &st, &d);
    cr_assert_eq(d, 0.0, "ratio 0.75 with A < 0 stays clipped below");
}

/* The exact KL and the entropy bonus through the logits: d loss / d logits against central differences of
 * the loss, V = 6, at temperature 0.7, for the per-sequence and Dr. GRPO weights. */
typedef struct {
    const rollout *r;
    const leash_grpo_config *c;
    const int *rows;
    const float *zref;
    float *dz;
} logits_ctx;

static double logits_loss_at(const logits_ctx *x, const float *z, int V) {
    update_stats st = {0};
    memset(x->dz, 0, sizeof(float) * RB * (RP + RM) * V);
    cr_assert_eq(grpo_logits_loss(x->r, x->c, LEASH_KL_EXACT, 0.3, 0.7f, x->rows, RB, 0, RB, 12, z, x->zref, V, x->dz, &st), 0,
                 "%s", leash_errmsg());
    return st.loss_opt;
}

Test(grpo_variants, exact_kl_and_entropy_gradients_match_finite_differences) {
    enum { V = 6, N = RB * (RP + RM) };
    rollout r;
    float newlp[N], z[N * V], zref[N * V], dz[N * V], g[N * V];
    variant_rollout(&r, newlp);
    int rows[RB] = {0, 1, 2, 3};
    rollout_gather(&r, rows, RB);
    leash_rng rng;
    leash_rng_seed(&rng, 5, 1);
    for (int i = 0; i < N * V; i++) z[i] = (float)(3 * leash_rng_uniform(&rng) - 1.5), zref[i] = (float)(3 * leash_rng_uniform(&rng) - 1.5);
    double worst = 0;
    for (int mode = 0; mode < 3; mode++) {
        leash_grpo_config c = leash_rl_defaults(LEASH_GRPO).grpo;
        c.loss = mode == 1 ? LEASH_LOSS_DR_GRPO : LEASH_LOSS_GRPO;
        c.entropy_coef = mode == 2 ? 0.4f : 0.0f;
        logits_ctx x = {&r, &c, rows, zref, dz};
        logits_loss_at(&x, z, V);
        memcpy(g, dz, sizeof g);
        for (int i = 0; i < N * V; i++) {
            if (r.targets[i / V] < 0) {
                cr_assert_eq(g[i], 0.0f, "no response token at %d: no gradient", i / V);
                continue;
            }
            const float h = 1e-2f, x0 = z[i];
            z[i] = x0 + h;
            double up = logits_loss_at(&x, z, V);
            z[i] = x0 - h;
            double dn = logits_loss_at(&x, z, V);
            z[i] = x0;
            double fd = (up - dn) / ((double)(x0 + h) - (double)(x0 - h)), err = fabs(fd - g[i]);
            worst = fmax(worst, err);
            cr_assert(err < 1e-5 + 1e-3 * fabs(fd), "mode %d, logit %d: gradient %.8g, finite differences %.8g", mode, i, g[i], fd);
        }
    }
    cr_log_info("exact KL / entropy logits gradients: worst |g - fd| %.3g", worst);
    rollout_free(&r);
}

/* The CLI: TRL's names are taken and a wrong one is refused naming the choices; PPO refuses GRPO's; leash rloo
 * is grpo with the leave-one-out baseline and no std (its checkpoint says so); --resume refuses a changed
 * --loss. */
Test(grpo_variants, cli_names_refusals_and_resume, .timeout = 120) {
    rl_scratch w;
    rl_scratch_make(&w, "grpov");
    char cmd[2048], out[4096];
    const char *base = "--gold-reward --steps 1 --batch 1 --group 2 --max-new 3 -q";
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --prompts %s --out %s %s --loss dr_gpro 2>&1", LEASH_BIN, w.dir, w.prompts, w.out, base);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--loss dr_gpro: expected one of grpo, bnpo, dapo, dr_grpo"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s ppo --policy %s --prompts %s --out %s --gold-reward --baseline loo 2>&1", LEASH_BIN, w.dir, w.prompts, w.out);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "baseline is a GRPO option"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --prompts %s --out %s %s --epsilon-high 0.1 2>&1", LEASH_BIN, w.dir, w.prompts, w.out, base);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "--epsilon-high 0.1: it must be >= --clip"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s rloo --policy %s --prompts %s --out %s %s --kl-estimator exact --loss dr_grpo --epsilon-high 0.28 "
                              "--mask-truncated-completions --importance-sampling-level sequence --entropy-coef 0.01 2>&1",
             LEASH_BIN, w.dir, w.prompts, w.out, base);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "grep -q '\"baseline\":.*\"loo\"' %s/checkpoint/state.json && grep -q '\"scale_rewards\":.*\"none\"' "
                              "%s/checkpoint/state.json && grep -q '\"kl_estimator\":.*\"exact\"' %s/checkpoint/state.json && "
                              "grep -q '\"kl_estimator\": \"exact\"' %s/metrics.jsonl",
             w.out, w.out, w.out, w.out);
    cr_assert_eq(system(cmd), 0, "the checkpoint and metrics of leash rloo name loo, none and exact");
    snprintf(cmd, sizeof cmd, "%s rloo --policy %s --prompts %s --out %s --gold-reward --steps 2 --batch 1 --group 2 --max-new 3 -q "
                              "--kl-estimator exact --loss grpo --epsilon-high 0.28 --mask-truncated-completions "
                              "--importance-sampling-level sequence --entropy-coef 0.01 --resume 2>&1",
             LEASH_BIN, w.dir, w.prompts, w.out);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "--loss \"dr_grpo\", this run asks for \"grpo\""), "%s", out);
    rl_scratch_drop(&w);
}

/* Adaptive beta on the loss path: with --kl-target GRPO's beta follows the controller, fed the KL the loss used
 * (here the exact KL) in the units asked for; each logged beta is recomputed from the previous step's logged KL:
 * beta' = beta (1 + clip(kl / target - 1, +-0.2) R / horizon), R = 6 responses a step. The reference is another
 * initialisation of the same shape (KL > 0 from step 1), and the target 1.1 x step 1's KL (measured by a first
 * run: the same seed gives the same first batch), so that the controller's error is not clipped there. */
static double first_kl(const rl_scratch *w, const char *ref, int per_token) {
    char cmd[2048], out[4096], path[256], line[16384];
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --ref %s --prompts %s --out %s --gold-reward --steps 1 --batch 2 --group 3 "
                              "--max-new 4 --beta 0.1 --kl-estimator exact --overwrite -q 2>&1",
             LEASH_BIN, w->dir, ref, w->prompts, w->out);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/metrics.jsonl", w->out);
    FILE *f = fopen(path, "r");
    cr_assert(f && fgets(line, sizeof line, f));
    fclose(f);
    cJSON *o = cJSON_Parse(line);
    double kl = cJSON_GetObjectItem(o, per_token ? "objective/kl_per_token" : "objective/kl")->valuedouble;
    cJSON_Delete(o);
    return kl;
}

Test(grpo_variants, adaptive_beta_follows_the_kl_in_the_loss, .timeout = 120) {
    rl_scratch w;
    rl_scratch_make(&w, "grpoab");
    char cmd[2048], out[4096], path[256], ref[128];
    snprintf(ref, sizeof ref, "%s/ref", w.dir);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, w.dir), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 2);
    cr_assert_eq(leash_gpt_save(m, ref), 0, "%s", leash_errmsg());
    leash_gpt_free(m);
    for (int per_token = 0; per_token < 2; per_token++) {
        double target = 1.1 * first_kl(&w, ref, per_token);
        cr_assert(target > 0, "the two initialisations have KL 0");
        snprintf(cmd, sizeof cmd, "%s grpo --policy %s --ref %s --prompts %s --out %s --gold-reward --steps 4 --batch 2 --group 3 "
                                  "--max-new 4 --beta 0.1 --kl-estimator exact --kl-target %.17g --kl-horizon 20 %s --overwrite -q 2>&1",
                 LEASH_BIN, w.dir, ref, w.prompts, w.out, target, per_token ? "--kl-per-token" : "");
        cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
        snprintf(path, sizeof path, "%s/metrics.jsonl", w.out);
        FILE *f = fopen(path, "r");
        cr_assert(f);
        char line[16384];
        double beta = 0.1, worst = 0;
        int steps = 0, unclipped = 0;
        while (fgets(line, sizeof line, f)) {
            cJSON *o = cJSON_Parse(line);
            cr_assert(o, "a metrics line is not JSON");
            double b = cJSON_GetObjectItem(o, "beta")->valuedouble;
            double kl = cJSON_GetObjectItem(o, per_token ? "objective/kl_per_token" : "objective/kl")->valuedouble;
            cr_assert_str_eq(cJSON_GetObjectItem(o, "kl_target_units")->valuestring, per_token ? "nats/token" : "nats/seq");
            cr_assert_str_eq(cJSON_GetObjectItem(o, "kl_estimator")->valuestring, "exact");
            worst = fmax(worst, fabs(b - beta) / beta);
            cr_assert(fabs(b - beta) <= 1e-4 * beta, "step %d: beta %.8g, recomputed %.8g", steps + 1, b, beta);
            double e = kl / target - 1;
            unclipped += fabs(e) < 0.2;
            beta = b * (1 + fmin(0.2, fmax(-0.2, e)) * 6 / 20.0);
            steps++;
            cJSON_Delete(o);
        }
        fclose(f);
        cr_assert_eq(steps, 4);
        cr_assert(unclipped >= 1, "the controller's error was clipped at every step");
        cr_log_info("adaptive beta (%s): worst relative difference %.3g over 4 steps, %d unclipped", per_token ? "per token" : "per sequence",
                    worst, unclipped);
    }
    rl_scratch_drop(&w);
}

/* The exact KL in the loss on two-token responses is the gradient of the *sequence* KL: enumerating every
 * response of a 3-symbol vocabulary, the expectation under pi of the trainer's gradient (grpo_policy_loss and
 * grpo_logits_loss on each response, Dr. GRPO's weights, advantage 0, beta 1) equals central differences of
 * J(z) = w (KL(pi(.|root) || pi_ref) + sum_a pi(a) KL(pi(.|a) || pi_ref(.|a))), w = 1 / (1 x M). Without the
 * score-function part (the KL still to come on each earlier token's log-prob) the root's gradient misses
 * sum_a KL_a grad pi(a) and this fails. */
enum { OV = 3, OS = OV + 1 }; // states: the root, then one per first token

static double lsm(const double *z, int v) { // log softmax of z (OV) at v
    double m = fmax(z[0], fmax(z[1], z[2])), s = 0;
    for (int i = 0; i < OV; i++) s += exp(z[i] - m);
    return z[v] - m - log(s);
}

static double kl_row(const double *z, const double *q) {
    double k = 0;
    for (int v = 0; v < OV; v++) k += exp(lsm(z, v)) * (lsm(z, v) - lsm(q, v));
    return k;
}

static double sequence_kl(const double *z, const double *q) { // z, q: (OS, OV)
    double j = kl_row(z, q);
    for (int a = 0; a < OV; a++) j += exp(lsm(z, a)) * kl_row(z + (1 + a) * OV, q + (1 + a) * OV);
    return j / 2; // Dr. GRPO's w = 1 / (sequences x M), one sequence, M = 2
}

Test(grpo_variants, exact_kl_in_the_loss_is_the_sequence_kl_gradient) {
    double z[OS * OV], q[OS * OV], want[OS * OV], got[OS * OV] = {0};
    leash_rng rng;
    leash_rng_seed(&rng, 21, 0);
    for (int i = 0; i < OS * OV; i++) z[i] = 2 * leash_rng_uniform(&rng) - 1, q[i] = 2 * leash_rng_uniform(&rng) - 1;
    for (int i = 0; i < OS * OV; i++) {
        double x = z[i], h = 1e-5;
        z[i] = x + h;
        double up = sequence_kl(z, q);
        z[i] = x - h;
        want[i] = (up - sequence_kl(z, q)) / (2 * h);
        z[i] = x;
    }
    rollout r;
    cr_assert_eq(rollout_alloc(&r, 1, 1, 2, 1), 0);
    int T = r.T, rows[1] = {0};
    leash_grpo_config c = leash_rl_defaults(LEASH_GRPO).grpo;
    c.loss = LEASH_LOSS_DR_GRPO;
    float newlp[3], dlogp[3], zf[3 * OV], qf[3 * OV], dz[3 * OV];
    for (int y1 = 0; y1 < OV; y1++)
        for (int y2 = 0; y2 < OV; y2++) {
            const double *zs[2] = {z, z + (1 + y1) * OV}, *qs[2] = {q, q + (1 + y1) * OV};
            int y[2] = {y1, y2};
            double p = exp(lsm(zs[0], y1) + lsm(zs[1], y2));
            r.resp_len[0] = 2, r.has_eos[0] = 1;
            for (int t = 0; t < T; t++) {
                r.tokens[t] = 0, r.mask[t] = 1, r.targets[t] = t < 2 ? y[t] : -1, r.adv[t] = 0;
                r.kl_exact[t] = 0, newlp[t] = 0;
                for (int v = 0; v < OV; v++) zf[t * OV + v] = t < 2 ? (float)zs[t][v] : 0, qf[t * OV + v] = t < 2 ? (float)qs[t][v] : 0;
                if (t < 2) {
                    newlp[t] = r.old_logp[t] = (float)lsm(zs[t], y[t]), r.ref_logp[t] = (float)lsm(qs[t], y[t]);
                    r.kl_exact[t] = (float)kl_row(zs[t], qs[t]);
                }
            }
            rollout_gather(&r, rows, 1);
            update_stats st = {0};
            grpo_policy_loss(&r, &c, LEASH_KL_EXACT, 0.2, 1.0, rows, 1, 0, 1, 2, newlp, dlogp, &st);
            memset(dz, 0, sizeof dz);
            cr_assert_eq(grpo_logits_loss(&r, &c, LEASH_KL_EXACT, 1.0, 1.0f, rows, 1, 0, 1, 2, zf, qf, OV, dz, &st), 0, "%s", leash_errmsg());
            for (int t = 0; t < 2; t++) {
                double *g = got + (t ? (1 + y1) * OV : 0);
                for (int v = 0; v < OV; v++) // d log pi(y_t) / d z_v = onehot - pi
                    g[v] += p * (dz[t * OV + v] + dlogp[t] * ((v == y[t]) - exp(lsm(zs[t], v))));
            }
        }
    double worst = 0;
    for (int i = 0; i < OS * OV; i++) {
        worst = fmax(worst, fabs(got[i] - want[i]));
        cr_assert(fabs(got[i] - want[i]) < 1e-6, "logit %d (state %d): expected trainer gradient %.9f, the sequence KL's %.9f", i,
                  i / OV, got[i], want[i]);
    }
    cr_log_info("exact KL in the loss, two-token responses: worst |E[gradient] - grad KL(sequence)| %.3g", worst);
    rollout_free(&r);
}
