/* The RL loop shared by PPO and GRPO: loading the policy, its frozen reference and the prompts; each step
 * a batch collected by rollout.c, the updates (gather, forward, backward, AdamW: once for both, with
 * ppo.c's or grpo.c's loss), the KL leash's beta, the step's metrics (metrics.c) and the reward-hacking
 * alarm; checkpoints through rl_checkpoint.c. See include/leash/rl.h and src/rl_internal.h.
 * Dimensions: R rows (sequences) per step, P longest prompt, M new tokens, T = P + M, V vocabulary. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/chat.h"
#include "leash/checkpoint.h"
#include "leash/data.h"
#include "leash/dist.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/klwatch.h"
#include "leash/ops.h"
#include "leash/rng.h"
#include "leash/stop.h"
#include "rl_internal.h"

#define ALARM_WINDOW 10

leash_rl_config leash_rl_defaults(leash_rl_algo algo) {
    leash_rl_config c = {0};
    c.algo = algo;
    c.steps = 100;
    c.batch = algo == LEASH_GRPO ? 8 : 64;
    c.grpo.group = 8;
    c.max_new = 24;
    c.temperature = 1.0f;
    c.top_p = 1.0f;
    c.ref_sync_alpha = 0.6f; // TRL's ref_model_mixup_alpha (used once ref_sync_every > 0)
    if (algo == LEASH_GRPO) leash_beta_fixed(&c.beta, 0.04);
    else leash_beta_adaptive(&c.beta, LEASH_BETA_DEFAULT_INIT, LEASH_BETA_DEFAULT_TARGET, LEASH_BETA_DEFAULT_HORIZON);
    c.kl_estimator = algo == LEASH_GRPO ? LEASH_KL_K3 : LEASH_KL_K1;
    c.normalize_scores = 1;
    c.optim = leash_adamw_defaults();
    c.optim.lr = 3e-5f, c.optim.weight_decay = 0.0f;
    c.ppo.value_optim = c.optim;
    c.ppo.value_optim.lr = 1e-4f;
    c.epochs = algo == LEASH_GRPO ? 1 : 4;
    c.minibatch = 0; // 0: the whole batch
    c.clip_eps = 0.2f, c.ppo.value_clip = 0.2f, c.ppo.vf_coef = 0.1f, c.ppo.gamma = 1.0f, c.ppo.lam = 0.95f;
    c.grpo.scale_rewards = LEASH_SCALE_GROUP;
    c.sample_every = 10;
    c.reward.timeout_s = 30.0;
    return c;
}

static int check(const leash_rl_config *c) {
    if (!c->policy_dir || !c->prompts || !c->out_dir) return leash_fail(LEASH_EINVAL, "--policy, --prompts and --out are required");
    const leash_reward_source *w = &c->reward;
    if (w->kind == LEASH_REWARD_NONE)
        return leash_fail(LEASH_EINVAL, "give a reward: --reward DIR, --reward-cmd CMD, --gold-reward, or a scoring function");
    if ((w->kind == LEASH_REWARD_MODEL && !w->dir) || (w->kind == LEASH_REWARD_COMMAND && !w->cmd) ||
        (w->kind == LEASH_REWARD_FUNCTION && !w->fn) || (w->kind == LEASH_REWARD_BATCH && !w->batch_fn) ||
        w->kind > LEASH_REWARD_BATCH)
        return leash_fail(LEASH_EINVAL, "reward kind %d: its directory, command or function is missing", (int)w->kind);
    if (w->kind == LEASH_REWARD_COMMAND && !(w->timeout_s > 0))
        return leash_fail(LEASH_EINVAL, "--reward-timeout %g; it must be > 0 seconds", w->timeout_s);
    if (c->steps < 1 || c->batch < 1) return leash_fail(LEASH_EINVAL, "--steps %d, --batch %d: both must be >= 1", c->steps, c->batch);
    if (c->algo == LEASH_GRPO && c->grpo.group < 2) return leash_fail(LEASH_EINVAL, "--group %d: GRPO needs >= 2 responses per prompt", c->grpo.group);
    if (c->max_new < 1) return leash_fail(LEASH_EINVAL, "--max-new %d; it must be >= 1", c->max_new);
    if (!(c->temperature > 0)) return leash_fail(LEASH_EINVAL, "--temperature %g; it must be > 0", (double)c->temperature);
    if (!(c->clip_eps > 0 && c->clip_eps < 1)) return leash_fail(LEASH_EINVAL, "--clip %g; it must be in (0, 1)", (double)c->clip_eps);
    if (c->epochs < 1) return leash_fail(LEASH_EINVAL, "--epochs %d; it must be >= 1", c->epochs);
    if (c->grad_accum < 0 || c->grad_accum > 1 << 16)
        return leash_fail(LEASH_EINVAL, "--grad-accum %d; it must be in [1, 65536] (0 or 1: off)", c->grad_accum);
    if (c->algo == LEASH_GRPO && (c->kl_estimator == LEASH_KL_K1 || c->kl_estimator == LEASH_KL_ABS))
        return leash_fail(LEASH_EINVAL, "GRPO puts the KL inside the loss: use --kl-estimator k3 (the paper), k2 (whose "
                                        "expected gradient is exactly that of KL(pi || pi_ref)), k3+ (k3's value, k2's "
                                        "gradient) or exact (the full-vocabulary KL and its gradient); k1's expected "
                                        "gradient is zero");
    if (c->algo == LEASH_GRPO && grpo_config_check(&c->grpo, c->clip_eps)) return LEASH_EINVAL; // its message says why
    if (!(c->beta.beta >= 0) || !isfinite(c->beta.beta)) return leash_fail(LEASH_EINVAL, "--beta %g; it must be finite and >= 0", c->beta.beta);
    if (!(c->ppo.gamma >= 0 && c->ppo.gamma <= 1) || !(c->ppo.lam >= 0 && c->ppo.lam <= 1))
        return leash_fail(LEASH_EINVAL, "--gamma %g, --lambda %g: both must be in [0, 1]", (double)c->ppo.gamma, (double)c->ppo.lam);
    if (c->score_clip < 0 || c->length_penalty < 0) return leash_fail(LEASH_EINVAL, "--score-clip and --length-penalty must be >= 0");
    if (c->lora_rank < 0 || !(c->lora_alpha >= 0) || !isfinite(c->lora_alpha) || !(c->lora_dropout >= 0 && c->lora_dropout < 1))
        return leash_fail(LEASH_EINVAL, "--lora-r %d, --lora-alpha %g, --lora-dropout %g: r >= 0 (0: off), alpha >= 0 (0: 2r), "
                                        "0 <= dropout < 1",
                          c->lora_rank, (double)c->lora_alpha, (double)c->lora_dropout);
    if (c->ref_sync_every && ref_sync_check(c)) return LEASH_EINVAL; // its message says why
    if (c->top_k < 0 || !(c->top_p > 0.0f && c->top_p <= 1.0f))
        return leash_fail(LEASH_EINVAL, "--top-k %d, --top-p %g: top-k >= 0 (0: off), top-p in (0, 1] (1: off)", c->top_k, (double)c->top_p);
    if (!(c->tis_cap >= 0) || !isfinite(c->tis_cap) || c->tis_mode < LEASH_TIS_TOKEN_TRUNCATE || c->tis_mode > LEASH_TIS_SEQUENCE_MASK)
        return leash_fail(LEASH_EINVAL, "--tis-cap %g, --tis-mode %d: the cap must be finite and >= 0 (0: off), the mode one of "
                                        "TRL's four", (double)c->tis_cap, (int)c->tis_mode);
    return leash_adamw_config_check(&c->optim);
}

static void free_rl(rl_run *s) {
    leash_gpt_free(s->policy), leash_gpt_free(s->ref), leash_gpt_free(s->rm), leash_gpt_free(s->value);
    free(s->ref_logits);
    free(s->text_ids);
    leash_tokenizer_free(s->tok), leash_tokenizer_free(s->rm_tok);
    leash_adamw_free(&s->popt), leash_adamw_free(&s->vopt);
    for (int i = 0; s->pids && i < s->prompts.n; i++) free(s->pids[i]);
    free(s->pids), free(s->plen), free(s->own), free(s->run_len);
    leash_table_free(&s->prompts);
    rollout_free(&s->r);
    scorers_stop(&s->scorers);
}


/* The rows of a step this rank owns: in every minibatch chunk [k0, k0 + nb) of the first epoch, the part
 * leash_dist_split gives it; and that part's micro-batches (--grad-accum), the runs it scores, so that it
 * scores its rows in exactly the shapes its first update will use. */
static int own_rows(rl_run *s) {
    int rank = leash_dist_rank(), N = leash_dist_size(), n = 0;
    s->n_runs = 0;
    if (!(s->own = malloc((size_t)s->R * sizeof *s->own)) || !(s->run_len = malloc((size_t)s->R * sizeof *s->run_len)))
        return leash_fail(LEASH_ENOMEM, "out of memory");
    for (int k0 = 0; k0 < s->R; k0 += s->mb) {
        int nb = s->R - k0 < s->mb ? s->R - k0 : s->mb, lo, hi;
        leash_dist_split(nb, rank, N, &lo, &hi);
        for (int b = k0 + lo; b < k0 + hi; b++) s->own[n++] = b;
        for (int j = 0, a, z; j < s->accum; j++) {
            leash_dist_split(hi - lo, j, s->accum, &a, &z);
            if (z > a) s->run_len[s->n_runs++] = z - a;
        }
    }
    s->n_own = n;
    return LEASH_OK;
}


/* The policy's log-probs of the gathered micro-batch (n >= 1 rows) at the rollout temperature, into r->mb_buf. */
static int policy_logprobs(rollout *r, const leash_rl_config *c, leash_gpt *policy, int n) {
    int rc = leash_gpt_forward(policy, r->mb_tokens, r->mb_mask, n, r->T);
    long outside = 0; // top-k / top-p: the distribution the sampler drew from, as the rollout's scoring had it
    if (!rc) rc = rollout_truncate(policy, r->mb_targets, n, r->T, c, &outside);
    // GRPO: the policy's entropy too (TRL's "entropy"); it does not change the log-probs
    return rc ? rc : leash_gpt_token_logprobs(policy, r->mb_targets, c->temperature, r->mb_buf, c->algo == LEASH_GRPO ? r->mb_ent : NULL);
}

/* The reference's logits (n, T, V) of the gathered minibatch part, at *z: the frozen reference's forward, or
 * with LoRA the policy's with its adapters off, copied to s->ref_logits before the policy's own forward. */
static int reference_logits(rl_run *s, int n, const float **z) {
    rollout *r = &s->r;
    if (s->ref) {
        int rc = leash_gpt_forward(s->ref, r->mb_tokens, r->mb_mask, n, r->T);
        *z = leash_gpt_logits(s->ref);
        return rc;
    }
    leash_gpt_set_adapters(s->policy, 0);
    int rc = leash_gpt_forward(s->policy, r->mb_tokens, r->mb_mask, n, r->T);
    leash_gpt_set_adapters(s->policy, 1);
    if (!rc) memcpy(s->ref_logits, leash_gpt_logits(s->policy), (size_t)n * r->T * leash_gpt_cfg(s->policy)->vocab_size * sizeof(float));
    *z = s->ref_logits;
    return rc;
}

/* Sums the gradient over the ranks (one call over the whole gradient block) and steps the model; norm (may be
 * NULL) gets the gradient norm before clipping, lr the learning rate used. */
static int step_summed(leash_gpt *m, leash_adamw *opt, const char *what, double *norm, double *lr) {
    int rc = leash_dist_sum_f32(leash_gpt_grads(m), leash_gpt_num_trainable(m), what);
    return rc ? rc : leash_adamw_step(opt, m, norm, lr);
}

/* The batch's advantages with this step's beta, weighted by truncated importance sampling when asked. */
static int advantages(rl_run *s, const leash_rl_config *c, double beta, tis_stats *tis) {
    int rc = c->algo == LEASH_PPO ? ppo_advantages(&s->r, &c->ppo, beta) : grpo_advantages(&s->r, &c->grpo);
    if (!rc && c->tis_cap > 0) offpolicy_tis(&s->r, c->tis_cap, c->tis_mode, tis); // truncated IS: the advantages weighted
    return rc;
}

/* The update's forward as the scoring pass (fused_scoring): what the update needs to finish the collection.
 * late: the advantages need the scores (PPO's KL in the reward, truncated IS's weights), so the one micro-batch
 * is scored, the rollout finished and the advantages computed before its loss; otherwise each micro-batch is
 * scored just before its loss and the rollout finished after the last. failed: the error came from the
 * scoring, and the batch is skipped as a failed collection is. */
typedef struct {
    int step, late, failed;
    double beta, *gap, *phase;
    tis_stats *tis;
} fused_pass;

/* Whether the update's forward serves as the scoring pass: one epoch of one minibatch, whose micro-batches add
 * up to one optimiser step, so every forward of the update runs the policy that sampled; with one micro-batch
 * per rank (late), or GRPO without truncated IS in one process (the advantages need no score, and a non-finite
 * KL is found before any loss, in the order the separate pass finds it). */
static int fused_scoring(const rl_run *s, const leash_rl_config *c) {
    if (c->separate_scoring || c->epochs != 1 || s->mb != s->R) return 0;
    return s->accum == 1 || (c->algo == LEASH_GRPO && c->tis_cap == 0 && leash_dist_size() == 1);
}

/* Fused: scores the micro-batch rows[0..n) (n = 0: none of this rank's) as the separate pass would, and after the
 * last one when late, finishes the rollout and computes the advantages. */
static int fused_score(rl_run *s, const leash_rl_config *c, const int *rows, int n, int last, fused_pass *f) {
    double t0 = leash_now_s();
    int rc = n ? rollout_score_run(s, c, rows, n) : LEASH_OK;
    if (!rc && n && !f->late) rc = rollout_kl_rows(&s->r, c, f->step, rows[0], n); // before this part's loss
    if (!rc && f->late && last) rc = rollout_score_finish(s, c, f->step, f->gap);
    f->failed = rc != LEASH_OK;
    f->phase[1] += leash_now_s() - t0;
    return !rc && f->late && last ? advantages(s, c, f->beta, f->tis) : rc;
}

/* The policy's part of an update on the micro-batch rows[a..b) of the minibatch rows[0..n) (ntok: the
 * minibatch's response tokens, every loss's denominators the minibatch's): the log-probs (fused: the scoring
 * run's, whose forward is still in the policy, and its reference's logits), the loss, its backward, whose
 * gradients add to the micro-batches' before. */
static int policy_part(rl_run *s, const leash_rl_config *c, double beta, const int *rows, int n, int a, int b, long ntok,
                       int fused, update_stats *st) {
    rollout *r = &s->r;
    int T = r->T, nl = b - a, rc, exact = c->algo == LEASH_GRPO && c->kl_estimator == LEASH_KL_EXACT;
    const float *zref = NULL; // GRPO with the exact KL in the loss: the reference's logits of this part
    if (fused) {
        memcpy(r->mb_buf, r->old_logp + (size_t)rows[a] * T, (size_t)nl * T * sizeof(float));
        if (c->algo == LEASH_GRPO) memcpy(r->mb_ent, r->entropy + (size_t)rows[a] * T, (size_t)nl * T * sizeof(float));
        if (exact) zref = s->ref ? leash_gpt_logits(s->ref) : s->ref_logits;
    } else {
        rollout_gather(r, rows + a, nl);
        if (exact && (rc = reference_logits(s, nl, &zref))) return rc;
        if ((rc = policy_logprobs(r, c, s->policy, nl))) return rc;
    }
    offpolicy_is_ratio(r, rows + a, nl, r->mb_buf, st); // policy/is_ratio_*: the staleness of this update
    if (c->algo == LEASH_GRPO) // this part's entropy over the minibatch's tokens (TRL's "entropy")
        for (long i = 0; i < (long)nl * T; i++)
            if (r->mb_targets[i] >= 0) st->ent_mean += (double)r->mb_ent[i] / ntok;
    if (c->algo == LEASH_PPO) ppo_policy_loss(r, rows + a, nl, ntok, c->clip_eps, r->mb_buf, r->mb_buf2, st);
    else grpo_policy_loss(r, &c->grpo, c->kl_estimator, c->clip_eps, beta, rows, n, a, b, ntok, r->mb_buf, r->mb_buf2, st);
    if (c->algo == LEASH_GRPO &&
        (rc = grpo_logits_loss(r, &c->grpo, c->kl_estimator, beta, c->temperature, rows, n, a, b, ntok, leash_gpt_logits(s->policy),
                               zref, leash_gpt_cfg(s->policy)->vocab_size, leash_gpt_dlogits(s->policy), st)))
        return rc;
    if ((rc = leash_gpt_token_logprobs_backward(s->policy, r->mb_targets, c->temperature, r->mb_buf2))) return rc;
    return leash_gpt_backward(s->policy);
}

/* PPO's value model on the micro-batch rows[0..nl) of a minibatch of ntok response tokens: forward, the clipped
 * value loss, backward (the gradients add up). */
static int value_part(rl_run *s, const leash_rl_config *c, const int *rows, int nl, long ntok, update_stats *st) {
    rollout *r = &s->r;
    rollout_gather(r, rows, nl);
    int rc = leash_gpt_forward(s->value, r->mb_tokens, r->mb_mask, nl, r->T);
    if (rc) return rc;
    ppo_value_loss(r, rows, nl, ntok, c->ppo.value_clip, c->ppo.vf_coef, leash_gpt_values(s->value), leash_gpt_dvalues(s->value), st);
    // the value model predicts no tokens: its LM head gets no gradient (dlogits stays 0)
    return leash_gpt_backward(s->value);
}

/* One update over the minibatch rows[0..n) of the rollout. Every rank knows the whole minibatch and computes
 * the part leash_dist_split gives it, in s->accum micro-batches (--grad-accum) whose gradients add up; the
 * losses are normalised by the whole minibatch's token and sequence counts, so the sum over the micro-batches
 * and the ranks is the minibatch's gradient. Policy: forward, the algorithm's loss (d loss / d log-prob),
 * backward, then one sum over the ranks and one AdamW step; PPO's value model likewise with its clipped value
 * loss. f (not NULL): the update's forwards are the step's scoring pass (fused_pass). */
static int update(rl_run *s, const leash_rl_config *c, double beta, const int *rows, int n, fused_pass *f, update_stats *st) {
    int rc = LEASH_OK, lo, hi, K = s->accum;
    long ntok = minibatch_tokens(&s->r, rows, n, NULL);
    if (!ntok && !f) return LEASH_OK;
    leash_dist_split(n, leash_dist_rank(), leash_dist_size(), &lo, &hi);
    leash_gpt_zero_grad(s->policy);
    for (int j = 0, a, b; j < K && !rc; j++) {
        leash_dist_split(hi - lo, j, K, &a, &b);
        a += lo, b += lo;
        if (f && (rc = fused_score(s, c, rows + a, b - a, j == K - 1, f))) return rc;
        if (ntok && b > a) rc = policy_part(s, c, beta, rows, n, a, b, ntok, f != NULL, st);
    }
    if (!rc && f && !f->late) {
        double t0 = leash_now_s();
        f->failed = (rc = rollout_score_finish(s, c, f->step, f->gap)) != LEASH_OK;
        f->phase[1] += leash_now_s() - t0;
    }
    if (rc || !ntok) return rc;
    double norm = 0.0, lr = 0.0;
    if ((rc = step_summed(s->policy, &s->popt, "policy gradients", &norm, &lr))) return rc;
    st->grad_norm_sum += norm, st->lr = lr;
    if (s->value) {
        leash_gpt_zero_grad(s->value);
        for (int j = 0, a, b; j < K && !rc; j++) {
            leash_dist_split(hi - lo, j, K, &a, &b);
            if (b > a) rc = value_part(s, c, rows + lo + a, b - a, ntok, st);
        }
        if (rc || (rc = step_summed(s->value, &s->vopt, "value gradients", NULL, NULL))) return rc;
    }
    st->updates++;
    return LEASH_OK;
}

/* A step's updates: c->epochs passes over the batch in minibatches (later epochs shuffled), then the
 * statistics summed over the ranks and the proof that their weights are still the same. A non-finite
 * gradient under skip_nonfinite drops that update, counts it in *skipped and says why in why[320]. */
static int update_epochs(rl_run *s, const leash_rl_config *c, int step, double beta, int *order, fused_pass *f, update_stats *st,
                         long *skipped, char *why) {
    int R = s->R, rc = LEASH_OK;
    *st = (update_stats){.is_min = INFINITY};
    for (int e = 0; e < c->epochs && !rc; e++) {
        for (int i = 0; i < R; i++) order[i] = i;
        if (e > 0) { // later epochs shuffle; the first keeps the order the old log-probs were computed in
            leash_rng shuf;
            leash_rng_seed(&shuf, c->seed, UINT64_C(0x5300000000) + (uint64_t)step * 1000 + e);
            for (int i = R - 1; i > 0; i--) {
                int j = (int)(leash_rng_uniform(&shuf) * (i + 1)), x = order[i];
                order[i] = order[j], order[j] = x;
            }
        }
        for (int k0 = 0; k0 < R && !rc; k0 += s->mb) {
            rc = update(s, c, beta, order + k0, R - k0 < s->mb ? R - k0 : s->mb, f, st);
            if (rc && f && f->failed) return rc; // the scoring failed: the batch is skipped, not this update
            if (rc == LEASH_ENUMERIC && c->skip_nonfinite) { // a non-finite gradient: this update is dropped
                (*skipped)++, rc = LEASH_OK;
                snprintf(why, 320, "an update of step %d was skipped: %.250s", step + 1, leash_errmsg());
            }
        }
    }
    if (rc) return rc;
    double sums[14] = {st->policy_loss, st->value_loss, st->clipfrac, st->approxkl, st->ratio, (double)st->tokens,
                       (double)st->kl_clamped, (double)st->ratio_clamped, st->kl_mean, st->ent_mean, st->clip_low,
                       st->clip_high, st->clip_region, st->loss_opt};
    if ((rc = leash_dist_sum_f64(sums, 14, "update statistics")) || (rc = leash_dist_max_f64(&st->first_ratio_dev, 1, "first ratio")))
        return rc;
    double is_sums[2] = {st->is_sum, st->is_n}, is_ext[2] = {st->is_max, -st->is_min};
    if ((rc = leash_dist_sum_f64(is_sums, 2, "importance ratios")) || (rc = leash_dist_max_f64(is_ext, 2, "importance ratio range")))
        return rc;
    st->is_sum = is_sums[0], st->is_n = is_sums[1], st->is_max = is_ext[0], st->is_min = -is_ext[1];
    st->policy_loss = sums[0], st->value_loss = sums[1], st->clipfrac = sums[2], st->approxkl = sums[3], st->ratio = sums[4];
    st->tokens = (long)sums[5], st->kl_clamped = (long)sums[6], st->ratio_clamped = (long)sums[7];
    st->kl_mean = sums[8], st->ent_mean = sums[9], st->clip_low = sums[10], st->clip_high = sums[11], st->clip_region = sums[12];
    st->loss_opt = sums[13];
    if (leash_dist_size() == 1) return LEASH_OK;
    rc = leash_dist_check_same(leash_gpt_trainable(s->policy), leash_gpt_num_trainable(s->policy) * sizeof(float), "policy weights", NULL);
    if (!rc && s->value)
        rc = leash_dist_check_same(leash_gpt_trainable(s->value), leash_gpt_num_trainable(s->value) * sizeof(float), "value weights", NULL);
    return rc;
}

/* A step's batch and its updates: collected (scored in the update when fused_scoring: one forward less,
 * bit-identical), the advantages with this step's beta, the updates. *batch_failed: the error came from the
 * collection or its scoring, which skips the batch, not an update, under skip_nonfinite. phase[3]: the updates'
 * seconds, less the scoring done in them. */
static int collect_and_update(rl_run *s, const leash_rl_config *c, int step, int *order, update_stats *st, tis_stats *tis,
                              double *gap, double *phase, long *skipped, char *why, int *batch_failed) {
    double beta = c->beta.beta;
    int fused = fused_scoring(s, c);
    fused_pass f = {.step = step, .late = s->accum == 1, .beta = beta, .gap = gap, .phase = phase, .tis = tis};
    int rc = rollout_collect(s, c, step, !fused, gap, phase);
    if ((*batch_failed = rc != LEASH_OK)) return rc;
    double t0 = leash_now_s(), t_score = phase[1];
    if (!(fused && f.late)) rc = advantages(s, c, beta, tis); // fused and late: after the scoring, in the update
    if (!rc) rc = update_epochs(s, c, step, beta, order, fused ? &f : NULL, st, skipped, why);
    *batch_failed = rc && fused && f.failed;
    phase[3] = leash_now_s() - t0 - (phase[1] - t_score);
    return rc;
}

/* The batch's sums behind a step's metrics: over its R rows, and over their ntok response tokens. */
typedef struct {
    double kl_seq, kl_seq2, kl_ex, ntok, ent, nll, sc, shaped, gold, gram, len, eos;
} batch_sums;

static void sum_batch(const rollout *r, batch_sums *m) {
    *m = (batch_sums){0};
    for (int b = 0; b < r->B; b++) {
        double k = 0, ke = 0;
        int L = 0;
        for (int t = 0; t < r->T; t++) {
            long i = (long)b * r->T + t;
            if (r->targets[i] < 0) continue;
            k += r->kl[i], ke += r->kl_exact[i], m->ent += r->entropy[i], m->nll -= r->ref_logp[i], L++;
        }
        m->kl_seq += k, m->kl_seq2 += k * k, m->kl_ex += ke, m->ntok += L;
        m->sc += r->score[b], m->shaped += r->shaped[b], m->gold += r->gold[b], m->gram += r->grammatical[b];
        m->len += r->resp_len[b], m->eos += r->has_eos[b];
    }
}

/* The reward-hacking alarm: over the last ALARM_WINDOW steps against the first, the proxy rose while the
 * truth fell (gold reward, grammaticality, or fluency: the reference NLL). hist: (4 x steps) proxy, gold,
 * grammatical, reference NLL of each step (NAN: skipped); unit: the proxy's scale. */
static int hacking_alarm(const double *hist, int step, double unit) {
    if (step + 1 < 2 * ALARM_WINDOW) return 0;
    double base[4], now[4];
    for (int k = 0; k < 4; k++) {
        double b0 = 0, n0 = 0, b1 = 0, n1 = 0;
        for (int i = 0; i < ALARM_WINDOW; i++) {
            double x0 = hist[4 * i + k], x1 = hist[4 * (step - i) + k];
            if (!isnan(x0)) b0 += x0, n0++;
            if (!isnan(x1)) b1 += x1, n1++;
        }
        base[k] = n0 ? b0 / n0 : NAN, now[k] = n1 ? b1 / n1 : NAN;
    }
    int proxy_up = now[0] - base[0] > 0.25 * unit;
    int truth_down = (!isnan(now[1]) && base[1] - now[1] > 0.05) || (!isnan(now[2]) && base[2] - now[2] > 0.10) ||
                     now[3] - base[3] > 0.5;
    return proxy_up && truth_down;
}

/* The standard error of the batch's mean per-sequence KL: k1 can dip below 0 on a batch, and only a mean
 * that stays there, beyond this noise, warns. */
static double kl_mean_stderr(const batch_sums *m, int R) {
    double var = R > 1 ? (m->kl_seq2 - m->kl_seq * m->kl_seq / R) / (R - 1) : 0.0;
    return sqrt(var > 0 ? var / R : 0.0);
}

/* After a step: its proxy, gold, grammatical and reference NLL into hist (4 per step), the reward-hacking
 * alarm (which stays on once raised) and the KL band watch, into p. */
static int watch_step(leash_rl_progress *p, const rl_run *s, const batch_sums *m, int step, double *hist, int *alarm,
                      leash_klwatch *watch) {
    hist[4 * step] = p->scores, hist[4 * step + 1] = p->gold_reward, hist[4 * step + 2] = p->grammatical;
    hist[4 * step + 3] = p->ref_nll;
    *alarm = *alarm || hacking_alarm(hist, step, s->rm && leash_gpt_score_stats(s->rm).std > 0 ? leash_gpt_score_stats(s->rm).std : 0.1);
    p->hacking_alarm = *alarm;
    int signals = leash_klwatch_update(watch, p->kl, kl_mean_stderr(m, s->R));
    if (signals < 0) return LEASH_ENUMERIC;
    p->kl_band_warning = signals != 0;
    p->kl_negative_warning = (signals & LEASH_KLWATCH_NEGATIVE) != 0;
    return LEASH_OK;
}

/* A step's progress from the batch's sums and the updates' statistics (summed over ranks). */
static leash_rl_progress step_progress(const leash_rl_config *c, const batch_sums *m, const update_stats *st, int R,
                                       double beta) {
    leash_rl_progress p = {.steps = c->steps};
    p.kl = m->kl_seq / R, p.kl_per_token = m->ntok ? m->kl_seq / m->ntok : 0, p.kl_exact = m->kl_ex / R;
    p.entropy = m->ntok ? m->ent / m->ntok : 0, p.scores = m->sc / R, p.non_score_reward = -beta * m->kl_seq / R;
    p.rlhf_reward = m->shaped / R + p.non_score_reward, p.beta = beta;
    double n = (double)st->tokens;
    p.clipfrac = n ? st->clipfrac / n : 0, p.approxkl = n ? st->approxkl / n : 0;
    p.policy_loss = n ? st->policy_loss / n : 0, p.value_loss = n ? st->value_loss / n : 0;
    // GRPO: the loss the updates optimised (per sequence unless --token-level-loss), averaged over updates
    if (c->algo == LEASH_GRPO) p.policy_loss = st->updates ? st->loss_opt / st->updates : 0;
    p.ratio = n ? st->ratio / n : 1;
    p.first_ratio_dev = st->first_ratio_dev;
    p.kl_clamped_loss = st->kl_clamped, p.ratio_clamped = st->ratio_clamped;
    p.gold_reward = c->gold_metrics || c->reward.kind == LEASH_REWARD_GOLD ? m->gold / R : NAN;
    p.grammatical = c->gold_metrics || c->reward.kind == LEASH_REWARD_GOLD ? m->gram / R : NAN;
    p.ref_nll = m->ntok ? m->nll / m->ntok : 0;
    p.length = m->len / R, p.eos_rate = m->eos / R;
    return p;
}

/* metrics.jsonl's line of a step: the one table every writer reads (TRL's names where TRL has one). */
static void rl_metrics(const leash_rl_progress *p, leash_metrics *t) {
    t->n = 0;
    leash_metrics_int(t, "step", p->step);
    leash_metrics_real(t, "objective/kl", "%.6f", p->kl);
    leash_metrics_real(t, "objective/kl_per_token", "%.6f", p->kl_per_token);
    leash_metrics_real(t, "objective/kl_exact", "%.6f", p->kl_exact);
    leash_metrics_text(t, "kl_estimator", p->kl_estimator);
    leash_metrics_text(t, "kl_target_units", p->kl_target_units);
    leash_metrics_int(t, "kl/clamped_tokens", p->kl_clamped);
    leash_metrics_int(t, "kl/clamped_tokens_loss", p->kl_clamped_loss);
    leash_metrics_int(t, "policy/ratio_clamped", p->ratio_clamped);
    leash_metrics_int(t, "skipped/nonfinite", p->skipped);
    leash_metrics_real(t, "objective/entropy", "%.6f", p->entropy);
    leash_metrics_real(t, "objective/scores", "%.6f", p->scores);
    leash_metrics_real(t, "objective/non_score_reward", "%.6f", p->non_score_reward);
    leash_metrics_real(t, "objective/rlhf_reward", "%.6f", p->rlhf_reward);
    leash_metrics_real(t, "beta", "%.6g", p->beta);
    leash_metrics_real(t, "policy/clipfrac_avg", "%.6f", p->clipfrac);
    leash_metrics_real(t, "policy/approxkl_avg", "%.8f", p->approxkl);
    leash_metrics_real(t, "loss/policy_avg", "%.6f", p->policy_loss);
    leash_metrics_real(t, "loss/value_avg", "%.6f", p->value_loss);
    leash_metrics_real(t, "val/ratio", "%.8f", p->ratio);
    leash_metrics_real(t, "policy/first_ratio_maxdev", "%.3g", p->first_ratio_dev);
    leash_metrics_real(t, "policy/logprob_gap_max", "%.3g", p->logprob_gap);
    leash_metrics_real(t, "gold/reward", "%.6f", p->gold_reward); // null outside the default world
    leash_metrics_real(t, "gold/grammatical", "%.4f", p->grammatical);
    leash_metrics_real(t, "fluency/ref_nll", "%.6f", p->ref_nll);
    leash_metrics_real(t, "text/distinct2", "%.4f", p->distinct2);
    leash_metrics_real(t, "text/repetition", "%.4f", p->repetition);
    leash_metrics_real(t, "text/length", "%.3f", p->length);
    leash_metrics_real(t, "text/eos_rate", "%.4f", p->eos_rate);
    leash_metrics_int(t, "alarm/reward_hacking", p->hacking_alarm);
    leash_metrics_int(t, "alarm/kl_band", p->kl_band_warning);
    leash_metrics_int(t, "alarm/kl_negative", p->kl_negative_warning);
    leash_metrics_real(t, "time/step_s", "%.3f", p->seconds);
    static const char *const phases[4] = {"time/rollout_s", "time/scoring_s", "time/reward_s", "time/update_s"};
    for (int k = 0; k < 4; k++) leash_metrics_real(t, phases[k], "%.3f", p->phase_seconds[k]);
}

/* TRL's names beside leash's, appended to the step's table (docs/rl.md): every trainer's grad_norm (the
 * policy's gradient norm before clipping, the mean over the step's updates) and learning_rate (that of the
 * step's last update); GRPO's as TRL's GRPOTrainer defines them: kl (omitted when beta is 0, as TRL does) and
 * entropy, per token in the update; reward and reward_std over the batch's rewards (the shaped scores the
 * advantages use; the std with n - 1); frac_reward_zero_std, the share of groups whose rewards' std is below
 * 1e-8; the completions' lengths in tokens (end token included) and clipped_ratio, the share without an end
 * token; the clip shares; num_tokens, prompt and response tokens of every step so far. */
static void trl_metrics(leash_metrics *t, const leash_rl_config *c, const rl_run *s, const update_stats *st, double beta,
                        double num_tokens) {
    const rollout *r = &s->r;
    int R = s->R, G = c->grpo.group;
    double n_up = st->updates ? (double)st->updates : NAN;
    leash_metrics_real(t, "grad_norm", "%.8g", st->grad_norm_sum / n_up);
    leash_metrics_real(t, "learning_rate", "%.8g", st->updates ? st->lr : NAN);
    if (c->algo != LEASH_GRPO) return;
    if (beta != 0.0) leash_metrics_real(t, "kl", "%.8g", st->kl_mean / n_up);
    leash_metrics_real(t, "entropy", "%.8g", st->ent_mean / n_up);
    double mean = 0.0, ss = 0.0, zero = 0.0, len = 0.0, term = 0.0, tlen = 0.0;
    int lmin = INT32_MAX, lmax = 0, tmin = INT32_MAX, tmax = 0;
    for (int b = 0; b < R; b++) mean += r->shaped[b] / R;
    for (int b = 0; b < R; b++) ss += (r->shaped[b] - mean) * (r->shaped[b] - mean);
    for (int g0 = 0; g0 < R; g0 += G) {
        double m = 0.0, v = 0.0;
        for (int k = 0; k < G; k++) m += r->shaped[g0 + k] / G;
        for (int k = 0; k < G; k++) v += (r->shaped[g0 + k] - m) * (r->shaped[g0 + k] - m);
        zero += sqrt(v / (G - 1)) <= 1e-8;
    }
    for (int b = 0; b < R; b++) {
        int L = r->resp_len[b];
        len += L, lmin = L < lmin ? L : lmin, lmax = L > lmax ? L : lmax;
        if (r->has_eos[b]) term++, tlen += L, tmin = L < tmin ? L : tmin, tmax = L > tmax ? L : tmax;
    }
    if (!term) tmin = tmax = 0; // TRL: 0 when no completion ended
    leash_metrics_real(t, "reward", "%.8g", mean);
    leash_metrics_real(t, "reward_std", "%.8g", R > 1 ? sqrt(ss / (R - 1)) : NAN);
    leash_metrics_real(t, "frac_reward_zero_std", "%.8g", zero / (R / G));
    leash_metrics_real(t, "completions/mean_length", "%.8g", len / R);
    leash_metrics_int(t, "completions/min_length", lmin);
    leash_metrics_int(t, "completions/max_length", lmax);
    leash_metrics_real(t, "completions/clipped_ratio", "%.8g", 1.0 - term / R);
    leash_metrics_real(t, "completions/mean_terminated_length", "%.8g", term ? tlen / term : 0.0);
    leash_metrics_int(t, "completions/min_terminated_length", tmin);
    leash_metrics_int(t, "completions/max_terminated_length", tmax);
    leash_metrics_real(t, "clip_ratio/low_mean", "%.8g", st->clip_low / n_up);
    leash_metrics_real(t, "clip_ratio/high_mean", "%.8g", st->clip_high / n_up);
    leash_metrics_real(t, "clip_ratio/region_mean", "%.8g", st->clip_region / n_up);
    leash_metrics_real(t, "num_tokens", "%.0f", num_tokens);
}

/* samples.jsonl: the first rows of a step, with their prompts. */
static int log_samples(leash_log *log, const rl_run *s, int step) {
    const rollout *r = &s->r;
    for (int b = 0; b < r->B && b < 4; b++) {
        char gold_b[32] = "null"; // no gold reward (a run outside the default world): null, not 0
        if (!isnan(r->gold[b])) snprintf(gold_b, sizeof gold_b, "%.4f", r->gold[b]);
        fprintf(log->f, "{\"step\": %d, \"score\": %.4f, \"gold\": %s, \"prompt\": ", step, r->score[b], gold_b);
        leash_json_string(log->f, s->prompts.str[0][r->prompt_index[b]]);
        fputs(", \"response\": ", log->f);
        leash_json_string(log->f, r->text[b]);
        fputs("}\n", log->f);
    }
    return leash_log_flush(log);
}

/* The step's batch as a callback sees it (include/leash/rl.h). */
static leash_rl_batch batch_view(const rl_run *s, const leash_rl_config *c) {
    const rollout *r = &s->r;
    return (leash_rl_batch){.rows = s->R, .P = r->P, .T = r->T, .tokens = r->tokens, .mask = r->mask, .targets = r->targets,
                            .resp_len = r->resp_len, .has_eos = r->has_eos, .logp = r->old_logp, .ref_logp = r->ref_logp,
                            .kl = r->kl, .kl_exact = r->kl_exact, .rewards = c->algo == LEASH_PPO ? r->rewards : NULL,
                            .advantages = r->adv, .scores = r->score, .shaped = r->shaped, .policy = s->policy, .ref = s->ref};
}

/* An adapter directory as the policy continues its own adapters; LoRA options that ask for other ones (rank,
 * alpha, targets) would be ignored, so they must match or be left out. */
static int continue_adapters(rl_run *s, const leash_rl_config *c) {
    int rc = leash_gpt_load(&s->policy, c->policy_dir);
    if (rc) return rc;
    int arch = leash_gpt_cfg(s->policy)->arch;
    const leash_lora_config *p = leash_gpt_lora(s->policy);
    unsigned want = p->targets;
    if (c->lora_targets && (rc = leash_lora_parse_targets(c->lora_targets, arch, &want))) return rc;
    float alpha = c->lora_alpha > 0.0f ? c->lora_alpha : p->alpha;
    if (c->lora_rank == p->rank && want == p->targets && alpha == p->alpha) return LEASH_OK;
    const char *names[LEASH_LORA_SLOTS];
    char have[128] = "";
    int n = leash_lora_target_names(arch, p->targets, names, LEASH_LORA_SLOTS);
    for (int i = 0; i < n; i++) snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? "," : "", names[i]);
    return leash_fail(LEASH_EINVAL, "%s is a LoRA adapter directory (r = %d, alpha = %g, on %s), so --lora-r %d%s%s would be "
                                    "ignored: leave the LoRA options out to continue these adapters, or merge them first "
                                    "(leash lora merge) to train new ones",
                      c->policy_dir, p->rank, (double)p->alpha, have, c->lora_rank,
                      c->lora_targets ? " --lora-targets " : "", c->lora_targets ? c->lora_targets : "");
}

/* The policy: with LoRA (c->lora_rank > 0) the base with fresh adapters, loaded once, unless the directory
 * is an adapter directory already (then its adapters continue). */
static int load_policy(rl_run *s, const leash_rl_config *c) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", c->policy_dir);
    if (c->lora_rank > 0 && access(path, F_OK) == 0) return continue_adapters(s, c);
    if (c->lora_rank <= 0 || access(path, F_OK) == 0) return leash_gpt_load(&s->policy, c->policy_dir);
    return leash_gpt_load_lora(&s->policy, c->policy_dir, c->lora_rank, c->lora_alpha > 0.0f ? c->lora_alpha : 2.0f * c->lora_rank,
                               c->lora_dropout, c->lora_targets, c->seed);
}

/* The models: the policy (with LoRA adapters when asked), the frozen reference, the reward model, PPO's value
 * model, frozen weights in BF16 when asked; *tok_dir: where the policy's tokenizer was found. */
static int load_models(rl_run *s, const leash_rl_config *c, const char **tok_dir) {
    int rc = load_policy(s, c);
    if (!rc && (c->ref_dir || !leash_gpt_lora(s->policy))) // LoRA: the policy with its adapters off
        rc = leash_gpt_load(&s->ref, c->ref_dir ? c->ref_dir : c->policy_dir);
    if (!rc) {
        rc = leash_tokenizer_load_dir(&s->tok, *tok_dir);
        // a PEFT adapter directory from elsewhere may carry no tokenizer: its base's is the one
        if (rc && leash_gpt_lora(s->policy) && leash_gpt_source_dir(s->policy) &&
            !leash_tokenizer_load_dir(&s->tok, leash_gpt_source_dir(s->policy)))
            rc = LEASH_OK, *tok_dir = leash_gpt_source_dir(s->policy);
    }
    if (!rc && leash_tokenizer_vocab_size(s->tok) > leash_gpt_cfg(s->policy)->vocab_size)
        rc = leash_fail(LEASH_EINVAL, "%s: the tokenizer has %d tokens but the model's vocab_size is %d: they do not belong "
                                      "together",
                        c->policy_dir, leash_tokenizer_vocab_size(s->tok), leash_gpt_cfg(s->policy)->vocab_size);
    if (!rc && s->ref) leash_gpt_freeze(s->ref); // no gradients, no backward buffers, never stepped
    if (!rc && s->ref && leash_gpt_cfg(s->ref)->vocab_size != leash_gpt_cfg(s->policy)->vocab_size)
        rc = leash_fail(LEASH_EINVAL, "the reference %s has a vocabulary of %d, the policy %d: they must share a tokenizer",
                        c->ref_dir, leash_gpt_cfg(s->ref)->vocab_size, leash_gpt_cfg(s->policy)->vocab_size);
    if (!rc && c->reward.kind == LEASH_REWARD_MODEL) {
        if (!(rc = leash_gpt_load(&s->rm, c->reward.dir)) && !(rc = leash_tokenizer_load_dir(&s->rm_tok, c->reward.dir)) &&
            !leash_gpt_cfg(s->rm)->scalar_head)
            rc = leash_fail(LEASH_EINVAL, "%s has no scalar head: not a reward model", c->reward.dir);
    }
    if (!rc && c->algo == LEASH_PPO) // the value model starts from the reward model (InstructGPT), else the policy
        rc = leash_gpt_copy_with_head(&s->value, s->rm ? s->rm : s->policy, s->rm != NULL, c->seed);
    if (!rc && s->rm) leash_gpt_freeze(s->rm); // the reward model only scores
    if (!rc && c->frozen_bf16) { // every frozen weight in BF16: reference, reward model, a LoRA base
        leash_gpt *frozen[] = {s->ref, s->rm, leash_gpt_lora(s->policy) ? s->policy : NULL,
                               s->value && leash_gpt_lora(s->value) ? s->value : NULL};
        // the policy's own checkpoint as the reference, exact in BF16, keeps F32 products: KL exactly 0 at step 1
        int ref_f32 = s->ref && !c->ref_dir && leash_bf16_exact(leash_gpt_params(s->ref), leash_gpt_num_params(s->ref));
        for (size_t i = 0; i < sizeof frozen / sizeof frozen[0] && !rc; i++)
            if (frozen[i]) rc = leash_gpt_store_bf16(frozen[i]);
        if (!rc && ref_f32) leash_gpt_set_bf16_compute(s->ref, 0);
        else if (!rc && s->ref) rc = leash_gpt_store_head_bf16(s->ref); // it only scores: its head in BF16 too
    }
    if (!rc && c->checkpoint_activations) leash_gpt_set_checkpoint_activations(s->policy, 1);
    if (!rc && c->checkpoint_activations && s->value) leash_gpt_set_checkpoint_activations(s->value, 1);
    return rc;
}

/* The line of path that holds its k-th (from 0) non-blank line, as leash_jsonl_load counts them (blank: only
 * spaces, tabs, \r); k + 1 when the file cannot be read again. */
static int nonblank_line(const char *path, int k) {
    char *text = NULL;
    size_t len = 0;
    if (leash_read_file(path, (size_t)1 << 30, &text, &len)) return k + 1;
    int line = 1, seen = 0;
    for (const char *p = text, *end = text + len; p < end; line++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *q = p;
        if (!eol) eol = end;
        while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < eol && seen++ == k) break;
        p = eol + 1;
    }
    free(text);
    return line;
}

/* The policy's chat template (an adapter directory's: its base's) and its BOS token's text (*bos, or NULL). */
static int chat_template(rl_run *s, const leash_rl_config *c, leash_chat_template *ct, char **bos) {
    int rc = leash_chat_template_load(ct, c->policy_dir), id = leash_gpt_cfg(s->policy)->bos_token_id, len = 0;
    if (rc && leash_gpt_source_dir(s->policy)) rc = leash_chat_template_load(ct, leash_gpt_source_dir(s->policy));
    const char *text = id >= 0 ? leash_tokenizer_token(s->tok, id, &len) : NULL;
    if (!rc && text && !(*bos = strndup(text, (size_t)len))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    return rc ? leash_fail_wrap(rc, "--chat-template") : LEASH_OK;
}

/* The prompts (with their columns when reward commands get them), tokenised (*P: the longest; through the chat
 * template when asked), the end-of-response id, the reward commands started. */
static int load_prompts(rl_run *s, const leash_rl_config *c, int *P) {
    static const char *const keys[] = {"prompt"}, *const reserved[] = {"id", "response", "completion"};
    int cmd = c->reward.kind == LEASH_REWARD_COMMAND;
    int rc = cmd ? leash_jsonl_load_rest(c->prompts, keys, 1, reserved, 3, &s->prompts)
                 : leash_jsonl_load(c->prompts, keys, 1, NULL, 0, 0, &s->prompts);
    if (!rc && cmd) rc = scorers_start(&s->scorers, &c->reward, c->gold_metrics);
    leash_chat_template ct = {0};
    char *bos = NULL;
    if (!rc && c->chat_template) rc = chat_template(s, c, &ct, &bos);
    // the end of a response: the model's eos_token_id (Llama 3's <|end_of_text|>, an instruct model's <|im_end|>),
    // else the tokenizer's <|endoftext|>
    s->eos = leash_tokenizer_eos(s->tok, s->policy ? leash_gpt_cfg(s->policy)->eos_token_id : -1);
    if (!rc && s->eos < 0)
        rc = leash_fail(LEASH_EFORMAT, "%s: config.json has no eos_token_id and the tokenizer no <|endoftext|>: responses "
                                       "could never end",
                        c->policy_dir);
    *P = 0;
    int longest = 0;
    if (!rc && (!(s->pids = calloc(s->prompts.n, sizeof *s->pids)) || !(s->plen = calloc(s->prompts.n, sizeof *s->plen))))
        rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int i = 0; i < s->prompts.n && !rc; i++) {
        size_t n = 0, cap = 0;
        const char *p = s->prompts.str[0][i];
        char *wrapped = NULL; // --chat-template: the prompt as the user's message, the assistant's turn begun
        if (c->chat_template && (rc = leash_chat_render(&ct, &(leash_chat_message){"user", p}, 1, 1, bos, &wrapped, NULL))) break;
        // special tokens written in a prompt (a chat template's <|im_start|>, <|eot_id|>, ...) are their ids
        rc = leash_tokenizer_encode(s->tok, wrapped ? wrapped : p, strlen(wrapped ? wrapped : p), 1, &s->pids[i], &n, &cap);
        free(wrapped);
        if (!rc && n == 0) rc = leash_fail(LEASH_EINVAL, "%s:%d: the prompt is empty", c->prompts, nonblank_line(c->prompts, i));
        s->plen[i] = (int)n;
        if ((int)n > *P) *P = (int)n, longest = i;
    }
    if (!rc && *P + c->max_new > leash_gpt_cfg(s->policy)->n_positions)
        rc = leash_fail(LEASH_EINVAL, "%s:%d: the prompt \"%.60s%s\" is %d tokens; with --max-new %d that exceeds the model's %d "
                                      "positions: shorten the prompt or lower --max-new",
                        c->prompts, nonblank_line(c->prompts, longest), s->prompts.str[0][longest], strlen(s->prompts.str[0][longest]) > 60 ? "..." : "",
                        *P, c->max_new, leash_gpt_cfg(s->policy)->n_positions);
    leash_chat_template_free(&ct);
    free(bos);
    return rc;
}

/* Everything a run needs before its first step: models, prompts, the rollout's buffers, the rows this rank
 * owns, the optimisers. */
static int setup(rl_run *s, const leash_rl_config *c, const char **tok_dir) {
    int P, rc;
    if ((rc = load_models(s, c, tok_dir)) || (rc = load_prompts(s, c, &P))) return rc;
    s->R = c->algo == LEASH_GRPO ? c->batch * c->grpo.group : c->batch;
    s->mb = c->minibatch > 0 && c->minibatch < s->R ? c->minibatch : s->R;
    s->accum = c->grad_accum > 1 ? c->grad_accum : 1;
    // the most rows one forward takes: a rank's part of a minibatch, in micro-batches
    int part = (s->mb + leash_dist_size() - 1) / leash_dist_size(), micro = (part + s->accum - 1) / s->accum;
    if (!rc) rc = rollout_alloc(&s->r, s->R, P, c->max_new, s->mb);
    if (!rc && !(s->text_ids = malloc((size_t)c->max_new * sizeof *s->text_ids))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc && !s->ref && !(s->ref_logits = malloc((size_t)micro * s->r.T * leash_gpt_cfg(s->policy)->vocab_size * sizeof(float))))
        rc = leash_fail(LEASH_ENOMEM, "cannot allocate the reference's logits for a micro-batch of %d", micro);
    if (!rc) rc = own_rows(s);
    if (!rc) rc = ref_sync_ready(s, c); // --ref-sync-every: a reference that can take the policy's weights
    if (!rc) rc = leash_adamw_create(&s->popt, &c->optim, leash_gpt_num_trainable(s->policy));
    if (!rc && s->value) rc = leash_adamw_create(&s->vopt, &c->ppo.value_optim, leash_gpt_num_trainable(s->value));
    return rc;
}

/* A step's metrics table (leash's, TRL's, the off-policy correction's, the reference refresh's, a reward
 * command's) into metrics.jsonl and p->metrics, and every sample_every steps its first sample into
 * samples.jsonl and p->sample. */
static int step_report(rl_run *s, const leash_rl_config *c, int step, double beta, const update_stats *st,
                       const tis_stats *tis, double num_tokens, leash_metrics *table, leash_log *metrics,
                       leash_log *samples, leash_rl_progress *p) {
    int rc = LEASH_OK;
    rl_metrics(p, table);
    trl_metrics(table, c, s, st, beta, num_tokens);
    offpolicy_metrics(table, c, &s->r, st, tis);
    ref_sync_metrics(table, c, step);
    if (c->reward.kind == LEASH_REWARD_COMMAND && (rc = scorers_metrics(&s->scorers, table))) return rc;
    p->metrics = table;
    if (metrics->f && (rc = leash_log_metrics(metrics, table))) return rc;
    p->sample = NULL;
    if (c->sample_every && (step % c->sample_every == 0 || step + 1 == c->steps)) {
        if (samples->f && (rc = log_samples(samples, s, p->step))) return rc;
        p->sample = s->r.text[0];
    }
    return LEASH_OK;
}

/* After step now->step: a run whose every update was skipped (none_applied: none since step 0) fails at its last
 * step, as there is no trained model to write; otherwise rank 0 writes the checkpoint when one is due (a stop,
 * the last step, every --save-every steps). why: the last skip's reason. */
static int checkpoint_step(rl_run *s, const leash_rl_config *c, const rl_state *now, int none_applied, int stop,
                           const char *why) {
    int last = now->step == c->steps;
    if (last && none_applied && now->skipped > 0)
        return leash_fail(LEASH_ENUMERIC, "every update of the %d steps was skipped for a non-finite reward, KL or gradient "
                                          "(--skip-nonfinite; the last: %s): the policy did not train and was not written; "
                                          "check the reward and the policy, or lower --lr",
                          c->steps, why);
    if (leash_dist_rank() == 0 && (stop || last || (c->save_every && now->step % c->save_every == 0)))
        return rl_checkpoint_save(c->out_dir, c, s->policy, s->value, &s->popt, s->value ? &s->vopt : NULL, now);
    return LEASH_OK;
}

int leash_rl_train(const leash_rl_config *c, leash_rl_fn fn, void *ctx, leash_rl_progress *final) {
    int rc = check(c);
    if (rc) return rc;
    rl_run s = {0};
    leash_rl_config cfg = *c;
    leash_log metrics = {0}, samples = {0};
    leash_metrics table;
    int *order = NULL;
    double *hist = NULL;
    char path[4096];
    int rank0 = leash_dist_rank() == 0; // writes every file; the other ranks compute
    const char *tok_dir = c->policy_dir; // where the tokenizer comes from (and is copied from with the policy)
    if (rank0 && (rc = leash_mkdir(c->out_dir))) return rc;
    rc = setup(&s, c, &tok_dir);
    order = malloc(s.R * sizeof *order);
    hist = malloc((size_t)4 * c->steps * sizeof *hist); // proxy, gold, grammatical, ref NLL per step
    if (!rc && (!order || !hist)) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    // the state that is not a function of (seed, step): fresh, or from OUT/checkpoint
    int alarm = 0, start = 0;
    long skipped = 0, updates = 0; // updates applied by this process
    double num_tokens = 0.0;       // prompt and response tokens of every step so far (TRL's num_tokens)
    char why[320] = ""; // the last skip's reason
    leash_klwatch watch;
    if (!rc) rc = leash_klwatch_init(&watch, LEASH_KLWATCH_DEFAULT_LOW, LEASH_KLWATCH_DEFAULT_HIGH);
    if (!rc && c->resume) {
        rl_state st = {.beta = cfg.beta, .watch = watch, .hist = hist, .ref_model = ref_sync_holder(&s, c, c->steps)};
        if (!(rc = rl_checkpoint_load(c->out_dir, c, s.policy, s.value, &s.popt, s.value ? &s.vopt : NULL, &st)))
            start = st.step, cfg.beta = st.beta, watch = st.watch, alarm = st.alarm, skipped = st.skipped, num_tokens = st.num_tokens;
    }
    // the logs: on resume, cut back to the checkpoint's step (a killed run may have logged further, or half a line)
    if (!rc && rank0) rc = leash_log_open(&metrics, c->out_dir, "metrics.jsonl", c->resume ? start : -1);
    if (!rc && rank0) rc = leash_log_open(&samples, c->out_dir, "samples.jsonl", c->resume ? start : -1);

    leash_rl_progress p = {.step = start, .steps = c->steps};
    rollout *r = &s.r;
    int R = s.R;
    for (int step = start; step < c->steps && !rc; step++) {
        int stop = 0;
        double t0 = leash_now_s();
        double gap = 0.0, phase[4] = {0}, beta = cfg.beta.beta, rep, d2;
        update_stats st;
        tis_stats tis = {0};
        int batch_failed; // the batch could not be collected (or scored in the update)
        if ((rc = collect_and_update(&s, &cfg, step, order, &st, &tis, &gap, phase, &skipped, why, &batch_failed)) && batch_failed) {
            if (step > start && leash_stop_requested()) { // SIGINT/SIGTERM while a scorer answered: the step is
                // dropped (nothing has moved since the step before), and the run stops with that step's checkpoint
                rl_state now = {.step = step, .beta = cfg.beta, .watch = watch, .alarm = alarm, .skipped = skipped,
                                .hist = hist, .num_tokens = num_tokens, .ref_model = ref_sync_holder(&s, c, step)};
                rc = checkpoint_step(&s, c, &now, 0, 1, why);
                break;
            }
            if (rc != LEASH_ENUMERIC || !c->skip_nonfinite) break;
            skipped++, rc = LEASH_OK; // the whole batch: no update, no metrics line for this step
            snprintf(why, sizeof why, "step %d was skipped: %.250s", step + 1, leash_errmsg());
            snprintf(p.skip_reason, sizeof p.skip_reason, "%s", why);
            for (int k = 0; k < 4; k++) hist[4 * step + k] = NAN; // the alarm ignores it
            p.step = step + 1, p.skipped = skipped;
            goto step_end;
        }
        if (rc) break;
        batch_sums m; // measured KL of this batch, per sequence, and the statistics
        sum_batch(r, &m);
        rep = leash_repetition(r->gen, r->resp_len, R, c->max_new);
        if ((rc = leash_distinct2(r->gen, r->resp_len, R, c->max_new, &d2))) break;
        // the controller sees the measured mean KL of this batch, in its own units
        double kl_ctl = cfg.beta.units == LEASH_KL_PER_TOKEN ? (m.ntok ? m.kl_seq / m.ntok : 0.0) : m.kl_seq / R;
        if ((rc = leash_beta_update(&cfg.beta, kl_ctl, R))) break;
        p = step_progress(c, &m, &st, R, beta);
        p.step = step + 1;
        if (s.scorers.gold >= 0 && s.scorers.n) p.gold_reward = m.gold / R; // a reward command's gold/reward
        p.kl_estimator = leash_kl_estimator_name(c->kl_estimator);
        p.kl_target_units = leash_kl_units_name(cfg.beta.units);
        p.logprob_gap = gap, p.kl_clamped = r->kl_clamped, p.skipped = skipped;
        snprintf(p.skip_reason, sizeof p.skip_reason, "%s", why);
        updates += st.updates;
        p.distinct2 = d2, p.repetition = rep;
        p.seconds = leash_now_s() - t0;
        for (int k = 0; k < 4; k++) p.phase_seconds[k] = phase[k];
        if ((rc = watch_step(&p, &s, &m, step, hist, &alarm, &watch))) break;
        for (int b = 0; b < R; b++) num_tokens += s.plen[r->prompt_index[b]] + r->resp_len[b];
        if ((rc = step_report(&s, c, step, beta, &st, &tis, num_tokens, &table, &metrics, &samples, &p))) break;
        leash_rl_batch view = batch_view(&s, c);
        p.batch = &view;
        stop = fn && fn(&p, ctx);
        p.batch = NULL;
    step_end:
        // --ref-sync-every: the reference moves to the policy after every N-th step (skipped or not)
        if (c->ref_sync_every && (step + 1) % c->ref_sync_every == 0 && (rc = ref_sync_step(&s, c))) break;
        // a stop asked for on any rank (the callback, or SIGINT/SIGTERM) stops every rank after this step
        stop = stop || leash_stop_requested();
        if ((rc = leash_dist_sum_i32(&stop, 1, "stop request"))) break;
        rl_state now = {.step = step + 1, .beta = cfg.beta, .watch = watch, .alarm = alarm, .skipped = skipped, .hist = hist,
                        .num_tokens = num_tokens, .ref_model = ref_sync_holder(&s, c, step + 1)};
        if ((rc = checkpoint_step(&s, c, &now, start == 0 && updates == 0, stop, why)) || stop) break;
    }
    if (!rc && rank0 && p.step == c->steps) { // the trained policy, once the run is complete
        snprintf(path, sizeof path, "%s/policy", c->out_dir);
        if (!(rc = leash_gpt_save(s.policy, path))) rc = leash_tokenizer_copy(tok_dir, path);
    }
    if (final) *final = p;
    leash_log_close(&metrics), leash_log_close(&samples);
    free(order), free(hist);
    free_rl(&s);
    return rc;
}
