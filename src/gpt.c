/* The transformer's forward and backward passes (GPT-2 and the Llama family, with optional LoRA adapters), and
 * the token log-probs and losses on its logits: see include/leash/gpt.h. The parameters (tensor table, names,
 * BF16 storage) are in gpt_params.c.
 *
 * Dimensions: B batch, T time, C channels, V vocabulary, L layers, NH heads, N = B * T rows.
 */
#include "leash/gpt.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/kl.h"
#include "leash/ops.h"
#include "gpt_internal.h"

/* ---- activations ------------------------------------------------------------------------------- */

static int alloc_acts(leash_gpt *m, int B, int T) {
    int one = m->ckpt || m->frozen; // one layer's buffers: checkpointing, or a frozen model (no backward reads them)
    if (m->B == B && m->T == T && m->act_ckpt == one) return LEASH_OK;
    const leash_gpt_config *c = &m->cfg;
    const dims *d = &m->d;
    // L: the layers the per-layer buffers hold (one when checkpointing); resid3 holds all d->L layers' outputs
    // (a backward reads each layer's input), a frozen model's only the last (resid_slot)
    size_t N = (size_t)B * T, C = d->C, L = one ? 1 : d->L, NH = d->NH, W = d->W, AW = d->AW, FW = d->FW, I = d->I;
    int bw = !m->frozen; // backward buffers
    struct {
        void *dst;
        size_t count, size;
    } parts[] = {
        {&m->a.pos, N, sizeof(int)},
        {&m->a.mask, one && bw ? N : 0, 1},
        {&m->a.encoded, N * C, 4},
        {&m->a.ln1, L * N * C, 4},
        {&m->a.ln1_mean, d->rms ? 0 : L * N, 4},
        {&m->a.ln1_rstd, L * N, 4},
        {&m->a.qkv, L * N * W, 4},
        {&m->a.atty, L * N * AW, 4},
        {&m->a.att, L * B * NH * T * T, 4},
        {&m->a.resid2, L * N * C, 4},
        {&m->a.ln2, L * N * C, 4},
        {&m->a.ln2_mean, d->rms ? 0 : L * N, 4},
        {&m->a.ln2_rstd, L * N, 4},
        {&m->a.fch, L * N * FW, 4},
        {&m->a.fch_gelu, L * N * I, 4},
        {&m->a.resid3, (m->frozen ? 1 : (size_t)d->L) * N * C, 4},
        {&m->a.lnf, N * C, 4},
        {&m->a.lnf_mean, d->rms ? 0 : N, 4},
        {&m->a.lnf_rstd, N, 4},
        {&m->a.values, c->scalar_head ? N : 0, 4},
        {&m->a.tokbuf, N, 4},
        // backward only: none for a frozen model
        {&m->a.dvalues, c->scalar_head && bw ? N : 0, 4},
        {&m->a.dresid, bw ? N * C : 0, 4},
        {&m->a.dln, bw ? N * C : 0, 4},
        {&m->a.datty, bw ? N * AW : 0, 4},
        {&m->a.dqkv, bw ? N * W : 0, 4},
        {&m->a.dfch, bw ? N * FW : 0, 4},
        {&m->a.dfch_gelu, bw ? N * I : 0, 4},
        {&m->a.scratch, B * NH * T, 4},
        {&m->a.lora_u, L * LEASH_LORA_SLOTS * N * (size_t)m->lora.rank, 4},
        {&m->a.lora_du, bw ? N * (size_t)m->lora.rank : 0, 4},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) total += (parts[i].count * parts[i].size + 63) & ~(size_t)63;
    free(m->act_memory);
    free(m->tokens);
    m->act_memory = calloc(1, total);
    m->tokens = malloc(N * sizeof(int));
    m->B = m->T = 0;
    m->act_bytes = m->act_memory ? total : 0;
    if (!m->act_memory || !m->tokens)
        return leash_fail(LEASH_ENOMEM, "cannot allocate activations for batch (B=%d, T=%d): %.1f MB; lower the batch "
                                        "size or the sequence length",
                          B, T, total / 1e6);
    char *p = m->act_memory;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        *(void **)parts[i].dst = parts[i].count ? (void *)p : NULL;
        p += (parts[i].count * parts[i].size + 63) & ~(size_t)63;
    }
    m->B = B;
    m->T = T;
    m->act_ckpt = one;
    m->ckpt_live = -1;
    return LEASH_OK;
}

void leash_gpt_set_checkpoint_activations(leash_gpt *m, int on) { m->ckpt = on != 0; }
int leash_gpt_checkpoint_activations(const leash_gpt *m) { return m->ckpt; }

/* ---- forward ----------------------------------------------------------------------------------- */

void leash_gpt_norm(const leash_gpt *m, float *out, float *mean, float *rstd, const float *x, const float *w,
                    const float *b, int N) {
    if (m->d.rms) leash_rmsnorm_forward(out, rstd, x, w, N, m->d.C, m->cfg.layer_norm_epsilon);
    else leash_layernorm_forward(out, mean, rstd, x, w, b, N, m->d.C, m->cfg.layer_norm_epsilon);
}

static void norm_backward(const leash_gpt *m, float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd, int N) {
    if (m->d.rms) leash_rmsnorm_backward(dx, dw, dout, x, w, rstd, N, m->d.C);
    else leash_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, m->d.C);
}

/* u (N, r) = x (N, in) A^T when p has an adapter and the adapters are on (returns 1), else nothing (0). */
static int lora_in(const leash_gpt *m, const proj *p, const float *x, int N, int in, float *u) {
    if (!p->A || !m->adapters_on || !u) return 0;
    int r = m->lora.rank;
    leash_sgemm(0, 1, N, r, in, 1.0f, x, in, p->A, in, 0.0f, u, r);
    return 1;
}

/* out (N, OC; row stride ldo) = x (N, in) through projection p, plus its adapter's (alpha / r) (x A^T) B^T
 * when the adapters are on; u (N, r) keeps x A^T for the backward. */
static void proj_forward(const leash_gpt *m, const proj *p, float *out, int ldo, const float *x, int N, int in, int OC,
                         float *u) {
    if (p->wh) leash_linear_forward_bf16(out, ldo, x, p->wh, p->b, N, in, OC, m->d.out_in);
    else leash_linear_forward(out, ldo, x, p->w, p->b, N, in, OC, m->d.out_in);
    if (!lora_in(m, p, x, N, in, u)) return;
    int r = m->lora.rank;
    leash_sgemm(0, 1, N, OC, r, m->lora.alpha / r, u, r, p->B, r, 1.0f, out, ldo);
}

/* dinp (N, in) += d x, and the gradients of whatever of p is trainable (dp's non-NULL slots). */
static void proj_backward(const leash_gpt *m, const proj *p, const proj *dp, float *dinp, const float *dout, int ldd,
                          const float *x, int N, int in, int OC, const float *u) {
    leash_linear_backward(dinp, dp->w, dp->b, dout, ldd, x, p->w, N, in, OC, m->d.out_in);
    if (!p->A || !m->fwd_adapters) return;
    int r = m->lora.rank;
    float s = m->lora.alpha / r, *du = m->a.lora_du;
    leash_sgemm(1, 0, OC, r, N, s, dout, ldd, u, r, 1.0f, dp->B, r);   // dB += s dout^T u
    leash_sgemm(0, 0, N, r, OC, s, dout, ldd, p->B, r, 0.0f, du, r);   // du = s dout B
    leash_sgemm(1, 0, r, in, N, 1.0f, du, r, x, in, 1.0f, dp->A, in);  // dA += du^T x
    leash_sgemm(0, 0, N, in, r, 1.0f, du, r, p->A, in, 1.0f, dinp, in); // dx += du A
}

#define USLOT(u, j, N) ((u) ? (u) + (size_t)(j) * (N) * m->lora.rank : NULL)

/* qkv (N, W) from the normalised input (N, C), rotated at positions pos when the model is rotary. */
static void qkv_forward(const leash_gpt *m, float *qkv, const float *ln, const layer_ptrs *w, const int *pos, int N,
                        float *u) {
    const dims *d = &m->d;
    if (!d->out_in) { // GPT-2's fused c_attn
        proj_forward(m, &w->q, qkv, d->W, ln, N, d->C, d->W, USLOT(u, SLOT_Q, N));
        return;
    }
    int qo = d->NH * d->hs, kvo = d->NKV * d->hs;
    proj_forward(m, &w->q, qkv, d->W, ln, N, d->C, qo, USLOT(u, SLOT_Q, N));
    proj_forward(m, &w->k, qkv + qo, d->W, ln, N, d->C, kvo, USLOT(u, SLOT_K, N));
    proj_forward(m, &w->v, qkv + qo + kvo, d->W, ln, N, d->C, kvo, USLOT(u, SLOT_V, N));
    if (d->rope) leash_rope(qkv, d->W, pos, m->inv_freq, N, d->NH + d->NKV, d->hs, 1);
}

/* d qkv (N, W) -> d ln (N, C) += and the projections' gradients; dqkv is rotated back in place. */
static void qkv_backward(const leash_gpt *m, float *dln, layer_ptrs *dw, float *dqkv, const float *ln,
                         const layer_ptrs *w, const int *pos, int N, const float *u) {
    const dims *d = &m->d;
    if (!d->out_in) {
        proj_backward(m, &w->q, &dw->q, dln, dqkv, d->W, ln, N, d->C, d->W, USLOT(u, SLOT_Q, N));
        return;
    }
    int qo = d->NH * d->hs, kvo = d->NKV * d->hs;
    if (d->rope) leash_rope(dqkv, d->W, pos, m->inv_freq, N, d->NH + d->NKV, d->hs, -1);
    proj_backward(m, &w->q, &dw->q, dln, dqkv, d->W, ln, N, d->C, qo, USLOT(u, SLOT_Q, N));
    proj_backward(m, &w->k, &dw->k, dln, dqkv + qo, d->W, ln, N, d->C, kvo, USLOT(u, SLOT_K, N));
    proj_backward(m, &w->v, &dw->v, dln, dqkv + qo + kvo, d->W, ln, N, d->C, kvo, USLOT(u, SLOT_V, N));
}

/* out (N, C) = the MLP of ln (N, C) with fch (N, FW) and fchg (N, I) as its intermediates; !full stops before
 * the down projection, out untouched (its adapter's u is still made): what the backward needs. */
static void mlp_forward(const leash_gpt *m, float *out, float *fch, float *fchg, const float *ln, const layer_ptrs *w,
                        int N, float *u, int full) {
    const dims *d = &m->d;
    proj_forward(m, &w->gate, fch, d->FW, ln, N, d->C, d->I, USLOT(u, SLOT_GATE, N));
    if (d->swiglu) {
        proj_forward(m, &w->up, fch + d->I, d->FW, ln, N, d->C, d->I, USLOT(u, SLOT_UP, N));
        leash_swiglu_forward(fchg, fch, N, d->I);
    } else {
        leash_gelu_forward(fchg, fch, (size_t)N * d->I);
    }
    if (full) proj_forward(m, &w->down, out, d->C, fchg, N, d->I, d->C, USLOT(u, SLOT_DOWN, N));
    else lora_in(m, &w->down, fchg, N, d->I, USLOT(u, SLOT_DOWN, N));
}

const float *leash_gpt_head_weight(const leash_gpt *m) { return m->p.lm_head ? m->p.lm_head : m->p.wte; }

void leash_gpt_head_forward(const leash_gpt *m, float *logits, const float *x, int N) {
    int C = m->cfg.n_embd, V = m->cfg.vocab_size;
    if (m->head_bf16 && m->bf16_compute) leash_linear_forward_bf16(logits, V, x, m->head_bf16, NULL, N, C, V, 1);
    else leash_sgemm(0, 1, N, V, C, 1.0f, x, C, leash_gpt_head_weight(m), C, 0.0f, logits, V);
}

/* ---- one layer, shared by the full forward and the KV-cache decode step (gpt_decode.c) ------------ */

void leash_gpt_layer_in(const leash_gpt *m, const layer_ptrs *w, const float *x, const layer_acts *s, const int *pos,
                        int N) {
    leash_gpt_norm(m, s->ln1, s->ln1_mean, s->ln1_rstd, x, w->ln1w, w->ln1b, N);
    qkv_forward(m, s->qkv, s->ln1, w, pos, N, s->u);
}

/* leash_gpt_layer_out; !full: without the MLP's down projection and r3, which no backward reads. */
static void layer_out(const leash_gpt *m, const layer_ptrs *w, const float *x, const layer_acts *s, int N, int full) {
    const dims *d = &m->d;
    float *r2 = s->r2, *r3 = s->r3;
    proj_forward(m, &w->o, r2, d->C, s->atty, N, d->AW, d->C, USLOT(s->u, SLOT_O, N));
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < (size_t)N * d->C; i++) r2[i] += x[i];
    leash_gpt_norm(m, s->ln2, s->ln2_mean, s->ln2_rstd, r2, w->ln2w, w->ln2b, N);
    mlp_forward(m, r3, s->fch, s->fchg, s->ln2, w, N, s->u, full); // r3 may be x's buffer: x is not read again
    if (!full) return;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < (size_t)N * d->C; i++) r3[i] += r2[i];
}

void leash_gpt_layer_out(const leash_gpt *m, const layer_ptrs *w, const float *x, const layer_acts *s, int N) {
    layer_out(m, w, x, s, N, 1);
}

/* Where layer l's output is in resid3, in (N, C) slices: l, or for a frozen model 0, over its input (a layer
 * reads x before it writes r3, leash_gpt_layer_out; nothing reads an earlier layer's output again). */
static size_t resid_slot(const leash_gpt *m, int l) { return m->frozen ? 0 : (size_t)l; }

/* Layer l's slices of the forward's activations (a.ln1 .. a.resid3 at shape (B, T)), and its input x (N, C).
 * Checkpointing: every layer shares the one layer's buffers, but for r3 (its output, kept for every layer). */
static layer_acts layer_slice(const leash_gpt *m, int l, const float **x) {
    const dims *d = &m->d;
    const acts *a = &m->a;
    size_t N = (size_t)m->B * m->T, k = m->act_ckpt ? 0 : (size_t)l, nc = k * N * d->C, ln_ = k * N;
    size_t out = resid_slot(m, l) * N * d->C; // resid3's slice
    *x = l == 0 ? a->encoded : a->resid3 + resid_slot(m, l - 1) * N * d->C;
    return (layer_acts){
        .ln1 = a->ln1 + nc, .ln1_mean = d->rms ? NULL : a->ln1_mean + ln_, .ln1_rstd = a->ln1_rstd + ln_,
        .qkv = a->qkv + ln_ * d->W, .atty = a->atty + ln_ * d->AW, .att = a->att + k * m->B * d->NH * m->T * m->T,
        .r2 = a->resid2 + nc, .ln2 = a->ln2 + nc, .ln2_mean = d->rms ? NULL : a->ln2_mean + ln_,
        .ln2_rstd = a->ln2_rstd + ln_, .fch = a->fch + ln_ * d->FW, .fchg = a->fch_gelu + ln_ * d->I,
        .r3 = a->resid3 + out, .u = a->lora_u ? a->lora_u + k * LEASH_LORA_SLOTS * N * m->lora.rank : NULL};
}

/* Layer l's forward from x (N, C) into s: the full forward's, and (!full: all but the MLP's down projection and
 * r3) the backward's recompute when checkpointing; the same calls, so the same numbers. */
static void layer_forward(leash_gpt *m, int l, const float *x, const layer_acts *s, const uint8_t *mask, int full) {
    const dims *d = &m->d;
    layer_ptrs tmp;
    const layer_ptrs *w = leash_gpt_layer(m, l, &tmp);
    leash_gpt_layer_in(m, w, x, s, m->a.pos, m->B * m->T);
    leash_attention_forward(s->atty, s->att, s->qkv, mask, m->B, m->T, d->NH, d->NKV, d->hs);
    layer_out(m, w, x, s, m->B * m->T, full);
}

/* Everything up to the final norm (and the scalar head): a->lnf (N, C); fn (or NULL) sees every layer. */
static int forward_trunk(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T, leash_gpt_layer_fn fn,
                         void *ctx) {
    const leash_gpt_config *c = &m->cfg;
    if (B < 1 || T < 1) return leash_fail(LEASH_EINVAL, "batch shape (B=%d, T=%d); both must be >= 1", B, T);
    if (T > c->n_positions)
        return leash_fail(LEASH_EINVAL, "sequence length T = %d exceeds the model's n_positions = %d; truncate the "
                                        "input",
                          T, c->n_positions);
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return leash_fail(LEASH_EINVAL, "token %d at (sequence %zu, position %zu) is outside the vocabulary [0, %d)",
                              tokens[i], i / T, i % T, c->vocab_size);
    int rc = alloc_acts(m, B, T);
    if (rc) return rc;
    const dims *d = &m->d;
    int N = B * T, C = d->C, L = d->L;
    acts *a = &m->a;
    m->has_logits = 0;
    m->fwd_adapters = m->adapters_on;
    memcpy(m->tokens, tokens, (size_t)N * sizeof(int));
    m->fwd_masked = mask != NULL;
    if (mask && a->mask) memcpy(a->mask, mask, (size_t)N);
    for (int b = 0; b < B; b++) { // positions count real tokens
        int k = 0;
        for (int t = 0; t < T; t++) {
            int real = !mask || mask[(size_t)b * T + t];
            a->pos[(size_t)b * T + t] = real ? k++ : 0;
        }
    }
    leash_encoder_forward(a->encoded, tokens, a->pos, m->p.wte, m->p.wpe, N, C);
    for (int l = 0; l < L; l++) {
        const float *x;
        layer_acts s = layer_slice(m, l, &x);
        layer_forward(m, l, x, &s, mask, 1);
        if (fn) fn(ctx, m, l, &s);
    }
    m->ckpt_live = L - 1; // checkpointing: the one layer's buffers hold the last layer's activations
    float *last = a->resid3 + resid_slot(m, L - 1) * N * C;
    leash_gpt_norm(m, a->lnf, a->lnf_mean, a->lnf_rstd, last, m->p.lnfw, m->p.lnfb, N);
    if (c->scalar_head) leash_matmul_forward(a->values, a->lnf, m->p.headw, m->p.headb, N, C, 1);
    return LEASH_OK;
}

int leash_gpt_forward_values(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T) {
    if (!m->cfg.scalar_head) return leash_fail(LEASH_EINVAL, "the model has no scalar head: no values to compute");
    return forward_trunk(m, tokens, mask, B, T, NULL, NULL);
}

int leash_gpt_forward_hidden(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T, leash_gpt_layer_fn fn,
                             void *ctx) {
    return forward_trunk(m, tokens, mask, B, T, fn, ctx);
}

int leash_gpt_forward(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T) {
    return leash_gpt_forward_each(m, tokens, mask, B, T, NULL, NULL);
}

int leash_gpt_forward_each(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T, leash_gpt_layer_fn fn,
                           void *ctx) {
    int rc = forward_trunk(m, tokens, mask, B, T, fn, ctx);
    if (rc) return rc;
    size_t N = (size_t)B * T, V = m->cfg.vocab_size;
    if (m->head_B != B || m->head_T != T) { // logits and their gradient, once per shape
        free(m->head_memory);
        m->head_B = m->head_T = 0;
        if (!(m->head_memory = calloc((m->frozen ? 1 : 2) * N * V, sizeof(float))))
            return leash_fail(LEASH_ENOMEM, "cannot allocate logits for batch (B=%d, T=%d): %.1f MB; lower the batch "
                                            "size or the sequence length",
                              B, T, 8e-6 * N * V);
        m->head_B = B, m->head_T = T;
    }
    m->a.logits = m->head_memory;
    m->a.dlogits = m->frozen ? NULL : m->head_memory + N * V;
    leash_gpt_head_forward(m, m->a.logits, m->a.lnf, (int)N);
    m->has_logits = 1;
    return LEASH_OK;
}


/* The message for row n of (., T) logits that failed inside a parallel loop (where a worker thread's
 * message is lost): the row is checked again here, on the caller's thread. */
static int row_failure(const float *row, int V, float temperature, int n, int T) {
    double lse;
    int rc = leash_logsumexp(row, V, temperature, &lse);
    return leash_fail_wrap(rc ? rc : LEASH_ENUMERIC, "logits at (sequence %d, position %d)", n / T, n % T);
}


const float *leash_gpt_logits(const leash_gpt *m) { return m->a.logits; }
const float *leash_gpt_values(const leash_gpt *m) { return m->a.values; }
float *leash_gpt_dlogits(leash_gpt *m) { return m->a.dlogits; }
float *leash_gpt_dvalues(leash_gpt *m) { return m->a.dvalues; }

/* ---- backward ---------------------------------------------------------------------------------- */

static int refuse_frozen(const leash_gpt *m, const char *what) {
    return m->frozen ? leash_fail(LEASH_EINVAL, "%s: the model is frozen (a reference): it has no gradients", what) : LEASH_OK;
}

int leash_gpt_backward(leash_gpt *m) {
    if (refuse_frozen(m, "backward")) return LEASH_EINVAL;
    if (!m->has_logits) return leash_fail(LEASH_EINVAL, "backward needs a leash_gpt_forward first");
    const leash_gpt_config *c = &m->cfg;
    const dims *d = &m->d;
    int B = m->B, T = m->T, N = B * T, C = d->C, L = d->L, V = d->V, NH = d->NH;
    acts *a = &m->a;
    size_t nc_bytes = (size_t)N * C * sizeof(float);

    // LM head (tied or not) and scalar head: d lnf
    memset(a->dln, 0, nc_bytes);
    leash_sgemm(0, 0, N, C, V, 1.0f, a->dlogits, V, leash_gpt_head_weight(m), C, 0.0f, a->dln, C);
    float *dhead = m->p.lm_head ? m->g.lm_head : m->g.wte; // NULL: frozen (LoRA)
    if (dhead) leash_sgemm(1, 0, V, C, N, 1.0f, a->dlogits, V, a->lnf, C, 1.0f, dhead, C);
    if (c->scalar_head) leash_matmul_backward(a->dln, m->g.headw, m->g.headb, a->dvalues, a->lnf, m->p.headw, N, C, 1);

    memset(a->dresid, 0, nc_bytes);
    float *last = a->resid3 + resid_slot(m, L - 1) * N * C;
    norm_backward(m, a->dresid, m->g.lnfw, m->g.lnfb, a->dln, last, m->p.lnfw, a->lnf_mean, a->lnf_rstd, N);

    for (int l = L - 1; l >= 0; l--) {
        const float *x;
        layer_acts s = layer_slice(m, l, &x);
        if (m->act_ckpt && m->ckpt_live != l) { // layer l again, as its forward ran (adapters as then)
            int on = m->adapters_on;
            m->adapters_on = m->fwd_adapters;
            layer_forward(m, l, x, &s, m->fwd_masked ? a->mask : NULL, 0);
            m->adapters_on = on;
            m->ckpt_live = l;
        }
        layer_ptrs tmp; // after the recompute: both use the one layer's F32 scratch
        const layer_ptrs *w = leash_gpt_layer_f32(m, l, &tmp);
        layer_ptrs *dw = &m->g.layer[l];
        const float *ln1 = s.ln1, *qkv = s.qkv, *atty = s.atty, *att = s.att, *r2 = s.r2, *ln2 = s.ln2, *fch = s.fch,
                    *fchg = s.fchg, *u = s.u;
        // r3 = r2 + down(act(up-projections(norm2(r2)))): dresid flows through the residual unchanged
        memset(a->dfch_gelu, 0, (size_t)N * d->I * sizeof(float));
        proj_backward(m, &w->down, &dw->down, a->dfch_gelu, a->dresid, C, fchg, N, d->I, C, USLOT(u, SLOT_DOWN, N));
        memset(a->dfch, 0, (size_t)N * d->FW * sizeof(float));
        memset(a->dln, 0, nc_bytes);
        if (d->swiglu) {
            leash_swiglu_backward(a->dfch, fch, a->dfch_gelu, N, d->I);
            proj_backward(m, &w->gate, &dw->gate, a->dln, a->dfch, d->FW, ln2, N, C, d->I, USLOT(u, SLOT_GATE, N));
            proj_backward(m, &w->up, &dw->up, a->dln, a->dfch + d->I, d->FW, ln2, N, C, d->I, USLOT(u, SLOT_UP, N));
        } else {
            leash_gelu_backward(a->dfch, fch, a->dfch_gelu, (size_t)N * d->I);
            proj_backward(m, &w->gate, &dw->gate, a->dln, a->dfch, d->FW, ln2, N, C, d->I, USLOT(u, SLOT_GATE, N));
        }
        norm_backward(m, a->dresid, dw->ln2w, dw->ln2b, a->dln, r2, w->ln2w, s.ln2_mean, s.ln2_rstd, N);
        // r2 = x + o(attention(qkv(norm1(x))))
        memset(a->datty, 0, (size_t)N * d->AW * sizeof(float));
        proj_backward(m, &w->o, &dw->o, a->datty, a->dresid, C, atty, N, d->AW, C, USLOT(u, SLOT_O, N));
        memset(a->dqkv, 0, (size_t)N * d->W * sizeof(float));
        leash_attention_backward(a->dqkv, a->scratch, a->datty, qkv, att, B, T, NH, d->NKV, d->hs);
        memset(a->dln, 0, nc_bytes);
        qkv_backward(m, a->dln, dw, a->dqkv, ln1, w, a->pos, N, u);
        // without rotation, the key bias adds q . b_k to every score of a query alike, which softmax ignores:
        // its gradient is 0 in exact arithmetic (each query's score gradients sum to 0). Make it exactly 0,
        // or AdamW turns the rounding noise into steps of the learning rate's size (and runs that differ only
        // in summation order, such as 1 and 2 MPI ranks, drift apart there). Rotated keys make it position-
        // dependent, so a rotary model's key bias keeps its gradient.
        if (!d->rope && dw->q.b) memset(dw->q.b + C, 0, (size_t)C * sizeof(float));
        norm_backward(m, a->dresid, dw->ln1w, dw->ln1b, a->dln, x, w->ln1w, s.ln1_mean, s.ln1_rstd, N);
    }
    if (m->g.wte) leash_encoder_backward(m->g.wte, m->g.wpe, a->dresid, m->tokens, a->pos, N, C);

    memset(a->dlogits, 0, (size_t)N * V * sizeof(float));
    if (a->dvalues) memset(a->dvalues, 0, (size_t)N * sizeof(float));
    return LEASH_OK;
}

/* ---- token log-probs and losses ---------------------------------------------------------------- */

static int check_targets(const leash_gpt *m, const int *targets) {
    if (!m->has_logits)
        return leash_fail(LEASH_EINVAL, "token log-probs need a leash_gpt_forward first");
    for (size_t i = 0; i < (size_t)m->B * m->T; i++)
        if (targets[i] >= m->cfg.vocab_size)
            return leash_fail(LEASH_EINVAL, "target %d at (sequence %zu, position %zu) is outside the vocabulary [0, %d)",
                              targets[i], i / m->T, i % m->T, m->cfg.vocab_size);
    return LEASH_OK;
}

int leash_gpt_token_logprobs(leash_gpt *m, const int *targets, float temperature, float *logp, float *entropy) {
    int rc = check_targets(m, targets);
    if (rc) return rc;
    int N = m->B * m->T, V = m->cfg.vocab_size, first_bad = N;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        logp[n] = 0.0f;
        if (entropy) entropy[n] = 0.0f;
        if (targets[n] < 0) continue;
        const float *z = m->a.logits + (size_t)n * V;
        double lse, h = 0.0;
        if (leash_logsumexp(z, V, temperature, &lse) || (entropy && leash_entropy(z, V, temperature, &h))) {
#pragma omp critical(leash_gpt_logprobs)
            if (n < first_bad) first_bad = n;
            continue;
        }
        logp[n] = (float)(z[targets[n]] / (double)temperature - lse);
        if (entropy) entropy[n] = (float)h;
    }
    return first_bad < N ? row_failure(m->a.logits + (size_t)first_bad * V, V, temperature, first_bad, m->T) : LEASH_OK;
}

int leash_gpt_token_logprobs_backward(leash_gpt *m, const int *targets, float temperature, const float *dlogp) {
    int rc = refuse_frozen(m, "log-prob backward");
    if (!rc) rc = check_targets(m, targets);
    if (rc) return rc;
    int N = m->B * m->T, V = m->cfg.vocab_size, first_bad = N;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0 || dlogp[n] == 0.0f) continue;
        const float *z = m->a.logits + (size_t)n * V;
        double lse;
        if (leash_logsumexp(z, V, temperature, &lse)) {
#pragma omp critical(leash_gpt_logprobs_bwd)
            if (n < first_bad) first_bad = n;
            continue;
        }
        leash_logprob_backward(z, V, temperature, lse, targets[n], dlogp[n], m->a.dlogits + (size_t)n * V);
    }
    return first_bad < N ? row_failure(m->a.logits + (size_t)first_bad * V, V, temperature, first_bad, m->T) : LEASH_OK;
}

int leash_gpt_cross_entropy(leash_gpt *m, const int *targets, double *loss, long *count) {
    int rc = refuse_frozen(m, "cross-entropy (it adds its gradient)");
    if (!rc) rc = check_targets(m, targets);
    if (rc) return rc;
    int N = m->B * m->T;
    long k = 0;
    for (int n = 0; n < N; n++) k += targets[n] >= 0;
    if (k == 0) return leash_fail(LEASH_EINVAL, "cross-entropy: no position has a target (all are < 0)");
    float *lp = m->a.tokbuf;
    if ((rc = leash_gpt_token_logprobs(m, targets, 1.0f, lp, NULL))) return rc;
    double s = 0.0;
    for (int n = 0; n < N; n++) s -= lp[n]; // 0 where there is no target
    // d mean(-logp) / d logp = -1 / k at every targeted position
    for (int n = 0; n < N; n++) lp[n] = targets[n] >= 0 ? (float)(-1.0 / k) : 0.0f;
    if ((rc = leash_gpt_token_logprobs_backward(m, targets, 1.0f, lp))) return rc;
    *loss = s / k;
    if (count) *count = k;
    return LEASH_OK;
}
