/* Loading and saving a model as a Hugging Face-style directory: see include/leash/gpt.h. */
#define _DEFAULT_SOURCE /* strdup, realpath */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "leash/config.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gguf.h"
#include "leash/gpt.h"
#include "leash/safetensors.h"
#include "gpt_internal.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Tensors a checkpoint may carry that are not weights: a tied model's copy of the LM head, GPT-2's causal
 * mask buffers (h.N.attn.bias, h.N.attn.masked_bias: the original checkpoints and older transformers
 * save them) and Llama's rotary frequency buffer; leash computes the last two itself. */
static int ignorable(const leash_gpt *m, const char *name) {
    return (strcmp(name, "lm_head.weight") == 0 && !leash_gpt_cfg(m)->untied_head) ||
           (leash_gpt_cfg(m)->arch == LEASH_ARCH_GPT2 && (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias"))) ||
           ends_with(name, ".rotary_emb.inv_freq");
}

static const char *strip_prefix(const char *name) {
    return strncmp(name, "transformer.", 12) == 0 ? name + 12 : name;
}

/* Reads every tensor of one safetensors file into m, marking seen[]. */
static int load_file(leash_gpt *m, const char *path, char *seen) {
    leash_st_file st;
    int rc = leash_st_open(&st, path), n = leash_gpt_num_tensors(m);
    if (rc) return rc;
    for (int i = 0; i < st.n && !rc; i++) {
        const leash_st_entry *e = &st.entries[i];
        const char *name = strip_prefix(e->name);
        int k = 0;
        while (k < n && strcmp(leash_gpt_tensor(m, k)->name, name) != 0) k++;
        if (k == n) {
            if (ignorable(m, name)) continue;
            rc = leash_fail(LEASH_EFORMAT, "%s: unexpected tensor '%s' for a model with this config.json%s", path, e->name,
                            strcmp(name, "score.weight") == 0 ? " (a scalar head: set \"leash\": {\"scalar_head\": true})" : "");
            break;
        }
        const leash_tensor_info *t = leash_gpt_tensor(m, k);
        int same = e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
        if (!same) {
            rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s' has shape [%lld%s%lld], config.json implies [%lld%s%lld]", path,
                            e->name, (long long)(e->ndim ? e->shape[0] : 0), e->ndim > 1 ? ", " : "",
                            (long long)(e->ndim > 1 ? e->shape[1] : 0), (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                            (long long)(t->ndim > 1 ? t->shape[1] : 0));
            break;
        }
        if (seen[k]++) {
            rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s' appears twice (with and without the transformer. prefix, or in "
                                           "two shards?)",
                            path, e->name);
            break;
        }
        if ((rc = leash_st_read_f32(&st, e, leash_gpt_params(m) + t->offset))) break;
        // a damaged byte can make a weight NaN or Inf, which would poison every later number: refuse it here
        const float *w = leash_gpt_params(m) + t->offset;
        for (size_t j = 0; j < t->numel; j++)
            if (!isfinite(w[j])) {
                rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s' holds %g at index %zu: the file is damaged", path, t->name,
                                (double)w[j], j);
                break;
            }
    }
    leash_st_close(&st);
    return rc;
}

/* The shard files a model.safetensors.index.json names, in order of first mention, into *files (a
 * NULL-terminated array of strings; free each and the array). */
static int read_index(const char *path, char ***files) {
    char *text;
    int rc = leash_read_file(path, 64 << 20, &text, NULL);
    if (rc) return rc;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return leash_fail(LEASH_EFORMAT, "%s: not a JSON object with a \"weight_map\" object", path);
    }
    int cap = cJSON_GetArraySize(map) + 1, n = 0;
    char **out = calloc(cap, sizeof *out);
    if (!out) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, map) {
        if (rc) break;
        const char *f = cJSON_IsString(item) ? item->valuestring : NULL;
        if (!f || !*f || strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0) {
            rc = leash_fail(LEASH_EFORMAT, "%s: weight_map[\"%s\"] must name a file beside the index (no '/')", path,
                            item->string);
            break;
        }
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = strcmp(out[i], f) == 0;
        if (!known && !(out[n++] = strdup(f))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    }
    cJSON_Delete(root);
    if (rc) {
        for (int i = 0; out && i < n; i++) free(out[i]);
        free(out);
        return rc;
    }
    *files = out;
    return LEASH_OK;
}

/* Reads dir's weights (model.safetensors, or the shards its index names) into m, marking seen[]; *where
 * receives the file to name for a missing tensor. */
static int load_weights(leash_gpt *m, const char *dir, char *seen, char *where, size_t where_size) {
    char path[4096], index[4096];
    int rc = LEASH_OK;
    if (leash_gguf_is_file(dir)) { // one GGUF file (src/gguf_model.c)
        snprintf(where, where_size, "%s", dir);
        return leash_gguf_load_weights(dir, m, seen);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    if (access(path, F_OK) != 0 && access(index, F_OK) == 0) { // sharded: every file the index names
        char **files = NULL;
        if (!(rc = read_index(index, &files))) {
            for (int i = 0; files[i]; i++) {
                snprintf(path, sizeof path, "%s/%s", dir, files[i]);
                if (!rc && (rc = load_file(m, path, seen))) rc = leash_fail_wrap(rc, "%s names %s", index, files[i]);
                free(files[i]);
            }
            free(files);
        }
        snprintf(where, where_size, "%s", index); // (no shard it names holds a missing tensor)
    } else {
        rc = load_file(m, path, seen);
        snprintf(where, where_size, "%s", path);
    }
    return rc;
}

static int check_all_seen(const leash_gpt *m, const char *seen, int from, int to, const char *where) {
    for (int k = from; k < to; k++)
        if (!seen[k]) return leash_fail(LEASH_EFORMAT, "%s: tensor '%s' is missing", where, leash_gpt_tensor(m, k)->name);
    return LEASH_OK;
}

static int set_source(leash_gpt *m, const char *dir) {
    char *abs = realpath(dir, NULL);
    if (!abs) return leash_fail(LEASH_EIO, "%s: cannot resolve the directory's path", dir);
    free(m->source_dir);
    m->source_dir = abs;
    return LEASH_OK;
}

/* A model of cfg, with score statistics score and LoRA adapters of lora (NULL: none), whose base tensors
 * (every one but the adapters) are read from dir; its adapters start as leash_gpt_init makes them from seed.
 * *seen_out (if not NULL) receives the tensors read. */
static int create_from_dir(leash_gpt **out, const leash_gpt_config *cfg, const leash_score_stats *score,
                           const leash_lora_config *lora, const char *dir, uint64_t seed, char **seen_out) {
    char where[4200];
    leash_gpt *m;
    int rc = leash_gpt_create_lora(&m, cfg, lora);
    if (rc) return leash_fail_wrap(rc, "%s/config.json", dir);
    m->score = *score;
    int n = leash_gpt_num_tensors(m), first = leash_gpt_first_trainable(m), base = lora ? first : n;
    for (int i = base; i < n; i++) leash_gpt_init_tensor(m, i, seed);
    char *seen = calloc(n, 1);
    if (!seen) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc) rc = load_weights(m, dir, seen, where, sizeof where);
    if (!rc) rc = check_all_seen(m, seen, 0, base, where);
    if (!rc) rc = set_source(m, dir);
    if (rc || !seen_out) free(seen);
    else *seen_out = seen;
    if (rc) {
        leash_gpt_free(m);
        return rc;
    }
    *out = m;
    return LEASH_OK;
}

static int load_peft(leash_gpt **out, const char *dir);

/* The configuration and score statistics of a model directory or of a GGUF file (src/gguf_model.c; it has
 * no scalar head, so no statistics). */
static int load_config(const char *dir, leash_gpt_config *cfg, leash_score_stats *score) {
    *score = (leash_score_stats){0};
    return leash_gguf_is_file(dir) ? leash_gguf_load_config(dir, cfg) : leash_config_load_dir(dir, cfg, score);
}

int leash_gpt_load(leash_gpt **out, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (!leash_gguf_is_file(dir) && access(path, F_OK) == 0) return load_peft(out, dir);
    leash_gpt_config cfg;
    leash_score_stats score;
    int rc = load_config(dir, &cfg, &score);
    return rc ? rc : create_from_dir(out, &cfg, &score, NULL, dir, 0, NULL);
}

int leash_gpt_load_lora(leash_gpt **out, const char *dir, int rank, float alpha, float dropout, const char *targets,
                        uint64_t seed) {
    leash_gpt_config cfg;
    leash_score_stats score;
    int rc = load_config(dir, &cfg, &score);
    if (rc) return rc;
    leash_lora_config lora = {.rank = rank, .alpha = alpha, .dropout = dropout};
    if (!targets) targets = cfg.arch == LEASH_ARCH_LLAMA ? "q_proj,v_proj" : "c_attn";
    if ((rc = leash_lora_parse_targets(targets, cfg.arch, &lora.targets)) || (rc = leash_lora_config_check(&lora, cfg.arch)))
        return rc;
    return create_from_dir(out, &cfg, &score, &lora, dir, seed, NULL);
}

/* ---- PEFT LoRA directories --------------------------------------------------------------------- */

/* adapter_config.json keys: each is read, harmless, or must be off (absent, null, false, "", [] or {}); any
 * other key is an error naming it, since PEFT keeps adding variants (aLoRA, DoRA, QALoRA, ...) that change
 * what an adapter computes. */
static int check_peft_keys(const char *path, const cJSON *root) {
    static const char *const read[] = {"peft_type", "r", "lora_alpha", "lora_dropout", "target_modules",
                                       "base_model_name_or_path", "bias", "leash", "fan_in_fan_out", "init_lora_weights"};
    static const char *const harmless[] = {"auto_mapping", "inference_mode", "revision", "task_type", "peft_version",
                                           "megatron_core", "ensure_weight_tying", "qalora_group_size"};
    static const char *const off[] = {
        "use_rslora", "use_dora", "modules_to_save", "layers_to_transform", "layers_pattern", "rank_pattern",
        "alpha_pattern", "alora_invocation_tokens", "layer_replication", "target_parameters", "trainable_token_indices",
        "lora_bias", "use_qalora", "use_bdlora", "arrow_config", "exclude_modules", "megatron_config", "eva_config",
        "corda_config", "loftq_config", "lora_ga_config", "kasa_config", "monteclora_config", "velora_config"};
    for (const cJSON *it = root->child; it; it = it->next) {
        int known = 0;
        for (size_t i = 0; i < sizeof read / sizeof *read && !known; i++) known = !strcmp(it->string, read[i]);
        for (size_t i = 0; i < sizeof harmless / sizeof *harmless && !known; i++) known = !strcmp(it->string, harmless[i]);
        if (known) continue;
        int is_off = 0;
        for (size_t i = 0; i < sizeof off / sizeof *off && !is_off; i++) is_off = !strcmp(it->string, off[i]);
        int unset = cJSON_IsNull(it) || cJSON_IsFalse(it) || ((cJSON_IsObject(it) || cJSON_IsArray(it)) && !it->child) ||
                    (cJSON_IsString(it) && !it->valuestring[0]);
        if (is_off && unset) continue;
        return leash_fail(LEASH_EFORMAT, is_off ? "%s: \"%s\" is set; leash loads plain LoRA adapters only"
                                                : "%s: key \"%s\" is not understood by leash and may change what the adapter "
                                                  "computes, so the file is refused rather than read wrong",
                          path, it->string);
    }
    // initialisations that rewrite the base weights (PiSSA, OLoRA, LoftQ, ...) leave adapters for another base
    const cJSON *init = cJSON_GetObjectItemCaseSensitive(root, "init_lora_weights");
    if (init && !cJSON_IsBool(init) && !cJSON_IsNull(init) &&
        !(cJSON_IsString(init) && (!strcmp(init->valuestring, "gaussian") || !strcmp(init->valuestring, "default"))))
        return leash_fail(LEASH_EFORMAT, "%s: \"init_lora_weights\" is %s; that initialisation changes the base model, "
                                         "which leash cannot reproduce",
                          path, cJSON_IsString(init) ? init->valuestring : "not a boolean or name");
    return LEASH_OK;
}

static int load_peft(leash_gpt **out, const char *dir) {
    char path[4096], base[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *text;
    int rc = leash_read_file(path, 1 << 20, &text, NULL);
    if (rc) return rc;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return leash_fail(LEASH_EFORMAT, "%s: not a JSON object", path);
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r"), *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(root, "lora_dropout");
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    const cJSON *bpath = cJSON_GetObjectItemCaseSensitive(root, "base_model_name_or_path");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias"), *lh = cJSON_GetObjectItemCaseSensitive(root, "leash");
    const cJSON *fan = cJSON_GetObjectItemCaseSensitive(root, "fan_in_fan_out");
    const char **names = NULL;
    int n_names = 0;
    rc = check_peft_keys(path, root);
    if (!rc && (!cJSON_IsString(type) || strcmp(type->valuestring, "LORA")))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"peft_type\" must be \"LORA\"", path);
    else if (!rc && (!cJSON_IsNumber(r) || !(r->valuedouble >= 1 && r->valuedouble <= 65536) ||
                     r->valuedouble != floor(r->valuedouble) || !cJSON_IsNumber(alpha)))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"r\" must be an integer >= 1 and \"lora_alpha\" a number", path);
    else if (!rc && (!cJSON_IsString(bpath) || !bpath->valuestring[0]))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"base_model_name_or_path\" must name the base model's directory", path);
    else if (!rc && bias && !cJSON_IsNull(bias) && (!cJSON_IsString(bias) || strcmp(bias->valuestring, "none")))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"bias\" must be \"none\" (leash's adapters train no biases)", path);
    // target_modules: "all-linear", a comma list, or a list of names or full module paths
    if (!rc && (cJSON_IsString(targets) || (cJSON_IsArray(targets) && cJSON_GetArraySize(targets) > 0)) &&
        !(names = malloc((cJSON_IsString(targets) ? 1 : cJSON_GetArraySize(targets)) * sizeof *names)))
        rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc && cJSON_IsString(targets)) names[n_names++] = targets->valuestring;
    else if (!rc && cJSON_IsArray(targets) && cJSON_GetArraySize(targets) > 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, targets) {
            if (!cJSON_IsString(it)) break;
            names[n_names++] = it->valuestring;
        }
        if (n_names != cJSON_GetArraySize(targets)) rc = leash_fail(LEASH_EFORMAT, "%s: \"target_modules\" must hold strings", path);
    } else if (!rc)
        rc = leash_fail(LEASH_EFORMAT, "%s: \"target_modules\" must be a list of module names", path);
    if (!rc) {
        if (bpath->valuestring[0] == '/') snprintf(base, sizeof base, "%s", bpath->valuestring);
        else snprintf(base, sizeof base, "%s/%s", dir, bpath->valuestring);
        struct stat sb;
        if (stat(base, &sb) != 0 || !(S_ISDIR(sb.st_mode) || leash_gguf_is_file(base)))
            rc = leash_fail(LEASH_EIO, "%s: base_model_name_or_path \"%s\" is not a directory or a GGUF file here; point "
                                       "it at the base model's local directory or file (leash downloads nothing)",
                            path, bpath->valuestring);
    }
    leash_gpt_config cfg;
    leash_score_stats score;
    leash_lora_config lora = {0};
    if (!rc) rc = load_config(base, &cfg, &score);
    if (!rc) {
        lora.rank = (int)r->valuedouble;
        lora.alpha = leash_config_float(alpha->valuedouble);
        lora.dropout = cJSON_IsNumber(drop) ? leash_config_float(drop->valuedouble) : 0.0f;
        if (n_names == 1 && cJSON_IsString(targets)) rc = leash_lora_parse_targets(names[0], cfg.arch, &lora.targets);
        else rc = leash_lora_parse_modules(names, n_names, cfg.arch, cfg.n_layer, &lora.targets);
        if (!rc) rc = leash_lora_config_check(&lora, cfg.arch);
        if (rc) rc = leash_fail_wrap(rc, "%s", path);
        // Linear weights are (out, in); fan_in_fan_out says they are stored transposed, which only GPT-2's
        // Conv1D is (PEFT sets it for Conv1D by itself)
        if (!rc && cJSON_IsTrue(fan) && cfg.arch != LEASH_ARCH_GPT2)
            rc = leash_fail(LEASH_EFORMAT, "%s: \"fan_in_fan_out\" is true, but this model's projections are Linear "
                                           "(out, in) layers",
                            path);
        // a value or reward model: the head travels with the adapters (save_peft writes the keys only then)
        if (!rc && lh) rc = leash_config_read_own_keys(path, lh, &cfg, &score);
    }
    cJSON_Delete(root);
    free(names);
    leash_gpt *m = NULL;
    char *seen = NULL;
    if (!rc) rc = create_from_dir(&m, &cfg, &score, &lora, base, 0, &seen);
    if (rc) return rc;
    // the adapter file's trainable tensors (the adapters, a head) replace what the base held (a reward model as
    // the base: its head was the trained one's starting point); a head the file lacks stays the base's, as PEFT
    // keeps a module it did not save
    int first = leash_gpt_first_trainable(m), n = leash_gpt_num_tensors(m);
    char *from_base = malloc((size_t)(n - first) + 1);
    if (!from_base) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    else {
        memcpy(from_base, seen + first, (size_t)(n - first));
        memset(seen + first, 0, (size_t)(n - first));
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!rc && !(rc = load_file(m, path, seen))) {
        for (int k = first; k < n; k++) seen[k] |= from_base[k - first];
        rc = check_all_seen(m, seen, first, n, path);
    }
    free(from_base), free(seen);
    if (rc) {
        leash_gpt_free(m);
        return rc;
    }
    *out = m;
    return LEASH_OK;
}

static int save_peft(const leash_gpt *m, const char *dir) {
    const leash_gpt_config *c = leash_gpt_cfg(m);
    const leash_lora_config *lora = leash_gpt_lora(m);
    if (!m->source_dir)
        return leash_fail(LEASH_EINVAL, "%s: a LoRA model saves only its adapters, with the path of its base model, and this "
                                        "one's base was not loaded from a directory",
                          dir);
    int first = leash_gpt_first_trainable(m), n = leash_gpt_num_tensors(m) - first;
    leash_st_tensor *t = calloc(n, sizeof *t);
    if (!t) return leash_fail(LEASH_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const leash_tensor_info *info = leash_gpt_tensor(m, first + i);
        t[i] = (leash_st_tensor){info->name, m->params + info->offset, info->ndim, {info->shape[0], info->shape[1]}};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    int rc = leash_st_save(path, t, n, "{\"format\":\"pt\"}");
    free(t);
    if (rc) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(o, "base_model_name_or_path", m->source_dir);
    cJSON_AddNumberToObject(o, "r", lora->rank);
    cJSON_AddNumberToObject(o, "lora_alpha", lora->alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", lora->dropout);
    const char *names[LEASH_LORA_SLOTS];
    int k = leash_lora_target_names(c->arch, lora->targets, names, LEASH_LORA_SLOTS);
    cJSON_AddItemToObject(o, "target_modules", cJSON_CreateStringArray(names, k));
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddBoolToObject(o, "fan_in_fan_out", c->arch == LEASH_ARCH_GPT2); // GPT-2's Conv1D layout
    cJSON_AddBoolToObject(o, "inference_mode", 1);
    cJSON_AddBoolToObject(o, "init_lora_weights", 1);
    cJSON_AddBoolToObject(o, "use_rslora", 0);
    cJSON_AddBoolToObject(o, "use_dora", 0);
    cJSON_AddNullToObject(o, "modules_to_save");
    // PEFT refuses keys it does not know: leash's own go in only for a scalar head (a value model in an RL
    // checkpoint, which PEFT has no use for)
    if (c->scalar_head) leash_config_add_own_keys(o, c, &m->score);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    return leash_json_save(path, o);
}

int leash_gpt_save(const leash_gpt *m, const char *dir) {
    int rc = leash_mkdir(dir);
    if (rc) return rc;
    if (leash_gpt_lora(m)) return save_peft(m, dir);
    if (m->bf16)
        return leash_fail(LEASH_EINVAL, "%s: this model keeps its layers in BF16 (a reference): it is not saved; save the "
                                        "F32 model it was loaded as",
                          dir);
    int n = leash_gpt_num_tensors(m);
    leash_st_tensor *t = calloc(n, sizeof *t);
    if (!t) return leash_fail(LEASH_ENOMEM, "out of memory");
    const float *params = leash_gpt_params((leash_gpt *)m);
    for (int i = 0; i < n; i++) {
        const leash_tensor_info *info = leash_gpt_tensor(m, i);
        t[i].name = info->name;
        t[i].data = params + info->offset;
        t[i].ndim = info->ndim;
        t[i].shape[0] = info->shape[0];
        t[i].shape[1] = info->shape[1];
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rc = leash_st_save(path, t, n, "{\"format\":\"pt\"}");
    free(t);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/config.json", dir);
    return leash_config_save(path, leash_gpt_cfg(m), &m->score);
}
