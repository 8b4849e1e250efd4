/* The rollout of one RL step: buffers and minibatch gathering. See src/rl_internal.h. */
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "rl_internal.h"

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
    int ok = r->tokens && r->mask && r->targets && r->prompt_index && r->resp_len && r->has_eos && r->grammatical &&
             r->score && r->shaped && r->gold && r->text && r->mb_tokens && r->mb_targets && r->mb_mask && r->mb_buf &&
             r->mb_buf2;
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
                 r->gold, r->text, r->mb_tokens, r->mb_targets, r->mb_mask, r->mb_buf, r->mb_buf2};
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
