/* config.json for GPT-2 models: see include/leash/config.h. */
#include "leash/config.h"

#include <cjson/cJSON.h>
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
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
    const cJSON *lh = cJSON_GetObjectItemCaseSensitive(root, "leash");
    int n_inner = 0;
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt2") != 0)
        rc = leash_fail(LEASH_EFORMAT, "%s: \"model_type\" is %s%s%s; this build of leash loads \"gpt2\"", path,
                        cJSON_IsString(mt) ? "\"" : "", cJSON_IsString(mt) ? mt->valuestring : "missing",
                        cJSON_IsString(mt) ? "\"" : "");
    else if (act && (!cJSON_IsString(act) || (strcmp(act->valuestring, "gelu_new") && strcmp(act->valuestring, "gelu_pytorch_tanh"))))
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
    if (!rc) {
        cfg->layer_norm_epsilon = eps ? (float)eps->valuedouble : 1e-5f;
        const cJSON *sh = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "scalar_head") : NULL;
        cfg->scalar_head = cJSON_IsTrue(sh);
        const cJSON *mu = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "score_mean") : NULL;
        const cJSON *sd = cJSON_IsObject(lh) ? cJSON_GetObjectItemCaseSensitive(lh, "score_std") : NULL;
        if ((mu && !cJSON_IsNumber(mu)) || (sd && (!cJSON_IsNumber(sd) || sd->valuedouble < 0)))
            rc = leash_fail(LEASH_EFORMAT, "%s: \"leash\".score_mean / score_std must be numbers (std >= 0)", path);
        cfg->score_mean = cJSON_IsNumber(mu) ? (float)mu->valuedouble : 0.0f;
        cfg->score_std = cJSON_IsNumber(sd) ? (float)sd->valuedouble : 0.0f;
    }
    cJSON_Delete(root);
    if (!rc && (rc = leash_gpt_config_check(cfg))) return leash_fail_wrap(rc, "%s", path);
    return rc;
}

int leash_config_save(const char *path, const leash_gpt_config *c) {
    cJSON *o = cJSON_CreateObject();
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
    cJSON *lh = cJSON_AddObjectToObject(o, "leash");
    cJSON_AddBoolToObject(lh, "scalar_head", c->scalar_head != 0);
    if (c->scalar_head) {
        cJSON_AddNumberToObject(lh, "score_mean", c->score_mean);
        cJSON_AddNumberToObject(lh, "score_std", c->score_std);
    }
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
