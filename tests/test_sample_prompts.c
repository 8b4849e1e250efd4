/* `leash sample --prompts FILE`: a prompt file's samples, each prompt's n samples from streams j * n .. j * n + n - 1,
 * with the line's other fields on every JSON line (what a held-out evaluation pipes into a scorer). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <cjson/cJSON.h>

#include "testutil.h"

/* The JSON lines of out, parsed (at most cap); returns how many. */
static int parse_lines(char *out, cJSON **rows, int cap) {
    int n = 0;
    for (char *line = strtok(out, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        rows[n] = cJSON_Parse(line);
        cr_assert(rows[n], "not JSON: %s", line);
        n++;
    }
    return n;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(cJSON_IsString(v), "no string \"%s\"", key);
    return v->valuestring;
}

Test(sample_prompts, a_files_samples_carry_its_fields_and_match_single_prompt_runs, .timeout = 120) {
    rl_scratch w;
    rl_scratch_make(&w, "sample-prompts");
    char path[256], cmd[1024];
    static char out[1 << 18], one[1 << 16];
    snprintf(path, sizeof path, "%s/qa.jsonl", w.dir);
    write_text(path, "{\"prompt\": \"The food\", \"answer\": 7, \"tag\": \"a\"}\n\n{\"prompt\": \"Every waiter\", \"answer\": 12}\n");
    snprintf(cmd, sizeof cmd, "%s sample %s --prompts %s -n 3 --max-new 5 --seed 4 --json", LEASH_BIN, w.dir, path);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    cJSON *rows[16];
    int n = parse_lines(out, rows, 16);
    cr_assert_eq(n, 6, "2 prompts x 3 samples, found %d lines", n);
    for (int i = 0; i < 6; i++) {
        const cJSON *ans = cJSON_GetObjectItemCaseSensitive(rows[i], "answer");
        cr_assert(cJSON_IsNumber(ans) && ans->valuedouble == (i < 3 ? 7 : 12), "line %d: the prompt line's answer", i + 1);
        cr_assert_str_eq(str(rows[i], "prompt"), i < 3 ? "The food" : "Every waiter");
        cr_assert_eq(cJSON_GetObjectItemCaseSensitive(rows[i], "tag") != NULL, i < 3, "line %d: the other fields", i + 1);
    }
    // the first prompt's samples are streams 0..2: the same as sampling it alone
    snprintf(cmd, sizeof cmd, "%s sample %s --prompt 'The food' -n 3 --max-new 5 --seed 4 --json", LEASH_BIN, w.dir);
    cr_assert_eq(run_capture(cmd, one, sizeof one), 0, "%s", one);
    cJSON *alone[4];
    cr_assert_eq(parse_lines(one, alone, 4), 3);
    int differ = 0;
    for (int i = 0; i < 3; i++) differ += strcmp(str(alone[i], "text"), str(rows[i], "text")) != 0, cJSON_Delete(alone[i]);
    cr_assert_eq(differ, 0, "%d of the first prompt's 3 samples differ from sampling it alone", differ);
    // the second prompt draws from streams 3..5, not 0..2 again: its samples are not the first prompt's streams replayed
    snprintf(cmd, sizeof cmd, "%s sample %s --prompt 'Every waiter' -n 6 --max-new 5 --seed 4 --json", LEASH_BIN, w.dir);
    cr_assert_eq(run_capture(cmd, one, sizeof one), 0, "%s", one);
    cJSON *six[8];
    cr_assert_eq(parse_lines(one, six, 8), 6);
    for (int i = 0; i < 3; i++) cr_assert_str_eq(str(six[3 + i], "text"), str(rows[3 + i], "text"), "stream %d", 3 + i);
    for (int i = 0; i < 6; i++) cJSON_Delete(six[i]);
    for (int i = 0; i < 6; i++) cJSON_Delete(rows[i]);
    rl_scratch_drop(&w);
}

Test(sample_prompts, bad_prompt_files_and_options_are_named, .timeout = 60) {
    rl_scratch w;
    rl_scratch_make(&w, "sample-prompts-bad");
    char path[256], cmd[1024], out[4096];
    snprintf(path, sizeof path, "%s/bad.jsonl", w.dir);
    write_text(path, "{\"prompt\": \"The food\"}\n{\"question\": \"no prompt\"}\n");
    snprintf(cmd, sizeof cmd, "%s sample %s --prompts %s", LEASH_BIN, w.dir, path);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "bad.jsonl") && strstr(out, "prompt"), "names the file and the key: %s", out);
    snprintf(cmd, sizeof cmd, "%s sample %s --prompts %s --prompt hi", LEASH_BIN, w.dir, path);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "one of --prompt or --prompts"), "%s", out);
    // a model without a chat template: --chat-template says so (the tiny model has none)
    write_text(path, "{\"prompt\": \"The food\"}\n");
    snprintf(cmd, sizeof cmd, "%s sample %s --prompts %s --chat-template", LEASH_BIN, w.dir, path);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "--chat-template") && strstr(out, "chat template"), "%s", out);
    rl_scratch_drop(&w);
}
