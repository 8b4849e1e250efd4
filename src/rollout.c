/* The rollout of one RL step: sampling with the KV cache, scoring at the same temperature (the policy's and
 * the reference's log-probs, entropies, the exact KL, PPO's values), the per-token KL the algorithm uses, and
 * the rewards; the buffers they fill and minibatch gathering. See src/rl_internal.h.
 * With several ranks each generates, scores and rewards its own rows (s->own) and the results are assembled,
 * so that every rank ends a collection with the whole batch, as one process would have it.
 * Dimensions: R rows, P longest prompt, M new tokens, T = P + M, V vocabulary. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/dist.h"
#include "leash/error.h"
#include "leash/reward.h"
#include "leash/rng.h"
#include "leash/sample.h"
#include "leash/world.h"
#include "rl_internal.h"

#define now_s leash_now_s

/* Per-row results of the ranks, put together on every rank: each row has one owner and zeros elsewhere. */
static int assemble_f32(float *x, size_t n, const char *what) { return leash_dist_sum_f32(x, n, what); }

/* The batch's prompts (G rows each for GRPO), then this rank's rows sampled: r->gen, r->gen_lp, r->glen. */
static int sample_rows(rl_run *s, const leash_rl_config *c, int step, const leash_sample_config *sc) {
    rollout *r = &s->r;
    int R = s->R, M = r->M, rc = LEASH_OK, G = c->algo == LEASH_GRPO ? c->grpo.group : 1, n_own = s->n_own;
    int *gen = r->gen, *glen = r->glen, *packed = r->packed;
    float *gen_lp = r->gen_lp;
    leash_rng rng;
    leash_rng_seed(&rng, c->seed, (uint64_t)step);
    for (int i = 0; i < R / G; i++) { // the prompts of the whole batch: the same stream on every rank
        int p = (int)(leash_rng_uniform(&rng) * s->prompts.n);
        for (int g = 0; g < G; g++) r->prompt_index[i * G + g] = p;
    }
    uint64_t *streams = malloc((n_own ? n_own : 1) * sizeof *streams);
    int *plens = malloc((n_own ? n_own : 1) * sizeof *plens), *lgen = malloc((size_t)(n_own ? n_own : 1) * M * sizeof *lgen);
    int *lglen = malloc((n_own ? n_own : 1) * sizeof *lglen);
    float *llp = malloc((size_t)(n_own ? n_own : 1) * M * sizeof *llp);
    if (!streams || !plens || !lgen || !lglen || !llp) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    int n = 0;
    for (int k = 0; k < n_own && !rc; k++) {
        int b = s->own[k], p = r->prompt_index[b];
        memcpy(packed + n, s->pids[p], s->plen[p] * sizeof(int));
        n += s->plen[p];
        plens[k] = s->plen[p];
        streams[k] = (uint64_t)step * R + b; // a row's stream depends on its place in the batch only
    }
    if (!rc && n_own) rc = leash_generate(s->policy, sc, packed, plens, n_own, streams, lgen, llp, lglen);
    if (!rc) {
        memset(gen, 0, (size_t)R * M * sizeof *gen), memset(gen_lp, 0, (size_t)R * M * sizeof *gen_lp);
        memset(glen, 0, R * sizeof *glen);
        for (int k = 0; k < n_own; k++) {
            int b = s->own[k];
            memcpy(gen + (size_t)b * M, lgen + (size_t)k * M, M * sizeof *gen);
            memcpy(gen_lp + (size_t)b * M, llp + (size_t)k * M, M * sizeof *gen_lp);
            glen[b] = lglen[k];
        }
        if (!(rc = leash_dist_sum_i32(gen, (size_t)R * M, "sampled tokens")) && !(rc = leash_dist_sum_i32(glen, R, "response lengths")))
            rc = assemble_f32(gen_lp, (size_t)R * M, "sampling log-probs");
    }
    free(streams), free(plens), free(lgen), free(lglen), free(llp);
    return rc;
}

/* The rows laid out for scoring and training (tokens, mask, targets, lengths, EOS) and decoded to text. */
static int lay_out(rl_run *s, const leash_sample_config *sc) {
    rollout *r = &s->r;
    int R = s->R, P = r->P, M = r->M, T = r->T, rc = LEASH_OK;
    const int *gen = r->gen, *glen = r->glen;
    // layout: prompt left-padded to P, response from P, targets at the input position before each response token
    for (int b = 0; b < R; b++) {
        int p = r->prompt_index[b], pl = s->plen[p], L = glen[b];
        for (int t = 0; t < T; t++) {
            long i = (long)b * T + t;
            int in_prompt = t >= P - pl && t < P, in_resp = t >= P && t < P + L;
            r->tokens[i] = in_prompt ? s->pids[p][t - (P - pl)] : in_resp ? gen[b * M + t - P] : s->eos;
            r->mask[i] = (uint8_t)(in_prompt || in_resp);
            r->targets[i] = t + 1 >= P && t + 1 < P + L ? gen[b * M + t + 1 - P] : -1;
        }
        r->resp_len[b] = L;
        r->has_eos[b] = L > 0 && leash_sample_is_eos(sc, gen[b * M + L - 1]);
        char *raw = NULL;
        size_t len = 0, cap = 0;
        free(r->text[b]);
        r->text[b] = NULL;
        // ids the tokenizer lacks (models pad their vocabulary: Qwen2.5 has 151936 rows for 151665 tokens) are
        // sampled like any other and decode to nothing, as Hugging Face's decode skips them
        int n_text = 0;
        const int *ids = gen + b * M;
        for (int j = 0; j < L - r->has_eos[b]; j++) {
            int tl;
            if (leash_tokenizer_token(s->tok, ids[j], &tl)) s->text_ids[n_text++] = ids[j];
        }
        if ((rc = leash_tokenizer_decode(s->tok, s->text_ids, n_text, &raw, &len, &cap))) break;
        r->text[b] = leash_utf8_sanitize(raw ? raw : "", len);
        free(raw);
        if (!r->text[b]) { rc = leash_fail(LEASH_ENOMEM, "out of memory"); break; }
    }
    return rc;
}

int rollout_truncate(leash_gpt *policy, const int *targets, int n, int T, const leash_rl_config *c, long *outside) {
    leash_sample_config sc = leash_sample_defaults();
    sc.temperature = c->temperature, sc.top_k = c->top_k, sc.top_p = c->top_p;
    *outside = 0;
    int V = leash_gpt_cfg(policy)->vocab_size;
    if (!leash_sample_filtered(&sc, V)) return LEASH_OK;
    // the logits of the last forward are the model's own buffer: masked in place before the log-probs and the
    // backward read them
    return leash_sample_mask_rows((float *)leash_gpt_logits(policy), n * T, V, targets, &sc, outside);
}

/* Zeroes what the scoring runs fill (each rank its own rows; the rest is assembled from the others). */
static void score_begin(rollout *r) {
    float *assembled[] = {r->old_logp, r->entropy, r->ref_logp, r->kl_exact, r->values};
    for (size_t a = 0; a < sizeof assembled / sizeof assembled[0]; a++) memset(assembled[a], 0, (size_t)r->B * r->T * sizeof(float));
    r->outside_set = 0;
}

int rollout_score_run(rl_run *s, const leash_rl_config *c, const int *rows, int nb) {
    rollout *r = &s->r;
    int T = r->T, V = leash_gpt_cfg(s->policy)->vocab_size, rc = LEASH_OK, first = rows[0];
    long outside = 0;
    rollout_gather(r, rows, nb);
    float *lp = r->mb_buf, *h = r->mb_buf2;
    const float *zp, *zq;
    if (s->ref) {
        // the policy's distribution truncated as the sampler's was (top-k / top-p), the reference's whole
        if ((rc = leash_gpt_forward(s->policy, r->mb_tokens, r->mb_mask, nb, T)) ||
            (rc = rollout_truncate(s->policy, r->mb_targets, nb, T, c, &outside)) ||
            (rc = leash_gpt_token_logprobs(s->policy, r->mb_targets, c->temperature, lp, h)) ||
            (rc = leash_gpt_forward(s->ref, r->mb_tokens, r->mb_mask, nb, T)))
            return rc;
        r->outside_set += outside;
        memcpy(r->old_logp + (size_t)first * T, lp, (size_t)nb * T * sizeof(float));
        memcpy(r->entropy + (size_t)first * T, h, (size_t)nb * T * sizeof(float));
        if ((rc = leash_gpt_token_logprobs(s->ref, r->mb_targets, c->temperature, lp, NULL))) return rc;
        memcpy(r->ref_logp + (size_t)first * T, lp, (size_t)nb * T * sizeof(float));
        zp = leash_gpt_logits(s->policy), zq = leash_gpt_logits(s->ref);
    } else { // LoRA: the reference is the policy with its adapters off; its logits wait in ref_logits
        leash_gpt_set_adapters(s->policy, 0);
        rc = leash_gpt_forward(s->policy, r->mb_tokens, r->mb_mask, nb, T);
        leash_gpt_set_adapters(s->policy, 1);
        if (rc || (rc = leash_gpt_token_logprobs(s->policy, r->mb_targets, c->temperature, lp, NULL))) return rc;
        memcpy(r->ref_logp + (size_t)first * T, lp, (size_t)nb * T * sizeof(float));
        memcpy(s->ref_logits, leash_gpt_logits(s->policy), (size_t)nb * T * V * sizeof(float));
        if ((rc = leash_gpt_forward(s->policy, r->mb_tokens, r->mb_mask, nb, T)) ||
            (rc = rollout_truncate(s->policy, r->mb_targets, nb, T, c, &outside)) ||
            (rc = leash_gpt_token_logprobs(s->policy, r->mb_targets, c->temperature, lp, h)))
            return rc;
        r->outside_set += outside;
        memcpy(r->old_logp + (size_t)first * T, lp, (size_t)nb * T * sizeof(float));
        memcpy(r->entropy + (size_t)first * T, h, (size_t)nb * T * sizeof(float));
        zp = leash_gpt_logits(s->policy), zq = s->ref_logits;
    }
    for (long i = 0; i < (long)nb * T && !rc; i++) {
        double kl = 0.0;
        if (r->mb_targets[i] >= 0) rc = leash_kl_exact(zp + i * V, zq + i * V, V, c->temperature, &kl, NULL);
        r->kl_exact[(size_t)first * T + i] = (float)kl;
    }
    if (!rc && s->value) {
        if ((rc = leash_gpt_forward(s->value, r->mb_tokens, r->mb_mask, nb, T))) return rc;
        for (long i = 0; i < (long)nb * T; i++) r->values[(size_t)first * T + i] = r->mb_targets[i] >= 0 ? leash_gpt_values(s->value)[i] : 0.0f;
    }
    return rc;
}

int rollout_kl_rows(rollout *r, const leash_rl_config *c, int step, long first, long n) {
    for (long i = first * r->T; i < (first + n) * r->T; i++) {
        if (r->targets[i] < 0) { r->kl[i] = 0.0f; continue; }
        int exact = c->kl_estimator == LEASH_KL_EXACT;
        r->kl[i] = exact ? r->kl_exact[i] : (float)leash_kl_estimate(c->kl_estimator, r->old_logp[i], r->ref_logp[i]);
        if (!exact) r->kl_clamped += leash_kl_estimate_clamped(c->kl_estimator, r->old_logp[i], r->ref_logp[i]);
        if (!isfinite(r->kl[i])) return leash_fail(LEASH_ENUMERIC, "the KL at step %d is %g: the policy has left the reference's support", step + 1, r->kl[i]);
    }
    return LEASH_OK;
}

int rollout_score_finish(rl_run *s, const leash_rl_config *c, int step, double *logprob_gap) {
    rollout *r = &s->r;
    int R = s->R, P = r->P, M = r->M, T = r->T, rc = LEASH_OK;
    float *assembled[] = {r->old_logp, r->entropy, r->ref_logp, r->kl_exact, r->values};
    const char *names[] = {"policy log-probs", "entropies", "reference log-probs", "exact KLs", "values"};
    for (size_t a = 0; a < sizeof assembled / sizeof assembled[0] && !rc; a++)
        if (a < 4 || s->value) rc = assemble_f32(assembled[a], (size_t)R * T, names[a]);
    int n_out = (int)r->outside_set;
    if (!rc && (rc = leash_dist_sum_i32(&n_out, 1, "tokens outside the top-k / top-p set"))) return rc;
    r->outside_set = n_out;
    if (rc) return rc;
    *logprob_gap = 0.0;
    for (int b = 0; b < R; b++)
        for (int j = 0; j < r->resp_len[b]; j++) {
            double d = fabs((double)r->gen_lp[b * M + j] - r->old_logp[(long)b * T + P + j - 1]);
            if (d > *logprob_gap) *logprob_gap = d;
        }
    // the per-token KL the algorithm uses
    r->kl_clamped = 0;
    return rollout_kl_rows(r, c, step, 0, R);
}

/* Log-probs, entropies, the exact KL and (PPO) values of the batch, and the per-token KL the algorithm uses;
 * *logprob_gap: the largest difference of a sampled token's log-prob at sampling and at scoring. This rank's
 * rows are scored run by run in the micro-batch shapes the first update will use, so that the first
 * minibatch's ratio is exactly 1. */
static int score_rows(rl_run *s, const leash_rl_config *c, int step, double *logprob_gap) {
    int rc = LEASH_OK;
    score_begin(&s->r);
    for (int k = 0, k0 = 0; k < s->n_runs && !rc; k0 += s->run_len[k++]) rc = rollout_score_run(s, c, s->own + k0, s->run_len[k]);
    return rc ? rc : rollout_score_finish(s, c, step, logprob_gap);
}

/* Row b through the reward commands (request id): its prompt with the prompt line's other columns, its
 * response; *out the (weighted) reward; the row's gold reward when a scorer reports gold/reward. */
static int command_reward(rl_run *s, const leash_rl_config *c, int id, int b, double *out) {
    rollout *r = &s->r;
    int p = r->prompt_index[b];
    double gold;
    int rc = scorers_score(&s->scorers, c->reward.timeout_s, id, b, s->prompts.str[0][p], s->prompts.rest ? s->prompts.rest[p] : NULL,
                           r->text[b], out, &gold);
    if (!rc && !isnan(gold)) r->gold[b] = gold;
    return rc;
}

static char *join(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 1);
    if (s) strcat(strcpy(s, a), b);
    return s;
}

/* A batch reward function's scores of this rank's rows (*out: n_own, to free). */
static int batch_rewards(rl_run *s, const leash_rl_config *c, int step, double **out) {
    const rollout *r = &s->r;
    int n = s->n_own, rc = LEASH_OK;
    const char **prompts = malloc((n ? n : 1) * sizeof *prompts), **texts = malloc((n ? n : 1) * sizeof *texts);
    *out = malloc((n ? n : 1) * sizeof **out);
    if (!prompts || !texts || !*out) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int k = 0; k < n && !rc; k++) {
        int b = s->own[k];
        prompts[k] = s->prompts.str[0][r->prompt_index[b]], texts[k] = r->text[b], (*out)[k] = NAN;
    }
    int ret = rc || !n ? 0 : c->reward.batch_fn(prompts, texts, n, *out, c->reward.ctx);
    if (!rc && ret) rc = leash_fail(LEASH_EINVAL, "the batch reward function failed (returned %d) at step %d", ret, step + 1);
    free(prompts), free(texts);
    return rc;
}

/* The rewards of the batch: reward model on prompt + response, the gold reward, a function or a command; the
 * gold metrics when asked; the shaping (normalisation, clip, EOS and length penalties). */
static int reward_rows(rl_run *s, const leash_rl_config *c, int step) {
    rollout *r = &s->r;
    int R = s->R, M = r->M, rc = LEASH_OK, n_own = s->n_own;
    const int *gen = r->gen;
    // scores of this rank's rows: reward model on prompt + response, or the gold reward; gold metrics when asked
    char **texts = calloc(n_own ? n_own : 1, sizeof *texts);
    float *sc_rm = malloc((n_own ? n_own : 1) * sizeof *sc_rm);
    if (!texts || !sc_rm) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int k = 0; k < n_own && !rc; k++) {
        int b = s->own[k];
        if (!(texts[k] = join(s->prompts.str[0][r->prompt_index[b]], r->text[b]))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    }
    if (!rc && s->rm && n_own) rc = leash_rm_score_texts(s->rm, s->rm_tok, (const char *const *)texts, n_own, 32, sc_rm);
    double *batch = NULL; // LEASH_REWARD_BATCH: the function's scores of this rank's rows, in one call
    if (!rc && c->reward.kind == LEASH_REWARD_BATCH) rc = batch_rewards(s, c, step, &batch);
    if (!rc && c->reward.kind == LEASH_REWARD_COMMAND) rc = scorers_begin(&s->scorers, R);
    leash_score_stats st = s->rm ? leash_gpt_score_stats(s->rm) : (leash_score_stats){0};
    memset(r->score, 0, R * sizeof *r->score), memset(r->shaped, 0, R * sizeof *r->shaped);
    memset(r->gold, 0, R * sizeof *r->gold), memset(r->grammatical, 0, R * sizeof *r->grammatical);
    int bad = 0;
    for (int k = 0; k < n_own && !rc; k++) {
        int b = s->own[k];
        // the world's verdict only where it is reported or is the reward
        leash_world_gold g = {.reward = NAN};
        if (c->gold_metrics || c->reward.kind == LEASH_REWARD_GOLD) g = leash_world_score(texts[k], strlen(texts[k]));
        r->gold[b] = g.reward;
        r->grammatical[b] = g.grammatical;
        const char *prompt = s->prompts.str[0][r->prompt_index[b]];
        double score = g.reward;
        switch (c->reward.kind) {
        case LEASH_REWARD_MODEL: score = sc_rm[k]; break;
        case LEASH_REWARD_FUNCTION: score = c->reward.fn(prompt, r->text[b], gen + b * M, r->resp_len[b], c->reward.ctx); break;
        case LEASH_REWARD_BATCH: score = batch[k]; break;
        case LEASH_REWARD_COMMAND: rc = command_reward(s, c, step * R + b, b, &score); break;
        default: break; // LEASH_REWARD_GOLD: the world's verdict
        }
        if (rc) break;
        double x = score;
        if (!isfinite(score)) {
            if (!c->skip_nonfinite) {
                rc = leash_fail(LEASH_ENUMERIC, "reward of response %d at step %d is %g", b, step + 1, score);
                break;
            }
            bad++; // skipped below, once every rank knows (the collectives must still run)
            score = 0.0;
        }
        if (s->rm && c->normalize_scores && st.std > 0) x = (x - st.mean) / st.std;
        if (c->score_clip > 0) x = x < -c->score_clip ? -c->score_clip : x > c->score_clip ? c->score_clip : x;
        if (!r->has_eos[b]) x += c->no_eos_penalty;
        x -= c->length_penalty * r->resp_len[b];
        r->score[b] = score;
        r->shaped[b] = x;
    }
    for (int k = 0; texts && k < n_own; k++) free(texts[k]);
    free(texts), free(sc_rm), free(batch);
    if (!rc && c->reward.kind == LEASH_REWARD_COMMAND) rc = scorers_end(&s->scorers); // the scorers' metrics, over ranks
    if (!rc && !(rc = leash_dist_sum_f64(r->score, R, "scores")) && !(rc = leash_dist_sum_f64(r->shaped, R, "shaped scores")) &&
        !(rc = leash_dist_sum_f64(r->gold, R, "gold rewards")))
        rc = leash_dist_sum_i32(r->grammatical, R, "grammaticality");
    if (!rc && c->skip_nonfinite && !(rc = leash_dist_sum_i32(&bad, 1, "non-finite rewards")) && bad)
        rc = leash_fail(LEASH_ENUMERIC, "%d reward(s) of step %d are not finite", bad, step + 1);
    return rc;
}

int rollout_collect(rl_run *s, const leash_rl_config *c, int step, int score, double *logprob_gap, double *phase) {
    leash_sample_config sc = leash_sample_defaults();
    sc.temperature = c->temperature, sc.max_new_tokens = s->r.M, sc.seed = c->seed;
    sc.top_k = c->top_k, sc.top_p = c->top_p;
    leash_sample_set_eos(&sc, leash_gpt_cfg(s->policy), s->eos);
    double t0 = now_s();
    int rc = sample_rows(s, c, step, &sc);
    phase[0] += now_s() - t0;
    if (rc || (rc = lay_out(s, &sc))) return rc;
    double t1 = now_s();
    if (score) rc = score_rows(s, c, step, logprob_gap);
    else score_begin(&s->r); // the update's forward scores
    double t2 = now_s();
    phase[1] += t2 - t1;
    if (rc) return rc;
    rc = reward_rows(s, c, step);
    phase[2] += now_s() - t2;
    return rc;
}

int rollout_alloc(rollout *r, int B, int P, int M, int minibatch) {
    memset(r, 0, sizeof *r);
    r->B = B, r->P = P, r->M = M, r->T = P + M;
    size_t N = (size_t)B * r->T, NM = (size_t)minibatch * r->T;
    r->tokens = malloc(N * sizeof *r->tokens);
    r->mask = malloc(N);
    r->targets = malloc(N * sizeof *r->targets);
    r->prompt_index = malloc(B * sizeof(int));
    r->resp_len = malloc(B * sizeof(int));
    r->has_eos = malloc(B * sizeof(int));
    r->grammatical = malloc(B * sizeof(int));
    float **f[] = {&r->old_logp, &r->ref_logp, &r->kl, &r->kl_exact, &r->entropy, &r->values, &r->rewards, &r->adv, &r->ret};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) *f[i] = calloc(N, sizeof(float));
    r->score = malloc(B * sizeof(double));
    r->shaped = malloc(B * sizeof(double));
    r->gold = malloc(B * sizeof(double));
    r->text = calloc(B, sizeof(char *));
    r->mb_tokens = malloc(NM * sizeof(int));
    r->mb_targets = malloc(NM * sizeof(int));
    r->mb_mask = malloc(NM);
    r->mb_buf = malloc(NM * sizeof(float));
    r->mb_buf2 = malloc(NM * sizeof(float));
    r->mb_ent = malloc(NM * sizeof(float));
    r->gen = malloc((size_t)B * M * sizeof *r->gen);
    r->gen_lp = malloc((size_t)B * M * sizeof *r->gen_lp);
    r->glen = malloc(B * sizeof *r->glen);
    r->packed = malloc((size_t)B * (P + 1) * sizeof *r->packed);
    int ok = r->gen && r->gen_lp && r->glen && r->packed && r->tokens && r->mask && r->targets && r->prompt_index && r->resp_len && r->has_eos && r->grammatical &&
             r->score && r->shaped && r->gold && r->text && r->mb_tokens && r->mb_targets && r->mb_mask && r->mb_buf &&
             r->mb_buf2 && r->mb_ent;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) ok = ok && *f[i];
    if (!ok) {
        rollout_free(r);
        return leash_fail(LEASH_ENOMEM, "cannot allocate a rollout of %d sequences x %d tokens", B, P + M);
    }
    return LEASH_OK;
}

void rollout_free(rollout *r) {
    for (int b = 0; r->text && b < r->B; b++) free(r->text[b]);
    void *p[] = {r->tokens, r->mask, r->targets, r->prompt_index, r->resp_len, r->has_eos, r->grammatical, r->old_logp,
                 r->ref_logp, r->kl, r->kl_exact, r->entropy, r->values, r->rewards, r->adv, r->ret, r->score, r->shaped,
                 r->gold, r->text, r->mb_tokens, r->mb_targets, r->mb_mask, r->mb_buf, r->mb_buf2, r->mb_ent, r->gen, r->gen_lp, r->glen, r->packed};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    memset(r, 0, sizeof *r);
}

void rollout_gather(rollout *r, const int *rows, int n) {
    int T = r->T;
    for (int k = 0; k < n; k++) {
        memcpy(r->mb_tokens + (size_t)k * T, r->tokens + (size_t)rows[k] * T, T * sizeof(int));
        memcpy(r->mb_targets + (size_t)k * T, r->targets + (size_t)rows[k] * T, T * sizeof(int));
        memcpy(r->mb_mask + (size_t)k * T, r->mask + (size_t)rows[k] * T, T);
    }
}
