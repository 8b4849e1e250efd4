/* GGUF writing: a leash model as the file llama.cpp's convert_hf_to_gguf.py makes of its directory (see
 * include/leash/gguf.h): the same architecture names, hyperparameter keys, tensor names, layouts and types, and
 * the tokenizer read from the directory's own files. Written whole (temporary file, fsync, rename) and streamed
 * a row at a time, so a model of any size needs one row of extra memory beyond the header.
 *
 * Numbers are converted exactly as the converter's numpy and gguf-py do: F16 is numpy's round-to-nearest-even
 * (subnormals included, overflow to inf), BF16 gguf-py's (and ggml's) round-to-nearest-even, Q8_0 ggml's
 * quantize_row_q8_0_ref (per block of 32: d = amax / 127 stored as F16, q = round(x / d) half away from 0).
 *
 * Dimensions: C channels, V vocabulary, NH query heads, NKV key/value heads, hs head size, I MLP width. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gguf.h"
#include "leash/gpt.h"
#include "gguf_internal.h"

enum { ALIGNMENT = 32, QK8_0 = 32 };
enum { TOK_NORMAL = 1, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5 }; /* llama.cpp's token types */

/* ---- numbers ------------------------------------------------------------------------------------ */

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* float -> IEEE half, round to nearest even, as numpy's astype(np.float16). */
static uint16_t f32_to_f16(float x) {
    uint32_t f = bits_of(x), sign = (f >> 16) & 0x8000u, exp = (f >> 23) & 0xffu, man = f & 0x7fffffu;
    if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (man >> 13) | (man && !(man >> 13))); // inf, NaN as numpy
    int e = (int)exp - 127 + 15;                                                         // the half's biased exponent
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);                                        // overflow: inf
    uint32_t m = man | (exp ? 0x800000u : 0);                                             // 24-bit significand
    int shift = e >= 1 ? 13 : 14 - e;                                                      // bits dropped
    if (shift > 24) return (uint16_t)sign;                                                 // below half the smallest subnormal
    uint32_t kept = m >> shift, rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1))) kept++;
    if (e >= 1) return (uint16_t)(sign | (((uint32_t)e << 10) + (kept - 0x400u)));          // a carry rounds into the exponent
    return (uint16_t)(sign | kept);                                                        // subnormal (or the smallest normal)
}

/* float -> bfloat16, round to nearest even, NaN made quiet: gguf-py's and ggml's rule. */
static uint16_t f32_to_bf16(float x) {
    uint32_t n = bits_of(x);
    if ((n & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((n & 0xffff0000u) | (64u << 16)) >> 16);
    return (uint16_t)(((uint64_t)n + 0x7fffu + ((n >> 16) & 1u)) >> 16);
}

static int f16_is_inf(uint16_t h) { return (h & 0x7fffu) == 0x7c00u; }

/* One row of n (a multiple of 32) values as Q8_0 blocks: F16 d, then 32 int8 q. Returns the column of the
 * largest value of the first block whose scale d = amax / 127 overflows F16 (|x| > 65504 * 127), or -1. */
static int64_t quantize_q8_0(const float *x, int64_t n, uint8_t *out) {
    int64_t overflow = -1;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0, out += 2 + QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = f32_to_f16(d);
        for (int j = 0; j < QK8_0 && f16_is_inf(dh) && overflow < 0; j++)
            if (fabsf(x[j]) == amax) overflow = b * QK8_0 + j;
        memcpy(out, &dh, 2);
        for (int j = 0; j < QK8_0; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
    return overflow;
}

/* ---- the header, built in memory ------------------------------------------------------------------ */

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int oom;
    uint64_t n_kv;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_strn(buf *b, const char *s, size_t n) { put_u64(b, n), put(b, s, n); }
static void put_str(buf *b, const char *s) { put_strn(b, s, strlen(s)); }
static void key(buf *b, const char *k, int type) { put_str(b, k), put_u32(b, (uint32_t)type), b->n_kv++; }
static void kv_u32(buf *b, const char *k, uint32_t v) { key(b, k, LEASH_GGUF_UINT32), put_u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { key(b, k, LEASH_GGUF_FLOAT32), put(b, &v, 4); }
static void kv_bool(buf *b, const char *k, int v) {
    unsigned char c = v != 0;
    key(b, k, LEASH_GGUF_BOOL), put(b, &c, 1);
}
static void kv_str(buf *b, const char *k, const char *v) { key(b, k, LEASH_GGUF_STRING), put_str(b, v); }
static void kv_array(buf *b, const char *k, int elem_type, uint64_t n) {
    key(b, k, LEASH_GGUF_ARRAY), put_u32(b, (uint32_t)elem_type), put_u64(b, n);
}
static void kv_arch(buf *b, const char *arch, const char *k, uint32_t v) { // "{arch}.k"
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, k);
    kv_u32(b, full, v);
}
static void kv_arch_f32(buf *b, const char *arch, const char *k, float v) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, k);
    kv_f32(b, full, v);
}

/* ---- the tensor plan: which leash tensor becomes which GGUF tensor, how ------------------------------- */

/* How a tensor is written: the converter's layouts (gguf_internal.h), or rope_freqs computed from the config. */
enum { OP_COPY = LEASH_GGUF_AS_IS, OP_PERMUTE = LEASH_GGUF_PERMUTED, OP_TRANSPOSE = LEASH_GGUF_TRANSPOSED, OP_ROPE_FREQS };

typedef struct {
    char name[96];
    int src;        /* leash tensor index (-1: rope_freqs, computed) */
    int op;         /* OP_* */
    int type;       /* LEASH_GGML_* */
    int n_dims;
    int64_t ne[2];  /* ggml order: ne[0] the row length */
    uint64_t offset, nbytes;
} plan_tensor;

/* The GGUF name and operation of leash tensor t; 0, or an error for a tensor llama.cpp has no place for. */
static int map_tensor(const leash_gpt_config *c, const char *arch, const leash_tensor_info *t, plan_tensor *p) {
    if (!leash_gguf_tensor_name(c, t->name, p->name, sizeof p->name, &p->op))
        return leash_fail(LEASH_EINVAL, "tensor %s has no place in llama.cpp's %s architecture (a reward or value model's "
                                        "scalar head cannot be exported; export the policy or SFT model)",
                          t->name, arch);
    p->n_dims = t->ndim;
    if (t->ndim == 1) p->ne[0] = t->shape[0], p->ne[1] = 1;
    else if (p->op == OP_TRANSPOSE) p->ne[0] = t->shape[0], p->ne[1] = t->shape[1]; // Conv1D (in, out)
    else p->ne[0] = t->shape[1], p->ne[1] = t->shape[0];                           // Linear (out, in), embeddings (V, C)
    return LEASH_OK;
}

/* The converter's type rule: 1-D tensors, norms and GPT-2's position embedding stay F32; the other 2-D weights
 * take the requested type, Q8_0 falling back to F16 where a row is not whole blocks of 32. */
static int tensor_type(const plan_tensor *p, int type) {
    if (p->n_dims == 1 || !strcmp(p->name, "position_embd.weight")) return LEASH_GGML_F32;
    if (type == LEASH_GGML_Q8_0 && p->ne[0] % QK8_0) return LEASH_GGML_F16;
    return type;
}

static uint64_t row_bytes(int type, int64_t ne0) {
    switch (type) {
    case LEASH_GGML_F32: return (uint64_t)ne0 * 4;
    case LEASH_GGML_Q8_0: return (uint64_t)(ne0 / QK8_0) * (2 + QK8_0);
    default: return (uint64_t)ne0 * 2;
    }
}

void leash_gguf_llama3_factors(const leash_gpt_config *c, int hs, float *out) {
    float base = c->rope_theta > 0.0f ? c->rope_theta : 10000.0f, factor = c->rope_factor;
    float lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor, old = (float)c->rope_original_max_positions;
    float lo_wavelen = (float)((double)c->rope_original_max_positions / lo);
    float hi_wavelen = (float)((double)c->rope_original_max_positions / hi);
    for (int i = 0; i < hs / 2; i++) {
        float freq = 1.0f / powf(base, (float)(2 * i) / (float)hs);
        float wavelen = (float)(2.0 * 3.14159265358979323846) / freq; // 2 math.pi
        if (wavelen < hi_wavelen) out[i] = 1.0f;
        else if (wavelen > lo_wavelen) out[i] = factor;
        else {
            float smooth = (old / wavelen - lo) / (float)((double)hi - (double)lo);
            out[i] = 1.0f / ((1.0f - smooth) / factor + smooth);
        }
    }
}

/* ---- the tokenizer, read from the model directory's files ------------------------------------------- */

typedef struct {
    const char *dir;
    cJSON *tok_json, *vocab_json, *tok_config, *config; /* parsed files (NULL: absent) */
    char *merges_txt;                                    /* merges.txt (NUL-terminated), or NULL */
    const char **tokens;                                 /* (V) each id's text, NULL: none (a [PAD] entry) */
    int *types;                                          /* (V) TOK_* */
    const char *pre;
    int add_bos, add_eos, add_sep;                       /* -1: not stated */
    const char *bos_text, *eos_text;                     /* the tokens tokenizer_config.json names, or NULL */
} tokfiles;

static void tokfiles_free(tokfiles *t) {
    cJSON_Delete(t->tok_json), cJSON_Delete(t->vocab_json), cJSON_Delete(t->tok_config), cJSON_Delete(t->config);
    free(t->merges_txt), free(t->tokens), free(t->types);
}

/* dir/name parsed as JSON into *out; absent is fine (*out = NULL). */
static int read_json(const char *dir, const char *name, cJSON **out) {
    char path[4200], *text;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return LEASH_OK;
    fclose(f);
    int rc = leash_read_file(path, 512u << 20, &text, NULL);
    if (rc) return rc;
    const char *end = NULL;
    *out = cJSON_ParseWithOpts(text, &end, 1);
    long at = end ? (long)(end - text) : -1L;
    free(text);
    if (!*out) return leash_fail(LEASH_EFORMAT, "%s: not valid JSON (malformed at byte %ld)", path, at);
    return LEASH_OK;
}

/* llama.cpp's does_token_look_special: <|...|> and the few names models forget to mark. */
static int looks_special(const char *s) {
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") || !strcmp(s, "[@BOS@]")) return 1;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return 1;
    if (n >= 8 && !strncmp(s, "<\xef\xbd\x9c", 4) && !strcmp(s + n - 4, "\xef\xbd\x9c>")) return 1; // <｜...｜>
    return n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>';
}

static const char *LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                  "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                 "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *type_of(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "";
}

/* ByteLevel with its regex on (use_regex absent or true) or off. */
static int byte_level(const cJSON *o, int regex) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "use_regex");
    return !strcmp(type_of(o), "ByteLevel") && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "add_prefix_space")) &&
           (regex ? !cJSON_IsFalse(r) : cJSON_IsFalse(r));
}

/* tokenizer.ggml.pre: the name llama.cpp gives the pre-tokenizer of a known family, from its structure (the
 * converter hashes an encoding instead, which needs the real vocabulary; the structure is what decides it). */
static int identify_pre(const char *path, const cJSON *root, const char **pre) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    const cJSON *a = cJSON_GetArrayItem(list, 0), *b = cJSON_GetArrayItem(list, 1);
    int ignore = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"),
                                                               "ignore_merges"));
    *pre = NULL;
    if (byte_level(p, 1)) *pre = "gpt-2";
    else if (!strcmp(type_of(p), "Sequence") && cJSON_GetArraySize(list) == 2) {
        const cJSON *rx = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "pattern"), "Regex");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(a, "behavior");
        int split = !strcmp(type_of(a), "Split") && cJSON_IsString(rx) && cJSON_IsString(beh) &&
                    !strcmp(beh->valuestring, "Isolated") && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "invert"));
        if (split && byte_level(b, 0) && !strcmp(rx->valuestring, LLAMA3_REGEX)) *pre = "llama-bpe";
        else if (split && byte_level(b, 0) && !strcmp(rx->valuestring, QWEN2_REGEX)) *pre = "qwen2";
        else if (!strcmp(type_of(a), "Digits") && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "individual_digits")) &&
                 byte_level(b, 1))
            *pre = "smollm";
    }
    if (!*pre)
        return leash_fail(LEASH_EFORMAT, "%s: pre_tokenizer is none that llama.cpp knows by name (GPT-2's ByteLevel, "
                                         "Llama 3's or Qwen2's Split regex + ByteLevel, SmolLM2's Digits + ByteLevel); "
                                         "llama.cpp would pre-tokenize it differently, so it is not exported",
                          path);
    if (ignore != !strcmp(*pre, "llama-bpe"))
        return leash_fail(LEASH_EFORMAT, "%s: model.ignore_merges is %s, but llama.cpp's \"%s\" pre-tokenizer %s it; the "
                                         "export would tokenize differently",
                          path, ignore ? "true" : "false", *pre, ignore ? "does not apply" : "applies");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm) && strcmp(type_of(norm), "NFC"))
        return leash_fail(LEASH_EFORMAT, "%s: normalizer \"%s\" is not supported (none or NFC)", path, type_of(norm));
    return LEASH_OK;
}

/* Sets id's text and type; an id beyond the model's vocabulary is an error. */
static int set_token(tokfiles *t, const char *file, int V, double id, const char *text, int type) {
    if (id < 0 || id >= V || id != (int)id)
        return leash_fail(LEASH_EFORMAT, "%s: token \"%.40s\" has id %g, outside the model's vocabulary [0, %d) "
                                         "(config.json vocab_size)",
                          file, text, id, V);
    t->tokens[(int)id] = text, t->types[(int)id] = type;
    return LEASH_OK;
}

/* tokens and types from tokenizer.json (model.vocab, then added_tokens) or vocab.json. */
static int read_tokens(tokfiles *t, int V) {
    char path[4200];
    t->tokens = calloc((size_t)V, sizeof *t->tokens);
    t->types = malloc((size_t)V * sizeof *t->types);
    if (!t->tokens || !t->types) return leash_fail(LEASH_ENOMEM, "out of memory for %d tokens", V);
    for (int i = 0; i < V; i++) t->types[i] = TOK_UNUSED;
    const cJSON *vocab = t->vocab_json, *it;
    if (t->tok_json) {
        snprintf(path, sizeof path, "%s/tokenizer.json", t->dir);
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(t->tok_json, "model");
        if (strcmp(type_of(model), "BPE"))
            return leash_fail(LEASH_EFORMAT, "%s: model.type is \"%s\"; llama.cpp's \"gpt2\" tokenizer is a byte-level BPE",
                              path, type_of(model));
        vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    } else snprintf(path, sizeof path, "%s/vocab.json", t->dir);
    if (!cJSON_IsObject(vocab)) return leash_fail(LEASH_EFORMAT, "%s: the vocabulary is not an object of token -> id", path);
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it)) return leash_fail(LEASH_EFORMAT, "%s: token \"%.40s\" has no integer id", path, it->string);
        int type = !t->tok_json && looks_special(it->string) ? TOK_CONTROL : TOK_NORMAL;
        int rc = set_token(t, path, V, it->valuedouble, it->string, type);
        if (rc) return rc;
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(t->tok_json, "added_tokens")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id"), *text = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(text))
            return leash_fail(LEASH_EFORMAT, "%s: an added_tokens entry lacks an integer \"id\" or a string \"content\"", path);
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) || looks_special(text->valuestring);
        int rc = set_token(t, path, V, id->valuedouble, text->valuestring, special ? TOK_CONTROL : TOK_USER_DEFINED);
        if (rc) return rc;
    }
    return LEASH_OK;
}

/* The id of an added token by its text (how the converter resolves tokenizer_config.json's names), or -1. */
static int added_id(const tokfiles *t, const char *text) {
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(t->tok_json, "added_tokens")) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content"), *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsString(c) && cJSON_IsNumber(id) && !strcmp(c->valuestring, text)) return id->valueint;
    }
    return -1;
}

/* tokenizer_config.json's text for a special token ("bos" -> bos_token: "..." or {"content": "..."}), or NULL. */
static const char *config_token(const tokfiles *t, const char *typ) {
    char k[32];
    snprintf(k, sizeof k, "%s_token", typ);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(t->tok_config, k);
    if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "content");
    return cJSON_IsString(e) ? e->valuestring : NULL;
}

static const char *special_token_of(const cJSON *item) { // a TemplateProcessing entry {"SpecialToken": {"id": "..."}}
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(item, "SpecialToken"), "id");
    return cJSON_IsString(id) ? id->valuestring : NULL;
}
static const char *sequence_of(const cJSON *item) { // {"Sequence": {"id": "A"}}
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(item, "Sequence"), "id");
    return cJSON_IsString(id) ? id->valuestring : NULL;
}
static int same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* Whether bos / eos / sep are added, from a TemplateProcessing post-processor, as gguf-py's SpecialVocab reads
 * the simple templates (special first, $A, special last; and the pair template's separator). */
static int read_template(tokfiles *t, const char *path) {
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(t->tok_json, "post_processor"), *proc;
    const cJSON *procs = cJSON_GetObjectItemCaseSensitive(pp, "processors");
    if (!cJSON_IsArray(procs)) procs = NULL;
    for (proc = procs ? procs->child : pp; proc; proc = procs ? proc->next : NULL) {
        if (!strcmp(type_of(proc), "RobertaProcessing") || !strcmp(type_of(proc), "BertProcessing"))
            return leash_fail(LEASH_EFORMAT, "%s: post_processor %s is not a decoder-only model's", path, type_of(proc));
        if (strcmp(type_of(proc), "TemplateProcessing")) continue;
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(proc, "single");
        const cJSON *pair = cJSON_GetObjectItemCaseSensitive(proc, "pair");
        int n = cJSON_GetArraySize(single), np = cJSON_GetArraySize(pair);
        const char *first = n > 1 ? special_token_of(cJSON_GetArrayItem(single, 0)) : NULL;
        const char *last = n > 1 ? special_token_of(cJSON_GetArrayItem(single, n - 1)) : NULL;
        if (first) {
            if (!t->tok_config) t->bos_text = first;
            t->add_bos = same(first, t->bos_text);
        }
        if (last) {
            if (!t->tok_config) t->eos_text = last;
            if (!same(last, t->eos_text))
                return leash_fail(LEASH_EFORMAT, "%s: post_processor appends \"%s\", which is not the eos token; not "
                                                 "supported",
                                  path, last);
            t->add_eos = 1;
        }
        if (np > 0) { // A [sep] [eos] B between the same first and last specials
            int lo = first && same(special_token_of(cJSON_GetArrayItem(pair, 0)), first);
            int hi = np - (last && same(special_token_of(cJSON_GetArrayItem(pair, np - 1)), last));
            if (hi - lo >= 2 && same(sequence_of(cJSON_GetArrayItem(pair, lo)), "A") &&
                same(sequence_of(cJSON_GetArrayItem(pair, hi - 1)), "B") && hi - lo > 2) {
                const char *sep = config_token(t, "sep"), *m1 = special_token_of(cJSON_GetArrayItem(pair, lo + 1));
                int add = m1 && (same(m1, sep) || same(m1, t->eos_text)) && !last;
                if (hi - lo == 4) {
                    const char *m2 = special_token_of(cJSON_GetArrayItem(pair, lo + 2));
                    add |= m2 && (same(m2, sep) || same(m2, t->eos_text));
                }
                t->add_sep = add;
            }
        }
    }
    return LEASH_OK;
}

/* Reads dir's tokenizer files for a model of V ids. */
static int read_tokenizer(tokfiles *t, const char *dir, int V) {
    char path[4200];
    memset(t, 0, sizeof *t);
    t->dir = dir, t->add_bos = t->add_eos = t->add_sep = -1;
    int rc = read_json(dir, "tokenizer.json", &t->tok_json);
    if (!rc && !t->tok_json) rc = read_json(dir, "vocab.json", &t->vocab_json);
    if (!rc) rc = read_json(dir, "tokenizer_config.json", &t->tok_config);
    if (!rc) rc = read_json(dir, "config.json", &t->config);
    if (rc) return rc;
    if (!t->tok_json && !t->vocab_json)
        return leash_fail(LEASH_EIO, "%s holds no tokenizer (tokenizer.json, or vocab.json + merges.txt); a GGUF file "
                                     "carries its tokenizer, so copy the model's tokenizer files there",
                          dir);
    if (t->tok_json) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if ((rc = identify_pre(path, t->tok_json, &t->pre))) return rc;
    } else {
        t->pre = "gpt-2";
        snprintf(path, sizeof path, "%s/merges.txt", dir);
        if ((rc = leash_read_file(path, 512u << 20, &t->merges_txt, NULL))) return rc;
    }
    t->bos_text = config_token(t, "bos"), t->eos_text = config_token(t, "eos");
    if ((rc = read_tokens(t, V))) return rc;
    return t->tok_json ? read_template(t, path) : LEASH_OK;
}

/* tokenizer.ggml.merges: tokenizer.json's ("a b", or ["a", "b"] with spaces inside written as U+0120 as gguf-py
 * does) or merges.txt's lines (after an optional #version line). */
static int put_merges(buf *b, const tokfiles *t) {
    if (t->tok_json) {
        const cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t->tok_json, "model"), "merges"), *mg;
        if (!cJSON_IsArray(merges)) // (absent, it would have been written as no merges: every text bytes)
            return leash_fail(LEASH_EFORMAT, "%s/tokenizer.json: model.merges is %s; a BPE needs its list of merges",
                              t->dir, merges ? "not a list" : "missing");
        kv_array(b, "tokenizer.ggml.merges", LEASH_GGUF_STRING, (uint64_t)cJSON_GetArraySize(merges));
        int i = 0;
        cJSON_ArrayForEach(mg, merges) {
            if (cJSON_IsString(mg)) {
                put_str(b, mg->valuestring);
            } else if (cJSON_IsArray(mg) && cJSON_GetArraySize(mg) == 2 && cJSON_IsString(mg->child) &&
                       cJSON_IsString(mg->child->next)) {
                buf s = {0};
                for (const cJSON *part = mg->child; part; part = part->next) {
                    if (part != mg->child) put(&s, " ", 1);
                    for (const char *c = part->valuestring; *c; c++) *c == ' ' ? put(&s, "\xc4\xa0", 2) : put(&s, c, 1);
                }
                put_strn(b, (const char *)s.p, s.n);
                free(s.p);
                if (s.oom) b->oom = 1;
            } else {
                return leash_fail(LEASH_EFORMAT, "%s/tokenizer.json: merge %d is neither \"a b\" nor [\"a\", \"b\"]", t->dir, i);
            }
            i++;
        }
        return LEASH_OK;
    }
    uint64_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass) kv_array(b, "tokenizer.ggml.merges", LEASH_GGUF_STRING, n);
        int line = 0;
        for (const char *p = t->merges_txt; *p;) {
            const char *eol = strchr(p, '\n'), *next = eol ? eol + 1 : p + strlen(p);
            size_t len = (size_t)(next - p);
            while (len && (p[len - 1] == '\n' || p[len - 1] == '\r' || p[len - 1] == ' ')) len--;
            line++;
            if (len && !(line == 1 && p[0] == '#')) {
                const char *sp = memchr(p, ' ', len);
                if (!sp || sp == p || sp + 1 == p + len || memchr(sp + 1, ' ', (size_t)(p + len - sp - 1)))
                    return leash_fail(LEASH_EFORMAT, "%s/merges.txt:%d: \"%.*s\" is not a merge \"a b\"", t->dir, line,
                                      (int)(len > 60 ? 60 : len), p);
                if (pass) put_strn(b, p, len);
                else n++;
            }
            p = next;
        }
    }
    return LEASH_OK;
}

/* A special token id: tokenizer_config.json's name resolved through tokenizer.json's added tokens, else
 * config.json's {typ}_token_id, as gguf-py's SpecialVocab (else, for a directory without config.json such as
 * an adapter's, the model's bos / eos); -1 when none gives one. */
static int special_id(const tokfiles *t, const leash_gpt_config *c, const char *typ, int V, int *id) {
    const char *text = !strcmp(typ, "bos") ? t->bos_text : !strcmp(typ, "eos") ? t->eos_text : config_token(t, typ);
    *id = text && t->tok_json ? added_id(t, text) : -1;
    if (*id >= 0 && *id < V) return LEASH_OK;
    char k[32];
    snprintf(k, sizeof k, "%s_token_id", typ);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(t->config, k);
    *id = !t->config && !strcmp(typ, "bos") ? c->bos_token_id : !t->config && !strcmp(typ, "eos") ? c->eos_token_id : -1;
    if (!cJSON_IsNumber(v)) return LEASH_OK; // a list or null: none
    // checked in double: converting an out-of-range double (1e300) to int would be undefined behaviour
    if (v->valuedouble < 0 || v->valuedouble >= V || v->valuedouble != floor(v->valuedouble))
        return leash_fail(LEASH_EFORMAT, "%s/config.json: \"%s\" is %g; a token id must be an integer in [0, %d)",
                          t->dir, k, v->valuedouble, V);
    *id = v->valueint;
    return LEASH_OK;
}

/* Every tokenizer.* key. */
static int put_tokenizer(buf *b, tokfiles *t, const leash_gpt_config *c) {
    int V = c->vocab_size;
    char pad[32];
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    kv_str(b, "tokenizer.ggml.pre", t->pre);
    kv_array(b, "tokenizer.ggml.tokens", LEASH_GGUF_STRING, (uint64_t)V);
    for (int i = 0; i < V; i++) {
        if (!t->tokens[i]) snprintf(pad, sizeof pad, "[PAD%d]", i);
        put_str(b, t->tokens[i] ? t->tokens[i] : pad);
    }
    kv_array(b, "tokenizer.ggml.token_type", LEASH_GGUF_INT32, (uint64_t)V);
    for (int i = 0; i < V; i++) put_u32(b, (uint32_t)t->types[i]);
    int rc = put_merges(b, t);
    const char *types[] = {"bos", "eos", "unk", "sep", "pad"};
    const char *keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                          "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id"}; // (sic) llama.cpp's spelling
    for (int i = 0; !rc && i < 5; i++) {
        int id;
        if (!(rc = special_id(t, c, types[i], V, &id)) && id >= 0) kv_u32(b, keys[i], (uint32_t)id);
    }
    if (rc) return rc;
    const char *adds[] = {"bos", "eos", "sep"};
    int *from_template[] = {&t->add_bos, &t->add_eos, &t->add_sep};
    for (int i = 0; i < 3; i++) {
        char k[64];
        snprintf(k, sizeof k, "add_%s_token", adds[i]);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t->tok_config, k);
        int add = cJSON_IsBool(v) ? cJSON_IsTrue(v) : *from_template[i];
        snprintf(k, sizeof k, "tokenizer.ggml.add_%s_token", adds[i]);
        if (add >= 0) kv_bool(b, k, add);
    }
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(t->tok_config, "chat_template");
    if (cJSON_IsString(tmpl)) kv_str(b, "tokenizer.chat_template", tmpl->valuestring);
    else if (tmpl && !cJSON_IsNull(tmpl))
        return leash_fail(LEASH_EFORMAT, "%s/tokenizer_config.json: \"chat_template\" is not a string (a list of named "
                                         "templates is not supported); remove it or keep only the default template",
                          t->dir);
    else if (t->tok_config) { // transformers 4.43+ keeps the template in its own file
        char path[4200], *text;
        snprintf(path, sizeof path, "%s/chat_template.jinja", t->dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            if ((rc = leash_read_file(path, 64u << 20, &text, NULL))) return rc;
            kv_str(b, "tokenizer.chat_template", text);
            free(text);
        }
    }
    return LEASH_OK;
}

/* ---- the model ------------------------------------------------------------------------------------------ */

static const char *arch_name(const leash_gpt_config *c) {
    if (c->arch == LEASH_ARCH_GPT2) return "gpt2";
    return !strcmp(c->model_type, "qwen2") ? "qwen2" : "llama"; // Mistral and SmolLM2 are llama.cpp's "llama"
}

/* What llama.cpp cannot load, refused before anything is written. */
static int check_model(const leash_gpt *m, const char *arch) {
    const leash_gpt_config *c = leash_gpt_cfg(m);
    if (leash_gpt_lora(m))
        return leash_fail(LEASH_EINVAL, "the model has LoRA adapters (rank %d); merge them into the base first: leash lora "
                                        "merge ADAPTER_DIR OUT_DIR, then export OUT_DIR",
                          leash_gpt_lora(m)->rank);
    if (c->scalar_head)
        return leash_fail(LEASH_EINVAL, "the model has a scalar (reward or value) head, which llama.cpp's %s has no place "
                                        "for; export the policy or SFT model",
                          arch);
    for (int i = 0; i < leash_gpt_num_tensors(m); i++)
        if (leash_gpt_tensor(m, i)->bf16)
            return leash_fail(LEASH_EINVAL, "the model's weights are stored in BF16 for training; load it afresh to export");
    if (!strcmp(arch, "qwen2") && (c->o_bias || c->mlp_bias || !c->qkv_bias))
        return leash_fail(LEASH_EINVAL, "a qwen2 model with o_proj or MLP biases, or without q/k/v biases, has no "
                                        "llama.cpp qwen2 layout");
    if (c->arch == LEASH_ARCH_LLAMA && leash_gpt_head_size(c) % 2)
        return leash_fail(LEASH_EINVAL, "head size %d is odd; rotary positions need pairs", leash_gpt_head_size(c));
    return LEASH_OK;
}

/* Every general.* and {arch}.* key. */
static void put_hparams(buf *b, const leash_gpt_config *c, const char *arch, const char *name, int type) {
    uint32_t file_type = type == LEASH_GGML_F32 ? 0 : type == LEASH_GGML_F16 ? 1 : type == LEASH_GGML_Q8_0 ? 7 : 32;
    kv_str(b, "general.architecture", arch);
    kv_str(b, "general.type", "model");
    kv_str(b, "general.name", name);
    kv_u32(b, "general.alignment", ALIGNMENT);
    kv_arch(b, arch, "vocab_size", (uint32_t)c->vocab_size);
    kv_arch(b, arch, "context_length", (uint32_t)c->n_positions);
    kv_arch(b, arch, "embedding_length", (uint32_t)c->n_embd);
    kv_arch(b, arch, "block_count", (uint32_t)c->n_layer);
    kv_arch(b, arch, "feed_forward_length", (uint32_t)leash_gpt_mlp_width(c));
    kv_arch(b, arch, "attention.head_count", (uint32_t)c->n_head);
    if (c->arch == LEASH_ARCH_GPT2) {
        kv_arch_f32(b, arch, "attention.layer_norm_epsilon", c->layer_norm_epsilon);
    } else {
        kv_arch(b, arch, "attention.head_count_kv", (uint32_t)leash_gpt_kv_heads(c));
        kv_arch(b, arch, "attention.key_length", (uint32_t)leash_gpt_head_size(c));
        kv_arch(b, arch, "attention.value_length", (uint32_t)leash_gpt_head_size(c));
        kv_arch_f32(b, arch, "attention.layer_norm_rms_epsilon", c->layer_norm_epsilon);
        kv_arch_f32(b, arch, "rope.freq_base", c->rope_theta > 0.0f ? c->rope_theta : 10000.0f);
        kv_arch(b, arch, "rope.dimension_count", (uint32_t)leash_gpt_head_size(c));
        if (c->rope_scaling == LEASH_ROPE_LINEAR) {
            char k[64];
            snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
            kv_str(b, k, "linear");
            kv_arch_f32(b, arch, "rope.scaling.factor", c->rope_factor);
        }
    }
    kv_u32(b, "general.file_type", file_type);
    kv_u32(b, "general.quantization_version", 2);
}

/* The tensors in file order (rope_freqs first, as the converter), with their types and data offsets. */
static int plan_tensors(const leash_gpt *m, const char *arch, int type, plan_tensor **out, int *n_out) {
    const leash_gpt_config *c = leash_gpt_cfg(m);
    int n = leash_gpt_num_tensors(m) + 1, k = 0;
    plan_tensor *p = calloc((size_t)n, sizeof *p);
    if (!p) return leash_fail(LEASH_ENOMEM, "out of memory");
    if (c->arch == LEASH_ARCH_LLAMA && c->rope_scaling == LEASH_ROPE_LLAMA3) {
        snprintf(p[0].name, sizeof p[0].name, "rope_freqs.weight");
        p[0].src = -1, p[0].op = OP_ROPE_FREQS, p[0].n_dims = 1, p[0].ne[0] = leash_gpt_head_size(c) / 2, p[0].ne[1] = 1;
        k = 1;
    }
    for (int i = 0; i < leash_gpt_num_tensors(m); i++, k++) {
        int rc = map_tensor(c, arch, leash_gpt_tensor(m, i), &p[k]);
        if (rc) {
            free(p);
            return rc;
        }
        p[k].src = i;
    }
    uint64_t offset = 0;
    for (int i = 0; i < k; i++) {
        p[i].type = tensor_type(&p[i], type);
        p[i].nbytes = row_bytes(p[i].type, p[i].ne[0]) * (uint64_t)p[i].ne[1];
        p[i].offset = offset;
        offset += (p[i].nbytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }
    *out = p, *n_out = k;
    return LEASH_OK;
}

static void put_tensor_infos(buf *b, const plan_tensor *p, int n) {
    for (int i = 0; i < n; i++) {
        put_str(b, p[i].name);
        put_u32(b, (uint32_t)p[i].n_dims);
        for (int d = 0; d < p[i].n_dims; d++) put_u64(b, (uint64_t)p[i].ne[d]);
        put_u32(b, (uint32_t)p[i].type);
        put_u64(b, p[i].offset);
    }
}

/* Streams one tensor, row by row, converted and padded to the alignment. row (ne[0] floats) and bytes
 * (row_bytes) are scratch. */
static int write_tensor(FILE *f, const leash_gpt *m, const plan_tensor *p, float *row, uint8_t *bytes) {
    const leash_gpt_config *c = leash_gpt_cfg(m);
    const leash_tensor_info *t = p->src >= 0 ? leash_gpt_tensor(m, p->src) : NULL;
    const float *src = t ? leash_gpt_params((leash_gpt *)m) + t->offset : NULL;
    int64_t ne0 = p->ne[0], rows = p->ne[1], hs = leash_gpt_head_size(c);
    if (p->op == OP_ROPE_FREQS) leash_gguf_llama3_factors(c, (int)hs, row);
    for (int64_t r = 0; r < rows; r++) {
        if (p->op == OP_TRANSPOSE) // Conv1D (in = ne0, out = rows): output row r is column r
            for (int64_t j = 0; j < ne0; j++) row[j] = src[j * rows + r];
        else if (p->op != OP_ROPE_FREQS) {
            int64_t s = p->op == OP_PERMUTE ? leash_gguf_permuted_row(r, (int)hs) : r;
            if (p->n_dims == 1 && p->op != OP_COPY) { // a permuted bias: one value a "row"
                for (int64_t j = 0; j < ne0; j++) row[j] = src[leash_gguf_permuted_row(j, (int)hs)];
            } else memcpy(row, src + s * ne0, (size_t)ne0 * sizeof *row);
        }
        for (int64_t j = 0; j < ne0; j++)
            if (!isfinite(row[j]))
                return leash_fail(LEASH_ENUMERIC, "tensor %s holds %g at row %lld, column %lld; a model with a NaN or "
                                                  "infinite weight is not exported",
                                  t ? t->name : p->name, (double)row[j], (long long)r, (long long)j);
        size_t nb = (size_t)row_bytes(p->type, ne0);
        int64_t overflow = -1; // a finite weight that F16 (Q8_0's scale too) would store as inf
        if (p->type == LEASH_GGML_F32) memcpy(bytes, row, nb);
        else if (p->type == LEASH_GGML_Q8_0) overflow = quantize_q8_0(row, ne0, bytes);
        else
            for (int64_t j = 0; j < ne0; j++) {
                uint16_t h = p->type == LEASH_GGML_F16 ? f32_to_f16(row[j]) : f32_to_bf16(row[j]);
                if (p->type == LEASH_GGML_F16 && f16_is_inf(h) && overflow < 0) overflow = j;
                memcpy(bytes + 2 * j, &h, 2);
            }
        if (overflow >= 0)
            return leash_fail(LEASH_ENUMERIC, "tensor %s holds %g at row %lld, column %lld, beyond what %s stores (F16's "
                                              "largest is 65504%s): it would be written as inf; export as bf16 or f32",
                              t ? t->name : p->name, (double)row[overflow], (long long)r, (long long)overflow,
                              p->type == LEASH_GGML_F16 ? "F16" : "Q8_0", p->type == LEASH_GGML_F16 ? "" : ", times 127");
        if (fwrite(bytes, 1, nb, f) != nb) return leash_fail(LEASH_EIO, "write failed");
    }
    static const uint8_t zeros[ALIGNMENT] = {0};
    size_t pad = (size_t)((ALIGNMENT - p->nbytes % ALIGNMENT) % ALIGNMENT);
    if (pad && fwrite(zeros, 1, pad, f) != pad) return leash_fail(LEASH_EIO, "write failed");
    return LEASH_OK;
}

/* The base name of dir ("runs/sft/" -> "sft"). */
static void base_name(const char *dir, char *out, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && dir[s - 1] != '/') s--;
    snprintf(out, cap, "%.*s", (int)(n - s), dir + s);
}

static int write_file(const char *path, const buf *header, const leash_gpt *m, const plan_tensor *p, int n) {
    int64_t widest = 1;
    for (int i = 0; i < n; i++) widest = p[i].ne[0] > widest ? p[i].ne[0] : widest;
    float *row = malloc((size_t)widest * sizeof *row);
    uint8_t *bytes = malloc((size_t)widest * 4);
    leash_atomic_file af;
    int rc = !row || !bytes ? leash_fail(LEASH_ENOMEM, "out of memory") : leash_atomic_open(&af, path);
    if (rc) {
        free(row), free(bytes);
        return rc;
    }
    static const uint8_t zeros[ALIGNMENT] = {0};
    size_t pad = (ALIGNMENT - header->n % ALIGNMENT) % ALIGNMENT;
    if (fwrite(header->p, 1, header->n, af.f) != header->n || (pad && fwrite(zeros, 1, pad, af.f) != pad))
        rc = leash_fail(LEASH_EIO, "write failed");
    for (int i = 0; !rc && i < n; i++) rc = write_tensor(af.f, m, &p[i], row, bytes);
    free(row), free(bytes);
    if (rc) {
        leash_atomic_abort(&af);
        return leash_fail_wrap(rc, "%s", path);
    }
    return leash_atomic_commit(&af);
}

int leash_gguf_save(const leash_gpt *m, const char *tok_dir, const char *path, int type, const char *name) {
    if (type != LEASH_GGML_F32 && type != LEASH_GGML_F16 && type != LEASH_GGML_BF16 && type != LEASH_GGML_Q8_0)
        return leash_fail(LEASH_EINVAL, "GGUF type %d: leash writes F32 (%d), F16 (%d), BF16 (%d) or Q8_0 (%d)", type,
                          LEASH_GGML_F32, LEASH_GGML_F16, LEASH_GGML_BF16, LEASH_GGML_Q8_0);
    const leash_gpt_config *c = leash_gpt_cfg(m);
    const char *arch = arch_name(c);
    int rc = check_model(m, arch), n = 0;
    if (rc) return leash_fail_wrap(rc, "%s", tok_dir);
    char dir_name[256];
    base_name(tok_dir, dir_name, sizeof dir_name);
    plan_tensor *plan = NULL;
    tokfiles tok;
    buf h = {0}, kv = {0};
    rc = read_tokenizer(&tok, tok_dir, c->vocab_size);
    if (!rc) rc = plan_tensors(m, arch, type, &plan, &n);
    if (!rc) {
        put_hparams(&kv, c, arch, name ? name : dir_name, type);
        rc = put_tokenizer(&kv, &tok, c);
    }
    if (!rc) {
        put_u32(&h, 0x46554747u); // "GGUF"
        put_u32(&h, 3);
        put_u64(&h, (uint64_t)n);
        put_u64(&h, kv.n_kv);
        put(&h, kv.p, kv.n);
        put_tensor_infos(&h, plan, n);
        rc = h.oom || kv.oom ? leash_fail(LEASH_ENOMEM, "out of memory for the GGUF header") : LEASH_OK;
    }
    if (!rc) rc = write_file(path, &h, m, plan, n);
    tokfiles_free(&tok);
    free(plan), free(h.p), free(kv.p);
    return rc;
}
