/* Reference refresh (docs/rl.md, "Reference refresh"; TR-DPO, TRL's sync_ref_model): after every N-th step the
 * reference moves to the policy, ref <- alpha policy + (1 - alpha) ref, so that the leash holds the policy near
 * where it has been lately instead of near the SFT model. With LoRA the reference is the base under the adapters:
 * alpha 1 only, the adapters merged into the base and B zeroed. A refreshed reference is not the SFT model any
 * more, so checkpoints keep it (reference.safetensors) and --resume restores it. See src/rl_internal.h. */
#include <string.h>

#include "leash/error.h"
#include "leash/safetensors.h"
#include "rl_internal.h"

int ref_sync_check(const leash_rl_config *c) {
    if (c->ref_sync_every < 0 || !(c->ref_sync_alpha > 0.0f && c->ref_sync_alpha <= 1.0f))
        return leash_fail(LEASH_EINVAL, "--ref-sync-every %d, --ref-sync-alpha %g: every >= 0 steps (0: never), alpha in (0, 1]",
                          c->ref_sync_every, (double)c->ref_sync_alpha);
    if (c->ref_sync_every && c->frozen_bf16)
        return leash_fail(LEASH_EINVAL, "--ref-sync-every with --frozen-bf16: a reference (or LoRA base) stored in BF16 cannot "
                                        "take the policy's weights; leave one of them out");
    return LEASH_OK;
}

int ref_sync_ready(const rl_run *s, const leash_rl_config *c) {
    if (!c->ref_sync_every) return LEASH_OK;
    const leash_gpt_config *p = leash_gpt_cfg(s->policy);
    if (leash_gpt_lora(s->policy) && s->ref)
        return leash_fail(LEASH_EINVAL, "--ref-sync-every with LoRA and --ref %s: a separate reference cannot take a LoRA "
                                        "policy's weights; leave --ref out (the base under the adapters is then the "
                                        "reference, refreshed by merging them)",
                          c->ref_dir);
    if (leash_gpt_lora(s->policy) && c->ref_sync_alpha != 1.0f)
        return leash_fail(LEASH_EINVAL, "--ref-sync-alpha %g with LoRA: the reference is the base under the adapters, which "
                                        "can only take the whole policy (alpha 1: the adapters merged into the base, then "
                                        "fresh ones from B = 0); give --ref-sync-alpha 1, or train without LoRA for a "
                                        "Polyak mix",
                          (double)c->ref_sync_alpha);
    if (s->ref && (leash_gpt_num_params(s->ref) != leash_gpt_num_params(s->policy) ||
                   leash_gpt_cfg(s->ref)->arch != p->arch))
        return leash_fail(LEASH_EINVAL, "--ref-sync-every: the reference %s has %zu weights, the policy %zu: only a reference "
                                        "of the policy's own shape can be mixed with it",
                          c->ref_dir ? c->ref_dir : c->policy_dir, leash_gpt_num_params(s->ref), leash_gpt_num_params(s->policy));
    return LEASH_OK;
}

leash_gpt *ref_sync_holder(rl_run *s, const leash_rl_config *c, int steps_done) {
    if (!c->ref_sync_every || steps_done < c->ref_sync_every) return NULL;
    return s->ref ? s->ref : s->policy;
}

int ref_sync_step(rl_run *s, const leash_rl_config *c) {
    if (!s->ref) return leash_gpt_merge_lora_into_base(s->policy);
    float *r = leash_gpt_params(s->ref);
    const float *p = leash_gpt_params(s->policy);
    size_t n = leash_gpt_num_params(s->ref);
    double a = c->ref_sync_alpha;
    if (a == 1.0) memcpy(r, p, n * sizeof *r);
    else
        for (size_t i = 0; i < n; i++) r[i] = (float)(a * p[i] + (1.0 - a) * r[i]);
    return LEASH_OK;
}

void ref_sync_metrics(leash_metrics *t, const leash_rl_config *c, int step) {
    if (c->ref_sync_every) leash_metrics_int(t, "ref/syncs", step / c->ref_sync_every);
}

int ref_sync_save(leash_gpt *holder, const char *dir) {
    char path[4400];
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    leash_st_tensor t = {"reference.params", leash_gpt_params(holder), 1, {(int64_t)leash_gpt_num_params(holder)}};
    return leash_st_save(path, &t, 1, "{\"format\":\"leash-reference\"}");
}

int ref_sync_load(leash_gpt *holder, const char *dir) {
    char path[4400];
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    leash_st_file st;
    int rc = leash_st_open(&st, path);
    if (rc) return leash_fail_wrap(rc, "the refreshed reference (--ref-sync-every) of this checkpoint");
    const leash_st_entry *e = leash_st_find(&st, "reference.params");
    if (!e || e->numel != leash_gpt_num_params(holder))
        rc = leash_fail(LEASH_EFORMAT, "%s: expected the tensor reference.params of %zu floats (a checkpoint of another model?)",
                        path, leash_gpt_num_params(holder));
    if (!rc) rc = leash_st_read_f32(&st, e, leash_gpt_params(holder));
    leash_st_close(&st);
    return rc;
}
