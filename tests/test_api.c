/* The flat entry points for bindings (src/api.c) against the calls they wrap, so they are checked where
 * Python is absent too (python/tests checks them through the package): every configuration key answers and
 * the key list names exactly the table, leash_api_score equals forward + token log-probs bit for bit,
 * leash_api_generate equals leash_generate with leash_sample_set_eos, and the row loops equal one-row calls. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/api.h"
#include "leash/error.h"
#include "leash/kl.h"
#include "leash/sample.h"
#include "testutil.h"

static char dir[64];
static leash_gpt *model;
static leash_tokenizer *tok;

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/leash-api-XXXXXX");
    cr_assert(mkdtemp(dir));
    tiny_policy(dir);
    cr_assert_eq(leash_gpt_load(&model, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_tokenizer_load_dir(&tok, dir), 0, "%s", leash_errmsg());
}

static void teardown(void) {
    leash_gpt_free(model);
    leash_tokenizer_free(tok);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(api, .init = setup, .fini = teardown);

Test(api, every_config_key_answers_and_unknown_keys_are_named) {
    char keys[512];
    snprintf(keys, sizeof keys, "%s", leash_api_config_keys());
    int n = 0;
    double v;
    for (char *k = strtok(keys, ","); k; k = strtok(NULL, ","), n++)
        cr_assert_eq(leash_api_config_value(model, k, &v), 0, "key %s: %s", k, leash_errmsg());
    cr_assert_eq(n, 16, "the key list names %d keys", n);
    const leash_gpt_config *cfg = leash_gpt_cfg(model);
    cr_assert_eq(leash_api_config_value(model, "n_embd", &v), 0);
    cr_assert_eq(v, cfg->n_embd);
    cr_assert_eq(leash_api_config_value(model, "n_inner", &v), 0);
    cr_assert_eq(v, 4 * cfg->n_embd); // resolved: config's 0 means 4 C
    cr_assert_eq(leash_api_config_value(model, "num_params", &v), 0);
    cr_assert_eq(v, (double)leash_gpt_num_params(model));
    cr_assert_eq(leash_api_config_value(model, "n_embed", &v), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "\"n_embed\"") && strstr(leash_errmsg(), "n_embd"), "%s", leash_errmsg());
    cr_assert_str_eq(leash_api_model_type(model), "gpt2");
}

Test(api, score_equals_forward_and_token_logprobs) {
    int ids[12], targets[12];
    float lp[11], ref[12];
    for (int t = 0; t < 12; t++) ids[t] = (t * 37 + 5) % leash_gpt_cfg(model)->vocab_size;
    cr_assert_eq(leash_api_score(model, ids, 12, 0.8f, lp), 0, "%s", leash_errmsg());
    for (int t = 0; t < 12; t++) targets[t] = t + 1 < 12 ? ids[t + 1] : -1;
    cr_assert_eq(leash_gpt_forward(model, ids, NULL, 1, 12), 0);
    cr_assert_eq(leash_gpt_token_logprobs(model, targets, 0.8f, ref, NULL), 0);
    cr_assert_eq(memcmp(lp, ref, sizeof lp), 0, "log-probs differ from forward + token_logprobs");
    cr_assert_eq(leash_api_score(model, ids, 1, 1.0f, lp), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "nothing to score"), "%s", leash_errmsg());
}

Test(api, generate_equals_leash_generate_with_the_models_eos) {
    enum { B = 3, M = 28 };
    int prompts[] = {5, 6, 7, 8, 9, 10}, lens[B] = {1, 2, 3};
    int out[B * M], ref[B * M], olens[B], rlens[B], eos[LEASH_MAX_EOS];
    float lps[B * M], rlps[B * M];
    cr_assert_eq(leash_api_generate(model, tok, 0.9f, 20, 0.95f, M, 7, prompts, lens, B, NULL, out, lps, olens), 0,
                 "%s", leash_errmsg());
    leash_sample_config sc = leash_sample_defaults();
    leash_sample_set_eos(&sc, leash_gpt_cfg(model), leash_tokenizer_eos(tok, leash_gpt_cfg(model)->eos_token_id));
    sc.temperature = 0.9f, sc.top_k = 20, sc.top_p = 0.95f, sc.max_new_tokens = M, sc.seed = 7;
    cr_assert_eq(leash_generate(model, &sc, prompts, lens, B, NULL, ref, rlps, rlens), 0);
    cr_assert_eq(memcmp(out, ref, sizeof out), 0);
    cr_assert_eq(memcmp(lps, rlps, sizeof lps), 0);
    cr_assert_eq(memcmp(olens, rlens, sizeof olens), 0);
    int n = leash_api_eos_ids(model, tok, eos, LEASH_MAX_EOS);
    cr_assert_eq(n, 1);
    cr_assert_eq(eos[0], leash_tokenizer_special_id(tok, "<|endoftext|>"));
}

Test(api, row_loops_equal_one_row_calls) {
    enum { N = 3, V = 17 };
    float x[N * V], out[N * V], row[V];
    double lse[N], ent[N], l1, e1;
    leash_rng rng;
    leash_rng_seed(&rng, 4, 0);
    grid_logits(&rng, x, N * V, 5.0);
    cr_assert_eq(leash_api_log_softmax_rows(x, N, V, 1.5f, out, lse), 0);
    cr_assert_eq(leash_api_entropy_rows(x, N, V, 1.5f, ent), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(leash_log_softmax(x + i * V, V, 1.5f, row, &l1), 0);
        cr_assert_eq(leash_entropy(x + i * V, V, 1.5f, &e1), 0);
        cr_assert_eq(memcmp(row, out + i * V, sizeof row), 0);
        cr_assert_eq(l1, lse[i]);
        cr_assert_eq(e1, ent[i]);
    }
    x[V + 3] = NAN;
    cr_assert_eq(leash_api_entropy_rows(x, N, V, 1.0f, ent), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "row 1"), "%s", leash_errmsg());
}

/* leash_api_rl_train's options: the CLI's names, the other algorithm's refused, bad values and unknown names
 * named in the error before anything runs (python/tests/test_train.py compares the names with --help and runs
 * the trainers against the CLI). */
Test(api, rl_options_are_the_clis_and_bad_ones_are_named) {
    cr_assert(leash_api_rl_option_known("grpo", "group") && !leash_api_rl_option_known("ppo", "group"));
    cr_assert(leash_api_rl_option_known("ppo", "kl-target") && leash_api_rl_option_known("grpo", "kl-target")); // GRPO: adaptive beta
    cr_assert(leash_api_rl_option_known("ppo", "vf-coef") && !leash_api_rl_option_known("grpo", "vf-coef"));
    cr_assert(leash_api_rl_option_known("ppo", "tensorboard") && !leash_api_rl_option_known("ppo", "max_new"));
    cr_assert(!leash_api_rl_option_known("dpo", "lr"));
    const char *bad[][3] = {{"grpo", "max-neww", "max-neww"}, {"grpo", "vf-coef", "PPO option"},
                            {"ppo", "max-new", "[1, "},    {"grpo", "gold-reward", "flag"},
                            {"grpo", "kl-estimator", "kl-estimator"}};
    const char *value[] = {"8", "2", "0", "maybe", "k9"};
    for (int i = 0; i < 5; i++) {
        const char *keys[] = {bad[i][1]}, *values[] = {value[i]};
        int step = -1;
        cr_assert_eq(leash_api_rl_train(bad[i][0], keys, values, 1, NULL, NULL, NULL, NULL, &step), LEASH_EINVAL);
        cr_assert(strstr(leash_errmsg(), bad[i][2]), "%s: %s", bad[i][1], leash_errmsg());
    }
    const char *keys[] = {"gold-reward", "reward-cmd"}, *values[] = {"true", "cat"};
    cr_assert_eq(leash_api_rl_train("grpo", keys, values, 2, NULL, NULL, NULL, NULL, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "exactly one reward"), "%s", leash_errmsg());
    leash_metrics t = {0};
    leash_metrics_real(&t, "objective/kl", "%.6f", 0.5);
    const char *name, *text, *format;
    int kind;
    double v;
    cr_assert_eq(leash_api_metric(&t, 0, &name, &kind, &v, &text, &format), 1);
    cr_assert(!strcmp(name, "objective/kl") && kind == LEASH_METRIC_REAL && v == 0.5 && !strcmp(format, "%.6f") && !text);
    cr_assert_eq(leash_api_metric(NULL, 0, &name, &kind, &v, &text, &format), 0);
}
