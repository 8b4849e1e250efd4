/* leash's BPE against an independent Python implementation (tests/ref/bpe_ref.py, with the `regex`
 * module), on a varied set of texts: English, contractions, numbers, whitespace runs, accented Latin,
 * CJK, emoji, code and random Unicode. Both GPT-2's real files (when ../shared has them) and a tokenizer
 * leash trained are checked. Skips with a printed reason when python3-regex is missing, unless
 * LEASH_REQUIRE_REF=1 (CI). */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/error.h"
#include "testutil.h"
#include "leash/fileio.h"
#include "leash/rng.h"
#include "leash/tokenizer.h"

static int have_regex(void) { return system("/usr/bin/python3 -c 'import regex' >/dev/null 2>&1") == 0; }

static int utf8_put(unsigned cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000)
        return out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F)), 3;
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F)), out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The text set: fixed cases plus random strings over mixed scripts (valid UTF-8, no NUL). */
static cJSON *texts(void) {
    static const char *fixed[] = {
        "Hello world", " Hello world", "I'm sure they'll say it's 'fine', we've seen you'd DON'T",
        "numbers 1234567 3.14159 -42 1e10 2026-11-25", "   leading and trailing spaces   ", "tabs\tand\nnewlines\r\n\n\nend",
        "naïve café résumé Ærøskøbing", "日本語のテキスト、中文文本。한국어 텍스트", "emoji 🙂👍🏽🇫🇷 ❤️ done",
        "int main(void) { return x->y[3] != 0 && a <= b; }", "so    many     spaces", "'s 'S 'll 'LL 'd 'D",
        "The food was great but the service was slow.", "¡Hola! ¿Qué tal? «quotes» — dashes – and … ellipses",
        "mixed1with2digits3 and_under_scores", "\u00a0non-breaking\u2003em-space\u3000ideographic"};
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) cJSON_AddItemToArray(a, cJSON_CreateString(fixed[i]));
    static const unsigned ranges[][2] = {{0x20, 0x7E}, {0x20, 0x7E}, {0x20, 0x7E}, {0xA0, 0x17F}, {0x370, 0x3FF},
                                         {0x400, 0x4FF}, {0x3040, 0x30FF}, {0x4E00, 0x4FFF}, {0x1F300, 0x1F64F},
                                         {0x2000, 0x206F}, {0x9, 0xD}, {0x660, 0x669}};
    leash_rng r;
    leash_rng_seed(&r, 77, 0);
    for (int k = 0; k < 300; k++) {
        char buf[1024];
        int n = 0, len = 1 + (int)(leash_rng_uniform(&r) * 60);
        for (int i = 0; i < len; i++) {
            const unsigned *rg = ranges[(int)(leash_rng_uniform(&r) * 12)];
            unsigned cp = rg[0] + (unsigned)(leash_rng_uniform(&r) * (rg[1] - rg[0] + 1));
            n += utf8_put(cp, buf + n);
        }
        buf[n] = '\0';
        cJSON_AddItemToArray(a, cJSON_CreateString(buf));
    }
    return a;
}

static void compare(const char *vocab, const char *merges) {
    char dir[] = "/tmp/leash-bperef-XXXXXX", path[256], out[256], cmd[1024];
    cr_assert(mkdtemp(dir));
    cJSON *t = texts();
    char *json = cJSON_PrintUnformatted(t);
    snprintf(path, sizeof path, "%s/texts.json", dir);
    snprintf(out, sizeof out, "%s/ids.json", dir);
    cr_assert_eq(leash_write_file_atomic(path, json, strlen(json)), 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/bpe_ref.py' '%s' '%s' '%s' '%s'", LEASH_SRCDIR, vocab, merges,
             path, out);
    cr_assert_eq(system(cmd), 0, "the Python reference failed: %s", cmd);
    char *ref_text;
    cr_assert_eq(leash_read_file(out, 1 << 26, &ref_text, NULL), 0);
    cJSON *ref = cJSON_Parse(ref_text);
    cr_assert(cJSON_GetArraySize(ref) == cJSON_GetArraySize(t));
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load(&tok, vocab, merges), 0, "%s", leash_errmsg());
    for (int i = 0; i < cJSON_GetArraySize(t); i++) {
        const char *s = cJSON_GetArrayItem(t, i)->valuestring;
        const cJSON *want = cJSON_GetArrayItem(ref, i);
        int *ids = NULL;
        size_t n = 0, cap = 0;
        cr_assert_eq(leash_tokenizer_encode(tok, s, strlen(s), 0, &ids, &n, &cap), 0);
        int same = (int)n == cJSON_GetArraySize(want);
        for (size_t k = 0; same && k < n; k++) same = ids[k] == cJSON_GetArrayItem(want, (int)k)->valueint;
        cr_assert(same, "text %d (\"%.40s\"): leash gives %zu ids, the reference %d", i, s, n, cJSON_GetArraySize(want));
        free(ids);
    }
    cr_log_info("%d texts encoded identically", cJSON_GetArraySize(t));
    leash_tokenizer_free(tok);
    cJSON_Delete(ref), cJSON_Delete(t);
    free(ref_text), free(json);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(tokenizer_vs_python, gpt2_files, .timeout = 120) {
    if (!have_regex()) LEASH_SKIP_OR_FAIL("python3-regex is not installed (apt-get install python3-regex)");
    const char *v = LEASH_SRCDIR "/../shared/data/gpt2/vocab.json", *m = LEASH_SRCDIR "/../shared/data/gpt2/merges.txt";
    if (access(v, R_OK) != 0) LEASH_SKIP_OR_FAIL("GPT-2 vocabulary not found at %s", v);
    compare(v, m);
}

Test(tokenizer_vs_python, a_trained_tokenizer, .timeout = 120) {
    if (!have_regex()) LEASH_SKIP_OR_FAIL("python3-regex is not installed (apt-get install python3-regex)");
    char dir[] = "/tmp/leash-bpetrain-XXXXXX", v[256], m[256], cmd[256];
    cr_assert(mkdtemp(dir));
    cJSON *t = texts(); // train on the same varied texts, repeated, so merges cover several scripts
    char *json = cJSON_PrintUnformatted(t);
    size_t n = strlen(json);
    char *corpus = malloc(4 * n + 1);
    for (int k = 0; k < 4; k++) memcpy(corpus + k * n, json, n);
    cr_assert_eq(leash_tokenizer_train(corpus, 4 * n, 600, 2, dir), 0, "%s", leash_errmsg());
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    compare(v, m);
    free(corpus), free(json);
    cJSON_Delete(t);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- tokenizer.json against Hugging Face's `tokenizers` ---- */

static int have_hf_tokenizers(void) { return system("/usr/bin/python3 -c 'import tokenizers' >/dev/null 2>&1") == 0; }

/* Texts with chat-template special tokens among them, as prompts carry them. */
static cJSON *texts_with_specials(void) {
    cJSON *a = texts();
    const char *chat[] = {"<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n",
                          "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>",
                          "text<|endoftext|>more text<|im_end|><|im_end|>", "a <|eot_id|> b <|im_start|>c"};
    for (size_t i = 0; i < sizeof chat / sizeof chat[0]; i++) cJSON_AddItemToArray(a, cJSON_CreateString(chat[i]));
    return a;
}

static void compare_hf(const char *style) {
    char dir[] = "/tmp/leash-hftok-XXXXXX", path[256], cmd[1024];
    cr_assert(mkdtemp(dir));
    cJSON *t = texts_with_specials();
    char *json = cJSON_PrintUnformatted(t);
    snprintf(path, sizeof path, "%s/texts.json", dir);
    cr_assert_eq(leash_write_file_atomic(path, json, strlen(json)), 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/hf_tokenizer_ref.py' %s '%s' '%s'", LEASH_SRCDIR, style, path,
             dir);
    cr_assert_eq(system(cmd), 0, "the Hugging Face reference failed: %s", cmd);
    char *ref_text;
    snprintf(path, sizeof path, "%s/ids.json", dir);
    cr_assert_eq(leash_read_file(path, 1 << 26, &ref_text, NULL), 0);
    cJSON *ref = cJSON_Parse(ref_text);
    cr_assert(cJSON_GetArraySize(ref) == cJSON_GetArraySize(t));
    leash_tokenizer *tok;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(leash_tokenizer_load_json(&tok, path), 0, "%s", leash_errmsg());
    int compared = 0, not_nfc = 0;
    for (int i = 0; i < cJSON_GetArraySize(t); i++) {
        const char *s = cJSON_GetArrayItem(t, i)->valuestring;
        const cJSON *want = cJSON_GetArrayItem(ref, i);
        if (cJSON_IsNull(want)) {
            not_nfc++;
            continue;
        }
        int *ids = NULL;
        size_t n = 0, cap = 0;
        cr_assert_eq(leash_tokenizer_encode(tok, s, strlen(s), 1, &ids, &n, &cap), 0);
        int same = (int)n == cJSON_GetArraySize(want);
        for (size_t k = 0; same && k < n; k++) same = ids[k] == cJSON_GetArrayItem(want, (int)k)->valueint;
        cr_assert(same, "%s text %d (\"%.40s\"): leash gives %zu ids, tokenizers %d", style, i, s, n,
                  cJSON_GetArraySize(want));
        compared++;
        free(ids);
    }
    cr_log_info("%s: %d texts encoded as tokenizers does (%d not in NFC left out)", style, compared, not_nfc);
    cr_assert(compared >= 250, "only %d texts compared", compared);
    leash_tokenizer_free(tok);
    cJSON_Delete(ref), cJSON_Delete(t);
    free(ref_text), free(json);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

#define NEED_HF() \
    if (!have_hf_tokenizers()) LEASH_SKIP_OR_FAIL("Hugging Face tokenizers is not installed (pip install tokenizers)")
Test(tokenizer_vs_hf, llama3_split_regex_and_ignore_merges, .timeout = 180) { NEED_HF(); compare_hf("llama3"); }
Test(tokenizer_vs_hf, qwen2_nfc_split_regex, .timeout = 180) { NEED_HF(); compare_hf("qwen2"); }
Test(tokenizer_vs_hf, smollm2_digits_and_byte_level, .timeout = 180) { NEED_HF(); compare_hf("smollm2"); }
