/* Runs that survive kills (issue 6): PPO, GRPO and pretraining SIGKILLed at several random moments, each
 * time resumed from their last checkpoint, once stopped with SIGTERM, end bit-identical to an uninterrupted
 * run (tests/kill_resume.sh does the killing and the comparing); the same after a disk that fills up. Also: a checkpoint whose settings differ is
 * refused by name, and a resume without a checkpoint says so. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/checkpoint.h"
#include "leash/error.h"
#include "leash/rl.h"
#include "testutil.h"

static void kill_and_resume(const char *what, int seed, const char *enospc_so) {
    char dir[] = "/tmp/leash-kill-XXXXXX", cmd[4096];
    cr_assert(mkdtemp(dir));
    char model[128];
    snprintf(model, sizeof model, "%s/model", dir);
    cr_assert_eq(system((snprintf(cmd, sizeof cmd, "mkdir -p %s", model), cmd)), 0);
    tiny_policy(model);
    snprintf(cmd, sizeof cmd, "mv %s/prompts.jsonl %s/ && %s world --out %s/w --corpus 400 --prompts 5 --judge 5 --heldout 5 "
                              ">/dev/null && mv %s/w/corpus.txt %s/",
             model, dir, LEASH_BIN, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "bash %s/tests/kill_resume.sh %s %s %s %d %s", LEASH_SRCDIR, LEASH_BIN, dir, what, seed,
             enospc_so ? enospc_so : "");
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(resume, ppo_killed_at_random_moments_ends_bit_identical, .timeout = 240) { kill_and_resume("ppo", 1, NULL); }
Test(resume, grpo_killed_at_random_moments_ends_bit_identical, .timeout = 240) { kill_and_resume("grpo", 2, NULL); }
Test(resume, pretrain_killed_at_random_moments_ends_bit_identical, .timeout = 240) { kill_and_resume("pretrain", 3, NULL); }
/* A disk that fills up in the middle of a run (an LD_PRELOAD shim makes writes fail with ENOSPC): a clear
 * error, and the last checkpoint intact (the run resumed afterwards ends bit-identical). */
Test(resume, ppo_disk_full_loses_nothing, .timeout = 240) { kill_and_resume("ppo", 4, LEASH_ENOSPC_SO); }
Test(resume, pretrain_disk_full_loses_nothing, .timeout = 240) { kill_and_resume("pretrain", 5, LEASH_ENOSPC_SO); }

static void change_kl_target(leash_rl_config *c) { c->beta.target *= 2; }
static void change_kl_horizon(leash_rl_config *c) { c->beta.horizon += 1; }
static void change_estimator(leash_rl_config *c) { c->kl_estimator = LEASH_KL_K3; }
static void change_lr(leash_rl_config *c) { c->optim.lr *= 1.5f; }
static void change_lora(leash_rl_config *c) { c->lora_rank = 2; }
static void change_gamma(leash_rl_config *c) { c->ppo.gamma = 0.5f; }
static void change_beta(leash_rl_config *c) { c->beta.beta = 0.3; }

Test(resume, other_settings_or_no_checkpoint_are_refused, .timeout = 120) {
    rl_scratch w;
    char cmd[1024];
    rl_scratch_make(&w, "resume");
    leash_rl_config c = leash_rl_defaults(LEASH_PPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_GOLD, c.steps = 2, c.batch = 4, c.max_new = 4;
    c.sample_every = 0, c.resume = 1;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "has no checkpoint"), "%s", leash_errmsg());
    c.resume = 0;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    c.resume = 1, c.batch = 8, c.steps = 3;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "--batch 4, this run asks for 8"), "%s", leash_errmsg());
    c.batch = 4;
    // every option that defines the run is checked, and the refusal names it (only one option differs each time)
    char prompts2[256];
    snprintf(prompts2, sizeof prompts2, "%s/prompts2.jsonl", w.dir);
    snprintf(cmd, sizeof cmd, "cp %s %s", w.prompts, prompts2);
    cr_assert_eq(system(cmd), 0);
    struct {
        const char *option;
        void (*change)(leash_rl_config *);
    } changes[] = {{"--kl-target", change_kl_target}, {"--kl-horizon", change_kl_horizon}, {"--kl-estimator", change_estimator},
                   {"--lr", change_lr}, {"--lora-r", change_lora}, {"--gamma", change_gamma}, {"--beta", change_beta}};
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        leash_rl_config d = c;
        changes[i].change(&d);
        cr_assert_eq(leash_rl_train(&d, NULL, NULL, NULL), LEASH_EINVAL, "%s changed on --resume was accepted", changes[i].option);
        char want[64];
        snprintf(want, sizeof want, "written with %s ", changes[i].option);
        cr_assert(strstr(leash_errmsg(), want), "%s: %s", changes[i].option, leash_errmsg());
    }
    leash_rl_config d = c;
    d.prompts = prompts2; // another file, even with the same rows
    cr_assert_eq(leash_rl_train(&d, NULL, NULL, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "written with --prompts "), "%s", leash_errmsg());
    c.batch = 8;
    // a checkpoint left between the two renames of a save (only checkpoint.old) is taken back
    snprintf(cmd, sizeof cmd, "mv %s/checkpoint %s/checkpoint.old", w.out, w.out);
    cr_assert_eq(system(cmd), 0);
    char found[4200];
    cr_assert_eq(leash_checkpoint_find(w.out, found, sizeof found), 0, "%s", leash_errmsg());
    c.batch = 4;
    leash_rl_progress fin;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, &fin), 0, "%s", leash_errmsg());
    cr_assert_eq(fin.step, 3);
    snprintf(cmd, sizeof cmd, "test $(wc -l < %s/metrics.jsonl) -eq 3 && rm -rf %s", w.out, w.dir);
    cr_assert_eq(system(cmd), 0, "metrics.jsonl should hold exactly steps 1..3");
}

/* A reward that turns NaN on one call: without --skip-nonfinite the run stops naming the response and
 * the step; with it the step is skipped, counted, and the run finishes. */
static double nan_once(const char *p, const char *r, const int *t, int n, void *ctx) {
    (void)p, (void)r, (void)t;
    int *calls = ctx;
    return ++*calls == 6 ? NAN : 0.1 * n;
}

static double always_nan(const char *p, const char *r, const int *t, int n, void *ctx) {
    (void)p, (void)r, (void)t, (void)n, (void)ctx;
    return NAN;
}

/* Every batch skipped (a reward that is always NaN): the run fails, naming the reason, and writes no policy
 * (it used to finish with exit 0 and write the untrained policy). PPO and GRPO. */
Test(resume, rl_run_with_every_update_skipped_fails_and_writes_no_policy, .timeout = 120) {
    rl_scratch w;
    char cmd[1024];
    rl_scratch_make(&w, "allnan");
    for (int a = 0; a < 2; a++) {
        leash_rl_config c = leash_rl_defaults(a ? LEASH_GRPO : LEASH_PPO);
        c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = always_nan, c.skip_nonfinite = 1;
        c.steps = 2, c.batch = 2, c.grpo.group = 2, c.max_new = 4, c.sample_every = 0;
        cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_ENUMERIC, "%s", a ? "grpo" : "ppo");
        cr_assert(strstr(leash_errmsg(), "every update of the 2 steps was skipped") && strstr(leash_errmsg(), "reward(s) of step 2 are not finite"), "%s",
                  leash_errmsg());
        snprintf(cmd, sizeof cmd, "test ! -e %s/policy/model.safetensors && rm -rf %s", w.out, w.out);
        cr_assert_eq(system(cmd), 0, "%s: a policy was written", a ? "grpo" : "ppo");
    }
    rl_scratch_drop(&w);
}

Test(resume, nonfinite_reward_stops_or_is_skipped, .timeout = 120) {
    rl_scratch w;
    char cmd[2048];
    rl_scratch_make(&w, "nan");
    int calls = 0;
    leash_rl_config c = leash_rl_defaults(LEASH_PPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = nan_once, c.reward.ctx = &calls;
    c.steps = 3, c.batch = 4, c.max_new = 4, c.sample_every = 0;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "reward of response 1 at step 2 is nan"), "%s", leash_errmsg());
    calls = 0, c.skip_nonfinite = 1;
    leash_rl_progress fin;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, &fin), 0, "%s", leash_errmsg());
    cr_assert_eq(fin.step, 3);
    cr_assert_eq(fin.skipped, 1);
    cr_assert(strstr(fin.skip_reason, "step 2 was skipped: 1 reward(s) of step 2 are not finite"), "reason: '%s'", fin.skip_reason);
    snprintf(cmd, sizeof cmd, "test $(wc -l < %s/metrics.jsonl) -eq 2 && grep -q '\"skipped/nonfinite\": 1' %s/metrics.jsonl && "
                              "test -f %s/policy/model.safetensors && rm -rf %s",
             w.out, w.out, w.out, w.dir);
    cr_assert_eq(system(cmd), 0, "two metrics lines (step 2 skipped), the count logged, the policy written");
}

/* Pretraining from a model with absurd embeddings (3e38), whose gradients turn NaN: without --skip-nonfinite
 * the run stops with an error before the weights change; with it those updates are skipped and counted,
 * the weights stay finite (leash diff loads them, and loading refuses non-finite weights), and a run
 * stopped half-way resumes (the optimizer's update count is the steps less the skipped ones). */
Test(resume, pretrain_nonfinite_stops_or_is_skipped, .timeout = 120) {
    char dir[] = "/tmp/leash-nanpt-XXXXXX", cmd[4096];
    cr_assert(mkdtemp(dir));
    char model[128];
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", model);
    cr_assert_eq(system(cmd), 0);
    tiny_policy(model);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, model), 0);
    const leash_tensor_info *wte = leash_gpt_tensor(m, 0);
    for (size_t i = 0; i < wte->numel; i++) leash_gpt_params(m)[wte->offset + i] = 3e38f; // logits overflow to inf
    cr_assert_eq(leash_gpt_save(m, model), 0);
    leash_gpt_free(m);
    snprintf(cmd, sizeof cmd,
             "cd %s && %s world --out w --corpus 300 --prompts 5 --judge 5 --heldout 5 >/dev/null && "
             "! %s pretrain --data w/corpus.txt --init model --out a --seq-len 16 --batch 4 --steps 4 -q 2>a.err && "
             "grep -q 'the weights were not changed' a.err && "
             "%s pretrain --data w/corpus.txt --init model --out b --seq-len 16 --batch 4 --steps 2 -q --skip-nonfinite 2>/dev/null && "
             "%s pretrain --data w/corpus.txt --init model --out b --seq-len 16 --batch 4 --steps 4 -q --skip-nonfinite --resume "
             "2>/dev/null && test $(wc -l < b/metrics.jsonl) -eq 4 && tail -1 b/metrics.jsonl | grep -q '\"skipped\": [1-4]}' && "
             "%s diff model b -q >/dev/null",
             dir, LEASH_BIN, LEASH_BIN, LEASH_BIN, LEASH_BIN, LEASH_BIN);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* A reward-model (judge) label of 1e300 makes the squared loss infinite: without --skip-nonfinite the
 * training stops naming the step; with it that update is skipped, counted and reported, and the model
 * written loads (its weights are finite). */
Test(resume, reward_model_nonfinite_stops_or_is_skipped, .timeout = 120) {
    char dir[] = "/tmp/leash-nanrm-XXXXXX", path[256], cmd[4096];
    cr_assert(mkdtemp(dir));
    tiny_policy(dir);
    snprintf(path, sizeof path, "%s/labels.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 40; i++) fprintf(f, "{\"text\": \"the soup was good %d\", \"sentiment\": %s}\n", i, i == 6 ? "1e300" : "0.5");
    fclose(f);
    const char *common = "judge train --data labels.jsonl --tokenizer . --n-layer 1 --n-embd 16 --n-head 2 --epochs 1 --batch 8 -q";
    snprintf(cmd, sizeof cmd,
             "cd %s && ! %s %s --out a 2>a.err && grep -q 'loss is inf at step [0-9]*; the weights were not changed' a.err && "
             "%s %s --out b --skip-nonfinite 2>b.err && grep -q '1 updates were skipped' b.err && %s diff b b -q >/dev/null",
             dir, LEASH_BIN, common, LEASH_BIN, common, LEASH_BIN);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* pretrain --resume refuses a changed option that defines the run, naming it (--n-layer, --lr, --data were
 * silently ignored or taken before: the model came from the checkpoint), and takes a grown --steps. */
Test(resume, pretrain_other_settings_are_refused, .timeout = 120) {
    char dir[] = "/tmp/leash-presettings-XXXXXX", cmd[4096], base[1024];
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "%s world --out %s/w --corpus 300 --prompts 5 --judge 5 --heldout 5 >/dev/null && cp %s/w/corpus.txt %s/other.txt",
             LEASH_BIN, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(base, sizeof base, "%s pretrain --out %s/run --vocab-size 280 --n-embd 16 --n-head 2 --n-positions 32 --seq-len 16 "
                                "--batch 4 --val-every 0 -q",
             LEASH_BIN, dir);
    snprintf(cmd, sizeof cmd, "%s --data %s/w/corpus.txt --n-layer 1 --steps 2", base, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    static const char *const changed[][2] = {{"--data %s/other.txt --n-layer 1 --lr 1e-3", "--data"},
                                             {"--data %s/w/corpus.txt --n-layer 2 --lr 1e-3", "--n-layer"},
                                             {"--data %s/w/corpus.txt --n-layer 1 --lr 2e-3", "--lr"}};
    for (int i = 0; i < 3; i++) {
        char opts[512];
        snprintf(opts, sizeof opts, changed[i][0], dir);
        snprintf(cmd, sizeof cmd, "%s %s --steps 3 --resume 2>%s/err; test $? -ne 0 && grep -q -- 'trained with %s ' %s/err", base, opts,
                 dir, changed[i][1], dir);
        cr_assert_eq(system(cmd), 0, "a changed %s was not refused by name: %s", changed[i][1], cmd);
    }
    snprintf(cmd, sizeof cmd, "%s --data %s/w/corpus.txt --n-layer 1 --steps 3 --resume && test $(wc -l < %s/run/metrics.jsonl) -eq 3 && rm -rf %s",
             base, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "a grown --steps: %s", cmd);
}
