/* Direct preference optimisation (sigmoid DPO and IPO) on preference pairs. See include/leash/dpo.h.
 * Dimensions: n pairs, R = 2 n rows, T tokens, V vocabulary. */
#define _POSIX_C_SOURCE 200809L
#include "leash/dpo.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/data.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/rng.h"
#include "leash/tokenizer.h"

double leash_dpo_pair_loss(leash_dpo_loss kind, double beta, double h, double *dh) {
    if (kind == LEASH_DPO_IPO) { // (h - 1/(2 beta))^2
        double d = h - 1.0 / (2.0 * beta);
        if (dh) *dh = 2.0 * d;
        return d * d;
    }
    double z = beta * h; // -log sigmoid(z) = log1p(exp(-z)), finite for any z
    if (dh) *dh = -beta / (1.0 + exp(z));
    return z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z));
}

/* Right-padded batch of R rows: tokens, mask and targets (R, T); targets[r, t] = ids[t + 1] where t + 1 is
 * a response token, else -1. */
static int batch_rows(const leash_dpo_seq *rows, int R, int **tokens, uint8_t **mask, int **targets, int *T_out) {
    if (R < 1) return leash_fail(LEASH_EINVAL, "a batch of %d rows; it needs at least one", R);
    size_t T = 1;
    for (int r = 0; r < R; r++) {
        if (rows[r].prompt_len < 1 || rows[r].n <= rows[r].prompt_len)
            return leash_fail(LEASH_EINVAL, "row %d: prompt of %d tokens and %d in all; the prompt needs at least one token "
                                            "and the response at least one", r, rows[r].prompt_len, rows[r].n);
        T = (size_t)rows[r].n > T ? (size_t)rows[r].n : T;
    }
    size_t N = (size_t)R * T;
    *tokens = malloc(N * sizeof **tokens);
    *targets = malloc(N * sizeof **targets);
    *mask = malloc(N);
    if (!*tokens || !*targets || !*mask) return leash_fail(LEASH_ENOMEM, "out of memory");
    for (int r = 0; r < R; r++)
        for (int t = 0; t < (int)T; t++) {
            int real = t < rows[r].n;
            (*tokens)[r * T + t] = real ? rows[r].ids[t] : rows[r].ids[0];
            (*mask)[r * T + t] = (uint8_t)real;
            (*targets)[r * T + t] = t + 1 >= rows[r].prompt_len && t + 1 < rows[r].n ? rows[r].ids[t + 1] : -1;
        }
    *T_out = (int)T;
    return LEASH_OK;
}

/* Forward of R rows and their summed response log-probs into logp (R); tokens' targets kept for a backward. */
static int forward_logps(leash_gpt *m, const leash_dpo_seq *rows, int R, double *logp, int **targets, int *T_out) {
    int *tokens = NULL, T = 0;
    uint8_t *mask = NULL;
    float *lp = NULL;
    int rc = batch_rows(rows, R, &tokens, &mask, targets, &T);
    if (!rc && !(lp = malloc((size_t)R * T * sizeof *lp))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc) rc = leash_gpt_forward(m, tokens, mask, R, T);
    if (!rc) rc = leash_gpt_token_logprobs(m, *targets, 1.0f, lp, NULL);
    for (int r = 0; r < R && !rc; r++) {
        double s = 0.0;
        for (int t = 0; t < T; t++) s += (*targets)[r * T + t] >= 0 ? lp[r * T + t] : 0.0;
        logp[r] = s;
    }
    free(tokens), free(mask), free(lp);
    *T_out = T;
    return rc;
}

int leash_dpo_seq_logps(leash_gpt *m, const leash_dpo_seq *rows, int R, double *logp) {
    int *targets = NULL, T;
    int rc = forward_logps(m, rows, R, logp, &targets, &T);
    free(targets);
    return rc;
}

int leash_dpo_accumulate(leash_gpt *m, leash_dpo_loss kind, double beta, const leash_dpo_seq *chosen,
                         const leash_dpo_seq *rejected, const double *ref_w, const double *ref_l, const double *weight,
                         int n, double scale, leash_dpo_metrics *mt) {
    if (n < 1) return leash_fail(LEASH_EINVAL, "a DPO batch of %d pairs; it needs at least one", n);
    if (!(beta > 0.0 && isfinite(beta))) return leash_fail(LEASH_EINVAL, "beta %g; it must be > 0", beta);
    int R = 2 * n, T = 0, *targets = NULL, rc = LEASH_OK;
    leash_dpo_seq *rows = malloc((size_t)R * sizeof *rows);
    double *logp = malloc((size_t)R * sizeof *logp), *dseq = malloc((size_t)R * sizeof *dseq);
    float *dlogp = NULL;
    if (!rows || !logp || !dseq) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc) {
        memcpy(rows, chosen, (size_t)n * sizeof *rows);
        memcpy(rows + n, rejected, (size_t)n * sizeof *rows);
        rc = forward_logps(m, rows, R, logp, &targets, &T);
    }
    leash_dpo_metrics s = {0};
    double W = 0.0;
    for (int i = 0; i < n && !rc; i++) {
        double w = weight ? weight[i] : 1.0, dh;
        double uw = logp[i] - ref_w[i], ul = logp[n + i] - ref_l[i], h = uw - ul;
        double l = leash_dpo_pair_loss(kind, beta, h, &dh);
        W += w;
        s.loss += w * l;
        s.reward_chosen += w * beta * uw, s.reward_rejected += w * beta * ul;
        s.accuracy += w * (uw > ul), s.margin += w * beta * h;
        s.logp_chosen += w * logp[i], s.logp_rejected += w * logp[n + i];
        dseq[i] = w * dh, dseq[n + i] = -w * dh; // d loss / d log pi(w) = dh, d / d log pi(l) = -dh
    }
    if (!rc && !(W > 0.0)) rc = leash_fail(LEASH_EINVAL, "the pairs' weights sum to %g; it must be > 0", W);
    if (!rc) {
        s.loss /= W, s.reward_chosen /= W, s.reward_rejected /= W, s.accuracy /= W, s.margin /= W;
        s.logp_chosen /= W, s.logp_rejected /= W;
        if (mt) *mt = s;
    }
    if (!rc && scale != 0.0) { // every response token of a row gets its sequence's gradient
        if (!(dlogp = malloc((size_t)R * T * sizeof *dlogp))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
        for (int r = 0; r < R && !rc; r++)
            for (int t = 0; t < T; t++) dlogp[r * T + t] = targets[r * T + t] >= 0 ? (float)(scale * dseq[r] / W) : 0.0f;
        if (!rc) rc = leash_gpt_token_logprobs_backward(m, targets, 1.0f, dlogp);
        if (!rc) rc = leash_gpt_backward(m);
    }
    free(rows), free(logp), free(dseq), free(dlogp), free(targets);
    return rc;
}
