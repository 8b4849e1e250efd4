/* Sampling: see include/leash/sample.h. The tokens come from the model's KV cache (gpt_decode.c); this file
 * only chooses them.
 *
 * Dimensions: B sequences, Tp longest prompt, M new tokens, V vocabulary.
 */
#include "leash/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/kl.h"
#include "leash/rng.h"

leash_sample_config leash_sample_defaults(void) {
    return (leash_sample_config){.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = 64, .eos_id = -1};
}

void leash_sample_set_eos(leash_sample_config *sc, const leash_gpt_config *cfg, int eos) {
    sc->eos_id = eos;
    sc->n_eos_more = 0;
    for (int i = 0; cfg && eos >= 0 && i < cfg->n_eos_more; i++)
        if (cfg->eos_more[i] != eos) sc->eos_more[sc->n_eos_more++] = cfg->eos_more[i];
    if (cfg && eos >= 0 && cfg->eos_token_id >= 0 && cfg->eos_token_id != eos && sc->n_eos_more < LEASH_MAX_EOS - 1)
        sc->eos_more[sc->n_eos_more++] = cfg->eos_token_id;
}

int leash_sample_is_eos(const leash_sample_config *sc, int id) {
    if (id < 0) return 0;
    if (id == sc->eos_id) return 1;
    for (int i = 0; i < sc->n_eos_more; i++)
        if (id == sc->eos_more[i]) return 1;
    return 0;
}

static int by_logit_desc(const void *a, const void *b) {
    const leash_scored_token *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

int leash_sample_token(const float *logits, int V, const leash_sample_config *sc, double u, leash_scored_token *work,
                       int *token, float *logprob) {
    double lse;
    int rc = leash_logsumexp(logits, V, sc->temperature, &lse);
    if (rc) return rc;
    double inv_t = 1.0 / sc->temperature;
    int filtered = (sc->top_k > 0 && sc->top_k < V) || sc->top_p < 1.0f;
    if (!filtered) { // inverse CDF over the whole vocabulary
        double c = 0.0;
        int pick = V - 1;
        for (int v = 0; v < V; v++) {
            c += exp(logits[v] * inv_t - lse);
            if (u < c) {
                pick = v;
                break;
            }
        }
        *token = pick;
        *logprob = (float)(logits[pick] * inv_t - lse);
        return LEASH_OK;
    }
    // sort ids by logit (ties: lower id first), keep the top-k, then the top-p prefix
    for (int v = 0; v < V; v++) work[v] = (leash_scored_token){logits[v], v};
    qsort(work, V, sizeof *work, by_logit_desc);
    int keep = sc->top_k > 0 && sc->top_k < V ? sc->top_k : V;
    double kept_mass = 0.0;
    for (int i = 0; i < keep; i++) {
        kept_mass += exp(logits[work[i].id] * inv_t - lse);
        if (sc->top_p < 1.0f && kept_mass >= sc->top_p) {
            keep = i + 1;
            break;
        }
    }
    double target = u * kept_mass, c = 0.0;
    int pick = work[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        c += exp(logits[work[i].id] * inv_t - lse);
        if (target < c) {
            pick = work[i].id;
            break;
        }
    }
    *token = pick;
    *logprob = (float)(logits[pick] * inv_t - lse - log(kept_mass));
    return LEASH_OK;
}

static int check_config(const leash_gpt *m, const leash_sample_config *sc) {
    if (!(sc->temperature > 0.0f) || !isfinite(sc->temperature))
        return leash_fail(LEASH_EINVAL, "temperature = %g; it must be > 0 (greedy decoding: use a small T such as 1e-3 "
                                        "or top_k = 1)",
                          (double)sc->temperature);
    if (sc->top_k < 0) return leash_fail(LEASH_EINVAL, "top_k = %d; it must be >= 0 (0: off)", sc->top_k);
    if (!(sc->top_p > 0.0f && sc->top_p <= 1.0f))
        return leash_fail(LEASH_EINVAL, "top_p = %g; it must be in (0, 1] (1: off)", (double)sc->top_p);
    if (sc->max_new_tokens < 1) return leash_fail(LEASH_EINVAL, "max_new_tokens = %d; it must be >= 1", sc->max_new_tokens);
    int V = leash_gpt_cfg(m)->vocab_size;
    if (sc->eos_id < -1 || sc->eos_id >= V)
        return leash_fail(LEASH_EINVAL, "eos_id = %d outside the vocabulary [0, %d)", sc->eos_id, V);
    if (sc->n_eos_more < 0 || sc->n_eos_more > LEASH_MAX_EOS - 1 || (sc->n_eos_more && sc->eos_id < 0))
        return leash_fail(LEASH_EINVAL, "%d further eos ids; at most %d, and only beside an eos_id", sc->n_eos_more,
                          LEASH_MAX_EOS - 1);
    for (int i = 0; i < sc->n_eos_more; i++)
        if (sc->eos_more[i] < 0 || sc->eos_more[i] >= V)
            return leash_fail(LEASH_EINVAL, "eos id %d outside the vocabulary [0, %d)", sc->eos_more[i], V);
    return LEASH_OK;
}

/* Samples token i of every sequence from its row of logits (B, V) into cur (B) and the outputs; a sequence that
 * stopped gets the padding id. done (B) marks the stopped ones. */
static int sample_step(const leash_sample_config *sc, const float *logits, int V, int B, int M, int i, leash_rng *rng,
                       leash_scored_token *work, int *cur, int *done, int *out_tokens, float *out_logprobs, int *out_lens) {
    for (int b = 0; b < B; b++) {
        int tok = sc->eos_id >= 0 ? sc->eos_id : 0;
        float lp = 0.0f;
        double u = leash_rng_uniform(&rng[b]); // drawn even when done: streams stay aligned
        if (!done[b]) {
            int rc = leash_sample_token(logits + (size_t)b * V, V, sc, u, work, &tok, &lp);
            if (rc) return leash_fail_wrap(rc, "sampling token %d of sequence %d", i, b);
            if (leash_sample_is_eos(sc, tok)) done[b] = 1, out_lens[b] = i + 1;
        }
        out_tokens[(size_t)b * M + i] = tok;
        out_logprobs[(size_t)b * M + i] = lp;
        cur[b] = tok;
    }
    return LEASH_OK;
}

int leash_generate(leash_gpt *m, const leash_sample_config *sc, const int *prompts, const int *prompt_lens, int B,
                   const uint64_t *streams, int *out_tokens, float *out_logprobs, int *out_lens) {
    int rc = check_config(m, sc);
    if (rc) return rc;
    const leash_gpt_config *c = leash_gpt_cfg(m);
    if (B < 1) return leash_fail(LEASH_EINVAL, "batch of %d prompts; need >= 1", B);
    int Tp = 0, M = sc->max_new_tokens, V = c->vocab_size;
    for (int b = 0; b < B; b++) {
        if (prompt_lens[b] < 1)
            return leash_fail(LEASH_EINVAL, "prompt %d is empty; start it with a token (GPT-2: <|endoftext|>)", b);
        if (prompt_lens[b] + M > c->n_positions)
            return leash_fail(LEASH_EINVAL, "prompt %d has %d tokens and %d new ones are asked for: more than the model's "
                                            "%d positions; shorten the prompt or lower max_new_tokens",
                              b, prompt_lens[b], M, c->n_positions);
        if (prompt_lens[b] > Tp) Tp = prompt_lens[b];
    }
    leash_kv_cache *kv;
    if ((rc = leash_kv_cache_create(&kv, m, B, Tp + M))) return rc;
    int *ptoks = malloc(((size_t)B * Tp + 2 * (size_t)B) * sizeof(int)); // (B, Tp), then cur and done (B) each
    uint8_t *pm = malloc((size_t)B * Tp);
    leash_rng *rng = malloc((size_t)B * sizeof *rng);
    leash_scored_token *work = malloc((size_t)V * sizeof *work);
    if (!ptoks || !pm || !rng || !work) {
        free(ptoks), free(pm), free(rng), free(work), leash_kv_cache_free(kv);
        return leash_fail(LEASH_ENOMEM, "cannot allocate the prompts and sampling scratch of %d sequences", B);
    }
    int *cur = ptoks + (size_t)B * Tp, *done = cur + B;
    size_t off = 0;
    for (int b = 0; b < B; b++) { // left-padded prompts: the last column is every prompt's last token
        int pad = Tp - prompt_lens[b];
        for (int t = 0; t < Tp; t++) {
            ptoks[(size_t)b * Tp + t] = t < pad ? prompts[off] : prompts[off + t - pad]; // pads repeat a real id
            pm[(size_t)b * Tp + t] = t >= pad;
        }
        off += prompt_lens[b];
        leash_rng_seed(&rng[b], sc->seed, streams ? streams[b] : (uint64_t)b);
        done[b] = 0, out_lens[b] = M;
    }
    rc = leash_gpt_prefill(m, kv, ptoks, pm, Tp);
    for (int i = 0; i < M && !rc; i++) {
        rc = sample_step(sc, leash_kv_cache_logits(kv), V, B, M, i, rng, work, cur, done, out_tokens, out_logprobs,
                         out_lens);
        int all_done = 1;
        for (int b = 0; b < B; b++) all_done &= done[b];
        if (rc || all_done || i == M - 1) {
            for (int b = 0; b < B && !rc && all_done; b++) // fill the rest for sequences that stopped
                for (int j = i + 1; j < M; j++) out_tokens[(size_t)b * M + j] = sc->eos_id >= 0 ? sc->eos_id : 0,
                                                     out_logprobs[(size_t)b * M + j] = 0.0f;
            break;
        }
        rc = leash_gpt_decode_step(m, kv, cur); // token i at the next column
    }
    free(ptoks), free(pm), free(rng), free(work), leash_kv_cache_free(kv);
    return rc;
}
