/* PPO: per-token rewards with the KL leash, GAE, whitened advantages, clipped policy and value losses.
 * See include/leash/rl.h; the rollout layout is in src/rl_internal.h. Dimensions: B rows, T columns. */
#include <math.h>
#include <string.h>

#include "leash/error.h"
#include "leash/optim.h"
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

int ppo_advantages(rollout *r, const leash_rl_config *c, double beta) {
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

int ppo_update(rollout *r, const leash_rl_config *c, leash_gpt *policy, leash_gpt *value, void *popt, void *vopt,
               const int *rows, int n, update_stats *st) {
    int T = r->T, rc, lo;
    long ntok = minibatch_tokens(r, rows, n, NULL);
    if (!ntok) return LEASH_OK;
    int nl = gather_local_part(r, rows, n, &lo);
    float *newlp = r->mb_buf, *dlogp = r->mb_buf2;
    // policy: clipped surrogate, averaged over the minibatch's response tokens
    if ((rc = policy_logprobs(r, c, policy, nl))) return rc;
    long mine = 0;
    for (int k = 0; k < nl; k++) {
        for (int t = 0; t < T; t++) {
            long i = (long)k * T + t, src = (long)rows[lo + k] * T + t;
            dlogp[i] = 0.0f;
            if (r->mb_targets[i] < 0) continue;
            double d;
            st->policy_loss += clipped_surrogate(r->adv[src], newlp[i], r->old_logp[src], c->clip_eps, st, &d);
            dlogp[i] = (float)(d / ntok);
            mine++;
        }
    }
    st->tokens += mine;
    if ((rc = policy_step(r, c, policy, popt, nl))) return rc;
    // value model: clipped value loss on the same tokens
    leash_gpt_zero_grad(value);
    if (nl) {
        if ((rc = leash_gpt_forward(value, r->mb_tokens, r->mb_mask, nl, T))) return rc;
        const float *v = leash_gpt_values(value);
        float *dv = leash_gpt_dvalues(value);
        for (int k = 0; k < nl; k++) {
            for (int t = 0; t < T; t++) {
                long i = (long)k * T + t, src = (long)rows[lo + k] * T + t;
                if (r->mb_targets[i] < 0) continue;
                double vold = r->values[src], R = r->ret[src], vp = v[i];
                double vc = vold + (vp - vold < -c->value_clip ? -c->value_clip : vp - vold > c->value_clip ? c->value_clip : vp - vold);
                double l1 = (vp - R) * (vp - R), l2 = (vc - R) * (vc - R);
                int clip_active = l2 > l1 && fabs(vp - vold) > c->value_clip;
                st->value_loss += 0.5 * (l1 > l2 ? l1 : l2);
                dv[i] = clip_active ? 0.0f : (float)(c->vf_coef * (vp - R) / ntok);
            }
        }
        // the value model predicts no tokens: its LM head gets no gradient (dlogits stays 0)
        if ((rc = leash_gpt_backward(value))) return rc;
    }
    if ((rc = step_summed(value, vopt, "value gradients"))) return rc;
    st->updates++;
    return LEASH_OK;
}
