/* config.json for GPT-2 and Llama-family models: see include/leash/config.h. */
#include "leash/config.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"

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

/* A token id that some configs give as a list (Llama 3's several end-of-turn tokens): the first one. */
static int get_token_id(const char *path, const cJSON *root, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsArray(v)) {
        const cJSON *first = cJSON_GetArrayItem(v, 0);
        if (!cJSON_IsNumber(first) || first->valuedouble != floor(first->valuedouble) || first->valuedouble < 0 ||
            first->valuedouble > 2147483647.0)
            return leash_fail(LEASH_EFORMAT, "%s: \"%s\" must be an integer or a list of integers", path, key);
        *out = (int)first->valuedouble;
        return LEASH_OK;
    }
    return get_int(path, root, key, 0, -1, out);
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
    if (!rc) rc = get_int(path, root, "bos_token_id", 0, -1, &cfg->bos_token_id);
    if (!rc) rc = get_int(path, root, "eos_token_id", 0, -1, &cfg->eos_token_id);
    if (!rc) rc = get_int(path, root, "n_inner", 0, 0, &n_inner);
    if (!rc && n_inner && n_inner != 4 * cfg->n_embd)
        rc = leash_fail(LEASH_EFORMAT, "%s: \"n_inner\" = %d; leash's GPT-2 uses 4 * n_embd = %d", path, n_inner,
                        4 * cfg->n_embd);
    if (!rc) cfg->layer_norm_epsilon = eps ? leash_config_float(eps->valuedouble) : 1e-5f;
    return rc;
}

/* Llama, Qwen2, Mistral (and the models built on them: SmolLM2, TinyLlama, ...). */
static int load_llama(const char *path, const cJSON *root, const char *type, leash_gpt_config *cfg) {
    cfg->arch = LEASH_ARCH_LLAMA;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", type);
    int qwen2 = strcmp(type, "qwen2") == 0, tie = 0, attn_bias = 0, sliding = 0, window = 0;
    double eps = 0.0, theta = 0.0;
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
    if (!rc) rc = get_token_id(path, root, "bos_token_id", &cfg->bos_token_id);
    if (!rc) rc = get_token_id(path, root, "eos_token_id", &cfg->eos_token_id);
    if (!rc) rc = get_float(path, root, "rms_norm_eps", 1e-6, &eps);
    if (!rc) rc = get_float(path, root, "rope_theta", 10000.0, &theta);
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
    cfg->rope_theta = leash_config_float(theta);
    cfg->untied_head = !tie;
    cfg->qkv_bias = qwen2 || attn_bias; // Qwen2's q, k, v always carry biases; Llama's attention_bias covers o too
    cfg->o_bias = !qwen2 && attn_bias;
    // a sliding window changes nothing while sequences fit in it: leash's sequences are kept that short
    if (sliding && window > 0 && window < cfg->n_positions) cfg->n_positions = window;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!t) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *name = cJSON_IsString(t) ? t->valuestring : NULL;
        double factor = 0.0, lo = 0.0, hi = 0.0;
        int orig = 0;
        if (!cJSON_IsObject(rs) || !name)
            return leash_fail(LEASH_EFORMAT, "%s: \"rope_scaling\" must be null or an object with \"rope_type\"", path);
        if (strcmp(name, "default") == 0) return LEASH_OK;
        if (strcmp(name, "linear") && strcmp(name, "llama3"))
            return leash_fail(LEASH_EFORMAT, "%s: rope_scaling \"%s\" is not supported; leash supports \"default\", "
                                             "\"linear\" and \"llama3\"",
                              path, name);
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
    }
    return rc;
}

int leash_config_load(const char *path, leash_gpt_config *cfg) {
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
    if (!rc && lh) rc = leash_config_read_own_keys(path, lh, cfg);
    cJSON_Delete(root);
    if (!rc && (rc = leash_gpt_config_check(cfg))) return leash_fail_wrap(rc, "%s", path);
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
    if (c->eos_token_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
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
    if (c->eos_token_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddTrueToObject(o, "tie_word_embeddings");
    cJSON_AddNumberToObject(o, "resid_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "embd_pdrop", 0.0);
    cJSON_AddNumberToObject(o, "attn_pdrop", 0.0);
}

int leash_config_read_own_keys(const char *path, const cJSON *lh, leash_gpt_config *cfg) {
    const cJSON *sh = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "scalar_head") : NULL;
    const cJSON *mu = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "score_mean") : NULL;
    const cJSON *sd = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "score_std") : NULL;
    if ((mu && !cJSON_IsNumber(mu)) || (sd && (!cJSON_IsNumber(sd) || sd->valuedouble < 0)))
        return leash_fail(LEASH_EFORMAT, "%s: \"leash\".score_mean / score_std must be numbers (std >= 0)", path);
    cfg->scalar_head = cJSON_IsTrue(sh);
    cfg->score_mean = cJSON_IsNumber(mu) ? leash_config_float(mu->valuedouble) : 0.0f;
    cfg->score_std = cJSON_IsNumber(sd) ? leash_config_float(sd->valuedouble) : 0.0f;
    return LEASH_OK;
}

void leash_config_add_own_keys(cJSON *o, const leash_gpt_config *c) {
    cJSON *lh = cJSON_AddObjectToObject(o, "leash");
    cJSON_AddBoolToObject(lh, "scalar_head", c->scalar_head != 0);
    if (c->scalar_head) {
        cJSON_AddNumberToObject(lh, "score_mean", c->score_mean);
        cJSON_AddNumberToObject(lh, "score_std", c->score_std);
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

int leash_config_save(const char *path, const leash_gpt_config *c) {
    if (c->arch == LEASH_ARCH_LLAMA && !strcmp(c->model_type, "qwen2") ? (!c->qkv_bias || c->o_bias)
                                                                       : c->qkv_bias != c->o_bias)
        return leash_fail(LEASH_EINVAL, "%s: model_type \"%s\" cannot express q/k/v bias %d with o_proj bias %d", path,
                          c->model_type[0] ? c->model_type : "llama", c->qkv_bias, c->o_bias);
    cJSON *o = cJSON_CreateObject();
    if (c->arch == LEASH_ARCH_LLAMA) save_llama(o, c);
    else save_gpt2(o, c);
    leash_config_add_own_keys(o, c);
    return leash_json_save(path, o);
}
