/* `leash kl` end to end: its numbers equal the library's, every input form works, and bad input exits
 * non-zero with a message that names the problem. */
#define _DEFAULT_SOURCE /* mkdtemp, popen */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "leash/kl.h"
#include "testutil.h"

static char out[1 << 16];

Test(cli, rows_json_output_matches_the_library) {
    cr_assert_eq(run_capture(LEASH_BIN " kl --json examples/kl_rows.json", out, sizeof out), 0, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert(o, "not JSON: %s", out);
    const float z[8] = {2.0f, 0.5f, 3.1f, -1.0f, 0.0f, 1.2f, -2.5f, 0.3f};
    const float r[8] = {2.2f, 0.7f, 1.4f, -0.8f, 0.1f, 1.3f, -2.0f, 0.4f};
    double kl;
    cr_assert_eq(leash_kl_exact(z, r, 8, 1.0f, &kl, NULL), 0);
    double got = cJSON_GetObjectItem(o, "kl")->valuedouble;
    cr_assert(fabs(got - kl) < 1e-15, "CLI KL %.17g, library %.17g", got, kl);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "units")->valuestring, "nats per token");
    double k3 = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "estimators"), "k3"), "mean")->valuedouble;
    cr_assert(fabs(k3 - kl) < 1e-6, "E[k3] = %g should equal KL %g", k3, kl);
    cJSON_Delete(o);
}

Test(cli, text_stdin_and_temperature) {
    cr_assert_eq(run_capture("printf '1 2 3\\n3, 2, 1\\n' | " LEASH_BIN " kl --json -t 0.5", out, sizeof out), 0, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert(o, "not JSON: %s", out);
    const float z[3] = {1, 2, 3}, r[3] = {3, 2, 1};
    double kl;
    cr_assert_eq(leash_kl_exact(z, r, 3, 0.5f, &kl, NULL), 0);
    cr_assert(fabs(cJSON_GetObjectItem(o, "kl")->valuedouble - kl) < 1e-15);
    cr_assert_eq(cJSON_GetObjectItem(o, "temperature")->valuedouble, 0.5);
    cJSON_Delete(o);
}

Test(cli, sampled_sums_and_means) {
    cr_assert_eq(run_capture("echo '{\"logp\": [-1, -2], \"ref_logp\": [-1.5, -1]}' | " LEASH_BIN " kl --sampled --json", out,
                     sizeof out),
                 0, "%s", out);
    cJSON *o = cJSON_Parse(out), *est = cJSON_GetObjectItem(o, "estimators");
    cr_assert(o && est, "not JSON: %s", out);
    // log r = -0.5, +1: k1 = 0.5 - 1 = -0.5 per sequence; k2 = (0.25 + 1)/2 = 0.625
    cr_assert(fabs(cJSON_GetObjectItem(cJSON_GetObjectItem(est, "k1"), "per_sequence")->valuedouble + 0.5) < 1e-7);
    cr_assert(fabs(cJSON_GetObjectItem(cJSON_GetObjectItem(est, "k1"), "per_token")->valuedouble + 0.25) < 1e-7);
    cr_assert(fabs(cJSON_GetObjectItem(cJSON_GetObjectItem(est, "k2"), "per_sequence")->valuedouble - 0.625) < 1e-7);
    cJSON_Delete(o);
    cr_assert_eq(run_capture(LEASH_BIN " kl --sampled examples/kl_tokens.txt", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "nats/sequence") && strstr(out, "nats/token"), "units missing: %s", out);
}

Test(cli, optimum_and_best_of_n) {
    cr_assert_eq(run_capture(LEASH_BIN " kl --optimum --json examples/kl_optimum.json", out, sizeof out), 0, "%s", out);
    cJSON *o = cJSON_Parse(out);
    cr_assert(o, "not JSON: %s", out);
    double v = cJSON_GetObjectItem(o, "optimal_value")->valuedouble;
    double j = cJSON_GetObjectItem(o, "objective_at_pi_star")->valuedouble;
    cr_assert(fabs(v - j) < 1e-12, "beta log Z %.15g vs J(pi*) %.15g", v, j);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "best_of_n")), 6);
    cJSON_Delete(o);
}

/* Each bad input: exit status 1 or 2 and a message containing `want`. */
static void expect_error(const char *cmd, const char *want) {
    int st = run_capture(cmd, out, sizeof out);
    cr_assert(st == 1 || st == 2, "'%s' exited %d: %s", cmd, st, out);
    cr_assert(strstr(out, want), "'%s': message lacks '%s': %s", cmd, want, out);
}

Test(cli, bad_input_is_a_clear_error) {
    expect_error("printf '1 nan 3\\n0 0 0\\n' | " LEASH_BIN " kl", "logits[1] = nan");
    expect_error("printf '1 inf 3\\n0 0 0\\n' | " LEASH_BIN " kl", "logits[1] = inf");
    expect_error("printf '1 2 3\\n0 0\\n' | " LEASH_BIN " kl", "3 logits and the reference row 2");
    expect_error("printf '1 2 x3\\n0 0 0\\n' | " LEASH_BIN " kl", "-:1:5: 'x3' is not a number");
    expect_error("printf '1 2 3\\n' | " LEASH_BIN " kl", "found 1 list(s)");
    expect_error("printf '\\n' | " LEASH_BIN " kl", "found 0 list(s)");
    expect_error("printf '1 2\\n3 4\\n' | " LEASH_BIN " kl -t 0", "temperature = 0");
    expect_error("printf '1 2\\n3 4\\n' | " LEASH_BIN " kl -t abc", "'abc' is not a number");
    expect_error("printf '1e39 2\\n3 4\\n' | " LEASH_BIN " kl", "does not fit float32");
    expect_error("echo '{\"logits\": [1, 2], ' | " LEASH_BIN " kl", "malformed JSON");
    expect_error("echo '{\"logits\": [1, 2]}' | " LEASH_BIN " kl", "missing key \"ref_logits\"");
    expect_error("echo '{\"logits\": [1, \"a\"], \"ref_logits\": [1, 2]}' | " LEASH_BIN " kl", "\"logits\"[1] is not a number");
    expect_error(LEASH_BIN " kl /nonexistent/file.json", "cannot open '/nonexistent/file.json'");
    expect_error("printf '1 2\\n3 4\\n' | " LEASH_BIN " kl --sampled", "log-prob 1 > 0");
    expect_error("echo '{\"ref_probs\": [0.5, 0.5], \"reward\": [0, 1], \"beta\": -1}' | " LEASH_BIN " kl --optimum",
                 "beta = -1");
    expect_error("echo '{\"ref_probs\": [0.5, 0.5], \"reward\": [0, 1]}' | " LEASH_BIN " kl --optimum", "no beta");
    expect_error("echo '{\"ref_probs\": [0.5, 0.4], \"reward\": [0, 1], \"beta\": 1}' | " LEASH_BIN " kl --optimum",
                 "not normalised");
    expect_error("echo '{\"ref_probs\": [0.5, 0.5], \"reward\": [0], \"beta\": 1}' | " LEASH_BIN " kl --optimum",
                 "2 reference entries and 1 rewards");
    expect_error("echo '{\"ref_probs\": [0.5, 0.5], \"reward\": [0, 1], \"beta\": 1, \"best_of_n\": [2.5]}' | " LEASH_BIN
                 " kl --optimum",
                 "whole number");
    expect_error(LEASH_BIN " kl --bogus", "usage: leash kl");
    expect_error(LEASH_BIN " frobnicate", "unknown command 'frobnicate'");
}

Test(cli, help_is_on_stdout) {
    cr_assert_eq(run_capture(LEASH_BIN " kl --help", out, sizeof out), 0);
    cr_assert(strstr(out, "--sampled") && strstr(out, "--optimum") && strstr(out, "--temperature"));
    cr_assert_eq(run_capture(LEASH_BIN " --help", out, sizeof out), 0);
    cr_assert(strstr(out, "kl "));
}

/* Issue 6: every numeric option of the trainers (and of sample) is checked before any work starts. The
 * options are read from each command's own --help (every "--name N|X|B|T|S|G|K|SECONDS"), so an option added
 * later is covered too; each gets "abc", "nan" and "1e999": exit status 2, a message naming the option, the
 * value and the accepted range, and no output directory created. (Parsing --steps with atoi instead made
 * it fail: "--steps abc" ran on and failed later with status 1.) */
Test(cli, every_numeric_option_is_validated_before_work_starts, .timeout = 120) {
    const char *cmds[][2] = {
        {"ppo", "--policy x --gold-reward --prompts p.jsonl --out /tmp/leash-optcheck/out"},
        {"grpo", "--policy x --gold-reward --prompts p.jsonl --out /tmp/leash-optcheck/out"},
        {"pretrain", "--data d.txt --out /tmp/leash-optcheck/out"},
        {"rm train", "--data d.jsonl --init x --out /tmp/leash-optcheck/out"},
        {"sample", "x --prompt hi"},
    };
    static char help[1 << 16], cmd[1024];
    int checked = 0;
    cr_assert_eq(system("rm -rf /tmp/leash-optcheck"), 0);
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        snprintf(cmd, sizeof cmd, LEASH_BIN " %s --help", cmds[c][0]);
        cr_assert_eq(run_capture(cmd, help, sizeof help), 0);
        int in_cmd = 0;
        for (char *p = help; (p = strstr(p, "--")) != NULL; p += 2) {
            char name[64], meta[16];
            if (sscanf(p, "--%63[a-z-] %15[A-Z]", name, meta) != 2) continue;
            if (strcmp(meta, "N") && strcmp(meta, "X") && strcmp(meta, "B") && strcmp(meta, "T") && strcmp(meta, "S") &&
                strcmp(meta, "G") && strcmp(meta, "K") && strcmp(meta, "SECONDS"))
                continue;
            const char *bad[] = {"abc", "nan", "1e999"};
            for (int b = 0; b < 3; b++) {
                snprintf(cmd, sizeof cmd, LEASH_BIN " %s %s --%s %s", cmds[c][0], cmds[c][1], name, bad[b]);
                int st = run_capture(cmd, out, sizeof out);
                cr_assert_eq(st, 2, "%s: exit status %d: %s", cmd, st, out);
                char want[128];
                snprintf(want, sizeof want, "--%s '%s' must be", name, bad[b]);
                cr_assert(strstr(out, want) && strstr(out, "["), "%s: the message does not name the option, the value and "
                                                                 "the range: %s", cmd, out);
                checked++, in_cmd++;
            }
        }
        cr_assert(in_cmd >= 3 * 4, "%s: only %d numeric options found in --help", cmds[c][0], in_cmd / 3);
    }
    cr_assert_neq(system("test -e /tmp/leash-optcheck"), 0, "an output directory was created before the options were checked");
    cr_log_info("%d bad values of numeric options, each refused before work started\n", checked);
}
