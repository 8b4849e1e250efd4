/* `leash sample MODEL_DIR --prompt TEXT`: generation with the KV cache, from a shell. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/sample.h"
#include "leash/tokenizer.h"

static const char *usage =
    "usage: leash sample MODEL_DIR --prompt TEXT [options]\n"
    "\n"
    "Continues TEXT with the model in MODEL_DIR (config.json, model.safetensors, and its tokenizer).\n"
    "\n"
    "  --prompt TEXT        the prompt (\"<|endoftext|>\" in it is the special token)\n"
    "  -n, --num N          N samples (default 1), each its own random stream\n"
    "  --max-new N          new tokens at most (default 64); stops early at <|endoftext|>\n"
    "  -t, --temperature T  (default 1)   --top-k K (0 = off)   --top-p P (1 = off)\n"
    "  --seed S             (default 0)\n"
    "  --json               one JSON line per sample: text, token ids, log-probs under the sampling distribution\n";

int cli_sample(int argc, char **argv) {
    leash_sample_config sc = leash_sample_defaults();
    const char *prompt = NULL, *cmd = "sample";
    int n = 1, json = 0, seed = 0, bad = 0, ch;
    enum { O_PROMPT = 256, O_MAX, O_TOPK, O_TOPP, O_SEED, O_JSON };
    static const struct option opts[] = {{"prompt", 1, 0, O_PROMPT}, {"num", 1, 0, 'n'}, {"max-new", 1, 0, O_MAX},
                                         {"temperature", 1, 0, 't'}, {"top-k", 1, 0, O_TOPK}, {"top-p", 1, 0, O_TOPP},
                                         {"seed", 1, 0, O_SEED},     {"json", 0, 0, O_JSON},  {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "n:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case O_PROMPT: prompt = optarg; break;
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
    if (optind + 1 != argc || !prompt) {
        fprintf(stderr, "leash sample: need one MODEL_DIR and --prompt\n%s", usage);
        return 2;
    }
    const char *dir = argv[optind];
    sc.seed = (uint64_t)seed;
    leash_gpt *m = NULL;
    leash_tokenizer *tok = NULL;
    int *ids = NULL, *lens = NULL, *out = NULL, *olens = NULL, status = 1;
    float *lps = NULL;
    size_t n_ids = 0, cap = 0;
    if (leash_gpt_load(&m, dir) || leash_tokenizer_load_dir(&tok, dir) ||
        leash_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n_ids, &cap)) {
        fprintf(stderr, "leash sample: %s\n", leash_errmsg());
        goto done;
    }
    // a text ends where the model's do: its eos_token_id (one id or a list: <|im_end|>, <|eot_id|>), else <|endoftext|>
    leash_sample_set_eos(&sc, leash_gpt_cfg(m), leash_tokenizer_eos(tok, leash_gpt_cfg(m)->eos_token_id));
    int M = sc.max_new_tokens;
    int *prompts = malloc((size_t)n * n_ids * sizeof *prompts);
    lens = malloc(n * sizeof *lens);
    out = malloc((size_t)n * M * sizeof *out);
    olens = malloc(n * sizeof *olens);
    lps = malloc((size_t)n * M * sizeof *lps);
    if (!prompts || !lens || !out || !olens || !lps) {
        free(prompts);
        fprintf(stderr, "leash sample: out of memory\n");
        goto done;
    }
    for (int i = 0; i < n; i++) memcpy(prompts + (size_t)i * n_ids, ids, n_ids * sizeof *ids), lens[i] = (int)n_ids;
    int rc = leash_generate(m, &sc, prompts, lens, n, NULL, out, lps, olens);
    free(prompts);
    if (rc) {
        fprintf(stderr, "leash sample: %s\n", leash_errmsg());
        goto done;
    }
    for (int i = 0; i < n; i++) {
        char *text = NULL;
        size_t len = 0, tcap = 0;
        int k = olens[i];
        int shown = k > 0 && leash_sample_is_eos(&sc, out[(size_t)i * M + k - 1]) ? k - 1 : k; // the EOS is not text
        if (leash_tokenizer_decode(tok, out + (size_t)i * M, shown, &text, &len, &tcap)) {
            fprintf(stderr, "leash sample: %s\n", leash_errmsg());
            goto done;
        }
        if (json) {
            cJSON *o = cJSON_CreateObject();
            char *valid = leash_utf8_sanitize(text ? text : "", len); // JSON strings are UTF-8
            cJSON_AddStringToObject(o, "prompt", prompt);
            cJSON_AddStringToObject(o, "text", valid ? valid : "");
            free(valid);
            cJSON_AddItemToObject(o, "tokens", cJSON_CreateIntArray(out + (size_t)i * M, k));
            cJSON_AddItemToObject(o, "logprobs", cJSON_CreateFloatArray(lps + (size_t)i * M, k));
            cJSON_AddNumberToObject(o, "temperature", sc.temperature);
            char *s = cJSON_PrintUnformatted(o);
            puts(s);
            free(s);
            cJSON_Delete(o);
        } else {
            printf("%s%s\n", prompt, text ? text : "");
        }
        free(text);
    }
    status = 0;
done:
    free(ids), free(lens), free(out), free(olens), free(lps);
    leash_gpt_free(m);
    leash_tokenizer_free(tok);
    return status;
}
