#define _POSIX_C_SOURCE 200809L /* strdup */
/* LoRA: low-rank adapters on a frozen base model (see include/leash/lora.h and gpt.h). The adapters are tensors of
 * the model itself, after the base weights in the parameter block, so the optimizer, gradient sums and
 * checkpoints see only them; gpt.c adds them in every forward and backward. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt_internal.h"
#include "leash/error.h"
#include "leash/gpt.h"

static const char *const llama_targets[LEASH_LORA_SLOTS] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                            "gate_proj", "up_proj", "down_proj"};
static const char *const gpt2_targets[LEASH_LORA_SLOTS] = {"c_attn", NULL, NULL, "attn.c_proj", "c_fc", NULL, "mlp.c_proj"};

unsigned leash_lora_all_targets(int arch) {
    const char *const *names = arch == LEASH_ARCH_LLAMA ? llama_targets : gpt2_targets;
    unsigned bits = 0;
    for (int j = 0; j < LEASH_LORA_SLOTS; j++)
        if (names[j]) bits |= 1u << j;
    return bits;
}

int leash_lora_config_check(const leash_lora_config *lora, int arch) {
    if (lora->rank < 1 || !(lora->alpha > 0.0f) || !isfinite(lora->alpha) || !(lora->dropout >= 0.0f && lora->dropout < 1.0f))
        return leash_fail(LEASH_EINVAL, "LoRA rank %d, alpha %g, dropout %g; rank >= 1, alpha > 0, 0 <= dropout < 1",
                          lora->rank, (double)lora->alpha, (double)lora->dropout);
    if (!lora->targets || (lora->targets & ~leash_lora_all_targets(arch)))
        return leash_fail(LEASH_EINVAL, "LoRA targets 0x%x are empty or not projections of this architecture", lora->targets);
    return LEASH_OK;
}

int leash_lora_parse_targets(const char *list, int arch, unsigned *targets) {
    const char *const *names = arch == LEASH_ARCH_LLAMA ? llama_targets : gpt2_targets;
    const char *choices = arch == LEASH_ARCH_LLAMA ? "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj all-linear"
                                                   : "c_attn attn.c_proj c_fc mlp.c_proj c_proj (both) all-linear";
    unsigned bits = 0;
    const char *p = list;
    while (p && *p) {
        size_t n = strcspn(p, ", ");
        if (n == 0) {
            p++;
            continue;
        }
        unsigned got = 0;
        if (n == 10 && !strncmp(p, "all-linear", n)) got = leash_lora_all_targets(arch);
        if (arch == LEASH_ARCH_GPT2 && n == 6 && !strncmp(p, "c_proj", n)) got = LEASH_LORA_O | LEASH_LORA_DOWN;
        for (int j = 0; j < LEASH_LORA_SLOTS && !got; j++)
            if (names[j] && strlen(names[j]) == n && !strncmp(p, names[j], n)) got = 1u << j;
        if (!got)
            return leash_fail(LEASH_EINVAL, "LoRA target \"%.*s\" is not a projection of this %s model; choose from: %s",
                              (int)n, p, arch == LEASH_ARCH_LLAMA ? "Llama-family" : "GPT-2", choices);
        bits |= got;
        p += n;
    }
    if (!bits) return leash_fail(LEASH_EINVAL, "no LoRA targets given; choose from: %s", choices);
    *targets = bits;
    return LEASH_OK;
}

/* One full module path ("model.layers.3.self_attn.q_proj", "transformer.h.0.attn.c_proj") as its layer and
 * target bit; -1 when it names no adaptable projection inside a layer. */
static int module_path(const char *name, int arch, int *layer, unsigned *bit) {
    const char *p = strstr(name, "layers.");
    if (p) p += 7;
    else if (!strncmp(name, "transformer.h.", 14)) p = name + 14;
    else if (!strncmp(name, "h.", 2)) p = name + 2;
    char *end;
    long l = p ? strtol(p, &end, 10) : -1;
    if (!p || end == p || *end != '.' || l < 0 || l > 1000000) return -1;
    const char *rest = end + 1, *last = strrchr(rest, '.');
    last = last ? last + 1 : rest;
    // GPT-2's c_proj is two projections: attention's output and the MLP's down projection
    const char *shortname = arch == LEASH_ARCH_GPT2 && !strcmp(last, "c_proj") ? rest : last;
    if (leash_lora_parse_targets(shortname, arch, bit) || (*bit & (*bit - 1))) return -1;
    *layer = (int)l;
    return 0;
}

int leash_lora_parse_modules(const char *const *names, int n, int arch, int n_layer, unsigned *targets) {
    unsigned bits = 0;
    int rc = LEASH_OK, counts[LEASH_LORA_SLOTS] = {0};
    char *seen = calloc((size_t)LEASH_LORA_SLOTS * (n_layer > 0 ? n_layer : 1), 1);
    if (!seen) return leash_fail(LEASH_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++) {
        unsigned got = 0;
        int layer = 0;
        if (!strchr(names[i], '.') || !strcmp(names[i], "attn.c_proj") || !strcmp(names[i], "mlp.c_proj")) {
            rc = leash_lora_parse_targets(names[i], arch, &got); // a short name: that projection in every layer
            bits |= got;
            continue;
        }
        if (module_path(names[i], arch, &layer, &got) || layer >= n_layer) {
            rc = leash_fail(LEASH_EINVAL, "LoRA target \"%s\" is not a projection inside one of the model's %d layers",
                            names[i], n_layer);
            break;
        }
        int slot = 0;
        while (!(got >> slot & 1u)) slot++;
        if (!seen[slot * n_layer + layer]) seen[slot * n_layer + layer] = 1, counts[slot]++;
    }
    const char *const *all = arch == LEASH_ARCH_LLAMA ? llama_targets : gpt2_targets;
    for (int j = 0; j < LEASH_LORA_SLOTS && !rc; j++) {
        if (!counts[j]) continue;
        if (counts[j] < n_layer)
            rc = leash_fail(LEASH_EINVAL, "target_modules adapts %s in %d of the model's %d layers; leash adapts a "
                                          "projection in every layer (PEFT's layers_to_transform is not supported)",
                            all[j], counts[j], n_layer);
        bits |= 1u << j;
    }
    free(seen);
    if (!rc && !bits) rc = leash_fail(LEASH_EINVAL, "target_modules names no projection");
    if (!rc) *targets = bits;
    return rc;
}

/* The names PEFT writes in adapter_config.json's target_modules for these bits. */
int leash_lora_target_names(int arch, unsigned targets, const char **names, int max) {
    const char *const *all = arch == LEASH_ARCH_LLAMA ? llama_targets : gpt2_targets;
    int n = 0;
    for (int j = 0; j < LEASH_LORA_SLOTS && n < max; j++)
        if (targets & (1u << j)) names[n++] = all[j];
    return n;
}

const leash_lora_config *leash_gpt_lora(const leash_gpt *m) { return m->lora.rank ? &m->lora : NULL; }

int leash_gpt_add_lora(leash_gpt **out, const leash_gpt *base, const leash_lora_config *lora, uint64_t seed) {
    if (base->lora.rank)
        return leash_fail(LEASH_EINVAL, "the model already has LoRA adapters; merge them first (leash lora merge)");
    if (base->bf16) return leash_fail(LEASH_EINVAL, "add LoRA before storing the base in BF16");
    leash_gpt *m;
    int rc = leash_gpt_create_lora(&m, &base->cfg, lora);
    if (rc) return rc;
    m->score = base->score;
    // base tensors (and a scalar head) keep their values; the adapters start from PEFT's initialisation
    for (int i = 0, k = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        if (i >= m->first_trainable && strstr(t->name, ".lora_")) {
            leash_gpt_init_tensor(m, i, seed);
            continue;
        }
        const leash_tensor_info *bt = leash_gpt_tensor(base, k++);
        memcpy(m->params + t->offset, base->params + bt->offset, t->numel * sizeof(float));
    }
    if (base->source_dir && !(m->source_dir = strdup(base->source_dir))) {
        leash_gpt_free(m);
        return leash_fail(LEASH_ENOMEM, "out of memory");
    }
    *out = m;
    return LEASH_OK;
}

void leash_gpt_set_adapters(leash_gpt *m, int on) { m->adapters_on = on != 0; }
const char *leash_gpt_source_dir(const leash_gpt *m) { return m->source_dir; }

/* w += s B A for one projection, in the weight's layout (Linear (out, in) or Conv1D (in, out)). */
static void merge_one(float *w, const float *A, const float *B, float s, int in, int out, int r, int out_in) {
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            double d = 0.0;
            for (int k = 0; k < r; k++) d += (double)B[(size_t)o * r + k] * A[(size_t)k * in + i];
            float *x = out_in ? &w[(size_t)o * in + i] : &w[(size_t)i * out + o];
            *x += (float)(s * d);
        }
}

/* Every adapter of m merged into the weight beside it in dst's layers: dst is m itself, or a copy of its base
 * (the same layers without adapters). */
static void merge_adapters(const leash_gpt *m, leash_gpt *dst) {
    float s = m->lora.alpha / m->lora.rank;
    for (int i = m->first_trainable; i < m->n_tensors; i++) { // lora_A, then its lora_B
        const leash_tensor_info *ta = &m->tensors[i];
        if (!strstr(ta->name, ".lora_A.")) continue;
        const leash_tensor_info *tb = &m->tensors[i + 1];
        size_t w_slot = m->tensor_slot[i] - offsetof(proj, A) + offsetof(proj, w);
        float *w = *(float **)((char *)&dst->p.layer[m->tensor_layer[i]] + w_slot);
        merge_one(w, m->params + ta->offset, m->params + tb->offset, s, (int)ta->shape[1], (int)tb->shape[0],
                  (int)ta->shape[0], m->d.out_in);
    }
}

int leash_gpt_merge_lora_into_base(leash_gpt *m) {
    if (!m->lora.rank) return leash_fail(LEASH_EINVAL, "the model has no LoRA adapters to merge");
    if (m->bf16) return leash_fail(LEASH_EINVAL, "cannot merge adapters into a base stored in BF16 (--frozen-bf16)");
    merge_adapters(m, m);
    for (int i = m->first_trainable; i < m->n_tensors; i++) // B = 0: the adapters start again
        if (strstr(m->tensors[i].name, ".lora_B."))
            memset(m->params + m->tensors[i].offset, 0, m->tensors[i].numel * sizeof(float));
    return LEASH_OK;
}

int leash_gpt_merge_lora(leash_gpt **out, const leash_gpt *m) {
    if (!m->lora.rank) return leash_fail(LEASH_EINVAL, "the model has no LoRA adapters to merge");
    if (m->bf16) return leash_fail(LEASH_EINVAL, "merge a LoRA model from its directory (leash lora merge), not one stored in BF16");
    leash_gpt *r;
    int rc = leash_gpt_create(&r, &m->cfg);
    if (rc) return rc;
    r->score = m->score;
    for (int i = 0, k = 0; i < m->n_tensors; i++) { // every tensor but the adapters, in order
        const leash_tensor_info *t = &m->tensors[i];
        if (strstr(t->name, ".lora_")) continue;
        memcpy(r->params + r->tensors[k++].offset, m->params + t->offset, t->numel * sizeof(float));
    }
    merge_adapters(m, r);
    *out = r;
    return LEASH_OK;
}
