/* Loading and saving a model as a Hugging Face-style directory: see include/leash/gpt.h. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/config.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/safetensors.h"

/* Tensors a checkpoint may carry that are not parameters: a tied LM head, GPT-2's attention buffers and
 * old Llama checkpoints' rotary frequency buffers. */
static int ignorable(const leash_gpt *m, const char *name) {
    size_t n = strlen(name);
    return (strcmp(name, "lm_head.weight") == 0 && !leash_gpt_cfg(m)->untied_head) ||
           (n > 9 && strcmp(name + n - 9, ".attn.bias") == 0) || (n > 16 && strcmp(name + n - 16, ".attn.masked_bias") == 0) ||
           (n > 22 && strcmp(name + n - 22, ".rotary_emb.inv_freq") == 0);
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

int leash_gpt_load(leash_gpt **out, const char *dir) {
    char path[4096];
    leash_gpt_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = leash_config_load(path, &cfg);
    if (rc) return rc;
    leash_gpt *m;
    if ((rc = leash_gpt_create(&m, &cfg))) return leash_fail_wrap(rc, "%s", path);
    int n = leash_gpt_num_tensors(m);
    char *seen = calloc(n, 1);
    if (!seen) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    char index[4096];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    if (!rc && access(path, F_OK) != 0 && access(index, F_OK) == 0) { // sharded: every file the index names
        char **files = NULL;
        if (!(rc = read_index(index, &files))) {
            for (int i = 0; files[i]; i++) {
                snprintf(path, sizeof path, "%s/%s", dir, files[i]);
                if (!rc) rc = load_file(m, path, seen);
                free(files[i]);
            }
            free(files);
        }
        snprintf(path, sizeof path, "%s", index);
    } else if (!rc) {
        rc = load_file(m, path, seen);
    }
    for (int k = 0; k < n && !rc; k++)
        if (!seen[k]) rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s' is missing", path, leash_gpt_tensor(m, k)->name);
    // (for a sharded model, path is the index: no shard it names holds the tensor)
    free(seen);
    if (rc) {
        leash_gpt_free(m);
        return rc;
    }
    *out = m;
    return LEASH_OK;
}

int leash_gpt_save(const leash_gpt *m, const char *dir) {
    int rc = leash_mkdir(dir);
    if (rc) return rc;
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
    return leash_config_save(path, leash_gpt_cfg(m));
}
