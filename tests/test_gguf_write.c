/* GGUF export (src/gguf_write.c, `leash export gguf`) checked against llama.cpp's own Python package (PyPI
 * `gguf`, tests/ref/gguf_check.py): small GPT-2, Llama (GQA, untied with llama3 rope, tied with linear rope
 * and a head size of its own) and Qwen2 (biases) models at f32, f16, bf16 and q8_0 — every tensor's bytes
 * equal to gguf.quants of the weight in llama.cpp's layout, every metadata key as the converter writes it,
 * tokens and merges as the tokenizer files have them. Also: leash reads its own f32 export back to the same
 * weights and logits, and bad input fails clearly with nothing written. Skips with a printed reason when
 * python3's gguf (or, for the Llama-family tokenizers, Hugging Face tokenizers) is missing, unless
 * LEASH_REQUIRE_REF=1. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static void write_text(const char *dir, const char *name, const char *s) {
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
    write_text(dir, "texts.json", texts);
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
    leash_gpt_free(m);
    drop_exports(dir);
    drop(dir);
}

/* A Llama-family model of cfg with a family's tokenizer.json and a tokenizer_config.json. */
static void llama_family(const char *style, const char *pre, leash_gpt_config c, const char *tok_config, const char *what) {
    if (!have_tokenizers()) LEASH_SKIP_OR_FAIL("Hugging Face tokenizers is not installed (pip install tokenizers)");
    char dir[64];
    scratch(dir);
    c.vocab_size = family_tokenizer(dir, style) + 5; // 5 ids beyond the tokenizer: [PAD] entries
    write_text(dir, "tokenizer_config.json", tok_config);
    leash_gpt *m = model_in(dir, c, 2);
    export_and_check(m, dir, pre, what);
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
                 "llama (GQA 4/2, untied, llama3 rope)");
}

Test(gguf_write, llama_tied_linear_rope_own_head_size, .timeout = 300) {
    NEED_GGUF();
    leash_gpt_config c = llama_cfg("llama");
    c.head_dim = 32, c.n_embd = 96, c.n_inner = 64, c.rope_scaling = LEASH_ROPE_LINEAR, c.rope_factor = 2.0f;
    llama_family("smollm2", "smollm", c,
                 "{\"bos_token\": \"<|im_start|>\", \"eos_token\": \"<|im_end|>\", \"pad_token\": \"<|im_end|>\", "
                 "\"unk_token\": \"<|endoftext|>\", \"chat_template\": \"{% for m in messages %}<|im_start|>{{ m.role }}\\n"
                 "{{ m.content }}<|im_end|>\\n{% endfor %}\"}",
                 "llama (tied, linear rope x2, head_dim 32 of width 96)");
}

Test(gguf_write, qwen2_biases, .timeout = 300) {
    NEED_GGUF();
    leash_gpt_config c = llama_cfg("qwen2");
    c.qkv_bias = 1, c.rope_theta = 1e6f, c.layer_norm_epsilon = 1e-6f;
    llama_family("qwen2", "qwen2", c,
                 "{\"eos_token\": \"<|im_end|>\", \"pad_token\": \"<|endoftext|>\", \"bos_token\": null, "
                 "\"add_bos_token\": false}",
                 "qwen2 (q/k/v biases)");
}
