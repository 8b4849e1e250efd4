/* `leash sample MODEL_DIR --prompt TEXT | --prompts FILE`: generation with the KV cache, from a shell; a prompt
 * file's samples as JSON lines carry each line's fields, ready for a scorer (held-out evaluation). */
#define _POSIX_C_SOURCE 200809L /* strndup */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/chat.h"
#include "leash/data.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/sample.h"
#include "leash/tokenizer.h"

static const char *usage =
    "usage: leash sample MODEL_DIR (--prompt TEXT | --prompts FILE) [options]\n"
    "\n"
    "Continues each prompt with the model in MODEL_DIR (config.json, model.safetensors, and its tokenizer; a\n"
    "LoRA adapter directory; or a .gguf file).\n"
    "\n"
    "  --prompt TEXT        the prompt (\"<|endoftext|>\" in it is the special token)\n"
    "  --prompts FILE       prompts from a JSONL file, {\"prompt\": ...} a line, as the RL trainers read them;\n"
    "                       with --json, each line's other fields (an answer key) come back on its samples, so\n"
    "                       the output can go straight to a scorer (held-out evaluation)\n"
    "  --chat-template      each prompt is a user message, rendered through the model's own chat template\n"
    "                       with the assistant's turn begun (as grpo --chat-template does)\n"
    "  -n, --num N          N samples a prompt (default 1), each its own random stream\n"
    "  --max-new N          new tokens at most (default 64); stops early at the model's end of text\n"
    "  -t, --temperature T  (default 1)   --top-k K (0 = off)   --top-p P (1 = off)\n"
    "  --seed S             (default 0)\n"
    "  --json               one JSON line per sample: prompt, text, token ids, log-probs under the sampling\n"
    "                       distribution, and the prompt line's other fields\n"
    "\n"
    "Sample i of prompt j draws from random stream j * N + i, so a prompt's samples do not depend on the\n"
    "other prompts in the file.\n";

/* The prompts to continue: each as given, as encoded (through the chat template with --chat-template), and, from
 * a JSONL file, the line's other fields. */
typedef struct {
    int n;
    const char **text; /* (n) the prompt as given */
    int **ids, *lens;  /* (n) its token ids */
    leash_table table; /* --prompts: the file's lines; table.rest[j] their other fields */
} prompt_set;

static void prompts_free(prompt_set *ps) {
    for (int j = 0; ps->ids && j < ps->n; j++) free(ps->ids[j]);
    free(ps->ids), free(ps->lens), free(ps->text);
    leash_table_free(&ps->table);
}

/* The model's chat template (an adapter directory's: its base's) and its BOS token's text (*bos, or NULL). */
static int chat_template(leash_chat_template *ct, char **bos, const char *dir, const leash_gpt *m, const leash_tokenizer *tok) {
    int rc = leash_chat_template_load(ct, dir), id = leash_gpt_cfg(m)->bos_token_id, len = 0;
    if (rc && leash_gpt_source_dir(m)) rc = leash_chat_template_load(ct, leash_gpt_source_dir(m));
    const char *text = id >= 0 ? leash_tokenizer_token(tok, id, &len) : NULL;
    if (!rc && text && !(*bos = strndup(text, (size_t)len))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    return rc ? leash_fail_wrap(rc, "--chat-template") : LEASH_OK;
}

/* Reads the prompts (one --prompt, or a --prompts file) and encodes them; a prompt that leaves no room for
 * max_new tokens in the model's positions is an error naming it. */
static int prompts_load(prompt_set *ps, const char *prompt, const char *file, int chat, const char *dir,
                        const leash_gpt *m, const leash_tokenizer *tok, int max_new) {
    static const char *const keys[] = {"prompt"};
    int rc = file ? leash_jsonl_load_rest(file, keys, 1, NULL, 0, &ps->table) : LEASH_OK;
    ps->n = file ? ps->table.n : 1;
    if (!rc && (!(ps->text = calloc(ps->n, sizeof *ps->text)) || !(ps->ids = calloc(ps->n, sizeof *ps->ids)) ||
                !(ps->lens = calloc(ps->n, sizeof *ps->lens))))
        rc = leash_fail(LEASH_ENOMEM, "out of memory");
    leash_chat_template ct = {0};
    char *bos = NULL;
    if (!rc && chat) rc = chat_template(&ct, &bos, dir, m, tok);
    for (int j = 0; j < ps->n && !rc; j++) {
        const char *p = ps->text[j] = file ? ps->table.str[0][j] : prompt;
        char *wrapped = NULL; // the prompt as the user's message, the assistant's turn begun
        if (chat && (rc = leash_chat_render(&ct, &(leash_chat_message){"user", p}, 1, 1, bos, &wrapped, NULL))) break;
        size_t n = 0, cap = 0;
        rc = leash_tokenizer_encode(tok, wrapped ? wrapped : p, strlen(wrapped ? wrapped : p), 1, &ps->ids[j], &n, &cap);
        free(wrapped);
        ps->lens[j] = (int)n;
        if (!rc && n == 0) rc = leash_fail(LEASH_EINVAL, "%s: prompt %d is empty", file ? file : "--prompt", j + 1);
        if (!rc && (int)n + max_new > leash_gpt_cfg(m)->n_positions)
            rc = leash_fail(LEASH_EINVAL, "%s: prompt %d is %zu tokens; with --max-new %d that exceeds the model's %d positions: "
                                          "shorten it or lower --max-new",
                            file ? file : "--prompt", j + 1, n, max_new, leash_gpt_cfg(m)->n_positions);
    }
    leash_chat_template_free(&ct);
    free(bos);
    return rc;
}

/* Prints one sample: plain (prompt and continuation) or, with json, a JSON line with the prompt line's fields. */
static int print_sample(const prompt_set *ps, int j, const leash_sample_config *sc, const leash_tokenizer *tok,
                        const int *out, const float *lps, int k, int json) {
    char *text = NULL;
    size_t len = 0, cap = 0;
    int shown = k > 0 && leash_sample_is_eos(sc, out[k - 1]) ? k - 1 : k; // the EOS is not text
    if (leash_tokenizer_decode(tok, out, shown, &text, &len, &cap)) return -1;
    if (!json) {
        printf("%s%s\n", ps->text[j], text ? text : "");
        free(text);
        return 0;
    }
    cJSON *o = ps->table.rest ? cJSON_Parse(ps->table.rest[j]) : NULL;
    if (!o) o = cJSON_CreateObject();
    char *valid = leash_utf8_sanitize(text ? text : "", len); // JSON strings are UTF-8
    cJSON_AddStringToObject(o, "prompt", ps->text[j]);
    cJSON_AddStringToObject(o, "text", valid ? valid : "");
    cJSON_AddItemToObject(o, "tokens", cJSON_CreateIntArray(out, k));
    cJSON_AddItemToObject(o, "logprobs", cJSON_CreateFloatArray(lps, k));
    cJSON_AddNumberToObject(o, "temperature", sc->temperature);
    char *s = cJSON_PrintUnformatted(o);
    if (s) puts(s);
    free(s), free(valid), free(text);
    cJSON_Delete(o);
    return 0;
}

/* Generates n samples of every prompt, CHUNK sequences at a time (sequence s = j * n + i draws from stream s),
 * and prints them in order. */
enum { CHUNK = 64 };
static int generate_all(leash_gpt *m, const leash_sample_config *sc, const prompt_set *ps, int n, const leash_tokenizer *tok,
                        int json) {
    int M = sc->max_new_tokens, longest = 0, rc = 0;
    for (int j = 0; j < ps->n; j++) longest = ps->lens[j] > longest ? ps->lens[j] : longest;
    int *packed = malloc((size_t)CHUNK * longest * sizeof *packed), *lens = malloc(CHUNK * sizeof *lens);
    int *out = malloc((size_t)CHUNK * M * sizeof *out), *olens = malloc(CHUNK * sizeof *olens);
    float *lps = malloc((size_t)CHUNK * M * sizeof *lps);
    uint64_t *streams = malloc(CHUNK * sizeof *streams);
    if (!packed || !lens || !out || !olens || !lps || !streams) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    long total = (long)ps->n * n;
    for (long s0 = 0; s0 < total && !rc; s0 += CHUNK) {
        int B = total - s0 < CHUNK ? (int)(total - s0) : CHUNK;
        size_t at = 0;
        for (int b = 0; b < B; b++) {
            int j = (int)((s0 + b) / n);
            memcpy(packed + at, ps->ids[j], ps->lens[j] * sizeof *packed);
            at += ps->lens[j], lens[b] = ps->lens[j], streams[b] = (uint64_t)(s0 + b);
        }
        rc = leash_generate(m, sc, packed, lens, B, streams, out, lps, olens);
        for (int b = 0; b < B && !rc; b++)
            rc = print_sample(ps, (int)((s0 + b) / n), sc, tok, out + (size_t)b * M, lps + (size_t)b * M, olens[b], json);
        fflush(stdout);
        if (!rc && total > CHUNK) cli_progress(s0 + B == total, "sample: %ld/%ld sequences   ", s0 + B, total);
    }
    if (total > CHUNK) cli_progress_end();
    free(packed), free(lens), free(out), free(olens), free(lps), free(streams);
    return rc;
}

int cli_sample(int argc, char **argv) {
    leash_sample_config sc = leash_sample_defaults();
    const char *prompt = NULL, *file = NULL, *cmd = "sample";
    int n = 1, json = 0, chat = 0, seed = 0, bad = 0, ch;
    enum { O_PROMPT = 256, O_PROMPTS, O_CHAT, O_MAX, O_TOPK, O_TOPP, O_SEED, O_JSON };
    static const struct option opts[] = {{"prompt", 1, 0, O_PROMPT}, {"prompts", 1, 0, O_PROMPTS}, {"chat-template", 0, 0, O_CHAT},
                                         {"num", 1, 0, 'n'},         {"max-new", 1, 0, O_MAX},      {"temperature", 1, 0, 't'},
                                         {"top-k", 1, 0, O_TOPK},    {"top-p", 1, 0, O_TOPP},       {"seed", 1, 0, O_SEED},
                                         {"json", 0, 0, O_JSON},     {"help", 0, 0, 'h'},           {0, 0, 0, 0}};
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "n:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case O_PROMPT: prompt = optarg; break;
        case O_PROMPTS: file = optarg; break;
        case O_CHAT: chat = 1; break;
        case 'n': bad = cli_int(cmd, "--num", optarg, 1, 4096, &n); break;
        case O_MAX: bad = cli_int(cmd, "--max-new", optarg, 1, 1 << 20, &sc.max_new_tokens); break;
        case 't': bad = cli_float(cmd, "--temperature", optarg, 1e-6, 1e6, &sc.temperature); break;
        case O_TOPK: bad = cli_int(cmd, "--top-k", optarg, 0, 1 << 30, &sc.top_k); break;
        case O_TOPP: bad = cli_float(cmd, "--top-p", optarg, 1e-9, 1.0, &sc.top_p); break;
        case O_SEED: bad = cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed); break;
        case O_JSON: json = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (bad) return 2;
    if (optind + 1 != argc || !prompt == !file) {
        fprintf(stderr, "leash sample: need one MODEL_DIR and one of --prompt or --prompts\n%s", usage);
        return 2;
    }
    const char *dir = argv[optind];
    sc.seed = (uint64_t)seed;
    leash_gpt *m = NULL;
    leash_tokenizer *tok = NULL;
    prompt_set ps = {0};
    int rc = leash_gpt_load(&m, dir) || leash_tokenizer_load_dir(&tok, dir);
    if (!rc) {
        // a text ends where the model's do: its eos_token_id (one id or a list: <|im_end|>, <|eot_id|>), else <|endoftext|>
        leash_sample_set_eos(&sc, leash_gpt_cfg(m), leash_tokenizer_eos(tok, leash_gpt_cfg(m)->eos_token_id));
        rc = prompts_load(&ps, prompt, file, chat, dir, m, tok, sc.max_new_tokens) || generate_all(m, &sc, &ps, n, tok, json);
    }
    if (rc) fprintf(stderr, "leash sample: %s\n", leash_errmsg());
    prompts_free(&ps);
    leash_gpt_free(m);
    leash_tokenizer_free(tok);
    return rc ? 1 : 0;
}
