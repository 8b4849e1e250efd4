/* Loading and saving a GPT-2 as a Hugging Face-style directory: see include/leash/gpt.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/config.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/safetensors.h"

/* Tensors a GPT-2 checkpoint may carry that are not parameters: the tied LM head and attention buffers. */
static int ignorable(const char *name) {
    size_t n = strlen(name);
    return strcmp(name, "lm_head.weight") == 0 || (n > 9 && strcmp(name + n - 9, ".attn.bias") == 0) ||
           (n > 16 && strcmp(name + n - 16, ".attn.masked_bias") == 0);
}

static const char *strip_prefix(const char *name) {
    return strncmp(name, "transformer.", 12) == 0 ? name + 12 : name;
}

int leash_gpt_load(leash_gpt **out, const char *dir) {
    char path[4096];
    leash_gpt_config cfg;
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = leash_config_load(path, &cfg);
    if (rc) return rc;
    leash_gpt *m;
    if ((rc = leash_gpt_create(&m, &cfg))) return leash_fail_wrap(rc, "%s", path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    leash_st_file st;
    if ((rc = leash_st_open(&st, path))) {
        leash_gpt_free(m);
        return rc;
    }
    int n = leash_gpt_num_tensors(m);
    char *seen = calloc(n, 1);
    if (!seen) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int i = 0; i < st.n && !rc; i++) {
        const leash_st_entry *e = &st.entries[i];
        const char *name = strip_prefix(e->name);
        int k = 0;
        while (k < n && strcmp(leash_gpt_tensor(m, k)->name, name) != 0) k++;
        if (k == n) {
            if (ignorable(name)) continue;
            rc = leash_fail(LEASH_EFORMAT, "%s: unexpected tensor '%s' for a GPT-2 with this config.json%s", path, e->name,
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
            rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s' appears twice (with and without the transformer. prefix?)",
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
    for (int k = 0; k < n && !rc; k++)
        if (!seen[k]) rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s' is missing", path, leash_gpt_tensor(m, k)->name);
    free(seen);
    leash_st_close(&st);
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
