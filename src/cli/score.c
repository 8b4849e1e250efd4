/* `leash score MODEL --text TEXT`: per-token log-probs, their sum and mean and the perplexity of texts,
 * the first check of a loaded model against another tool. */
#define _POSIX_C_SOURCE 200809L /* strndup */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/chat.h"
#include "leash/data.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/tokenizer.h"

static const char *usage =
    "usage: leash score MODEL (--text TEXT ... | --jsonl FILE [--field NAME]) [options]\n"
    "\n"
    "Scores each text with the model in MODEL (a model directory: config.json, the weights, the tokenizer;\n"
    "or a .gguf file): log p(token | the tokens before it) for every token, in nats. The first token has no\n"
    "prediction (nothing comes before it) and is not scored, as in Hugging Face transformers and lm-eval;\n"
    "with --bos it is scored against the BOS token. Per text: the sum of the scored log-probs (nats per\n"
    "sequence), their mean (nats per token) and the perplexity exp(mean NLL per token) = exp(-mean).\n"
    "\n"
    "  --text TEXT          a text to score (repeatable); special tokens such as \"<|endoftext|>\" in it are\n"
    "                       their ids, as everywhere in leash\n"
    "  --jsonl FILE         texts from a JSONL file, one object per line (blank lines skipped; a text is\n"
    "                       named by its row, counting the non-blank lines)\n"
    "  --field NAME         the string field of each line that holds the text (default \"text\")\n"
    "  -t, --temperature T  log-softmax of logits / T (default 1)\n"
    "  --bos                put the model's BOS token (config.json bos_token_id) before each text. Off by default:\n"
    "                       the text is scored as leash tokenizes it everywhere else, and as Hugging Face's\n"
    "                       tokenizers do for GPT-2 and SmolLM2, which add no BOS (Llama 3's adds\n"
    "                       <|begin_of_text|>: pass --bos to match it)\n"
    "  --json               one JSON line per text: tokens, token_texts, logprobs (null for the first token),\n"
    "                       sum_logprob, mean_logprob, perplexity, units\n"
    "\n"
    "Chat models:\n"
    "  --chat               each text is a user message, rendered through the model's chat template\n"
    "                       (chat_template.jinja, else tokenizer_config.json's \"chat_template\"; a .gguf\n"
    "                       file's tokenizer.chat_template) exactly as transformers' apply_chat_template\n"
    "                       renders it. ChatML (SmolLM2, Qwen2; with the template's default system message)\n"
    "                       and Llama 3 templates are known; any other is an error: pass the formatted\n"
    "                       conversation with --text instead. Without --reply the scored text is the prompt\n"
    "                       with the generation prompt (add_generation_prompt=True), ending where the\n"
    "                       assistant's reply would start\n"
    "  --reply TEXT         with --chat: the assistant's reply to the matching --text (one per --text); the\n"
    "                       scored text is the conversation [user, assistant] (add_generation_prompt=False),\n"
    "                       and the reply's own sum, mean and perplexity are reported: the tokens after the\n"
    "                       prompt, i.e. the reply, its end-of-turn token and what the template puts after it\n"
    "  --reply-field NAME   with --chat and --jsonl: the field that holds each line's reply\n"
    "\n"
    "A text longer than the model's n_positions tokens is an error (no sliding window).\n";

/* One text to score: where it came from, the text itself and, with --chat, the rendered conversation. */
typedef struct {
    char source[256];
    const char *text;
    char *rendered;   /* NULL without --chat */
    int *ids;         /* (n) the scored sequence, BOS included with --bos */
    size_t n, cap;
    int reply_start;  /* index of the reply's first token, or -1 */
} score_item;

typedef struct {
    const char *model;
    int chat, bos, json;
    float temperature;
} score_opts;

/* Renders item's text (and reply) through the chat template and encodes the result; the reply starts
 * after the tokens of the prompt with its generation prompt, which must be a prefix of the whole. */
static int render_chat(score_item *it, const char *reply, const leash_chat_template *ct, const leash_tokenizer *tok,
                       const char *bos) {
    leash_chat_message msgs[2] = {{"user", it->text}, {"assistant", reply}};
    char *prompt = NULL;
    int *pids = NULL, rc;
    size_t np = 0, pcap = 0;
    rc = leash_chat_render(ct, msgs, reply ? 2 : 1, !reply, bos, &it->rendered, NULL);
    if (!rc) rc = leash_tokenizer_encode(tok, it->rendered, strlen(it->rendered), 1, &it->ids, &it->n, &it->cap);
    it->reply_start = -1;
    if (!rc && reply) {
        rc = leash_chat_render(ct, msgs, 1, 1, bos, &prompt, NULL);
        if (!rc) rc = leash_tokenizer_encode(tok, prompt, strlen(prompt), 1, &pids, &np, &pcap);
        if (!rc && (np > it->n || memcmp(pids, it->ids, np * sizeof *pids) != 0))
            rc = leash_fail(LEASH_EINVAL, "%s: the reply's first token merges with the end of the prompt, so the "
                            "reply has no token boundary of its own; score the conversation with --text", it->source);
        it->reply_start = (int)np;
    }
    free(prompt);
    free(pids);
    return rc;
}

/* Encodes every item (BOS first with --bos) and checks its length against the model before any work. */
static int prepare(score_item *items, int n, const char *const *replies, const score_opts *o, leash_gpt *m,
                   const leash_tokenizer *tok) {
    const leash_gpt_config *cfg = leash_gpt_cfg(m);
    int bos_id = cfg->bos_token_id, blen = 0;
    const char *bt = bos_id >= 0 ? leash_tokenizer_token(tok, bos_id, &blen) : NULL;
    char *bos = bt ? strndup(bt, (size_t)blen) : NULL;
    leash_chat_template ct = {0};
    int rc = o->bos && bos_id < 0
                 ? leash_fail(LEASH_EINVAL, "--bos: the model in %s has no BOS token (config.json bos_token_id)", o->model)
                 : LEASH_OK;
    if (!rc && o->chat) rc = leash_chat_template_load(&ct, o->model);
    for (int i = 0; !rc && i < n; i++) {
        score_item *it = &items[i];
        if (o->bos && !(it->ids = malloc(sizeof *it->ids))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
        else if (o->bos) it->cap = 1, it->ids[it->n++] = bos_id;
        if (rc) break;
        if (o->chat) rc = render_chat(it, replies ? replies[i] : NULL, &ct, tok, bos);
        else rc = leash_tokenizer_encode(tok, it->text, strlen(it->text), 1, &it->ids, &it->n, &it->cap);
        if (!rc && it->n < 2)
            rc = leash_fail(LEASH_EINVAL, "%s has %zu token(s): nothing to score (a token's log-prob needs a token "
                            "before it; --bos scores the first token against BOS)", it->source, it->n);
        if (!rc && it->n > (size_t)cfg->n_positions)
            rc = leash_fail(LEASH_EINVAL, "%s has %zu tokens, more than the model's n_positions = %d; shorten it "
                            "(leash score has no sliding window)", it->source, it->n, cfg->n_positions);
    }
    leash_chat_template_free(&ct);
    free(bos);
    return rc;
}

/* Sum, mean and perplexity of lp over token positions [from, n): lp[t - 1] is token t's log-prob. */
typedef struct {
    int count;
    double sum, mean, ppl;
} score_stats;

static score_stats stats(const float *lp, int from, int n) {
    score_stats s = {0};
    for (int t = from; t < n; t++) s.sum += lp[t - 1], s.count++;
    s.mean = s.count ? s.sum / s.count : NAN;
    s.ppl = exp(-s.mean);
    return s;
}

/* A token's bytes, as valid UTF-8 (invalid bytes become U+FFFD). Caller frees. */
static char *token_text(const leash_tokenizer *tok, int id) {
    int len = 0;
    const char *b = leash_tokenizer_token(tok, id, &len);
    return leash_utf8_sanitize(b ? b : "", b ? (size_t)len : 0);
}

static void add_stats(cJSON *o, const char *prefix, score_stats s) {
    char key[64];
    snprintf(key, sizeof key, "%sn_scored", prefix);
    cJSON_AddNumberToObject(o, key, s.count);
    snprintf(key, sizeof key, "%ssum_logprob", prefix);
    cJSON_AddNumberToObject(o, key, s.sum);
    snprintf(key, sizeof key, "%smean_logprob", prefix);
    cJSON_AddNumberToObject(o, key, s.mean);
    snprintf(key, sizeof key, "%sperplexity", prefix);
    cJSON_AddNumberToObject(o, key, s.ppl);
}

static void print_json(const score_item *it, int index, const float *lp, const leash_tokenizer *tok, const score_opts *o) {
    cJSON *j = cJSON_CreateObject(), *texts = cJSON_CreateArray(), *lps = cJSON_CreateArray(), *u = cJSON_CreateObject();
    char *text = leash_utf8_sanitize(it->text, strlen(it->text));
    cJSON_AddNumberToObject(j, "index", index);
    cJSON_AddStringToObject(j, "source", it->source);
    cJSON_AddStringToObject(j, "text", text ? text : "");
    free(text);
    if (it->rendered) {
        char *r = leash_utf8_sanitize(it->rendered, strlen(it->rendered));
        cJSON_AddStringToObject(j, "rendered", r ? r : "");
        free(r);
    }
    cJSON_AddItemToObject(j, "tokens", cJSON_CreateIntArray(it->ids, (int)it->n));
    for (size_t t = 0; t < it->n; t++) {
        char *s = token_text(tok, it->ids[t]);
        cJSON_AddItemToArray(texts, cJSON_CreateString(s ? s : ""));
        free(s);
        cJSON_AddItemToArray(lps, t == 0 ? cJSON_CreateNull() : cJSON_CreateNumber(lp[t - 1]));
    }
    cJSON_AddItemToObject(j, "token_texts", texts);
    cJSON_AddItemToObject(j, "logprobs", lps);
    add_stats(j, "", stats(lp, 1, (int)it->n));
    if (it->reply_start >= 0) {
        cJSON_AddNumberToObject(j, "reply_start", it->reply_start);
        add_stats(j, "reply_", stats(lp, it->reply_start, (int)it->n));
    }
    cJSON_AddNumberToObject(j, "temperature", o->temperature);
    cJSON_AddBoolToObject(j, "bos", o->bos);
    cJSON_AddStringToObject(u, "logprobs", "nats per token: log p(token | tokens before it); null for the first token");
    cJSON_AddStringToObject(u, "sum_logprob", "nats per sequence");
    cJSON_AddStringToObject(u, "mean_logprob", "nats per token");
    cJSON_AddStringToObject(u, "perplexity", "exp(mean NLL per token) = exp(-mean_logprob)");
    cJSON_AddItemToObject(j, "units", u);
    char *line = cJSON_PrintUnformatted(j);
    if (line) puts(line);
    free(line);
    cJSON_Delete(j);
}

/* A token's text for the table: quoted, with control characters and quotes escaped. */
static void print_token(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') fputs("\\n", stdout);
        else if (*p == '\t') fputs("\\t", stdout);
        else if (*p == '\r') fputs("\\r", stdout);
        else if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7F) printf("\\x%02x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static void print_summary(const char *what, score_stats s) {
    printf("%s: sum %.6f nats per sequence, mean %.6f nats per token over %d scored tokens, perplexity %.6f\n", what,
           s.sum, s.mean, s.count, s.ppl);
}

static void print_table(const score_item *it, int index, const float *lp, const leash_tokenizer *tok) {
    printf("text %d (%s): %zu tokens; the first has no prediction and is not scored\n", index, it->source, it->n);
    printf("%6s %8s  %-12s  %s\n", "pos", "id", "log-prob", "token");
    printf("%6s %8s  %-12s  %s\n", "", "", "(nats)", "");
    for (size_t t = 0; t < it->n; t++) {
        char *s = token_text(tok, it->ids[t]);
        if (t == 0) printf("%6zu %8d  %-12s  ", t, it->ids[t], "-");
        else printf("%6zu %8d  %-12.6f  ", t, it->ids[t], lp[t - 1]);
        print_token(s ? s : "");
        putchar('\n');
        free(s);
    }
    print_summary("total", stats(lp, 1, (int)it->n));
    if (it->reply_start >= 0) {
        char what[64];
        snprintf(what, sizeof what, "reply (tokens %d to %zu)", it->reply_start, it->n - 1);
        print_summary(what, stats(lp, it->reply_start, (int)it->n));
    }
    printf("(perplexity = exp(mean NLL per token) = exp(-mean))\n\n");
}

/* One forward over the whole text (B = 1): lp[t] = log p(ids[t + 1] | ids[<= t]) at the temperature. */
static int score_item_run(leash_gpt *m, const score_item *it, float temperature, int *targets, float *lp) {
    int T = (int)it->n;
    for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? it->ids[t + 1] : -1;
    int rc = leash_gpt_forward(m, it->ids, NULL, 1, T);
    if (!rc) rc = leash_gpt_token_logprobs(m, targets, temperature, lp, NULL);
    return rc ? leash_fail_wrap(rc, "%s", it->source) : LEASH_OK;
}

/* The texts (and replies) from --text/--reply or the JSONL file, each with its source. */
static int collect(const char **texts, int n_text, const char *jsonl, const char *field, const char *reply_field,
                   leash_table *t, score_item **items, int *n, const char ***replies) {
    const char *keys[2] = {field, reply_field};
    int rc = jsonl ? leash_jsonl_load(jsonl, keys, reply_field ? 2 : 1, NULL, 0, 0, t) : LEASH_OK;
    *n = jsonl ? t->n : n_text;
    if (!rc && !(*items = calloc((size_t)*n, sizeof **items))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (rc) return rc;
    for (int i = 0; i < *n; i++) {
        score_item *it = &(*items)[i];
        it->text = jsonl ? t->str[0][i] : texts[i];
        it->reply_start = -1;
        if (jsonl) snprintf(it->source, sizeof it->source, "%s, row %d (\"%s\")", jsonl, i + 1, field);
        else snprintf(it->source, sizeof it->source, "--text %d", i + 1);
    }
    if (jsonl && reply_field) *replies = (const char **)t->str[1];
    return LEASH_OK;
}

/* Options that do not fit together, or are missing; a message and 2, else 0. */
static int check_options(int n_text, int n_reply, const char *jsonl, const char *field, const char *reply_field,
                         const score_opts *o) {
    const char *why = NULL;
    if (!n_text && !jsonl) why = "need --text TEXT or --jsonl FILE";
    else if (n_text && jsonl) why = "--text and --jsonl do not go together: give the texts one way";
    else if (field && !jsonl) why = "--field names a field of --jsonl's lines; there is no --jsonl";
    else if ((n_reply || reply_field) && !o->chat) why = "--reply and --reply-field go with --chat";
    else if (n_reply && n_reply != n_text) why = "--reply: give one --reply per --text";
    else if (reply_field && !jsonl) why = "--reply-field names a field of --jsonl's lines; there is no --jsonl";
    else if (n_reply && jsonl) why = "--reply goes with --text; with --jsonl use --reply-field";
    else if (o->chat && o->bos) why = "--bos and --chat do not go together: the chat template places the special tokens";
    if (why) fprintf(stderr, "leash score: %s\n%s", why, usage);
    return why ? 2 : 0;
}

/* Loads the model, prepares every text (all errors before any output), then scores and prints each. */
static int run_score(const score_opts *o, const char **texts, int n_text, const char **replies, const char *jsonl,
                     const char *field, const char *reply_field) {
    leash_gpt *m = NULL;
    leash_tokenizer *tok = NULL;
    leash_table t = {0};
    score_item *items = NULL;
    int n = 0, status = 1, *targets = NULL;
    float *lp = NULL;
    if (leash_gpt_load(&m, o->model) || leash_tokenizer_load_dir(&tok, o->model) ||
        collect(texts, n_text, jsonl, field, reply_field, &t, &items, &n, &replies) ||
        prepare(items, n, replies, o, m, tok)) {
        fprintf(stderr, "leash score: %s\n", leash_errmsg());
        goto done;
    }
    leash_gpt_freeze(m); // scoring only: no gradients, half the activation memory
    int T = leash_gpt_cfg(m)->n_positions;
    targets = malloc((size_t)T * sizeof *targets);
    lp = malloc((size_t)T * sizeof *lp);
    if (!targets || !lp) {
        fprintf(stderr, "leash score: out of memory\n");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (score_item_run(m, &items[i], o->temperature, targets, lp)) {
            fprintf(stderr, "leash score: %s\n", leash_errmsg());
            goto done;
        }
        if (o->json) print_json(&items[i], i + 1, lp, tok, o);
        else print_table(&items[i], i + 1, lp, tok);
    }
    status = 0;
done:
    for (int i = 0; items && i < n; i++) free(items[i].ids), free(items[i].rendered);
    free(items), free(targets), free(lp);
    leash_table_free(&t);
    leash_gpt_free(m);
    leash_tokenizer_free(tok);
    return status;
}

int cli_score(int argc, char **argv) {
    score_opts o = {.temperature = 1.0f};
    const char *jsonl = NULL, *field = NULL, *reply_field = NULL, *cmd = "score";
    const char **texts = calloc((size_t)argc, sizeof *texts), **rep = calloc((size_t)argc, sizeof *rep);
    int n_text = 0, n_reply = 0, bad = 0, ch, status = 1;
    enum { O_TEXT = 256, O_JSONL, O_FIELD, O_BOS, O_JSON, O_CHAT, O_REPLY, O_REPLY_FIELD };
    static const struct option opts[] = {{"text", 1, 0, O_TEXT},   {"jsonl", 1, 0, O_JSONL},
                                         {"field", 1, 0, O_FIELD}, {"temperature", 1, 0, 't'},
                                         {"bos", 0, 0, O_BOS},     {"json", 0, 0, O_JSON},
                                         {"chat", 0, 0, O_CHAT},   {"reply", 1, 0, O_REPLY},
                                         {"reply-field", 1, 0, O_REPLY_FIELD}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    if (!texts || !rep) {
        fprintf(stderr, "leash score: out of memory\n");
        goto out;
    }
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        switch (ch) {
        case O_TEXT: texts[n_text++] = optarg; break;
        case O_JSONL: jsonl = optarg; break;
        case O_FIELD: field = optarg; break;
        case 't': bad = cli_float(cmd, "--temperature", optarg, 1e-6, 1e6, &o.temperature); break;
        case O_BOS: o.bos = 1; break;
        case O_JSON: o.json = 1; break;
        case O_CHAT: o.chat = 1; break;
        case O_REPLY: rep[n_reply++] = optarg; break;
        case O_REPLY_FIELD: reply_field = optarg; break;
        case 'h': fputs(usage, stdout); status = 0; goto out;
        default: fputs(usage, stderr); status = 2; goto out;
        }
    }
    if (bad) status = 2;
    else if (optind + 1 != argc) status = 2, fprintf(stderr, "leash score: need one MODEL\n%s", usage);
    else status = check_options(n_text, n_reply, jsonl, field, reply_field, &o);
    if (status) goto out;
    o.model = argv[optind];
    status = run_score(&o, texts, n_text, n_reply ? rep : NULL, jsonl, field ? field : "text", reply_field);
out:
    free(texts);
    free(rep);
    return status;
}
