/* Batched generation with a KV cache.
 *
 * Prompts of different lengths are left-padded into one batch; positions count real tokens and attention
 * skips padding, so a sequence's tokens do not depend on the batch it is in. Each sequence draws from its
 * own random stream (seed, stream id), so its samples do not depend on batch composition or thread count.
 * For every sampled token the log-prob under the distribution it was drawn from (temperature, then
 * top-k / top-p renormalised) is returned, the number a KL or a PPO ratio needs.
 *
 * Dimensions: B sequences, M = max_new_tokens.
 */
#ifndef LEASH_SAMPLE_H
#define LEASH_SAMPLE_H

#include <stdint.h>

#include "leash/gpt.h"

typedef struct {
    float temperature;  /* > 0; logits are divided by it */
    int top_k;          /* keep the k most likely tokens; 0: off */
    float top_p;        /* keep the smallest set with mass >= top_p; 1: off */
    int max_new_tokens; /* M >= 1 */
    int eos_id;         /* stop a sequence after it emits this id; -1: never. Also the padding after a stop */
    int n_eos_more;     /* further ids that also stop it (a model's eos list: <|eot_id|>, <|eom_id|>) */
    int eos_more[LEASH_MAX_EOS - 1];
    uint64_t seed;
} leash_sample_config;

/* temperature 1, no top-k / top-p, 64 new tokens, no EOS, seed 0. */
leash_sample_config leash_sample_defaults(void);
/* Stops sequences where a model's texts end: at eos (leash_tokenizer_eos: the model's eos_token_id, else the
 * tokenizer's <|endoftext|>) and at every further id of the model's eos_token_id list. */
void leash_sample_set_eos(leash_sample_config *sc, const leash_gpt_config *cfg, int eos);
/* 1 when id stops a sequence under sc. */
int leash_sample_is_eos(const leash_sample_config *sc, int id);

/* Generates for B prompts: prompt b is prompt_lens[b] >= 1 ids starting at prompts + prompt_offsets(b),
 * packed one after the other. streams (B) gives each sequence's random stream (NULL: 0 .. B-1).
 * Writes out_tokens (B, M), out_logprobs (B, M) and out_lens (B): sequence b generated out_lens[b] tokens
 * (its EOS included); entries past that are eos_id (or 0) with log-prob 0. */
int leash_generate(leash_gpt *m, const leash_sample_config *sc, const int *prompts, const int *prompt_lens, int B,
                   const uint64_t *streams, int *out_tokens, float *out_logprobs, int *out_lens);

typedef struct {
    float logit;
    int id;
} leash_scored_token;

/* Draws one token from a logits row (V) at the config's temperature, top-k and top-p, by inverse CDF
 * at u in [0, 1); returns the id and its log-prob under the distribution it was drawn from (the kept
 * tokens renormalised). work (V) is scratch, used only when top-k or top-p is on. */
int leash_sample_token(const float *logits, int V, const leash_sample_config *sc, double u, leash_scored_token *work,
                       int *token, float *logprob);
/* 1 when sc truncates a vocabulary of V (top_k in (0, V), or top_p < 1). */
int leash_sample_filtered(const leash_sample_config *sc, int V);

/* Scoring what the sampler drew (RL's ratios and KL): the same truncation applied to a logits row. The logits
 * of the ids outside the set leash_sample_token would draw from (the same temperature, top-k and top-p, the
 * same order and sums) become LEASH_SAMPLE_MASKED, so that the log-softmax at the temperature is the truncated,
 * renormalised distribution's log-prob, and its backward that distribution's gradient (the set held fixed).
 * keep_id (the token drawn there) is never masked: *outside = 1 when it was outside the set (logits recomputed
 * elsewhere can differ in their last bits at the set's edge). No-op without truncation. */
#define LEASH_SAMPLE_MASKED (-1e30f)
int leash_sample_mask_row(float *logits, int V, const leash_sample_config *sc, int keep_id, leash_scored_token *work,
                          int *outside);
/* leash_sample_mask_row on each row n of logits (N, V) with targets[n] >= 0 (keep_id: targets[n]), rows in
 * parallel; *outside: how many targets were outside their set. */
int leash_sample_mask_rows(float *logits, int N, int V, const int *targets, const leash_sample_config *sc, long *outside);


#endif
