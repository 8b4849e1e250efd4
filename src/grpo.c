/* GRPO: group-relative advantages and the clipped objective with the KL (k3) inside the loss: pure functions
 * of the rollout's arrays (the forward, backward and step are rl.c's).
 * See include/leash/rl.h; the rollout layout is in src/rl_internal.h. Dimensions: B rows, T columns,
 * G rows per group (consecutive). */
#include <math.h>

#include "leash/error.h"
#include "rl_internal.h"

int grpo_advantages(rollout *r, const leash_grpo_config *c) {
    int G = c->group, T = r->T;
    for (int g0 = 0; g0 < r->B; g0 += G) {
        double m = 0, s2 = 0;
        for (int k = 0; k < G; k++) m += r->shaped[g0 + k];
        m /= G;
        for (int k = 0; k < G; k++) s2 += (r->shaped[g0 + k] - m) * (r->shaped[g0 + k] - m);
        double sd = G > 1 ? sqrt(s2 / (G - 1)) : 0.0; // the sample std, as the paper's implementation
        for (int k = 0; k < G; k++) {
            double a = r->shaped[g0 + k] - m;
            if (c->scale_group_std) a /= sd + 1e-4;
            for (int t = 0; t < T; t++) r->adv[(long)(g0 + k) * T + t] = r->targets[(long)(g0 + k) * T + t] >= 0 ? (float)a : 0.0f;
        }
    }
    return LEASH_OK;
}

void grpo_policy_loss(const rollout *r, const leash_grpo_config *c, leash_kl_estimator est, double clip_eps, double beta,
                      const int *rows, int n, long ntok, int nseq, const float *newlp, float *dlogp, update_stats *st) {
    int T = r->T;
    long mine = 0;
    for (int k = 0; k < n; k++) {
        int len = 0;
        for (int t = 0; t < T; t++) len += r->mb_targets[(long)k * T + t] >= 0;
        // per sequence (paper): each sequence's token mean, averaged over sequences; per token: one mean
        double w = c->token_level_loss ? 1.0 / ntok : (len ? 1.0 / ((double)len * nseq) : 0.0);
        for (int t = 0; t < T; t++) {
            long i = (long)k * T + t, src = (long)rows[k] * T + t;
            dlogp[i] = 0.0f;
            if (r->mb_targets[i] < 0) continue;
            double d;
            double pg = ppo_clipped_surrogate(r->adv[src], newlp[i], r->old_logp[src], clip_eps, st, &d);
            // KL inside the loss, differentiated through log pi: k3 = (r - 1) - log r (the paper; its expected
            // gradient is that of the reverse KL(pi_ref || pi)), k2 = (log r)^2 / 2 (expected gradient: exactly
            // that of KL(pi || pi_ref)), or k3+ (k3's value, k2's gradient), with log r = log pi_ref - log pi
            double kl = leash_kl_estimate(est, newlp[i], r->ref_logp[src]);
            double dk = leash_kl_estimate_grad(est, newlp[i], r->ref_logp[src]);
            st->kl_clamped += leash_kl_estimate_clamped(est, newlp[i], r->ref_logp[src]);
            // TRL's metrics: the token mean over the whole minibatch of the KL estimate and of the clipped shares
            double ratio = exp((double)newlp[i] - r->old_logp[src]), A = r->adv[src];
            int low = ratio < 1.0 - clip_eps && A < 0, high = ratio > 1.0 + clip_eps && A > 0;
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
