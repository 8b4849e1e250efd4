#define _GNU_SOURCE /* memmem */
/* Training a GPT-2-style byte-level BPE: see leash_tokenizer_train in include/leash/tokenizer.h. The corpus is
 * split by GPT-2's pattern into pre-tokens, counted once each; the most frequent adjacent pair of symbols is
 * merged into a new token, again and again; vocab.json and merges.txt are written in the byte alphabet the
 * loader (tokenizer.c) reads.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "leash/tokenizer.h"

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "tokenizer_internal.h"

typedef struct {
    char *bytes; // the distinct pre-token
    int n;
    int *sym;    // its current symbols (token ids)
    int nsym;
    long count;  // occurrences in the corpus
} word;

typedef struct {
    word *w;
    size_t n, cap;
    int *slot; // hash of bytes -> index into w, -1 empty
    size_t hcap;
} word_table;

static int word_slot(const word_table *wt, const char *s, int n) {
    size_t i = leash_bpe_hash_bytes(s, n) & (wt->hcap - 1);
    while (wt->slot[i] >= 0 && !(wt->w[wt->slot[i]].n == n && memcmp(wt->w[wt->slot[i]].bytes, s, n) == 0))
        i = (i + 1) & (wt->hcap - 1);
    return (int)i;
}

static int add_word(word_table *wt, const char *s, int n, const int byte_tok[256]) {
    int i = word_slot(wt, s, n);
    if (wt->slot[i] >= 0) {
        wt->w[wt->slot[i]].count++;
        return LEASH_OK;
    }
    if (wt->n == wt->cap) {
        word *g = realloc(wt->w, (wt->cap = wt->cap ? 2 * wt->cap : 1024) * sizeof *g);
        if (!g) return leash_fail(LEASH_ENOMEM, "out of memory");
        wt->w = g;
    }
    word *x = &wt->w[wt->n];
    *x = (word){malloc(n), n, malloc(n * sizeof(int)), n, 1};
    if (!x->bytes || !x->sym) return leash_fail(LEASH_ENOMEM, "out of memory");
    memcpy(x->bytes, s, n);
    for (int k = 0; k < n; k++) x->sym[k] = byte_tok[(unsigned char)s[k]];
    wt->slot[i] = (int)wt->n++;
    if (2 * wt->n > wt->hcap) { // grow and rehash
        free(wt->slot);
        wt->hcap *= 2;
        if (!(wt->slot = malloc(wt->hcap * sizeof *wt->slot))) return leash_fail(LEASH_ENOMEM, "out of memory");
        for (size_t j = 0; j < wt->hcap; j++) wt->slot[j] = -1;
        for (size_t j = 0; j < wt->n; j++) wt->slot[word_slot(wt, wt->w[j].bytes, wt->w[j].n)] = (int)j;
    }
    return LEASH_OK;
}

/* The longest token training makes, in bytes: a pair that would merge into a longer one is not merged (a
 * token of 600 bytes is spelled in at most 1200 bytes of vocab.json and merges.txt). */
#define TRAIN_TOKEN_MAX 600

/* vocab.json's and merges.txt's texts of a trained BPE: n_tok tokens (bytes tb, lengths tl, at most
 * TRAIN_TOKEN_MAX each) then <|endoftext|>, and its merges in order. */
static int train_texts(char *const *tb, const int *tl, int n_tok, int (*merges)[2], int n_merges, char **vtext, char **mtext,
                       size_t *mlen) {
    int rc = LEASH_OK;
    cJSON *v = cJSON_CreateObject();
    size_t mcap = 64 + (size_t)n_merges * 16;
    char spelled[2 * TRAIN_TOKEN_MAX + 1], b[2 * TRAIN_TOKEN_MAX + 1];
    *mtext = malloc(mcap);
    if (!v || !*mtext) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int id = 0; id < n_tok && !rc; id++) {
        leash_bpe_spell(tb[id], tl[id], spelled);
        cJSON_AddItemToObject(v, spelled, cJSON_CreateNumber(id));
    }
    if (!rc) cJSON_AddItemToObject(v, "<|endoftext|>", cJSON_CreateNumber(n_tok));
    if (!rc && !(*vtext = cJSON_PrintUnformatted(v))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    cJSON_Delete(v);
    if (!rc) *mlen = (size_t)snprintf(*mtext, mcap, "#version: 0.2\n");
    for (int i = 0; i < n_merges && !rc; i++) {
        leash_bpe_spell(tb[merges[i][0]], tl[merges[i][0]], spelled);
        leash_bpe_spell(tb[merges[i][1]], tl[merges[i][1]], b);
        size_t need = strlen(spelled) + strlen(b) + 2;
        if (*mlen + need + 1 > mcap) {
            char *g = realloc(*mtext, mcap = 2 * (*mlen + need + 1));
            if (!g) {
                rc = leash_fail(LEASH_ENOMEM, "out of memory");
                break;
            }
            *mtext = g;
        }
        *mlen += (size_t)snprintf(*mtext + *mlen, mcap - *mlen, "%s %s\n", spelled, b);
    }
    return rc;
}

/* 1. The distinct pre-tokens of text and their counts into wt; "<|endoftext|>" separates documents and is not
 * text. */
static int count_words(word_table *wt, const char *text, size_t len, pcre2_code *re, const int byte_tok[256]) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return leash_fail(LEASH_ENOMEM, "out of memory");
    int rc = LEASH_OK;
    for (size_t at = 0; at < len && !rc;) {
        const char *eot = memmem(text + at, len - at, "<|endoftext|>", 13);
        size_t seg_end = eot ? (size_t)(eot - text) : len;
        while (at < seg_end && !rc) {
            int m = pcre2_match(re, (PCRE2_SPTR)text, seg_end, at, 0, md, NULL);
            size_t start = seg_end, end = seg_end;
            if (m > 0) start = pcre2_get_ovector_pointer(md)[0], end = pcre2_get_ovector_pointer(md)[1];
            if (start > at) rc = add_word(wt, text + at, (int)(start - at), byte_tok); // bytes the pattern skips
            if (!rc && end > start) rc = add_word(wt, text + start, (int)(end - start), byte_tok);
            at = end > start ? end : (start < seg_end ? start + 1 : seg_end);
        }
        at = eot ? seg_end + 13 : len;
    }
    pcre2_match_data_free(md);
    if (!rc && wt->n == 0)
        rc = leash_fail(LEASH_EINVAL, "the corpus holds no text (%zu bytes%s): there is nothing to learn a vocabulary from",
                        len, len ? ", only <|endoftext|> separators" : "");
    return rc;
}

/* The token table as merges are made: the bytes of each id (vocab_size at most) and the merges in order. */
typedef struct {
    char **tb;         // (vocab_size) each token's bytes
    int *tl;           // (vocab_size) their lengths
    int n_tok;
    int (*merges)[2];  // (n_merges_max + 1) the pair each merge joined
    int n_merges;
} bpe_table;

/* The most frequent adjacent pair over wt's words (counted by occurrence; ties by the lower pair), skipping
 * pairs that would make a token longer than TRAIN_TOKEN_MAX; pk/pc (pcap) is the pair table's scratch. */
static uint64_t best_pair(const word_table *wt, const int *tl, uint64_t *pk, long *pc, size_t pcap, long *best_count) {
    for (size_t i = 0; i < pcap; i++) pk[i] = UINT64_MAX;
    uint64_t best = UINT64_MAX;
    *best_count = 0;
    for (size_t i = 0; i < wt->n; i++) {
        const word *x = &wt->w[i];
        for (int k = 0; k + 1 < x->nsym; k++) {
            if (tl[x->sym[k]] + tl[x->sym[k + 1]] > TRAIN_TOKEN_MAX) continue;
            uint64_t key = (uint64_t)x->sym[k] << 32 | (uint32_t)x->sym[k + 1];
            size_t j = leash_bpe_hash_pair(key) & (pcap - 1);
            while (pk[j] != UINT64_MAX && pk[j] != key) j = (j + 1) & (pcap - 1);
            if (pk[j] == UINT64_MAX) pk[j] = key, pc[j] = 0;
            pc[j] += x->count;
            if (pc[j] > *best_count || (pc[j] == *best_count && key < best)) best = key, *best_count = pc[j];
        }
    }
    return best;
}

/* 2. Merges: the most frequent adjacent pair becomes a token, again and again, until n_merges_max or no pair
 * occurs min_frequency times. */
static int learn_merges(word_table *wt, bpe_table *bt, int n_merges_max, int min_frequency) {
    size_t total = 0;
    for (size_t i = 0; i < wt->n; i++) total += wt->w[i].n;
    size_t pcap = leash_bpe_table_size(total + 1);
    uint64_t *pk = malloc(pcap * sizeof *pk);
    long *pc = malloc(pcap * sizeof *pc);
    int rc = pk && pc ? LEASH_OK : leash_fail(LEASH_ENOMEM, "out of memory");
    while (!rc && bt->n_merges < n_merges_max) {
        long best_count;
        uint64_t best = best_pair(wt, bt->tl, pk, pc, pcap, &best_count);
        if (best_count < min_frequency) break;
        int a = (int)(best >> 32), b = (int)(best & 0xffffffffu), id = bt->n_tok++;
        if (!(bt->tb[id] = malloc(bt->tl[a] + bt->tl[b]))) {
            rc = leash_fail(LEASH_ENOMEM, "out of memory");
            break;
        }
        memcpy(bt->tb[id], bt->tb[a], bt->tl[a]);
        memcpy(bt->tb[id] + bt->tl[a], bt->tb[b], bt->tl[b]);
        bt->tl[id] = bt->tl[a] + bt->tl[b];
        bt->merges[bt->n_merges][0] = a, bt->merges[bt->n_merges][1] = b, bt->n_merges++;
        for (size_t i = 0; i < wt->n; i++) {
            word *x = &wt->w[i];
            int w = 0;
            for (int k = 0; k < x->nsym; k++) {
                if (k + 1 < x->nsym && x->sym[k] == a && x->sym[k + 1] == b) x->sym[w++] = id, k++;
                else x->sym[w++] = x->sym[k];
            }
            x->nsym = w;
        }
    }
    free(pk), free(pc);
    return rc;
}

/* 3. The two files, in the byte alphabet: both texts are made first, then written; vocab.json is removed
 * again when merges.txt cannot be written, so that the directory holds both files or neither. */
static int write_files(const char *dir, const bpe_table *bt) {
    char *vtext = NULL, *mtext = NULL;
    size_t mlen = 0;
    int rc = train_texts(bt->tb, bt->tl, bt->n_tok, bt->merges, bt->n_merges, &vtext, &mtext, &mlen);
    if (!rc) rc = leash_mkdir(dir);
    if (!rc) {
        char vpath[4096], mpath[4096];
        snprintf(vpath, sizeof vpath, "%s/vocab.json", dir);
        snprintf(mpath, sizeof mpath, "%s/merges.txt", dir);
        if (!(rc = leash_write_file_atomic(vpath, vtext, strlen(vtext))) && (rc = leash_write_file_atomic(mpath, mtext, mlen)))
            unlink(vpath);
    }
    free(vtext), free(mtext);
    return rc;
}

int leash_tokenizer_train(const char *text, size_t len, int vocab_size, int min_frequency, const char *dir) {
    if (vocab_size < 257 || vocab_size > 1000000)
        return leash_fail(LEASH_EINVAL, "vocab size %d; it must be in [257, 1000000] (256 bytes + <|endoftext|> at least)",
                          vocab_size);
    if (min_frequency < 1) return leash_fail(LEASH_EINVAL, "min frequency %d; it must be >= 1", min_frequency);
    pcre2_code *re;
    int rc = leash_bpe_compile(LEASH_GPT2_PATTERN, 0, "the GPT-2 pattern", &re);
    if (rc) return rc;
    int order[256], byte_tok[256];
    leash_bpe_byte_order(order);
    for (int i = 0; i < 256; i++) byte_tok[order[i]] = i;

    // the 256 byte tokens first, in GPT-2's order
    int n_merges_max = vocab_size - 257;
    bpe_table bt = {.tb = calloc(vocab_size, sizeof *bt.tb), .tl = calloc(vocab_size, sizeof *bt.tl), .n_tok = 256,
                    .merges = calloc(n_merges_max + 1, sizeof *bt.merges)};
    word_table wt = {.hcap = 4096};
    wt.slot = malloc(wt.hcap * sizeof *wt.slot);
    if (!bt.tb || !bt.tl || !bt.merges || !wt.slot) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int i = 0; i < 256 && !rc; i++) {
        if (!(bt.tb[i] = malloc(1))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
        else bt.tb[i][0] = (char)order[i], bt.tl[i] = 1;
    }
    for (size_t i = 0; wt.slot && i < wt.hcap; i++) wt.slot[i] = -1;

    if (!rc) rc = count_words(&wt, text, len, re, byte_tok);
    if (!rc) rc = learn_merges(&wt, &bt, n_merges_max, min_frequency);
    if (!rc) rc = write_files(dir, &bt);

    for (size_t i = 0; i < wt.n; i++) free(wt.w[i].bytes), free(wt.w[i].sym);
    free(wt.w), free(wt.slot), free(bt.merges), free(bt.tl);
    for (int i = 0; bt.tb && i < vocab_size; i++) free(bt.tb[i]);
    free(bt.tb);
    pcre2_code_free(re);
    return rc;
}
