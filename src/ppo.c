/* PPO: per-token rewards with the KL leash, GAE, whitened advantages, clipped policy and value losses: pure
 * functions of the rollout's arrays (the forward, backward and step are rl.c's).
 * See include/leash/rl.h; the rollout layout is in src/rl_internal.h. Dimensions: B rows, T columns. */
#include <math.h>
#include <string.h>

#include "leash/error.h"
#include "rl_internal.h"

/* mean and std over the entries of x (B, T) where targets >= 0 */
static void masked_stats(const rollout *r, const float *x, double *mean, double *std) {
    double s = 0, s2 = 0;
    long n = 0;
    for (long i = 0; i < (long)r->B * r->T; i++)
        if (r->targets[i] >= 0) s += x[i], s2 += (double)x[i] * x[i], n++;
    *mean = n ? s / n : 0.0;
    double var = n ? s2 / n - *mean * *mean : 0.0;
    *std = sqrt(var > 0 ? var : 0);
}

int ppo_advantages(rollout *r, const leash_ppo_config *c, double beta) {
    int B = r->B, T = r->T, P = r->P;
    // rewards: -beta * kl_t at every response token; the shaped score lands on the last one
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) r->rewards[b * T + t] = r->targets[b * T + t] >= 0 ? (float)(-beta * r->kl[b * T + t]) : 0.0f;
        if (r->resp_len[b] > 0) r->rewards[b * T + P + r->resp_len[b] - 2] += (float)r->shaped[b];
    }
    if (c->whiten_rewards) {
        double m, s;
        masked_stats(r, r->rewards, &m, &s);
        for (long i = 0; i < (long)B * T; i++)
            if (r->targets[i] >= 0) r->rewards[i] = (float)(r->rewards[i] / (s + 1e-8)); // scale only, as TRL
    }
    // GAE backwards over each response: delta_t = r_t + gamma V_{t+1} - V_t, with V after the last token = 0
    for (int b = 0; b < B; b++) {
        double next_v = 0.0, next_a = 0.0;
        for (int j = r->resp_len[b] - 1; j >= 0; j--) {
            int t = b * T + P + j - 1;
            double delta = r->rewards[t] + c->gamma * next_v - r->values[t];
            next_a = delta + c->gamma * c->lam * next_a;
            r->adv[t] = (float)next_a;
            r->ret[t] = (float)(next_a + r->values[t]);
            next_v = r->values[t];
        }
    }
    double m, s;
    masked_stats(r, r->adv, &m, &s);
    for (long i = 0; i < (long)B * T; i++) r->adv[i] = r->targets[i] >= 0 ? (float)((r->adv[i] - m) / (s + 1e-8)) : 0.0f;
    return LEASH_OK;
}

double ppo_clipped_surrogate(double A, double newlp, double oldlp, double eps, double eps_high, update_stats *st, double *dloss) {
    double logratio = newlp - oldlp;
    if (fabs(logratio) > LEASH_KL_LOG_RATIO_MAX) {
        logratio = logratio > 0 ? LEASH_KL_LOG_RATIO_MAX : -LEASH_KL_LOG_RATIO_MAX;
        st->ratio_clamped++;
    }
    double ratio = exp(logratio);
    double clipped = ratio < 1 - eps ? 1 - eps : ratio > 1 + eps_high ? 1 + eps_high : ratio;
    double pg1 = -A * ratio, pg2 = -A * clipped;
    int clip_active = pg2 > pg1;
    st->clipfrac += clip_active;
    st->approxkl += 0.5 * logratio * logratio;
    st->ratio += ratio;
    if (st->updates == 0 && fabs(ratio - 1.0) > st->first_ratio_dev) st->first_ratio_dev = fabs(ratio - 1.0);
    *dloss = clip_active ? 0.0 : -A * ratio;
    return clip_active ? pg2 : pg1;
}

/* The clipped surrogate, averaged over the minibatch's response tokens. */
void ppo_policy_loss(const rollout *r, const int *rows, int n, long ntok, double clip_eps, const float *newlp, float *dlogp,
                     update_stats *st) {
    int T = r->T;
    long mine = 0;
    for (int k = 0; k < n; k++) {
        for (int t = 0; t < T; t++) {
            long i = (long)k * T + t, src = (long)rows[k] * T + t;
            dlogp[i] = 0.0f;
            if (r->mb_targets[i] < 0) continue;
            double d;
            st->policy_loss += ppo_clipped_surrogate(r->adv[src], newlp[i], r->old_logp[src], clip_eps, clip_eps, st, &d);
            dlogp[i] = (float)(d / ntok);
            mine++;
        }
    }
    st->tokens += mine;
}

void ppo_value_loss(const rollout *r, const int *rows, int n, long ntok, double value_clip, double vf_coef, const float *v,
                    float *dv, update_stats *st) {
    int T = r->T;
    for (int k = 0; k < n; k++) {
        for (int t = 0; t < T; t++) {
            long i = (long)k * T + t, src = (long)rows[k] * T + t;
            if (r->mb_targets[i] < 0) continue;
            double vold = r->values[src], R = r->ret[src], vp = v[i];
            double vc = vold + (vp - vold < -value_clip ? -value_clip : vp - vold > value_clip ? value_clip : vp - vold);
            double l1 = (vp - R) * (vp - R), l2 = (vc - R) * (vc - R);
            int clip_active = l2 > l1 && fabs(vp - vold) > value_clip;
            st->value_loss += 0.5 * (l1 > l2 ? l1 : l2);
            dv[i] = clip_active ? 0.0f : (float)(vf_coef * (vp - R) / ntok);
        }
    }
}
