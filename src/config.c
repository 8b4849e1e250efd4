/* A model's configuration, its checks and config.json for GPT-2 and Llama-family models: see
 * include/leash/config.h. */
#define _DEFAULT_SOURCE /* access */
#include "leash/config.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/fileio.h"

/* ---- the configuration's checks and derived sizes ------------------------------------------- */

int leash_gpt_head_size(const leash_gpt_config *c) { return c->head_dim ? c->head_dim : c->n_embd / c->n_head; }
int leash_gpt_kv_heads(const leash_gpt_config *c) { return c->n_kv_head ? c->n_kv_head : c->n_head; }
int leash_gpt_mlp_width(const leash_gpt_config *c) { return c->n_inner ? c->n_inner : 4 * c->n_embd; }

int leash_gpt_is_eos(const leash_gpt_config *c, int id) {
    if (id < 0) return 0;
    if (id == c->eos_token_id) return 1;
    for (int i = 0; i < c->n_eos_more; i++)
        if (id == c->eos_more[i]) return 1;
    return 0;
}

int leash_gpt_config_check(const leash_gpt_config *c) {
    if (c->arch != LEASH_ARCH_GPT2 && c->arch != LEASH_ARCH_LLAMA)
        return leash_fail(LEASH_EINVAL, "config: arch = %d; it must be LEASH_ARCH_GPT2 or LEASH_ARCH_LLAMA", c->arch);
    if (c->vocab_size < 1) return leash_fail(LEASH_EINVAL, "config: vocab_size = %d; it must be >= 1", c->vocab_size);
    if (c->n_positions < 1) return leash_fail(LEASH_EINVAL, "config: n_positions = %d; it must be >= 1", c->n_positions);
    if (c->n_layer < 1) return leash_fail(LEASH_EINVAL, "config: n_layer = %d; it must be >= 1", c->n_layer);
    if (c->n_head < 1 || c->n_embd < 1 || (!c->head_dim && c->n_embd % c->n_head))
        return leash_fail(LEASH_EINVAL, "config: n_embd = %d, n_head = %d; n_embd must be a positive multiple of n_head",
                          c->n_embd, c->n_head);
    if (c->head_dim < 0 || c->n_kv_head < 0 || c->n_inner < 0)
        return leash_fail(LEASH_EINVAL, "config: head_dim = %d, n_kv_head = %d, n_inner = %d; none may be negative",
                          c->head_dim, c->n_kv_head, c->n_inner);
    if (c->n_head % leash_gpt_kv_heads(c))
        return leash_fail(LEASH_EINVAL, "config: n_head = %d is not a multiple of n_kv_head = %d (grouped-query attention)",
                          c->n_head, c->n_kv_head);
    if (c->arch == LEASH_ARCH_GPT2) {
        if (c->head_dim || c->n_kv_head || c->qkv_bias || c->o_bias || c->mlp_bias || c->untied_head || c->rope_scaling ||
            c->rope_theta != 0.0f)
            return leash_fail(LEASH_EINVAL, "config: GPT-2 has no head_dim, n_kv_head, bias switches, untied head or "
                                            "rotary settings; leave them 0 or choose the Llama architecture");
    } else {
        if (leash_gpt_head_size(c) % 2)
            return leash_fail(LEASH_EINVAL, "config: head size %d is odd; rotary embeddings rotate pairs",
                              leash_gpt_head_size(c));
        if (c->rope_theta < 0.0f || !isfinite(c->rope_theta))
            return leash_fail(LEASH_EINVAL, "config: rope_theta = %g; it must be > 0 (0: 10000)", (double)c->rope_theta);
        if (c->rope_scaling < 0 || c->rope_scaling > LEASH_ROPE_LLAMA3)
            return leash_fail(LEASH_EINVAL, "config: rope_scaling = %d is not a LEASH_ROPE_* value", c->rope_scaling);
        if (c->rope_scaling && !(c->rope_factor > 0.0f && isfinite(c->rope_factor)))
            return leash_fail(LEASH_EINVAL, "config: rope_scaling.factor = %g; it must be > 0", (double)c->rope_factor);
        if (c->rope_scaling == LEASH_ROPE_LLAMA3 &&
            !(c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_low_freq_factor > 0.0f &&
              c->rope_original_max_positions > 0))
            return leash_fail(LEASH_EINVAL, "config: llama3 rope_scaling needs high_freq_factor > low_freq_factor > 0 "
                                            "and original_max_position_embeddings > 0");
    }
    if (c->bos_token_id < -1 || c->bos_token_id >= c->vocab_size)
        return leash_fail(LEASH_EINVAL, "config: bos_token_id = %d outside the vocabulary [0, %d)", c->bos_token_id,
                          c->vocab_size);
    if (c->eos_token_id < -1 || c->eos_token_id >= c->vocab_size)
        return leash_fail(LEASH_EINVAL, "config: eos_token_id = %d outside the vocabulary [0, %d)", c->eos_token_id,
                          c->vocab_size);
    if (c->n_eos_more < 0 || c->n_eos_more > LEASH_MAX_EOS - 1 || (c->n_eos_more && c->eos_token_id < 0))
        return leash_fail(LEASH_EINVAL, "config: %d further eos ids; at most %d, and only after an eos_token_id",
                          c->n_eos_more, LEASH_MAX_EOS - 1);
    for (int i = 0; i < c->n_eos_more; i++)
        if (c->eos_more[i] < 0 || c->eos_more[i] >= c->vocab_size)
            return leash_fail(LEASH_EINVAL, "config: eos_token_id[%d] = %d outside the vocabulary [0, %d)", i + 1,
                              c->eos_more[i], c->vocab_size);
    if (!(c->layer_norm_epsilon > 0.0f) || !isfinite(c->layer_norm_epsilon))
        return leash_fail(LEASH_EINVAL, "config: layer_norm_epsilon = %g; it must be > 0", (double)c->layer_norm_epsilon);
    // every buffer index must fit: the largest activation is L * B * NH * T * T, bounded at forward time
    double width = (double)c->n_head * leash_gpt_head_size(c) + leash_gpt_mlp_width(c);
    if ((double)c->vocab_size * c->n_embd > 4e9 || (double)c->n_embd * width * 4.0 * c->n_layer > 4e11)
        return leash_fail(LEASH_EINVAL, "config: model too large (vocab %d x n_embd %d, %d layers)", c->vocab_size,
                          c->n_embd, c->n_layer);
    return LEASH_OK;
}

static int get_int(const char *path, const cJSON *root, const char *key, int required, int dflt, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return leash_fail(LEASH_EFORMAT, "%s: missing key \"%s\" (an integer)", path, key);
        *out = dflt;
        return LEASH_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0)
        return leash_fail(LEASH_EFORMAT, "%s: \"%s\" must be an integer", path, key);
    *out = (int)v->valuedouble;
    return LEASH_OK;
}

/* A JSON number as a float: beyond float's range it is +-infinity (which the checks then refuse), not the
 * undefined behaviour of a plain conversion. */
float leash_config_float(double x) {
    if (x > FLT_MAX) return INFINITY;
    if (x < -FLT_MAX) return -INFINITY;
    return (float)x;
}

static int get_float(const char *path, const cJSON *root, const char *key, double dflt, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return LEASH_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return leash_fail(LEASH_EFORMAT, "%s: \"%s\" must be a number", path, key);
    *out = v->valuedouble;
    return LEASH_OK;
}

static int get_bool(const char *path, const cJSON *root, const char *key, int dflt, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return LEASH_OK;
    }
    if (!cJSON_IsBool(v)) return leash_fail(LEASH_EFORMAT, "%s: \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return LEASH_OK;
}

static int is_token_id(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= 0 &&
           v->valuedouble <= 2147483647.0;
}

/* bos_token_id: one id, or a list of which the first is used (a BOS is only ever prepended). */
static int get_bos(const char *path, const cJSON *root, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "bos_token_id");
    if (cJSON_IsArray(v)) {
        if (!is_token_id(cJSON_GetArrayItem(v, 0)))
            return leash_fail(LEASH_EFORMAT, "%s: \"bos_token_id\" must be an integer or a list of integers", path);
        *out = (int)cJSON_GetArrayItem(v, 0)->valuedouble;
        return LEASH_OK;
    }
    return get_int(path, root, "bos_token_id", 0, -1, out);
}

/* eos_token_id: one id, or a list (Llama 3.1's <|end_of_text|>, <|eom_id|>, <|eot_id|>) of which every one
 * ends a text; the first is eos_token_id, the others eos_more. */
static int get_eos(const char *path, const cJSON *root, leash_gpt_config *cfg) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (!cJSON_IsArray(v)) return get_int(path, root, "eos_token_id", 0, -1, &cfg->eos_token_id);
    int n = cJSON_GetArraySize(v);
    if (n < 1 || n > LEASH_MAX_EOS)
        return leash_fail(LEASH_EFORMAT, "%s: \"eos_token_id\" lists %d ids; leash takes 1 to %d", path, n, LEASH_MAX_EOS);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!is_token_id(e))
            return leash_fail(LEASH_EFORMAT, "%s: \"eos_token_id\" must be an integer or a list of integers (item %d)",
                              path, i);
        if (i == 0) cfg->eos_token_id = (int)e->valuedouble;
        else cfg->eos_more[cfg->n_eos_more++] = (int)e->valuedouble;
    }
    return LEASH_OK;
}

/* ---- keys that are not understood ---------------------------------------------------------------
 * A config.json key that changes the computation and that leash does not understand must never be
 * skipped silently. Each loader names the keys it reads; these lists name the keys known to change
 * nothing leash computes, and the keys allowed only with the one value leash computes. Any other key is
 * an error naming it. */

/* Bookkeeping, generation defaults (leash's sampling options are its own, given on its command line),
 * dropout (leash's forwards apply none, as RL trainers run them), and the numerics of other runtimes. */
static const char *const HARMLESS_KEYS[] = {
    "_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype", "use_cache",
    "initializer_range", "pad_token_id", "sep_token_id", "decoder_start_token_id", "unk_token_id",
    "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
    "is_encoder_decoder", "is_decoder", "add_cross_attention", "tie_encoder_decoder", "chunk_size_feed_forward",
    "pruned_heads", "tf_legacy_loss", "problem_type", "id2label", "label2id", "finetuning_task",
    "tokenizer_class", "prefix", "task_specific_params", "cross_attention_hidden_size", "bad_words_ids",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
    "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
    "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "transformers.js_config",
    "is_llama_config", "attention_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type",
    "summary_use_proj", "summary_activation", "summary_proj_to_labels", "summary_first_dropout",
    "reorder_and_upcast_attn", "n_ctx", "max_window_layers", "pretraining_tp", "gradient_checkpointing",
    "output_past", "num_labels", "_num_labels", "keys_to_ignore_at_inference", "leash",
};

typedef struct {
    const char *key;
    const char *value; /* the only accepted value, as JSON text */
    const char *why;
} fixed_key;

static const fixed_key FIXED_KEYS[] = {
    {"rope_interleaved", "false", "leash's rotary positions rotate halves (Hugging Face's layout), not pairs"},
    {"scale_attn_weights", "true", "GPT-2 scales attention scores by 1/sqrt(head size)"},
    {"scale_attn_by_inverse_layer_idx", "false", "leash does not scale attention by layer"},
    {"partial_rotary_factor", "1", "leash rotates the whole head"},
    {"attn_logit_softcapping", "null", "leash does not soft-cap attention logits"},
    {"final_logit_softcapping", "null", "leash does not soft-cap logits"},
};

static int listed(const char *key, const char *const *keys, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, keys[i]) == 0) return 1;
    return 0;
}

static int json_equals(const cJSON *v, const char *text) {
    cJSON *want = cJSON_Parse(text);
    int same = want && cJSON_Compare(v, want, 1);
    if (!same && cJSON_IsNumber(v) && cJSON_IsNumber(want)) same = v->valuedouble == want->valuedouble;
    cJSON_Delete(want);
    return same;
}

/* Refuses any key of config.json's root object that is neither read (known) nor harmless nor at its one
 * accepted value. */
static int check_keys(const char *path, const cJSON *root, const char *const *known, size_t n_known) {
    for (const cJSON *it = root->child; it; it = it->next) {
        if (listed(it->string, known, n_known) || listed(it->string, HARMLESS_KEYS, sizeof HARMLESS_KEYS / sizeof *HARMLESS_KEYS))
            continue;
        const fixed_key *f = NULL;
        for (size_t i = 0; i < sizeof FIXED_KEYS / sizeof *FIXED_KEYS; i++)
            if (strcmp(it->string, FIXED_KEYS[i].key) == 0) f = &FIXED_KEYS[i];
        if (f && json_equals(it, f->value)) continue;
        char *shown = cJSON_PrintUnformatted(it);
        int rc = f ? leash_fail(LEASH_EFORMAT, "%s: \"%s\" is %.60s; leash computes only %s (%s)", path, it->string,
                                shown ? shown : "?", f->value, f->why)
                   : leash_fail(LEASH_EFORMAT, "%s: key \"%s\" (= %.60s) is not understood by leash and may change the "
                                               "model's computation, so the file is refused rather than read wrong; "
                                               "remove the key if the model does not use it",
                                path, it->string, shown ? shown : "?");
        free(shown);
        return rc;
    }
    return LEASH_OK;
}

static int load_gpt2(const char *path, const cJSON *root, leash_gpt_config *cfg) {
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
    int rc = LEASH_OK, n_inner = 0;
    if (act && (!cJSON_IsString(act) || (strcmp(act->valuestring, "gelu_new") && strcmp(act->valuestring, "gelu_pytorch_tanh"))))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"activation_function\" must be \"gelu_new\" (GPT-2's tanh GELU)", path);
    else if (tie && !cJSON_IsTrue(tie))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"tie_word_embeddings\" is false; GPT-2 ties the LM head to wte", path);
    else if (eps && (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0.0)))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"layer_norm_epsilon\" must be a number > 0", path);
    if (!rc) rc = get_int(path, root, "vocab_size", 1, 0, &cfg->vocab_size);
    if (!rc) rc = get_int(path, root, "n_positions", 1, 0, &cfg->n_positions);
    if (!rc) rc = get_int(path, root, "n_embd", 1, 0, &cfg->n_embd);
    if (!rc) rc = get_int(path, root, "n_layer", 1, 0, &cfg->n_layer);
    if (!rc) rc = get_int(path, root, "n_head", 1, 0, &cfg->n_head);
    if (!rc) rc = get_bos(path, root, &cfg->bos_token_id);
    if (!rc) rc = get_eos(path, root, cfg);
    if (!rc) rc = get_int(path, root, "n_inner", 0, 0, &n_inner);
    if (!rc && n_inner && (long long)n_inner != 4LL * cfg->n_embd) // in 64 bits: n_embd may be near INT_MAX
        rc = leash_fail(LEASH_EFORMAT, "%s: \"n_inner\" = %d; leash's GPT-2 uses 4 * n_embd = %lld", path, n_inner,
                        4LL * cfg->n_embd);
    if (!rc) cfg->layer_norm_epsilon = eps ? leash_config_float(eps->valuedouble) : 1e-5f;
    static const char *const known[] = {"model_type", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
                                        "bos_token_id", "eos_token_id", "n_inner", "activation_function",
                                        "layer_norm_epsilon", "tie_word_embeddings"};
    if (!rc) rc = check_keys(path, root, known, sizeof known / sizeof *known);
    return rc;
}

/* One rotary scaling object (config.json's "rope_scaling", or transformers 5's "rope_parameters") into
 * cfg's rope_scaling fields; where names the object. */
static int read_scaling(const char *path, const char *where, const cJSON *rs, leash_gpt_config *cfg) {
    static const char *const known[] = {"rope_type", "type", "rope_theta", "factor", "low_freq_factor",
                                        "high_freq_factor", "original_max_position_embeddings"};
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    const char *name = cJSON_IsString(t) ? t->valuestring : NULL;
    double factor = 0.0, lo = 0.0, hi = 0.0, partial = 1.0;
    int orig = 0, rc = get_float(path, rs, "partial_rotary_factor", 1.0, &partial);
    if (rc) return rc;
    if (partial != 1.0)
        return leash_fail(LEASH_EFORMAT, "%s: \"%s\".partial_rotary_factor is %g; leash rotates the whole head (1)", path,
                          where, partial);
    for (const cJSON *it = rs->child; it; it = it->next)
        if (strcmp(it->string, "partial_rotary_factor") && !listed(it->string, known, sizeof known / sizeof *known))
            return leash_fail(LEASH_EFORMAT, "%s: \"%s\" has key \"%s\", which leash does not understand and which may "
                                             "change the rotary positions; the file is refused rather than read wrong",
                              path, where, it->string);
    if (!name)
        return leash_fail(LEASH_EFORMAT, "%s: \"%s\" must be null or an object with \"rope_type\"", path, where);
    if (strcmp(name, "default") == 0) return LEASH_OK;
    if (strcmp(name, "linear") && strcmp(name, "llama3"))
        return leash_fail(LEASH_EFORMAT, "%s: %s \"%s\" is not supported; leash supports \"default\", "
                                         "\"linear\" and \"llama3\"",
                          path, where, name);
    if ((rc = get_float(path, rs, "factor", 0.0, &factor))) return rc;
    cfg->rope_factor = leash_config_float(factor);
    cfg->rope_scaling = strcmp(name, "linear") == 0 ? LEASH_ROPE_LINEAR : LEASH_ROPE_LLAMA3;
    if (cfg->rope_scaling == LEASH_ROPE_LLAMA3) {
        if (!rc) rc = get_float(path, rs, "low_freq_factor", 1.0, &lo);
        if (!rc) rc = get_float(path, rs, "high_freq_factor", 4.0, &hi);
        if (!rc) rc = get_int(path, rs, "original_max_position_embeddings", 1, 0, &orig);
        cfg->rope_low_freq_factor = leash_config_float(lo);
        cfg->rope_high_freq_factor = leash_config_float(hi);
        cfg->rope_original_max_positions = orig;
    }
    return rc;
}

/* Rotary positions. transformers 4 writes "rope_theta" and "rope_scaling" at the top level; transformers 5
 * writes both only inside "rope_parameters" ({"rope_theta": 100000.0, "rope_type": "default", ...}). Either
 * form is read; a file that gives both must give the same values. */
static int read_rope(const char *path, const cJSON *root, leash_gpt_config *cfg) {
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(root, "rope_theta");
    double theta = 10000.0, inner = 0.0;
    int rc = get_float(path, root, "rope_theta", 10000.0, &theta);
    if (rc) return rc;
    if (rp && !cJSON_IsNull(rp)) {
        if (!cJSON_IsObject(rp))
            return leash_fail(LEASH_EFORMAT, "%s: \"rope_parameters\" must be an object (transformers 5's rotary "
                                             "settings) or null",
                              path);
        if (!cJSON_GetObjectItemCaseSensitive(rp, "rope_theta"))
            return leash_fail(LEASH_EFORMAT, "%s: \"rope_parameters\" has no \"rope_theta\"; leash will not guess the "
                                             "rotary base (transformers 5 writes it there)",
                              path);
        if ((rc = get_float(path, rp, "rope_theta", 0.0, &inner))) return rc;
        if (top && !cJSON_IsNull(top) && inner != theta)
            return leash_fail(LEASH_EFORMAT, "%s: \"rope_theta\" is %g but \"rope_parameters\".rope_theta is %g; which "
                                             "one the model was trained with is unclear",
                              path, theta, inner);
        theta = inner;
        if ((rc = read_scaling(path, "rope_parameters", rp, cfg))) return rc;
    }
    if (!(theta > 0.0)) return leash_fail(LEASH_EFORMAT, "%s: the rotary base rope_theta is %g; it must be > 0", path, theta);
    cfg->rope_theta = leash_config_float(theta);
    if (!rs || cJSON_IsNull(rs)) return LEASH_OK;
    if (!cJSON_IsObject(rs))
        return leash_fail(LEASH_EFORMAT, "%s: \"rope_scaling\" must be null or an object with \"rope_type\"", path);
    double rs_theta = theta; // read_scaling accepts rope_theta (rope_parameters carries it): here it must agree
    if ((rc = get_float(path, rs, "rope_theta", theta, &rs_theta))) return rc;
    if (rs_theta != theta)
        return leash_fail(LEASH_EFORMAT, "%s: the rotary base rope_theta is %g but \"rope_scaling\".rope_theta is %g; "
                                         "which one the model was trained with is unclear",
                          path, theta, rs_theta);
    leash_gpt_config top_cfg = *cfg;
    top_cfg.rope_scaling = LEASH_ROPE_DEFAULT;
    if ((rc = read_scaling(path, "rope_scaling", rs, &top_cfg))) return rc;
    if (rp && !cJSON_IsNull(rp) &&
        (top_cfg.rope_scaling != cfg->rope_scaling || top_cfg.rope_factor != cfg->rope_factor ||
         top_cfg.rope_low_freq_factor != cfg->rope_low_freq_factor ||
         top_cfg.rope_high_freq_factor != cfg->rope_high_freq_factor ||
         top_cfg.rope_original_max_positions != cfg->rope_original_max_positions))
        return leash_fail(LEASH_EFORMAT, "%s: \"rope_scaling\" and \"rope_parameters\" describe different rotary "
                                         "scalings; which one the model was trained with is unclear",
                          path);
    *cfg = top_cfg;
    return LEASH_OK;
}

/* transformers 5's per-layer attention kinds: any "sliding_attention" layer counts as a sliding window. */
static int read_layer_types(const char *path, const cJSON *root, int *sliding) {
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (!lt || cJSON_IsNull(lt)) return LEASH_OK;
    if (!cJSON_IsArray(lt)) return leash_fail(LEASH_EFORMAT, "%s: \"layer_types\" must be a list of strings", path);
    for (const cJSON *it = lt->child; it; it = it->next) {
        if (cJSON_IsString(it) && strcmp(it->valuestring, "full_attention") == 0) continue;
        if (cJSON_IsString(it) && strcmp(it->valuestring, "sliding_attention") == 0) {
            *sliding = 1;
            continue;
        }
        return leash_fail(LEASH_EFORMAT, "%s: \"layer_types\" holds %s%s%s; leash computes \"full_attention\" and "
                                         "\"sliding_attention\" layers",
                          path, cJSON_IsString(it) ? "\"" : "", cJSON_IsString(it) ? it->valuestring : "a non-string",
                          cJSON_IsString(it) ? "\"" : "");
    }
    return LEASH_OK;
}

/* Llama, Qwen2, Mistral (and the models built on them: SmolLM2, TinyLlama, ...). */
static int load_llama(const char *path, const cJSON *root, const char *type, leash_gpt_config *cfg) {
    cfg->arch = LEASH_ARCH_LLAMA;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", type);
    int qwen2 = strcmp(type, "qwen2") == 0, tie = 0, attn_bias = 0, sliding = 0, window = 0;
    double eps = 0.0;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    int rc = LEASH_OK;
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"hidden_act\" is %s; leash's Llama MLP is SwiGLU with \"silu\"", path,
                        cJSON_IsString(act) ? act->valuestring : "not a string");
    if (!rc) rc = get_int(path, root, "vocab_size", 1, 0, &cfg->vocab_size);
    if (!rc) rc = get_int(path, root, "max_position_embeddings", 1, 0, &cfg->n_positions);
    if (!rc) rc = get_int(path, root, "hidden_size", 1, 0, &cfg->n_embd);
    if (!rc) rc = get_int(path, root, "num_hidden_layers", 1, 0, &cfg->n_layer);
    if (!rc) rc = get_int(path, root, "num_attention_heads", 1, 0, &cfg->n_head);
    if (!rc) rc = get_int(path, root, "num_key_value_heads", 0, 0, &cfg->n_kv_head);
    if (!rc) rc = get_int(path, root, "head_dim", 0, 0, &cfg->head_dim);
    if (!rc) rc = get_int(path, root, "intermediate_size", 1, 0, &cfg->n_inner);
    if (!rc) rc = get_bos(path, root, &cfg->bos_token_id);
    if (!rc) rc = get_eos(path, root, cfg);
    if (!rc) rc = get_float(path, root, "rms_norm_eps", 1e-6, &eps);
    if (!rc) rc = get_bool(path, root, "tie_word_embeddings", 0, &tie);
    if (!rc) rc = get_bool(path, root, "attention_bias", 0, &attn_bias);
    if (!rc) rc = get_bool(path, root, "mlp_bias", 0, &cfg->mlp_bias);
    if (!rc) rc = get_bool(path, root, "use_sliding_window", strcmp(type, "mistral") == 0, &sliding);
    if (!rc) rc = get_int(path, root, "sliding_window", 0, 0, &window);
    if (rc) return rc;
    if (cfg->head_dim && cfg->n_head > 0 && cfg->n_embd > 0 && cfg->head_dim == cfg->n_embd / cfg->n_head &&
        cfg->n_embd % cfg->n_head == 0)
        cfg->head_dim = 0;
    if (cfg->n_kv_head == cfg->n_head) cfg->n_kv_head = 0;
    cfg->layer_norm_epsilon = leash_config_float(eps);
    cfg->untied_head = !tie;
    cfg->qkv_bias = qwen2 || attn_bias; // Qwen2's q, k, v always carry biases; Llama's attention_bias covers o too
    cfg->o_bias = !qwen2 && attn_bias;
    if ((rc = read_layer_types(path, root, &sliding))) return rc;
    // a sliding window changes nothing while sequences fit in it: leash's sequences are kept that short
    if (sliding && window > 0 && window < cfg->n_positions) cfg->n_positions = window;
    static const char *const known[] = {
        "model_type", "vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "bos_token_id",
        "eos_token_id", "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings",
        "attention_bias", "mlp_bias", "use_sliding_window", "sliding_window", "hidden_act", "layer_types"};
    if ((rc = check_keys(path, root, known, sizeof known / sizeof *known))) return rc;
    return read_rope(path, root, cfg);
}

int leash_config_load(const char *path, leash_gpt_config *cfg, leash_score_stats *score) {
    char *text;
    int rc = leash_read_file(path, 1 << 20, &text, NULL);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    long at = root ? 0 : (long)(end ? end - text : -1);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return leash_fail(LEASH_EFORMAT, "%s: not a JSON object (malformed at byte %ld)", path, at);
    }
    memset(cfg, 0, sizeof *cfg);
    if (score) *score = (leash_score_stats){0};
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *lh = cJSON_GetObjectItemCaseSensitive(root, "leash");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
    if (type && strcmp(type, "gpt2") == 0) rc = load_gpt2(path, root, cfg);
    else if (type && (!strcmp(type, "llama") || !strcmp(type, "qwen2") || !strcmp(type, "mistral")))
        rc = load_llama(path, root, type, cfg);
    else
        rc = leash_fail(LEASH_EFORMAT, "%s: \"model_type\" is %s%s%s; leash loads \"gpt2\", \"llama\", \"qwen2\" and "
                                       "\"mistral\"",
                        path, type ? "\"" : "", type ? type : "missing", type ? "\"" : "");
    if (!rc && lh) rc = leash_config_read_own_keys(path, lh, cfg, score);
    cJSON_Delete(root);
    if (!rc && (rc = leash_gpt_config_check(cfg))) return leash_fail_wrap(rc, "%s", path);
    return rc;
}

int leash_config_load_dir(const char *dir, leash_gpt_config *cfg, leash_score_stats *score) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = leash_config_load(path, cfg, score);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (rc || access(path, F_OK) != 0) return rc;
    char *text;
    if ((rc = leash_read_file(path, 1 << 20, &text, NULL))) return rc;
    cJSON *root = cJSON_Parse(text);
    free(text);
    leash_gpt_config gen = {.eos_token_id = -1};
    if (!cJSON_IsObject(root)) rc = leash_fail(LEASH_EFORMAT, "%s: not a JSON object", path);
    else rc = get_eos(path, root, &gen);
    cJSON_Delete(root);
    // generate() ends a text at generation_config.json's ids (Llama 3 instruct lists <|eot_id|> there only)
    int ids[LEASH_MAX_EOS], n = 0;
    ids[n++] = gen.eos_token_id;
    for (int i = 0; i < gen.n_eos_more; i++) ids[n++] = gen.eos_more[i];
    for (int i = 0; i < n && !rc && ids[i] >= 0; i++) {
        if (leash_gpt_is_eos(cfg, ids[i])) continue;
        if (ids[i] >= cfg->vocab_size)
            rc = leash_fail(LEASH_EFORMAT, "%s: eos_token_id %d is outside the vocabulary [0, %d)", path, ids[i], cfg->vocab_size);
        else if (cfg->eos_token_id < 0) cfg->eos_token_id = ids[i];
        else if (cfg->n_eos_more < LEASH_MAX_EOS - 1) cfg->eos_more[cfg->n_eos_more++] = ids[i];
        else rc = leash_fail(LEASH_EFORMAT, "%s: more than %d end ids with config.json's", path, LEASH_MAX_EOS);
    }
    return rc;
}

/* A float as the shortest decimal that reads back to it (1e-06, not 9.99999997475243e-07). */
static double decimal(float x) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if ((float)strtod(buf, NULL) == x) break;
    }
    return strtod(buf, NULL);
}

/* eos_token_id as the file gave it: one id, or the list. */
static void add_eos(cJSON *o, const leash_gpt_config *c) {
    if (c->eos_token_id < 0) return;
    if (!c->n_eos_more) {
        cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
        return;
    }
    cJSON *list = cJSON_AddArrayToObject(o, "eos_token_id");
    cJSON_AddItemToArray(list, cJSON_CreateNumber(c->eos_token_id));
    for (int i = 0; i < c->n_eos_more; i++) cJSON_AddItemToArray(list, cJSON_CreateNumber(c->eos_more[i]));
}

static void save_llama(cJSON *o, const leash_gpt_config *c) {
    const char *type = c->model_type[0] ? c->model_type : "llama";
    const char *arch = !strcmp(type, "qwen2") ? "Qwen2ForCausalLM" : !strcmp(type, "mistral") ? "MistralForCausalLM"
                                                                                              : "LlamaForCausalLM";
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "architectures"), cJSON_CreateString(arch));
    cJSON_AddStringToObject(o, "model_type", type);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->n_positions);
    cJSON_AddNumberToObject(o, "hidden_size", c->n_embd);
    cJSON_AddNumberToObject(o, "intermediate_size", leash_gpt_mlp_width(c));
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layer);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_head);
    cJSON_AddNumberToObject(o, "num_key_value_heads", leash_gpt_kv_heads(c));
    cJSON_AddNumberToObject(o, "head_dim", leash_gpt_head_size(c));
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "rms_norm_eps", decimal(c->layer_norm_epsilon));
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta > 0.0f ? decimal(c->rope_theta) : 10000.0);
    if (c->rope_scaling) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", c->rope_scaling == LEASH_ROPE_LINEAR ? "linear" : "llama3");
        cJSON_AddNumberToObject(rs, "factor", decimal(c->rope_factor));
        if (c->rope_scaling == LEASH_ROPE_LLAMA3) {
            cJSON_AddNumberToObject(rs, "low_freq_factor", decimal(c->rope_low_freq_factor));
            cJSON_AddNumberToObject(rs, "high_freq_factor", decimal(c->rope_high_freq_factor));
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_positions);
        }
    } else {
        cJSON_AddNullToObject(o, "rope_scaling");
    }
    if (strcmp(type, "qwen2")) cJSON_AddBoolToObject(o, "attention_bias", c->qkv_bias != 0);
    cJSON_AddBoolToObject(o, "mlp_bias", c->mlp_bias != 0);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", !c->untied_head);
    if (strcmp(type, "llama")) cJSON_AddBoolToObject(o, "use_sliding_window", 0);
    if (c->bos_token_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    add_eos(o, c);
}

static void save_gpt2(cJSON *o, const leash_gpt_config *c) {
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddStringToObject(o, "model_type", "gpt2");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "n_positions", c->n_positions);
    cJSON_AddNumberToObject(o, "n_ctx", c->n_positions);
    cJSON_AddNumberToObject(o, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(o, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(o, "n_head", c->n_head);
    cJSON_AddNullToObject(o, "n_inner");
    cJSON_AddStringToObject(o, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(o, "layer_norm_epsilon", c->layer_norm_epsilon);
    if (c->bos_token_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    add_eos(o, c);
    cJSON_AddTrueToObject(o, "tie_word_embeddings");
    cJSON_AddNumberToObject(o, "resid_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "embd_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "attn_pdrop", 0.0);
}

int leash_config_read_own_keys(const char *path, const cJSON *lh, leash_gpt_config *cfg, leash_score_stats *score) {
    const cJSON *sh = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "scalar_head") : NULL;
    const cJSON *mu = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "score_mean") : NULL;
    const cJSON *sd = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "score_std") : NULL;
    if ((mu && !cJSON_IsNumber(mu)) || (sd && (!cJSON_IsNumber(sd) || sd->valuedouble < 0)))
        return leash_fail(LEASH_EFORMAT, "%s: \"leash\".score_mean / score_std must be numbers (std >= 0)", path);
    cfg->scalar_head = cJSON_IsTrue(sh);
    if (score) {
        score->mean = cJSON_IsNumber(mu) ? leash_config_float(mu->valuedouble) : 0.0f;
        score->std = cJSON_IsNumber(sd) ? leash_config_float(sd->valuedouble) : 0.0f;
    }
    return LEASH_OK;
}

void leash_config_add_own_keys(cJSON *o, const leash_gpt_config *c, const leash_score_stats *score) {
    cJSON *lh = cJSON_AddObjectToObject(o, "leash");
    cJSON_AddBoolToObject(lh, "scalar_head", c->scalar_head != 0);
    if (c->scalar_head) {
        cJSON_AddNumberToObject(lh, "score_mean", score ? score->mean : 0.0f);
        cJSON_AddNumberToObject(lh, "score_std", score ? score->std : 0.0f);
    }
}

int leash_json_save(const char *path, cJSON *o) {
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return leash_fail(LEASH_ENOMEM, "out of memory");
    size_t n = strlen(text);
    char *with_nl = malloc(n + 2);
    if (!with_nl) {
        free(text);
        return leash_fail(LEASH_ENOMEM, "out of memory");
    }
    memcpy(with_nl, text, n);
    with_nl[n] = '\n';
    free(text);
    int rc = leash_write_file_atomic(path, with_nl, n + 1);
    free(with_nl);
    return rc;
}

int leash_config_save(const char *path, const leash_gpt_config *c, const leash_score_stats *score) {
    if (c->arch == LEASH_ARCH_LLAMA && !strcmp(c->model_type, "qwen2") ? (!c->qkv_bias || c->o_bias)
                                                                       : c->qkv_bias != c->o_bias)
        return leash_fail(LEASH_EINVAL, "%s: model_type \"%s\" cannot express q/k/v bias %d with o_proj bias %d", path,
                          c->model_type[0] ? c->model_type : "llama", c->qkv_bias, c->o_bias);
    cJSON *o = cJSON_CreateObject();
    if (c->arch == LEASH_ARCH_LLAMA) save_llama(o, c);
    else save_gpt2(o, c);
    leash_config_add_own_keys(o, c, score);
    return leash_json_save(path, o);
}
