/* Checkpoints of an RL run (PPO, GRPO), and resuming one exactly. See src/rl_internal.h.
 *
 * OUT/checkpoint/ holds everything a step depends on that is not a function of (seed, step): the policy and
 * value weights, both AdamW states, and state.json (steps done, the beta controller, the KL watch, the
 * reward-hacking alarm and its history, and the settings that must not change on resume). The rollouts of
 * step k come from random streams seeded by (seed, k), so nothing else is needed for a resumed run to be
 * bit-identical to an uninterrupted one.
 *
 * The set is replaced atomically as a whole (include/leash/checkpoint.h).
 */
#define _DEFAULT_SOURCE // realpath
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/checkpoint.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "rl_internal.h"

/* The options that define a run, in one place: a resumed run must share every one of them with the run that
 * wrote the checkpoint, and a difference is refused naming the option. Options safe to change are not here:
 * --steps (it may grow), --save-every, --sample-every, --quiet, --skip-nonfinite, --reward-timeout, --out.
 * Paths are compared as real paths where they exist. The first eight keys are in every checkpoint; the others
 * came later and a checkpoint without them (written by an older leash) cannot be checked on them. */
#define OLD_KEYS 8

static void add_path(cJSON *o, const char *key, const char *path) {
    char real[4096];
    if (!path) cJSON_AddNullToObject(o, key);
    else cJSON_AddStringToObject(o, key, realpath(path, real) ? real : path);
}

static void add_settings(cJSON *o, const leash_rl_config *c) {
    cJSON_AddStringToObject(o, "algo", c->algo == LEASH_PPO ? "ppo" : "grpo");
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddNumberToObject(o, "batch", c->batch);
    cJSON_AddNumberToObject(o, "group", c->algo == LEASH_GRPO ? c->grpo.group : 1);
    cJSON_AddNumberToObject(o, "max_new", c->max_new);
    cJSON_AddNumberToObject(o, "minibatch", c->minibatch);
    cJSON_AddNumberToObject(o, "epochs", c->epochs);
    cJSON_AddNumberToObject(o, "temperature", c->temperature);
    // OLD_KEYS end here
    add_path(o, "policy", c->policy_dir);
    add_path(o, "ref", c->ref_dir);
    char real[4096], text[8192];
    if (c->chat_template && c->prompts) { // recorded with the prompts: a run without it records what it always did
        snprintf(text, sizeof text, "%s (--chat-template)", realpath(c->prompts, real) ? real : c->prompts);
        cJSON_AddStringToObject(o, "prompts", text);
    } else add_path(o, "prompts", c->prompts);
    const leash_reward_source *w = &c->reward;
    add_path(o, "reward", w->kind == LEASH_REWARD_MODEL ? w->dir : NULL);
    if (w->kind == LEASH_REWARD_COMMAND) scorers_describe(w, text, sizeof text); // several: with labels and weights
    cJSON_AddStringToObject(o, "reward_cmd", w->kind == LEASH_REWARD_COMMAND ? text : "");
    cJSON_AddBoolToObject(o, "gold_reward", w->kind == LEASH_REWARD_GOLD);
    cJSON_AddBoolToObject(o, "reward_fn", w->kind == LEASH_REWARD_FUNCTION || w->kind == LEASH_REWARD_BATCH);
    cJSON_AddBoolToObject(o, "gold_metrics", c->gold_metrics != 0);
    cJSON_AddStringToObject(o, "kl_estimator", leash_kl_estimator_name(c->kl_estimator));
    cJSON_AddNumberToObject(o, "beta_init", c->beta.beta);
    cJSON_AddNumberToObject(o, "kl_target", c->beta.kind == LEASH_BETA_ADAPTIVE ? c->beta.target : 0);
    cJSON_AddNumberToObject(o, "kl_horizon", c->beta.kind == LEASH_BETA_ADAPTIVE ? c->beta.horizon : 0);
    cJSON_AddBoolToObject(o, "normalize_scores", c->normalize_scores != 0);
    cJSON_AddNumberToObject(o, "score_clip", c->score_clip);
    cJSON_AddNumberToObject(o, "no_eos_penalty", c->no_eos_penalty);
    cJSON_AddNumberToObject(o, "length_penalty", c->length_penalty);
    cJSON_AddBoolToObject(o, "whiten_rewards", c->ppo.whiten_rewards != 0);
    cJSON_AddNumberToObject(o, "lr", c->optim.lr);
    cJSON_AddNumberToObject(o, "value_lr", c->ppo.value_optim.lr);
    cJSON_AddNumberToObject(o, "grad_clip", c->optim.grad_clip);
    cJSON_AddNumberToObject(o, "weight_decay", c->optim.weight_decay);
    cJSON_AddNumberToObject(o, "warmup", c->optim.warmup_steps);
    cJSON_AddNumberToObject(o, "clip", c->clip_eps);
    cJSON_AddNumberToObject(o, "value_clip", c->ppo.value_clip);
    cJSON_AddNumberToObject(o, "vf_coef", c->ppo.vf_coef);
    cJSON_AddNumberToObject(o, "gamma", c->ppo.gamma);
    cJSON_AddNumberToObject(o, "lambda", c->ppo.lam);
    cJSON_AddBoolToObject(o, "std_scaling", c->grpo.scale_rewards != LEASH_SCALE_NONE);
    cJSON_AddBoolToObject(o, "token_level_loss", c->grpo.loss == LEASH_LOSS_BNPO);
    cJSON_AddNumberToObject(o, "lora_r", c->lora_rank);
    cJSON_AddNumberToObject(o, "lora_alpha", c->lora_alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", c->lora_dropout);
    cJSON_AddStringToObject(o, "lora_targets", c->lora_targets ? c->lora_targets : "");
    cJSON_AddBoolToObject(o, "frozen_bf16", c->frozen_bf16 != 0);
    cJSON_AddNumberToObject(o, "top_k", c->top_k);
    cJSON_AddNumberToObject(o, "top_p", c->top_p);
    cJSON_AddNumberToObject(o, "tis_cap", c->tis_cap);
    cJSON_AddStringToObject(o, "tis_mode", leash_tis_mode_name(c->tis_mode));
    cJSON_AddNumberToObject(o, "ref_sync_every", c->ref_sync_every);
    cJSON_AddNumberToObject(o, "ref_sync_alpha", c->ref_sync_every ? c->ref_sync_alpha : 0);
    if (c->algo == LEASH_GRPO) { // the GRPO family's choices (TRL's names); PPO's checkpoints do not carry them
        const char *const choices[] = {"baseline", "loss", "scale_rewards", "importance_sampling_level"};
        for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++)
            cJSON_AddStringToObject(o, choices[i], leash_grpo_choice_name(&c->grpo, choices[i]));
        cJSON_AddNumberToObject(o, "epsilon_high", c->grpo.epsilon_high);
        cJSON_AddBoolToObject(o, "mask_truncated_completions", c->grpo.mask_truncated != 0);
        cJSON_AddNumberToObject(o, "entropy_coef", c->grpo.entropy_coef);
    }
}

/* The command-line option of a settings key: "kl_target" -> "--kl-target". */
static void option_name(const char *key, char *out, size_t n) {
    static const char *const special[][2] = {{"algo", "the algorithm (ppo or grpo)"}, {"reward", "--reward"},
                                             {"gold_reward", "--gold-reward"}, {"reward_fn", "the reward function"},
                                             {"beta_init", "--beta"}, {"std_scaling", "--no-std-scaling"},
                                             {"clip", "--clip"}};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (!strcmp(key, special[i][0])) {
            snprintf(out, n, "%s", special[i][1]);
            return;
        }
    size_t k = snprintf(out, n, "--");
    for (; *key && k + 1 < n; key++) out[k++] = *key == '_' ? '-' : *key;
    out[k] = 0;
}

int rl_checkpoint_save(const char *out_dir, const leash_rl_config *c, const leash_gpt *policy, const leash_gpt *value,
                       const leash_adamw *popt, const leash_adamw *vopt, const rl_state *st) {
    char dir[4200], path[4300];
    int rc = leash_checkpoint_begin(out_dir, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/policy", dir);
    if (!rc) rc = leash_gpt_save(policy, path);
    snprintf(path, sizeof path, "%s/policy_optimizer.safetensors", dir);
    if (!rc) rc = leash_adamw_save(popt, path);
    if (!rc && value) {
        snprintf(path, sizeof path, "%s/value", dir);
        if (!(rc = leash_gpt_save(value, path))) {
            snprintf(path, sizeof path, "%s/value_optimizer.safetensors", dir);
            rc = leash_adamw_save(vopt, path);
        }
    }
    if (!rc && st->ref_model) rc = ref_sync_save(st->ref_model, dir); // a refreshed reference is not the SFT model
    if (rc) return leash_fail_wrap(rc, "writing the checkpoint of step %d (the previous one is intact)", st->step);
    cJSON *o = cJSON_CreateObject(), *b = cJSON_CreateObject(), *w = cJSON_CreateObject(), *h = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "step", st->step);
    add_settings(o, c);
    cJSON_AddNumberToObject(b, "kind", st->beta.kind);
    cJSON_AddNumberToObject(b, "beta", st->beta.beta);
    cJSON_AddNumberToObject(b, "target", st->beta.target);
    cJSON_AddNumberToObject(b, "horizon", st->beta.horizon);
    cJSON_AddNumberToObject(b, "error", st->beta.error);
    cJSON_AddNumberToObject(b, "units", st->beta.units);
    cJSON_AddItemToObject(o, "beta", b);
    cJSON_AddNumberToObject(w, "low", st->watch.low);
    cJSON_AddNumberToObject(w, "high", st->watch.high);
    cJSON_AddNumberToObject(w, "steps", (double)st->watch.steps);
    cJSON_AddNumberToObject(w, "running", st->watch.running);
    cJSON_AddItemToObject(w, "last", cJSON_CreateDoubleArray(st->watch.last, LEASH_KLWATCH_WINDOW));
    cJSON_AddItemToObject(w, "var", cJSON_CreateDoubleArray(st->watch.var, LEASH_KLWATCH_WINDOW));
    cJSON_AddItemToObject(o, "kl_watch", w);
    cJSON_AddNumberToObject(o, "alarm", st->alarm);
    cJSON_AddNumberToObject(o, "skipped", (double)st->skipped);
    if (!isnan(st->num_tokens)) cJSON_AddNumberToObject(o, "num_tokens", st->num_tokens);
    for (int i = 0; i < 4 * st->step; i++) // NaN (no gold metrics) is written as null
        cJSON_AddItemToArray(h, isnan(st->hist[i]) ? cJSON_CreateNull() : cJSON_CreateNumber(st->hist[i]));
    cJSON_AddItemToObject(o, "history", h); // proxy, gold, grammatical, reference NLL per step
    char *text = cJSON_Print(o); // doubles are printed so that they read back exactly
    cJSON_Delete(o);
    snprintf(path, sizeof path, "%s/state.json", dir);
    rc = text ? leash_write_file_atomic(path, text, strlen(text)) : leash_fail(LEASH_ENOMEM, "out of memory");
    free(text);
    if (rc) return leash_fail_wrap(rc, "writing the checkpoint of step %d (the previous one is intact)", st->step);
    return leash_checkpoint_commit(out_dir);
}

static int get_number(const cJSON *o, const char *key, const char *path, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return leash_fail(LEASH_EFORMAT, "%s: \"%s\" is missing or not a number", path, key);
    *out = v->valuedouble;
    return LEASH_OK;
}

/* Loads weights from dir into an existing model of the same shape. */
static int load_into(leash_gpt *m, const char *dir) {
    leash_gpt *tmp;
    int rc = leash_gpt_load(&tmp, dir);
    if (rc) return rc;
    // only what trains changed since the start (every weight, or LoRA's adapters; a frozen base may be in BF16)
    if (leash_gpt_num_params(tmp) != leash_gpt_num_params(m) || leash_gpt_num_trainable(tmp) != leash_gpt_num_trainable(m))
        rc = leash_fail(LEASH_EFORMAT, "%s: %zu weights (%zu trained), the run's model has %zu (%zu): not this run's "
                                       "checkpoint",
                        dir, leash_gpt_num_params(tmp), leash_gpt_num_trainable(tmp), leash_gpt_num_params(m),
                        leash_gpt_num_trainable(m));
    else memcpy(leash_gpt_trainable(m), leash_gpt_trainable(tmp), leash_gpt_num_trainable(m) * sizeof(float));
    leash_gpt_free(tmp);
    return rc;
}

int rl_checkpoint_load(const char *out_dir, const leash_rl_config *c, leash_gpt *policy, leash_gpt *value,
                       leash_adamw *popt, leash_adamw *vopt, rl_state *st) {
    char cur[4200], path[4300];
    int rc = leash_checkpoint_find(out_dir, cur, sizeof cur);
    if (rc) return leash_fail_wrap(rc, "--resume");
    snprintf(path, sizeof path, "%s/state.json", cur);
    char *text = NULL;
    rc = leash_read_file(path, (size_t)1 << 28, &text, NULL);
    if (rc) return leash_fail_wrap(rc, "--resume");
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return leash_fail(LEASH_EFORMAT, "%s: not a JSON object; the checkpoint is damaged", path);
    }
    // the settings must be this run's
    cJSON *want = cJSON_CreateObject();
    add_settings(want, c);
    int k = 0;
    for (const cJSON *item = want->child; item && !rc; item = item->next, k++) {
        const cJSON *have = cJSON_GetObjectItemCaseSensitive(o, item->string);
        if (!have && k >= OLD_KEYS) continue; // an older checkpoint: not recorded
        if (!have || !cJSON_Compare(have, item, 1)) {
            char *a = have ? cJSON_PrintUnformatted(have) : NULL, *b = cJSON_PrintUnformatted(item), opt[64];
            option_name(item->string, opt, sizeof opt);
            rc = leash_fail(LEASH_EINVAL, "%s: the checkpoint was written with %s %s, this run asks for %s; an option that "
                                          "defines the run cannot change on --resume (only --steps, --save-every, "
                                          "--sample-every and logging may): resume with the same value, or start a new run",
                            path, opt, a ? a : "(missing)", b ? b : "?");
            free(a), free(b);
        }
    }
    cJSON_Delete(want);
    double x = 0;
    if (!rc && !(rc = get_number(o, "step", path, &x))) {
        // a checkpoint is written after a step: a step below 1 (or not a whole number) is a damaged file
        if (!(x >= 1 && x <= 2147483647.0 && x == floor(x)))
            rc = leash_fail(LEASH_EFORMAT, "%s: \"step\" is %g; a checkpoint is written after step 1 or later, so the "
                                           "checkpoint is damaged: start again with --overwrite, or restore it",
                            path, x);
        else if ((st->step = (int)x) > c->steps)
            rc = leash_fail(LEASH_EINVAL, "%s: the checkpoint is at step %d; --steps %d must be at least that", path, st->step,
                            c->steps);
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "beta"), *w = cJSON_GetObjectItemCaseSensitive(o, "kl_watch");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "history"), *last = cJSON_GetObjectItemCaseSensitive(w, "last");
    const cJSON *var = cJSON_GetObjectItemCaseSensitive(w, "var");
    if (!rc && (!cJSON_IsObject(b) || !cJSON_IsObject(w) || !cJSON_IsArray(h) || cJSON_GetArraySize(h) != 4 * st->step ||
                !cJSON_IsArray(last) || cJSON_GetArraySize(last) != LEASH_KLWATCH_WINDOW || !cJSON_IsArray(var) ||
                cJSON_GetArraySize(var) != LEASH_KLWATCH_WINDOW))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"beta\", \"kl_watch\" or \"history\" is missing or misshapen", path);
    double kind = 0, units = 0, steps = 0, alarm = 0;
    if (!rc) rc = get_number(b, "kind", path, &kind);
    if (!rc) rc = get_number(b, "beta", path, &st->beta.beta);
    if (!rc) rc = get_number(b, "target", path, &st->beta.target);
    if (!rc) rc = get_number(b, "horizon", path, &st->beta.horizon);
    if (!rc) rc = get_number(b, "error", path, &st->beta.error);
    if (!rc) rc = get_number(b, "units", path, &units);
    if (!rc) rc = get_number(w, "low", path, &st->watch.low);
    if (!rc) rc = get_number(w, "high", path, &st->watch.high);
    if (!rc) rc = get_number(w, "steps", path, &steps);
    if (!rc) rc = get_number(w, "running", path, &st->watch.running);
    if (!rc) rc = get_number(o, "alarm", path, &alarm);
    double skipped = 0;
    if (!rc) rc = get_number(o, "skipped", path, &skipped);
    st->skipped = (long)skipped;
    // num_tokens: absent in checkpoints written before it was logged (then null from here on)
    const cJSON *nt = cJSON_GetObjectItemCaseSensitive(o, "num_tokens");
    st->num_tokens = cJSON_IsNumber(nt) && nt->valuedouble >= 0 ? nt->valuedouble : NAN;
    if (!rc && (kind != c->beta.kind || units != c->beta.units))
        rc = leash_fail(LEASH_EINVAL, "%s: the checkpoint's beta controller (%s, %s) differs from this run's; resume with "
                                      "the same beta options",
                        path, kind ? "adaptive" : "fixed", leash_kl_units_name((leash_kl_units)units));
    if (!rc && !(st->beta.beta >= 0 && isfinite(st->beta.beta)))
        rc = leash_fail(LEASH_EFORMAT, "%s: beta %g is not a finite number >= 0", path, st->beta.beta);
    st->beta.kind = (leash_beta_kind)kind, st->beta.units = (leash_kl_units)units;
    st->watch.steps = (long)steps, st->alarm = alarm != 0;
    for (int i = 0; !rc && i < LEASH_KLWATCH_WINDOW; i++) {
        const cJSON *v = cJSON_GetArrayItem(last, i), *v2 = cJSON_GetArrayItem(var, i);
        if (!cJSON_IsNumber(v) || !cJSON_IsNumber(v2) || !(v2->valuedouble >= 0))
            rc = leash_fail(LEASH_EFORMAT, "%s: kl_watch.last[%d] or .var[%d] is not a number (>= 0)", path, i, i);
        else st->watch.last[i] = v->valuedouble, st->watch.var[i] = v2->valuedouble;
    }
    for (int i = 0; !rc && i < 4 * st->step; i++) {
        const cJSON *v = cJSON_GetArrayItem(h, i);
        if (cJSON_IsNull(v)) st->hist[i] = NAN;
        else if (cJSON_IsNumber(v)) st->hist[i] = v->valuedouble;
        else rc = leash_fail(LEASH_EFORMAT, "%s: history[%d] is not a number", path, i);
    }
    cJSON_Delete(o);
    // the refreshed reference first: with LoRA it is the policy's own base, under the adapters loaded next
    if (!rc && st->ref_model && st->step >= c->ref_sync_every) rc = ref_sync_load(st->ref_model, cur);
    snprintf(path, sizeof path, "%s/policy", cur);
    if (!rc) rc = load_into(policy, path);
    snprintf(path, sizeof path, "%s/policy_optimizer.safetensors", cur);
    if (!rc) rc = leash_adamw_load(popt, path);
    if (!rc && value) {
        snprintf(path, sizeof path, "%s/value", cur);
        if (!(rc = load_into(value, path))) {
            snprintf(path, sizeof path, "%s/value_optimizer.safetensors", cur);
            rc = leash_adamw_load(vopt, path);
        }
    }
    return rc ? leash_fail_wrap(rc, "--resume") : LEASH_OK;
}
