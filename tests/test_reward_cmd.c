/* The reward interface for real use (issue 17, part 3): a --reward-cmd scorer's named metrics and its gold
 * reward, the prompt's dataset columns in its requests, several weighted scorers, --chat-template. Each run is
 * the CLI's, on a tiny model, with a Python scorer that logs every request it gets; the expected values are
 * recomputed here from that log with the scorer's formulas, independently of leash's sums. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "leash/chat.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/rl.h"
#include "testutil.h"

enum { GROUP = 3, BATCH = 2, R = BATCH * GROUP, STEPS = 3 };

/* testutil.h's read_text, which must succeed. */
static char *must_read(const char *path) {
    char *text = read_text(path);
    cr_assert(text, "%s", leash_errmsg());
    return text;
}

/* Python 3 runs the scorers; without it the test cannot run (a test machine has it: tests/ref needs it too). */
static void need_python(void) {
    if (system("python3 -c 'import json' >/dev/null 2>&1") != 0) LEASH_SKIP_OR_FAIL("python3 is not installed");
}

/* A scorer in dir/NAME.py: logs each request line to dir/NAME.log, answers with body's reply (a Python
 * expression of the request q), flushing every line. */
static void scorer(const char *dir, const char *name, const char *reply, char *cmd, size_t cap) {
    char path[256], text[2048];
    snprintf(path, sizeof path, "%s/%s.py", dir, name);
    snprintf(text, sizeof text,
             "import json, sys\n"
             "log = open('%s/%s.log', 'a')\n"
             "for line in sys.stdin:\n"
             "    log.write(line); log.flush()\n"
             "    q = json.loads(line)\n"
             "    n = len(q['response'].encode())\n"
             "    print(json.dumps(%s), flush=True)\n",
             dir, name, reply);
    write_text(path, text);
    snprintf(cmd, cap, "python3 %s", path);
}

/* The prompts with columns: "answer" (a string), "n" (a number), "meta" (an object). */
static void prompts_with_columns(const char *dir, char *path, size_t cap) {
    snprintf(path, cap, "%s/qa.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    const char *q[] = {"The food was", "My cabin felt", "This boot sounded", "Their class seemed"};
    for (int i = 0; i < 4; i++)
        fprintf(f, "{\"prompt\": \"%s\", \"answer\": \"%d\", \"n\": %d, \"meta\": {\"k\": [1, 2.5]}}\n", q[i], 10 + i, i);
    cr_assert_eq(fclose(f), 0);
}

static int run_grpo(const rl_scratch *w, const char *prompts, const char *extra, char *out, size_t cap) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s grpo --policy %s --prompts %s --out %s --overwrite --steps %d --batch %d "
             "--group %d --max-new 6 --seed 3 --sample-every 1 -q %s", LEASH_BIN, w->dir, prompts, w->out, STEPS, BATCH, GROUP, extra);
    return run_capture(cmd, out, cap);
}

/* The requests of a scorer's log by id (each parsed; NULL where missing), ids 0 .. STEPS * R - 1. */
static void load_requests(const char *log, cJSON **req) {
    char *text = must_read(log);
    for (int i = 0; i < STEPS * R; i++) req[i] = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *q = cJSON_Parse(line);
        cr_assert(q, "not JSON: %s", line);
        int id = cJSON_GetObjectItem(q, "id")->valueint;
        cr_assert(id >= 0 && id < STEPS * R && !req[id], "id %d", id);
        req[id] = q;
    }
    free(text);
    for (int i = 0; i < STEPS * R; i++) cr_assert(req[i], "request %d never came", i);
}

/* Line `step` (1-based) of metrics.jsonl. */
static cJSON *metrics_line(const char *run, int step) {
    char path[256];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    char *text = must_read(path), *line = strtok(text, "\n");
    for (int s = 1; s < step && line; s++) line = strtok(NULL, "\n");
    cr_assert(line, "%s has no line %d", path, step);
    cJSON *m = cJSON_Parse(line);
    free(text);
    cr_assert(m);
    return m;
}

static double value(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    cr_assert(cJSON_IsNumber(v), "no number \"%s\"", key);
    return v->valuedouble;
}

static size_t resp_bytes(const cJSON *q) { return strlen(cJSON_GetObjectItem(q, "response")->valuestring); }

/* Item 1 and 2: every request carries the prompt's columns as written; each metric's batch mean is logged under
 * its name, gold/reward as the run's gold reward (metrics.jsonl, samples.jsonl's "gold", the report). */
Test(reward_cmd, metrics_are_batch_means_and_columns_reach_the_scorer, .timeout = 120) {
    need_python();
    rl_scratch w;
    rl_scratch_make(&w, "rcmd-metrics");
    char prompts[256], cmd[512], extra[1024], out[16384], log[256];
    prompts_with_columns(w.dir, prompts, sizeof prompts);
    scorer(w.dir, "s", "{'id': q['id'], 'reward': (n % 4) / 4, 'metrics': {'gold/len': n, 'gold/reward': 1 - (n % 3) / 3, "
                      "'gold/n': q['n'] * 0.5, 'diag/x': q['n'] + 0.25}}", cmd, sizeof cmd);
    snprintf(extra, sizeof extra, "--reward-cmd '%s'", cmd);
    int st = run_grpo(&w, prompts, extra, out, sizeof out);
    cr_assert_eq(st, 0, "exit %d: %s", st, out);
    snprintf(log, sizeof log, "%s/s.log", w.dir);
    cJSON *req[STEPS * R];
    load_requests(log, req);
    // the columns, after id, prompt and response, with their JSON values as written
    char *raw = must_read(log);
    cr_assert(strstr(raw, "\"answer\":\"1") && strstr(raw, "\"n\":") && strstr(raw, "\"meta\":{\"k\":[1,2.5]}"), "%.400s", raw);
    const cJSON *k = req[0]->child;
    const char *order[] = {"id", "prompt", "response", "answer", "n", "meta"};
    for (int i = 0; i < 6; i++, k = k->next) cr_assert(k && !strcmp(k->string, order[i]), "key %d: %s", i, k ? k->string : "none");
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(req[0], "answer")) && cJSON_IsNumber(cJSON_GetObjectItem(req[0], "n")));
    for (int i = 0; i < STEPS * R; i++) { // each request's columns are those of its own prompt's line
        const char *p = cJSON_GetObjectItem(req[i], "prompt")->valuestring, *a = cJSON_GetObjectItem(req[i], "answer")->valuestring;
        int n = cJSON_GetObjectItem(req[i], "n")->valueint;
        const char *q[] = {"The food was", "My cabin felt", "This boot sounded", "Their class seemed"};
        cr_assert(!strcmp(p, q[n]) && atoi(a) == 10 + n, "request %d: prompt '%s' with n %d, answer %s", i, p, n, a);
    }
    free(raw);
    // the batch means, recomputed from the requests
    double worst = 0.0;
    for (int s = 0; s < STEPS; s++) {
        double len = 0, gold = 0, nn = 0, x = 0, rew = 0;
        for (int b = 0; b < R; b++) {
            const cJSON *q = req[s * R + b];
            size_t n = resp_bytes(q);
            int col = cJSON_GetObjectItem(q, "n")->valueint;
            len += n, gold += 1.0 - (n % 3) / 3.0, nn += col * 0.5, x += col + 0.25, rew += (n % 4) / 4.0;
        }
        cJSON *m = metrics_line(w.out, s + 1);
        double d[] = {fabs(value(m, "gold/len") - len / R) / (len / R), fabs(value(m, "gold/n") - nn / R),
                      fabs(value(m, "diag/x") - x / R), fabs(value(m, "gold/reward") - gold / R) - 5e-7,
                      fabs(value(m, "objective/scores") - rew / R) - 5e-7};
        for (int i = 0; i < 5; i++) worst = fmax(worst, d[i]);
        cr_assert(cJSON_IsNull(cJSON_GetObjectItem(m, "gold/grammatical")), "no world: gold/grammatical is null");
        int count = 0; // gold/reward once, in its place: not again among the scorer's metrics
        for (const cJSON *v = m->child; v; v = v->next) count += !strcmp(v->string, "gold/reward");
        cr_assert_eq(count, 1);
        cJSON_Delete(m);
    }
    fprintf(stderr, "scorer metrics: worst difference from the means of the requests %.3g (printed digits: 1e-7 relative)\n", worst);
    cr_assert(worst < 1e-7, "worst %.3g", worst);
    // samples.jsonl: each sampled row's gold is its scorer's gold/reward
    char path[256];
    snprintf(path, sizeof path, "%s/samples.jsonl", w.out);
    char *samples = must_read(path);
    int rows = 0;
    for (char *line = strtok(samples, "\n"); line; line = strtok(NULL, "\n"), rows++) {
        cJSON *o = cJSON_Parse(line);
        int s = cJSON_GetObjectItem(o, "step")->valueint, b = rows % 4;
        const cJSON *q = req[(s - 1) * R + b];
        cr_assert_str_eq(cJSON_GetObjectItem(o, "response")->valuestring, cJSON_GetObjectItem(q, "response")->valuestring);
        cr_assert(fabs(value(o, "gold") - (1.0 - (resp_bytes(q) % 3) / 3.0)) < 5e-5, "%s", line);
        cJSON_Delete(o);
    }
    cr_assert_eq(rows, 4 * STEPS);
    free(samples);
    // the report shows the gold reward and the scorer's gold/* rows (not diag/x)
    snprintf(extra, sizeof extra, "%s report %s", LEASH_BIN, w.out);
    st = run_capture(extra, out, sizeof out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "gold/len") && strstr(out, "gold/n") && !strstr(out, "diag/x"), "%s", out);
    const char *g = strstr(out, "gold reward (the truth)");
    cr_assert(g && strncmp(g + 32, " | ", 3) == 0 && g[35] != '-', "%.200s", g ? g : out);
    for (int i = 0; i < STEPS * R; i++) cJSON_Delete(req[i]);
    rl_scratch_drop(&w);
}

/* Item 1: an answer whose metrics names differ from the first answer's stops the run, naming the id and key. */
Test(reward_cmd, other_metric_names_are_an_error_naming_id_and_key, .timeout = 120) {
    need_python();
    rl_scratch w;
    rl_scratch_make(&w, "rcmd-names");
    char cmd[512], extra[1024], out[16384];
    scorer(w.dir, "extra", "{'id': q['id'], 'reward': 0, 'metrics': {'gold/a': 1, **({'gold/b': 2} if q['id'] == 4 else {})}}", cmd,
           sizeof cmd);
    snprintf(extra, sizeof extra, "--reward-cmd '%s'", cmd);
    int st = run_grpo(&w, w.prompts, extra, out, sizeof out);
    cr_assert_eq(st, 1, "exit %d: %s", st, out);
    cr_assert(strstr(out, "request 4") && strstr(out, "\"gold/b\"") && strstr(out, "same names"), "%s", out);
    scorer(w.dir, "fewer", "{'id': q['id'], 'reward': 0, 'metrics': {'gold/a': 1, 'gold/b': 2} if q['id'] != 7 else {'gold/a': 1}}",
           cmd, sizeof cmd);
    snprintf(extra, sizeof extra, "--reward-cmd '%s'", cmd);
    st = run_grpo(&w, w.prompts, extra, out, sizeof out);
    cr_assert_eq(st, 1, "exit %d: %s", st, out);
    cr_assert(strstr(out, "request 7 lacks metrics key \"gold/b\""), "%s", out);
    scorer(w.dir, "clash", "{'id': q['id'], 'reward': 0, 'metrics': {'objective/kl': 1}}", cmd, sizeof cmd);
    snprintf(extra, sizeof extra, "--reward-cmd '%s'", cmd);
    st = run_grpo(&w, w.prompts, extra, out, sizeof out);
    cr_assert_eq(st, 1, "exit %d: %s", st, out);
    cr_assert(strstr(out, "\"objective/kl\", a name leash logs itself"), "%s", out);
    scorer(w.dir, "nan", "{'id': q['id'], 'reward': 0, 'metrics': {'gold/a': 'x'}}", cmd, sizeof cmd);
    snprintf(extra, sizeof extra, "--reward-cmd '%s'", cmd);
    st = run_grpo(&w, w.prompts, extra, out, sizeof out);
    cr_assert_eq(st, 1, "exit %d: %s", st, out);
    cr_assert(strstr(out, "request 0: metrics key \"gold/a\" must be a named finite number"), "%s", out);
    fprintf(stderr, "metric name errors: %s", strstr(out, "leash grpo:"));
    rl_scratch_drop(&w);
}

/* Item 2: a column named like a request field is refused when the prompts are loaded, naming file, line, column. */
Test(reward_cmd, reserved_columns_are_refused_naming_file_line_and_column, .timeout = 60) {
    rl_scratch w;
    rl_scratch_make(&w, "rcmd-reserved");
    char path[256], out[8192];
    const char *bad[] = {"id", "response", "completion"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/bad.jsonl", w.dir);
        char text[256];
        snprintf(text, sizeof text, "{\"prompt\": \"The food was\"}\n\n{\"prompt\": \"My cabin felt\", \"%s\": 3}\n", bad[i]);
        write_text(path, text);
        int st = run_grpo(&w, path, "--reward-cmd cat", out, sizeof out);
        char want[256];
        snprintf(want, sizeof want, "bad.jsonl:3: the column \"%s\" is reserved", bad[i]);
        cr_assert_eq(st, 1, "exit %d: %s", st, out);
        cr_assert(strstr(out, want), "want '%s' in: %s", want, out);
    }
    // without a reward command the columns go nowhere and are not checked
    int st = run_grpo(&w, path, "--gold-reward", out, sizeof out);
    cr_assert_eq(st, 0, "exit %d: %s", st, out);
    rl_scratch_drop(&w);
}

/* Item 3: two scorers with weights and labels: the reward is their weighted sum, each logged as
 * rewards/<label>/mean, their metrics pooled; a list of the wrong length is refused naming the option. */
Test(reward_cmd, several_scorers_are_a_weighted_sum_logged_by_label, .timeout = 120) {
    need_python();
    rl_scratch w;
    rl_scratch_make(&w, "rcmd-several");
    char c0[512], c1[512], extra[4096], out[16384], log[256];
    scorer(w.dir, "s0", "{'id': q['id'], 'reward': (n % 4) / 4, 'metrics': {'gold/a': n}}", c0, sizeof c0);
    scorer(w.dir, "s1", "{'id': q['id'], 'reward': (n % 3) / 3, 'metrics': {'gold/b': n % 2}}", c1, sizeof c1);
    snprintf(extra, sizeof extra, "--reward-cmd '%s' --reward-cmd '%s' --reward-weights 1,-0.5 --reward-names len,mod3", c0, c1);
    int st = run_grpo(&w, w.prompts, extra, out, sizeof out);
    cr_assert_eq(st, 0, "exit %d: %s", st, out);
    cJSON *r0[STEPS * R], *r1[STEPS * R];
    snprintf(log, sizeof log, "%s/s0.log", w.dir);
    load_requests(log, r0);
    snprintf(log, sizeof log, "%s/s1.log", w.dir);
    load_requests(log, r1); // every request reached both
    double worst = 0.0;
    for (int s = 0; s < STEPS; s++) {
        double sum = 0, a = 0, b = 0, ga = 0, gb = 0;
        for (int k = 0; k < R; k++) {
            size_t n = resp_bytes(r0[s * R + k]);
            cr_assert_str_eq(cJSON_GetObjectItem(r0[s * R + k], "response")->valuestring,
                             cJSON_GetObjectItem(r1[s * R + k], "response")->valuestring);
            a += (n % 4) / 4.0, b += (n % 3) / 3.0, sum += (n % 4) / 4.0 - 0.5 * ((n % 3) / 3.0), ga += n, gb += n % 2;
        }
        cJSON *m = metrics_line(w.out, s + 1);
        double d[] = {fabs(value(m, "objective/scores") - sum / R) - 5e-7, fabs(value(m, "rewards/len/mean") - a / R),
                      fabs(value(m, "rewards/mod3/mean") - b / R), fabs(value(m, "gold/a") - ga / R) / (ga / R),
                      fabs(value(m, "gold/b") - gb / R)};
        for (int i = 0; i < 5; i++) worst = fmax(worst, d[i]);
        cr_assert(cJSON_IsNull(cJSON_GetObjectItem(m, "gold/reward")), "no scorer reports gold/reward");
        cJSON_Delete(m);
    }
    fprintf(stderr, "two scorers: worst difference from the requests' weighted sums %.3g\n", worst);
    cr_assert(worst < 1e-7, "worst %.3g", worst);
    for (int i = 0; i < STEPS * R; i++) cJSON_Delete(r0[i]), cJSON_Delete(r1[i]);
    char path[256];
    snprintf(path, sizeof path, "%s/samples.jsonl", w.out);
    char *samples = must_read(path);
    cr_assert(strstr(samples, "\"gold\": null") && !strstr(samples, "\"gold\": 0"), "no gold reward: null, not 0: %.200s", samples);
    free(samples);
    // the commands, their labels and weights define the run: another weight is refused on --resume
    snprintf(extra, sizeof extra, "OMP_NUM_THREADS=1 %s grpo --policy %s --prompts %s --out %s --resume --steps %d --batch %d "
             "--group %d --max-new 6 --seed 3 -q --reward-cmd '%s' --reward-cmd '%s' --reward-weights 1,0.5 --reward-names len,mod3",
             LEASH_BIN, w.dir, w.prompts, w.out, STEPS + 1, BATCH, GROUP, c0, c1);
    st = run_capture(extra, out, sizeof out);
    cr_assert(st == 1 && strstr(out, "--reward-cmd \"len x 1: ") && strstr(out, "mod3 x -0.5: ") && strstr(out, "mod3 x 0.5: "),
              "exit %d: %s", st, out);
    snprintf(extra, sizeof extra, "--reward-cmd '%s' --reward-cmd '%s' --reward-weights 1", c0, c1);
    st = run_grpo(&w, w.prompts, extra, out, sizeof out);
    cr_assert(st == 2 && strstr(out, "--reward-weights \"1\" has 1 weight(s) for 2 --reward-cmd"), "exit %d: %s", st, out);
    snprintf(extra, sizeof extra, "--reward-cmd '%s' --reward-cmd '%s' --reward-names a,a", c0, c1);
    st = run_grpo(&w, w.prompts, extra, out, sizeof out);
    cr_assert(st == 1 && strstr(out, "\"a\" names two reward commands"), "exit %d: %s", st, out);
    scorer(w.dir, "s2", "{'id': q['id'], 'reward': 0, 'metrics': {'gold/a': 1}}", c1, sizeof c1);
    snprintf(extra, sizeof extra, "--reward-cmd '%s' --reward-cmd '%s'", c0, c1);
    st = run_grpo(&w, w.prompts, extra, out, sizeof out);
    cr_assert(st == 1 && strstr(out, "reward command cmd1: answer to request 0: metrics key \"gold/a\" is reported by another"),
              "exit %d: %s", st, out);
    rl_scratch_drop(&w);
}

typedef struct {
    const leash_tokenizer *tok;
    const char *expect; // the templated prompt
    int checked;
} chat_check;

/* Every row's prompt tokens (left-padded to P) are the templated prompt's, and nothing else before them. */
static int check_prompt_tokens(const leash_rl_progress *p, void *vctx) {
    chat_check *c = vctx;
    int *ids = NULL;
    size_t n = 0, cap = 0;
    cr_assert_eq(leash_tokenizer_encode(c->tok, c->expect, strlen(c->expect), 1, &ids, &n, &cap), 0, "%s", leash_errmsg());
    const leash_rl_batch *b = p->batch;
    cr_assert_eq((int)n, b->P, "the prompt is %d tokens, the templated text %zu", b->P, n);
    for (int r = 0; r < b->rows; r++)
        for (int t = 0; t < b->P; t++)
            cr_assert_eq(b->tokens[(size_t)r * b->T + t], ids[t], "row %d, token %d", r, t);
    free(ids);
    c->checked++;
    return 0;
}

/* Item 4: --chat-template wraps a plain question in the policy's own chat template (here Qwen2's ChatML with its
 * default system message, in chat_template.jinja): the policy's prompt tokens are those of the text written out
 * here by hand; the scorer and samples.jsonl get the plain question. */
Test(reward_cmd, chat_template_wraps_plain_questions, .timeout = 120) {
    need_python();
    rl_scratch w;
    snprintf(w.dir, sizeof w.dir, "/tmp/leash-rcmd-chat-XXXXXX");
    cr_assert(mkdtemp(w.dir));
    snprintf(w.out, sizeof w.out, "%s/run", w.dir);
    const char *text = "the food was good. my cabin felt cold. you are a helpful assistant. system user assistant\n";
    char corpus[8192] = "";
    for (int i = 0; i < 60; i++) strcat(corpus, text);
    tiny_model_dir(w.dir, corpus, strlen(corpus), 300, 128);
    char path[256], cmd[512], log[256];
    snprintf(path, sizeof path, "%s/chat_template.jinja", w.dir);
    write_text(path, "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
                     "are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
                     "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
                     "'<|im_start|>assistant\\n' }}{% endif %}");
    snprintf(path, sizeof path, "%s/q.jsonl", w.dir);
    write_text(path, "{\"prompt\": \"my cabin felt\", \"answer\": \"cold\"}\n");
    scorer(w.dir, "s", "{'id': q['id'], 'reward': float(q['answer'] in q['response'])}", cmd, sizeof cmd);
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = w.dir, c.prompts = path, c.out_dir = w.out, c.chat_template = 1;
    c.reward.kind = LEASH_REWARD_COMMAND, c.reward.cmd = cmd;
    c.steps = 2, c.batch = 2, c.grpo.group = 2, c.max_new = 4, c.sample_every = 1;
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, w.dir), 0);
    chat_check check = {tok, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nmy cabin felt<|im_end|>\n"
                             "<|im_start|>assistant\n", 0};
    leash_rl_progress fin;
    cr_assert_eq(leash_rl_train(&c, check_prompt_tokens, &check, &fin), 0, "%s", leash_errmsg());
    cr_assert_eq(check.checked, 2);
    c.resume = 1, c.steps = 3, c.chat_template = 0; // the prompts' template defines the run: kept on --resume
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, &fin), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "q.jsonl (--chat-template)\", this run asks for \""), "%s", leash_errmsg());
    c.resume = 0, c.steps = 2, c.chat_template = 1;
    snprintf(log, sizeof log, "%s/s.log", w.dir);
    char *reqs = must_read(log);
    cr_assert(strstr(reqs, "\"prompt\":\"my cabin felt\",\"response\"") && !strstr(reqs, "im_start"), "%.300s", reqs);
    free(reqs);
    snprintf(log, sizeof log, "%s/samples.jsonl", w.out);
    char *samples = must_read(log);
    cr_assert(strstr(samples, "\"prompt\": \"my cabin felt\"") && !strstr(samples, "im_start"), "%.300s", samples);
    free(samples);
    // without --chat-template the same prompt is its own text
    c.chat_template = 0, c.out_dir = w.out, c.resume = 0;
    snprintf(log, sizeof log, "rm -rf %s", w.out);
    cr_assert_eq(system(log), 0);
    check.expect = "my cabin felt", check.checked = 0;
    cr_assert_eq(leash_rl_train(&c, check_prompt_tokens, &check, &fin), 0, "%s", leash_errmsg());
    cr_assert_eq(check.checked, 2);
    // a policy without a template: an error naming the directory's files
    snprintf(log, sizeof log, "rm -rf %s %s/chat_template.jinja", w.out, w.dir);
    cr_assert_eq(system(log), 0);
    c.chat_template = 1;
    cr_assert_neq(leash_rl_train(&c, NULL, NULL, &fin), 0);
    cr_assert(strstr(leash_errmsg(), "--chat-template: ") && strstr(leash_errmsg(), "has no chat template"), "%s", leash_errmsg());
    fprintf(stderr, "--chat-template without a template: %s\n", leash_errmsg());
    leash_tokenizer_free(tok);
    rl_scratch_drop(&w);
}
