/* `leash report --html` (src/cli/report_html.c) on real tiny runs, checked by tests/ref/html_report_check.py
 * (standard library only) and rendered by headless Chromium.
 *
 * Four runs: a GRPO run scored by a command (no gold reward: its samples' gold is null and must show "-"),
 * PPO runs on the default world's gold reward with an adaptive KL target per sequence and per token (the
 * bands, on the KL panel of each unit), and a copy of the first PPO run's logs without a checkpoint (its
 * settings "not recorded") whose alarm fires at step 3 and whose samples hold a response with <script>,
 * quotes, &, a control byte and bytes that are not UTF-8. The checker parses the page (every
 * element closed in order), finds nothing that loads or runs (no script, link, img, src, url()), reads
 * every curve back through its axes into metrics.jsonl's values (within the 0.005 px the page rounds to),
 * the alarm marked at step 3 in every plot, and the first/last table equal to `leash report`'s text. The
 * browser part skips with the reason when chromium is missing, and fails under LEASH_REQUIRE_REF=1. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/rl.h"
#include "testutil.h"

/* A verifiable scorer: 1 for a response that ends a sentence, else 0 (as in tests/test_rl.c). */
static void write_scorer(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("#!/bin/sh\nwhile IFS= read -r line; do\n"
          "  id=$(printf '%s\\n' \"$line\" | LC_ALL=C sed 's/.*\"id\":\\([0-9]*\\).*/\\1/')\n"
          "  case \"$line\" in *'.\"}') r=1;; *) r=0;; esac\n"
          "  echo \"{\\\"id\\\": $id, \\\"reward\\\": $r}\"\ndone\n", f);
    fclose(f);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "chmod +x %s", path);
    cr_assert_eq(system(cmd), 0);
}

static const char *EVIL = "<script>alert(\"x\")</script> & 'q' \x1f end \xff\xc0\xaf caf\xc3\xa9";

static void make_runs(const rl_scratch *w, char runs[4][200]) {
    char scorer[200], cmd[1500];
    snprintf(scorer, sizeof scorer, "%s/score.sh", w->dir);
    write_scorer(scorer);
    snprintf(runs[0], 200, "%s/grpo-cmd", w->dir);
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = w->dir, c.prompts = w->prompts, c.out_dir = runs[0], c.reward.kind = LEASH_REWARD_COMMAND, c.reward.cmd = scorer, c.steps = 4;
    c.batch = 2, c.grpo.group = 4, c.max_new = 6, c.sample_every = 3;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    snprintf(runs[1], 200, "%s/ppo-gold", w->dir);
    c = leash_rl_defaults(LEASH_PPO);
    c.policy_dir = w->dir, c.prompts = w->prompts, c.out_dir = runs[1], c.reward.kind = LEASH_REWARD_GOLD, c.steps = 6, c.batch = 4;
    c.max_new = 6, c.epochs = 1, c.sample_every = 5, c.beta.target = 0.5, c.beta.horizon = 100;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    snprintf(runs[3], 200, "%s/ppo-per-token", w->dir); // a target per token: the band on the per-token panel
    c.out_dir = runs[3], c.steps = 4, c.beta.target = 0.1, c.beta.units = LEASH_KL_PER_TOKEN;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    // the copy: logs only, the alarm on from step 3, one sample with text that must be escaped
    snprintf(runs[2], 200, "%s/logs-only", w->dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && sed -E '/\"step\": [12],/! s/\"alarm\\/reward_hacking\": 0/\"alarm\\/reward_hacking\": 1/' "
                              "%s/metrics.jsonl > %s/metrics.jsonl && grep -q '\"step\": 3,.*\"alarm/reward_hacking\": 1' %s/metrics.jsonl",
             runs[2], runs[1], runs[2], runs[2]);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/samples.jsonl", runs[2]);
    FILE *f = fopen(cmd, "w");
    fputs("{\"step\": 1, \"score\": 0.25, \"gold\": null, \"prompt\": \"A \\\"quoted\\\" <b>prompt</b>\", "
          "\"response\": \"<script>alert(\\\"x\\\")</script> & 'q' \\u001f end \xff\xc0\xaf caf\xc3\xa9\"}\n", f);
    fclose(f);
}

static int have_chromium(void) { return system("command -v chromium >/dev/null 2>&1") == 0; }

Test(report_html, page_of_four_runs, .timeout = 300) {
    rl_scratch w;
    char runs[4][200], cmd[2400], page[200], text[200], *html = NULL;
    rl_scratch_make(&w, "html");
    make_runs(&w, runs);
    snprintf(page, sizeof page, "%s/report.html", w.dir);
    snprintf(text, sizeof text, "%s/report.txt", w.dir);
    snprintf(cmd, sizeof cmd, "%s report %s %s %s %s > %s && %s report %s %s %s %s --html %s 2>/dev/null", LEASH_BIN,
             runs[0], runs[1], runs[2], runs[3], text, LEASH_BIN, runs[0], runs[1], runs[2], runs[3], page);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/html_report_check.py' %s %s %s %s %s %s >&2", LEASH_SRCDIR,
             page, text, runs[0], runs[1], runs[2], runs[3]);
    cr_assert_eq(system(cmd), 0, "the page fails the checks printed above: %s", cmd);
    cr_assert_eq(leash_read_file(page, 1 << 24, &html, NULL), 0);
    // escaping: the response's markup is text, and nothing else on the page is a script
    cr_assert_null(strstr(html, "<script"), "a <script> element on the page");
    // (each byte of a stray 0xFF and of an overlong "/" becomes U+FFFD; valid UTF-8 stays)
    cr_assert(strstr(html, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39; &#x241F; end "
                           "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD caf\xc3\xa9"),
              "the response %s is not on the page, escaped", EVIL);
    cr_assert(strstr(html, "A &quot;quoted&quot; &lt;b&gt;prompt&lt;/b&gt;"), "the prompt is not escaped");
    // gold null shows "-", the run without a checkpoint says so, the adaptive target is banded
    cr_assert(strstr(html, "<td class=\"num\">+0.250</td><td class=\"num\">-</td>"), "a null gold is not shown as -");
    cr_assert(strstr(html, "<td>not recorded</td>"), "the run without a checkpoint");
    cr_assert(strstr(html, "adaptive: target 0.5 nats per sequence, horizon 100"), "the PPO run's beta controller");
    cr_assert(strstr(html, "<rect class=\"band\""), "no KL band for the run with a target");
    cr_assert(strstr(html, "adaptive: target 0.1 nats per token, horizon 100"), "the per-token run's beta controller");
    const char *tok = strstr(html, "id=\"plot-kl-token\"");
    cr_assert(tok && strstr(tok, "<rect class=\"band\""), "no per-token KL panel with its band");
    cr_assert(strstr(html, "fired at step 3"), "the alarm's step is not in the table");
    free(html);

    if (!have_chromium()) LEASH_SKIP_OR_FAIL("chromium is not installed (apt-get install chromium), the page was not rendered");
    char png[200];
    snprintf(png, sizeof png, "%s/report.png", w.dir);
    snprintf(cmd, sizeof cmd, "timeout 120 chromium --headless --no-sandbox --disable-gpu --screenshot=%s "
                              "--window-size=1200,2000 file://%s >%s/chromium.log 2>&1", png, page, w.dir);
    int st = system(cmd);
    cr_assert_eq(st, 0, "chromium exited with status %d: %s (its log: %s/chromium.log)", st, cmd, w.dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/html_report_check.py' --png %s >&2", LEASH_SRCDIR, png);
    cr_assert_eq(system(cmd), 0, "the screenshot is blank or not a PNG: %s", cmd);
    rl_scratch_drop(&w);
}

Test(report_html, refuses_a_missing_run) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s report /nonexistent-run --html /tmp/leash-never.html 2>/dev/null", LEASH_BIN);
    cr_assert_eq(system(cmd), 1 << 8);
    cr_assert_neq(access("/tmp/leash-never.html", F_OK), 0, "a page was written for a missing run");
}

/* Review finding: the axes' ticks were accumulated (v += step), which stops moving where the step is below the
 * values' precision: a beta of 1e9 that varies by one double step made `leash report --html` loop forever,
 * writing 1.2 GB in 10 s. The page must come out, small, at once. */
Test(report_html, near_constant_large_values_end, .timeout = 60) {
    char dir[] = "/tmp/leash-html-XXXXXX", path[128], cmd[512];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/run", dir);
    cr_assert_eq(leash_mkdir(path), 0);
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", dir);
    const char *lines = "{\"step\": 1, \"beta\": 1000000000}\n{\"step\": 2, \"beta\": 1000000000.0000001}\n"
                        "{\"step\": 3, \"beta\": 1000000000}\n";
    cr_assert_eq(leash_write_file_atomic(path, lines, strlen(lines)), 0);
    snprintf(cmd, sizeof cmd, "timeout 20 %s report --html %s/out.html %s/run >/dev/null 2>&1", LEASH_BIN, dir, dir);
    cr_assert_eq(system(cmd), 0, "leash report --html did not finish (or failed) on near-constant values");
    snprintf(cmd, sizeof cmd, "test $(stat -c %%s %s/out.html) -lt 100000", dir);
    cr_assert_eq(system(cmd), 0, "the page is not small");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* A scorer's own metrics (gold/correct, rewards/<label>/mean) in the page's first/last table and a plot of
 * them, as `leash report` prints them; and the proxy row says what scored the run (state.json's reward_cmd:
 * a scorer, reward: a reward model). Metrics written by hand, so the means are known: gold/correct is
 * step % 2 over steps 1..10 (first 5: 0.6, last 5: 0.4), rewards/a/mean is step / 10 (0.3 and 0.8). */
static void hand_run(const char *dir, const char *name, const char *state) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(leash_mkdir(path), 0);
    snprintf(path, sizeof path, "%s/%s/checkpoint", dir, name);
    cr_assert_eq(leash_mkdir(path), 0);
    snprintf(path, sizeof path, "%s/%s/checkpoint/state.json", dir, name);
    cr_assert_eq(leash_write_file_atomic(path, state, strlen(state)), 0);
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int s = 1; s <= 10; s++)
        fprintf(f, "{\"step\": %d, \"objective/scores\": %g, \"gold/correct\": %d, \"rewards/a/mean\": %g}\n", s, 0.1 * s, s % 2,
                0.1 * s);
    fclose(f);
}

Test(report_html, scorer_metrics_and_proxy_label, .timeout = 60) {
    char dir[] = "/tmp/leash-html-XXXXXX", cmd[1024], path[300], *html = NULL, *text = NULL;
    cr_assert(mkdtemp(dir));
    hand_run(dir, "cmd", "{\"reward_cmd\": \"./score.sh\", \"reward\": null, \"gold_reward\": false}");
    hand_run(dir, "rm", "{\"reward_cmd\": \"\", \"reward\": \"/x/rm\", \"gold_reward\": false}");
    snprintf(cmd, sizeof cmd, "%s report %s/cmd > %s/cmd.txt && %s report %s/rm > %s/rm.txt && %s report %s/cmd --html "
                              "%s/out.html 2>/dev/null", LEASH_BIN, dir, dir, LEASH_BIN, dir, dir, LEASH_BIN, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/out.html", dir);
    cr_assert_eq(leash_read_file(path, 1 << 24, &html, NULL), 0);
    cr_assert(strstr(html, "<tr><th>gold/correct</th><td class=\"num\">+0.600 &#8594; +0.400</td></tr>"),
              "the page has no gold/correct row with means 0.6 -> 0.4");
    cr_assert(strstr(html, "<tr><th>rewards/a/mean</th><td class=\"num\">+0.300 &#8594; +0.800</td></tr>"),
              "the page has no rewards/a/mean row with means 0.3 -> 0.8");
    const char *plot = strstr(html, "id=\"plot-scorer\"");
    cr_assert(plot && strstr(plot, "data-key=\"gold/correct\"") && strstr(plot, "data-key=\"rewards/a/mean\""),
              "no scorer plot with both curves");
    cr_assert(strstr(html, "<tr><th>proxy reward (scorer)</th>"), "the page's proxy row does not say scorer");
    free(html);
    snprintf(path, sizeof path, "%s/cmd.txt", dir);
    cr_assert_eq(leash_read_file(path, 1 << 24, &text, NULL), 0);
    cr_assert(strstr(text, "proxy reward (scorer)"), "the text report of a scorer run:\n%s", text);
    cr_assert(strstr(text, "gold/correct") && strstr(text, "+0.600 ->      +0.400"), "%s", text);
    free(text);
    snprintf(path, sizeof path, "%s/rm.txt", dir);
    cr_assert_eq(leash_read_file(path, 1 << 24, &text, NULL), 0);
    cr_assert(strstr(text, "proxy reward (reward model)"), "the text report of a reward-model run:\n%s", text);
    free(text);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
