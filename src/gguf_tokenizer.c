/* A GGUF file's tokenizer as the tokenizer.json document Hugging Face writes for the same model, so one
 * reader encodes both, and the document can be written out beside a model leash saves.
 *
 * llama.cpp's converter keeps a byte-level BPE ("tokenizer.ggml.model" = "gpt2") as its tokens (in the
 * byte alphabet, as tokenizer.json spells them), their types (normal, control = special added token,
 * user-defined = non-special added token, unused = a placeholder the model's vocabulary did not have),
 * the merges in rank order, the role ids (bos, eos, ...) and the name of the pre-tokenizer
 * ("tokenizer.ggml.pre"), which this file maps to the pre-tokenizer of that model's tokenizer.json. An
 * unknown name, another tokenizer model and any tokenizer key that would change encodings are errors. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/gguf.h"
#include "tokenizer_internal.h"

#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define LLAMA3_REGEX                                                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
    "\\s+(?!\\S)|\\s+"
#define QWEN2_REGEX                                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"    \
    "\\s+(?!\\S)|\\s+"

/* GGUF token types (llama.cpp's llama_token_type). */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

/* The pre-tokenizers of the models' tokenizer.json files, by llama.cpp's name for them. */
static const struct {
    const char *names[3];
    const char *split;   // a Split(Isolated) regex before ByteLevel, or NULL
    int digits;          // Digits(individual_digits) before ByteLevel
    int nfc;             // normalizer NFC
    int ignore_merges;   // model.ignore_merges
    int trim_offsets;    // the ByteLevel step's trim_offsets, as the model's file has it (offsets only)
} pre_types[] = {
    {{"gpt-2"}, NULL, 0, 0, 0, 1},
    {{"smollm"}, NULL, 1, 0, 0, 1},
    {{"llama-bpe", "llama3", "llama-v3"}, LLAMA3_REGEX, 0, 0, 1, 1},
    {{"qwen2"}, QWEN2_REGEX, 0, 1, 0, 0},
};

static cJSON *byte_level(int add_prefix_space, int trim_offsets, int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

/* normalizer, pre_tokenizer and model.ignore_merges for tokenizer.ggml.pre. */
static int add_pre_tokenizer(const char *path, const char *pre, cJSON *root, int *ignore_merges) {
    for (size_t i = 0; i < sizeof pre_types / sizeof pre_types[0]; i++) {
        int match = 0;
        for (int k = 0; k < 3 && pre_types[i].names[k]; k++) match |= !strcmp(pre, pre_types[i].names[k]);
        if (!match) continue;
        if (pre_types[i].nfc) cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "normalizer"), "type", "NFC");
        else cJSON_AddNullToObject(root, "normalizer");
        cJSON *bl = byte_level(0, pre_types[i].trim_offsets, !pre_types[i].split);
        if (!pre_types[i].split && !pre_types[i].digits) cJSON_AddItemToObject(root, "pre_tokenizer", bl);
        else {
            cJSON *seq = cJSON_AddObjectToObject(root, "pre_tokenizer"), *list;
            cJSON_AddStringToObject(seq, "type", "Sequence");
            list = cJSON_AddArrayToObject(seq, "pretokenizers");
            cJSON *step = cJSON_CreateObject();
            if (pre_types[i].split) {
                cJSON_AddStringToObject(step, "type", "Split");
                cJSON_AddStringToObject(cJSON_AddObjectToObject(step, "pattern"), "Regex", pre_types[i].split);
                cJSON_AddStringToObject(step, "behavior", "Isolated");
                cJSON_AddFalseToObject(step, "invert");
            } else {
                cJSON_AddStringToObject(step, "type", "Digits");
                cJSON_AddTrueToObject(step, "individual_digits");
            }
            cJSON_AddItemToArray(list, step);
            cJSON_AddItemToArray(list, bl);
        }
        *ignore_merges = pre_types[i].ignore_merges;
        return LEASH_OK;
    }
    return leash_fail(LEASH_EFORMAT, "%s: tokenizer.ggml.pre is \"%s\", a pre-tokenizer leash does not know; it reads "
                                     "\"gpt-2\", \"smollm\", \"llama-bpe\" (\"llama3\", \"llama-v3\") and \"qwen2\"%s",
                      path, pre,
                      !strcmp(pre, "default") ? " (\"default\" means the converter did not recognise the model's "
                                                "pre-tokenizer: convert the model again with a current llama.cpp, or "
                                                "use its tokenizer.json)"
                                              : "");
}

/* Refuses a tokenizer key that would change encodings and is not read here, and flags set to what leash
 * does not do. Role ids ("..._token_id"), SentencePiece scores (a BPE ranks by its merges), named chat
 * templates and an embedded copy of the original tokenizer.json cannot change an encoding. */
static int check_keys(const leash_gguf *g, const char *path) {
    static const char *const known[] = {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                                        "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.add_bos_token",
                                        "tokenizer.chat_template", "tokenizer.ggml.scores", "tokenizer.ggml.token_type_count",
                                        "tokenizer.huggingface.json", NULL};
    static const char *const off[][2] = {{"tokenizer.ggml.add_space_prefix", "a space before the text"},
                                         {"tokenizer.ggml.remove_extra_whitespaces", "runs of spaces collapsed"},
                                         {"tokenizer.ggml.add_eos_token", "an EOS after every text"},
                                         {"tokenizer.ggml.add_sep_token", "a SEP after every text"}};
    for (int i = 0; i < leash_gguf_num_keys(g); i++) {
        const char *key = leash_gguf_key(g, i);
        size_t n = strlen(key);
        int ok = strncmp(key, "tokenizer.", 10) != 0 || (n > 9 && !strcmp(key + n - 9, "_token_id")) ||
                 !strncmp(key, "tokenizer.chat_template.", 24);
        for (int k = 0; known[k] && !ok; k++) ok = !strcmp(key, known[k]);
        for (size_t k = 0; k < sizeof off / sizeof off[0] && !ok; k++) {
            int v = 0, rc = strcmp(key, off[k][0]) ? 1 : leash_gguf_get_bool(g, key, &v);
            if (rc < 0) return rc;
            if (rc == 0 && v)
                return leash_fail(LEASH_EFORMAT, "%s: %s is true (%s), which leash's byte-level BPE does not do", path, key,
                                  off[k][1]);
            ok = rc == 0;
        }
        if (!ok)
            return leash_fail(LEASH_EFORMAT, "%s: the tokenizer key \"%s\" is not understood by leash; it may change "
                                             "encodings, so leash refuses the file rather than ignore it",
                              path, key);
    }
    return LEASH_OK;
}

/* A string of the file as a cJSON string; NULL (with an error) for one with a NUL byte inside. */
static cJSON *json_string(const char *path, const char *what, uint64_t i, const char *s, size_t len) {
    if (strlen(s) != len) {
        leash_fail(LEASH_EFORMAT, "%s: %s %llu has a NUL byte inside", path, what, (unsigned long long)i);
        return NULL;
    }
    cJSON *o = cJSON_CreateString(s);
    if (!o) leash_fail(LEASH_ENOMEM, "out of memory");
    return o;
}

/* An added token as tokenizer.json writes it. */
static cJSON *added_token(int id, const char *content, int special) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddFalseToObject(o, "single_word");
    cJSON_AddFalseToObject(o, "lstrip");
    cJSON_AddFalseToObject(o, "rstrip");
    cJSON_AddFalseToObject(o, "normalized");
    cJSON_AddBoolToObject(o, "special", special);
    return o;
}

/* model.vocab and added_tokens from the tokens and their types. */
static int add_vocab(const leash_gguf *g, const char *path, cJSON *vocab, cJSON *added) {
    int type_kind, rc, has_types;
    uint64_t n, n_types = 0;
    rc = leash_gguf_get_array(g, "tokenizer.ggml.tokens", &type_kind, &n);
    if (rc == 1) return leash_fail(LEASH_EFORMAT, "%s: no tokenizer.ggml.tokens: the file has no tokenizer", path);
    if (rc) return rc;
    if (n == 0 || n > 10000000)
        return leash_fail(LEASH_EFORMAT, "%s: tokenizer.ggml.tokens has %llu tokens; expected 1 to 10 million", path,
                          (unsigned long long)n);
    if ((rc = leash_gguf_get_array(g, "tokenizer.ggml.token_type", &type_kind, &n_types)) < 0) return rc;
    has_types = rc == 0;
    if (has_types && n_types != n)
        return leash_fail(LEASH_EFORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", path,
                          (unsigned long long)n_types, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        int64_t type = TOK_NORMAL;
        if ((rc = leash_gguf_array_string(g, "tokenizer.ggml.tokens", i, &s, &len))) return rc;
        if (has_types && (rc = leash_gguf_array_int(g, "tokenizer.ggml.token_type", i, &type))) return rc;
        if (type == TOK_UNUSED) continue; // a placeholder ("[PAD123]") the model's own vocabulary does not have
        if (type != TOK_NORMAL && type != TOK_CONTROL && type != TOK_USER_DEFINED)
            return leash_fail(LEASH_EFORMAT, "%s: token %llu (\"%.40s\") has type %lld (%s), which a byte-level BPE does "
                                             "not have; expected 1 (normal), 3 (control), 4 (user-defined) or 5 (unused)",
                              path, (unsigned long long)i, s, (long long)type,
                              type == TOK_UNKNOWN ? "unknown" : type == TOK_BYTE ? "byte" : "undefined");
        if (strlen(s) != len)
            return leash_fail(LEASH_EFORMAT, "%s: token %llu has a NUL byte inside", path, (unsigned long long)i);
        cJSON_AddItemToObject(vocab, s, cJSON_CreateNumber((double)i));
        if (type != TOK_NORMAL) cJSON_AddItemToArray(added, added_token((int)i, s, type == TOK_CONTROL));
    }
    return LEASH_OK;
}

static int add_merges(const leash_gguf *g, const char *path, cJSON *merges) {
    int type_kind, rc;
    uint64_t n;
    rc = leash_gguf_get_array(g, "tokenizer.ggml.merges", &type_kind, &n);
    if (rc == 1) return leash_fail(LEASH_EFORMAT, "%s: no tokenizer.ggml.merges: a byte-level BPE needs its merges", path);
    for (uint64_t i = 0; !rc && i < n; i++) {
        const char *s;
        size_t len;
        cJSON *m = (rc = leash_gguf_array_string(g, "tokenizer.ggml.merges", i, &s, &len)) ? NULL
                                                                                         : json_string(path, "merge", i, s, len);
        if (!rc && !m) rc = LEASH_EFORMAT;
        if (m) cJSON_AddItemToArray(merges, m);
    }
    return rc;
}

/* The content of the token id names, or NULL for an id outside the tokens. */
static const char *token_text(const leash_gguf *g, int64_t id) {
    int kind;
    uint64_t n;
    const char *s;
    size_t len;
    if (id < 0 || leash_gguf_get_array(g, "tokenizer.ggml.tokens", &kind, &n) || (uint64_t)id >= n) return NULL;
    return leash_gguf_array_string(g, "tokenizer.ggml.tokens", (uint64_t)id, &s, &len) ? NULL : s;
}

/* post_processor: ByteLevel, and with add_bos_token a template that puts the BOS before the text, as
 * Llama 3's tokenizer.json has it (used by tokenizers only when asked to add special tokens). */
static int add_post_processor(const leash_gguf *g, cJSON *root) {
    int add_bos = 0;
    int64_t bos = -1;
    int rc = leash_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    if (rc < 0 || (rc = leash_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos)) < 0) return rc;
    const char *bos_text = token_text(g, bos);
    if (add_bos && !bos_text) // llama.cpp asserts on such a file; the document would silently add no BOS
        return leash_fail(LEASH_EFORMAT, "%s: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id %s",
                          leash_gguf_path(g), rc == 1 ? "is absent" : "is not one of tokenizer.ggml.tokens");
    if (!add_bos) {
        cJSON_AddItemToObject(root, "post_processor", byte_level(1, 0, 1));
        return LEASH_OK;
    }
    cJSON *seq = cJSON_AddObjectToObject(root, "post_processor"), *list, *tp, *single, *pair, *sp;
    cJSON_AddStringToObject(seq, "type", "Sequence");
    list = cJSON_AddArrayToObject(seq, "processors");
    cJSON_AddItemToArray(list, byte_level(1, 0, 1));
    cJSON_AddItemToArray(list, tp = cJSON_CreateObject());
    cJSON_AddStringToObject(tp, "type", "TemplateProcessing");
    single = cJSON_AddArrayToObject(tp, "single");
    pair = cJSON_AddArrayToObject(tp, "pair");
    for (int k = 0; k < 4; k++) { // single: BOS $A; pair: BOS $A BOS $B
        cJSON *item = cJSON_CreateObject(), *body = cJSON_AddObjectToObject(item, k % 2 ? "Sequence" : "SpecialToken");
        cJSON_AddStringToObject(body, "id", k % 2 == 0 ? bos_text : k == 1 ? "A" : "B");
        cJSON_AddNumberToObject(body, "type_id", k / 2);
        if (k < 2) cJSON_AddItemToArray(single, cJSON_Duplicate(item, 1));
        cJSON_AddItemToArray(pair, item);
    }
    sp = cJSON_AddObjectToObject(cJSON_AddObjectToObject(tp, "special_tokens"), bos_text);
    cJSON_AddStringToObject(sp, "id", bos_text);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(sp, "ids"), cJSON_CreateNumber((double)bos));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(sp, "tokens"), cJSON_CreateString(bos_text));
    return LEASH_OK;
}

/* tokenizer_config.json: what transformers needs to load tokenizer.json and apply the chat template. */
static int config_document(const leash_gguf *g, cJSON **out) {
    static const char *const roles[][2] = {{"bos_token", "tokenizer.ggml.bos_token_id"},
                                           {"eos_token", "tokenizer.ggml.eos_token_id"},
                                           {"pad_token", "tokenizer.ggml.padding_token_id"},
                                           {"unk_token", "tokenizer.ggml.unknown_token_id"}};
    cJSON *c = cJSON_CreateObject();
    int add_bos = 0, rc = leash_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    if (rc < 0) return cJSON_Delete(c), rc;
    cJSON_AddBoolToObject(c, "add_bos_token", add_bos);
    for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++) {
        int64_t id = -1;
        if ((rc = leash_gguf_get_int(g, roles[k][1], &id)) < 0) return cJSON_Delete(c), rc;
        const char *text = rc == 0 ? token_text(g, id) : NULL;
        if (text) cJSON_AddStringToObject(c, roles[k][0], text);
    }
    const char *tmpl;
    size_t len;
    if ((rc = leash_gguf_get_string(g, "tokenizer.chat_template", &tmpl, &len)) < 0) return cJSON_Delete(c), rc;
    if (rc == 0) cJSON_AddStringToObject(c, "chat_template", tmpl);
    cJSON_AddFalseToObject(c, "clean_up_tokenization_spaces");
    cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
    *out = c;
    return LEASH_OK;
}

/* tokenizer.json: the model, its pre-tokenizer, added tokens, post-processor and decoder. */
static int tokenizer_document(const leash_gguf *g, const char *path, cJSON **out) {
    const char *model, *pre;
    size_t len;
    int rc = leash_gguf_get_string(g, "tokenizer.ggml.model", &model, &len), ignore_merges = 0;
    if (rc == 1) return leash_fail(LEASH_EFORMAT, "%s: no tokenizer.ggml.model: the file has no tokenizer", path);
    if (rc) return rc;
    if (strcmp(model, "gpt2"))
        return leash_fail(LEASH_EFORMAT, "%s: tokenizer.ggml.model is \"%s\"%s; leash reads byte-level BPE tokenizers "
                                         "(\"gpt2\") only",
                          path, model, !strcmp(model, "llama") ? " (SentencePiece)" : "");
    if ((rc = check_keys(g, path))) return rc;
    rc = leash_gguf_get_string(g, "tokenizer.ggml.pre", &pre, &len);
    if (rc == 1)
        return leash_fail(LEASH_EFORMAT, "%s: no tokenizer.ggml.pre: the file does not name its pre-tokenizer (llama.cpp "
                                         "then guesses); convert the model again with a current llama.cpp",
                          path);
    if (rc) return rc;
    cJSON *root = cJSON_CreateObject(), *model_o, *added;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    added = cJSON_AddArrayToObject(root, "added_tokens");
    rc = add_pre_tokenizer(path, pre, root, &ignore_merges);
    if (!rc) rc = add_post_processor(g, root);
    cJSON_AddItemToObject(root, "decoder", byte_level(1, 1, 1));
    model_o = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model_o, "type", "BPE");
    const char *nulls[] = {"dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 4; k++) cJSON_AddNullToObject(model_o, nulls[k]);
    cJSON_AddFalseToObject(model_o, "fuse_unk");
    cJSON_AddFalseToObject(model_o, "byte_fallback");
    cJSON_AddBoolToObject(model_o, "ignore_merges", ignore_merges);
    if (!rc) rc = add_vocab(g, path, cJSON_AddObjectToObject(model_o, "vocab"), added);
    if (!rc) rc = add_merges(g, path, cJSON_AddArrayToObject(model_o, "merges"));
    if (rc) cJSON_Delete(root);
    else *out = root;
    return rc;
}

int leash_gguf_tokenizer_documents(const char *path, cJSON **tokenizer_json, cJSON **tokenizer_config) {
    leash_gguf *g;
    int rc = leash_gguf_open(&g, path);
    if (rc) return rc;
    *tokenizer_json = NULL;
    rc = tokenizer_document(g, path, tokenizer_json);
    if (!rc && tokenizer_config && (rc = config_document(g, tokenizer_config))) cJSON_Delete(*tokenizer_json);
    leash_gguf_close(g);
    return rc;
}
