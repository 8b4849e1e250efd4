/* GGUF export (src/gguf_write.c, `leash export gguf`) checked against llama.cpp's own Python package (PyPI
 * `gguf`, tests/ref/gguf_check.py): small GPT-2, Llama (GQA, untied with llama3 rope, tied with linear rope
 * and a head size of its own) and Qwen2 (biases) models at f32, f16, bf16 and q8_0 — every tensor's bytes
 * equal to gguf.quants of the weight in llama.cpp's layout, every metadata key as the converter writes it,
 * tokens and merges as the tokenizer files have them. Also: leash reads its own f32 export back to the same
 * weights and logits, and bad input fails clearly with nothing written. Skips with a printed reason when
 * python3's gguf (or, for the Llama-family tokenizers, Hugging Face tokenizers) is missing, unless
 * LEASH_REQUIRE_REF=1. */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gguf.h"
#include "leash/gpt.h"
#include "leash/rng.h"
#include "leash/tokenizer.h"
#include "testutil.h"

static int have_gguf(void) { return system("/usr/bin/python3 -c 'import gguf, numpy, torch' >/dev/null 2>&1") == 0; }
static int have_tokenizers(void) { return system("/usr/bin/python3 -c 'import tokenizers' >/dev/null 2>&1") == 0; }

#define NEED_GGUF()                                                                                                     \
    if (!have_gguf())                                                                                                   \
    LEASH_SKIP_OR_FAIL("python3 cannot import gguf, numpy and torch (pip install gguf: llama.cpp's reader)")

static const char *text =
    "the cat sat on the mat. the dog ate 12 bones and 345 biscuits! what's that? it's the cat's hat.\n"
    "We've been told they'll say I'd rather not; you're sure? 2024-11-25: 3.14 and 42.\n";

static void scratch(char *dir) {
    strcpy(dir, "/tmp/leash-gguf-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void drop(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void write_named(const char *dir, const char *name, const char *s) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(leash_write_file_atomic(path, s, strlen(s)), 0, "%s", leash_errmsg());
}

/* A Hugging Face tokenizers tokenizer.json of a model family (tests/ref/hf_tokenizer_ref.py) in dir; returns
 * its vocabulary size (max id + 1). */
static int family_tokenizer(const char *dir, const char *style) {
    char cmd[1024];
    char texts[2048];
    snprintf(texts, sizeof texts, "[\"%s\", \"%s\"]", "the cat sat on the mat. the dog ate 12 bones and 345 biscuits!",
             "what's that? it's the cat's hat. We've been told they'll say I'd rather not; you're sure? 3.14 and 42");
    write_named(dir, "texts.json", texts);
    snprintf(cmd, sizeof cmd, "cd '%s' && /usr/bin/python3 tests/ref/hf_tokenizer_ref.py %s '%s/texts.json' '%s' >'%s/tok.log' 2>&1",
             LEASH_SRCDIR, style, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "hf_tokenizer_ref.py %s failed (see %s/tok.log)", style, dir);
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, dir), 0, "%s", leash_errmsg());
    int V = leash_tokenizer_vocab_size(tok);
    leash_tokenizer_free(tok);
    char path[512];
    snprintf(path, sizeof path, "%s/texts.json", dir), remove(path);
    snprintf(path, sizeof path, "%s/ids.json", dir), remove(path);
    snprintf(path, sizeof path, "%s/tok.log", dir), remove(path);
    return V;
}

/* A random model of cfg (norms and biases moved away from 1 and 0) saved in dir. */
static leash_gpt *model_in(const char *dir, leash_gpt_config cfg, uint64_t seed) {
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, seed);
    leash_rng r;
    leash_rng_seed(&r, seed, 7);
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        for (size_t k = 0; k < t->numel; k++) // also values F16 rounds to subnormals, and exact ties
            leash_gpt_params(m)[t->offset + k] += (float)((t->ndim == 1 ? 0.1 : 0.02) * leash_rng_normal(&r));
    }
    float *w = leash_gpt_params(m) + leash_gpt_tensor(m, 0)->offset;
    w[0] = 3e-6f, w[1] = -6e-8f, w[2] = 1.0009765625f + 0x1p-11f, w[3] = 0.0f; // subnormal halves, a tie
    cr_assert_eq(leash_gpt_save(m, dir), 0, "%s", leash_errmsg());
    return m;
}

static const char *types[] = {"f32", "f16", "bf16", "q8_0"};
static const int ggml_types[] = {LEASH_GGML_F32, LEASH_GGML_F16, LEASH_GGML_BF16, LEASH_GGML_Q8_0};

/* Exports m (tokenizer of dir) at every type and runs the reference on the four files. */
static void export_and_check(const leash_gpt *m, const char *dir, const char *pre, const char *what) {
    char cmd[4096], out[512];
    int n = snprintf(cmd, sizeof cmd, "cd '%s' && /usr/bin/python3 tests/ref/gguf_check.py '%s' %s", LEASH_SRCDIR, dir, pre);
    for (int i = 0; i < 4; i++) {
        snprintf(out, sizeof out, "%s.%s.gguf", dir, types[i]);
        cr_assert_eq(leash_gguf_save(m, dir, out, ggml_types[i], NULL), 0, "%s %s: %s", what, types[i], leash_errmsg());
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s='%s'", types[i], out);
    }
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >'%s.check.txt' 2>&1", dir);
    int rc = system(cmd);
    char path[512], *report = NULL;
    snprintf(path, sizeof path, "%s.check.txt", dir);
    leash_read_file(path, 1 << 20, &report, NULL);
    cr_log_info("%s:\n%s", what, report ? report : "(no output)");
    cr_assert_eq(rc, 0, "%s: gguf_check.py found a mismatch:\n%s", what, report ? report : "");
    free(report);
}

/* leash reads its own f32 export back: the same configuration shape, every weight and the logits bit for bit. */
static void load_back(const leash_gpt *m, const char *dir, const char *what) {
    char path[512];
    snprintf(path, sizeof path, "%s.f32.gguf", dir);
    leash_gpt *g;
    cr_assert_eq(leash_gpt_load(&g, path), 0, "%s: leash cannot read its own export: %s", what, leash_errmsg());
    cr_assert_eq(leash_gpt_num_params(g), leash_gpt_num_params(m), "%s: %zu weights read back, %zu written", what,
                 leash_gpt_num_params(g), leash_gpt_num_params(m));
    size_t differ = 0;
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *a = leash_gpt_tensor(m, i), *b = leash_gpt_tensor(g, i);
        cr_assert_str_eq(a->name, b->name, "%s: tensor %d", what, i);
        const float *x = leash_gpt_params((leash_gpt *)m) + a->offset, *y = leash_gpt_params(g) + b->offset;
        for (size_t k = 0; k < a->numel; k++) differ += memcmp(&x[k], &y[k], sizeof *x) != 0;
    }
    int tokens[2 * 8];
    for (int i = 0; i < 16; i++) tokens[i] = (i * 37 + 5) % leash_gpt_cfg(m)->vocab_size;
    leash_gpt *mm;
    cr_assert_eq(leash_gpt_load(&mm, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_forward(mm, tokens, NULL, 2, 8), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_forward(g, tokens, NULL, 2, 8), 0, "%s", leash_errmsg());
    size_t n = (size_t)16 * leash_gpt_cfg(m)->vocab_size, ldiff = 0;
    for (size_t k = 0; k < n; k++) ldiff += memcmp(&leash_gpt_logits(mm)[k], &leash_gpt_logits(g)[k], sizeof(float)) != 0;
    cr_log_info("%s: leash reads its f32 export back: %zu of %zu weights and %zu of %zu logits differ", what, differ,
                leash_gpt_num_params(m), ldiff, n);
    cr_assert(differ == 0 && ldiff == 0, "%s: the f32 export read back differs", what);
    leash_gpt_free(mm), leash_gpt_free(g);
}

static void drop_exports(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -f '%s'.*.gguf '%s.check.txt'", dir, dir);
    cr_assert_eq(system(cmd), 0);
}

Test(gguf_write, gpt2_every_type_matches_gguf_py, .timeout = 300) {
    NEED_GGUF();
    char dir[64];
    scratch(dir);
    cr_assert_eq(leash_tokenizer_train(text, strlen(text), 300, 2, dir), 0, "%s", leash_errmsg());
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, dir), 0);
    int eot = leash_tokenizer_special_id(tok, "<|endoftext|>"), V = leash_tokenizer_vocab_size(tok);
    leash_tokenizer_free(tok);
    leash_gpt_config c = {.vocab_size = V + 3, .n_positions = 64, .n_embd = 64, .n_layer = 2, .n_head = 4,
                          .bos_token_id = eot, .eos_token_id = eot, .layer_norm_epsilon = 1e-5f};
    leash_gpt *m = model_in(dir, c, 1);
    export_and_check(m, dir, "gpt-2", "gpt2");
    load_back(m, dir, "gpt2");
    leash_gpt_free(m);
    drop_exports(dir);
    drop(dir);
}

/* A Llama-family model of cfg with a family's tokenizer.json and a tokenizer_config.json. */
static void llama_family(const char *style, const char *pre, leash_gpt_config c, const char *tok_config, const char *what,
                         int reload) {
    if (!have_tokenizers()) LEASH_SKIP_OR_FAIL("Hugging Face tokenizers is not installed (pip install tokenizers)");
    char dir[64];
    scratch(dir);
    c.vocab_size = family_tokenizer(dir, style) + 5; // 5 ids beyond the tokenizer: [PAD] entries
    write_named(dir, "tokenizer_config.json", tok_config);
    leash_gpt *m = model_in(dir, c, 2);
    export_and_check(m, dir, pre, what);
    if (reload) load_back(m, dir, what);
    leash_gpt_free(m);
    drop_exports(dir);
    drop(dir);
}

static leash_gpt_config llama_cfg(const char *type) {
    leash_gpt_config c = {.n_positions = 64, .n_embd = 64, .n_layer = 2, .n_head = 4, .arch = LEASH_ARCH_LLAMA,
                          .n_kv_head = 2, .n_inner = 48, .bos_token_id = 0, .eos_token_id = 1,
                          .layer_norm_epsilon = 1e-5f, .rope_theta = 500000.0f};
    snprintf(c.model_type, sizeof c.model_type, "%s", type);
    return c;
}

Test(gguf_write, llama_gqa_untied_llama3_rope, .timeout = 300) {
    NEED_GGUF();
    leash_gpt_config c = llama_cfg("llama");
    c.untied_head = 1, c.rope_scaling = LEASH_ROPE_LLAMA3, c.rope_factor = 8.0f, c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f, c.rope_original_max_positions = 16;
    llama_family("llama3", "llama-bpe", c,
                 "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|end_of_text|>\", \"add_bos_token\": true, "
                 "\"chat_template\": \"{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\\n\\n"
                 "{{ m.content }}<|eot_id|>{% endfor %}\"}",
                 "llama (GQA 4/2, untied, llama3 rope)", 1); // rope_freqs.weight read back as the llama3 parameters
}

Test(gguf_write, llama_tied_linear_rope_own_head_size, .timeout = 300) {
    NEED_GGUF();
    leash_gpt_config c = llama_cfg("llama");
    c.head_dim = 32, c.n_embd = 96, c.n_inner = 64, c.rope_scaling = LEASH_ROPE_LINEAR, c.rope_factor = 2.0f;
    llama_family("smollm2", "smollm", c,
                 "{\"bos_token\": \"<|im_start|>\", \"eos_token\": \"<|im_end|>\", \"pad_token\": \"<|im_end|>\", "
                 "\"unk_token\": \"<|endoftext|>\", \"chat_template\": \"{% for m in messages %}<|im_start|>{{ m.role }}\\n"
                 "{{ m.content }}<|im_end|>\\n{% endfor %}\"}",
                 "llama (tied, linear rope x2, head_dim 32 of width 96)", 1);
}

Test(gguf_write, qwen2_biases, .timeout = 300) {
    NEED_GGUF();
    leash_gpt_config c = llama_cfg("qwen2");
    c.qkv_bias = 1, c.rope_theta = 1e6f, c.layer_norm_epsilon = 1e-6f;
    llama_family("qwen2", "qwen2", c,
                 "{\"eos_token\": \"<|im_end|>\", \"pad_token\": \"<|endoftext|>\", \"bos_token\": null, "
                 "\"add_bos_token\": false}",
                 "qwen2 (q/k/v biases)", 1);
}

Test(gguf_write, mistral_gqa_untied_loads_back, .timeout = 300) {
    NEED_GGUF();
    leash_gpt_config c = llama_cfg("mistral");
    c.untied_head = 1;
    llama_family("llama3", "llama-bpe", c,
                 "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|eot_id|>\", \"add_bos_token\": true}",
                 "mistral (GQA 4/2, untied)", 1);
}

/* ---- bad input: clear errors, nothing written ---- */

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* No temporary file left in dir. */
static void no_temporaries(const char *dir) {
    char cmd[512], out[1024];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '\\.tmp\\.' ; true", dir);
    run_capture(cmd, out, sizeof out);
    cr_assert_eq(atoi(out), 0, "temporary files left in %s", dir);
}

/* A scratch directory dir holding mdir = dir/model (a tiny GPT-2, seeded, with a 300-token tokenizer trained
 * on text) and out = dir/out.gguf (not written); *c is the model's configuration. */
static leash_gpt *tiny_gpt2(char dir[64], char mdir[128], char out[256], uint64_t seed, leash_gpt_config *c) {
    scratch(dir);
    snprintf(mdir, 128, "%s/model", dir);
    cr_assert_eq(leash_mkdir(mdir), 0);
    cr_assert_eq(leash_tokenizer_train(text, strlen(text), 300, 2, mdir), 0, "%s", leash_errmsg());
    *c = (leash_gpt_config){.vocab_size = 300, .n_positions = 16, .n_embd = 32, .n_layer = 1, .n_head = 2,
                            .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    snprintf(out, 256, "%s/out.gguf", dir);
    return model_in(mdir, *c, seed);
}

Test(gguf_write, bad_input_fails_clearly_and_writes_nothing, .timeout = 120) {
    char dir[64], mdir[128], out[256], cmd[1024], msg[4096];
    leash_gpt_config c;
    leash_gpt *m = tiny_gpt2(dir, mdir, out, 3, &c);
    // a missing model directory
    snprintf(cmd, sizeof cmd, "%s export gguf '%s/nowhere' '%s' --type f16 2>&1", LEASH_BIN, dir, out);
    cr_assert_eq(run_capture(cmd, msg, sizeof msg), 1, "%s", msg);
    cr_assert(strstr(msg, "nowhere"), "the error does not name the directory: %s", msg);
    cr_log_info("missing model: %s", msg);
    // an unknown --type
    snprintf(cmd, sizeof cmd, "%s export gguf '%s' '%s' --type q4_k 2>&1", LEASH_BIN, mdir, out);
    cr_assert_eq(run_capture(cmd, msg, sizeof msg), 2, "%s", msg);
    cr_assert(strstr(msg, "q4_k") && strstr(msg, "q8_0"), "the error does not name the type and the choices: %s", msg);
    cr_log_info("unknown type: %s", msg);
    // an unwritable OUT: a directory that does not exist, and an existing directory
    snprintf(cmd, sizeof cmd, "%s export gguf '%s' '%s/no/such/dir/x.gguf' 2>&1", LEASH_BIN, mdir, dir);
    cr_assert_eq(run_capture(cmd, msg, sizeof msg), 1, "%s", msg);
    cr_assert(strstr(msg, "no/such/dir/x.gguf"), "the error does not name OUT: %s", msg);
    cr_log_info("unwritable OUT: %s", msg);
    snprintf(cmd, sizeof cmd, "%s export gguf '%s' '%s' 2>&1", LEASH_BIN, mdir, mdir);
    cr_assert_eq(run_capture(cmd, msg, sizeof msg), 1, "%s", msg);
    cr_log_info("OUT a directory: %s", msg);
    cr_assert(!exists(out), "%s was written", out);
    no_temporaries(dir), no_temporaries(mdir);
    // a failure in the middle of the data (a NaN in the last weight) leaves the previous file as it was
    write_named(dir, "out.gguf", "previous");
    leash_gpt_params(m)[leash_gpt_num_params(m) - 1] = NAN;
    cr_assert_neq(leash_gguf_save(m, mdir, out, LEASH_GGML_Q8_0, NULL), 0);
    cr_log_info("NaN weight: %s", leash_errmsg());
    cr_assert(strstr(leash_errmsg(), "ln_f.bias") && strstr(leash_errmsg(), out), "%s", leash_errmsg());
    char *prev;
    cr_assert_eq(leash_read_file(out, 1024, &prev, NULL), 0);
    cr_assert_str_eq(prev, "previous");
    free(prev);
    no_temporaries(dir);
    // LoRA adapters are not exported unmerged
    leash_gpt_params(m)[leash_gpt_num_params(m) - 1] = 0.0f;
    leash_lora_config lc = {.rank = 2, .alpha = 4.0f, .targets = LEASH_LORA_Q};
    leash_gpt *lm;
    cr_assert_eq(leash_gpt_add_lora(&lm, m, &lc, 1), 0, "%s", leash_errmsg());
    cr_assert_neq(leash_gguf_save(lm, mdir, out, LEASH_GGML_F32, NULL), 0);
    cr_assert(strstr(leash_errmsg(), "leash lora merge"), "%s", leash_errmsg());
    leash_gpt_free(lm);
    // a tokenizer.json whose pre-tokenizer llama.cpp does not know by name
    char *vocab, path[256];
    snprintf(path, sizeof path, "%s/vocab.json", mdir);
    cr_assert_eq(leash_read_file(path, 1 << 20, &vocab, NULL), 0);
    snprintf(msg, sizeof msg, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": []}, \"pre_tokenizer\": "
                              "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                              "\"\\\\p{L}+\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\", \"use_regex\": false}]}}",
             vocab);
    free(vocab);
    write_named(mdir, "tokenizer.json", msg);
    cr_assert_neq(leash_gguf_save(m, mdir, out, LEASH_GGML_F32, NULL), 0);
    cr_log_info("unknown pre-tokenizer: %s", leash_errmsg());
    cr_assert(strstr(leash_errmsg(), "tokenizer.json") && strstr(leash_errmsg(), "pre_tokenizer"), "%s", leash_errmsg());
    // (review) a tokenizer.json without model.merges was exported as a tokenizer with no merges
    cr_assert_eq(leash_read_file(path, 1 << 20, &vocab, NULL), 0);
    snprintf(msg, sizeof msg, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s}, \"pre_tokenizer\": {\"type\": "
                              "\"ByteLevel\", \"add_prefix_space\": false}}", vocab);
    free(vocab);
    write_named(mdir, "tokenizer.json", msg);
    cr_assert_neq(leash_gguf_save(m, mdir, out, LEASH_GGML_F32, NULL), 0, "a tokenizer.json without merges was exported");
    cr_log_info("no merges: %s", leash_errmsg());
    cr_assert(strstr(leash_errmsg(), "tokenizer.json") && strstr(leash_errmsg(), "merges is missing"), "%s", leash_errmsg());
    cr_assert_eq(leash_read_file(out, 1024, &prev, NULL), 0);
    cr_assert_str_eq(prev, "previous");
    free(prev);
    leash_gpt_free(m);
    drop(dir);
}

/* Review findings: a finite weight beyond F16's range was written as inf (F16, and Q8_0's F16 scale) though
 * NaN/inf weights are refused, so leash's own loader then refused the export; a config.json token id of 1e300
 * was converted to int (undefined behaviour) and silently dropped. Both must be errors naming the culprit. */
Test(gguf_write, out_of_range_weights_and_ids_are_refused, .timeout = 120) {
    char dir[64], mdir[128], out[256], path[256];
    leash_gpt_config c;
    leash_gpt *m = tiny_gpt2(dir, mdir, out, 5, &c);
    float *w = leash_gpt_params(m) + leash_gpt_tensor(m, 0)->offset; // wte.weight (300, 32)
    w[40] = 7.0e4f;                                                  // row 1, column 8: > 65504
    cr_assert_neq(leash_gguf_save(m, mdir, out, LEASH_GGML_F16, NULL), 0, "7e4 exported as F16");
    cr_log_info("F16 overflow: %s", leash_errmsg());
    cr_assert(strstr(leash_errmsg(), "wte.weight") && strstr(leash_errmsg(), "F16") && strstr(leash_errmsg(), out),
              "%s", leash_errmsg());
    cr_assert_eq(leash_gguf_save(m, mdir, out, LEASH_GGML_Q8_0, NULL), 0, "7e4 fits Q8_0: %s", leash_errmsg());
    w[40] = 1.0e7f; // Q8_0's scale 1e7 / 127 > 65504
    cr_assert_neq(leash_gguf_save(m, mdir, out, LEASH_GGML_Q8_0, NULL), 0, "1e7 exported as Q8_0");
    cr_log_info("Q8_0 overflow: %s", leash_errmsg());
    cr_assert(strstr(leash_errmsg(), "wte.weight") && strstr(leash_errmsg(), "Q8_0"), "%s", leash_errmsg());
    cr_assert_eq(leash_gguf_save(m, mdir, out, LEASH_GGML_BF16, NULL), 0, "BF16 holds 1e7: %s", leash_errmsg());
    w[40] = 0.0f;
    cr_assert_eq(leash_gguf_save(m, mdir, out, LEASH_GGML_F16, NULL), 0, "%s", leash_errmsg());
    // config.json's pad_token_id far outside int
    char *cfg_text;
    snprintf(path, sizeof path, "%s/config.json", mdir);
    cr_assert_eq(leash_read_file(path, 1 << 20, &cfg_text, NULL), 0);
    char *brace = strchr(cfg_text, '{');
    cr_assert(brace);
    char edited[8192];
    snprintf(edited, sizeof edited, "{\"pad_token_id\": 1e300, %s", brace + 1);
    free(cfg_text);
    write_named(mdir, "config.json", edited);
    cr_assert_neq(leash_gguf_save(m, mdir, out, LEASH_GGML_F32, NULL), 0, "pad_token_id 1e300 accepted");
    cr_log_info("pad_token_id 1e300: %s", leash_errmsg());
    cr_assert(strstr(leash_errmsg(), "config.json") && strstr(leash_errmsg(), "pad_token_id"), "%s", leash_errmsg());
    leash_gpt_free(m);
    drop(dir);
}

/* Review finding: a GGUF whose tokenizer.ggml.add_bos_token is true but which names no BOS token (leash's
 * export writes one from a tokenizer_config.json that asks for a BOS the directory does not name) was read
 * into a tokenizer.json that silently adds no BOS (llama.cpp asserts on it); now an error naming both keys. */
Test(gguf_write, add_bos_without_a_bos_token_is_refused, .timeout = 120) {
    char dir[64], mdir[128], out[256];
    leash_gpt_config c;
    leash_gpt *m = tiny_gpt2(dir, mdir, out, 6, &c);
    leash_tokenizer *tok = NULL;
    cr_assert_eq(leash_gguf_save(m, mdir, out, LEASH_GGML_F32, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_tokenizer_load_dir(&tok, out), 0, "without add_bos_token: %s", leash_errmsg());
    leash_tokenizer_free(tok), tok = NULL;
    write_named(mdir, "tokenizer_config.json", "{\"add_bos_token\": true}");
    cr_assert_eq(leash_gguf_save(m, mdir, out, LEASH_GGML_F32, NULL), 0, "%s", leash_errmsg());
    cr_assert_neq(leash_tokenizer_load_dir(&tok, out), 0, "add_bos_token without a BOS id was accepted");
    cr_log_info("add_bos_token without a BOS: %s", leash_errmsg());
    cr_assert(strstr(leash_errmsg(), "add_bos_token") && strstr(leash_errmsg(), "bos_token_id") &&
              strstr(leash_errmsg(), out), "%s", leash_errmsg());
    leash_gpt_free(m);
    drop(dir);
}

/* Llama 3.1 in GGUF: llama.cpp keeps its rotary scaling only as rope_freqs.weight (one factor per frequency).
 * leash recovers the llama3 parameters from the band of smoothly scaled frequencies (three here, as in real
 * Llama 3.1 files: theta 5e5, original context 8192) and checks that they reproduce every entry; the model
 * then computes the same logits. A table that is not Llama 3's scaling is refused, naming the entry. */
Test(gguf_write, llama3_rope_freqs_read_back_as_parameters, .timeout = 120) {
    char dir[64], mdir[128], out[256];
    leash_gpt_config c;
    leash_gpt_free(tiny_gpt2(dir, mdir, out, 5, &c));
    c.arch = LEASH_ARCH_LLAMA, c.n_embd = 128, c.n_head = 2, c.n_kv_head = 1, c.n_inner = 64, c.rope_theta = 500000.0f;
    c.rope_scaling = LEASH_ROPE_LLAMA3, c.rope_factor = 8.0f, c.rope_low_freq_factor = 1.0f, c.rope_high_freq_factor = 4.0f;
    c.rope_original_max_positions = 8192;
    snprintf(c.model_type, sizeof c.model_type, "llama");
    leash_gpt *m = model_in(mdir, c, 6), *g;
    cr_assert_eq(leash_gguf_save(m, mdir, out, LEASH_GGML_F32, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&g, out), 0, "%s", leash_errmsg());
    const leash_gpt_config *r = leash_gpt_cfg(g);
    cr_assert(r->rope_scaling == LEASH_ROPE_LLAMA3 && r->rope_factor == 8.0f && r->rope_original_max_positions == 8192 &&
                  r->rope_low_freq_factor == 1.0f && r->rope_high_freq_factor == 4.0f,
              "recovered factor %g, original context %d, low %g, high %g", (double)r->rope_factor,
              r->rope_original_max_positions, (double)r->rope_low_freq_factor, (double)r->rope_high_freq_factor);
    int tokens[12];
    for (int i = 0; i < 12; i++) tokens[i] = (i * 41 + 3) % c.vocab_size;
    cr_assert_eq(leash_gpt_forward(m, tokens, NULL, 1, 12), 0);
    cr_assert_eq(leash_gpt_forward(g, tokens, NULL, 1, 12), 0);
    cr_assert_eq(memcmp(leash_gpt_logits(m), leash_gpt_logits(g), (size_t)12 * c.vocab_size * sizeof(float)), 0,
                 "the logits differ from the model's own");
    leash_gpt_free(g);
    // one factor changed in the file: not a llama3 table any more
    leash_gguf *f;
    float table[64], bad = 2.5f;
    cr_assert_eq(leash_gguf_open(&f, out), 0);
    memcpy(table, leash_gguf_tensor_data(f, leash_gguf_find_tensor(f, "rope_freqs.weight")), sizeof table);
    leash_gguf_close(f);
    char *bytes;
    size_t n;
    cr_assert_eq(leash_read_file(out, 1 << 26, &bytes, &n), 0);
    char *at = memmem(bytes, n, table, sizeof table);
    cr_assert(at, "the factor table is not in the file");
    memcpy(at + 4 * 20, &bad, sizeof bad);
    cr_assert_eq(leash_write_file_atomic(out, bytes, n), 0);
    free(bytes);
    cr_assert_neq(leash_gpt_load(&g, out), 0);
    cr_assert(strstr(leash_errmsg(), "rope_freqs.weight[") && strstr(leash_errmsg(), out), "%s", leash_errmsg());
    leash_gpt_free(m);
    drop(dir);
}
