#define _POSIX_C_SOURCE 200809L /* strdup */
/* A transformer's parameters (see include/leash/gpt.h): the tensor table with the Hugging
 * Face names of GPT-2 and the Llama family and their LoRA adapters (PEFT's names), the one parameter block and
 * the pointers into it, initialisation, freezing, copies, and BF16 storage of frozen layer weights. The forward
 * and backward passes are in gpt.c.
 *
 * Dimensions: C channels, V vocabulary, L layers, NH heads, hs head size, I MLP width.
 */
#include "leash/gpt.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/ops.h"
#include "leash/rng.h"
#include "gpt_internal.h"

/* ---- parameters -------------------------------------------------------------------------------- */

#define SLOT(type, field) offsetof(type, field)

static void add_tensor(leash_gpt *m, const char *name, int layer, size_t slot, int ndim, int64_t d0, int64_t d1,
                       int decay) {
    int i = m->n_tensors++;
    leash_tensor_info *t = &m->tensors[i];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 0;
    t->numel = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
    t->offset = m->num_params;
    t->decay = decay;
    m->tensor_layer[i] = layer;
    m->tensor_slot[i] = slot;
    m->num_params += t->numel;
}

/* Points p's slots at tensors first.. in a block whose first float is tensor first's (the others NULL). */
static void point(param_ptrs *p, float *base, const leash_gpt *m, int first) {
    layer_ptrs *keep = p->layer;
    memset(p, 0, sizeof *p);
    p->layer = keep;
    memset(p->layer, 0, (size_t)m->cfg.n_layer * sizeof *p->layer);
    size_t shift = first < m->n_tensors ? m->tensors[first].offset : 0;
    for (int i = first; i < m->n_tensors; i++) {
        if (m->tensors[i].bf16) continue; // reached through leash_gpt_layer
        char *owner = m->tensor_layer[i] < 0 ? (char *)p : (char *)&p->layer[m->tensor_layer[i]];
        *(float **)(owner + m->tensor_slot[i]) = base ? base + m->tensors[i].offset - shift : NULL;
    }
}


/* The adapter slot (SLOT_*) whose projection weight sits at this offset in layer_ptrs, or -1. */
static int lora_slot_of_weight(size_t slot) {
    static const size_t projs[LEASH_LORA_SLOTS] = {SLOT(layer_ptrs, q), SLOT(layer_ptrs, k), SLOT(layer_ptrs, v),
                                                   SLOT(layer_ptrs, o), SLOT(layer_ptrs, gate), SLOT(layer_ptrs, up),
                                                   SLOT(layer_ptrs, down)};
    for (int j = 0; j < LEASH_LORA_SLOTS; j++)
        if (slot == projs[j] + offsetof(proj, w)) return j;
    return -1;
}

static dims derive(const leash_gpt_config *c) {
    dims d = {.C = c->n_embd, .L = c->n_layer, .NH = c->n_head, .NKV = leash_gpt_kv_heads(c),
              .hs = leash_gpt_head_size(c), .I = leash_gpt_mlp_width(c), .V = c->vocab_size};
    int llama = c->arch == LEASH_ARCH_LLAMA;
    d.W = (d.NH + 2 * d.NKV) * d.hs;
    d.AW = d.NH * d.hs;
    d.FW = llama ? 2 * d.I : d.I;
    d.out_in = d.rms = d.rope = d.swiglu = llama;
    return d;
}

/* Rotary frequencies inv_freq[i] = theta^(-2i / hs), rescaled as the config's rope_scaling says. */
static void rope_frequencies(const leash_gpt_config *c, int hs, float *inv_freq) {
    double theta = c->rope_theta > 0.0f ? c->rope_theta : 10000.0;
    for (int i = 0; i < hs / 2; i++) {
        double f = (double)(float)(1.0 / pow(theta, (double)(2 * i) / hs));
        if (c->rope_scaling == LEASH_ROPE_LINEAR) f /= c->rope_factor;
        if (c->rope_scaling == LEASH_ROPE_LLAMA3) { // Llama 3.1: long wavelengths slowed by factor, a smooth band between
            double old = c->rope_original_max_positions, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double wavelen = 2.0 * 3.14159265358979323846 / f;
            if (wavelen > old / lo) f /= c->rope_factor;
            else if (wavelen >= old / hi) {
                double smooth = (old / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        inv_freq[i] = (float)f;
    }
}

/* The LoRA adapters, after the base tensors: for each targeted weight, in table order, PEFT's lora_A (r, in)
 * and lora_B (out, r). */
static void add_adapters(leash_gpt *m) {
    const leash_gpt_config *cfg = &m->cfg;
    const dims *d = &m->d;
    int L = d->L, llama = cfg->arch == LEASH_ARCH_LLAMA;
    char n[sizeof m->tensors[0].name];
    int n_base = m->first_trainable = m->n_tensors;
    const char *prefix = llama ? "base_model.model." : "base_model.model.transformer.";
    for (int l = 0; l < L; l++)
        for (int i = 0; i < n_base; i++) {
            int j = m->tensor_layer[i] == l ? lora_slot_of_weight(m->tensor_slot[i]) : -1;
            if (j < 0 || !(m->lora.targets & (1u << j))) continue;
            const leash_tensor_info *w = &m->tensors[i];
            int in = (int)w->shape[d->out_in ? 1 : 0], outw = (int)w->shape[d->out_in ? 0 : 1];
            int stem = (int)strlen(w->name) - 7; // the weight's name without ".weight"
            size_t p = m->tensor_slot[i] - offsetof(proj, w);
            snprintf(n, sizeof n, "%s%.*s.lora_A.weight", prefix, stem, w->name);
            add_tensor(m, n, l, p + offsetof(proj, A), 2, m->lora.rank, in, 1);
            snprintf(n, sizeof n, "%s%.*s.lora_B.weight", prefix, stem, w->name);
            add_tensor(m, n, l, p + offsetof(proj, B), 2, outw, m->lora.rank, 1);
        }
}

/* The tensor table, in the order of the parameter block: the base model's tensors with their Hugging Face
 * names and layouts, the LoRA adapters, the scalar head. */
static void build_table(leash_gpt *m) {
    const leash_gpt_config *cfg = &m->cfg;
    const dims *d = &m->d;
    int L = d->L, C = d->C, llama = cfg->arch == LEASH_ARCH_LLAMA;
    char n[sizeof m->tensors[0].name];
#define G1(name, field, d0, decay) add_tensor(m, name, -1, SLOT(param_ptrs, field), 1, d0, 0, decay)
#define G2(name, field, d0, d1, decay) add_tensor(m, name, -1, SLOT(param_ptrs, field), 2, d0, d1, decay)
#define T1(fmt, field, d0, decay) (snprintf(n, sizeof n, fmt, l), add_tensor(m, n, l, SLOT(layer_ptrs, field), 1, d0, 0, decay))
#define T2(fmt, field, d0, d1, decay) (snprintf(n, sizeof n, fmt, l), add_tensor(m, n, l, SLOT(layer_ptrs, field), 2, d0, d1, decay))
    if (!llama) { // Hugging Face GPT-2 names and Conv1D (in, out) layout
        G2("wte.weight", wte, d->V, C, 1);
        G2("wpe.weight", wpe, cfg->n_positions, C, 1);
        for (int l = 0; l < L; l++) {
            T1("h.%d.ln_1.weight", ln1w, C, 0);
            T1("h.%d.ln_1.bias", ln1b, C, 0);
            T2("h.%d.attn.c_attn.weight", q.w, C, 3 * C, 1);
            T1("h.%d.attn.c_attn.bias", q.b, 3 * C, 0);
            T2("h.%d.attn.c_proj.weight", o.w, C, C, 1);
            T1("h.%d.attn.c_proj.bias", o.b, C, 0);
            T1("h.%d.ln_2.weight", ln2w, C, 0);
            T1("h.%d.ln_2.bias", ln2b, C, 0);
            T2("h.%d.mlp.c_fc.weight", gate.w, C, d->I, 1);
            T1("h.%d.mlp.c_fc.bias", gate.b, d->I, 0);
            T2("h.%d.mlp.c_proj.weight", down.w, d->I, C, 1);
            T1("h.%d.mlp.c_proj.bias", down.b, C, 0);
        }
        G1("ln_f.weight", lnfw, C, 0);
        G1("ln_f.bias", lnfb, C, 0);
    } else { // Hugging Face Llama names and Linear (out, in) layout
        int qo = d->NH * d->hs, kvo = d->NKV * d->hs;
        G2("model.embed_tokens.weight", wte, d->V, C, 1);
        for (int l = 0; l < L; l++) {
            T1("model.layers.%d.input_layernorm.weight", ln1w, C, 0);
            T2("model.layers.%d.self_attn.q_proj.weight", q.w, qo, C, 1);
            if (cfg->qkv_bias) T1("model.layers.%d.self_attn.q_proj.bias", q.b, qo, 0);
            T2("model.layers.%d.self_attn.k_proj.weight", k.w, kvo, C, 1);
            if (cfg->qkv_bias) T1("model.layers.%d.self_attn.k_proj.bias", k.b, kvo, 0);
            T2("model.layers.%d.self_attn.v_proj.weight", v.w, kvo, C, 1);
            if (cfg->qkv_bias) T1("model.layers.%d.self_attn.v_proj.bias", v.b, kvo, 0);
            T2("model.layers.%d.self_attn.o_proj.weight", o.w, C, qo, 1);
            if (cfg->o_bias) T1("model.layers.%d.self_attn.o_proj.bias", o.b, C, 0);
            T1("model.layers.%d.post_attention_layernorm.weight", ln2w, C, 0);
            T2("model.layers.%d.mlp.gate_proj.weight", gate.w, d->I, C, 1);
            if (cfg->mlp_bias) T1("model.layers.%d.mlp.gate_proj.bias", gate.b, d->I, 0);
            T2("model.layers.%d.mlp.up_proj.weight", up.w, d->I, C, 1);
            if (cfg->mlp_bias) T1("model.layers.%d.mlp.up_proj.bias", up.b, d->I, 0);
            T2("model.layers.%d.mlp.down_proj.weight", down.w, C, d->I, 1);
            if (cfg->mlp_bias) T1("model.layers.%d.mlp.down_proj.bias", down.b, C, 0);
        }
        G1("model.norm.weight", lnfw, C, 0);
        if (cfg->untied_head) G2("lm_head.weight", lm_head, d->V, C, 1);
    }
    m->first_trainable = 0;
    if (m->lora.rank > 0) add_adapters(m);
    if (cfg->scalar_head) {
        G2("score.weight", headw, 1, C, 1);
        G1("score.bias", headb, 1, 0);
    }
#undef G1
#undef G2
#undef T1
#undef T2
}

int leash_gpt_create(leash_gpt **out, const leash_gpt_config *cfg) { return leash_gpt_create_lora(out, cfg, NULL); }

int leash_gpt_create_lora(leash_gpt **out, const leash_gpt_config *cfg, const leash_lora_config *lora) {
    int rc = leash_gpt_config_check(cfg);
    if (!rc && lora) rc = leash_lora_config_check(lora, cfg->arch);
    if (rc) return rc;
    leash_gpt *m = calloc(1, sizeof *m);
    if (!m) return leash_fail(LEASH_ENOMEM, "cannot allocate a model");
    m->cfg = *cfg;
    if (lora) m->lora = *lora;
    m->d = derive(cfg);
    const dims *d = &m->d;
    int L = d->L;
    size_t most = (size_t)6 + (16 + 2 * LEASH_LORA_SLOTS) * (size_t)L;
    m->tensors = calloc(most, sizeof *m->tensors);
    m->tensor_layer = calloc(most, sizeof *m->tensor_layer);
    m->tensor_slot = calloc(most, sizeof *m->tensor_slot);
    m->p.layer = calloc(L, sizeof(layer_ptrs));
    m->g.layer = calloc(L, sizeof(layer_ptrs));
    m->inv_freq = d->rope ? calloc(d->hs / 2, sizeof(float)) : NULL;
    if (!m->tensors || !m->tensor_layer || !m->tensor_slot || !m->p.layer || !m->g.layer || (d->rope && !m->inv_freq)) {
        leash_gpt_free(m);
        return leash_fail(LEASH_ENOMEM, "cannot allocate a model's tensor table");
    }
    if (d->rope) rope_frequencies(cfg, d->hs, m->inv_freq);
    build_table(m);
    m->adapters_on = m->fwd_adapters = 1;
    m->trainable_offset = m->first_trainable < m->n_tensors ? m->tensors[m->first_trainable].offset : m->num_params;
    m->params = calloc(m->num_params, sizeof(float));
    m->grads = calloc(m->num_params - m->trainable_offset + 1, sizeof(float));
    if (!m->params || !m->grads) {
        size_t np = m->num_params;
        leash_gpt_free(m);
        return leash_fail(LEASH_ENOMEM, "cannot allocate %zu parameters (%.1f MB, twice: weights and gradients)", np,
                          np * 4e-6);
    }
    point(&m->p, m->params, m, 0);
    point(&m->g, m->grads, m, m->first_trainable);
    *out = m;
    return LEASH_OK;
}

void leash_gpt_free(leash_gpt *m) {
    if (!m) return;
    free(m->tensors);
    free(m->tensor_layer);
    free(m->tensor_slot);
    free(m->source_dir);
    free(m->bf16);
    free(m->layer_bf16);
    free(m->wscratch);
    free(m->head_bf16);
    free(m->inv_freq);
    free(m->p.layer);
    free(m->g.layer);
    free(m->params);
    free(m->grads);
    free(m->act_memory);
    free(m->head_memory);
    free(m->tokens);
    free(m);
}

void leash_gpt_init_tensor(leash_gpt *m, int i, uint64_t seed) {
    leash_rng rng;
    double proj_std = 0.02 / sqrt(2.0 * m->cfg.n_layer);
    const leash_tensor_info *t = &m->tensors[i];
    float *x = m->params + t->offset;
    leash_rng_seed(&rng, seed, (uint64_t)i); // one stream per tensor: independent of the others' sizes
    size_t len = strlen(t->name);
    // the only 1-D weights are norm weights; the residual projections are c_proj, o_proj and down_proj
    int is_ln_weight = t->ndim == 1 && len > 7 && strcmp(t->name + len - 7, ".weight") == 0;
    int is_proj = strstr(t->name, "c_proj.weight") || strstr(t->name, "o_proj.weight") || strstr(t->name, "down_proj.weight");
    if (strstr(t->name, ".lora_B.")) { // zero: the adapters start with no effect
        memset(x, 0, t->numel * sizeof *x);
        return;
    }
    if (strstr(t->name, ".lora_A.")) { // PEFT: kaiming_uniform(a = sqrt 5) = U(-1/sqrt(in), 1/sqrt(in))
        double bound = 1.0 / sqrt((double)t->shape[1]);
        for (size_t k = 0; k < t->numel; k++) x[k] = (float)(bound * (2.0 * leash_rng_uniform(&rng) - 1.0));
        return;
    }
    for (size_t k = 0; k < t->numel; k++) {
        if (is_ln_weight) x[k] = 1.0f;
        else if (t->ndim == 2) x[k] = (float)((is_proj ? proj_std : 0.02) * leash_rng_normal(&rng));
        else x[k] = 0.0f;
    }
}

void leash_gpt_init(leash_gpt *m, uint64_t seed) {
    for (int i = 0; i < m->n_tensors; i++) leash_gpt_init_tensor(m, i, seed);
}

const leash_gpt_config *leash_gpt_cfg(const leash_gpt *m) { return &m->cfg; }

leash_score_stats leash_gpt_score_stats(const leash_gpt *m) { return m->score; }
void leash_gpt_set_score_stats(leash_gpt *m, leash_score_stats score) { m->score = score; }

int leash_gpt_copy_with_head(leash_gpt **out, const leash_gpt *src, int keep_head, uint64_t seed) {
    if (src->bf16) return leash_fail(LEASH_EINVAL, "a model with BF16 storage cannot be copied; copy it before storing BF16");
    leash_gpt_config cfg = src->cfg;
    cfg.scalar_head = 1;
    leash_gpt *m;
    int rc = leash_gpt_create_lora(&m, &cfg, leash_gpt_lora(src));
    if (rc) return rc;
    if (src->source_dir && !(m->source_dir = strdup(src->source_dir))) {
        leash_gpt_free(m);
        return leash_fail(LEASH_ENOMEM, "out of memory");
    }
    // the tensors of src come first in the same order; the head (last two) is copied or initialised
    size_t body = src->cfg.scalar_head ? src->num_params - (size_t)cfg.n_embd - 1 : src->num_params;
    memcpy(m->params, src->params, body * sizeof(float));
    if (src->cfg.scalar_head && keep_head) {
        memcpy(m->params + body, src->params + body, ((size_t)cfg.n_embd + 1) * sizeof(float));
        m->score = src->score;
    } else {
        leash_rng rng;
        leash_rng_seed(&rng, seed, UINT64_C(0x68656164));
        for (int k = 0; k < cfg.n_embd; k++) m->p.headw[k] = (float)(0.02 * leash_rng_normal(&rng));
        m->p.headb[0] = 0.0f;
    }
    *out = m;
    return LEASH_OK;
}
size_t leash_gpt_num_params(const leash_gpt *m) { return m->num_params; }
float *leash_gpt_params(leash_gpt *m) { return m->params; }
float *leash_gpt_grads(leash_gpt *m) { return m->grads; }
int leash_gpt_first_trainable(const leash_gpt *m) { return m->first_trainable; }
size_t leash_gpt_num_trainable(const leash_gpt *m) { return m->num_params - m->bf16_n - m->trainable_offset; }
float *leash_gpt_trainable(leash_gpt *m) { return m->params + m->trainable_offset; }
int leash_gpt_num_tensors(const leash_gpt *m) { return m->n_tensors; }
const leash_tensor_info *leash_gpt_tensor(const leash_gpt *m, int i) {
    return i >= 0 && i < m->n_tensors ? &m->tensors[i] : NULL;
}
void leash_gpt_zero_grad(leash_gpt *m) {
    if (m->grads) memset(m->grads, 0, leash_gpt_num_trainable(m) * sizeof(float));
}

void leash_gpt_freeze(leash_gpt *m) {
    if (m->frozen) return;
    m->frozen = 1;
    free(m->grads);
    m->grads = NULL;
    point(&m->g, NULL, m, 0);
    // activations and logits are reallocated without their backward halves at the next forward
    free(m->act_memory), free(m->tokens), free(m->head_memory);
    m->act_memory = NULL, m->tokens = NULL, m->head_memory = NULL;
    m->act_bytes = 0;
    m->B = m->T = m->head_B = m->head_T = 0;
    m->has_logits = 0;
}

int leash_gpt_is_frozen(const leash_gpt *m) { return m->frozen; }

static uint16_t to_bf16(float x) { // round to nearest, ties to even (no NaN here: loaded weights are finite)
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

int leash_gpt_store_head_bf16(leash_gpt *m) {
    if (m->head_bf16) return LEASH_OK;
    if (!m->frozen || !m->bf16)
        return leash_fail(LEASH_EINVAL, "a BF16 LM head is for a frozen model with BF16 storage (leash_gpt_freeze, then "
                                        "leash_gpt_store_bf16)%s", m->frozen ? "" : ": this one has trainable weights");
    size_t n = (size_t)m->cfg.vocab_size * m->cfg.n_embd;
    const float *w = leash_gpt_head_weight(m);
    if (!(m->head_bf16 = malloc(n * sizeof *m->head_bf16)))
        return leash_fail(LEASH_ENOMEM, "cannot allocate the LM head's BF16 copy (%.1f MB)", n * 2e-6);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < n; k++) m->head_bf16[k] = to_bf16(w[k]);
    return LEASH_OK;
}

int leash_gpt_store_bf16(leash_gpt *m) {
    if (m->bf16) return LEASH_OK;
    if (!m->frozen && m->first_trainable == 0)
        return leash_fail(LEASH_EINVAL, "BF16 storage is for frozen weights: freeze the model (a reference) or give it "
                                        "LoRA adapters (then its base is frozen)");
    // the frozen layer tensors: one contiguous run [lo, hi) of the parameter block, layer after layer
    int limit = m->first_trainable > 0 ? m->first_trainable : m->n_tensors, L = m->cfg.n_layer;
    size_t lo = SIZE_MAX, hi = 0;
    for (int i = 0; i < limit; i++)
        if (m->tensor_layer[i] >= 0) {
            if (m->tensors[i].offset < lo) lo = m->tensors[i].offset;
            if (m->tensors[i].offset + m->tensors[i].numel > hi) hi = m->tensors[i].offset + m->tensors[i].numel;
        }
    size_t span = hi - lo, rest = m->num_params - span;
    uint16_t *h = malloc(span * sizeof *h);
    float *p = malloc((rest ? rest : 1) * sizeof *p);
    size_t *starts = calloc((size_t)L + 1, sizeof *starts);
    if (!h || !p || !starts) {
        free(h), free(p), free(starts);
        return leash_fail(LEASH_ENOMEM, "cannot allocate the BF16 copy (%.1f MB)", span * 2e-6);
    }
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < span; k++) h[k] = to_bf16(m->params[lo + k]);
    memcpy(p, m->params, lo * sizeof *p);
    memcpy(p + lo, m->params + hi, (m->num_params - hi) * sizeof *p);
    size_t most = 0;
    for (int l = 0; l <= L; l++) starts[l] = span;
    for (int i = 0; i < m->n_tensors; i++) {
        leash_tensor_info *t = &m->tensors[i];
        if (i < limit && m->tensor_layer[i] >= 0) {
            t->bf16 = 1, t->offset -= lo;
            if (t->offset < starts[m->tensor_layer[i]]) starts[m->tensor_layer[i]] = t->offset;
        } else if (t->offset >= hi) {
            t->offset -= span;
        }
    }
    for (int l = 0; l < L; l++) {
        size_t len = starts[l + 1] - starts[l];
        if (len > most) most = len;
    }
    if (!(m->wscratch = malloc(most * sizeof(float)))) {
        free(h), free(p), free(starts);
        return leash_fail(LEASH_ENOMEM, "cannot allocate a layer's weights (%.1f MB)", most * 4e-6);
    }
    free(m->params);
    m->params = p, m->bf16 = h, m->bf16_n = span, m->layer_bf16 = starts;
    leash_gpt_set_bf16_compute(m, 1);
    if (m->first_trainable > 0) m->trainable_offset -= span;
    point(&m->p, m->params, m, 0);
    if (m->grads) point(&m->g, m->grads, m, m->first_trainable);
    return LEASH_OK;
}

/* The proj whose weight pointer sits at offset slot of layer_ptrs, or -1 (a norm weight, a bias). */
static ptrdiff_t proj_at(size_t slot) {
    static const size_t projs[] = {offsetof(layer_ptrs, q), offsetof(layer_ptrs, k), offsetof(layer_ptrs, v),
                                   offsetof(layer_ptrs, o), offsetof(layer_ptrs, gate), offsetof(layer_ptrs, up),
                                   offsetof(layer_ptrs, down)};
    for (size_t j = 0; j < sizeof projs / sizeof *projs; j++)
        if (slot == projs[j] + offsetof(proj, w)) return (ptrdiff_t)projs[j];
    return -1;
}

static const layer_ptrs *layer_weights(leash_gpt *m, int l, layer_ptrs *tmp, int bf16_compute) {
    if (!m->bf16) return &m->p.layer[l];
    size_t a = m->layer_bf16[l];
    const uint16_t *src = m->bf16 + a;
    float *dst = m->wscratch;
    *tmp = m->p.layer[l];
    for (int i = 0; i < m->n_tensors; i++) {
        const leash_tensor_info *t = &m->tensors[i];
        if (!t->bf16 || m->tensor_layer[i] != l) continue;
        ptrdiff_t pj = bf16_compute ? proj_at(m->tensor_slot[i]) : -1;
        if (pj >= 0) { // multiplied in BF16 where it is stored
            proj *p = (proj *)((char *)tmp + pj);
            p->w = NULL, p->wh = src + (t->offset - a);
            continue;
        }
        float *f = dst + (t->offset - a);
#pragma omp parallel for schedule(static) if (t->numel > 65536)
        for (size_t k = 0; k < t->numel; k++) {
            uint32_t u = (uint32_t)src[t->offset - a + k] << 16;
            memcpy(&f[k], &u, 4);
        }
        *(float **)((char *)tmp + m->tensor_slot[i]) = f;
    }
    return tmp;
}

const layer_ptrs *leash_gpt_layer(leash_gpt *m, int l, layer_ptrs *tmp) {
    return layer_weights(m, l, tmp, m->bf16_compute);
}
const layer_ptrs *leash_gpt_layer_f32(leash_gpt *m, int l, layer_ptrs *tmp) { return layer_weights(m, l, tmp, 0); }

int leash_gpt_set_bf16_compute(leash_gpt *m, int on) {
    m->bf16_compute = on && m->bf16 && leash_bf16_compute_available();
    return m->bf16_compute;
}

size_t leash_gpt_memory_bytes(const leash_gpt *m) {
    size_t V = m->cfg.vocab_size, head = (size_t)m->head_B * m->head_T * V * (m->frozen ? 1 : 2);
    size_t f32 = m->num_params - m->bf16_n + (m->bf16 ? m->layer_bf16[1] - m->layer_bf16[0] : 0); // + wscratch
    size_t half = m->bf16_n + (m->head_bf16 ? (size_t)V * m->cfg.n_embd : 0); // BF16 values
    return (f32 + (m->grads ? leash_gpt_num_trainable(m) : 0) + head + half / 2) * sizeof(float) +
           m->act_bytes + (m->tokens ? (size_t)m->B * m->T * sizeof(int) : 0);
}
