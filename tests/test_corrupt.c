/* Bad files (issue 6): every loader is fed its small valid file truncated at every byte boundary (files over
 * 8 KB: every byte of the first and last 2 KB and every 7th byte between), with 400 random single-byte
 * changes, and with hand-written malicious contents. None may crash (ASan and UBSan watch under
 * make SANITIZE=1 test); each either loads (a truncation can leave a valid file, e.g. a JSONL file cut at a
 * line end) or fails with a message that names the file. Counts per loader are logged (--verbose). */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/rl_internal.h"
#include "leash/checkpoint.h"
#include "leash/data.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/optim.h"
#include "leash/rng.h"
#include "leash/safetensors.h"
#include "leash/tokenizer.h"
#include "testutil.h"

typedef int (*loader)(const char *dir, void *ctx); // loads the file under test from dir; 0 or an error

typedef struct {
    long tried, loaded, failed;
} tally;

/* Writes `data` (n bytes) to dir/name, calls load, checks the outcome. */
static void attempt(const char *dir, const char *name, const char *data, size_t n, loader load, void *ctx, tally *t,
                    const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(leash_write_file_atomic(path, data, n), 0);
    int rc = load(dir, ctx);
    t->tried++;
    if (rc == LEASH_OK) {
        t->loaded++;
        return;
    }
    t->failed++;
    cr_assert(strstr(leash_errmsg(), name), "%s (%s, %zu bytes): the message does not name the file: %s", name, what, n,
              leash_errmsg());
}

/* Truncations, random byte changes, then the valid file back. */
static void torture(const char *dir, const char *name, loader load, void *ctx, uint64_t seed) {
    char path[512], *good;
    size_t n;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(leash_read_file(path, (size_t)1 << 26, &good, &n), 0, "%s", leash_errmsg());
    cr_assert_eq(load(dir, ctx), LEASH_OK, "the valid %s does not load: %s", name, leash_errmsg());
    tally cut = {0}, flip = {0};
    for (size_t k = 0; k < n; k += n <= 8192 || k < 2048 || k + 2048 >= n ? 1 : 7) attempt(dir, name, good, k, load, ctx, &cut, "truncated");
    char *bad = malloc(n);
    leash_rng rng;
    leash_rng_seed(&rng, seed, 0);
    for (int i = 0; i < 400; i++) {
        memcpy(bad, good, n);
        size_t at = (size_t)(leash_rng_uniform(&rng) * n);
        bad[at] = (char)(leash_rng_uniform(&rng) * 256);
        attempt(dir, name, bad, n, load, ctx, &flip, "one byte changed");
    }
    cr_assert_eq(leash_write_file_atomic(path, good, n), 0);
    cr_log_info("%-28s %6zu bytes: %ld truncations (%ld loaded, %ld clear errors); %ld byte changes (%ld loaded, %ld clear "
                "errors)\n",
                name, n, cut.tried, cut.loaded, cut.failed, flip.tried, flip.loaded, flip.failed);
    free(good), free(bad);
}

static int load_model(const char *dir, void *ctx) {
    (void)ctx;
    leash_gpt *m = NULL;
    int rc = leash_gpt_load(&m, dir);
    leash_gpt_free(m);
    return rc;
}
static int load_tokenizer(const char *dir, void *ctx) {
    (void)ctx;
    leash_tokenizer *t = NULL;
    int rc = leash_tokenizer_load_dir(&t, dir);
    leash_tokenizer_free(t);
    return rc;
}
static int load_tokenizer_json(const char *dir, void *ctx) {
    (void)ctx;
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    leash_tokenizer *t = NULL;
    int rc = leash_tokenizer_load_json(&t, path);
    leash_tokenizer_free(t);
    return rc;
}
static int load_prefs(const char *dir, void *ctx) {
    (void)ctx;
    static const char *const keys[] = {"prompt", "chosen", "rejected"};
    char path[512];
    snprintf(path, sizeof path, "%s/prefs.jsonl", dir);
    leash_table t = {0};
    int rc = leash_jsonl_load(path, keys, 3, NULL, 0, 0, &t);
    leash_table_free(&t);
    return rc;
}
static int load_prompts(const char *dir, void *ctx) {
    (void)ctx;
    static const char *const keys[] = {"prompt"};
    char path[512];
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    leash_table t = {0};
    int rc = leash_jsonl_load(path, keys, 1, NULL, 0, 0, &t);
    leash_table_free(&t);
    return rc;
}
static int load_optimizer(const char *dir, void *ctx) {
    leash_adamw *opt = ctx;
    char path[512];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    return leash_adamw_load(opt, path);
}

/* A tiny model (V 40, C 8, 1 layer: a 6 KB safetensors file) with a trained tokenizer beside it. */
static void small_model_dir(const char *dir) {
    const char *text = "the soup was good. the bread was bad. their class seemed fine and the room was warm.\n";
    cr_assert_eq(leash_tokenizer_train(text, strlen(text), 300, 2, dir), 0, "%s", leash_errmsg());
    leash_gpt_config cfg = {.vocab_size = 300, .n_positions = 8, .n_embd = 4, .n_layer = 1, .n_head = 1,
                            .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 1);
    cr_assert_eq(leash_gpt_save(m, dir), 0);
    leash_gpt_free(m);
}

Test(corrupt, model_and_tokenizer_files, .timeout = 600) {
    char dir[] = "/tmp/leash-corrupt-XXXXXX", cmd[256];
    cr_assert(mkdtemp(dir));
    small_model_dir(dir);
    torture(dir, "config.json", load_model, NULL, 1);
    torture(dir, "model.safetensors", load_model, NULL, 2);
    torture(dir, "vocab.json", load_tokenizer, NULL, 3);
    torture(dir, "merges.txt", load_tokenizer, NULL, 4);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* dir/tokenizer.json from dir's vocab.json and merges.txt, with the given added tokens and pre-tokenizer
 * (JSON text) and extra model keys (JSON text ending in ", " or empty). */
static void write_tokenizer_json(const char *dir, const char *added, const char *pre, const char *model_extra) {
    char path[512], *vocab, *merges;
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    cr_assert_eq(leash_read_file(path, 1 << 20, &vocab, NULL), 0);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    cr_assert_eq(leash_read_file(path, 1 << 20, &merges, NULL), 0);
    FILE *f = fopen((snprintf(path, sizeof path, "%s/tokenizer.json", dir), path), "w");
    fprintf(f, "{\"version\": \"1.0\", \"added_tokens\": %s, \"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", "
               "%s\"vocab\": %s, \"merges\": [",
            added, pre, model_extra, vocab);
    int first = 1;
    for (char *line = strtok(merges, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        fprintf(f, "%s\"%s\"", first ? "" : ", ", line);
        first = 0;
    }
    fputs("]}}\n", f);
    fclose(f);
    free(vocab), free(merges);
}

Test(corrupt, tokenizer_json_optimizer_and_data_files, .timeout = 600) {
    char dir[] = "/tmp/leash-corrupt-XXXXXX", path[256], cmd[256];
    cr_assert(mkdtemp(dir));
    // tokenizer.json: GPT-2's file format, written from a small trained tokenizer by hand
    small_model_dir(dir);
    write_tokenizer_json(dir, "[]", "{\"type\": \"ByteLevel\"}", "");
    torture(dir, "tokenizer.json", load_tokenizer_json, NULL, 5);
    // the optimizer state of a 2-step run on a 600-parameter model
    leash_adamw_config oc = leash_adamw_defaults();
    leash_adamw opt;
    cr_assert_eq(leash_adamw_create(&opt, &oc, 600), 0);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    cr_assert_eq(leash_adamw_save(&opt, path), 0);
    torture(dir, "optimizer.safetensors", load_optimizer, &opt, 6);
    leash_adamw_free(&opt);
    // preference pairs and prompts
    FILE *f = fopen((snprintf(path, sizeof path, "%s/prefs.jsonl", dir), path), "w");
    for (int i = 0; i < 12; i++)
        fprintf(f, "{\"prompt\": \"The soup %d\", \"chosen\": \" was good.\", \"rejected\": \" was \\u00e9 bad.\"}\n", i);
    fclose(f);
    torture(dir, "prefs.jsonl", load_prefs, NULL, 7);
    f = fopen((snprintf(path, sizeof path, "%s/prompts.jsonl", dir), path), "w");
    for (int i = 0; i < 20; i++) fprintf(f, "{\"prompt\": \"Their class %d seemed\"}\n", i);
    fclose(f);
    torture(dir, "prompts.jsonl", load_prompts, NULL, 8);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The RL checkpoint's state.json, through the resume path (models and optimisers loaded once). */
typedef struct {
    leash_rl_config c;
    leash_gpt *policy;
    leash_adamw popt;
    double hist[4 * 8];
} resume_ctx;

static int load_rl_state(const char *dir, void *vctx) {
    resume_ctx *x = vctx;
    rl_state st = {.beta = x->c.beta, .hist = x->hist};
    (void)dir;
    return rl_checkpoint_load(x->c.out_dir, &x->c, x->policy, NULL, &x->popt, NULL, &st);
}

Test(corrupt, rl_checkpoint_state_and_logs_on_resume, .timeout = 600) {
    rl_scratch w;
    char ckpt[300];
    rl_scratch_make(&w, "corrupt");
    resume_ctx x = {.c = leash_rl_defaults(LEASH_GRPO)};
    x.c.policy_dir = w.dir, x.c.prompts = w.prompts, x.c.out_dir = w.out, x.c.reward.kind = LEASH_REWARD_GOLD, x.c.steps = 3, x.c.batch = 2;
    x.c.grpo.group = 2, x.c.max_new = 4;
    cr_assert_eq(leash_rl_train(&x.c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&x.policy, w.dir), 0);
    cr_assert_eq(leash_adamw_create(&x.popt, &x.c.optim, leash_gpt_num_params(x.policy)), 0);
    cr_assert_eq(leash_checkpoint_find(w.out, ckpt, sizeof ckpt), 0);
    torture(ckpt, "state.json", load_rl_state, &x, 9);
    // the metrics log on resume: whatever a kill left, what stays is whole lines of steps up to the checkpoint
    char path[512], *good, *back;
    size_t n, m;
    snprintf(path, sizeof path, "%s/metrics.jsonl", w.out);
    cr_assert_eq(leash_read_file(path, 1 << 20, &good, &n), 0);
    for (size_t cut = 0; cut <= n; cut++) {
        cr_assert_eq(leash_write_file_atomic(path, good, cut), 0);
        cr_assert_eq(leash_log_trim(path, 2), 0, "%s", leash_errmsg());
        cr_assert_eq(leash_read_file(path, 1 << 20, &back, &m), 0);
        cr_assert(m <= cut && memcmp(back, good, m) == 0 && (m == 0 || back[m - 1] == '\n'), "cut %zu: kept %zu bytes", cut, m);
        int lines = 0;
        for (size_t i = 0; i < m; i++) lines += back[i] == '\n';
        cr_assert(lines <= 2, "cut %zu: %d lines kept past the checkpoint's step 2", cut, lines);
        free(back);
    }
    free(good);
    leash_adamw_free(&x.popt);
    leash_gpt_free(x.policy);
    rl_scratch_drop(&w);
}

/* Hand-written safetensors headers that lie. */
static void write_st(const char *path, const char *header, size_t data_bytes) {
    size_t h = strlen(header);
    char *buf = calloc(8 + h + data_bytes, 1);
    uint64_t len = h;
    memcpy(buf, &len, 8);
    memcpy(buf + 8, header, h);
    cr_assert_eq(leash_write_file_atomic(path, buf, 8 + h + data_bytes), 0);
    free(buf);
}

Test(corrupt, malicious_safetensors_headers) {
    char dir[] = "/tmp/leash-corrupt-XXXXXX", path[256], cmd[256];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    const struct {
        const char *header;
        size_t data;
        const char *why;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL}, // valid
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "reversed offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "shape overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,4],\"data_offsets\":[0,8]}}", 8, "shape overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "negative dimension"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "size disagrees with shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8, "huge offset"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "too many dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8, "shape not an array"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "no dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "no offsets"},
        {"[1, 2, 3]", 0, "not an object"},
        {"{\"a\": 5}", 0, "entry not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "unterminated JSON"},
        {"", 0, "empty header"},
        // found by make fuzz (the second used to leak the first): duplicate metadata
        {"{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{\"c\":\"d\"}}", 0, "metadata twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(path, cases[i].header, cases[i].data);
        leash_st_file st;
        int rc = leash_st_open(&st, path);
        if (!cases[i].why) {
            cr_assert_eq(rc, 0, "the valid file: %s", leash_errmsg());
            leash_st_close(&st);
            continue;
        }
        cr_assert_neq(rc, 0, "case %zu (%s) was accepted", i, cases[i].why);
        cr_assert(strstr(leash_errmsg(), "x.safetensors"), "case %zu (%s): %s", i, cases[i].why, leash_errmsg());
    }
    // a header length beyond the file, and one of 2^63
    uint64_t lens[2] = {1000, (uint64_t)1 << 63};
    for (int k = 0; k < 2; k++) {
        char buf[16] = {0};
        memcpy(buf, &lens[k], 8);
        cr_assert_eq(leash_write_file_atomic(path, buf, 16), 0);
        leash_st_file st;
        cr_assert_neq(leash_st_open(&st, path), 0);
        cr_assert(strstr(leash_errmsg(), "x.safetensors"), "%s", leash_errmsg());
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The open-model files (issue 9): a Llama-family config.json, a sharded checkpoint's index and shards, a PEFT
 * adapter's config and weights, and a Llama 3-style tokenizer.json (Split regex + ByteLevel, added tokens). */
Test(corrupt, open_model_files, .timeout = 900) {
    char dir[] = "/tmp/leash-corrupt-XXXXXX", adir[128], path[256], cmd[256];
    cr_assert(mkdtemp(dir));
    small_model_dir(dir); // for its tokenizer
    leash_gpt_config cfg = {.vocab_size = 300, .n_positions = 8, .n_embd = 4, .n_layer = 1, .n_head = 2,
                            .arch = LEASH_ARCH_LLAMA, .n_kv_head = 1, .n_inner = 6, .bos_token_id = -1,
                            .eos_token_id = -1, .layer_norm_epsilon = 1e-5f, .untied_head = 1};
    snprintf(cfg.model_type, sizeof cfg.model_type, "llama");
    leash_gpt *m, *base;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 2);
    cr_assert_eq(leash_gpt_save(m, dir), 0);
    torture(dir, "config.json", load_model, NULL, 11);
    // two shards and their index
    int n = leash_gpt_num_tensors(m), half = n / 2;
    leash_st_tensor *t = calloc(n, sizeof *t);
    FILE *f = fopen((snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir), path), "w");
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < n; i++) {
        const leash_tensor_info *ti = leash_gpt_tensor(m, i);
        t[i] = (leash_st_tensor){ti->name, leash_gpt_params(m) + ti->offset, ti->ndim, {ti->shape[0], ti->shape[1]}};
        fprintf(f, "%s\"%s\": \"model-0000%d.safetensors\"", i ? ", " : "", ti->name, i < half ? 1 : 2);
    }
    fprintf(f, "}}\n");
    fclose(f);
    cr_assert_eq(leash_st_save((snprintf(path, sizeof path, "%s/model-00001.safetensors", dir), path), t, half, NULL), 0);
    cr_assert_eq(leash_st_save((snprintf(path, sizeof path, "%s/model-00002.safetensors", dir), path), t + half, n - half, NULL), 0);
    cr_assert_eq(unlink((snprintf(path, sizeof path, "%s/model.safetensors", dir), path)), 0);
    torture(dir, "model.safetensors.index.json", load_model, NULL, 12);
    torture(dir, "model-00002.safetensors", load_model, NULL, 13);
    // a PEFT adapter on the sharded base
    cr_assert_eq(leash_gpt_load(&base, dir), 0, "%s", leash_errmsg());
    leash_lora_config lc = {.rank = 2, .alpha = 4.0f, .targets = LEASH_LORA_Q | LEASH_LORA_V};
    leash_gpt *lm;
    cr_assert_eq(leash_gpt_add_lora(&lm, base, &lc, 3), 0, "%s", leash_errmsg());
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    cr_assert_eq(leash_gpt_save(lm, adir), 0, "%s", leash_errmsg());
    torture(adir, "adapter_config.json", load_model, NULL, 14);
    torture(adir, "adapter_model.safetensors", load_model, NULL, 15);
    leash_gpt_free(lm), leash_gpt_free(base), leash_gpt_free(m);
    free(t);
    // tokenizer.json as Llama 3 writes it: a Split regex, ByteLevel without its own, ignore_merges, specials
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, dir), 0);
    int eot = leash_tokenizer_special_id(tok, "<|endoftext|>");
    leash_tokenizer_free(tok);
    char added[128];
    snprintf(added, sizeof added, "[{\"id\": %d, \"content\": \"<|endoftext|>\", \"special\": true}]", eot);
    write_tokenizer_json(dir, added,
                         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                         "\"(?i:'s|'t)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}|\\\\s+(?!\\\\S)|\\\\s+\"}, "
                         "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
                         "\"add_prefix_space\": false, \"use_regex\": false}]}",
                         "\"ignore_merges\": true, ");
    torture(dir, "tokenizer.json", load_tokenizer_json, NULL, 16);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
