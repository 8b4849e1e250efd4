/* GPT-2 byte-level BPE: see include/leash/tokenizer.h.
 *
 * Tokens are stored as raw bytes. The files spell them in GPT-2's byte-to-unicode alphabet (every byte a
 * printable code point: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF map to themselves, the other 68 bytes
 * to U+0100.. in order), which this file translates at load and save time. Training a BPE is in
 * tokenizer_train.c.
 */
#define _GNU_SOURCE /* strdup */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "leash/tokenizer.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gguf.h"
#include "tokenizer_internal.h"

#define MAX_SPLITS 4
#define TOK_SPECIAL 1    /* a special token: plain text when special tokens are split (allow_special 0) */
#define TOK_NORMALIZED 2 /* Hugging Face's normalized: matched after the others, in the text they leave */

struct leash_tokenizer {
    int n_vocab;          // ids are 0 .. n_vocab - 1
    char **bytes;         // (n_vocab) raw bytes of each id, NULL for an unused id
    int *len;             // (n_vocab)
    size_t cap;           // hash table of token bytes -> id, open addressing
    int *slots;           // (cap) id or -1
    size_t mcap;          // hash table of merges (a, b) -> rank
    uint64_t *mkey;       // (mcap) a << 32 | b, or UINT64_MAX when empty
    int *mrank, *mresult; // (mcap)
    int byte_id[256];     // id of each single-byte token, -1 for a byte the vocabulary lacks
    int n_special;        // added tokens: matched in the text before pre-tokenisation
    int *special;         // (n_special) their ids
    unsigned char *special_flags; // (n_special) TOK_SPECIAL, TOK_NORMALIZED
    int missing_byte;     // the lowest byte without a token (encodings leave it out), or -1
    int n_re;             // the pre-tokeniser: each pattern splits the pieces of the one before
    pcre2_code *re[MAX_SPLITS];
    int ignore_merges;    // a piece that is itself a token is that token (Llama 3's tokenizer.json)
};

/* ---- the byte-to-unicode alphabet -------------------------------------------------------------- */

static void byte_alphabet(int byte_to_cp[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = printable ? b : 256 + n++;
    }
}

void leash_bpe_byte_order(int order[256]) {
    int k = 0, cp[256];
    byte_alphabet(cp);
    for (int b = 0; b < 256; b++)
        if (cp[b] < 256) order[k++] = b;
    for (int b = 0; b < 256; b++)
        if (cp[b] >= 256) order[k++] = b;
}

/* Decodes one UTF-8 code point at s (n bytes left); returns its length, 0 if invalid. */
static int utf8_decode(const unsigned char *s, size_t n, int *cp) {
    if (n >= 1 && s[0] < 0x80) return *cp = s[0], 1;
    if (n >= 2 && (s[0] & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80) return *cp = (s[0] & 0x1F) << 6 | (s[1] & 0x3F), 2;
    if (n >= 3 && (s[0] & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80)
        return *cp = (s[0] & 0x0F) << 12 | (s[1] & 0x3F) << 6 | (s[2] & 0x3F), 3;
    if (n >= 4 && (s[0] & 0xF8) == 0xF0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80)
        return *cp = (s[0] & 0x07) << 18 | (s[1] & 0x3F) << 12 | (s[2] & 0x3F) << 6 | (s[3] & 0x3F), 4;
    return 0;
}

static int utf8_encode(int cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* A token as spelled in the files -> raw bytes (out holds >= strlen(s) bytes). -1 if a character is
 * outside the alphabet. */
static int unmap(const char *s, char *out, int *bad_cp) {
    static int cp_to_byte[324];
    static int ready = 0;
    if (!ready) { // idempotent: concurrent first calls write the same values
        int b2c[256];
        byte_alphabet(b2c);
        for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
        for (int b = 0; b < 256; b++) cp_to_byte[b2c[b]] = b;
        ready = 1;
    }
    size_t n = strlen(s);
    int k = 0;
    for (size_t i = 0; i < n;) {
        int cp, l = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (!l || cp >= 324 || cp_to_byte[cp] < 0) return *bad_cp = l ? cp : -1, -1;
        out[k++] = (char)cp_to_byte[cp];
        i += l;
    }
    return k;
}

void leash_bpe_spell(const char *s, int n, char *out) {
    int b2c[256], k = 0;
    byte_alphabet(b2c);
    for (int i = 0; i < n; i++) k += utf8_encode(b2c[(unsigned char)s[i]], out + k);
    out[k] = '\0';
}

/* ---- hash tables ------------------------------------------------------------------------------- */

uint64_t leash_bpe_hash_bytes(const char *s, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int lookup(const leash_tokenizer *t, const char *s, int n) {
    for (size_t i = leash_bpe_hash_bytes(s, n) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        int id = t->slots[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->bytes[id], s, n) == 0) return id;
    }
}

uint64_t leash_bpe_hash_pair(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int merge_find(const leash_tokenizer *t, int a, int b, int *result) {
    uint64_t key = (uint64_t)a << 32 | (uint32_t)b;
    for (size_t i = leash_bpe_hash_pair(key) & (t->mcap - 1);; i = (i + 1) & (t->mcap - 1)) {
        if (t->mkey[i] == UINT64_MAX) return -1;
        if (t->mkey[i] == key) return *result = t->mresult[i], t->mrank[i];
    }
}

size_t leash_bpe_table_size(size_t n) {
    size_t c = 16;
    while (c < 2 * n) c <<= 1;
    return c;
}

void leash_tokenizer_free(leash_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_vocab; i++) free(t->bytes[i]);
    free(t->bytes);
    free(t->len);
    free(t->slots);
    free(t->mkey);
    free(t->mrank);
    free(t->mresult);
    free(t->special);
    free(t->special_flags);
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t);
}

/* ---- building ---------------------------------------------------------------------------------- */

typedef struct {
    const char *file;
    leash_tokenizer *t;
    const char *vocab_file; // where the vocabulary came from, for messages about merges
} builder;

/* Registers id's bytes (b, n: taken over) in the lookup table; refuses a second token with the same bytes. */
static int insert_token(builder *bd, int id, char *b, int n, const char *spelled) {
    leash_tokenizer *t = bd->t;
    if (n == 0) {
        free(b);
        return leash_fail(LEASH_EFORMAT, "%s: token id %d is the empty string", bd->file, id);
    }
    if (lookup(t, b, n) >= 0) {
        free(b);
        return leash_fail(LEASH_EFORMAT, "%s: token \"%.40s\" appears twice", bd->file, spelled);
    }
    t->bytes[id] = b;
    t->len[id] = n;
    size_t i = leash_bpe_hash_bytes(b, n) & (t->cap - 1);
    while (t->slots[i] >= 0) i = (i + 1) & (t->cap - 1);
    t->slots[i] = id;
    return LEASH_OK;
}

static int read_id(builder *bd, const cJSON *v, const char *what, int *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e7 || v->valuedouble != (int)v->valuedouble)
        return leash_fail(LEASH_EFORMAT, "%s: the id of %s is not an integer in [0, 1e7]", bd->file, what);
    *id = v->valueint;
    return LEASH_OK;
}

/* An added token's boolean option: absent or null reads as dflt. */
static int added_flag(const cJSON *tok, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tok, key);
    return !v || cJSON_IsNull(v) ? dflt : cJSON_IsTrue(v);
}

/* Added tokens (plain UTF-8, matched in text before pre-tokenisation), then the vocabulary {token: id}
 * in the byte alphabet. A vocabulary entry that is also an added token (as trained tokenizers and the
 * GGUF conversion write them) must be the same token. With gpt2_files, "<|endoftext|>" is special. */
static int build_vocab(builder *bd, const cJSON *vocab, const cJSON *added, int gpt2_files) {
    leash_tokenizer *t = bd->t;
    int max_id = -1, count = 0, rc, id = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        char what[80];
        snprintf(what, sizeof what, "token \"%.40s\"", it->string);
        if ((rc = read_id(bd, it, what, &id))) return rc;
        max_id = id > max_id ? id : max_id, count++;
    }
    cJSON_ArrayForEach(it, added) {
        if ((rc = read_id(bd, cJSON_GetObjectItemCaseSensitive(it, "id"), "an added token", &id))) return rc;
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "content")))
            return leash_fail(LEASH_EFORMAT, "%s: added token id %d has no \"content\" string", bd->file, id);
        max_id = id > max_id ? id : max_id, count++;
    }
    if (count == 0) return leash_fail(LEASH_EFORMAT, "%s: the vocabulary is empty", bd->file);
    t->n_vocab = max_id + 1;
    t->bytes = calloc(t->n_vocab, sizeof *t->bytes);
    t->len = calloc(t->n_vocab, sizeof *t->len);
    t->cap = leash_bpe_table_size((size_t)count);
    t->slots = malloc(t->cap * sizeof *t->slots);
    t->special = malloc((size_t)(cJSON_GetArraySize(added) + 1) * sizeof *t->special);
    t->special_flags = malloc((size_t)(cJSON_GetArraySize(added) + 1));
    if (!t->bytes || !t->len || !t->slots || !t->special || !t->special_flags)
        return leash_fail(LEASH_ENOMEM, "out of memory");
    for (size_t i = 0; i < t->cap; i++) t->slots[i] = -1;
    cJSON_ArrayForEach(it, added) {
        const char *text = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        id = cJSON_GetObjectItemCaseSensitive(it, "id")->valueint;
        if (t->bytes[id]) return leash_fail(LEASH_EFORMAT, "%s: id %d is given to two added tokens", bd->file, id);
        char *b = strdup(text);
        if (!b) return leash_fail(LEASH_ENOMEM, "out of memory");
        if ((rc = insert_token(bd, id, b, (int)strlen(text), text))) return rc;
        t->special_flags[t->n_special] = (unsigned char)((added_flag(it, "special", 1) ? TOK_SPECIAL : 0) |
                                                         (added_flag(it, "normalized", 0) ? TOK_NORMALIZED : 0));
        t->special[t->n_special++] = id;
    }
    cJSON_ArrayForEach(it, vocab) {
        const char *text = it->string;
        id = it->valueint;
        char *b = malloc(strlen(text) + 1);
        if (!b) return leash_fail(LEASH_ENOMEM, "out of memory");
        int bad_cp = 0, n = unmap(text, b, &bad_cp);
        if (n >= 0) b[n] = '\0'; // every token's bytes NUL-terminated, as added tokens' are: the strcmp and %s below
        if (t->bytes[id]) { // an added token: the same text, or the same bytes in the byte alphabet
            int same = !strcmp(text, t->bytes[id]) || (n == t->len[id] && !memcmp(b, t->bytes[id], n));
            free(b);
            if (same) continue;
            for (int k = 0; k < t->n_special; k++)
                if (t->special[k] == id)
                    return leash_fail(LEASH_EFORMAT, "%s: added token \"%.40s\" has id %d, which the vocabulary gives to "
                                                     "another token (\"%.40s\")",
                                      bd->file, t->bytes[id], id, text);
            return leash_fail(LEASH_EFORMAT, "%s: id %d is given to two tokens", bd->file, id);
        }
        if (n < 0) {
            free(b);
            return leash_fail(LEASH_EFORMAT, "%s: token \"%.40s\" (id %d) has character U+%04X outside GPT-2's byte "
                                             "alphabet: not a byte-level BPE vocabulary",
                              bd->file, text, id, bad_cp);
        }
        if ((rc = insert_token(bd, id, b, n, text))) return rc;
        if (gpt2_files && n == 13 && !memcmp(b, "<|endoftext|>", 13)) {
            t->special_flags[t->n_special] = TOK_SPECIAL;
            t->special[t->n_special++] = id;
        }
    }
    t->missing_byte = -1;
    for (int b = 255; b >= 0; b--) { // a byte without a token is left out of encodings, as tokenizers does
        char c = (char)b;
        if ((t->byte_id[b] = lookup(t, &c, 1)) < 0) t->missing_byte = b;
    }
    return LEASH_OK;
}

/* Merges from "a b" strings (merges.txt lines or tokenizer.json); line is 1-based for messages. */
static int add_merge(builder *bd, const char *a_sp, const char *b_sp, int rank, int line) {
    leash_tokenizer *t = bd->t;
    size_t la = strlen(a_sp), lb = strlen(b_sp);
    char *buf = malloc(la + lb + 2);
    if (!buf) return leash_fail(LEASH_ENOMEM, "out of memory");
    int bad, na = unmap(a_sp, buf, &bad), nb = na < 0 ? -1 : unmap(b_sp, buf + na, &bad);
    int ia = na > 0 ? lookup(t, buf, na) : -1, ib = nb > 0 ? lookup(t, buf + na, nb) : -1;
    int ir = ia >= 0 && ib >= 0 ? lookup(t, buf, na + nb) : -1;
    free(buf);
    if (ia < 0 || ib < 0 || ir < 0)
        return leash_fail(LEASH_EFORMAT, "%s: merge %d \"%.40s %.40s\": %s is not in the vocabulary of %s (vocabulary and "
                                         "merges from different tokenizers, or one of the two files damaged?)",
                          bd->file, line, a_sp, b_sp, ia < 0 ? "its first part" : ib < 0 ? "its second part" : "the merged token",
                          bd->vocab_file ? bd->vocab_file : "the same file");
    uint64_t key = (uint64_t)ia << 32 | (uint32_t)ib;
    size_t i = leash_bpe_hash_pair(key) & (t->mcap - 1);
    while (t->mkey[i] != UINT64_MAX && t->mkey[i] != key) i = (i + 1) & (t->mcap - 1);
    if (t->mkey[i] == key) return LEASH_OK; // a repeated merge keeps its first (lowest) rank
    t->mkey[i] = key;
    t->mrank[i] = rank;
    t->mresult[i] = ir;
    return LEASH_OK;
}

static int alloc_merges(leash_tokenizer *t, size_t n) {
    t->mcap = leash_bpe_table_size(n + 1);
    t->mkey = malloc(t->mcap * sizeof *t->mkey);
    t->mrank = malloc(t->mcap * sizeof *t->mrank);
    t->mresult = malloc(t->mcap * sizeof *t->mresult);
    if (!t->mkey || !t->mrank || !t->mresult) return leash_fail(LEASH_ENOMEM, "out of memory");
    for (size_t i = 0; i < t->mcap; i++) t->mkey[i] = UINT64_MAX;
    return LEASH_OK;
}

int leash_bpe_compile(const char *pattern, int literal, const char *where, pcre2_code **out) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : 0), &err,
                                   &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return leash_fail(LEASH_EFORMAT, "%s: cannot compile the pattern \"%.80s\" at offset %zu: %s", where, pattern,
                          (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // optional: falls back to the interpreter
    *out = re;
    return LEASH_OK;
}

/* Appends a pre-tokenisation pattern (a regex, or with literal a plain string); where names it in messages. */
static int add_pattern(leash_tokenizer *t, const char *pattern, int literal, const char *where) {
    if (t->n_re == MAX_SPLITS)
        return leash_fail(LEASH_EFORMAT, "%s: more than %d splitting pre-tokenizers", where, MAX_SPLITS);
    int rc = leash_bpe_compile(pattern, literal, where, &t->re[t->n_re]);
    if (!rc) t->n_re++;
    return rc;
}

static int compile_pattern(leash_tokenizer *t) { return add_pattern(t, LEASH_GPT2_PATTERN, 0, "the GPT-2 pattern"); }

int leash_tokenizer_load(leash_tokenizer **out, const char *vocab_path, const char *merges_path) {
    char *vtext = NULL, *mtext = NULL;
    int rc = leash_read_file(vocab_path, 64u << 20, &vtext, NULL);
    if (rc) return rc;
    if ((rc = leash_read_file(merges_path, 64u << 20, &mtext, NULL))) {
        free(vtext);
        return rc;
    }
    leash_tokenizer *t = calloc(1, sizeof *t);
    const char *end = NULL;
    cJSON *vocab = cJSON_ParseWithOpts(vtext, &end, 1);
    builder bd = {vocab_path, t, vocab_path};
    if (!t) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    else if (!cJSON_IsObject(vocab))
        rc = leash_fail(LEASH_EFORMAT, "%s: not a JSON object of token -> id (malformed at byte %ld)", vocab_path,
                        end ? (long)(end - vtext) : -1L);
    else rc = build_vocab(&bd, vocab, NULL, 1);
    cJSON_Delete(vocab);
    free(vtext);
    // merges.txt: an optional "#version" line, then "a b" per line
    size_t lines = 1;
    for (char *p = mtext; *p; p++) lines += *p == '\n';
    if (!rc) rc = alloc_merges(t, lines);
    bd.file = merges_path;
    int rank = 0, line = 0;
    for (char *p = mtext, *next; !rc && *p; p = next) {
        char *eol = strchr(p, '\n');
        next = eol ? eol + 1 : p + strlen(p);
        if (eol) *eol = '\0';
        line++;
        size_t n = strlen(p);
        if (n && p[n - 1] == '\r') p[--n] = '\0';
        if (n == 0 || (line == 1 && strncmp(p, "#version", 8) == 0)) continue;
        char *sp = strchr(p, ' ');
        if (!sp || sp == p || !sp[1] || strchr(sp + 1, ' ')) {
            rc = leash_fail(LEASH_EFORMAT, "%s:%d: \"%.60s\" is not a merge \"a b\" (two tokens, one space)", merges_path,
                            line, p);
            break;
        }
        *sp = '\0';
        rc = add_merge(&bd, p, sp + 1, rank++, line);
    }
    free(mtext);
    if (!rc) rc = compile_pattern(t);
    if (rc) {
        leash_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return LEASH_OK;
}

/* ---- tokenizer.json ----------------------------------------------------------------------------
 * Every key of every object read here is understood (applied, or checked to hold the one value leash
 * applies) or on a short list of keys that cannot change an encoding (offsets, decoding options, pair
 * templates); any other key or value is an error naming it, so that no file encodes differently from
 * Hugging Face's tokenizers without saying so. */

static const char *type_of(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "(no type)";
}

static int is_off(const cJSON *o, const char *key) { // absent, null, false or ""
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v) || (cJSON_IsString(v) && !v->valuestring[0]);
}

/* Refuses a key of o that is not in known (NULL-terminated); where names o. */
static int check_keys(const char *where, const cJSON *o, const char *const *known) {
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        int ok = 0;
        for (const char *const *k = known; *k && !ok; k++) ok = !strcmp(it->string, *k);
        if (!ok)
            return leash_fail(LEASH_EFORMAT, "%s has \"%s\", which leash does not understand; it may change encodings, so "
                                             "leash refuses the file rather than ignore it",
                              where, it->string);
    }
    return LEASH_OK;
}

/* Refuses key unless it is off (absent, null, false or ""); why says what it would do. */
static int need_off(const char *where, const cJSON *o, const char *key, const char *why) {
    if (is_off(o, key)) return LEASH_OK;
    char *v = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(o, key));
    int rc = leash_fail(LEASH_EFORMAT, "%s.%s is %.60s (%s); leash supports it only null or false", where, key,
                        v ? v : "set", why);
    free(v);
    return rc;
}

static int need_bool(const char *where, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsBool(v)) return LEASH_OK;
    return leash_fail(LEASH_EFORMAT, "%s.%s must be true or false", where, key);
}

/* model: BPE and the options that change encodings. unk_token and byte_fallback act only on a byte the
 * vocabulary lacks, so they are checked with the vocabulary (check_missing_bytes). */
static int read_model_options(const char *path, const cJSON *model, leash_tokenizer *t) {
    static const char *const known[] = {"type", "vocab", "merges", "dropout", "unk_token", "continuing_subword_prefix",
                                        "end_of_word_suffix", "fuse_unk", "byte_fallback", "ignore_merges", NULL};
    char where[4200];
    snprintf(where, sizeof where, "%s: model", path);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    int rc = check_keys(where, model, known);
    if (!rc && dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        rc = leash_fail(LEASH_EFORMAT, "%s.dropout is set (BPE dropout skips merges at random); leash supports null", where);
    if (!rc) rc = need_off(where, model, "continuing_subword_prefix", "a prefix on every token after a word's first");
    if (!rc) rc = need_off(where, model, "end_of_word_suffix", "a suffix on every word's last token");
    if (!rc) rc = need_bool(where, model, "fuse_unk");
    if (!rc) rc = need_bool(where, model, "byte_fallback");
    if (!rc) rc = need_bool(where, model, "ignore_merges");
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (!rc && unk && !cJSON_IsNull(unk) && !cJSON_IsString(unk))
        rc = leash_fail(LEASH_EFORMAT, "%s.unk_token must be a string or null", where);
    t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
    return rc;
}

/* A byte without a token is dropped from encodings, as tokenizers does when the model has no unk_token
 * and no byte_fallback (SmolLM2's vocabulary lacks 21 bytes); with either set tokenizers would encode it
 * as another token, which leash does not do. */
static int check_missing_bytes(const char *path, const cJSON *model, const leash_tokenizer *t) {
    if (t->missing_byte < 0) return LEASH_OK;
    const char *key = !is_off(model, "unk_token") ? "unk_token" : !is_off(model, "byte_fallback") ? "byte_fallback" : NULL;
    if (!key) return LEASH_OK;
    char c = (char)t->missing_byte, spelled[8];
    leash_bpe_spell(&c, 1, spelled);
    return leash_fail(LEASH_EFORMAT, "%s: model.%s is set and byte 0x%02X (spelled \"%s\") has no token: tokenizers would "
                                     "encode that byte as %s, which leash does not; leash reads such a vocabulary only with "
                                     "unk_token null and byte_fallback false",
                      path, key, t->missing_byte, spelled, key[0] == 'u' ? "the unknown token" : "a <0x..> byte token");
}

/* normalizer: none, or NFC (Qwen2), which leash does not apply: it leaves text already in NFC (all ASCII,
 * and text from most keyboards and editors) unchanged, and leash assumes its input is such text. */
static int read_normalizer(const char *path, const cJSON *norm) {
    static const char *const known[] = {"type", NULL};
    char where[4200];
    snprintf(where, sizeof where, "%s: normalizer", path);
    if (!norm || cJSON_IsNull(norm)) return LEASH_OK;
    if (!strcmp(type_of(norm), "NFC")) return check_keys(where, norm, known);
    return leash_fail(LEASH_EFORMAT, "%s type \"%s\" is not supported; leash reads tokenizers with no normalizer or NFC",
                      where, type_of(norm));
}

/* One pre-tokenizer step: ByteLevel, Split (Isolated) or Digits, as a pattern. */
static int read_pre_step(const char *where, const cJSON *pre, leash_tokenizer *t) {
    static const char *const byte_level[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
    static const char *const digits[] = {"type", "individual_digits", NULL};
    static const char *const split[] = {"type", "pattern", "behavior", "invert", NULL};
    static const char *const pattern[] = {"Regex", "String", NULL};
    const char *type = type_of(pre);
    int rc;
    if (!strcmp(type, "ByteLevel")) {
        if ((rc = check_keys(where, pre, byte_level)) || (rc = need_bool(where, pre, "use_regex")) ||
            (rc = need_off(where, pre, "add_prefix_space", "a space before the text")))
            return rc;
        const cJSON *use_regex = cJSON_GetObjectItemCaseSensitive(pre, "use_regex");
        return use_regex && cJSON_IsFalse(use_regex) ? LEASH_OK : add_pattern(t, LEASH_GPT2_PATTERN, 0, where);
    }
    if (!strcmp(type, "Digits")) { // each digit alone, or runs of digits
        if ((rc = check_keys(where, pre, digits)) || (rc = need_bool(where, pre, "individual_digits"))) return rc;
        return add_pattern(t, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "individual_digits")) ? "\\p{N}" : "\\p{N}+",
                           0, where);
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pre, "pattern");
        const cJSON *rx = cJSON_GetObjectItemCaseSensitive(pat, "Regex"), *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(pre, "behavior");
        if ((rc = check_keys(where, pre, split)) || (rc = check_keys(where, pat, pattern)) ||
            (rc = need_off(where, pre, "invert", "the pattern matches the gaps")))
            return rc;
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated"))
            return leash_fail(LEASH_EFORMAT, "%s Split behavior \"%s\" is not supported; leash supports \"Isolated\"", where,
                              cJSON_IsString(beh) ? beh->valuestring : "(missing)");
        if (cJSON_IsString(rx) && !str) return add_pattern(t, rx->valuestring, 0, where);
        if (cJSON_IsString(str) && !rx) return add_pattern(t, str->valuestring, 1, where);
        return leash_fail(LEASH_EFORMAT, "%s Split has no pattern {\"Regex\": ...} or {\"String\": ...}", where);
    }
    return leash_fail(LEASH_EFORMAT, "%s type \"%s\" is not supported; leash reads ByteLevel, Split, Digits and Sequence",
                      where, pre ? type : "(missing)");
}

/* pre_tokenizer: a ByteLevel step, alone or last in a Sequence after Split and Digits steps. leash runs
 * the steps' patterns on raw bytes, which is what tokenizers does as long as ByteLevel comes last. */
static int read_pre_tokenizer(const char *path, const cJSON *pre, leash_tokenizer *t) {
    static const char *const sequence[] = {"type", "pretokenizers", NULL};
    char where[4200];
    snprintf(where, sizeof where, "%s: pre_tokenizer", path);
    if (strcmp(type_of(pre), "Sequence")) {
        if (pre && strcmp(type_of(pre), "ByteLevel") && strcmp(type_of(pre), "(no type)"))
            return leash_fail(LEASH_EFORMAT, "%s is \"%s\" with no ByteLevel step: not a byte-level BPE", where, type_of(pre));
        return read_pre_step(where, pre, t);
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers"), *it;
    int rc = check_keys(where, pre, sequence), last_byte_level = 0;
    if (rc) return rc;
    if (!cJSON_IsArray(list)) return leash_fail(LEASH_EFORMAT, "%s Sequence has no \"pretokenizers\" list", where);
    cJSON_ArrayForEach(it, list) {
        if (!strcmp(type_of(it), "Sequence"))
            return leash_fail(LEASH_EFORMAT, "%s: a Sequence inside a Sequence is not supported", where);
        if (last_byte_level)
            return leash_fail(LEASH_EFORMAT, "%s: a \"%s\" step after ByteLevel is not supported (it would split the "
                                             "byte alphabet's characters); leash reads ByteLevel as the last step",
                              where, type_of(it));
        last_byte_level = !strcmp(type_of(it), "ByteLevel");
        if ((rc = read_pre_step(where, it, t))) return rc;
    }
    if (!last_byte_level) return leash_fail(LEASH_EFORMAT, "%s: the Sequence has no ByteLevel step: not a byte-level BPE", where);
    return LEASH_OK;
}

/* TemplateProcessing's single template: special tokens may come before $A (Llama 3's <|begin_of_text|>),
 * none after. */
static int read_template(const char *where, const cJSON *pp) {
    static const char *const known[] = {"type", "single", "pair", "special_tokens", NULL};
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single"), *it;
    int rc = check_keys(where, pp, known), seen_a = 0;
    if (rc) return rc;
    if (!cJSON_IsArray(single)) return leash_fail(LEASH_EFORMAT, "%s TemplateProcessing has no \"single\" list", where);
    cJSON_ArrayForEach(it, single) {
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) seen_a = 1;
        else if (!cJSON_GetObjectItemCaseSensitive(it, "SpecialToken"))
            return leash_fail(LEASH_EFORMAT, "%s TemplateProcessing: an item of \"single\" is neither a SpecialToken nor "
                                             "a Sequence",
                              where);
        else if (seen_a)
            return leash_fail(LEASH_EFORMAT, "%s TemplateProcessing adds special tokens after the text; leash adds none "
                                             "(only tokens before it, such as a BOS the prompt writes itself, are accepted)",
                              where);
    }
    return LEASH_OK;
}

/* post_processor: runs only when tokenizers is asked to add special tokens. leash encodes as tokenizers
 * does with add_special_tokens=False (how transformers encodes a chat template's output, which writes
 * its BOS itself): ByteLevel (offsets only) and a template that puts special tokens before the text are
 * accepted; one that adds tokens elsewhere (Bert, Roberta, a template with an EOS) is refused. */
static int read_post_processor(const char *path, const cJSON *pp, int depth) {
    static const char *const byte_level[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
    static const char *const sequence[] = {"type", "processors", NULL};
    char where[4200];
    snprintf(where, sizeof where, "%s: post_processor", path);
    if (!pp || cJSON_IsNull(pp)) return LEASH_OK;
    const char *type = type_of(pp);
    if (!strcmp(type, "ByteLevel")) return check_keys(where, pp, byte_level);
    if (!strcmp(type, "TemplateProcessing")) return read_template(where, pp);
    if (!strcmp(type, "Sequence") && depth == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pp, "processors"), *it;
        int rc = check_keys(where, pp, sequence);
        if (!rc && !cJSON_IsArray(list)) rc = leash_fail(LEASH_EFORMAT, "%s Sequence has no \"processors\" list", where);
        cJSON_ArrayForEach(it, list) if (!rc) rc = read_post_processor(path, it, 1);
        return rc;
    }
    return leash_fail(LEASH_EFORMAT, "%s type \"%s\" is not supported; leash reads ByteLevel, TemplateProcessing with "
                                     "special tokens only before the text, and a Sequence of them",
                      where, type);
}

/* decoder: leash decodes ids to their bytes, which is ByteLevel's decoding. */
static int read_decoder(const char *path, const cJSON *dec) {
    static const char *const byte_level[] = {"type", "add_prefix_space", "trim_offsets", "use_regex", NULL};
    char where[4200];
    snprintf(where, sizeof where, "%s: decoder", path);
    if (!dec || cJSON_IsNull(dec)) return LEASH_OK;
    if (!strcmp(type_of(dec), "ByteLevel")) return check_keys(where, dec, byte_level);
    return leash_fail(LEASH_EFORMAT, "%s type \"%s\" is not supported; leash decodes ids to their bytes (ByteLevel)", where,
                      type_of(dec));
}

/* added_tokens: options that change where a token matches must be off; normalized and special are read. */
static int read_added_tokens(const char *path, const cJSON *added) {
    static const char *const known[] = {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special", NULL};
    const cJSON *it;
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return leash_fail(LEASH_EFORMAT, "%s: added_tokens is not a list", path);
    int i = 0, rc = LEASH_OK;
    cJSON_ArrayForEach(it, added) {
        char where[4200];
        snprintf(where, sizeof where, "%s: added_tokens[%d]", path, i++);
        if (!cJSON_IsObject(it)) return leash_fail(LEASH_EFORMAT, "%s is not an object", where);
        if ((rc = check_keys(where, it, known)) || (rc = need_off(where, it, "single_word", "matches only whole words")) ||
            (rc = need_off(where, it, "lstrip", "takes the spaces before it")) ||
            (rc = need_off(where, it, "rstrip", "takes the spaces after it")) || (rc = need_bool(where, it, "normalized")) ||
            (rc = need_bool(where, it, "special")))
            return rc;
    }
    return rc;
}

/* The whole document: the top-level keys, then each part. */
static int read_document(const char *path, const cJSON *root, leash_tokenizer *t) {
    static const char *const known[] = {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                                        "post_processor", "decoder", "model", NULL};
    char where[4200];
    snprintf(where, sizeof where, "%s: the top level", path);
    int rc = check_keys(where, root, known);
    if (!rc) rc = need_off(path, root, "truncation", "cuts encodings to a length");
    if (!rc) rc = need_off(path, root, "padding", "pads encodings to a length");
    if (!rc) rc = read_model_options(path, cJSON_GetObjectItemCaseSensitive(root, "model"), t);
    if (!rc) rc = read_normalizer(path, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    if (!rc) rc = read_pre_tokenizer(path, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), t);
    if (!rc) rc = read_post_processor(path, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0);
    if (!rc) rc = read_decoder(path, cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (!rc) rc = read_added_tokens(path, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    return rc;
}

/* model.merges: "a b" strings or ["a", "b"] pairs, in rank order. */
static int read_merges(builder *bd, const cJSON *merges) {
    int rank = 0, rc = alloc_merges(bd->t, (size_t)cJSON_GetArraySize(merges));
    const cJSON *mg;
    cJSON_ArrayForEach(mg, merges) {
        if (rc) break;
        char a[512], b[512];
        if (cJSON_IsString(mg)) { // "a b"
            const char *sp = strchr(mg->valuestring, ' ');
            size_t la = sp ? (size_t)(sp - mg->valuestring) : 0;
            if (!sp || la == 0 || la >= sizeof a || strlen(sp + 1) >= sizeof b || !sp[1])
                return leash_fail(LEASH_EFORMAT, "%s: merge %d \"%.60s\" is not \"a b\"", bd->file, rank, mg->valuestring);
            memcpy(a, mg->valuestring, la), a[la] = '\0';
            strcpy(b, sp + 1);
        } else if (cJSON_IsArray(mg) && cJSON_GetArraySize(mg) == 2 && cJSON_IsString(cJSON_GetArrayItem(mg, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(mg, 1)) && strlen(cJSON_GetArrayItem(mg, 0)->valuestring) < sizeof a &&
                   strlen(cJSON_GetArrayItem(mg, 1)->valuestring) < sizeof b) { // ["a", "b"]
            strcpy(a, cJSON_GetArrayItem(mg, 0)->valuestring);
            strcpy(b, cJSON_GetArrayItem(mg, 1)->valuestring);
        } else {
            return leash_fail(LEASH_EFORMAT, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", bd->file, rank);
        }
        rc = add_merge(bd, a, b, rank, rank + 1);
        rank++;
    }
    return rc;
}

int leash_tokenizer_from_document(leash_tokenizer **out, const cJSON *root, const char *path) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    leash_tokenizer *t = NULL;
    int rc = LEASH_OK;
    if (!cJSON_IsObject(root)) rc = leash_fail(LEASH_EFORMAT, "%s: not a JSON object", path);
    else if (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0)
        rc = leash_fail(LEASH_EFORMAT, "%s: tokenizer model type %s%s%s is not supported; leash reads byte-level \"BPE\"",
                        path, cJSON_IsString(type) ? "\"" : "", cJSON_IsString(type) ? type->valuestring : "(missing)",
                        cJSON_IsString(type) ? "\"" : "");
    else if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        rc = leash_fail(LEASH_EFORMAT, "%s: model.vocab must be an object and model.merges an array", path);
    else if (!(t = calloc(1, sizeof *t))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc) rc = read_document(path, root, t);
    builder bd = {path, t, NULL};
    if (!rc) rc = build_vocab(&bd, vocab, cJSON_IsArray(added) ? added : NULL, 0);
    if (!rc) rc = check_missing_bytes(path, model, t);
    if (!rc) rc = read_merges(&bd, merges);
    if (rc) {
        leash_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return LEASH_OK;
}

int leash_tokenizer_load_json(leash_tokenizer **out, const char *path) {
    char *text;
    int rc = leash_read_file(path, 256u << 20, &text, NULL);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    long at = end ? (long)(end - text) : -1L;
    free(text);
    if (!cJSON_IsObject(root)) rc = leash_fail(LEASH_EFORMAT, "%s: not a JSON object (malformed at byte %ld)", path, at);
    else rc = leash_tokenizer_from_document(out, root, path);
    cJSON_Delete(root);
    return rc;
}

int leash_tokenizer_load_dir(leash_tokenizer **out, const char *dir) {
    if (leash_gguf_is_file(dir)) { // one GGUF file: its metadata as a tokenizer.json document
        cJSON *doc;
        int rc = leash_gguf_tokenizer_documents(dir, &doc, NULL);
        if (rc) return rc;
        rc = leash_tokenizer_from_document(out, doc, dir);
        cJSON_Delete(doc);
        return rc;
    }
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/tokenizer.json", dir);
    FILE *f = fopen(a, "rb");
    if (f) {
        fclose(f);
        return leash_tokenizer_load_json(out, a);
    }
    snprintf(a, sizeof a, "%s/vocab.json", dir);
    snprintf(b, sizeof b, "%s/merges.txt", dir);
    return leash_tokenizer_load(out, a, b);
}

static int write_document(const char *dir, const char *name, const cJSON *doc) {
    char path[4096], *text = cJSON_Print(doc);
    if (!text) return leash_fail(LEASH_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = leash_write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

/* From a GGUF file: tokenizer.json and tokenizer_config.json (chat template, bos/eos/pad tokens). */
static int copy_from_gguf(const char *gguf_path, const char *to_dir) {
    cJSON *doc, *config;
    int rc = leash_gguf_tokenizer_documents(gguf_path, &doc, &config);
    if (rc) return rc;
    leash_tokenizer *check; // never write a tokenizer.json leash itself would refuse
    if (!(rc = leash_tokenizer_from_document(&check, doc, gguf_path))) leash_tokenizer_free(check);
    if (!rc) rc = write_document(to_dir, "tokenizer.json", doc);
    if (!rc) rc = write_document(to_dir, "tokenizer_config.json", config);
    cJSON_Delete(doc), cJSON_Delete(config);
    return rc;
}

int leash_tokenizer_copy(const char *from_dir, const char *to_dir) {
    if (leash_gguf_is_file(from_dir)) return copy_from_gguf(from_dir, to_dir);
    // the tokenizer, then what transformers reads beside it: chat template, special tokens, generation defaults
    const char *names[] = {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                           "special_tokens_map.json", "generation_config.json"};
    int copied = 0;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        char from[4096], to[4096], *data = NULL;
        size_t n = 0;
        snprintf(from, sizeof from, "%s/%s", from_dir, names[i]);
        snprintf(to, sizeof to, "%s/%s", to_dir, names[i]);
        FILE *f = fopen(from, "rb");
        if (!f) continue;
        fclose(f);
        int rc = leash_read_file(from, 512u << 20, &data, &n);
        if (!rc) rc = leash_write_file_atomic(to, data, n);
        free(data);
        if (rc) return rc;
        copied += i < 3;
    }
    return copied ? LEASH_OK
                  : leash_fail(LEASH_EIO, "%s holds no tokenizer (tokenizer.json, or vocab.json + merges.txt)", from_dir);
}

int leash_tokenizer_vocab_size(const leash_tokenizer *t) { return t->n_vocab; }

int leash_tokenizer_special_id(const leash_tokenizer *t, const char *text) {
    int n = (int)strlen(text);
    for (int i = 0; i < t->n_special; i++) {
        int id = t->special[i];
        if (t->len[id] == n && memcmp(t->bytes[id], text, n) == 0) return id;
    }
    return -1;
}

int leash_tokenizer_eos(const leash_tokenizer *t, int model_eos) {
    return model_eos >= 0 ? model_eos : t ? leash_tokenizer_special_id(t, "<|endoftext|>") : -1;
}

const char *leash_tokenizer_token(const leash_tokenizer *t, int id, int *len) {
    if (id < 0 || id >= t->n_vocab || !t->bytes[id]) return NULL;
    *len = t->len[id];
    return t->bytes[id];
}

char *leash_utf8_sanitize(const char *s, size_t len) {
    char *out = malloc(3 * len + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len;) {
        int cp, l = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        // overlong forms, surrogates and code points past U+10FFFF are invalid too
        int ok = l && !(l == 2 && cp < 0x80) && !(l == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) &&
                 !(l == 4 && (cp < 0x10000 || cp > 0x10FFFF)) && !(l == 1 && cp == 0);
        if (ok) {
            memcpy(o, s + i, l);
            o += l, i += l;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3); // U+FFFD
            o += 3, i += 1;
        }
    }
    *o = '\0';
    return out;
}

/* ---- encoding ---------------------------------------------------------------------------------- */

static int push_id(int **ids, size_t *n, size_t *cap, int id) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        int *p = realloc(*ids, c * sizeof *p);
        if (!p) return leash_fail(LEASH_ENOMEM, "out of memory");
        *ids = p, *cap = c;
    }
    (*ids)[(*n)++] = id;
    return LEASH_OK;
}

/* BPE of one pre-token: start from bytes, repeatedly merge every occurrence of the lowest-rank pair. */
static int bpe_piece(const leash_tokenizer *t, const unsigned char *s, size_t n, int **ids, size_t *n_ids, size_t *cap) {
    int stack_buf[64], *sym = n <= 64 ? stack_buf : malloc(n * sizeof *sym);
    if (!sym) return leash_fail(LEASH_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) // a byte the vocabulary lacks is dropped; its neighbours may merge
        if (t->byte_id[s[i]] >= 0) sym[k++] = t->byte_id[s[i]];
    int whole = t->ignore_merges && n > 1 ? lookup(t, (const char *)s, (int)n) : -1;
    if (whole >= 0) sym[0] = whole, k = 1;
    while (k > 1) {
        int best = -1, best_a = 0, best_b = 0, result = 0, r;
        for (size_t i = 0; i + 1 < k; i++) {
            int rank = merge_find(t, sym[i], sym[i + 1], &r);
            if (rank >= 0 && (best < 0 || rank < best)) best = rank, best_a = sym[i], best_b = sym[i + 1], result = r;
        }
        if (best < 0) break;
        size_t w = 0;
        for (size_t i = 0; i < k; i++) {
            if (i + 1 < k && sym[i] == best_a && sym[i + 1] == best_b) sym[w++] = result, i++;
            else sym[w++] = sym[i];
        }
        k = w;
    }
    int rc = LEASH_OK;
    for (size_t i = 0; i < k && !rc; i++) rc = push_id(ids, n_ids, cap, sym[i]);
    if (sym != stack_buf) free(sym);
    return rc;
}

/* Pre-tokenise text without special tokens with patterns level.. and BPE each piece. Each pattern splits
 * a piece into its matches and the gaps between them (Hugging Face's "Isolated" behaviour); bytes no
 * pattern matches (invalid UTF-8) form pieces of their own. */
static int split_and_encode(const leash_tokenizer *t, int level, const char *text, size_t len, int **ids, size_t *n_ids,
                            size_t *cap) {
    if (level >= t->n_re || level >= MAX_SPLITS)
        return len ? bpe_piece(t, (const unsigned char *)text, len, ids, n_ids, cap) : LEASH_OK;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re[level], NULL);
    if (!md) return leash_fail(LEASH_ENOMEM, "out of memory");
    size_t at = 0;
    int rc = LEASH_OK;
    while (at < len && !rc) {
        int m = pcre2_match(t->re[level], (PCRE2_SPTR)text, len, at, 0, md, NULL);
        size_t start = len, end = len;
        if (m > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            start = ov[0], end = ov[1];
        } else if (m != PCRE2_ERROR_NOMATCH) {
            rc = leash_fail(LEASH_EINVAL, "tokenizer: PCRE2 match error %d at byte %zu", m, at);
            break;
        }
        if (start > at) rc = split_and_encode(t, level + 1, text + at, start - at, ids, n_ids, cap);
        if (!rc && end > start) rc = split_and_encode(t, level + 1, text + start, end - start, ids, n_ids, cap);
        at = end > start ? end : (start < len ? start + 1 : len);
    }
    pcre2_match_data_free(md);
    return rc;
}

/* The earliest added token of one kind (normalized or not) in text[at, len), the longest where two start
 * together (Hugging Face's leftmost-longest match); -1 if none. */
static int next_added(const leash_tokenizer *t, const char *text, size_t at, size_t len, int normalized, int allow_special,
                      size_t *pos) {
    int best = -1;
    *pos = len;
    for (int i = 0; i < t->n_special; i++) {
        int f = t->special_flags[i], id = t->special[i], l = t->len[id];
        if (!!(f & TOK_NORMALIZED) != normalized || (!allow_special && (f & TOK_SPECIAL))) continue;
        for (size_t p = at; p + l <= len && p <= *pos; p++) {
            if (text[p] == t->bytes[id][0] && memcmp(text + p, t->bytes[id], l) == 0) {
                if (p < *pos || l > t->len[best]) *pos = p, best = id;
                break;
            }
        }
    }
    return best;
}

/* Added tokens split the text first: those not normalized, then the normalized ones in what is left
 * (level 0, 1), then the pieces between them are pre-tokenised and BPE'd (level 2). */
static int encode_added(const leash_tokenizer *t, int level, const char *text, size_t len, int allow_special, int **ids,
                        size_t *n_ids, size_t *cap) {
    if (level == 2) return split_and_encode(t, 0, text, len, ids, n_ids, cap);
    for (size_t at = 0; at < len;) {
        size_t pos;
        int id = next_added(t, text, at, len, level, allow_special, &pos), rc;
        if ((rc = encode_added(t, level + 1, text + at, pos - at, allow_special, ids, n_ids, cap))) return rc;
        if (id < 0) break;
        if ((rc = push_id(ids, n_ids, cap, id))) return rc;
        at = pos + t->len[id];
    }
    return LEASH_OK;
}

int leash_tokenizer_encode(const leash_tokenizer *t, const char *text, size_t len, int allow_special, int **ids,
                           size_t *n_ids, size_t *cap) {
    return encode_added(t, 0, text, len, allow_special, ids, n_ids, cap);
}

int leash_tokenizer_decode(const leash_tokenizer *t, const int *ids, size_t n_ids, char **out, size_t *len, size_t *cap) {
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab || !t->bytes[ids[i]])
            return leash_fail(LEASH_EINVAL, "token id %d at position %zu is not in the vocabulary (size %d)", ids[i], i,
                              t->n_vocab);
        int l = t->len[ids[i]];
        if (*len + l + 1 > *cap) {
            size_t c = (*len + l + 1) * 2;
            char *p = realloc(*out, c);
            if (!p) return leash_fail(LEASH_ENOMEM, "out of memory");
            *out = p, *cap = c;
        }
        memcpy(*out + *len, t->bytes[ids[i]], l);
        *len += l;
        (*out)[*len] = '\0';
    }
    return LEASH_OK;
}
