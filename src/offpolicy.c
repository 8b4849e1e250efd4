/* Off-policy correction of an RL step's updates (docs/rl.md, "Off-policy correction"): the ratio of the policy
 * in each update to the distribution the sampler drew every response token from (policy/is_ratio_*), and TRL's
 * truncated importance sampling (--tis-cap, --tis-mode). See src/rl_internal.h.
 * Dimensions: B rows, P prompt columns, M new tokens, T = P + M. Response token j of row b is drawn with
 * log-prob gen_lp[b, j] and scored at t = P + j - 1 (old_logp, adv, targets). */
#include <math.h>
#include <string.h>

#include "leash/error.h"
#include "rl_internal.h"

static const char *const TIS_NAMES[] = {"token_truncate", "token_mask", "sequence_truncate", "sequence_mask"};

int leash_tis_mode_parse(const char *name, leash_tis_mode *mode) {
    for (int i = 0; i < 4; i++)
        if (name && !strcmp(name, TIS_NAMES[i])) return *mode = (leash_tis_mode)i, LEASH_OK;
    return leash_fail(LEASH_EINVAL, "--tis-mode \"%s\": expected token_truncate (the default), token_mask, sequence_truncate "
                                    "or sequence_mask (TRL's vllm_importance_sampling_mode)",
                      name ? name : "(null)");
}

const char *leash_tis_mode_name(leash_tis_mode mode) { return mode >= 0 && mode < 4 ? TIS_NAMES[mode] : "?"; }

/* log pi_old - log pi_sample of response token j of row b. */
static double log_gap(const rollout *r, int b, int j) {
    return (double)r->old_logp[(long)b * r->T + r->P + j - 1] - r->gen_lp[(long)b * r->M + j];
}

void offpolicy_tis(rollout *r, float cap, leash_tis_mode mode, tis_stats *out) {
    *out = (tis_stats){0};
    int seq = mode == LEASH_TIS_SEQUENCE_TRUNCATE || mode == LEASH_TIS_SEQUENCE_MASK;
    int mask = mode == LEASH_TIS_TOKEN_MASK || mode == LEASH_TIS_SEQUENCE_MASK;
    for (int b = 0; b < r->B; b++) {
        int L = r->resp_len[b];
        double seq_gap = 0.0;
        for (int j = 0; seq && j < L; j++) seq_gap += log_gap(r, b, j);
        for (int j = 0; j < L; j++) {
            // the ratio of a sequence is the product over its tokens; exp of a log above the cap's is the cap's
            double g = seq ? seq_gap : log_gap(r, b, j), w = g > log(cap) ? (mask ? 0.0 : cap) : exp(g);
            if (!seq || j == 0) out->w_sum += w, out->n++, out->cut += g > log(cap);
            // weighting the advantage weights the clipped surrogate: max(-wA r, -wA clip(r)) = w max(-A r, -A clip(r))
            // for w >= 0, and w is fixed within the step (pi_old and pi_sample are)
            r->adv[(long)b * r->T + r->P + j - 1] *= (float)w;
        }
    }
}

void offpolicy_is_ratio(const rollout *r, const int *rows, int n, const float *newlp, update_stats *st) {
    int T = r->T, P = r->P;
    for (int k = 0; k < n; k++)
        for (int t = P - 1; t < T; t++) {
            long i = (long)k * T + t;
            if (r->mb_targets[i] < 0) continue;
            double lr = (double)newlp[i] - r->gen_lp[(long)rows[k] * r->M + t - P + 1];
            // clamped as the surrogate's log-ratio is, so that the metric stays a finite number
            if (fabs(lr) > LEASH_KL_LOG_RATIO_MAX) lr = lr > 0 ? LEASH_KL_LOG_RATIO_MAX : -LEASH_KL_LOG_RATIO_MAX;
            double x = exp(lr);
            st->is_sum += x, st->is_n++;
            if (x > st->is_max) st->is_max = x;
            if (x < st->is_min) st->is_min = x;
        }
}

void offpolicy_metrics(leash_metrics *t, const leash_rl_config *c, const rollout *r, const update_stats *st, const tis_stats *tis) {
    leash_metrics_real(t, "policy/is_ratio_mean", "%.8f", st->is_n ? st->is_sum / st->is_n : NAN);
    leash_metrics_real(t, "policy/is_ratio_min", "%.8f", st->is_n ? st->is_min : NAN);
    leash_metrics_real(t, "policy/is_ratio_max", "%.8f", st->is_n ? st->is_max : NAN);
    if (c->top_k > 0 || c->top_p < 1.0f) leash_metrics_int(t, "sampling/outside_set", r->outside_set);
    if (!(c->tis_cap > 0)) return;
    leash_metrics_real(t, "policy/tis_weight_mean", "%.8f", tis->n ? tis->w_sum / tis->n : NAN);
    leash_metrics_real(t, "policy/tis_cut_frac", "%.6f", tis->n ? (double)tis->cut / tis->n : NAN);
}
