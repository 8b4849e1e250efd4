/* GRPO and its family (RLOO, Dr. GRPO, DAPO's clip-higher, GSPO): group-relative advantages and the clipped
 * objective with the KL inside the loss (a sampled estimator through log pi, or the exact full-vocabulary KL
 * through the logits), an entropy bonus: pure functions of the rollout's arrays (the forward, backward and step
 * are rl.c's). TRL's names for every choice (loss_type, scale_rewards, epsilon_high,
 * mask_truncated_completions, importance_sampling_level).
 * See include/leash/rl.h; the rollout layout is in src/rl_internal.h. Dimensions: B rows, T columns, G rows
 * per group (consecutive), M new tokens at most, V vocabulary. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "rl_internal.h"

/* ---- the named choices ----------------------------------------------------------------------- */

typedef struct {
    const char *option, *value;
    size_t off; // the field (an enum) in leash_grpo_config
    int v;
} grpo_choice;

#define F(x) offsetof(leash_grpo_config, x)
static const grpo_choice CHOICES[] = {
    {"baseline", "group", F(baseline), LEASH_BASELINE_GROUP},   {"baseline", "loo", F(baseline), LEASH_BASELINE_LOO},
    {"loss", "grpo", F(loss), LEASH_LOSS_GRPO},                 {"loss", "bnpo", F(loss), LEASH_LOSS_BNPO},
    {"loss", "dapo", F(loss), LEASH_LOSS_BNPO},                 {"loss", "dr_grpo", F(loss), LEASH_LOSS_DR_GRPO},
    {"scale-rewards", "group", F(scale_rewards), LEASH_SCALE_GROUP},
    {"scale-rewards", "batch", F(scale_rewards), LEASH_SCALE_BATCH},
    {"scale-rewards", "none", F(scale_rewards), LEASH_SCALE_NONE},
    {"scale-rewards", "true", F(scale_rewards), LEASH_SCALE_GROUP}, // TRL's older bool
    {"scale-rewards", "false", F(scale_rewards), LEASH_SCALE_NONE},
    {"importance-sampling-level", "token", F(is_level), LEASH_IS_TOKEN},
    {"importance-sampling-level", "sequence", F(is_level), LEASH_IS_SEQUENCE},
};
#undef F
#define N_CHOICES (sizeof CHOICES / sizeof CHOICES[0])

/* "scale_rewards" and "scale-rewards" are the same option (TRL's spelling and the CLI's). */
static int same_option(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (*a != *b && !((*a == '_' || *a == '-') && (*b == '_' || *b == '-'))) return 0;
    return *a == *b;
}

int leash_grpo_choice(leash_grpo_config *c, const char *option, const char *value) {
    char known[160] = "";
    int found = 0;
    for (size_t i = 0; option && i < N_CHOICES; i++) {
        if (!same_option(option, CHOICES[i].option)) continue;
        found = 1;
        if (value && !strcmp(value, CHOICES[i].value)) {
            *(int *)((char *)c + CHOICES[i].off) = CHOICES[i].v;
            return LEASH_OK;
        }
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", known[0] ? ", " : "", CHOICES[i].value);
    }
    if (!found) return leash_fail(LEASH_EINVAL, "GRPO has no choice named \"%s\" (baseline, loss, scale-rewards, "
                                                "importance-sampling-level)", option ? option : "(null)");
    return leash_fail(LEASH_EINVAL, "--%s %s: expected one of %s", option, value ? value : "(null)", known);
}

const char *leash_grpo_choice_name(const leash_grpo_config *c, const char *option) {
    for (size_t i = 0; option && i < N_CHOICES; i++)
        if (same_option(option, CHOICES[i].option) && *(const int *)((const char *)c + CHOICES[i].off) == CHOICES[i].v)
            return CHOICES[i].value;
    return "?";
}

int grpo_config_check(const leash_grpo_config *c, double clip_eps) {
    if ((unsigned)c->baseline > LEASH_BASELINE_LOO || (unsigned)c->scale_rewards > LEASH_SCALE_BATCH ||
        (unsigned)c->loss > LEASH_LOSS_DR_GRPO || (unsigned)c->is_level > LEASH_IS_SEQUENCE)
        return leash_fail(LEASH_EINVAL, "GRPO: baseline %d, scale_rewards %d, loss %d or importance_sampling_level %d is "
                                        "out of range (set them with leash_grpo_choice)",
                          (int)c->baseline, (int)c->scale_rewards, (int)c->loss, (int)c->is_level);
    if (c->epsilon_high != 0.0f && !(c->epsilon_high >= clip_eps && c->epsilon_high < 100))
        return leash_fail(LEASH_EINVAL, "--epsilon-high %g: it must be >= --clip %g (DAPO's clip-higher raises the upper "
                                        "clip only; 0: the same as --clip)",
                          (double)c->epsilon_high, clip_eps);
    if (!(c->entropy_coef >= 0 && c->entropy_coef < 1e6))
        return leash_fail(LEASH_EINVAL, "--entropy-coef %g; it must be >= 0", (double)c->entropy_coef);
    return LEASH_OK;
}

/* ---- advantages ------------------------------------------------------------------------------ */

/* The sample std (n - 1) of x[0..n). */
static double sample_std(const double *x, int n) {
    double m = 0, s2 = 0;
    for (int k = 0; k < n; k++) m += x[k];
    m /= n;
    for (int k = 0; k < n; k++) s2 += (x[k] - m) * (x[k] - m);
    return n > 1 ? sqrt(s2 / (n - 1)) : 0.0;
}

int grpo_advantages(rollout *r, const leash_grpo_config *c) {
    int G = c->group, T = r->T;
    double batch_sd = sample_std(r->shaped, r->B); // TRL's scale_rewards="batch": the std of every reward
    for (int g0 = 0; g0 < r->B; g0 += G) {
        double m = 0, s2 = 0;
        for (int k = 0; k < G; k++) m += r->shaped[g0 + k];
        double sum = m;
        m /= G;
        for (int k = 0; k < G; k++) s2 += (r->shaped[g0 + k] - m) * (r->shaped[g0 + k] - m);
        double sd = G > 1 ? sqrt(s2 / (G - 1)) : 0.0; // the sample std, as the paper's implementation
        for (int k = 0; k < G; k++) {
            // RLOO: r_i minus the mean of the other G - 1, G / (G - 1) times r_i minus the group mean
            double a = c->baseline == LEASH_BASELINE_LOO ? r->shaped[g0 + k] - (sum - r->shaped[g0 + k]) / (G - 1)
                                                          : r->shaped[g0 + k] - m;
            if (c->scale_rewards == LEASH_SCALE_GROUP) a /= sd + 1e-4;
            else if (c->scale_rewards == LEASH_SCALE_BATCH) a /= batch_sd + 1e-4;
            for (int t = 0; t < T; t++) r->adv[(long)(g0 + k) * T + t] = r->targets[(long)(g0 + k) * T + t] >= 0 ? (float)a : 0.0f;
        }
    }
    return LEASH_OK;
}

/* ---- the loss's weights ---------------------------------------------------------------------- */

/* Response tokens of row b of the rollout. */
static int row_len(const rollout *r, int b) {
    int len = 0;
    for (int t = 0; t < r->T; t++) len += r->targets[(long)b * r->T + t] >= 0;
    return len;
}

static int masked(const rollout *r, const leash_grpo_config *c, int b) { return c->mask_truncated && !r->has_eos[b]; }

/* The minibatch rows[0..n)'s counts behind the loss's weights: S sequences that have a token (masked ones
 * included, as TRL's) and the unmasked tokens. Every rank computes the same. */
typedef struct {
    int nseq;
    long ntok;
} loss_counts;

static loss_counts count_minibatch(const rollout *r, const leash_grpo_config *c, const int *rows, int n) {
    loss_counts m = {0, 0};
    for (int k = 0; k < n; k++) {
        int L = row_len(r, rows[k]);
        m.nseq += L > 0, m.ntok += masked(r, c, rows[k]) ? 0 : L;
    }
    return m;
}

/* The weight of each token of row b in the minibatch's loss (the same for every token of a row): per sequence
 * 1 / (len x S), per token 1 / (the unmasked tokens), Dr. GRPO 1 / (S x M); 0 for a masked row. */
static double row_weight(const rollout *r, const leash_grpo_config *c, loss_counts m, int b) {
    int len = row_len(r, b);
    if (masked(r, c, b) || !len) return 0.0;
    switch (c->loss) {
    case LEASH_LOSS_BNPO: return 1.0 / m.ntok;
    case LEASH_LOSS_DR_GRPO: return 1.0 / ((double)m.nseq * r->M);
    case LEASH_LOSS_GRPO: break;
    }
    return 1.0 / ((double)len * m.nseq);
}

/* GSPO: the sequence's mean log-ratio, the one importance ratio of all its tokens. */
static double sequence_log_ratio(const rollout *r, int k, int src_row, const float *newlp) {
    double s = 0;
    int len = 0;
    for (int t = 0; t < r->T; t++) {
        long i = (long)k * r->T + t;
        if (r->mb_targets[i] < 0) continue;
        s += (double)newlp[i] - r->old_logp[(long)src_row * r->T + t], len++;
    }
    return len ? s / len : 0.0;
}

/* ---- the loss -------------------------------------------------------------------------------- */

void grpo_policy_loss(const rollout *r, const leash_grpo_config *c, leash_kl_estimator est, double clip_eps, double beta,
                      const int *rows, int n, int lo, int hi, long ntok, const float *newlp, float *dlogp, update_stats *st) {
    int T = r->T;
    long mine = 0;
    double eps_high = c->epsilon_high > 0.0f ? c->epsilon_high : clip_eps;
    loss_counts m = count_minibatch(r, c, rows, n);
    for (int k = 0; k < hi - lo; k++) {
        int b = rows[lo + k];
        // per sequence (paper): each sequence's token mean, averaged over sequences; per token: one mean
        double w = row_weight(r, c, m, b);
        double seq_lr = c->is_level == LEASH_IS_SEQUENCE ? sequence_log_ratio(r, k, b, newlp) : 0.0;
        // the exact KL's score-function part: the KL still to come after token t (the rollout's exact KL)
        double future = 0.0;
        if (est == LEASH_KL_EXACT)
            for (int t = 0; t < T; t++) future += r->mb_targets[(long)k * T + t] >= 0 ? r->kl_exact[(long)b * T + t] : 0.0;
        for (int t = 0; t < T; t++) {
            long i = (long)k * T + t, src = (long)b * T + t;
            dlogp[i] = 0.0f;
            if (r->mb_targets[i] < 0 || masked(r, c, b)) continue;
            double d, A = r->adv[src];
            // GSPO: every token's ratio is the sequence's, exp(mean log-ratio); d loss / d newlp_t is then
            // sum_t' w d(surrogate)/d(seq log-ratio) / len = w x d(surrogate)/d(seq log-ratio), as per token
            double lp = c->is_level == LEASH_IS_SEQUENCE ? seq_lr : newlp[i];
            double old = c->is_level == LEASH_IS_SEQUENCE ? 0.0 : r->old_logp[src];
            double pg = ppo_clipped_surrogate(A, lp, old, clip_eps, eps_high, st, &d);
            // KL inside the loss, differentiated through log pi: k3 = (r - 1) - log r (the paper; its expected
            // gradient is that of the reverse KL(pi_ref || pi)), k2 = (log r)^2 / 2 (expected gradient: exactly
            // that of KL(pi || pi_ref)), or k3+ (k3's value, k2's gradient), with log r = log pi_ref - log pi;
            // the exact KL is grpo_logits_loss's
            double kl = 0.0, dk = 0.0;
            if (est != LEASH_KL_EXACT) {
                kl = leash_kl_estimate(est, newlp[i], r->ref_logp[src]);
                dk = leash_kl_estimate_grad(est, newlp[i], r->ref_logp[src]);
                st->kl_clamped += leash_kl_estimate_clamped(est, newlp[i], r->ref_logp[src]);
            } else { // grad sum_t KL_t = sum_t (grad KL_t at s_t: grpo_logits_loss) + sum_t KL_t grad log pi(y_<t):
                // token t's log-prob gets the exact KL of the states after it (a gradient-only term, as REINFORCE's)
                future -= r->kl_exact[src];
                dk = future;
            }
            // TRL's metrics: the token mean over the whole minibatch of the KL estimate and of the clipped shares
            double ratio = exp(lp - old);
            int low = ratio < 1.0 - clip_eps && A < 0, high = ratio > 1.0 + eps_high && A > 0;
            st->kl_mean += kl / ntok, st->clip_low += (double)low / ntok, st->clip_high += (double)high / ntok;
            st->clip_region += (double)(low || high) / ntok;
            st->policy_loss += pg + beta * kl;
            st->loss_opt += w * (pg + beta * kl); // the loss this update optimises, with its own weights
            dlogp[i] = (float)(w * (d + beta * dk));
            mine++;
        }
    }
    st->tokens += mine;
}

int grpo_logits_loss(const rollout *r, const leash_grpo_config *c, leash_kl_estimator est, double beta, float temperature,
                     const int *rows, int n, int lo, int hi, long ntok, const float *logits, const float *ref_logits, int V,
                     float *dlogits, update_stats *st) {
    int exact = est == LEASH_KL_EXACT && beta != 0.0, T = r->T, rc = LEASH_OK;
    double ec = c->entropy_coef;
    if (!exact && ec == 0.0) return LEASH_OK;
    if (exact && !ref_logits) return leash_fail(LEASH_EINVAL, "the exact KL in the loss needs the reference's logits");
    float *g = exact ? malloc((size_t)V * sizeof *g) : NULL; // d KL / d logits of one token
    if (exact && !g) return leash_fail(LEASH_ENOMEM, "out of memory");
    loss_counts m = count_minibatch(r, c, rows, n);
    for (int k = 0; k < hi - lo && !rc; k++) {
        int b = rows[lo + k];
        double w = row_weight(r, c, m, b);
        for (int t = 0; t < T && !rc; t++) {
            long i = (long)k * T + t;
            if (r->mb_targets[i] < 0 || w == 0.0) continue;
            const float *z = logits + i * V;
            float *dz = dlogits + i * V;
            if (exact) { // + w beta KL(pi || pi_ref), its gradient (1/T) pi (log pi - log pi_ref - KL)
                double kl;
                if ((rc = leash_kl_exact(z, ref_logits + i * V, V, temperature, &kl, g))) break;
                for (int v = 0; v < V; v++) dz[v] += (float)(w * beta * g[v]);
                st->kl_mean += kl / ntok, st->policy_loss += beta * kl, st->loss_opt += w * beta * kl;
            }
            if (ec != 0.0) { // - w coef H(pi); dH/dz = -(1/T) pi (log pi + H)
                double lse, h;
                if ((rc = leash_logsumexp(z, V, temperature, &lse)) || (rc = leash_entropy(z, V, temperature, &h))) break;
                for (int v = 0; v < V; v++) {
                    double lp = z[v] / (double)temperature - lse;
                    dz[v] += (float)(w * ec / temperature * exp(lp) * (lp + h));
                }
                st->policy_loss -= ec * h, st->loss_opt -= w * ec * h;
            }
        }
    }
    free(g);
    return rc ? leash_fail_wrap(rc, "GRPO's %s in the loss", exact ? "exact KL" : "entropy bonus") : LEASH_OK;
}
