/* Shared between rollout.c, ppo.c, grpo.c and rl.c: the rollout of one RL step. Not a public header.
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

#include "leash/dist.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/klwatch.h"
#include "leash/optim.h"
#include "leash/rl.h"
#include "leash/tokenizer.h"

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
    // minibatch gather buffers (minibatch rows)
    int *mb_tokens, *mb_targets;
    uint8_t *mb_mask;
    float *mb_buf, *mb_buf2; // (minibatch, T)
} rollout;



/* One update of the policy (and value model) over rows[0..n) of r; sums into the loss statistics. */
typedef struct {
    double policy_loss, value_loss, clipfrac, approxkl, ratio;
    double first_ratio_dev; // max |ratio - 1| over the first minibatch of the first epoch: 0 when rollout and
                            // training agree (old policy = current policy)
    long tokens, updates;
    long ratio_clamped;     // tokens whose |log ratio| exceeded LEASH_KL_LOG_RATIO_MAX (clamped there)
    long kl_clamped;        // GRPO: tokens whose k3 inside the loss ran on its tangent line
} update_stats;

int rollout_alloc(rollout *r, int B, int P, int M, int minibatch);
void rollout_free(rollout *r);
/* The clipped surrogate of one token (PPO and GRPO): returns max(-A ratio, -A clip(ratio, 1 +- eps)) and
 * its derivative with respect to the new log-prob in *dloss (0 where the clipped term is the max: the clip
 * is active), and adds the token to the statistics. The log-ratio is clamped to +-LEASH_KL_LOG_RATIO_MAX
 * (counted) so that exp() cannot overflow into an infinite loss. */
static inline double clipped_surrogate(double A, double newlp, double oldlp, double eps, update_stats *st, double *dloss) {
    double logratio = newlp - oldlp;
    if (fabs(logratio) > LEASH_KL_LOG_RATIO_MAX) {
        logratio = logratio > 0 ? LEASH_KL_LOG_RATIO_MAX : -LEASH_KL_LOG_RATIO_MAX;
        st->ratio_clamped++;
    }
    double ratio = exp(logratio);
    double clipped = ratio < 1 - eps ? 1 - eps : ratio > 1 + eps ? 1 + eps : ratio;
    double pg1 = -A * ratio, pg2 = -A * clipped;
    int clip_active = pg2 > pg1;
    st->clipfrac += clip_active;
    st->approxkl += 0.5 * logratio * logratio;
    st->ratio += ratio;
    if (st->updates == 0 && fabs(ratio - 1.0) > st->first_ratio_dev) st->first_ratio_dev = fabs(ratio - 1.0);
    *dloss = clip_active ? 0.0 : -A * ratio;
    return clip_active ? pg2 : pg1;
}

/* Gathers rows into r->mb_* buffers. */
void rollout_gather(rollout *r, const int *rows, int n);

/* The part rows[*lo..*hi) of a minibatch of n rows that this rank computes (all of it in one process). Every
 * rank knows the whole minibatch, so losses are normalised by its global token and sequence counts and the
 * sum of the ranks' gradients is the minibatch's gradient. */
static inline void local_part(int n, int *lo, int *hi) { leash_dist_split(n, leash_dist_rank(), leash_dist_size(), lo, hi); }

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

/* Gathers this rank's part of the minibatch into r->mb_*: returns its number of rows, its first in *lo. */
static inline int gather_local_part(rollout *r, const int *rows, int n, int *lo) {
    int hi;
    local_part(n, lo, &hi);
    rollout_gather(r, rows + *lo, hi - *lo);
    return hi - *lo;
}

/* The policy's side of an update: log-probs of the gathered minibatch part (n rows) at the rollout
 * temperature into r->mb_buf, then, with d loss / d log-prob in r->mb_buf2, backward, the gradient summed
 * over the ranks (one call over the whole gradient block) and one AdamW step. n = 0: this rank has no rows
 * in this minibatch and contributes a zero gradient. */
static inline int policy_logprobs(rollout *r, const leash_rl_config *c, leash_gpt *policy, int n) {
    leash_gpt_zero_grad(policy);
    if (!n) return LEASH_OK;
    int rc = leash_gpt_forward(policy, r->mb_tokens, r->mb_mask, n, r->T);
    return rc ? rc : leash_gpt_token_logprobs(policy, r->mb_targets, c->temperature, r->mb_buf, NULL);
}
/* Sums the gradient over the ranks and steps the model. */
static inline int step_summed(leash_gpt *m, void *opt, const char *what) {
    int rc = leash_dist_sum_f32(leash_gpt_grads(m), leash_gpt_num_trainable(m), what);
    return rc ? rc : leash_adamw_step(opt, m, NULL, NULL);
}
static inline int policy_step(rollout *r, const leash_rl_config *c, leash_gpt *policy, void *popt, int n) {
    int rc = LEASH_OK;
    if (n) {
        rc = leash_gpt_token_logprobs_backward(policy, r->mb_targets, c->temperature, r->mb_buf2);
        if (!rc) rc = leash_gpt_backward(policy);
    }
    return rc ? rc : step_summed(policy, popt, "policy gradients");
}

/* Checkpoints (src/rl_checkpoint.c): everything of a run that is not a function of (seed, step). */
typedef struct {
    int step;             // steps done
    leash_beta_ctl beta;  // the controller as it stands after `step` steps
    leash_klwatch watch;
    int alarm;
    long skipped;         // batches and updates skipped for a non-finite value (skip_nonfinite)
    double *hist;         // (4 x steps) proxy, gold, grammatical, reference NLL of each step done
} rl_state;

/* Writes OUT/checkpoint atomically as a set (value and vopt may be NULL: GRPO). */
int rl_checkpoint_save(const char *out_dir, const leash_rl_config *c, const leash_gpt *policy, const leash_gpt *value,
                       const leash_adamw *popt, const leash_adamw *vopt, const rl_state *st);
/* Loads OUT/checkpoint into the run's models, optimisers and state (st->hist must hold 4 x c->steps);
 * fails, naming the setting, when the checkpoint was written with other settings. */
int rl_checkpoint_load(const char *out_dir, const leash_rl_config *c, leash_gpt *policy, leash_gpt *value,
                       leash_adamw *popt, leash_adamw *vopt, rl_state *st);

int ppo_advantages(rollout *r, const leash_rl_config *c, double beta);
int ppo_update(rollout *r, const leash_rl_config *c, leash_gpt *policy, leash_gpt *value, void *popt, void *vopt,
               const int *rows, int n, update_stats *st);
int grpo_advantages(rollout *r, const leash_rl_config *c);
int grpo_update(rollout *r, const leash_rl_config *c, double beta, leash_gpt *policy, void *popt, const int *rows, int n,
                update_stats *st);

#endif
