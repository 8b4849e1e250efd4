/* Shared between rollout.c, ppo.c, grpo.c and rl.c: the rollout of one RL step, the run it belongs to, the
 * losses. Not a public header.
 *
 * Layout: row b holds its prompt left-padded to P columns, then its response from column P on, then
 * padding. Every per-token array (B, T) is indexed by the *input* position t whose next token is a
 * response token: response token j of row b sits at column P + j and its log-prob, KL, value, reward and
 * advantage live at t = P + j - 1, where targets[b, t] = that token. targets is -1 everywhere else, which
 * keeps prompt and padding out of every sum.
 */
#ifndef LEASH_RL_INTERNAL_H
#define LEASH_RL_INTERNAL_H

#include <math.h>

#include "leash/error.h"
#include "leash/data.h"
#include "leash/gpt.h"
#include "leash/klwatch.h"
#include "leash/optim.h"
#include "leash/rl.h"
#include "leash/tokenizer.h"
#include "scorer.h"

typedef struct {
    int B, P, M, T;
    int *tokens;      // (B, T)
    uint8_t *mask;    // (B, T) real tokens
    int *targets;     // (B, T) the response token predicted at t, or -1
    int *prompt_index; // (B)
    int *resp_len;    // (B) response tokens, EOS included
    int *has_eos;     // (B)
    float *old_logp;  // (B, T) policy at temperature, recomputed in the update's own batch shapes
    float *ref_logp;  // (B, T) frozen reference at temperature
    float *kl;        // (B, T) the per-token KL the algorithm uses
    float *kl_exact;  // (B, T) exact full-vocabulary KL
    float *entropy;   // (B, T) policy entropy at temperature
    float *values;    // (B, T) PPO value model
    float *rewards;   // (B, T) PPO per-token rewards
    float *adv;       // (B, T) advantages
    float *ret;       // (B, T) PPO returns
    double *score;    // (B) raw score (reward model or gold)
    double *shaped;   // (B) the score after shaping
    double *gold;     // (B) gold reward (NAN without the world)
    int *grammatical; // (B)
    char **text;      // (B) response text (valid UTF-8)
    long kl_clamped;  // tokens whose k3 ran on its tangent line
    long outside_set; // top-k / top-p: sampled tokens outside the set their scoring computed (kept; rollout_truncate)
    int *gen;         // (B, M) sampled response tokens
    float *gen_lp;    // (B, M) their log-probs at sampling
    int *glen;        // (B) sampled tokens of each row
    int *packed;      // (B * (P + 1)) this rank's prompts, packed for sampling
    // minibatch gather buffers (minibatch rows)
    int *mb_tokens, *mb_targets;
    uint8_t *mb_mask;
    float *mb_buf, *mb_buf2; // (minibatch, T)
    float *mb_ent;           // (minibatch, T) GRPO: the policy's entropy in the update (TRL's "entropy")
} rollout;

/* The statistics of a step's updates, summed over its minibatches (and then over the ranks). */
typedef struct {
    double policy_loss, value_loss, clipfrac, approxkl, ratio;
    double first_ratio_dev; // max |ratio - 1| over the first minibatch of the first epoch: 0 when rollout and
                            // training agree (old policy = current policy)
    long tokens, updates;
    long ratio_clamped;     // tokens whose |log ratio| exceeded LEASH_KL_LOG_RATIO_MAX (clamped there)
    long kl_clamped;        // GRPO: tokens whose k3 inside the loss ran on its tangent line
    // TRL's GRPO metrics: sums over updates of each update's token mean over its whole minibatch (a rank adds
    // its part / the minibatch's tokens), of the KL estimate in the loss, the policy's entropy, and the shares
    // of tokens clipped below (ratio < 1 - eps, A < 0), above (ratio > 1 + eps, A > 0) and either
    double kl_mean, ent_mean, clip_low, clip_high, clip_region;
    double loss_opt;      // GRPO: the loss each update optimised (per sequence or per token), summed over updates
    double grad_norm_sum; // the policy's gradient norms before clipping, summed over updates (the same on every rank)
    double lr;            // the learning rate of the last policy update
    // policy/is_ratio_*: pi_theta / pi_sample of every response token in every update (src/offpolicy.c): the sum,
    // count, largest and smallest (is_min starts at +inf)
    double is_sum, is_n, is_max, is_min;
} update_stats;

/* Truncated importance sampling's weights of a step (src/offpolicy.c): their sum and count (tokens, or
 * sequences in the sequence modes) and how many were above the cap (truncated or masked). */
typedef struct {
    double w_sum;
    long n, cut;
} tis_stats;

/* Off-policy correction (src/offpolicy.c). offpolicy_tis: TRL's truncated importance sampling, each response
 * token's advantage (so its clipped surrogate) times w = pi_old / pi_sample (old_logp over gen_lp; per token,
 * or the product over the response in the sequence modes), w = cap above the cap (truncate) or 0 (mask).
 * offpolicy_is_ratio: adds pi_theta / pi_sample of the gathered rows[0..n) (newlp (n, T)) to st. */
void offpolicy_tis(rollout *r, float cap, leash_tis_mode mode, tis_stats *out);
void offpolicy_is_ratio(const rollout *r, const int *rows, int n, const float *newlp, update_stats *st);
/* policy/is_ratio_{mean,min,max} always; policy/tis_weight_mean and policy/tis_cut_frac with --tis-cap;
 * sampling/outside_set with top-k or top-p (rollout_truncate). */
void offpolicy_metrics(leash_metrics *t, const leash_rl_config *c, const rollout *r, const update_stats *st, const tis_stats *tis);

/* top-k / top-p (c->top_k, c->top_p): the policy's logits of its last forward (n, T, V) truncated at every
 * position with a target as the sampler truncated them (leash_sample_mask_rows), so that its log-probs, their
 * backward, its entropy and KL are those of the distribution the rollout drew from; *outside: targets that were
 * outside their position's set (kept). Nothing to do without truncation. */
int rollout_truncate(leash_gpt *policy, const int *targets, int n, int T, const leash_rl_config *c, long *outside);

int rollout_alloc(rollout *r, int B, int P, int M, int minibatch);
void rollout_free(rollout *r);
/* Gathers rows into r->mb_* buffers. */
void rollout_gather(rollout *r, const int *rows, int n);

/* The response tokens of the whole minibatch rows[0..n) (and in *nseq, if not NULL, its sequences with at
 * least one): every rank counts the same, so losses normalised by them sum to the minibatch's. */
static inline long minibatch_tokens(const rollout *r, const int *rows, int n, int *nseq) {
    long ntok = 0;
    int seqs = 0;
    for (int k = 0; k < n; k++) {
        int len = 0;
        for (int t = 0; t < r->T; t++) len += r->targets[(long)rows[k] * r->T + t] >= 0;
        ntok += len, seqs += len > 0;
    }
    if (nseq) *nseq = seqs;
    return ntok;
}

/* A run's models, tokenizers, prompts, reward command and rollout (rl.c sets them up; rollout.c collects). */
typedef struct {
    leash_gpt *policy, *ref, *rm, *value; // ref NULL: the LoRA policy with its adapters off
    float *ref_logits;                     // LoRA: (mb, T, V) the reference's logits of a scoring chunk
    int *text_ids;                         // (M) a response's ids that the tokenizer has, for decoding
    leash_tokenizer *tok, *rm_tok;
    leash_adamw popt, vopt;
    leash_table prompts;
    int **pids, *plen; // tokenised prompts
    int eos, R, mb;
    int *own, n_own;  // the rows this rank generates, scores and rewards (all of them in one process)
    int accum;        // micro-batches per update (--grad-accum; 1: off)
    int *run_len, n_runs; // s->own in scoring runs: this rank's micro-batches of the first epoch, in order
    rollout r;
    rl_scorers scorers;   // the reward commands, when the reward is LEASH_REWARD_COMMAND (src/scorer.h)
} rl_run;

/* Collects one step's batch into s->r (src/rollout.c): samples, scores (unless score is 0: the update's forward
 * will, through rollout_score_run and rollout_score_finish), rewards. phase[0] rollout, [1] policy + reference
 * scoring (and values), [2] rewards: seconds, accumulated. *logprob_gap: max |log-prob at sampling - log-prob
 * recomputed for training|. */
int rollout_collect(rl_run *s, const leash_rl_config *c, int step, int score, double *logprob_gap, double *phase);
/* Scores rows[0..n), consecutive rows (rows[k] = rows[0] + k; one of this rank's scoring runs, s->run_len): the policy's log-probs
 * and entropies, the reference's log-probs, the exact KL, PPO's values, into the rollout's arrays; leaves the
 * rows gathered in r->mb_*, the policy's forward of them (truncated as the sampler's) in the policy and the
 * reference's logits in the reference (LoRA: s->ref_logits). */
int rollout_score_run(rl_run *s, const leash_rl_config *c, const int *rows, int n);
/* After every run: the rows put together over the ranks, *logprob_gap, the per-token KL the algorithm uses
 * (LEASH_ENUMERIC when one is not finite). */
int rollout_score_finish(rl_run *s, const leash_rl_config *c, int step, double *logprob_gap);
/* The per-token KL of rows first .. first + n - 1 as rollout_score_finish computes it, and the same failure
 * where one is not finite (a single process scoring in the update checks each run before its loss). */
int rollout_kl_rows(rollout *r, const leash_rl_config *c, int step, long first, long n);

/* Checkpoints (src/rl_checkpoint.c): everything of a run that is not a function of (seed, step). */
typedef struct {
    int step;             // steps done
    leash_beta_ctl beta;  // the controller as it stands after `step` steps
    leash_klwatch watch;
    int alarm;
    long skipped;         // batches and updates skipped for a non-finite value (skip_nonfinite)
    double *hist;         // (4 x steps) proxy, gold, grammatical, reference NLL of each step done
    double num_tokens;    // prompt and response tokens of every row so far (TRL's num_tokens); NAN: a checkpoint
                          // from before it was kept (logged as null from then on)
    leash_gpt *ref_model; // --ref-sync-every: the model whose parameter block holds the refreshed reference (the
                          // reference, or with LoRA the policy's base), saved once refreshed; NULL: not kept
} rl_state;

/* Reference refresh (src/ref_sync.c). ref_sync_check: the options alone; ref_sync_ready: with the models
 * loaded (LoRA: alpha 1 and no --ref; else the reference of the policy's shape); ref_sync_step: ref <- alpha
 * policy + (1 - alpha) ref, or the LoRA merge; ref_sync_holder: the model holding the reference once
 * steps_done steps have refreshed it (NULL before, or without refresh); ref_sync_metrics: ref/syncs, the
 * refreshes before step `step` (0-based) was collected; ref_sync_save / _load: DIR/reference.safetensors. */
int ref_sync_check(const leash_rl_config *c);
int ref_sync_ready(const rl_run *s, const leash_rl_config *c);
int ref_sync_step(rl_run *s, const leash_rl_config *c);
leash_gpt *ref_sync_holder(rl_run *s, const leash_rl_config *c, int steps_done);
void ref_sync_metrics(leash_metrics *t, const leash_rl_config *c, int step);
int ref_sync_save(leash_gpt *holder, const char *dir);
int ref_sync_load(leash_gpt *holder, const char *dir);

/* Writes OUT/checkpoint atomically as a set (value and vopt may be NULL: GRPO). */
int rl_checkpoint_save(const char *out_dir, const leash_rl_config *c, const leash_gpt *policy, const leash_gpt *value,
                       const leash_adamw *popt, const leash_adamw *vopt, const rl_state *st);
/* Loads OUT/checkpoint into the run's models, optimisers and state (st->hist must hold 4 x c->steps);
 * fails, naming the setting, when the checkpoint was written with other settings. */
int rl_checkpoint_load(const char *out_dir, const leash_rl_config *c, leash_gpt *policy, leash_gpt *value,
                       leash_adamw *popt, leash_adamw *vopt, rl_state *st);

/* The losses (src/ppo.c, src/grpo.c): pure functions of the rollout's arrays. A minibatch part is rows[0..n)
 * of r, gathered in r->mb_* (rollout_gather); newlp (n, T) are the policy's log-probs of its targets now, and
 * the loss writes d loss / d newlp into dlogp (n, T), normalised by the whole minibatch's ntok response
 * tokens (nseq sequences) so that the ranks' gradients sum to the minibatch's. Each adds to *st. */
int ppo_advantages(rollout *r, const leash_ppo_config *c, double beta);
/* The clipped surrogate of one token (PPO and GRPO): returns max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps_high))
 * (eps_high = eps but for DAPO's clip-higher) and its derivative with respect to the new log-prob in *dloss (0 where the clipped term is the max: the clip
 * is active), and adds the token to the statistics. The log-ratio is clamped to +-LEASH_KL_LOG_RATIO_MAX
 * (counted) so that exp() cannot overflow into an infinite loss. */
double ppo_clipped_surrogate(double A, double newlp, double oldlp, double eps, double eps_high, update_stats *st, double *dloss);
void ppo_policy_loss(const rollout *r, const int *rows, int n, long ntok, double clip_eps, const float *newlp, float *dlogp,
                     update_stats *st);
/* The clipped value loss on the same tokens: v (n, T) the value model's outputs, dv (n, T) d loss / d v. */
void ppo_value_loss(const rollout *r, const int *rows, int n, long ntok, double value_clip, double vf_coef, const float *v,
                    float *dv, update_stats *st);
/* GRPO's options that fit together (the clip's upper epsilon, the entropy coefficient, the enums' ranges). */
int grpo_config_check(const leash_grpo_config *c, double clip_eps);
int grpo_advantages(rollout *r, const leash_grpo_config *c);
/* The clipped surrogate with beta times the KL estimator of the policy to the reference inside the loss
 * (for LEASH_KL_EXACT only its score-function part, the exact KL still to come after each token on that
 * token's log-prob; grpo_logits_loss has the rest). rows[0..n) is the whole minibatch, of which this rank
 * computes rows[lo..hi), gathered (newlp and dlogp are (hi - lo, T)); ntok: the minibatch's response tokens
 * (TRL's per-token metrics). */
void grpo_policy_loss(const rollout *r, const leash_grpo_config *c, leash_kl_estimator est, double clip_eps, double beta,
                      const int *rows, int n, int lo, int hi, long ntok, const float *newlp, float *dlogp, update_stats *st);
/* The loss's terms that need the whole distribution at each response token, added into dlogits (hi - lo, T, V)
 * from the policy's logits (same shape): beta x the exact KL(pi || pi_ref) when est is LEASH_KL_EXACT
 * (ref_logits: the reference's, same shape), and -entropy_coef x the entropy; the same weights as the loss's
 * other terms. Nothing to do (neither asked for): returns at once. */
int grpo_logits_loss(const rollout *r, const leash_grpo_config *c, leash_kl_estimator est, double beta, float temperature,
                     const int *rows, int n, int lo, int hi, long ntok, const float *logits, const float *ref_logits, int V,
                     float *dlogits, update_stats *st);

#endif
