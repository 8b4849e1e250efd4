/* The KV cache and the decode step: see include/leash/gpt.h. A prefill runs the forward's layers (gpt.c), keeps
 * each layer's keys and values and multiplies only the last column by the LM head; a decode step then feeds one
 * token per sequence through the same layer code (leash_gpt_layer_in / _out), attending over the cache instead of
 * the sequence.
 *
 * Dimensions: B sequences, Tc cache columns, C channels, V vocabulary, L layers, NH query heads, NKV key/value
 * heads, hs head size; W, AW, FW, I as in gpt_internal.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpt_internal.h"
#include "leash/error.h"
#include "leash/ops.h"

/* A cache holds B sequences (its slots); a decode step feeds n <= B of them (its rows: row j is slot live[j]).
 * Sequences that stopped leave the rows (leash_kv_cache_keep) without moving anything in the cache. */
struct leash_kv_cache {
    int B, Tc;
    int len;         // columns filled: the next token goes to column len
    int n;           // rows: the sequences a decode step feeds
    int *live;       // (B) the slot of each row, increasing
    float *k, *v;    // (L, B, NKV, Tc, hs) each, by slot
    uint8_t *valid;  // (B, Tc) 1 where a column holds a real token (prompts are left-padded), by slot
    int *pos;        // (B) the next token's position: the real tokens of its sequence so far, by slot
    int *step_pos;   // (n) the positions of this step's tokens, by row
    float *x;        // (n, C) the residual stream, then each layer's output
    layer_acts s;    // (n) rows of one layer's activations
    float *lnf;      // (n, C) the final norm
    float *mean, *rstd; // (n) each, the final norm's statistics
    float *logits;   // (n, V) the last step's logits, for its last column
    float *mem;      // the one allocation the float buffers point into
};

int leash_kv_cache_create(leash_kv_cache **out, const leash_gpt *m, int B, int Tc) {
    const dims *d = &m->d;
    if (B < 1 || Tc < 1 || Tc > m->cfg.n_positions)
        return leash_fail(LEASH_EINVAL, "KV cache for %d sequences of %d tokens; need >= 1 of at most the model's %d "
                                        "positions",
                          B, Tc, m->cfg.n_positions);
    size_t kv = (size_t)d->L * B * d->NKV * Tc * d->hs, R = (size_t)m->lora.rank;
    // k v; x, r2, ln1, ln2, lnf (B, C); atty; qkv; fch; fchg; logits; ln1/ln2/final mean and rstd; LoRA
    size_t floats = 2 * kv + (size_t)B * (5 * d->C + d->AW + d->W + d->FW + d->I + d->V + 6 + LEASH_LORA_SLOTS * R);
    leash_kv_cache *c = calloc(1, sizeof *c);
    float *mem = malloc(floats * sizeof(float));
    uint8_t *valid = malloc((size_t)B * Tc);
    int *ints = malloc(3 * (size_t)B * sizeof(int));
    if (!c || !mem || !valid || !ints) {
        free(c), free(mem), free(valid), free(ints);
        return leash_fail(LEASH_ENOMEM, "cannot allocate a KV cache for %d sequences of %d tokens (%.1f MB)", B, Tc,
                          floats * 4e-6);
    }
    size_t BC = (size_t)B * d->C;
    c->B = B, c->Tc = Tc, c->mem = mem, c->valid = valid, c->pos = ints, c->step_pos = ints + B, c->live = ints + 2 * B;
    c->n = B;
    for (int b = 0; b < B; b++) c->live[b] = b;
    c->k = mem, c->v = c->k + kv;
    c->x = c->v + kv;
    c->s.r2 = c->x + BC, c->s.ln1 = c->s.r2 + BC, c->s.ln2 = c->s.ln1 + BC, c->lnf = c->s.ln2 + BC;
    c->s.atty = c->lnf + BC;                                          // (B, AW)
    c->s.qkv = c->s.atty + (size_t)B * d->AW;                         // (B, W)
    c->s.fch = c->s.qkv + (size_t)B * d->W;                           // (B, FW)
    c->s.fchg = c->s.fch + (size_t)B * d->FW;                         // (B, I)
    c->logits = c->s.fchg + (size_t)B * d->I;                         // (B, V)
    c->s.ln1_mean = c->logits + (size_t)B * d->V, c->s.ln1_rstd = c->s.ln1_mean + B;
    c->s.ln2_mean = c->s.ln1_rstd + B, c->s.ln2_rstd = c->s.ln2_mean + B;
    c->mean = c->s.ln2_rstd + B, c->rstd = c->mean + B;
    c->s.u = R ? c->rstd + B : NULL;                                  // (SLOTS, B, r)
    c->s.r3 = c->x; // a layer's output replaces its input
    *out = c;
    return LEASH_OK;
}

void leash_kv_cache_free(leash_kv_cache *c) {
    if (!c) return;
    free(c->mem), free(c->valid), free(c->pos), free(c);
}

const float *leash_kv_cache_logits(const leash_kv_cache *c) { return c->logits; }

int leash_kv_cache_keep(leash_kv_cache *c, const int *rows, int n) {
    if (n < 1 || n > c->n) return leash_fail(LEASH_EINVAL, "keep %d of a KV cache's %d rows; need 1 to %d", n, c->n, c->n);
    for (int j = 0; j < n; j++) {
        if (rows[j] < 0 || rows[j] >= c->n || (j && rows[j] <= rows[j - 1]))
            return leash_fail(LEASH_EINVAL, "kept row %d is %d; rows must increase within [0, %d)", j, rows[j], c->n);
        c->live[j] = c->live[rows[j]]; // rows[j] >= j: read before it is overwritten
    }
    c->n = n;
    return LEASH_OK;
}

/* The keys and values of one qkv row (NH query heads, then NKV key heads, then NKV value heads) into the
 * cache at layer l, sequence b, column col. */
static void cache_put(leash_kv_cache *c, const dims *d, const float *row, int l, int b, int col) {
    for (int kh = 0; kh < d->NKV; kh++) {
        size_t at = ((((size_t)l * c->B + b) * d->NKV + kh) * c->Tc + col) * d->hs;
        memcpy(c->k + at, row + (size_t)(d->NH + kh) * d->hs, d->hs * sizeof(float));
        memcpy(c->v + at, row + (size_t)(d->NH + d->NKV + kh) * d->hs, d->hs * sizeof(float));
    }
}

/* Layer l's keys and values of every (B, Tp) row into the cache, as the prefill's forward makes them. */
static void prefill_layer(void *ctx, const leash_gpt *m, int l, const layer_acts *s) {
    leash_kv_cache *c = ctx;
    for (size_t n = 0; n < (size_t)m->B * m->T; n++) cache_put(c, &m->d, s->qkv + n * m->d.W, l, (int)(n / m->T), (int)(n % m->T));
}

int leash_gpt_prefill(leash_gpt *m, leash_kv_cache *c, const int *tokens, const uint8_t *mask, int Tp) {
    const dims *d = &m->d;
    int B = c->B;
    if (Tp < 1 || Tp > c->Tc)
        return leash_fail(LEASH_EINVAL, "prefill of %d tokens into a KV cache of %d columns", Tp, c->Tc);
    int rc = leash_gpt_forward_hidden(m, tokens, mask, B, Tp, prefill_layer, c); // no (B, Tp, V) logits
    if (rc) return rc;
    for (int b = 0; b < B; b++) // only the rows (b, Tp - 1) of lnf (B, Tp, C) through the head
        memcpy(c->lnf + (size_t)b * d->C, m->a.lnf + ((size_t)b * Tp + Tp - 1) * d->C, d->C * sizeof(float));
    leash_gpt_head_forward(m, c->logits, c->lnf, B);
    for (int b = 0; b < B; b++) {
        c->pos[b] = 0;
        for (int t = 0; t < c->Tc; t++) {
            int real = t < Tp ? !mask || mask[(size_t)b * Tp + t] : 1;
            c->valid[(size_t)b * c->Tc + t] = (uint8_t)real;
            c->pos[b] += t < Tp && real;
        }
    }
    c->len = Tp, c->n = B;
    for (int b = 0; b < B; b++) c->live[b] = b;
    return LEASH_OK;
}

/* atty (n, AW) of this step's queries over cache columns [0, col] of layer l, padding skipped; row j attends over
 * slot live[j]. */
static void cached_attention(const leash_kv_cache *c, const dims *d, int l, int col) {
    int n = c->n, NH = d->NH, G = d->NH / d->NKV, hs = d->hs, Tc = c->Tc;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int j = 0; j < n; j++) {
        for (int hh = 0; hh < NH; hh++) {
            int b = c->live[j];
            size_t base = (((size_t)l * c->B + b) * d->NKV + hh / G) * Tc;
            const float *q = c->s.qkv + (size_t)j * d->W + hh * hs;
            float a[Tc];
            float mx = -INFINITY, sum = 0.0f;
            for (int s = 0; s <= col; s++) {
                if (!c->valid[(size_t)b * Tc + s]) {
                    a[s] = -INFINITY;
                    continue;
                }
                const float *k = c->k + (base + s) * hs;
                float dt = 0.0f;
                for (int e = 0; e < hs; e++) dt += q[e] * k[e];
                a[s] = dt * scale;
                if (a[s] > mx) mx = a[s];
            }
            for (int s = 0; s <= col; s++) {
                a[s] = a[s] == -INFINITY ? 0.0f : expf(a[s] - mx);
                sum += a[s];
            }
            float *o = c->s.atty + (size_t)j * d->AW + hh * hs;
            for (int e = 0; e < hs; e++) o[e] = 0.0f;
            for (int s = 0; s <= col; s++) {
                if (a[s] == 0.0f) continue;
                const float *v = c->v + (base + s) * hs;
                float wgt = a[s] / sum;
                for (int e = 0; e < hs; e++) o[e] += wgt * v[e];
            }
        }
    }
}

int leash_gpt_decode_step(leash_gpt *m, leash_kv_cache *c, const int *tokens) {
    const dims *d = &m->d;
    int n = c->n, C = d->C, col = c->len, np = m->cfg.n_positions;
    if (col >= c->Tc) return leash_fail(LEASH_EINVAL, "the KV cache's %d columns are full", c->Tc);
    for (int j = 0; j < n; j++)
        if (tokens[j] < 0 || tokens[j] >= d->V)
            return leash_fail(LEASH_EINVAL, "decode step: token %d of sequence %d is outside the vocabulary [0, %d)",
                              tokens[j], c->live[j], d->V);
    for (int j = 0; j < n; j++) {
        int b = c->live[j];
        c->step_pos[j] = c->pos[b] < np ? c->pos[b] : np - 1;
        c->pos[b]++;
    }
    // the n rows through every layer: one product of n rows per weight
    leash_encoder_forward(c->x, tokens, c->step_pos, m->p.wte, m->p.wpe, n, C);
    for (int l = 0; l < d->L; l++) {
        layer_ptrs tmp;
        const layer_ptrs *w = leash_gpt_layer(m, l, &tmp);
        leash_gpt_layer_in(m, w, c->x, &c->s, c->step_pos, n);
        for (int j = 0; j < n; j++) cache_put(c, d, c->s.qkv + (size_t)j * d->W, l, c->live[j], col); // this token joins
        cached_attention(c, d, l, col);
        leash_gpt_layer_out(m, w, c->x, &c->s, n);
    }
    leash_gpt_norm(m, c->lnf, c->mean, c->rstd, c->x, m->p.lnfw, m->p.lnfb, n);
    leash_gpt_head_forward(m, c->logits, c->lnf, n);
    c->len++;
    return LEASH_OK;
}
