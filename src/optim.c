/* AdamW and the learning-rate schedule: see include/leash/optim.h. */
#include "leash/optim.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/safetensors.h"

leash_adamw_config leash_adamw_defaults(void) {
    return (leash_adamw_config){.lr = 3e-4f, .min_lr_ratio = 0.1f, .warmup_steps = 0, .total_steps = 0, .beta1 = 0.9f,
                                .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_clip = 1.0f};
}

int leash_adamw_config_check(const leash_adamw_config *c) {
    if (!(c->lr > 0.0f) || !isfinite(c->lr)) return leash_fail(LEASH_EINVAL, "learning rate = %g; it must be > 0", (double)c->lr);
    if (!(c->min_lr_ratio >= 0.0f && c->min_lr_ratio <= 1.0f))
        return leash_fail(LEASH_EINVAL, "min_lr_ratio = %g; it must be in [0, 1]", (double)c->min_lr_ratio);
    if (c->warmup_steps < 0 || c->total_steps < 0)
        return leash_fail(LEASH_EINVAL, "warmup_steps = %d, total_steps = %d; both must be >= 0", c->warmup_steps,
                          c->total_steps);
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return leash_fail(LEASH_EINVAL, "Adam betas (%g, %g); each must be in [0, 1)", (double)c->beta1, (double)c->beta2);
    if (!(c->eps > 0.0f)) return leash_fail(LEASH_EINVAL, "Adam eps = %g; it must be > 0", (double)c->eps);
    if (!(c->weight_decay >= 0.0f)) return leash_fail(LEASH_EINVAL, "weight decay = %g; it must be >= 0", (double)c->weight_decay);
    if (!(c->grad_clip >= 0.0f)) return leash_fail(LEASH_EINVAL, "grad clip = %g; it must be >= 0 (0: off)", (double)c->grad_clip);
    return LEASH_OK;
}

int leash_adamw_create(leash_adamw *opt, const leash_adamw_config *cfg, size_t n) {
    int rc = leash_adamw_config_check(cfg);
    if (rc) return rc;
    memset(opt, 0, sizeof *opt);
    opt->cfg = *cfg;
    opt->n = n;
    opt->m = calloc(n ? n : 1, sizeof(float));
    opt->v = calloc(n ? n : 1, sizeof(float));
    if (!opt->m || !opt->v) {
        leash_adamw_free(opt);
        return leash_fail(LEASH_ENOMEM, "cannot allocate AdamW state for %zu parameters", n);
    }
    return LEASH_OK;
}

void leash_adamw_free(leash_adamw *opt) {
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

double leash_lr_at(const leash_adamw_config *c, long step) {
    if (step < c->warmup_steps) return c->lr * (double)(step + 1) / c->warmup_steps;
    if (c->total_steps <= c->warmup_steps) return c->lr;
    double ratio = (double)(step - c->warmup_steps) / (c->total_steps - c->warmup_steps);
    if (ratio > 1.0) ratio = 1.0;
    double lo = c->lr * (double)c->min_lr_ratio;
    return lo + 0.5 * (1.0 + cos(3.14159265358979323846 * ratio)) * (c->lr - lo);
}

int leash_adamw_step(leash_adamw *opt, leash_gpt *m, double *grad_norm, double *lr_out) {
    // the trainable run of tensors only (all of them, or LoRA's adapters): offsets below are relative to it
    size_t n = leash_gpt_num_trainable(m);
    if (n != opt->n) return leash_fail(LEASH_EINVAL, "optimizer holds %zu parameters, the model trains %zu", opt->n, n);
    if (leash_gpt_is_frozen(m)) return leash_fail(LEASH_EINVAL, "AdamW step on a frozen model (a reference): it never trains");
    float *p = leash_gpt_trainable(m);
    const float *g = leash_gpt_grads(m);
    int first = leash_gpt_first_trainable(m);
    size_t base = leash_gpt_tensor(m, first)->offset;
    double ss = 0.0;
#pragma omp parallel for reduction(+ : ss) schedule(static)
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    double norm = sqrt(ss);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) {
        // name the first tensor with a bad gradient, so the user knows where to look
        for (int t = first; t < leash_gpt_num_tensors(m); t++) {
            const leash_tensor_info *ti = leash_gpt_tensor(m, t);
            for (size_t k = 0; k < ti->numel; k++)
                if (!isfinite(g[ti->offset - base + k]))
                    return leash_fail(LEASH_ENUMERIC, "gradient of %s[%zu] = %g at update %ld; the weights were not "
                                                      "changed (lower the learning rate, or look for a NaN in the loss)",
                                      ti->name, k, (double)g[ti->offset - base + k], opt->step + 1);
        }
        return leash_fail(LEASH_ENUMERIC, "gradient norm overflows at update %ld; the weights were not changed", opt->step + 1);
    }
    const leash_adamw_config *c = &opt->cfg;
    double lr = leash_lr_at(c, opt->step);
    float scale = c->grad_clip > 0.0f && norm > c->grad_clip ? (float)(c->grad_clip / norm) : 1.0f;
    long t = ++opt->step;
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    for (int k = first; k < leash_gpt_num_tensors(m); k++) {
        const leash_tensor_info *ti = leash_gpt_tensor(m, k);
        float wd = ti->decay ? c->weight_decay : 0.0f;
#pragma omp parallel for schedule(static)
        for (size_t i = ti->offset - base; i < ti->offset - base + ti->numel; i++) {
            float gi = g[i] * scale;
            opt->m[i] = c->beta1 * opt->m[i] + (1.0f - c->beta1) * gi;
            opt->v[i] = c->beta2 * opt->v[i] + (1.0f - c->beta2) * gi * gi;
            double mhat = opt->m[i] / bc1, vhat = opt->v[i] / bc2;
            p[i] -= (float)(lr * (mhat / (sqrt(vhat) + c->eps) + wd * p[i]));
        }
    }
    if (lr_out) *lr_out = lr;
    return LEASH_OK;
}

int leash_adamw_save(const leash_adamw *opt, const char *path) {
    char md[128];
    snprintf(md, sizeof md, "{\"step\":\"%ld\",\"format\":\"leash-adamw\"}", opt->step);
    leash_st_tensor t[2] = {{"adamw.m", opt->m, 1, {(int64_t)opt->n}}, {"adamw.v", opt->v, 1, {(int64_t)opt->n}}};
    return leash_st_save(path, t, 2, md);
}

int leash_adamw_load(leash_adamw *opt, const char *path) {
    leash_st_file st;
    int rc = leash_st_open(&st, path);
    if (rc) return rc;
    const leash_st_entry *m = leash_st_find(&st, "adamw.m"), *v = leash_st_find(&st, "adamw.v");
    cJSON *md = st.metadata_json ? cJSON_Parse(st.metadata_json) : NULL;
    const cJSON *step = md ? cJSON_GetObjectItemCaseSensitive(md, "step") : NULL;
    char *end = NULL;
    long s = cJSON_IsString(step) ? strtol(step->valuestring, &end, 10) : -1;
    if (!m || !v || m->numel != opt->n || v->numel != opt->n)
        rc = leash_fail(LEASH_EFORMAT, "%s: expected tensors adamw.m and adamw.v of %zu floats (a checkpoint of another "
                                       "model?)",
                        path, opt->n);
    else if (s < 0 || !end || *end)
        rc = leash_fail(LEASH_EFORMAT, "%s: metadata \"step\" is missing or not a non-negative integer", path);
    if (!rc) rc = leash_st_read_f32(&st, m, opt->m);
    if (!rc) rc = leash_st_read_f32(&st, v, opt->v);
    for (size_t i = 0; !rc && i < opt->n; i++) // moments must be finite, the second one >= 0
        if (!isfinite(opt->m[i]) || !isfinite(opt->v[i]) || opt->v[i] < 0)
            rc = leash_fail(LEASH_EFORMAT, "%s: moment %zu is (m %g, v %g): the file is damaged", path, i, (double)opt->m[i],
                            (double)opt->v[i]);
    if (!rc) opt->step = s;
    cJSON_Delete(md);
    leash_st_close(&st);
    return rc;
}
