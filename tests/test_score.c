/* `leash score` end to end on a small model made here: its per-token log-probs equal the library's
 * (leash_gpt_forward + leash_gpt_token_logprobs) bit for bit, the sum, mean and perplexity follow from them,
 * and bad options, missing files and too-long texts are clear errors. Chat templates (src/chat.c) are
 * checked against Hugging Face transformers' apply_chat_template (tests/ref/score_ref.py, in the venv
 * scripts/deps.sh --ref makes) for SmolLM2's template as its GGUF file carries it, Qwen2's and Llama 3's,
 * on messages with newlines, quotes, unicode and surrounding whitespace: the rendered texts must be equal
 * byte for byte. On the real SmolLM2-135M-Instruct GGUF file, leash score's ids and log-probs (plain and
 * --chat --reply) are compared with a float64 PyTorch reference (tests/ref/smollm2_ref.py). Those skip with a printed reason when the venv or the file is missing, unless
 * LEASH_REQUIRE_REF=1 (CI). */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "leash/chat.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/tokenizer.h"
#include "testutil.h"

/* The published templates (tokenizer_config.json "chat_template" of Qwen/Qwen2-0.5B-Instruct and
 * meta-llama/Meta-Llama-3-8B-Instruct); SmolLM2's is read from its GGUF file. */
static const char *qwen2_template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou "
    "are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";
static const char *llama3_template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

static const char *corpus = "the cat sat on the mat. the dog ate the bone. a bird sang in the tree.\n"
                            "the cat saw the bird. the dog saw the cat. \"quotes\" and newlines\n";

static char out[1 << 20];

static void scratch(char *dir, size_t cap) {
    snprintf(dir, cap, "/tmp/leash-score-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void drop(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The tiny model (chat templates need more than 32 positions: their markers are plain text to its
 * tokenizer), optionally with a BOS token. */
static void model_dir(const char *dir, int n_positions, int with_bos) {
    tiny_model_dir(dir, corpus, strlen(corpus), 300, n_positions);
    if (!with_bos) return;
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, dir), 0, "%s", leash_errmsg());
    leash_gpt_config cfg = *leash_gpt_cfg(m), *c = &cfg;
    leash_gpt *b;
    c->bos_token_id = c->eos_token_id;
    cr_assert_eq(leash_gpt_create(&b, c), 0);
    memcpy(leash_gpt_params(b), leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float));
    cr_assert_eq(leash_gpt_save(b, dir), 0, "%s", leash_errmsg());
    leash_gpt_free(b);
    leash_gpt_free(m);
}

/* The library's log-probs of ids (n): lp[t] = log p(ids[t + 1] | ids[<= t]), as leash score computes them. */
static void library_logprobs(leash_gpt *m, const int *ids, int n, float temperature, float *lp) {
    int *targets = malloc((size_t)n * sizeof *targets);
    for (int t = 0; t < n; t++) targets[t] = t + 1 < n ? ids[t + 1] : -1;
    cr_assert_eq(leash_gpt_forward(m, ids, NULL, 1, n), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_token_logprobs(m, targets, temperature, lp, NULL), 0, "%s", leash_errmsg());
    free(targets);
}

/* One JSON line of leash score against the library: ids, log-probs bit for bit, sum/mean/perplexity. */
static void check_line(const cJSON *j, leash_gpt *m, const int *want_ids, int n, float temperature) {
    const cJSON *tokens = cJSON_GetObjectItem(j, "tokens"), *lps = cJSON_GetObjectItem(j, "logprobs");
    cr_assert_eq(cJSON_GetArraySize(tokens), n, "token count: CLI %d, library %d", cJSON_GetArraySize(tokens), n);
    cr_assert_eq(cJSON_GetArraySize(lps), n);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "token_texts")), n);
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(lps, 0)), "the first token has no prediction: its log-prob is null");
    float *lp = malloc((size_t)n * sizeof *lp);
    library_logprobs(m, want_ids, n, temperature, lp);
    double sum = 0.0, worst = 0.0;
    for (int t = 0; t < n; t++) {
        cr_assert_eq(cJSON_GetArrayItem(tokens, t)->valueint, want_ids[t], "token %d", t);
        if (t == 0) continue;
        float got = (float)cJSON_GetArrayItem(lps, t)->valuedouble;
        worst = fmax(worst, fabs((double)got - lp[t - 1]));
        cr_assert(memcmp(&got, &lp[t - 1], sizeof got) == 0, "token %d: CLI %.9g, library %.9g", t, got, lp[t - 1]);
        sum += lp[t - 1];
    }
    fprintf(stderr, "score: %d tokens at T = %g, worst |CLI - library| log-prob = %g\n", n, temperature, worst);
    double s = cJSON_GetObjectItem(j, "sum_logprob")->valuedouble, mean = cJSON_GetObjectItem(j, "mean_logprob")->valuedouble;
    cr_assert_eq(cJSON_GetObjectItem(j, "n_scored")->valueint, n - 1);
    cr_assert(fabs(s - sum) <= 1e-12 * fabs(sum), "sum %.17g, want %.17g", s, sum);
    cr_assert(fabs(mean - sum / (n - 1)) <= 1e-12 * fabs(mean), "mean %.17g, want %.17g", mean, sum / (n - 1));
    double ppl = cJSON_GetObjectItem(j, "perplexity")->valuedouble;
    cr_assert(fabs(ppl - exp(-mean)) <= 1e-12 * ppl, "perplexity %.17g, want exp(-mean) %.17g", ppl, exp(-mean));
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "units"), "sum_logprob")->valuestring, "nats per sequence");
    free(lp);
}

/* Encodes text with the model directory's tokenizer (special tokens allowed, as leash score does). */
static int *encode(const char *dir, const char *text, int bos, int *n) {
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, dir), 0, "%s", leash_errmsg());
    int *ids = NULL;
    size_t k = 0, cap = 0;
    if (bos >= 0) ids = malloc(sizeof *ids), cap = 1, ids[k++] = bos;
    cr_assert_eq(leash_tokenizer_encode(tok, text, strlen(text), 1, &ids, &k, &cap), 0, "%s", leash_errmsg());
    leash_tokenizer_free(tok);
    *n = (int)k;
    return ids;
}

/* Parses the i-th JSON line of out. */
static cJSON *line(int i) {
    const char *p = out;
    for (int k = 0; k < i; k++) {
        p = strchr(p, '\n');
        cr_assert(p, "fewer than %d lines: %s", i + 1, out);
        p++;
    }
    cJSON *j = cJSON_ParseWithOpts(p, NULL, 0);
    cr_assert(j, "line %d is not JSON: %s", i, out);
    return j;
}

Test(score, logprobs_equal_the_library_bit_for_bit, .timeout = 60) {
    char dir[64], cmd[1024];
    scratch(dir, sizeof dir);
    model_dir(dir, 32, 0);
    const char *texts[2] = {"the cat sat on the mat.", "a \"bird\" saw the dog<|endoftext|> the"};
    const float temps[2] = {1.0f, 0.7f};
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, dir), 0, "%s", leash_errmsg());
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, LEASH_BIN " score %s --json --text '%s' --text 'the dog ate the bone.' -t %g", dir,
                 texts[k], temps[k]);
        cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
        for (int i = 0; i < 2; i++) {
            cJSON *j = line(i);
            int n, *ids = encode(dir, i == 0 ? texts[k] : "the dog ate the bone.", -1, &n);
            check_line(j, m, ids, n, temps[k]);
            cr_assert_eq(cJSON_GetObjectItem(j, "temperature")->valuedouble, temps[k]);
            cr_assert(!cJSON_GetObjectItem(j, "reply_start"), "no reply without --chat --reply");
            free(ids);
            cJSON_Delete(j);
        }
    }
    // the special token in the second text is one id, not its characters
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, dir), 0);
    int eot = leash_tokenizer_special_id(tok, "<|endoftext|>"), n, *ids = encode(dir, texts[1], -1, &n), found = 0;
    for (int t = 0; t < n; t++) found |= ids[t] == eot;
    cr_assert(found, "<|endoftext|> in the text should be the special token %d", eot);
    free(ids);
    leash_tokenizer_free(tok);
    leash_gpt_free(m);
    drop(dir);
}

Test(score, bos_is_prepended_and_its_successor_scored, .timeout = 60) {
    char dir[64], cmd[1024];
    scratch(dir, sizeof dir);
    model_dir(dir, 32, 1);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, dir), 0, "%s", leash_errmsg());
    int bos = leash_gpt_cfg(m)->bos_token_id, n, *ids = encode(dir, "the cat saw the bird.", bos, &n);
    snprintf(cmd, sizeof cmd, LEASH_BIN " score %s --json --bos --text 'the cat saw the bird.'", dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    cJSON *j = line(0);
    check_line(j, m, ids, n, 1.0f);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "bos")));
    cJSON_Delete(j);
    free(ids);
    leash_gpt_free(m);
    drop(dir);
}

Test(score, jsonl_field_and_the_plain_table, .timeout = 60) {
    char dir[64], cmd[1024], path[128];
    scratch(dir, sizeof dir);
    model_dir(dir, 32, 0);
    snprintf(path, sizeof path, "%s/texts.jsonl", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"body\": \"the cat sat on the mat.\", \"id\": 1}\n\n{\"body\": \"new\\nline\", \"id\": 2}\n");
    fclose(f);
    static char want[1 << 16];
    snprintf(cmd, sizeof cmd, LEASH_BIN " score %s --json --text 'the cat sat on the mat.' --text 'new\nline'", dir);
    cr_assert_eq(run_capture(cmd, want, sizeof want), 0, "%s", want);
    snprintf(cmd, sizeof cmd, LEASH_BIN " score %s --json --jsonl %s --field body", dir, path);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    for (int i = 0; i < 2; i++) {
        cJSON *a = line(i);
        cJSON *b = cJSON_ParseWithOpts(i ? strchr(want, '\n') + 1 : want, NULL, 0);
        cr_assert(cJSON_Compare(cJSON_GetObjectItem(a, "logprobs"), cJSON_GetObjectItem(b, "logprobs"), 1));
        cr_assert(strstr(cJSON_GetObjectItem(a, "source")->valuestring, "row"));
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
    snprintf(cmd, sizeof cmd, LEASH_BIN " score %s --text 'the cat sat on the mat.'", dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "nats per sequence") && strstr(out, "nats per token") && strstr(out, "perplexity") &&
                  strstr(out, "not scored") && strstr(out, "\" cat\""),
              "the table lacks units or tokens: %s", out);
    drop(dir);
}

/* Each bad input: exit status 1 or 2 and a message containing `want`. */
static void expect_error(const char *cmd, const char *want) {
    int st = run_capture(cmd, out, sizeof out);
    cr_assert(st == 1 || st == 2, "'%s' exited %d: %s", cmd, st, out);
    cr_assert(strstr(out, want), "'%s': message lacks '%s': %s", cmd, want, out);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

Test(score, bad_input_is_a_clear_error, .timeout = 60) {
    char dir[64], cmd[2048], path[128], longtext[1024] = "";
    scratch(dir, sizeof dir);
    model_dir(dir, 32, 0);
    for (int i = 0; i < 40; i++) strcat(longtext, "the cat sat. ");
#define E(want, ...) (snprintf(cmd, sizeof cmd, __VA_ARGS__), expect_error(cmd, want))
    E("need one MODEL", LEASH_BIN " score --text hi");
    E("need --text TEXT or --jsonl FILE", LEASH_BIN " score %s", dir);
    E("do not go together", LEASH_BIN " score %s --text a --jsonl x.jsonl", dir);
    E("there is no --jsonl", LEASH_BIN " score %s --text a --field f", dir);
    E("--temperature '0' must be a number", LEASH_BIN " score %s --text 'the cat' -t 0", dir);
    E("--temperature 'abc' must be a number", LEASH_BIN " score %s --text 'the cat' -t abc", dir);
    E("usage: leash score", LEASH_BIN " score %s --text 'the cat' --bogus", dir);
    E("go with --chat", LEASH_BIN " score %s --text a --reply b", dir);
    E("one --reply per --text", LEASH_BIN " score %s --chat --text a --text b --reply c", dir);
    E("--bos and --chat", LEASH_BIN " score %s --chat --bos --text a", dir);
    E("/nonexistent/model", LEASH_BIN " score /nonexistent/model --text a");
    E("/nonexistent/t.jsonl", LEASH_BIN " score %s --jsonl /nonexistent/t.jsonl", dir);
    E("has no BOS token", LEASH_BIN " score %s --bos --text 'the cat'", dir);
    E("--text 2 has ", LEASH_BIN " score %s --text 'the cat' --text '%s'", dir, longtext);
    E("more than the model's n_positions = 32", LEASH_BIN " score %s --text '%s'", dir, longtext);
    E("--text 1 has 1 token(s): nothing to score", LEASH_BIN " score %s --text t", dir);
    snprintf(path, sizeof path, "%s/t.jsonl", dir);
    write_file(path, "{\"text\": \"the cat\"}\n{\"body\": \"x\"}\n");
    E("t.jsonl:2: missing string \"text\"", LEASH_BIN " score %s --jsonl %s", dir, path);
    write_file(path, "\n\n");
    E("t.jsonl: no records", LEASH_BIN " score %s --jsonl %s", dir, path);
    write_file(path, "{\"text\": \"the cat\"}\n{\"text\": \"the cat sat\"}\n");
    E("t.jsonl:1: missing string \"reply\"", LEASH_BIN " score %s --chat --jsonl %s --reply-field reply", dir, path);
    E("has no chat template (neither chat_template.jinja nor tokenizer_config.json", LEASH_BIN " score %s --chat --text a", dir);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_file(path, "{\"bos_token\": \"<s>\"}");
    E("tokenizer_config.json has no \"chat_template\"", LEASH_BIN " score %s --chat --text a", dir);
    // Mistral's template: not a family leash renders
    write_file(path, "{\"chat_template\": \"{{ bos_token }}{% for message in messages %}{% if message['role'] == "
                     "'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + "
                     "eos_token}}{% endif %}{% endfor %}\"}");
    E("tokenizer_config.json: the chat template is not one leash can render", LEASH_BIN " score %s --chat --text a", dir);
    E("pass the formatted conversation with --text", LEASH_BIN " score %s --chat --text a", dir);
#undef E
    drop(dir);
}

/* ---- chat templates ------------------------------------------------------------------------------- */

static const char *hf_python(void) {
    const char *p = getenv("LEASH_HF_PYTHON");
    return p && *p ? p : "/opt/leash-hf/bin/python";
}

static const char *gguf_path(void) {
    const char *p = getenv("LEASH_SMOLLM2_GGUF");
    return p && *p ? p : "/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf";
}

static void need_hf(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import transformers, jinja2, tokenizers' >/dev/null 2>&1", hf_python());
    if (system(cmd) != 0)
        LEASH_SKIP_OR_FAIL("transformers, jinja2 or tokenizers is not in %s (scripts/deps.sh --ref makes that venv; or "
                           "set LEASH_HF_PYTHON)",
                           hf_python());
}

/* The user messages and replies rendered in every template: newlines, quotes, unicode, whitespace that
 * Llama 3's trim removes (U+3000 and U+00A0 included) and text that looks like a template. */
static const char *users[] = {"Hi!", "Two\nlines, \"quoted\" and 'single'", "  caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac "
                              "\xf0\x9f\x99\x82\n\t", "\xe3\x80\x80\xc2\xa0{{ not a tag }} {% nor this %}\xc2\xa0",
                              "back\\slash"};
static const char *replies[] = {"Hello.", " leading space", "Ol\xc3\xa1!\n", "", "\\n"};
enum { N_MSG = sizeof users / sizeof users[0] };

/* The cases: for each message, the prompt with the generation prompt, the conversation with the reply,
 * and the conversation with a system message first. */
static cJSON *cases(void) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < N_MSG; i++)
        for (int k = 0; k < 3; k++) {
            cJSON *c = cJSON_CreateObject(), *msgs = cJSON_CreateArray(), *msg;
            if (k == 2) {
                cJSON_AddItemToArray(msgs, msg = cJSON_CreateObject());
                cJSON_AddStringToObject(msg, "role", "system");
                cJSON_AddStringToObject(msg, "content", "Be brief.\n");
            }
            cJSON_AddItemToArray(msgs, msg = cJSON_CreateObject());
            cJSON_AddStringToObject(msg, "role", "user");
            cJSON_AddStringToObject(msg, "content", users[i]);
            if (k >= 1) {
                cJSON_AddItemToArray(msgs, msg = cJSON_CreateObject());
                cJSON_AddStringToObject(msg, "role", "assistant");
                cJSON_AddStringToObject(msg, "content", replies[i]);
            }
            cJSON_AddItemToObject(c, "messages", msgs);
            cJSON_AddBoolToObject(c, "add_generation_prompt", k == 0);
            cJSON_AddItemToArray(a, c);
        }
    return a;
}

/* transformers' renderings of cases() in template with bos_token. */
static cJSON *hf_render(const char *work, const char *template, const char *bos) {
    char in[256], res[256], cmd[2048];
    snprintf(in, sizeof in, "%s/cases.json", work);
    snprintf(res, sizeof res, "%s/rendered.json", work);
    cJSON *spec = cJSON_CreateObject();
    cJSON_AddStringToObject(spec, "template", template);
    cJSON_AddStringToObject(spec, "bos_token", bos);
    cJSON_AddItemToObject(spec, "cases", cases());
    char *s = cJSON_Print(spec);
    cr_assert_eq(leash_write_file_atomic(in, s, strlen(s)), 0, "%s", leash_errmsg());
    free(s);
    cJSON_Delete(spec);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' tests/ref/score_ref.py render '%s' '%s' 2>'%s/stderr.txt'",
             LEASH_SRCDIR, hf_python(), in, res, work);
    cr_assert_eq(system(cmd), 0, "the transformers reference failed: %s (see %s/stderr.txt)", cmd, work);
    char *text;
    cr_assert_eq(leash_read_file(res, 1 << 24, &text, NULL), 0, "%s", leash_errmsg());
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(cJSON_IsArray(j), "%s is not a JSON array", res);
    return j;
}

/* leash's renderings of the same cases equal transformers' byte for byte. */
static void compare_renderings(const char *name, const char *template, const char *bos, int family) {
    char work[64];
    scratch(work, sizeof work);
    cJSON *want = hf_render(work, template, bos);
    leash_chat_template t;
    cr_assert_eq(leash_chat_template_parse(&t, template, strlen(template), name), 0, "%s", leash_errmsg());
    cr_assert_eq(t.family, family, "%s recognised as %s", name, leash_chat_family_name(t.family));
    int c = 0;
    for (int i = 0; i < N_MSG; i++)
        for (int k = 0; k < 3; k++, c++) {
            leash_chat_message msgs[3], *p = msgs;
            if (k == 2) *p++ = (leash_chat_message){"system", "Be brief.\n"};
            *p++ = (leash_chat_message){"user", users[i]};
            if (k >= 1) *p++ = (leash_chat_message){"assistant", replies[i]};
            char *got;
            cr_assert_eq(leash_chat_render(&t, msgs, (int)(p - msgs), k == 0, bos, &got, NULL), 0, "%s", leash_errmsg());
            const char *w = cJSON_GetArrayItem(want, c)->valuestring;
            cr_assert_str_eq(got, w, "%s, message %d, case %d: leash rendered\n[%s]\ntransformers\n[%s]", name, i, k, got, w);
            free(got);
        }
    fprintf(stderr, "score: %s (%s): %d renderings equal to transformers' byte for byte\n", name,
            leash_chat_family_name(family), c);
    leash_chat_template_free(&t);
    cJSON_Delete(want);
    drop(work);
}

Test(score, chat_templates_render_as_transformers_does, .timeout = 120) {
    need_hf();
    compare_renderings("Qwen2", qwen2_template, "<|endoftext|>", LEASH_CHAT_CHATML);
    compare_renderings("Llama 3", llama3_template, "<|begin_of_text|>", LEASH_CHAT_LLAMA3);
}

Test(score, smollm2_gguf_template_renders_as_transformers_does, .timeout = 120) {
    need_hf();
    if (access(gguf_path(), R_OK) != 0)
        LEASH_SKIP_OR_FAIL("%s is missing (scripts/deps.sh --ref unpacks it; or set LEASH_SMOLLM2_GGUF)", gguf_path());
    char work[64], path[128], cmd[1024];
    scratch(work, sizeof work);
    snprintf(path, sizeof path, "%s/template.jinja", work);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' tests/ref/score_ref.py gguf-template '%s' '%s' 2>'%s/stderr.txt'",
             LEASH_SRCDIR, hf_python(), gguf_path(), path, work);
    cr_assert_eq(system(cmd), 0, "reading the template with gguf failed: %s (see %s/stderr.txt)", cmd, work);
    char *template;
    cr_assert_eq(leash_read_file(path, 1 << 20, &template, NULL), 0, "%s", leash_errmsg());
    leash_chat_template t;
    cr_assert_eq(leash_chat_template_parse(&t, template, strlen(template), gguf_path()), 0, "%s", leash_errmsg());
    cr_assert_str_eq(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    leash_chat_template_free(&t);
    compare_renderings("SmolLM2 (GGUF tokenizer.chat_template)", template, "<|im_start|>", LEASH_CHAT_CHATML);
    free(template);
    drop(work);
}

/* --chat on a .gguf file reads its tokenizer.chat_template: the real SmolLM2 file's, and a clear error for
 * a file written without one (leash export of the tiny model, whose directory has no template). */
Test(score, gguf_chat_template_is_read_from_the_file, .timeout = 60) {
    if (access(gguf_path(), R_OK) != 0)
        LEASH_SKIP_OR_FAIL("%s is missing (scripts/deps.sh --ref unpacks it; or set LEASH_SMOLLM2_GGUF)", gguf_path());
    leash_chat_template t;
    cr_assert_eq(leash_chat_template_load(&t, gguf_path()), 0, "%s", leash_errmsg());
    cr_assert_eq(t.family, LEASH_CHAT_CHATML);
    cr_assert_str_eq(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    cr_assert_str_eq(t.source, gguf_path());
    leash_chat_template_free(&t);
    char dir[64], cmd[512], path[128];
    scratch(dir, sizeof dir);
    model_dir(dir, 32, 0);
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    snprintf(cmd, sizeof cmd, LEASH_BIN " export gguf %s %s --type f32", dir, path);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_neq(leash_chat_template_load(&t, path), 0);
    cr_assert(strstr(leash_errmsg(), "m.gguf has no chat template (no tokenizer.chat_template key)"), "%s",
              leash_errmsg());
    drop(dir);
}

/* The real SmolLM2-135M-Instruct (GGUF, Q4_1) through the CLI against tests/ref/smollm2_ref.py, a float64
 * PyTorch Llama on the weights llama.cpp's gguf reader dequantises, with HF tokenizers and jinja2: the chat
 * [user, assistant] through --chat --reply renders to the reference's text and ids, the four plain texts
 * (--jsonl) tokenise to its ids, and every log-prob is within LOGP_TOL of float64. */
#define LOGP_TOL 1e-4
static double compare_to_reference(const cJSON *got, const cJSON *want, const char *name) {
    const cJSON *ids = cJSON_GetObjectItem(want, "ids"), *lps = cJSON_GetObjectItem(want, "logprobs");
    const cJSON *gids = cJSON_GetObjectItem(got, "tokens"), *glps = cJSON_GetObjectItem(got, "logprobs");
    int n = cJSON_GetArraySize(ids);
    cr_assert_eq(cJSON_GetArraySize(gids), n, "%s: %d tokens, the reference %d", name, cJSON_GetArraySize(gids), n);
    double worst = 0.0;
    for (int t = 0; t < n; t++) {
        cr_assert_eq(cJSON_GetArrayItem(gids, t)->valueint, cJSON_GetArrayItem(ids, t)->valueint, "%s: token %d", name, t);
        if (t > 0)
            worst = fmax(worst, fabs(cJSON_GetArrayItem(glps, t)->valuedouble - cJSON_GetArrayItem(lps, t - 1)->valuedouble));
    }
    fprintf(stderr, "score: SmolLM2 %s: %d tokens, worst |leash score - float64 PyTorch| log-prob = %.3g nats\n", name,
            n, worst);
    cr_assert(worst <= LOGP_TOL, "%s: worst log-prob difference %g > %g", name, worst, LOGP_TOL);
    return worst;
}

Test(score, real_smollm2_matches_float64_pytorch, .timeout = 300) {
    if (access(gguf_path(), R_OK) != 0)
        LEASH_SKIP_OR_FAIL("%s is missing (scripts/deps.sh --ref unpacks it; or set LEASH_SMOLLM2_GGUF)", gguf_path());
    if (system("/usr/bin/python3 -c 'import gguf, torch, tokenizers, jinja2' >/dev/null 2>&1") != 0)
        LEASH_SKIP_OR_FAIL("python3 lacks gguf, torch, tokenizers or jinja2 (scripts/deps.sh --ref installs them)");
    char dir[64], cmd[2048], ref[128], jsonl[128];
    scratch(dir, sizeof dir);
    snprintf(ref, sizeof ref, "%s/ref.json", dir);
    snprintf(cmd, sizeof cmd, "cd '%s' && /usr/bin/python3 tests/ref/smollm2_ref.py '%s' '%s' 2>'%s/stderr.txt'",
             LEASH_SRCDIR, gguf_path(), ref, dir);
    cr_assert_eq(system(cmd), 0, "the SmolLM2 reference failed: %s (see %s/stderr.txt)", cmd, dir);
    char *text;
    cr_assert_eq(leash_read_file(ref, 1 << 24, &text, NULL), 0, "%s", leash_errmsg());
    cJSON *r = cJSON_Parse(text), *texts = cJSON_GetObjectItem(r, "texts");
    free(text);
    cr_assert(cJSON_IsArray(texts), "%s has no \"texts\"", ref);
    // texts[0] is the chat [user, assistant] in the model's template; the others are plain texts
    snprintf(cmd, sizeof cmd, LEASH_BIN " score '%s' --json --chat --text 'What is the capital of France?' "
             "--reply 'The capital of France is Paris.'", gguf_path());
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    cJSON *chat = line(0), *want = cJSON_GetArrayItem(texts, 0);
    cr_assert_str_eq(cJSON_GetObjectItem(chat, "rendered")->valuestring, cJSON_GetObjectItem(want, "text")->valuestring);
    compare_to_reference(chat, want, "chat");
    cJSON_Delete(chat);
    snprintf(jsonl, sizeof jsonl, "%s/texts.jsonl", dir);
    FILE *f = fopen(jsonl, "w");
    for (int i = 1; i < cJSON_GetArraySize(texts); i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", cJSON_GetObjectItem(cJSON_GetArrayItem(texts, i), "text")->valuestring);
        char *s = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, LEASH_BIN " score '%s' --json --jsonl '%s'", gguf_path(), jsonl);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    for (int i = 1; i < cJSON_GetArraySize(texts); i++) {
        cJSON *j = line(i - 1);
        want = cJSON_GetArrayItem(texts, i);
        compare_to_reference(j, want, cJSON_GetObjectItem(want, "name")->valuestring);
        cJSON_Delete(j);
    }
    cJSON_Delete(r);
    drop(dir);
}

/* Templates that differ from the known ones in anything that changes the output are refused. */
Test(score, near_miss_templates_are_refused) {
    const char *bad[] = {
        // ChatML without the newline after <|im_end|>
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        // Llama 3 with whitespace control
        "{%- set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
        "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
        "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
        "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        // a default system message spread over two literals
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nA' "
        "+ 'B<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' "
        "+ '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        leash_chat_template t;
        cr_assert_neq(leash_chat_template_parse(&t, bad[i], strlen(bad[i]), "x.json"), 0, "template %zu accepted", i);
        cr_assert(strstr(leash_errmsg(), "x.json: the chat template is not one leash can render"), "%s", leash_errmsg());
    }
    // the same templates respelled (other quotes, spacing, real newlines in literals) are recognised
    const char *respelled = "{%for message in messages%}{% if loop.first and messages[0][\"role\"] != \"system\" %}"
                            "{{\"<|im_start|>system\nIt's \\\"me\\\"<|im_end|>\\n\"}}{%endif%}{{ '<|im_start|>' + "
                            "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if "
                            "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    leash_chat_template t;
    cr_assert_eq(leash_chat_template_parse(&t, respelled, strlen(respelled), "x.json"), 0, "%s", leash_errmsg());
    cr_assert_str_eq(t.default_system, "It's \"me\"");
    leash_chat_template_free(&t);
    // a known template followed by a NUL byte and more (a GGUF string or a .jinja file holds its length): the
    // canonical form, compared as a C string, ended at the NUL, so the tail was ignored (found by review)
    char tail[2048];
    static const char chatml[] = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
                                 "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    size_t n = (size_t)snprintf(tail, sizeof tail, "%s", chatml);
    cr_assert_eq(leash_chat_template_parse(&t, tail, n, "x.json"), 0, "plain ChatML: %s", leash_errmsg());
    leash_chat_template_free(&t);
    memcpy(tail + n, "\0{{ 'more' }}", 14);
    cr_assert_neq(leash_chat_template_parse(&t, tail, n + 14, "x.json"), 0, "a template with a NUL inside was accepted");
    cr_assert(strstr(leash_errmsg(), "x.json") && strstr(leash_errmsg(), "NUL"), "%s", leash_errmsg());
}

/* --chat through the CLI: the scored text is the rendering, from tokenizer_config.json or chat_template.jinja,
 * and the reply's statistics are those of the tokens after the prompt. */
Test(score, chat_scores_the_rendered_conversation, .timeout = 60) {
    char dir[64], cmd[1024], path[128];
    scratch(dir, sizeof dir);
    model_dir(dir, 256, 0);
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "chat_template", qwen2_template);
    char *s = cJSON_Print(cfg);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_file(path, s);
    free(s);
    cJSON_Delete(cfg);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, dir), 0, "%s", leash_errmsg());
    snprintf(cmd, sizeof cmd, LEASH_BIN " score %s --json --chat --text 'the cat?' --reply 'the dog.'", dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    cJSON *j = line(0);
    const char *want = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nthe cat?"
                       "<|im_end|>\n<|im_start|>assistant\nthe dog.<|im_end|>\n";
    cr_assert_str_eq(cJSON_GetObjectItem(j, "rendered")->valuestring, want);
    int n, *ids = encode(dir, want, -1, &n), np, *pids = encode(dir, want, -1, &np);
    free(pids);
    pids = encode(dir, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nthe cat?"
                       "<|im_end|>\n<|im_start|>assistant\n", -1, &np);
    check_line(j, m, ids, n, 1.0f);
    cr_assert_eq(cJSON_GetObjectItem(j, "reply_start")->valueint, np);
    double rs = 0.0;
    const cJSON *lps = cJSON_GetObjectItem(j, "logprobs");
    for (int t = np; t < n; t++) rs += (float)cJSON_GetArrayItem(lps, t)->valuedouble;
    double got = cJSON_GetObjectItem(j, "reply_sum_logprob")->valuedouble;
    cr_assert(fabs(got - rs) <= 1e-12 * fabs(rs), "reply sum %.17g, want %.17g", got, rs);
    cr_assert_eq(cJSON_GetObjectItem(j, "reply_n_scored")->valueint, n - np);
    cJSON_Delete(j);
    free(ids), free(pids);
    // chat_template.jinja wins over tokenizer_config.json; without --reply the prompt ends with the generation prompt
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    write_file(path, llama3_template);
    snprintf(cmd, sizeof cmd, LEASH_BIN " score %s --json --chat --text '  the cat?'", dir);
    expect_error(cmd, "Llama 3 chat template starts with bos_token, and the model has none");
    leash_gpt_free(m);
    drop(dir);
    scratch(dir, sizeof dir);
    model_dir(dir, 256, 1);
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    write_file(path, llama3_template);
    snprintf(cmd, sizeof cmd, LEASH_BIN " score %s --json --chat --text '  the cat?'", dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    j = line(0);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "rendered")->valuestring,
                     "<|endoftext|><|start_header_id|>user<|end_header_id|>\n\nthe cat?<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n");
    cr_assert(!cJSON_GetObjectItem(j, "reply_start"));
    cJSON_Delete(j);
    drop(dir);
}
