/* A leash model from a GGUF file: the configuration from the metadata and the weights from the tensors. See
 * include/leash/gguf.h.
 *
 * llama.cpp's converter (convert_hf_to_gguf.py) renames Hugging Face tensors (model.layers.N.self_attn.q_proj
 * -> blk.N.attn_q, ...) and changes two layouts, which are undone here:
 *   - Llama and Mistral: the rows of q_proj and k_proj (weights and biases) are permuted within each head
 *     for ggml's interleaved rotary ("normal" rope): HF row h hs + i hs/2 + j (i in {0, 1}, j < hs/2) is
 *     stored as row h hs + 2 j + i. Qwen2 uses ggml's NEOX rope, which is HF's rotate-half: no permutation.
 *   - GPT-2: Conv1D weights (in, out) are stored transposed, as (out, in) matrices (ne = {in, out}).
 * ggml's ne lists dimensions fastest first: a PyTorch (out, in) matrix has ne = {in, out}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/config.h"
#include "leash/error.h"
#include "leash/gguf.h"
#include "gguf_internal.h"
#include "gpt_internal.h"

/* ---- configuration ----------------------------------------------------------------------------- */

/* {arch}.* keys leash understands, beyond which any other {arch}.* key is an error naming it. */
static const char *const llama_keys[] = {
    "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "attention.key_length", "attention.value_length",
    "attention.sliding_window", "rope.freq_base", "rope.dimension_count", "rope.scaling.type", "rope.scaling.factor",
    "rope.scale_linear", "rope.scaling.original_context_length", "rope.scaling.finetuned", "vocab_size",
    "expert_count", "expert_used_count"};
static const char *const gpt2_keys[] = {"context_length",      "embedding_length",      "block_count",
                                        "feed_forward_length", "attention.head_count",  "attention.head_count_kv",
                                        "attention.layer_norm_epsilon", "vocab_size"};
/* Other namespaces that do not change the math: the model's description, its tokenizer (read by
 * leash_tokenizer_load_dir), the quantisation's records, a single-file split's bookkeeping. */
static const char *const harmless_prefixes[] = {"general.", "tokenizer.", "quantize.", "split."};

static int understood(const char *arch, const char *key) {
    size_t n = strlen(arch);
    for (size_t i = 0; i < sizeof harmless_prefixes / sizeof harmless_prefixes[0]; i++)
        if (strncmp(key, harmless_prefixes[i], strlen(harmless_prefixes[i])) == 0) return 1;
    if (strncmp(key, arch, n) || key[n] != '.') return 0;
    int gpt2 = strcmp(arch, "gpt2") == 0;
    const char *const *list = gpt2 ? gpt2_keys : llama_keys;
    size_t count = gpt2 ? sizeof gpt2_keys / sizeof gpt2_keys[0] : sizeof llama_keys / sizeof llama_keys[0];
    for (size_t i = 0; i < count; i++)
        if (strcmp(key + n + 1, list[i]) == 0) return 1;
    return 0;
}

/* "{arch}.{suffix}" as an int in [0, INT_MAX]; absent: dflt, or an error when required. */
static int arch_int(const leash_gguf *g, const char *arch, const char *suffix, int required, int dflt, int *out) {
    char key[128];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = leash_gguf_get_int(g, key, &v);
    if (rc == 1) {
        if (required) return leash_fail(LEASH_EFORMAT, "%s: missing key \"%s\"", leash_gguf_path(g), key);
        *out = dflt;
        return LEASH_OK;
    }
    if (rc) return rc;
    if (v < 0 || v > 0x7fffffff) return leash_fail(LEASH_EFORMAT, "%s: \"%s\" = %lld is out of range", leash_gguf_path(g), key, (long long)v);
    *out = (int)v;
    return LEASH_OK;
}

static int arch_float(const leash_gguf *g, const char *arch, const char *suffix, int required, double dflt, double *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = leash_gguf_get_float(g, key, out);
    if (rc == 1) {
        if (required) return leash_fail(LEASH_EFORMAT, "%s: missing key \"%s\"", leash_gguf_path(g), key);
        *out = dflt;
        return LEASH_OK;
    }
    if (!rc && !isfinite(*out)) return leash_fail(LEASH_EFORMAT, "%s: \"%s\" is not finite", leash_gguf_path(g), key);
    return rc;
}

static int token_id(const leash_gguf *g, const char *key, int *out) {
    int64_t v;
    int rc = leash_gguf_get_int(g, key, &v);
    if (rc == 1) return *out = -1, LEASH_OK;
    if (rc) return rc;
    if (v < 0 || v > 0x7fffffff) return leash_fail(LEASH_EFORMAT, "%s: \"%s\" = %lld is not a token id", leash_gguf_path(g), key, (long long)v);
    *out = (int)v;
    return LEASH_OK;
}

/* Rotary scaling: none, or linear (rope.scaling.type "linear" with rope.scaling.factor, or the older
 * rope.scale_linear); any other type is an error naming it. */
static int rope_scaling(const leash_gguf *g, const char *arch, leash_gpt_config *cfg) {
    char key[128];
    const char *type = NULL;
    size_t len = 0;
    double factor = 1.0;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    int rc = leash_gguf_get_string(g, key, &type, &len);
    if (rc < 0) return rc;
    if (rc == 0 && strcmp(type, "none") && strcmp(type, "linear"))
        return leash_fail(LEASH_EFORMAT, "%s: \"%s\" is \"%.40s\"; leash supports \"none\" and \"linear\" rotary scaling",
                          leash_gguf_path(g), key, type);
    if (rc == 0 && strcmp(type, "linear") == 0) {
        if ((rc = arch_float(g, arch, "rope.scaling.factor", 1, 0.0, &factor))) return rc;
    } else if (rc == 1 && (rc = arch_float(g, arch, "rope.scale_linear", 0, 1.0, &factor)))
        return rc;
    if (!(factor > 0.0)) return leash_fail(LEASH_EFORMAT, "%s: the linear rotary scaling factor must be > 0", leash_gguf_path(g));
    if (factor != 1.0) cfg->rope_scaling = LEASH_ROPE_LINEAR, cfg->rope_factor = leash_config_float(factor);
    return LEASH_OK;
}

/* The sizes every architecture has. */
static int common_sizes(const leash_gguf *g, const char *arch, leash_gpt_config *cfg) {
    int rc = arch_int(g, arch, "context_length", 1, 0, &cfg->n_positions);
    if (!rc) rc = arch_int(g, arch, "embedding_length", 1, 0, &cfg->n_embd);
    if (!rc) rc = arch_int(g, arch, "block_count", 1, 0, &cfg->n_layer);
    if (!rc) rc = arch_int(g, arch, "feed_forward_length", 1, 0, &cfg->n_inner);
    if (!rc) rc = arch_int(g, arch, "attention.head_count", 1, 0, &cfg->n_head);
    if (!rc) rc = arch_int(g, arch, "attention.head_count_kv", 0, cfg->n_head, &cfg->n_kv_head);
    if (!rc) rc = token_id(g, "tokenizer.ggml.bos_token_id", &cfg->bos_token_id);
    if (!rc) rc = token_id(g, "tokenizer.ggml.eos_token_id", &cfg->eos_token_id);
    if (rc) return rc;
    // the vocabulary: the key, else the tokenizer's token count, else the embedding's rows
    const leash_gguf_tensor *emb = leash_gguf_find_tensor(g, "token_embd.weight");
    int et;
    uint64_t n = 0;
    if ((rc = arch_int(g, arch, "vocab_size", 0, 0, &cfg->vocab_size))) return rc;
    if (!cfg->vocab_size && (rc = leash_gguf_get_array(g, "tokenizer.ggml.tokens", &et, &n)) < 0) return rc;
    if (!cfg->vocab_size) cfg->vocab_size = n && n < 0x7fffffff ? (int)n : emb && emb->ne[1] < 0x7fffffff ? (int)emb->ne[1] : 0;
    return LEASH_OK;
}

/* Llama 3.1's rotary scaling. llama.cpp's converter writes no scaling keys for it, only rope_freqs.weight: the
 * factor each frequency is divided by (leash_gguf_llama3_factors). leash computes the scaling from its
 * parameters, so they are recovered from the table: factor is the longest wavelength's entry; the smooth band
 * gives smooth = orig / ((hi - lo) wavelen) - lo / (hi - lo), which fixes orig / (hi - lo) and lo / (hi - lo), and
 * with lo = 1 (every Llama 3 release) orig and hi. The table is then recomputed from the parameters, and any entry
 * that differs by more than float rounding is an error: a table leash cannot express is never guessed at. */
static int llama3_from_rope_freqs(const leash_gguf *g, int hs, leash_gpt_config *cfg) {
    const char *path = leash_gguf_path(g);
    const leash_gguf_tensor *t = leash_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t) return LEASH_OK;
    int n = hs / 2, rc = LEASH_OK;
    if (cfg->rope_scaling != LEASH_ROPE_DEFAULT || t->n_dims != 1 || t->numel != n)
        return leash_fail(LEASH_EFORMAT, "%s: rope_freqs.weight has %lld values beside %s; leash reads it as Llama 3's rotary "
                                         "scaling, one factor per frequency (%d)",
                          path, (long long)t->numel, cfg->rope_scaling ? "another rotary scaling" : "this head size", n);
    float *fac = malloc(2 * (size_t)n * sizeof *fac), *back = fac + n;
    if (!fac) return leash_fail(LEASH_ENOMEM, "%s: out of memory", path);
    if ((rc = leash_gguf_read_f32(g, t, fac))) goto done;
    double factor = fac[n - 1], theta = cfg->rope_theta > 0.0f ? cfg->rope_theta : 10000.0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    int m = 0;
    for (int i = 0; i < n; i++) { // the smooth band: 1 < factor_i < factor, a line in 1 / wavelen
        if (!(fac[i] > 1.0f && fac[i] < fac[n - 1])) continue;
        double x = 1.0 / (2.0 * 3.14159265358979323846 * pow(theta, (double)(2 * i) / hs));
        double y = (1.0 / fac[i] - 1.0 / factor) / (1.0 - 1.0 / factor);
        sx += x, sy += y, sxx += x * x, sxy += x * y, m++;
    }
    cfg->rope_scaling = LEASH_ROPE_LLAMA3, cfg->rope_factor = (float)factor, cfg->rope_low_freq_factor = 1.0f;
    cfg->rope_high_freq_factor = 4.0f, cfg->rope_original_max_positions = 8192; // Llama 3.1's, when no band shows
    if (m == 1) // one entry in the band: Llama 3's lo = 1, hi = 4 give orig = wavelen (3 smooth + 1)
        cfg->rope_original_max_positions = (int)lround((3.0 * sy + 1.0) / sx);
    else if (m >= 2 && sxx * m - sx * sx > 0) {
        double a = (sxy * m - sx * sy) / (sxx * m - sx * sx), b = (a * sx - sy) / m; // smooth = a x - b
        if (a > 0 && b > 0 && a / b < 1e9) {
            cfg->rope_original_max_positions = (int)lround(a / b);
            cfg->rope_high_freq_factor = (float)(1.0 + 1.0 / b);
            float snapped = roundf(cfg->rope_high_freq_factor * 1024.0f) / 1024.0f; // 4, not 3.9999998
            if (fabsf(snapped - cfg->rope_high_freq_factor) < 1e-4f) cfg->rope_high_freq_factor = snapped;
        }
    }
    if (!(factor >= 1.0) || !(cfg->rope_high_freq_factor > 1.0f) || cfg->rope_original_max_positions < 1) {
        rc = leash_fail(LEASH_EFORMAT, "%s: rope_freqs.weight's factors (longest wavelength %g) are not Llama 3's rotary "
                                       "scaling; leash cannot express this table",
                        path, factor);
        goto done;
    }
    leash_gguf_llama3_factors(cfg, hs, back);
    for (int i = 0; i < n && !rc; i++)
        if (!(fabs((double)back[i] - fac[i]) <= 1e-5 * fabs((double)fac[i])))
            rc = leash_fail(LEASH_EFORMAT, "%s: rope_freqs.weight[%d] = %g is not Llama 3's rotary scaling (factor %g, "
                                           "recovered original context %d: %g expected); leash cannot express this table",
                            path, i, (double)fac[i], factor, cfg->rope_original_max_positions, (double)back[i]);
done:
    free(fac);
    return rc;
}

static int llama_config(const leash_gguf *g, const char *arch, leash_gpt_config *cfg) {
    const char *path = leash_gguf_path(g);
    int qwen2 = strcmp(arch, "qwen2") == 0, key_len = 0, value_len = 0, rope_dims = 0, window = 0, experts = 0, used = 0;
    double eps, theta;
    cfg->arch = LEASH_ARCH_LLAMA;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", arch);
    int rc = common_sizes(g, arch, cfg);
    if (!rc) rc = arch_float(g, arch, "attention.layer_norm_rms_epsilon", 1, 0.0, &eps);
    if (!rc) rc = arch_float(g, arch, "rope.freq_base", 0, 10000.0, &theta);
    if (!rc) rc = arch_int(g, arch, "attention.key_length", 0, 0, &key_len);
    if (!rc) rc = arch_int(g, arch, "attention.value_length", 0, key_len, &value_len);
    if (!rc) rc = arch_int(g, arch, "rope.dimension_count", 0, 0, &rope_dims);
    if (!rc) rc = arch_int(g, arch, "attention.sliding_window", 0, 0, &window);
    if (!rc) rc = arch_int(g, arch, "expert_count", 0, 0, &experts);
    if (!rc) rc = arch_int(g, arch, "expert_used_count", 0, 0, &used);
    if (!rc) rc = rope_scaling(g, arch, cfg);
    if (rc) return rc;
    if (experts || used)
        return leash_fail(LEASH_EFORMAT, "%s: \"%s.expert_count\" = %d: a mixture of experts, which leash does not run", path, arch, experts);
    if (key_len != value_len)
        return leash_fail(LEASH_EFORMAT, "%s: \"%s.attention.key_length\" (%d) differs from \"%s.attention.value_length\" (%d); "
                                         "leash needs one head size",
                          path, arch, key_len, arch, value_len);
    cfg->head_dim = key_len;
    if (cfg->head_dim && cfg->n_head > 0 && cfg->n_embd % cfg->n_head == 0 && cfg->head_dim == cfg->n_embd / cfg->n_head) cfg->head_dim = 0;
    if (cfg->n_kv_head == cfg->n_head) cfg->n_kv_head = 0;
    int hs = cfg->head_dim ? cfg->head_dim : cfg->n_head > 0 ? cfg->n_embd / cfg->n_head : 0;
    if (rope_dims && rope_dims != hs)
        return leash_fail(LEASH_EFORMAT, "%s: \"%s.rope.dimension_count\" = %d but the head size is %d; leash rotates whole heads",
                          path, arch, rope_dims, hs);
    cfg->layer_norm_epsilon = leash_config_float(eps); // beyond float: inf, which the config check refuses
    cfg->rope_theta = leash_config_float(theta);
    if ((rc = llama3_from_rope_freqs(g, hs, cfg))) return rc;
    cfg->untied_head = leash_gguf_find_tensor(g, "output.weight") != NULL;
    // biases: Qwen2's q, k, v always; Llama's attention_bias covers q, k, v and o (the tensors then must all be there)
    cfg->qkv_bias = qwen2 || leash_gguf_find_tensor(g, "blk.0.attn_q.bias");
    cfg->o_bias = !qwen2 && cfg->qkv_bias;
    cfg->mlp_bias = leash_gguf_find_tensor(g, "blk.0.ffn_gate.bias") != NULL;
    // a sliding window changes nothing while sequences fit in it: leash keeps them that short (as config.json)
    if (window > 0 && window < cfg->n_positions) cfg->n_positions = window;
    return LEASH_OK;
}

static int gpt2_config(const leash_gguf *g, leash_gpt_config *cfg) {
    const char *path = leash_gguf_path(g);
    double eps;
    int rc = common_sizes(g, "gpt2", cfg);
    if (!rc) rc = arch_float(g, "gpt2", "attention.layer_norm_epsilon", 1, 0.0, &eps);
    if (rc) return rc;
    if (cfg->n_kv_head != cfg->n_head)
        return leash_fail(LEASH_EFORMAT, "%s: \"gpt2.attention.head_count_kv\" = %d differs from head_count %d", path,
                          cfg->n_kv_head, cfg->n_head);
    if ((long long)cfg->n_inner != 4LL * cfg->n_embd) // in 64 bits: a file's n_embd may be near INT_MAX
        return leash_fail(LEASH_EFORMAT, "%s: \"gpt2.feed_forward_length\" = %d; leash's GPT-2 uses 4 * n_embd = %lld", path,
                          cfg->n_inner, 4LL * cfg->n_embd);
    cfg->n_kv_head = cfg->n_inner = 0;
    cfg->layer_norm_epsilon = leash_config_float(eps);
    return LEASH_OK;
}

static int config_of(const leash_gguf *g, leash_gpt_config *cfg) {
    const char *path = leash_gguf_path(g), *arch = NULL, *type = NULL;
    size_t len;
    int64_t split = 1;
    memset(cfg, 0, sizeof *cfg);
    int rc = leash_gguf_get_string(g, "general.architecture", &arch, &len);
    if (rc == 1) return leash_fail(LEASH_EFORMAT, "%s: missing key \"general.architecture\"", path);
    if (rc) return rc;
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2") && strcmp(arch, "mistral") && strcmp(arch, "gpt2"))
        return leash_fail(LEASH_EFORMAT, "%s: \"general.architecture\" is \"%.40s\"; leash loads llama, qwen2, mistral and gpt2",
                          path, arch);
    if ((rc = leash_gguf_get_string(g, "general.type", &type, &len)) < 0) return rc;
    if (rc == 0 && strcmp(type, "model"))
        return leash_fail(LEASH_EFORMAT, "%s: \"general.type\" is \"%.40s\"; leash loads models (not adapters or other kinds)", path, type);
    if ((rc = leash_gguf_get_int(g, "split.count", &split)) < 0) return rc;
    if (split > 1)
        return leash_fail(LEASH_EFORMAT, "%s: \"split.count\" = %lld: one part of a split model; merge it into one file "
                                         "(llama-gguf-split --merge)",
                          path, (long long)split);
    for (int i = 0; i < leash_gguf_num_keys(g); i++)
        if (!understood(arch, leash_gguf_key(g, i)))
            return leash_fail(LEASH_EFORMAT, "%s: key \"%.200s\" is not understood by leash, and it may change what the model "
                                             "computes; refusing to guess",
                              path, leash_gguf_key(g, i));
    rc = strcmp(arch, "gpt2") == 0 ? gpt2_config(g, cfg) : llama_config(g, arch, cfg);
    if (!rc && (rc = leash_gpt_config_check(cfg))) rc = leash_fail_wrap(rc, "%s", path);
    return rc;
}

int leash_gguf_load_config(const char *path, leash_gpt_config *cfg) {
    leash_gguf *g;
    int rc = leash_gguf_open(&g, path);
    if (rc) return rc;
    rc = config_of(g, cfg);
    leash_gguf_close(g);
    return rc;
}

/* ---- weights ----------------------------------------------------------------------------------- */

enum { AS_IS = LEASH_GGUF_AS_IS, PERMUTED = LEASH_GGUF_PERMUTED, TRANSPOSED = LEASH_GGUF_TRANSPOSED };

/* One tensor of m (info t) from GGUF tensor s, stored as `how`. */
static int read_tensor(const leash_gguf *g, const leash_gguf_tensor *s, const leash_tensor_info *t, int how, int hs, float *dst) {
    const char *path = leash_gguf_path(g);
    int64_t want[4] = {1, 1, 1, 1};
    if (t->ndim == 1) want[0] = t->shape[0];
    else if (how == TRANSPOSED) want[0] = t->shape[0], want[1] = t->shape[1]; // Conv1D (in, out) stored as (out, in)
    else want[0] = t->shape[1], want[1] = t->shape[0];
    if (memcmp(want, s->ne, sizeof want))
        return leash_fail(LEASH_EFORMAT, "%s: tensor '%s' has ne = {%lld, %lld, %lld, %lld}; the configuration implies {%lld, "
                                         "%lld} (leash's '%s')",
                          path, s->name, (long long)s->ne[0], (long long)s->ne[1], (long long)s->ne[2], (long long)s->ne[3],
                          (long long)want[0], (long long)want[1], t->name);
    float *tmp = NULL; // (numel) the tensor as stored, when that is not leash's layout
    if (how != AS_IS && !(tmp = malloc(t->numel * sizeof *tmp)))
        return leash_fail(LEASH_ENOMEM, "%s: out of memory for tensor '%s'", path, s->name);
    int rc = leash_gguf_read_f32(g, s, how == AS_IS ? dst : tmp);
    int64_t w = t->ndim == 1 ? 1 : t->shape[1];
    if (!rc && how == PERMUTED) // stored row r is Hugging Face's row permuted_row(r)
        for (int64_t r = 0; r < t->shape[0]; r++)
            memcpy(dst + leash_gguf_permuted_row(r, hs) * w, tmp + r * w, (size_t)w * sizeof *tmp);
    if (!rc && how == TRANSPOSED) // tmp (out, in) -> dst (in, out)
        for (int64_t i = 0; i < t->shape[0]; i++)
            for (int64_t o = 0; o < t->shape[1]; o++) dst[i * t->shape[1] + o] = tmp[o * t->shape[0] + i];
    free(tmp);
    // a damaged byte can make a weight NaN or Inf, which would poison every later number: refuse it here
    for (size_t j = 0; !rc && j < t->numel; j++)
        if (!isfinite(dst[j]))
            rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s' holds %g at index %zu: the file is damaged", path, s->name,
                            (double)dst[j], j);
    return rc;
}

/* GPT-2 converters add output.weight as a copy of token_embd.weight; leash's GPT-2 head is tied, so the copy
 * is accepted only when it is the same bytes. */
static int tied_copy(const leash_gguf *g, const leash_gguf_tensor *s) {
    const leash_gguf_tensor *e = leash_gguf_find_tensor(g, "token_embd.weight");
    return strcmp(s->name, "output.weight") == 0 && e && e->type == s->type && !memcmp(e->ne, s->ne, sizeof e->ne) &&
           !memcmp(leash_gguf_tensor_data(g, e), leash_gguf_tensor_data(g, s), (size_t)s->nbytes);
}

static int read_weights(const leash_gguf *g, leash_gpt *m, char *seen, char *used) {
    const leash_gpt_config *cfg = leash_gpt_cfg(m);
    const char *path = leash_gguf_path(g);
    int n = leash_gpt_lora(m) ? leash_gpt_first_trainable(m) : leash_gpt_num_tensors(m), hs = leash_gpt_head_size(cfg), rc = LEASH_OK;
    for (int i = 0; i < n && !rc; i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        char name[128];
        int how = AS_IS;
        if (!leash_gguf_tensor_name(cfg, t->name, name, sizeof name, &how))
            return leash_fail(LEASH_EFORMAT, "%s: leash's tensor '%s' has no GGUF counterpart (a scalar head is not stored in GGUF)",
                              path, t->name);
        const leash_gguf_tensor *s = leash_gguf_find_tensor(g, name);
        if (!s) return leash_fail(LEASH_EFORMAT, "%s: tensor '%s' (leash's '%s') is missing", path, name, t->name);
        rc = read_tensor(g, s, t, how, hs, leash_gpt_params(m) + t->offset);
        used[s - leash_gguf_tensor_at(g, 0)] = 1;
        seen[i] = 1;
    }
    for (int i = 0; i < leash_gguf_num_tensors(g) && !rc; i++) {
        const leash_gguf_tensor *s = leash_gguf_tensor_at(g, i);
        if (!used[i] && !(cfg->arch == LEASH_ARCH_GPT2 && tied_copy(g, s)) &&
            !(cfg->rope_scaling == LEASH_ROPE_LLAMA3 && strcmp(s->name, "rope_freqs.weight") == 0)) // read as config
            rc = leash_fail(LEASH_EFORMAT, "%s: unexpected tensor '%s' for a %s model with this metadata%s", path, s->name,
                            cfg->arch == LEASH_ARCH_GPT2 ? "gpt2" : cfg->model_type,
                            cfg->arch == LEASH_ARCH_GPT2 && strcmp(s->name, "output.weight") == 0
                                ? " (an LM head that differs from token_embd.weight; leash's GPT-2 head is tied)"
                                : "");
    }
    return rc;
}

int leash_gguf_load_weights(const char *path, leash_gpt *m, char *seen) {
    leash_gguf *g;
    int rc = leash_gguf_open(&g, path);
    if (rc) return rc;
    char *used = calloc((size_t)leash_gguf_num_tensors(g) + 1, 1);
    rc = used ? read_weights(g, m, seen, used) : leash_fail(LEASH_ENOMEM, "%s: out of memory", path);
    free(used);
    leash_gguf_close(g);
    return rc;
}
