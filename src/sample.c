/* Batched KV-cache generation: see include/leash/sample.h.
 *
 * Dimensions: B sequences, Tp longest prompt, M new tokens, Tc = Tp + M cache columns, C channels,
 * V vocabulary, L layers, NH query heads, NKV key/value heads, hs head size; W, AW, FW, I as in
 * gpt_internal.h.
 */
#include "leash/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpt_internal.h"
#include "leash/error.h"
#include "leash/kl.h"
#include "leash/ops.h"
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

/* The keys and values of one qkv row (NH query heads, then NKV key heads, then NKV value heads) into the
 * caches (L, B, NKV, Tc, hs) at layer l, sequence b, column col. */
static void cache_put(float *kc, float *vc, const float *row, int l, int b, int col, int B, int NH, int NKV, int Tc, int hs) {
    for (int kh = 0; kh < NKV; kh++) {
        size_t at = ((((size_t)l * B + b) * NKV + kh) * Tc + col) * hs;
        memcpy(kc + at, row + (size_t)(NH + kh) * hs, hs * sizeof(float));
        memcpy(vc + at, row + (size_t)(NH + NKV + kh) * hs, hs * sizeof(float));
    }
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
    if (sc->eos_id < -1 || sc->eos_id >= m->cfg.vocab_size)
        return leash_fail(LEASH_EINVAL, "eos_id = %d outside the vocabulary [0, %d)", sc->eos_id, m->cfg.vocab_size);
    if (sc->n_eos_more < 0 || sc->n_eos_more > LEASH_MAX_EOS - 1 || (sc->n_eos_more && sc->eos_id < 0))
        return leash_fail(LEASH_EINVAL, "%d further eos ids; at most %d, and only beside an eos_id", sc->n_eos_more,
                          LEASH_MAX_EOS - 1);
    for (int i = 0; i < sc->n_eos_more; i++)
        if (sc->eos_more[i] < 0 || sc->eos_more[i] >= m->cfg.vocab_size)
            return leash_fail(LEASH_EINVAL, "eos id %d outside the vocabulary [0, %d)", sc->eos_more[i], m->cfg.vocab_size);
    return LEASH_OK;
}

int leash_generate(leash_gpt *m, const leash_sample_config *sc, const int *prompts, const int *prompt_lens, int B,
                   const uint64_t *streams, int *out_tokens, float *out_logprobs, int *out_lens) {
    int rc = check_config(m, sc);
    if (rc) return rc;
    const leash_gpt_config *c = &m->cfg;
    if (B < 1) return leash_fail(LEASH_EINVAL, "batch of %d prompts; need >= 1", B);
    int Tp = 0, M = sc->max_new_tokens;
    for (int b = 0; b < B; b++) {
        if (prompt_lens[b] < 1)
            return leash_fail(LEASH_EINVAL, "prompt %d is empty; start it with a token (GPT-2: <|endoftext|>)", b);
        if (prompt_lens[b] + M > c->n_positions)
            return leash_fail(LEASH_EINVAL, "prompt %d has %d tokens and %d new ones are asked for: more than the model's "
                                            "%d positions; shorten the prompt or lower max_new_tokens",
                              b, prompt_lens[b], M, c->n_positions);
        if (prompt_lens[b] > Tp) Tp = prompt_lens[b];
    }
    const dims *d = &m->d;
    int C = d->C, L = d->L, NH = d->NH, NKV = d->NKV, G = NH / NKV, hs = d->hs, V = d->V, Tc = Tp + M;
    int W = d->W, AW = d->AW;

    // one allocation for the call: cache, decode activations, sampling scratch
    size_t kv = (size_t)L * B * NKV * Tc * hs;
    size_t R = (size_t)c->lora_rank;
    size_t floats = 2 * kv + (size_t)B * (3 * C + AW + W + d->FW + d->I + V + 2 + LEASH_LORA_SLOTS * R); // x ln h, atty, qkv, fch, fchg, logits, mean rstd, LoRA
    float *mem = malloc(floats * sizeof(float));
    int *imem = malloc(((size_t)B * Tp + 4 * (size_t)B) * sizeof(int));
    uint8_t *valid = malloc((size_t)B * Tc), *pm = malloc((size_t)B * Tp);
    leash_rng *rng = malloc((size_t)B * sizeof *rng);
    leash_scored_token *work = malloc((size_t)V * sizeof *work);
    if (!mem || !imem || !valid || !pm || !rng || !work) {
        free(mem), free(imem), free(valid), free(pm), free(rng), free(work);
        return leash_fail(LEASH_ENOMEM, "cannot allocate a KV cache for %d sequences of %d tokens (%.1f MB)", B, Tc,
                          floats * 4e-6);
    }
    float *kc = mem, *vc = kc + kv;                                       // (L, B, NKV, Tc, hs) each
    float *x = vc + kv, *ln = x + (size_t)B * C, *h = ln + (size_t)B * C; // (B, C) each
    float *atty = h + (size_t)B * C;                                      // (B, AW)
    float *qkv = atty + (size_t)B * AW;                                   // (B, W)
    float *fch = qkv + (size_t)B * W, *fchg = fch + (size_t)B * d->FW;    // (B, FW), (B, I)
    float *logits = fchg + (size_t)B * d->I;                              // (B, V)
    float *mean = logits + (size_t)B * V, *rstd = mean + B;               // (B) each
    float *lora_u = R ? rstd + B : NULL;                                  // (SLOTS, B, r) LoRA scratch
    int *ptoks = imem, *cur = imem + (size_t)B * Tp, *pos = cur + B, *done = pos + B, *step_pos = done + B; // (B, Tp), (B) x 4

    // prefill: left-padded prompts through the full forward, then copy K and V into the cache
    size_t off = 0;
    for (int b = 0; b < B; b++) {
        int pad = Tp - prompt_lens[b];
        for (int t = 0; t < Tp; t++) {
            ptoks[(size_t)b * Tp + t] = t < pad ? prompts[off] : prompts[off + t - pad]; // pads repeat a real id
            pm[(size_t)b * Tp + t] = t >= pad;
        }
        off += prompt_lens[b];
        leash_rng_seed(&rng[b], sc->seed, streams ? streams[b] : (uint64_t)b);
    }
    rc = leash_gpt_forward(m, ptoks, pm, B, Tp);
    if (!rc) {
        for (int l = 0; l < L; l++)
            for (int b = 0; b < B; b++)
                for (int t = 0; t < Tp; t++)
                    cache_put(kc, vc, m->a.qkv + (((size_t)l * B + b) * Tp + t) * W, l, b, t, B, NH, NKV, Tc, hs);
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < Tc; t++) valid[(size_t)b * Tc + t] = t < Tp ? pm[(size_t)b * Tp + t] : 1;
            memcpy(logits + (size_t)b * V, m->a.logits + ((size_t)b * Tp + Tp - 1) * V, V * sizeof(float));
            pos[b] = prompt_lens[b];
            done[b] = 0;
            out_lens[b] = M;
        }
    }
    float scale = 1.0f / sqrtf((float)hs);
    for (int i = 0; i < M && !rc; i++) {
        // sample token i of every sequence from its logits
        for (int b = 0; b < B && !rc; b++) {
            int tok = sc->eos_id >= 0 ? sc->eos_id : 0;
            float lp = 0.0f;
            double u = leash_rng_uniform(&rng[b]); // drawn even when done: streams stay aligned
            if (!done[b]) {
                rc = leash_sample_token(logits + (size_t)b * V, V, sc, u, work, &tok, &lp);
                if (rc) {
                    rc = leash_fail_wrap(rc, "sampling token %d of sequence %d", i, b);
                    break;
                }
                if (leash_sample_is_eos(sc, tok)) done[b] = 1, out_lens[b] = i + 1;
            }
            out_tokens[(size_t)b * M + i] = tok;
            out_logprobs[(size_t)b * M + i] = lp;
            cur[b] = tok;
        }
        int all_done = 1;
        for (int b = 0; b < B; b++) all_done &= done[b];
        if (rc || all_done || i == M - 1) {
            for (int b = 0; b < B && !rc && all_done; b++) // fill the rest for sequences that stopped
                for (int j = i + 1; j < M; j++) out_tokens[(size_t)b * M + j] = sc->eos_id >= 0 ? sc->eos_id : 0,
                                                     out_logprobs[(size_t)b * M + j] = 0.0f;
            break;
        }
        // decode step: feed token i at cache column Tp + i
        int col = Tp + i;
        for (int b = 0; b < B; b++) {
            int p = pos[b] < c->n_positions ? pos[b] : c->n_positions - 1;
            step_pos[b] = p;
            for (int k = 0; k < C; k++)
                x[(size_t)b * C + k] = m->p.wte[(size_t)cur[b] * C + k] + (m->p.wpe ? m->p.wpe[(size_t)p * C + k] : 0.0f);
            pos[b]++;
        }
        for (int l = 0; l < L; l++) {
            layer_ptrs tmp;
            const layer_ptrs *w = leash_gpt_layer(m, l, &tmp);
            leash_gpt_norm(m, ln, mean, rstd, x, w->ln1w, w->ln1b, B);
            leash_gpt_qkv(m, qkv, ln, w, step_pos, B, lora_u);
            for (int b = 0; b < B; b++) // this token's keys and values join the cache
                cache_put(kc, vc, qkv + (size_t)b * W, l, b, col, B, NH, NKV, Tc, hs);
#pragma omp parallel for collapse(2) schedule(static)
            for (int b = 0; b < B; b++) {
                for (int hh = 0; hh < NH; hh++) {
                    size_t base = (((size_t)l * B + b) * NKV + hh / G) * Tc;
                    const float *q = qkv + (size_t)b * W + hh * hs;
                    float a[Tc];
                    float mx = -INFINITY, sum = 0.0f;
                    for (int s = 0; s <= col; s++) {
                        if (!valid[(size_t)b * Tc + s]) {
                            a[s] = -INFINITY;
                            continue;
                        }
                        const float *k = kc + (base + s) * hs;
                        float dt = 0.0f;
                        for (int e = 0; e < hs; e++) dt += q[e] * k[e];
                        a[s] = dt * scale;
                        if (a[s] > mx) mx = a[s];
                    }
                    for (int s = 0; s <= col; s++) {
                        a[s] = a[s] == -INFINITY ? 0.0f : expf(a[s] - mx);
                        sum += a[s];
                    }
                    float *o = atty + (size_t)b * AW + hh * hs;
                    for (int e = 0; e < hs; e++) o[e] = 0.0f;
                    for (int s = 0; s <= col; s++) {
                        if (a[s] == 0.0f) continue;
                        const float *v = vc + (base + s) * hs;
                        float wgt = a[s] / sum;
                        for (int e = 0; e < hs; e++) o[e] += wgt * v[e];
                    }
                }
            }
            leash_gpt_attn_out(m, h, atty, w, B, lora_u);
            for (size_t k = 0; k < (size_t)B * C; k++) x[k] += h[k];
            leash_gpt_norm(m, ln, mean, rstd, x, w->ln2w, w->ln2b, B);
            leash_gpt_mlp(m, h, fch, fchg, ln, w, B, lora_u);
            for (size_t k = 0; k < (size_t)B * C; k++) x[k] += h[k];
        }
        leash_gpt_norm(m, ln, mean, rstd, x, m->p.lnfw, m->p.lnfb, B);
        leash_sgemm(0, 1, B, V, C, 1.0f, ln, C, leash_gpt_head_weight(m), C, 0.0f, logits, V);
    }
    free(mem), free(imem), free(valid), free(pm), free(rng), free(work);
    return rc;
}
