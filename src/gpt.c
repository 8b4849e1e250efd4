/* The GPT-2 transformer: see include/leash/gpt.h.
 *
 * Dimensions: B batch, T time, C channels, V vocabulary, L layers, NH heads, N = B * T rows.
 */
#include "leash/gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/kl.h"
#include "leash/ops.h"
#include "leash/rng.h"
#include "gpt_internal.h"

int leash_gpt_config_check(const leash_gpt_config *c) {
    if (c->vocab_size < 1) return leash_fail(LEASH_EINVAL, "config: vocab_size = %d; it must be >= 1", c->vocab_size);
    if (c->n_positions < 1) return leash_fail(LEASH_EINVAL, "config: n_positions = %d; it must be >= 1", c->n_positions);
    if (c->n_layer < 1) return leash_fail(LEASH_EINVAL, "config: n_layer = %d; it must be >= 1", c->n_layer);
    if (c->n_head < 1 || c->n_embd < 1 || c->n_embd % c->n_head)
        return leash_fail(LEASH_EINVAL, "config: n_embd = %d, n_head = %d; n_embd must be a positive multiple of n_head",
                          c->n_embd, c->n_head);
    if (c->bos_token_id < -1 || c->bos_token_id >= c->vocab_size)
        return leash_fail(LEASH_EINVAL, "config: bos_token_id = %d outside the vocabulary [0, %d)", c->bos_token_id,
                          c->vocab_size);
    if (c->eos_token_id < -1 || c->eos_token_id >= c->vocab_size)
        return leash_fail(LEASH_EINVAL, "config: eos_token_id = %d outside the vocabulary [0, %d)", c->eos_token_id,
                          c->vocab_size);
    if (!(c->layer_norm_epsilon > 0.0f) || !isfinite(c->layer_norm_epsilon))
        return leash_fail(LEASH_EINVAL, "config: layer_norm_epsilon = %g; it must be > 0", (double)c->layer_norm_epsilon);
    // every buffer index must fit: the largest activation is L * B * NH * T * T, bounded at forward time
    if ((double)c->vocab_size * c->n_embd > 4e9 || (double)c->n_embd * c->n_embd * 12.0 * c->n_layer > 4e11)
        return leash_fail(LEASH_EINVAL, "config: model too large (vocab %d x n_embd %d, %d layers)", c->vocab_size,
                          c->n_embd, c->n_layer);
    return LEASH_OK;
}

/* ---- parameters -------------------------------------------------------------------------------- */

static void add_tensor(leash_gpt *m, const char *name, int ndim, int64_t d0, int64_t d1, int decay) {
    leash_tensor_info *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 0;
    t->numel = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
    t->offset = m->num_params;
    t->decay = decay;
    m->num_params += t->numel;
}

static void point(param_ptrs *p, float *base, const leash_gpt *m) {
    int i = 0;
    p->wte = base + m->tensors[i++].offset;
    p->wpe = base + m->tensors[i++].offset;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        float **f = (float **)&p->layer[l];
        for (int k = 0; k < LAYER_TENSORS; k++) f[k] = base + m->tensors[i++].offset;
    }
    p->lnfw = base + m->tensors[i++].offset;
    p->lnfb = base + m->tensors[i++].offset;
    p->headw = m->cfg.scalar_head ? base + m->tensors[i++].offset : NULL;
    p->headb = m->cfg.scalar_head ? base + m->tensors[i++].offset : NULL;
}

#define SCORE_ROWS 64 // rows of logits leash_gpt_score computes at a time

int leash_gpt_create(leash_gpt **out, const leash_gpt_config *cfg) {
    int rc = leash_gpt_config_check(cfg);
    if (rc) return rc;
    int L = cfg->n_layer, C = cfg->n_embd;
    leash_gpt *m = calloc(1, sizeof *m);
    if (!m) return leash_fail(LEASH_ENOMEM, "cannot allocate a model");
    m->cfg = *cfg;
    m->tensors = calloc((size_t)4 + LAYER_TENSORS * L + 2, sizeof *m->tensors);
    m->p.layer = calloc(L, sizeof(layer_ptrs));
    m->g.layer = calloc(L, sizeof(layer_ptrs));
    if (!m->tensors || !m->p.layer || !m->g.layer) {
        leash_gpt_free(m);
        return leash_fail(LEASH_ENOMEM, "cannot allocate a model's tensor table");
    }
    // the order here is the order of layer_ptrs: point() walks it the same way
    add_tensor(m, "wte.weight", 2, cfg->vocab_size, C, 1);
    add_tensor(m, "wpe.weight", 2, cfg->n_positions, C, 1);
    for (int l = 0; l < L; l++) {
        char n[64];
#define T1(suffix, d0, decay) (snprintf(n, sizeof n, "h.%d.%s", l, suffix), add_tensor(m, n, 1, d0, 0, decay))
#define T2(suffix, d0, d1, decay) (snprintf(n, sizeof n, "h.%d.%s", l, suffix), add_tensor(m, n, 2, d0, d1, decay))
        T1("ln_1.weight", C, 0);
        T1("ln_1.bias", C, 0);
        T2("attn.c_attn.weight", C, 3 * C, 1);
        T1("attn.c_attn.bias", 3 * C, 0);
        T2("attn.c_proj.weight", C, C, 1);
        T1("attn.c_proj.bias", C, 0);
        T1("ln_2.weight", C, 0);
        T1("ln_2.bias", C, 0);
        T2("mlp.c_fc.weight", C, 4 * C, 1);
        T1("mlp.c_fc.bias", 4 * C, 0);
        T2("mlp.c_proj.weight", 4 * C, C, 1);
        T1("mlp.c_proj.bias", C, 0);
#undef T1
#undef T2
    }
    add_tensor(m, "ln_f.weight", 1, C, 0, 0);
    add_tensor(m, "ln_f.bias", 1, C, 0, 0);
    if (cfg->scalar_head) {
        add_tensor(m, "score.weight", 2, 1, C, 1);
        add_tensor(m, "score.bias", 1, 1, 0, 0);
    }
    m->params = calloc(m->num_params, sizeof(float));
    m->grads = calloc(m->num_params, sizeof(float));
    if (!m->params || !m->grads) {
        size_t n = m->num_params;
        leash_gpt_free(m);
        return leash_fail(LEASH_ENOMEM, "cannot allocate %zu parameters (%.1f MB, twice: weights and gradients)", n,
                          n * 4e-6);
    }
    point(&m->p, m->params, m);
    point(&m->g, m->grads, m);
    *out = m;
    return LEASH_OK;
}

void leash_gpt_free(leash_gpt *m) {
    if (!m) return;
    free(m->tensors);
    free(m->p.layer);
    free(m->g.layer);
    free(m->params);
    free(m->grads);
    free(m->act_memory);
    free(m->head_memory);
    free(m->chunk);
    free(m->tokens);
    free(m);
}

void leash_gpt_init(leash_gpt *m, uint64_t seed) {
    leash_rng rng;
    double proj_std = 0.02 / sqrt(2.0 * m->cfg.n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const leash_tensor_info *t = &m->tensors[i];
        float *x = m->params + t->offset;
        leash_rng_seed(&rng, seed, (uint64_t)i); // one stream per tensor: independent of the others' sizes
        int is_ln_weight = strstr(t->name, "ln_") && strstr(t->name, ".weight");
        int is_proj = strstr(t->name, "c_proj.weight") != NULL;
        for (size_t k = 0; k < t->numel; k++) {
            if (is_ln_weight) x[k] = 1.0f;
            else if (t->ndim == 2) x[k] = (float)((is_proj ? proj_std : 0.02) * leash_rng_normal(&rng));
            else x[k] = 0.0f;
        }
    }
}

const leash_gpt_config *leash_gpt_cfg(const leash_gpt *m) { return &m->cfg; }

void leash_gpt_set_score_stats(leash_gpt *m, float mean, float std) {
    m->cfg.score_mean = mean;
    m->cfg.score_std = std;
}

int leash_gpt_copy_with_head(leash_gpt **out, const leash_gpt *src, int keep_head, uint64_t seed) {
    leash_gpt_config cfg = src->cfg;
    cfg.scalar_head = 1;
    leash_gpt *m;
    int rc = leash_gpt_create(&m, &cfg);
    if (rc) return rc;
    // the tensors of src come first in the same order; the head (last two) is copied or initialised
    size_t body = src->cfg.scalar_head ? src->num_params - (size_t)cfg.n_embd - 1 : src->num_params;
    memcpy(m->params, src->params, body * sizeof(float));
    if (src->cfg.scalar_head && keep_head) {
        memcpy(m->params + body, src->params + body, ((size_t)cfg.n_embd + 1) * sizeof(float));
    } else {
        leash_rng rng;
        leash_rng_seed(&rng, seed, UINT64_C(0x68656164));
        for (int k = 0; k < cfg.n_embd; k++) m->p.headw[k] = (float)(0.02 * leash_rng_normal(&rng));
        m->p.headb[0] = 0.0f;
        m->cfg.score_mean = m->cfg.score_std = 0.0f;
    }
    *out = m;
    return LEASH_OK;
}
size_t leash_gpt_num_params(const leash_gpt *m) { return m->num_params; }
float *leash_gpt_params(leash_gpt *m) { return m->params; }
float *leash_gpt_grads(leash_gpt *m) { return m->grads; }
int leash_gpt_num_tensors(const leash_gpt *m) { return m->n_tensors; }
const leash_tensor_info *leash_gpt_tensor(const leash_gpt *m, int i) {
    return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL;
}
void leash_gpt_zero_grad(leash_gpt *m) {
    if (m->grads) memset(m->grads, 0, m->num_params * sizeof(float));
}

void leash_gpt_freeze(leash_gpt *m) {
    if (m->frozen) return;
    m->frozen = 1;
    free(m->grads);
    m->grads = NULL;
    for (int l = 0; l < m->cfg.n_layer; l++) memset(&m->g.layer[l], 0, sizeof m->g.layer[l]);
    layer_ptrs *keep = m->g.layer;
    memset(&m->g, 0, sizeof m->g);
    m->g.layer = keep;
    // activations and logits are reallocated without their backward halves at the next forward
    free(m->act_memory), free(m->tokens), free(m->head_memory);
    m->act_memory = NULL, m->tokens = NULL, m->head_memory = NULL;
    m->act_bytes = 0;
    m->B = m->T = m->head_B = m->head_T = 0;
    m->has_logits = 0;
}

int leash_gpt_is_frozen(const leash_gpt *m) { return m->frozen; }

size_t leash_gpt_memory_bytes(const leash_gpt *m) {
    size_t V = m->cfg.vocab_size, head = (size_t)m->head_B * m->head_T * V * (m->frozen ? 1 : 2);
    return (m->num_params * (m->grads ? 2 : 1) + head + (m->chunk ? (size_t)SCORE_ROWS * V : 0)) * sizeof(float) +
           m->act_bytes + (m->tokens ? (size_t)m->B * m->T * sizeof(int) : 0);
}

/* ---- activations ------------------------------------------------------------------------------- */

static int alloc_acts(leash_gpt *m, int B, int T) {
    if (m->B == B && m->T == T) return LEASH_OK;
    const leash_gpt_config *c = &m->cfg;
    size_t N = (size_t)B * T, C = c->n_embd, L = c->n_layer, NH = c->n_head;
    struct {
        void *dst;
        size_t count, size;
    } parts[] = {
        {&m->a.pos, N, sizeof(int)},
        {&m->a.encoded, N * C, 4},
        {&m->a.ln1, L * N * C, 4},
        {&m->a.ln1_mean, L * N, 4},
        {&m->a.ln1_rstd, L * N, 4},
        {&m->a.qkv, L * N * 3 * C, 4},
        {&m->a.atty, L * N * C, 4},
        {&m->a.att, L * B * NH * T * T, 4},
        {&m->a.resid2, L * N * C, 4},
        {&m->a.ln2, L * N * C, 4},
        {&m->a.ln2_mean, L * N, 4},
        {&m->a.ln2_rstd, L * N, 4},
        {&m->a.fch, L * N * 4 * C, 4},
        {&m->a.fch_gelu, L * N * 4 * C, 4},
        {&m->a.resid3, L * N * C, 4},
        {&m->a.lnf, N * C, 4},
        {&m->a.lnf_mean, N, 4},
        {&m->a.lnf_rstd, N, 4},
        {&m->a.values, c->scalar_head ? N : 0, 4},
        {&m->a.tokbuf, N, 4},
        // backward only: none for a frozen model
        {&m->a.dvalues, c->scalar_head && !m->frozen ? N : 0, 4},
        {&m->a.dresid, m->frozen ? 0 : N * C, 4},
        {&m->a.dln, m->frozen ? 0 : N * C, 4},
        {&m->a.datty, m->frozen ? 0 : N * C, 4},
        {&m->a.dqkv, m->frozen ? 0 : N * 3 * C, 4},
        {&m->a.dfch, m->frozen ? 0 : N * 4 * C, 4},
        {&m->a.dfch_gelu, m->frozen ? 0 : N * 4 * C, 4},
        {&m->a.scratch, B * NH * T, 4},
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
    return LEASH_OK;
}

/* ---- forward ----------------------------------------------------------------------------------- */

/* Everything up to the final LayerNorm (and the scalar head): a->lnf (N, C). */
static int forward_trunk(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T) {
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
    int N = B * T, C = c->n_embd, L = c->n_layer, NH = c->n_head;
    acts *a = &m->a;
    m->has_logits = 0;
    memcpy(m->tokens, tokens, (size_t)N * sizeof(int));
    for (int b = 0; b < B; b++) { // positions count real tokens
        int k = 0;
        for (int t = 0; t < T; t++) {
            int real = !mask || mask[(size_t)b * T + t];
            a->pos[(size_t)b * T + t] = real ? k++ : 0;
        }
    }
    leash_encoder_forward(a->encoded, tokens, a->pos, m->p.wte, m->p.wpe, N, C);
    for (int l = 0; l < L; l++) {
        const layer_ptrs *w = &m->p.layer[l];
        size_t nc = (size_t)l * N * C;
        float *x = l == 0 ? a->encoded : a->resid3 + nc - (size_t)N * C;
        float *ln1 = a->ln1 + nc, *qkv = a->qkv + 3 * nc, *atty = a->atty + nc;
        float *att = a->att + (size_t)l * B * NH * T * T, *r2 = a->resid2 + nc, *ln2 = a->ln2 + nc;
        float *fch = a->fch + 4 * nc, *fchg = a->fch_gelu + 4 * nc, *r3 = a->resid3 + nc;
        leash_layernorm_forward(ln1, a->ln1_mean + (size_t)l * N, a->ln1_rstd + (size_t)l * N, x, w->ln1w, w->ln1b, N, C,
                                c->layer_norm_epsilon);
        leash_matmul_forward(qkv, ln1, w->qkvw, w->qkvb, N, C, 3 * C);
        leash_attention_forward(atty, att, qkv, mask, B, T, C, NH);
        leash_matmul_forward(r2, atty, w->attprojw, w->attprojb, N, C, C);
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < (size_t)N * C; i++) r2[i] += x[i];
        leash_layernorm_forward(ln2, a->ln2_mean + (size_t)l * N, a->ln2_rstd + (size_t)l * N, r2, w->ln2w, w->ln2b, N, C,
                                c->layer_norm_epsilon);
        leash_matmul_forward(fch, ln2, w->fcw, w->fcb, N, C, 4 * C);
        leash_gelu_forward(fchg, fch, (size_t)N * 4 * C);
        leash_matmul_forward(r3, fchg, w->fcprojw, w->fcprojb, N, 4 * C, C);
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < (size_t)N * C; i++) r3[i] += r2[i];
    }
    float *last = a->resid3 + (size_t)(L - 1) * N * C;
    leash_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, last, m->p.lnfw, m->p.lnfb, N, C, c->layer_norm_epsilon);
    if (c->scalar_head) leash_matmul_forward(a->values, a->lnf, m->p.headw, m->p.headb, N, C, 1);
    return LEASH_OK;
}

int leash_gpt_forward(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T) {
    int rc = forward_trunk(m, tokens, mask, B, T);
    if (rc) return rc;
    size_t N = (size_t)B * T, V = m->cfg.vocab_size;
    if (m->head_B != B || m->head_T != T) { // logits and their gradient, once per shape
        free(m->head_memory);
        m->head_B = m->head_T = 0;
        if (!(m->head_memory = calloc((m->frozen ? 1 : 2) * N * V, sizeof(float))))
            return leash_fail(LEASH_ENOMEM, "cannot allocate logits for batch (B=%d, T=%d): %.1f MB; lower the batch "
                                            "size, or use leash_gpt_score when no backward is needed",
                              B, T, 8e-6 * N * V);
        m->head_B = B, m->head_T = T;
    }
    m->a.logits = m->head_memory;
    m->a.dlogits = m->frozen ? NULL : m->head_memory + N * V;
    leash_sgemm(0, 1, (int)N, (int)V, m->cfg.n_embd, 1.0f, m->a.lnf, m->cfg.n_embd, m->p.wte, m->cfg.n_embd, 0.0f,
                m->a.logits, (int)V); // tied LM head
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


int leash_gpt_score(leash_gpt *m, const int *tokens, const uint8_t *mask, const int *targets, int B, int T,
                    float temperature, float *logp, float *entropy) {
    int rc = forward_trunk(m, tokens, mask, B, T);
    if (rc) return rc;
    int N = B * T, V = m->cfg.vocab_size, C = m->cfg.n_embd;
    for (int n = 0; n < N; n++)
        if (targets[n] >= V)
            return leash_fail(LEASH_EINVAL, "target %d at (sequence %d, position %d) is outside the vocabulary [0, %d)",
                              targets[n], n / T, n % T, V);
    if (!m->chunk && !(m->chunk = malloc((size_t)SCORE_ROWS * V * sizeof(float))))
        return leash_fail(LEASH_ENOMEM, "cannot allocate %d logit rows", SCORE_ROWS);
    for (int r0 = 0; r0 < N; r0 += SCORE_ROWS) {
        int rows = N - r0 < SCORE_ROWS ? N - r0 : SCORE_ROWS, bad = -1;
        leash_sgemm(0, 1, rows, V, C, 1.0f, m->a.lnf + (size_t)r0 * C, C, m->p.wte, C, 0.0f, m->chunk, V);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < rows; i++) {
            int n = r0 + i;
            const float *z = m->chunk + (size_t)i * V;
            double lse, h = 0.0;
            logp[n] = 0.0f;
            if (entropy) entropy[n] = 0.0f;
            if (targets[n] < 0) continue;
            if (leash_logsumexp(z, V, temperature, &lse) || (entropy && leash_entropy(z, V, temperature, &h))) {
#pragma omp critical(leash_gpt_score)
                if (bad < 0 || i < bad) bad = i;
                continue;
            }
            logp[n] = (float)(z[targets[n]] / (double)temperature - lse);
            if (entropy) entropy[n] = (float)h;
        }
        if (bad >= 0) return row_failure(m->chunk + (size_t)bad * V, V, temperature, r0 + bad, T);
    }
    return LEASH_OK;
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
    if (!m->has_logits) return leash_fail(LEASH_EINVAL, "backward needs a leash_gpt_forward first (leash_gpt_score keeps no logits)");
    const leash_gpt_config *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T, C = c->n_embd, L = c->n_layer, V = c->vocab_size, NH = c->n_head;
    acts *a = &m->a;
    size_t nc_bytes = (size_t)N * C * sizeof(float);

    // LM head (tied) and scalar head: d lnf
    memset(a->dln, 0, nc_bytes);
    leash_sgemm(0, 0, N, C, V, 1.0f, a->dlogits, V, m->p.wte, C, 0.0f, a->dln, C);
    leash_sgemm(1, 0, V, C, N, 1.0f, a->dlogits, V, a->lnf, C, 1.0f, m->g.wte, C);
    if (c->scalar_head) leash_matmul_backward(a->dln, m->g.headw, m->g.headb, a->dvalues, a->lnf, m->p.headw, N, C, 1);

    memset(a->dresid, 0, nc_bytes);
    float *last = a->resid3 + (size_t)(L - 1) * N * C;
    leash_layernorm_backward(a->dresid, m->g.lnfw, m->g.lnfb, a->dln, last, m->p.lnfw, a->lnf_mean, a->lnf_rstd, N, C);

    for (int l = L - 1; l >= 0; l--) {
        const layer_ptrs *w = &m->p.layer[l];
        layer_ptrs *dw = &m->g.layer[l];
        size_t nc = (size_t)l * N * C;
        float *x = l == 0 ? a->encoded : a->resid3 + nc - (size_t)N * C;
        float *ln1 = a->ln1 + nc, *qkv = a->qkv + 3 * nc, *atty = a->atty + nc;
        float *att = a->att + (size_t)l * B * NH * T * T, *r2 = a->resid2 + nc, *ln2 = a->ln2 + nc;
        float *fch = a->fch + 4 * nc, *fchg = a->fch_gelu + 4 * nc;
        // r3 = r2 + fcproj(gelu(fc(ln2(r2)))): dresid flows through the residual unchanged
        memset(a->dfch_gelu, 0, 4 * nc_bytes);
        leash_matmul_backward(a->dfch_gelu, dw->fcprojw, dw->fcprojb, a->dresid, fchg, w->fcprojw, N, 4 * C, C);
        memset(a->dfch, 0, 4 * nc_bytes);
        leash_gelu_backward(a->dfch, fch, a->dfch_gelu, (size_t)N * 4 * C);
        memset(a->dln, 0, nc_bytes);
        leash_matmul_backward(a->dln, dw->fcw, dw->fcb, a->dfch, ln2, w->fcw, N, C, 4 * C);
        leash_layernorm_backward(a->dresid, dw->ln2w, dw->ln2b, a->dln, r2, w->ln2w, a->ln2_mean + (size_t)l * N,
                                 a->ln2_rstd + (size_t)l * N, N, C);
        // r2 = x + attproj(attention(qkv(ln1(x))))
        memset(a->datty, 0, nc_bytes);
        leash_matmul_backward(a->datty, dw->attprojw, dw->attprojb, a->dresid, atty, w->attprojw, N, C, C);
        memset(a->dqkv, 0, 3 * nc_bytes);
        leash_attention_backward(a->dqkv, a->scratch, a->datty, qkv, att, B, T, C, NH);
        memset(a->dln, 0, nc_bytes);
        leash_matmul_backward(a->dln, dw->qkvw, dw->qkvb, a->dqkv, ln1, w->qkvw, N, C, 3 * C);
        // the key bias adds q . b_k to every score of a query alike, which softmax ignores: its gradient is 0 in
        // exact arithmetic (each query's score gradients sum to 0). Make it exactly 0, or AdamW turns the
        // rounding noise into steps of the learning rate's size (and runs that differ only in summation
        // order, such as 1 and 2 MPI ranks, drift apart there).
        memset(dw->qkvb + C, 0, (size_t)C * sizeof(float));
        leash_layernorm_backward(a->dresid, dw->ln1w, dw->ln1b, a->dln, x, w->ln1w, a->ln1_mean + (size_t)l * N,
                                 a->ln1_rstd + (size_t)l * N, N, C);
    }
    leash_encoder_backward(m->g.wte, m->g.wpe, a->dresid, m->tokens, a->pos, N, C);

    memset(a->dlogits, 0, (size_t)N * V * sizeof(float));
    if (a->dvalues) memset(a->dvalues, 0, (size_t)N * sizeof(float));
    return LEASH_OK;
}

/* ---- token log-probs and losses ---------------------------------------------------------------- */

static int check_targets(const leash_gpt *m, const int *targets) {
    if (!m->has_logits)
        return leash_fail(LEASH_EINVAL, "token log-probs need a leash_gpt_forward first (leash_gpt_score returns its own)");
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
