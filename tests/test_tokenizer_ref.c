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
    int gguf = system("/usr/bin/python3 -c 'import gguf' >/dev/null 2>&1") == 0; // also as llama.cpp stores it
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/hf_tokenizer_ref.py' %s '%s' '%s'%s", LEASH_SRCDIR, style, path,
             dir, gguf ? " --gguf" : "");
    cr_assert_eq(system(cmd), 0, "the Hugging Face reference failed: %s", cmd);
    char *ref_text;
    snprintf(path, sizeof path, "%s/ids.json", dir);
    cr_assert_eq(leash_read_file(path, 1 << 26, &ref_text, NULL), 0);
    cJSON *ref = cJSON_Parse(ref_text);
    cr_assert(cJSON_GetArraySize(ref) == cJSON_GetArraySize(t));
    leash_tokenizer *toks[2] = {NULL, NULL}, *tok;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(leash_tokenizer_load_json(&toks[0], path), 0, "%s", leash_errmsg());
    snprintf(path, sizeof path, "%s/tokenizer.gguf", dir);
    if (gguf) cr_assert_eq(leash_tokenizer_load_dir(&toks[1], path), 0, "%s", leash_errmsg());
    else cr_log_warn("%s: llama.cpp's Python package gguf is missing: the GGUF form is not checked", style);
    int compared = 0, not_nfc = 0;
    for (int i = 0; i < 2 * cJSON_GetArraySize(t); i++) {
        if (!(tok = toks[i / cJSON_GetArraySize(t)])) break;
        const char *s = cJSON_GetArrayItem(t, i % cJSON_GetArraySize(t))->valuestring;
        const cJSON *want = cJSON_GetArrayItem(ref, i % cJSON_GetArraySize(t));
        if (cJSON_IsNull(want)) {
            not_nfc++;
            continue;
        }
        int *ids = NULL;
        size_t n = 0, cap = 0;
        cr_assert_eq(leash_tokenizer_encode(tok, s, strlen(s), 1, &ids, &n, &cap), 0);
        int same = (int)n == cJSON_GetArraySize(want);
        for (size_t k = 0; same && k < n; k++) same = ids[k] == cJSON_GetArrayItem(want, (int)k)->valueint;
        cr_assert(same, "%s text %d (\"%.40s\", from %s): leash gives %zu ids, tokenizers %d", style,
                  i % cJSON_GetArraySize(t), s, tok == toks[0] ? "tokenizer.json" : "GGUF", n, cJSON_GetArraySize(want));
        compared++;
        free(ids);
    }
    cr_log_info("%s: %d encodings (%s) as tokenizers gives them, 0 mismatches (%d not in NFC left out)", style, compared,
                toks[1] ? "tokenizer.json and the GGUF form" : "tokenizer.json", not_nfc);
    cr_assert(compared >= 250, "only %d texts compared", compared);
    leash_tokenizer_free(toks[0]), leash_tokenizer_free(toks[1]);
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
Test(tokenizer_vs_hf, gpt2_byte_level_alone, .timeout = 180) { NEED_HF(); compare_hf("gpt2"); }

/* ---- SmolLM2's real vocabulary: leash (tokenizer.json and GGUF) against tokenizers ---- */

static const char *smollm2_gguf(void) {
    const char *p = getenv("LEASH_SMOLLM2_GGUF");
    return p && *p ? p : "/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf";
}

enum { G_MIXED, G_CHAT, G_DIGITS, G_SPACE, G_MISSING, G_N };
static const char *group_name[G_N] = {"mixed scripts (CJK, emoji, accents, code, random)", "chat templates and specials",
                                      "digits and digit runs", "whitespace runs and newlines",
                                      "bytes the vocabulary lacks"};

static void add_text(cJSON *a, int *groups, int group, const char *s) {
    groups[cJSON_GetArraySize(a)] = group;
    cJSON_AddItemToArray(a, cJSON_CreateString(s));
}

/* The texts by group: texts() (316), then chat, digits, whitespace and missing-byte cases, some random. */
static cJSON *smollm2_texts(int *groups) {
    cJSON *a = cJSON_CreateArray(), *mixed = texts();
    for (int i = 0; i < cJSON_GetArraySize(mixed); i++) add_text(a, groups, G_MIXED, cJSON_GetArrayItem(mixed, i)->valuestring);
    cJSON_Delete(mixed);
    static const char *chat[] = {
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n"
        "What is 12+30?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\nWaves fold into foam<|im_end|>\n",
        "<|endoftext|><|im_start|><|im_end|><repo_name><reponame><file_sep><filename><gh_stars><issue_start>"
        "<issue_comment><issue_closed><jupyter_start><jupyter_text><jupyter_code><jupyter_output><jupyter_script>"
        "<empty_output>",
        "text<|endoftext|>more text<|im_end|><|im_end|>", "a <|im_start|> b<|im_end|>c", "<|im_start|<|im_end|>|>",
        "<|im_start<|im_start|>im_end|>", "<reponame>leash<file_sep>src/tokenizer.c<filename>x.py<gh_stars>100",
        "<jupyter_code>print(1)\n<jupyter_output>1\n<empty_output>", "<|IM_START|> <|im start|> <| im_end |>",
        "<|im_start|>user\n日本語で答えて 🙂<|im_end|>\n<|im_start|>assistant\n"};
    for (size_t i = 0; i < sizeof chat / sizeof chat[0]; i++) add_text(a, groups, G_CHAT, chat[i]);
    static const char *digits[] = {"0", "42", "1234567890", "12345678901234567890123456789012345678901234567890",
                                   "3.14159265358979 2.718281828", "-0.5e-10 +1e+300", "x=100000000000000;y=2**64",
                                   "phone: +1 (555) 123-4567", "2026-11-25T12:34:56Z", "٠١٢٣٤٥٦٧٨٩ ۱۲۳ १२३",
                                   "¹²³ ½ ⅓ ① ② Ⅻ", "１２３４５ full width", "v1.2.3-rc4 x86_64 i386",
                                   "0x7fffffff 0b1010 0o777", "a1b2c3d4e5f6g7h8i9j0", "     123     456     "};
    for (size_t i = 0; i < sizeof digits / sizeof digits[0]; i++) add_text(a, groups, G_DIGITS, digits[i]);
    static const char *space[] = {" ", "  ", "\n", "\n\n\n\n", "\t\t\t", " \t \n \r\n ", "a  b   c    d", "trailing   ",
                                  "   leading", "line1\nline2\r\nline3\rline4", "\n\n  indented\n    more\n",
                                  "tab\tseparated\tvalues\n1\t2\t3", "\u00a0\u2003\u3000\u200b mixed spaces",
                                  "ends with newline\n", "  \n  \n  "};
    for (size_t i = 0; i < sizeof space / sizeof space[0]; i++) add_text(a, groups, G_SPACE, space[i]);
    // bytes SmolLM2 lacks: the controls 04 06 13 14 16 1D; C0 C1 F5-FF never occur in UTF-8; F1 and F2
    // lead code points U+40000..U+BFFFF
    static const char *missing[] = {"\x04", "\x06", "\x13", "\x14", "\x16", "\x1d", "a\x04" "b", "hello\x13world",
                                    " \x04\x06\x13\x14\x16\x1d!", "\x1d\x1d\x1d", "x \x16 y", "\x04<|im_end|>\x06",
                                    "12\x04" "34", "\xc3\x80 \xc3\x81 \xc3\x80\xc3\x80", "caf\xc3\xa9\x14",
                                    "\xf1\x80\x80\x80", "\xf2\x80\x80\x80", "a\xf1\x8f\xbf\xbf" "b", "\xf2\xbf\xbf\xbf!",
                                    " \xf1\x90\x80\x80 \xf2\xa0\x80\x80 ", "\xf0\x9f\x99\x82\xf1\x80\x80\x81"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) add_text(a, groups, G_MISSING, missing[i]);
    static const char *pieces[] = {"\x04", "\x06", "\x13", "\x14", "\x16", "\x1d", "a", "the", " ", "  ", "\n", "1",
                                   "99", "\xc3\x80", "\xf1\x80\x80\x80", "\xf2\x81\x82\x83", "<|im_end|>", "!", "é",
                                   "日本"};
    leash_rng r;
    leash_rng_seed(&r, 91, 0);
    for (int k = 0; k < 40; k++) { // random strings of those pieces
        char buf[512];
        int n = 0, len = 1 + (int)(leash_rng_uniform(&r) * 12);
        for (int i = 0; i < len; i++) {
            const char *p = pieces[(int)(leash_rng_uniform(&r) * (sizeof pieces / sizeof pieces[0]))];
            n += snprintf(buf + n, sizeof buf - n, "%s", p);
        }
        add_text(a, groups, G_MISSING, buf);
    }
    return a;
}

/* Mismatches of tokenizer tok against want (one id list per text), counted per group; the first few printed. */
static int count_mismatches(const leash_tokenizer *tok, const char *what, const cJSON *t, const int *groups,
                            const cJSON *want_all, int allow_special, int per_group[G_N], int n_group[G_N]) {
    int total = 0;
    for (int i = 0; i < cJSON_GetArraySize(t); i++) {
        const char *s = cJSON_GetArrayItem(t, i)->valuestring;
        const cJSON *want = cJSON_GetArrayItem(want_all, i);
        int *ids = NULL;
        size_t n = 0, cap = 0;
        cr_assert_eq(leash_tokenizer_encode(tok, s, strlen(s), allow_special, &ids, &n, &cap), 0, "%s", leash_errmsg());
        int same = (int)n == cJSON_GetArraySize(want);
        for (size_t k = 0; same && k < n; k++) same = ids[k] == cJSON_GetArrayItem(want, (int)k)->valueint;
        n_group[groups[i]]++;
        if (!same) {
            if (total < 5)
                cr_log_error("%s: text %d (%s, \"%.40s\"): leash gives %zu ids, tokenizers %d", what, i,
                             group_name[groups[i]], s, n, cJSON_GetArraySize(want));
            per_group[groups[i]]++, total++;
        }
        free(ids);
    }
    return total;
}

static void report(const char *what, int total, const int per_group[G_N], const int n_group[G_N]) {
    int n = 0;
    for (int g = 0; g < G_N; g++) n += n_group[g];
    cr_log_info("%s: %d texts, %d mismatches", what, n, total);
    for (int g = 0; g < G_N; g++) cr_log_info("    %-52s %3d texts, %d mismatches", group_name[g], n_group[g], per_group[g]);
}

Test(tokenizer_vs_hf, smollm2_real_vocabulary_json_and_gguf, .timeout = 300) {
    NEED_HF();
    if (system("/usr/bin/python3 -c 'import gguf' >/dev/null 2>&1") != 0)
        LEASH_SKIP_OR_FAIL("llama.cpp's Python package gguf is not installed (pip install gguf)");
    const char *gguf = smollm2_gguf();
    if (access(gguf, R_OK) != 0)
        LEASH_SKIP_OR_FAIL("%s is missing (scripts/deps.sh --ref unpacks it; or set LEASH_SMOLLM2_GGUF)", gguf);
    char dir[] = "/tmp/leash-smoltok-XXXXXX", path[256], cmd[1024];
    cr_assert(mkdtemp(dir));
    int groups[1024];
    cJSON *t = smollm2_texts(groups);
    cr_assert(cJSON_GetArraySize(t) <= 1024);
    char *json = cJSON_PrintUnformatted(t);
    snprintf(path, sizeof path, "%s/texts.json", dir);
    cr_assert_eq(leash_write_file_atomic(path, json, strlen(json)), 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/smollm2_tokenizer_ref.py' '%s' '%s' '%s'", LEASH_SRCDIR, gguf,
             path, dir);
    cr_assert_eq(system(cmd), 0, "the Hugging Face reference failed: %s", cmd);
    char *ref_text;
    snprintf(path, sizeof path, "%s/ids.json", dir);
    cr_assert_eq(leash_read_file(path, 1 << 26, &ref_text, NULL), 0);
    cJSON *ref = cJSON_Parse(ref_text), *want = cJSON_GetObjectItem(ref, "ids"), *want_split = cJSON_GetObjectItem(ref, "ids_split");
    cr_assert(cJSON_GetArraySize(want) == cJSON_GetArraySize(t) && cJSON_GetArraySize(want_split) == cJSON_GetArraySize(t));

    // the file tokenizers wrote loads, and lacks exactly the bytes tokenizers says it lacks
    leash_tokenizer *tj, *tg;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(leash_tokenizer_load_json(&tj, path), 0, "%s", leash_errmsg());
    const cJSON *missing = cJSON_GetObjectItem(ref, "missing_bytes");
    int n_missing = 0, lacks[256] = {0}, *ids = NULL;
    for (int i = 0; i < cJSON_GetArraySize(missing); i++) lacks[cJSON_GetArrayItem(missing, i)->valueint] = 1;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        size_t n = 0, cap = 0;
        cr_assert_eq(leash_tokenizer_encode(tj, &c, 1, 0, &ids, &n, &cap), 0);
        cr_assert_eq(n == 0, lacks[b], "byte 0x%02X: leash gives %zu ids, tokenizers says it %s a token", b, n,
                     lacks[b] ? "lacks" : "has");
        n_missing += n == 0;
        free(ids), ids = NULL;
    }
    cr_assert_eq(n_missing, 21, "SmolLM2's vocabulary lacks 21 bytes; found %d", n_missing);
    const cJSON *specials = cJSON_GetObjectItem(ref, "specials");
    cr_assert_eq(cJSON_GetArraySize(specials), 17);
    for (int i = 0; i < 17; i++) cr_assert_eq(leash_tokenizer_special_id(tj, cJSON_GetArrayItem(specials, i)->valuestring), i);

    int per[G_N] = {0}, ng[G_N] = {0}, total;
    total = count_mismatches(tj, "tokenizer.json", t, groups, want, 1, per, ng);
    report("leash from tokenizer.json vs tokenizers", total, per, ng);
    int total_split, per_s[G_N] = {0}, ng_s[G_N] = {0};
    total_split = count_mismatches(tj, "tokenizer.json, split specials", t, groups, want_split, 0, per_s, ng_s);
    report("leash from tokenizer.json, special tokens as text, vs tokenizers' encode_special_tokens", total_split, per_s,
           ng_s);
    cr_assert_eq(leash_tokenizer_load_dir(&tg, gguf), 0, "%s", leash_errmsg());
    int total_g, per_g[G_N] = {0}, ng_g[G_N] = {0};
    total_g = count_mismatches(tg, "GGUF", t, groups, want, 1, per_g, ng_g);
    report("leash from the GGUF file vs tokenizers", total_g, per_g, ng_g);
    int total_gs, per_gs[G_N] = {0}, ng_gs[G_N] = {0};
    total_gs = count_mismatches(tg, "GGUF, split specials", t, groups, want_split, 0, per_gs, ng_gs);
    report("leash from the GGUF file, special tokens as text, vs tokenizers", total_gs, per_gs, ng_gs);
    cr_assert(cJSON_GetArraySize(t) >= 300, "only %d texts", cJSON_GetArraySize(t));
    cr_assert(total == 0 && total_split == 0 && total_g == 0 && total_gs == 0, "mismatches: %d, %d, %d, %d", total,
              total_split, total_g, total_gs);
    leash_tokenizer_free(tj), leash_tokenizer_free(tg);
    cJSON_Delete(ref), cJSON_Delete(t);
    free(ref_text), free(json);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The directory leash writes from a GGUF file (tokenizer.json, tokenizer_config.json) loads in transformers,
 * whose apply_chat_template renders the file's template and encodes as leash does. */
Test(tokenizer_vs_hf, gguf_tokenizer_written_out_loads_in_transformers, .timeout = 300) {
    const char *py = "/opt/leash-hf/bin/python";
    char cmd[1024], path[256];
    snprintf(cmd, sizeof cmd, "%s -c 'import transformers' >/dev/null 2>&1", py);
    if (access(py, X_OK) != 0 || system(cmd) != 0)
        LEASH_SKIP_OR_FAIL("transformers is not installed in %s (scripts/deps.sh --ref)", py);
    const char *gguf = smollm2_gguf();
    if (access(gguf, R_OK) != 0)
        LEASH_SKIP_OR_FAIL("%s is missing (scripts/deps.sh --ref unpacks it; or set LEASH_SMOLLM2_GGUF)", gguf);
    char dir[] = "/tmp/leash-ggufdir-XXXXXX";
    cr_assert(mkdtemp(dir));
    cr_assert_eq(leash_tokenizer_copy(gguf, dir), 0, "%s", leash_errmsg());
    snprintf(cmd, sizeof cmd, "%s '%s/tests/ref/hf_tokenizer_dir_ref.py' '%s' '%s/hf.json'", py, LEASH_SRCDIR, dir, dir);
    cr_assert_eq(system(cmd), 0, "transformers could not use the directory: %s", cmd);
    char *text;
    snprintf(path, sizeof path, "%s/hf.json", dir);
    cr_assert_eq(leash_read_file(path, 1 << 20, &text, NULL), 0);
    cJSON *hf = cJSON_Parse(text);
    const char *want_chat = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                            "<|im_end|>\n<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n";
    cr_assert_str_eq(cJSON_GetObjectItem(hf, "chat_text")->valuestring, want_chat);
    cr_assert_str_eq(cJSON_GetObjectItem(hf, "bos")->valuestring, "<|im_start|>");
    cr_assert_str_eq(cJSON_GetObjectItem(hf, "eos")->valuestring, "<|im_end|>");
    cr_assert_str_eq(cJSON_GetObjectItem(hf, "pad")->valuestring, "<|im_end|>");
    leash_tokenizer *tg, *tw;
    cr_assert_eq(leash_tokenizer_load_dir(&tg, gguf), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_tokenizer_load_dir(&tw, dir), 0, "the written tokenizer.json: %s", leash_errmsg());
    const char *texts_[] = {want_chat, cJSON_GetObjectItem(hf, "text")->valuestring};
    const char *keys[] = {"chat_ids", "text_ids"};
    for (int k = 0; k < 2; k++) {
        const cJSON *want = cJSON_GetObjectItem(hf, keys[k]);
        for (int w = 0; w < 2; w++) {
            int *ids = NULL;
            size_t n = 0, cap = 0;
            cr_assert_eq(leash_tokenizer_encode(w ? tw : tg, texts_[k], strlen(texts_[k]), 1, &ids, &n, &cap), 0);
            int same = (int)n == cJSON_GetArraySize(want);
            for (size_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
            cr_assert(same, "%s: leash (%s) gives %zu ids, transformers %d", keys[k], w ? "written tokenizer.json" : "GGUF",
                      n, cJSON_GetArraySize(want));
            free(ids);
        }
    }
    cr_log_info("transformers loads the directory written from the GGUF; its chat template and 2 encodings agree");
    leash_tokenizer_free(tg), leash_tokenizer_free(tw);
    cJSON_Delete(hf);
    free(text);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* GGUF tokenizers leash refuses, each error naming the file and what is wrong (files written by gguf). */
Test(tokenizer_vs_hf, gguf_tokenizers_refused_with_reason, .timeout = 120) {
    if (system("/usr/bin/python3 -c 'import gguf' >/dev/null 2>&1") != 0)
        LEASH_SKIP_OR_FAIL("llama.cpp's Python package gguf is not installed (pip install gguf)");
    char dir[] = "/tmp/leash-ggufcases-XXXXXX", cmd[512], path[256];
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/gguf_tokenizer_cases.py' '%s'", LEASH_SRCDIR, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    leash_tokenizer *t;
    snprintf(path, sizeof path, "%s/ok.gguf", dir);
    cr_assert_eq(leash_tokenizer_load_dir(&t, path), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_tokenizer_special_id(t, "<|endoftext|>"), 257);
    int *ids = NULL;
    size_t n = 0, cap = 0;
    cr_assert_eq(leash_tokenizer_encode(t, "  <|endoftext|>", 15, 1, &ids, &n, &cap), 0);
    cr_assert(n == 2 && ids[0] == 256 && ids[1] == 257, "the merge and the special token: %zu ids", n);
    free(ids);
    leash_tokenizer_free(t);
    static const char *cases[][2] = {{"sentencepiece", "\"llama\" (SentencePiece)"}, {"pre_default", "\"default\""},
                                     {"pre_unknown", "\"deepseek-coder\""},        {"pre_missing", "tokenizer.ggml.pre"},
                                     {"byte_type", "type 6 (byte)"},               {"unknown_key", "tokenizer.ggml.new_option"},
                                     {"add_eos", "add_eos_token"},                 {"space_prefix", "add_space_prefix"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.gguf", dir, cases[i][0]);
        cr_assert_neq(leash_tokenizer_load_dir(&t, path), 0, "%s loads", cases[i][0]);
        cr_assert(strstr(leash_errmsg(), cases[i][1]) && strstr(leash_errmsg(), path), "%s: %s", cases[i][0], leash_errmsg());
    }
    cr_log_info("%zu GGUF tokenizers refused, each naming the key", sizeof cases / sizeof cases[0]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
