/* PPO and GRPO: where rewards land, GAE and group advantages against closed forms, and a short run in
 * which the first step's KL is exactly 0 and the first minibatch's ratio exactly 1. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/rl_internal.h"
#include "leash/error.h"
#include "leash/rl.h"
#include "leash/tokenizer.h"
#include "leash/world.h"
#include "testutil.h"
#include "leash/bon.h"

/* Two rows, prompt width P = 2, M = 4: row 0 has 3 response tokens, row 1 has 1. */
static void tiny_rollout(rollout *r) {
    cr_assert_eq(rollout_alloc(r, 2, 2, 4, 2), 0);
    int T = r->T;
    for (int i = 0; i < 2 * T; i++) r->targets[i] = -1;
    r->resp_len[0] = 3, r->resp_len[1] = 1;
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < r->resp_len[b]; j++) {
            int t = b * T + r->P + j - 1;
            r->targets[t] = 7;
            r->kl[t] = 0.5f * (j + 1);
            r->values[t] = 0.25f * j;
        }
    r->shaped[0] = 2.0, r->shaped[1] = -1.0;
}

Test(ppo, rewards_land_on_the_last_token_and_gae_matches_returns) {
    rollout r;
    tiny_rollout(&r);
    leash_rl_config c = leash_rl_defaults(LEASH_PPO);
    c.ppo.gamma = 1.0f, c.ppo.lam = 1.0f;
    const double beta = 0.1;
    cr_assert_eq(ppo_advantages(&r, &c.ppo, beta), 0);
    int T = r.T, P = r.P;
    // row 0: rewards -beta*kl at each token, + score at the last (t = P + 3 - 2)
    double want_r[3] = {-0.05, -0.1, -0.15 + 2.0};
    for (int j = 0; j < 3; j++)
        cr_assert(fabs(r.rewards[P + j - 1] - want_r[j]) < 1e-6, "row 0 token %d reward %g, want %g", j, r.rewards[P + j - 1], want_r[j]);
    cr_assert(fabs(r.rewards[T + P - 1] - (-0.05 - 1.0)) < 1e-6, "row 1: one token carries kl and score");
    for (int t = 0; t < 2 * T; t++)
        if (r.targets[t] < 0) cr_assert_eq(r.rewards[t], 0.0f, "prompt or padding at %d got reward", t);
    // gamma = lambda = 1: the return is the sum of the rewards to come
    double future = 0;
    for (int j = 2; j >= 0; j--) {
        future += want_r[j];
        cr_assert(fabs(r.ret[P + j - 1] - future) < 1e-5, "row 0 return at %d: %g, want %g", j, r.ret[P + j - 1], future);
    }
    // advantages are whitened over the 4 response tokens: mean 0, and zero outside
    double m = 0;
    for (int t = 0; t < 2 * T; t++) m += r.adv[t];
    cr_assert(fabs(m) < 1e-5, "whitened advantages sum to %g", m);
    rollout_free(&r);
}

Test(grpo, group_relative_advantages) {
    rollout r;
    cr_assert_eq(rollout_alloc(&r, 4, 1, 2, 4), 0);
    for (int i = 0; i < 4 * r.T; i++) r.targets[i] = i % r.T == 0 ? 3 : -1;
    double sc[4] = {1.0, 2.0, 3.0, 6.0};
    for (int b = 0; b < 4; b++) r.shaped[b] = sc[b];
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.grpo.group = 4;
    cr_assert_eq(grpo_advantages(&r, &c.grpo), 0);
    double mean = 3.0, sd = sqrt((4.0 + 1.0 + 0.0 + 9.0) / 3.0);
    for (int b = 0; b < 4; b++)
        cr_assert(fabs(r.adv[b * r.T] - (sc[b] - mean) / (sd + 1e-4)) < 1e-6, "row %d: %g", b, r.adv[b * r.T]);
    c.grpo.scale_rewards = LEASH_SCALE_NONE;
    cr_assert_eq(grpo_advantages(&r, &c.grpo), 0);
    for (int b = 0; b < 4; b++) cr_assert(fabs(r.adv[b * r.T] - (sc[b] - mean)) < 1e-6);
    rollout_free(&r);
}

typedef struct {
    leash_rl_progress first;
    int steps;
} seen;

static int record(const leash_rl_progress *p, void *ctx) {
    seen *s = ctx;
    if (p->step == 1) s->first = *p;
    s->steps = p->step;
    return 0;
}

/* Every line of metrics.jsonl logs the step's phases (time/rollout_s, ...), each >= 0, adding up to at most
 * time/step_s (each printed to 3 decimals: within their rounding); the progress's phase_seconds likewise. */
static void phases_logged(const char *out, const leash_rl_progress *first) {
    double sum = 0.0;
    for (int k = 0; k < 4; k++) {
        cr_assert(first->phase_seconds[k] >= 0.0, "phase %d: %g s", k, first->phase_seconds[k]);
        sum += first->phase_seconds[k];
    }
    cr_assert(sum <= first->seconds, "phases %g s of a %g s step", sum, first->seconds);
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    char *text = read_text(path), *save = NULL;
    cr_assert(text, "cannot read %s", path);
    static const char *const keys[4] = {"time/rollout_s", "time/scoring_s", "time/reward_s", "time/update_s"};
    int lines = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++) {
        cJSON *o = cJSON_Parse(line);
        cr_assert(o, "line %d of %s is not JSON", lines + 1, path);
        double phases = 0.0, step = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "time/step_s"));
        for (int k = 0; k < 4; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
            cr_assert(cJSON_IsNumber(v) && v->valuedouble >= 0.0, "line %d: %s missing or negative", lines + 1, keys[k]);
            phases += v->valuedouble;
        }
        cr_assert(phases <= step + 0.0025, "line %d: phases %g s of a %g s step", lines + 1, phases, step);
        cJSON_Delete(o);
    }
    cr_assert_eq(lines, 3);
    free(text);
}

static void short_run(leash_rl_algo algo) {
    rl_scratch w;
    char cmd[1024];
    rl_scratch_make(&w, "rl");
    leash_rl_config c = leash_rl_defaults(algo);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_GOLD, c.steps = 3, c.batch = 4, c.grpo.group = 4;
    c.max_new = 8, c.temperature = 0.7f, c.minibatch = algo == LEASH_PPO ? 2 : 0, c.optim.lr = 1e-3f;
    if (algo == LEASH_PPO) c.kl_estimator = LEASH_KL_EXACT;
    seen s = {0};
    leash_rl_progress fin;
    cr_assert_eq(leash_rl_train(&c, record, &s, &fin), 0, "%s", leash_errmsg());
    cr_assert_eq(s.steps, 3);
    // step 1: the policy is the reference, so every KL is exactly 0 and the first minibatch's ratio exactly 1
    cr_assert_eq(s.first.kl, 0.0, "KL at step 1: %g", s.first.kl);
    cr_assert_eq(s.first.kl_exact, 0.0, "exact KL at step 1: %g", s.first.kl_exact);
    cr_assert_eq(s.first.first_ratio_dev, 0.0, "first minibatch ratio off 1 by %g", s.first.first_ratio_dev);
    cr_assert(s.first.logprob_gap < 1e-4, "sampling and training log-probs differ by %g", s.first.logprob_gap);
    cr_assert(isfinite(fin.kl) && fin.kl_exact >= 0 && !isnan(fin.gold_reward));
    snprintf(cmd, sizeof cmd, "test -s %s/metrics.jsonl && test -f %s/policy/model.safetensors && test -f %s/policy/vocab.json",
             w.out, w.out, w.out);
    cr_assert_eq(system(cmd), 0, "run outputs missing");
    phases_logged(w.out, &s.first);
    rl_scratch_drop(&w);
}

Test(ppo, short_run_starts_at_the_reference, .timeout = 120) { short_run(LEASH_PPO); }
Test(grpo, short_run_starts_at_the_reference, .timeout = 120) { short_run(LEASH_GRPO); }

Test(best_of_n, nested_samples_and_the_kl_bound, .timeout = 120) {
    char dir[] = "/tmp/leash-bon-XXXXXX", rmdir_[300], prompts[256], cmd[1024];
    cr_assert(mkdtemp(dir));
    tiny_policy(dir);
    // a reward model: the policy with a fresh scalar head (any scorer will do for the mechanics)
    leash_gpt *p, *rm;
    cr_assert_eq(leash_gpt_load(&p, dir), 0);
    cr_assert_eq(leash_gpt_copy_with_head(&rm, p, 0, 5), 0);
    snprintf(rmdir_, sizeof rmdir_, "%s/rm", dir);
    cr_assert_eq(leash_gpt_save(rm, rmdir_), 0);
    cr_assert_eq(leash_tokenizer_copy(dir, rmdir_), 0);
    leash_gpt_free(p), leash_gpt_free(rm);
    snprintf(prompts, sizeof prompts, "%s/prompts.jsonl", dir);
    const int ns[4] = {1, 2, 4, 8};
    leash_bon_result res[4];
    cr_assert_eq(leash_best_of_n(dir, rmdir_, prompts, ns, 4, 12, 6, 1.0f, 3, res), 0, "%s", leash_errmsg());
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(res[i].n, ns[i]);
        cr_assert(fabs(res[i].kl_bound - (log(ns[i]) - (ns[i] - 1.0) / ns[i])) < 1e-12);
        if (i) cr_assert(res[i].proxy >= res[i - 1].proxy - 1e-9, "best-of-%d proxy %g below best-of-%d %g", ns[i],
                         res[i].proxy, ns[i - 1], res[i - 1].proxy);
    }
    cr_assert_eq(res[0].kl_bound, 0.0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(grpo, reward_command_scores_and_fails_clearly, .timeout = 120) {
    rl_scratch w;
    char script[256], cmd[1024];
    rl_scratch_make(&w, "rcmd");
    snprintf(script, sizeof script, "%s/reward.sh", w.dir);
    // a verifiable scorer: 1 for a response that ends a sentence, else 0
    const char *good = "#!/bin/sh\nwhile IFS= read -r line; do\n"
                       "  id=$(printf '%s\\n' \"$line\" | LC_ALL=C sed 's/.*\"id\":\\([0-9]*\\).*/\\1/')\n"
                       "  case \"$line\" in *'.\"}') r=1;; *) r=0;; esac\n"
                       "  echo \"{\\\"id\\\": $id, \\\"reward\\\": $r}\"\ndone\n";
    FILE *f = fopen(script, "w");
    fputs(good, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "chmod +x %s", script);
    cr_assert_eq(system(cmd), 0);
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_COMMAND, c.reward.cmd = script, c.steps = 2, c.batch = 2, c.grpo.group = 4;
    c.max_new = 6;
    leash_rl_progress fin;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, &fin), 0, "%s", leash_errmsg());
    cr_assert(fin.scores >= 0.0 && fin.scores <= 1.0, "mean reward %g", fin.scores);
    // a run outside the default world has no gold reward: report and plot still work on it (both refused
    // such runs: "gold/reward" must be a finite number), and its samples say null, not 0
    snprintf(cmd, sizeof cmd, "%s report %s > %s/report.txt && %s plot %s --out %s/curves.png 2>/dev/null", LEASH_BIN,
             w.out, w.dir, LEASH_BIN, w.out, w.dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "grep -q 'gold reward (the truth) *| -' %s/report.txt && grep -q '\"gold\": null' "
                              "%s/samples.jsonl && test -s %s/curves.png", w.dir, w.out, w.dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    c.reward.kind = LEASH_REWARD_COMMAND, c.reward.cmd = "read line; echo '{\"id\": 0, \"reward\": \"high\"}'";
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_EFORMAT);
    cr_assert(strstr(leash_errmsg(), "finite number \"reward\""), "%s", leash_errmsg());
    c.reward.kind = LEASH_REWARD_COMMAND, c.reward.cmd = "exit 4";
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_EIO);
    cr_assert(strstr(leash_errmsg(), "exit status 4"), "%s", leash_errmsg());
    rl_scratch_drop(&w);
}

/* Pitfall "sign": with no reward at all, the KL term alone must pull a perturbed policy back towards the
 * reference, so the exact KL falls (measured: PPO 0.30 -> 0.17, GRPO 0.30 -> 0.06 nats per sequence). It can
 * fail: with the sign of the KL term flipped in ppo_advantages and grpo_policy_loss, the KL grew to 32.8 (PPO) and
 * 5.4 (GRPO) and both tests failed (checked by hand when they were written). */
static double zero_reward(const char *p, const char *r, const int *t, int n, void *ctx) {
    (void)p, (void)r, (void)t, (void)n, (void)ctx;
    return 0.0;
}

typedef struct {
    double first, last;
} kl_track;

static int track_kl(const leash_rl_progress *p, void *ctx) {
    kl_track *k = ctx;
    if (p->step == 1) k->first = p->kl_exact;
    k->last = p->kl_exact;
    return 0;
}

static void kl_alone_pulls_back(leash_rl_algo algo) {
    rl_scratch w;
    char pol[300];
    rl_scratch_make(&w, "sign");
    // the policy: the reference with its weights perturbed
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, w.dir), 0);
    leash_rng rng;
    leash_rng_seed(&rng, 11, 0);
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) leash_gpt_params(m)[i] += (float)(0.05 * leash_rng_normal(&rng));
    snprintf(pol, sizeof pol, "%s/perturbed", w.dir);
    cr_assert_eq(leash_gpt_save(m, pol), 0);
    cr_assert_eq(leash_tokenizer_copy(w.dir, pol), 0);
    leash_gpt_free(m);
    leash_rl_config c = leash_rl_defaults(algo);
    c.policy_dir = pol, c.ref_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = zero_reward;
    c.steps = 30, c.batch = algo == LEASH_GRPO ? 8 : 32, c.grpo.group = 4, c.max_new = 6, c.optim.lr = 3e-3f, c.sample_every = 0;
    c.kl_estimator = algo == LEASH_GRPO ? LEASH_KL_K3 : LEASH_KL_K1;
    cr_assert_eq(leash_beta_fixed(&c.beta, 1.0), 0);
    kl_track k = {0};
    cr_assert_eq(leash_rl_train(&c, track_kl, &k, NULL), 0, "%s", leash_errmsg());
    cr_log_info("%s: exact KL %.4f -> %.4f nats per sequence", algo == LEASH_PPO ? "PPO" : "GRPO", k.first, k.last);
    cr_assert(k.first > 0.01, "the perturbation should start away from the reference (KL %g)", k.first);
    cr_assert(k.last < 0.7 * k.first, "with reward 0 the KL should fall: %g -> %g", k.first, k.last);
    rl_scratch_drop(&w);
}

Test(pitfall, sign_ppo_kl_in_the_reward_lowers_kl, .timeout = 120) { kl_alone_pulls_back(LEASH_PPO); }
Test(pitfall, sign_grpo_kl_in_the_loss_lowers_kl, .timeout = 120) { kl_alone_pulls_back(LEASH_GRPO); }

/* leash ppo and leash grpo take their own options: an option of the other algorithm is refused naming it
 * (it used to be accepted and silently ignored: grpo --gamma, --kl-target; ppo --group), each --help lists
 * only its own, and both take the optimiser's --grad-clip, --weight-decay and --warmup. */
Test(grpo, ppo_and_grpo_refuse_each_others_options, .timeout = 120) {
    rl_scratch w;
    rl_scratch_make(&w, "opts");
    char cmd[2048];
    static const char *const refused[][3] = {
        {"ppo", "--group 4", "--group is a GRPO option"},           {"ppo", "--token-level-loss", "--token-level-loss is a GRPO option"},
        {"ppo", "--no-std-scaling", "--no-std-scaling is a GRPO"},  {"grpo", "--gamma 0.9", "--gamma is a PPO option"},
        {"grpo", "--lambda 0.9", "--lambda is a PPO option"},       {"grpo", "--vf-coef 0.5", "--vf-coef is a PPO option"},
        {"grpo", "--value-clip 0.5", "--value-clip is a PPO option"}, {"grpo", "--kl-horizon 100", "--kl-horizon is the adaptive"},
        {"grpo", "--whiten-rewards", "--whiten-rewards is a PPO"},
        {"grpo", "--value-lr 1e-4", "--value-lr is a PPO option"},  {"grpo", "--fixed-beta", "--fixed-beta is a PPO option"}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s %s --policy %s --prompts %s --out %s --gold-reward %s -q 2>%s/err; test $? -eq 2 && grep -q -- '%s' %s/err",
                 LEASH_BIN, refused[i][0], w.dir, w.prompts, w.out, refused[i][1], w.dir, refused[i][2], w.dir);
        cr_assert_eq(system(cmd), 0, "leash %s %s was not refused with '%s'", refused[i][0], refused[i][1], refused[i][2]);
    }
    snprintf(cmd, sizeof cmd, "%s ppo --help | grep -q -- --whiten-rewards && ! %s ppo --help | grep -q -- --group && "
                              "%s grpo --help | grep -q -- --group && ! %s grpo --help | grep -q -- --gamma",
             LEASH_BIN, LEASH_BIN, LEASH_BIN, LEASH_BIN);
    cr_assert_eq(system(cmd), 0, "each --help lists its own options only");
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --prompts %s --out %s --gold-reward --steps 1 --batch 1 --group 2 --max-new 3 "
                              "--grad-clip 0.5 --weight-decay 0.01 --warmup 2 -q",
             LEASH_BIN, w.dir, w.prompts, w.out);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    rl_scratch_drop(&w);
}

/* A batch reward function (LEASH_REWARD_BATCH, for callers such as Python that score a step's responses at
 * once) trains exactly as the same scores given one by one (LEASH_REWARD_FUNCTION): equal metrics at every
 * step, bit for bit; a batch function that fails stops the run with its return value named. */
static double len_score(const char *p, const char *r, const int *t, int n, void *ctx) {
    (void)p, (void)t, (void)n, (void)ctx;
    return 0.1 * (double)strlen(r);
}
static int len_scores(const char *const *p, const char *const *r, int n, double *out, void *ctx) {
    (void)p;
    int *calls = ctx;
    ++*calls;
    for (int i = 0; i < n; i++) out[i] = 0.1 * (double)strlen(r[i]);
    return 0;
}
static int failing_scores(const char *const *p, const char *const *r, int n, double *out, void *ctx) {
    (void)p, (void)r, (void)n, (void)out, (void)ctx;
    return 7;
}
typedef struct {
    double v[4][3];
} three_steps;
static int keep_metrics(const leash_rl_progress *p, void *ctx) {
    three_steps *t = ctx;
    t->v[p->step][0] = p->scores, t->v[p->step][1] = p->kl, t->v[p->step][2] = p->policy_loss;
    return 0;
}

Test(grpo, batch_reward_equals_per_response_reward, .timeout = 120) {
    rl_scratch w;
    rl_scratch_make(&w, "batchrw");
    three_steps a = {0}, b = {0};
    int calls = 0;
    for (int k = 0; k < 2; k++) {
        leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
        c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.steps = 3, c.batch = 2, c.grpo.group = 3, c.max_new = 5;
        c.sample_every = 0, c.seed = 9;
        if (k == 0) c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = len_score;
        else c.reward.kind = LEASH_REWARD_BATCH, c.reward.batch_fn = len_scores, c.reward.ctx = &calls;
        cr_assert_eq(leash_rl_train(&c, keep_metrics, k ? (void *)&b : (void *)&a, NULL), 0, "%s", leash_errmsg());
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf %s", w.out);
        cr_assert_eq(system(cmd), 0);
    }
    cr_assert_eq(calls, 3, "one call per step, not %d", calls);
    for (int s = 1; s <= 3; s++)
        for (int j = 0; j < 3; j++) cr_assert(a.v[s][j] == b.v[s][j], "step %d metric %d: %.17g vs %.17g", s, j, a.v[s][j], b.v[s][j]);
    cr_assert(a.v[3][0] != 0.0, "the scores were recorded");
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.steps = 1, c.batch = 1, c.grpo.group = 2, c.max_new = 3;
    c.reward.kind = LEASH_REWARD_BATCH, c.reward.batch_fn = failing_scores;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "the batch reward function failed (returned 7) at step 1"), "%s", leash_errmsg());
    c.reward.kind = LEASH_REWARD_NONE;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "give a reward"), "%s", leash_errmsg());
    rl_scratch_drop(&w);
}
