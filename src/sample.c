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

#ifdef _OPENMP
#include <omp.h>
#endif

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

/* The sampler's order of a vocabulary: higher logit first, ties by lower id (a strict total order, so the
 * kept prefix and its order are the same however they are found). */
static inline int before(leash_scored_token a, leash_scored_token b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int by_logit_desc(const void *a, const void *b) {
    const leash_scored_token *x = a, *y = b;
    return before(*x, *y) ? -1 : before(*y, *x) ? 1 : 0;
}

static inline void swap_tok(leash_scored_token *a, leash_scored_token *b) {
    leash_scored_token t = *a;
    *a = *b, *b = t;
}

/* Rearranges w[lo..hi) so that its first m - lo entries are the (m - lo) first in the sampler's order, in no
 * particular order among themselves (quickselect, median-of-three pivots): O(hi - lo) on average. */
static void select_first(leash_scored_token *w, int lo, int hi, int m) {
    while (hi - lo > 1 && m > lo && m < hi) {
        int mid = lo + (hi - lo) / 2;
        // median of three to w[mid], then used as the pivot at w[hi - 1]
        if (before(w[mid], w[lo])) swap_tok(&w[mid], &w[lo]);
        if (before(w[hi - 1], w[lo])) swap_tok(&w[hi - 1], &w[lo]);
        if (before(w[hi - 1], w[mid])) swap_tok(&w[hi - 1], &w[mid]);
        swap_tok(&w[mid], &w[hi - 1]);
        leash_scored_token pivot = w[hi - 1];
        int store = lo;
        for (int i = lo; i < hi - 1; i++)
            if (before(w[i], pivot)) swap_tok(&w[i], &w[store++]);
        swap_tok(&w[store], &w[hi - 1]); // the pivot at its place: w[lo..store) before it, the rest after
        if (store == m || store + 1 == m) return;
        if (store > m) hi = store;
        else lo = store + 1;
    }
}

/* The kept set of a row under sc's top-k, then top-p at its temperature: work[0..*keep) the kept ids in the
 * sampler's order, *kept_mass their probability under the untruncated softmax (lse: logsumexp(logits / T)),
 * summed in that order. The largest ids are selected in growing chunks and only those are sorted, instead of
 * sorting the vocabulary (issue 20); the prefix and its sums are the same as a full sort's. */
static void kept_set(const float *logits, int V, const leash_sample_config *sc, double lse, leash_scored_token *work,
                     int *keep, double *kept_mass) {
    double inv_t = 1.0 / sc->temperature;
    for (int v = 0; v < V; v++) work[v] = (leash_scored_token){logits[v], v};
    int k = sc->top_k > 0 && sc->top_k < V ? sc->top_k : V, sorted = 0, chunk = 64;
    double mass = 0.0;
    while (sorted < k) { // top-k alone: its k at once; top-p: chunks of 64, 128, ... until the mass is reached
        int m = sc->top_p >= 1.0f || k - sorted <= chunk ? k : sorted + chunk;
        select_first(work, sorted, V, m);
        qsort(work + sorted, (size_t)(m - sorted), sizeof *work, by_logit_desc);
        for (int i = sorted; i < m; i++) {
            mass += exp(logits[work[i].id] * inv_t - lse);
            if (sc->top_p < 1.0f && mass >= sc->top_p) {
                *keep = i + 1, *kept_mass = mass;
                return;
            }
        }
        sorted = m, chunk *= 2;
    }
    *keep = k, *kept_mass = mass;
}

int leash_sample_filtered(const leash_sample_config *sc, int V) {
    return (sc->top_k > 0 && sc->top_k < V) || sc->top_p < 1.0f;
}

int leash_sample_token(const float *logits, int V, const leash_sample_config *sc, double u, leash_scored_token *work,
                       int *token, float *logprob) {
    double lse;
    int rc = leash_logsumexp(logits, V, sc->temperature, &lse);
    if (rc) return rc;
    double inv_t = 1.0 / sc->temperature;
    if (!leash_sample_filtered(sc, V)) { // inverse CDF over the whole vocabulary
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
    // the kept ids in the sampler's order (top-k, then the top-p prefix), then the inverse CDF over them
    int keep;
    double kept_mass;
    kept_set(logits, V, sc, lse, work, &keep, &kept_mass);
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

int leash_sample_mask_row(float *logits, int V, const leash_sample_config *sc, int keep_id, leash_scored_token *work,
                          int *outside) {
    double lse;
    int rc = leash_logsumexp(logits, V, sc->temperature, &lse);
    if (rc) return rc;
    *outside = 0;
    if (!leash_sample_filtered(sc, V)) return LEASH_OK;
    int keep;
    double kept_mass;
    kept_set(logits, V, sc, lse, work, &keep, &kept_mass);
    // work[keep..V) are the ids outside the set: masked, but for keep_id (drawn from the sampler's own logits,
    // which may differ from these in the last bits at the set's edge)
    for (int i = keep; i < V; i++) {
        if (work[i].id == keep_id) {
            *outside = 1;
            continue;
        }
        logits[work[i].id] = LEASH_SAMPLE_MASKED;
    }
    return LEASH_OK;
}

int leash_sample_mask_rows(float *logits, int N, int V, const int *targets, const leash_sample_config *sc, long *outside) {
    *outside = 0;
    if (!leash_sample_filtered(sc, V)) return LEASH_OK;
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    leash_scored_token *work = malloc((size_t)nt * V * sizeof *work);
    if (!work) return leash_fail(LEASH_ENOMEM, "cannot allocate %d sampling scratch rows of %d", nt, V);
    int first_bad = N;
    long out = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : out)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        int tid = 0, o = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        if (leash_sample_mask_row(logits + (size_t)n * V, V, sc, targets[n], work + (size_t)tid * V, &o)) {
#pragma omp critical(leash_sample_mask)
            if (n < first_bad) first_bad = n;
            continue;
        }
        out += o;
    }
    free(work);
    *outside = out;
    if (first_bad < N) return leash_fail(LEASH_ENUMERIC, "position %d: its logits are not finite; top-k / top-p cannot be applied", first_bad);
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

/* Samples token i of the n sequences still running, row j being sequence live[j] with its logits (n, V), into
 * cur (n) and the outputs; done (B) marks the sequences that stop. Rows in parallel, each with its sequence's own
 * random stream and a scratch row of work a thread (V each): the draws are those of a serial loop. */
static int sample_step(const leash_sample_config *sc, const float *logits, int V, int n, const int *live, int M, int i,
                       leash_rng *rng, leash_scored_token *work, int *cur, int *done, int *out_tokens,
                       float *out_logprobs, int *out_lens) {
    int first_bad = n, bad_rc = LEASH_OK;
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (int j = 0; j < n; j++) {
        int b = live[j], tok, tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float lp;
        int rc = leash_sample_token(logits + (size_t)j * V, V, sc, leash_rng_uniform(&rng[b]), work + (size_t)tid * V,
                                    &tok, &lp);
        if (rc) {
#pragma omp critical(leash_sample_step)
            if (j < first_bad) first_bad = j, bad_rc = rc;
            continue;
        }
        if (leash_sample_is_eos(sc, tok)) done[b] = 1, out_lens[b] = i + 1;
        out_tokens[(size_t)b * M + i] = tok;
        out_logprobs[(size_t)b * M + i] = lp;
        cur[j] = tok;
    }
    if (first_bad < n) {
        // the failing row again, serially, for its message (leash_fail's message is per thread)
        int tok;
        float lp;
        leash_sample_token(logits + (size_t)first_bad * V, V, sc, 0.5, work, &tok, &lp);
        return leash_fail_wrap(bad_rc, "sampling token %d of sequence %d", i, live[first_bad]);
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
    int *ptoks = malloc(((size_t)B * Tp + 3 * (size_t)B) * sizeof(int)); // (B, Tp), then cur, done and live (B) each
    uint8_t *pm = malloc((size_t)B * Tp);
    leash_rng *rng = malloc((size_t)B * sizeof *rng);
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    leash_scored_token *work = malloc((size_t)nt * V * sizeof *work); // a scratch row a thread
    if (!ptoks || !pm || !rng || !work) {
        free(ptoks), free(pm), free(rng), free(work), leash_kv_cache_free(kv);
        return leash_fail(LEASH_ENOMEM, "cannot allocate the prompts and sampling scratch of %d sequences", B);
    }
    int *cur = ptoks + (size_t)B * Tp, *done = cur + B, *live = done + B, pad = sc->eos_id >= 0 ? sc->eos_id : 0;
    size_t off = 0;
    for (int b = 0; b < B; b++) { // left-padded prompts: the last column is every prompt's last token
        int pad_cols = Tp - prompt_lens[b];
        for (int t = 0; t < Tp; t++) {
            ptoks[(size_t)b * Tp + t] = t < pad_cols ? prompts[off] : prompts[off + t - pad_cols]; // pads repeat a real id
            pm[(size_t)b * Tp + t] = t >= pad_cols;
        }
        off += prompt_lens[b];
        leash_rng_seed(&rng[b], sc->seed, streams ? streams[b] : (uint64_t)b);
        done[b] = 0, out_lens[b] = M, live[b] = b;
        for (int i = 0; i < M; i++) out_tokens[(size_t)b * M + i] = pad, out_logprobs[(size_t)b * M + i] = 0.0f;
    }
    rc = leash_gpt_prefill(m, kv, ptoks, pm, Tp);
    for (int i = 0, n = B; i < M && !rc; i++) {
        rc = sample_step(sc, leash_kv_cache_logits(kv), V, n, live, M, i, rng, work, cur, done, out_tokens, out_logprobs,
                         out_lens);
        // the sequences that stopped leave the batch: the next steps multiply only the running ones' rows
        int k = 0;
        for (int j = 0; j < n; j++)
            if (!done[live[j]]) ptoks[k] = j, live[k] = live[j], cur[k] = cur[j], k++; // ptoks: the kept rows
        if (rc || k == 0 || i == M - 1) break;
        if (k < n && (rc = leash_kv_cache_keep(kv, ptoks, k))) break;
        n = k;
        rc = leash_gpt_decode_step(m, kv, cur); // token i of the running sequences at the next column
    }
    free(ptoks), free(pm), free(rng), free(work), leash_kv_cache_free(kv);
    return rc;
}
