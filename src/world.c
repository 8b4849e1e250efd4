/* The default world: review grammar, generator, exact recogniser and gold sentiment. See
 * include/leash/world.h and docs/world.md. */
#define _POSIX_C_SOURCE 200809L
#include "leash/world.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "world_words.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- sentiment arithmetic (docs/world.md) ------------------------------------------------------ */

#define NEGATION_FACTOR (-0.6) /* "not X" is weaker than the opposite of X */
#define CONTRAST_FIRST 0.3     /* "A, but B": B carries the sentence */
#define CONTRAST_SECOND 0.7
#define SQUASH 1.5             /* review sentiment = tanh(SQUASH * mean of sentences) */

static double clause_value(int eval, int negated, int intens) {
    double v = EVAL_POLARITY[eval] / 3.0 * (intens >= 0 ? INTENSITY[intens] : 1.0);
    return negated ? NEGATION_FACTOR * v : v;
}

/* ---- generator ----------------------------------------------------------------------------------- */

static int pick(leash_rng *rng, int n) { return (int)(leash_rng_uniform(rng) * n); }

static void append(char *out, size_t cap, size_t *len, const char *s, int capitalise) {
    size_t n = strlen(s);
    if (*len + n + 1 > cap) return; // callers size cap >= 512; never reached
    memcpy(out + *len, s, n);
    if (capitalise) out[*len] = (char)toupper((unsigned char)out[*len]);
    *len += n;
    out[*len] = '\0';
}

/* det [modifier] noun verb */
static void opening(leash_rng *rng, char *out, size_t cap, size_t *len, int capitalise) {
    append(out, cap, len, DETS[pick(rng, COUNT(DETS))], capitalise);
    append(out, cap, len, " ", 0);
    if (leash_rng_uniform(rng) < 0.35) {
        append(out, cap, len, MODIFIERS[pick(rng, COUNT(MODIFIERS))], 0);
        append(out, cap, len, " ", 0);
    }
    append(out, cap, len, NOUNS[pick(rng, COUNT(NOUNS))], 0);
    append(out, cap, len, " ", 0);
    append(out, cap, len, VERBS[pick(rng, COUNT(VERBS))], 0);
}

/* An evaluation whose sign (after negation) is positive with probability p_pos. */
static double evaluation(leash_rng *rng, double p_pos, char *out, size_t cap, size_t *len) {
    int negated = leash_rng_uniform(rng) < 0.15, intens = leash_rng_uniform(rng) < 0.3 ? pick(rng, COUNT(INTENSIFIERS)) : -1;
    int want_pos = leash_rng_uniform(rng) < p_pos;
    int eval_pos = negated ? !want_pos : want_pos; // "not bad" is positive
    int n_half = COUNT(EVALS) / 2, eval = pick(rng, n_half) + (eval_pos ? 0 : n_half);
    if (negated) append(out, cap, len, " not", 0);
    if (intens >= 0) {
        append(out, cap, len, " ", 0);
        append(out, cap, len, INTENSIFIERS[intens], 0);
    }
    append(out, cap, len, " ", 0);
    append(out, cap, len, EVALS[eval], 0);
    return clause_value(eval, negated, intens);
}

int leash_world_review(leash_rng *rng, double target, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    double u = leash_rng_uniform(rng);
    int n_sent = u < 0.4 ? 1 : u < 0.8 ? 2 : 3;
    double p_pos = 0.5 + 0.45 * (target > 1 ? 1 : target < -1 ? -1 : target);
    for (int s = 0; s < n_sent; s++) {
        if (s) append(out, cap, &len, " ", 0);
        opening(rng, out, cap, &len, 1);
        double c1 = evaluation(rng, p_pos, out, cap, &len);
        if (leash_rng_uniform(rng) < 0.3) { // contrast: the second clause usually turns the other way
            append(out, cap, &len, ", but ", 0);
            opening(rng, out, cap, &len, 0);
            double p2 = leash_rng_uniform(rng) < 0.7 ? (c1 > 0 ? 0.1 : 0.9) : p_pos;
            evaluation(rng, p2, out, cap, &len);
        }
        (void)c1;
        append(out, cap, &len, ".", 0);
    }
    return (int)len;
}

int leash_world_opening(leash_rng *rng, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    opening(rng, out, cap, &len, 1);
    return (int)len;
}

/* ---- recogniser ---------------------------------------------------------------------------------- */

enum { W_DET, W_MOD, W_NOUN, W_VERB, W_NOT, W_INTENS, W_EVAL, W_BUT };

typedef struct {
    const char *word;
    int cls, index;
} entry;

static entry *lexicon;
static int lexicon_n;
static pthread_once_t lexicon_once = PTHREAD_ONCE_INIT;

static int by_word(const void *a, const void *b) { return strcmp(((const entry *)a)->word, ((const entry *)b)->word); }

static void build_lexicon(void) {
    int n = COUNT(DETS) + COUNT(MODIFIERS) + COUNT(NOUNS) + COUNT(VERBS) + COUNT(INTENSIFIERS) + COUNT(EVALS) + 2, k = 0;
    entry *e = malloc(n * sizeof *e);
    if (!e) return; // lexicon_n stays 0: every text is then ungrammatical, and tests catch it
#define ADD(list, cls)                                                                                               \
    for (int i = 0; i < COUNT(list); i++) e[k++] = (entry){list[i], cls, i};
    ADD(DETS, W_DET) ADD(MODIFIERS, W_MOD) ADD(NOUNS, W_NOUN) ADD(VERBS, W_VERB) ADD(INTENSIFIERS, W_INTENS)
    ADD(EVALS, W_EVAL)
#undef ADD
    e[k++] = (entry){"not", W_NOT, 0};
    e[k++] = (entry){"but", W_BUT, 0};
    qsort(e, k, sizeof *e, by_word);
    lexicon = e;
    lexicon_n = k;
}

int leash_world_vocabulary_size(void) {
    pthread_once(&lexicon_once, build_lexicon);
    return lexicon_n;
}

typedef struct {
    const char *s;
    size_t at, end;
} cursor;

/* Reads a word of lowercase letters (the first may be a capital when cap); returns its class or -1. */
static int word(cursor *c, int cap, int *index) {
    char buf[32];
    size_t n = 0, start = c->at;
    while (c->at < c->end && n < sizeof buf - 1) {
        char ch = c->s[c->at];
        int ok = (ch >= 'a' && ch <= 'z') || (n == 0 && cap && ch >= 'A' && ch <= 'Z');
        if (!ok) break;
        buf[n++] = (char)tolower((unsigned char)ch);
        c->at++;
    }
    if (n == 0 || n == sizeof buf - 1) return -1;
    if (cap && !(c->s[start] >= 'A' && c->s[start] <= 'Z')) return -1; // a sentence starts with a capital
    buf[n] = '\0';
    entry key = {buf, 0, 0}, *hit = bsearch(&key, lexicon, lexicon_n, sizeof *lexicon, by_word);
    if (!hit) return -1;
    *index = hit->index;
    return hit->cls;
}

static int lit(cursor *c, const char *s) {
    size_t n = strlen(s);
    if (c->end - c->at < n || memcmp(c->s + c->at, s, n) != 0) return 0;
    c->at += n;
    return 1;
}

/* clause := det [modifier] noun verb ["not"] [intensifier] evaluation; value in *v. */
static int clause(cursor *c, int cap, double *v) {
    int i, cls = word(c, cap, &i), negated = 0, intens = -1;
    if (cls != W_DET || !lit(c, " ")) return 0;
    cls = word(c, 0, &i);
    if (cls == W_MOD) {
        if (!lit(c, " ")) return 0;
        cls = word(c, 0, &i);
    }
    if (cls != W_NOUN || !lit(c, " ") || word(c, 0, &i) != W_VERB || !lit(c, " ")) return 0;
    cls = word(c, 0, &i);
    if (cls == W_NOT) {
        negated = 1;
        if (!lit(c, " ")) return 0;
        cls = word(c, 0, &i);
    }
    if (cls == W_INTENS) {
        intens = i;
        if (!lit(c, " ")) return 0;
        cls = word(c, 0, &i);
    }
    if (cls != W_EVAL) return 0;
    *v = clause_value(i, negated, intens);
    return 1;
}

leash_world_gold leash_world_score(const char *text, size_t len) {
    pthread_once(&lexicon_once, build_lexicon);
    leash_world_gold g = {.grammatical = 0, .sentiment = 0.0, .reward = LEASH_WORLD_UNGRAMMATICAL_REWARD, .error_at = 0};
    cursor c = {text, 0, len};
    while (c.at < c.end && isspace((unsigned char)text[c.at])) c.at++;
    while (c.end > c.at && isspace((unsigned char)text[c.end - 1])) c.end--;
    double total = 0.0;
    for (;;) {
        double a, b;
        if (!clause(&c, 1, &a)) break;
        double s = a;
        if (lit(&c, ", but ")) {
            if (!clause(&c, 0, &b)) break;
            s = CONTRAST_FIRST * a + CONTRAST_SECOND * b;
        }
        if (!lit(&c, ".")) break;
        total += s;
        g.sentences++;
        if (c.at == c.end) {
            g.grammatical = 1;
            g.sentiment = tanh(SQUASH * total / g.sentences);
            g.reward = g.sentiment;
            g.error_at = -1;
            return g;
        }
        if (g.sentences == 3 || !lit(&c, " ")) break;
    }
    g.error_at = (int)c.at;
    g.sentences = 0;
    return g;
}

/* ---- files --------------------------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
} buffer;

static int put(buffer *b, const char *fmt, const char *text, double x) {
    char line[1024];
    int k = snprintf(line, sizeof line, fmt, text, x);
    if (b->n + k + 1 > b->cap) {
        size_t cap = 2 * (b->n + k + 1);
        char *g = realloc(b->s, cap);
        if (!g) return leash_fail(LEASH_ENOMEM, "out of memory");
        b->s = g, b->cap = cap;
    }
    memcpy(b->s + b->n, line, k);
    b->n += k;
    return LEASH_OK;
}

static int write_set(const char *dir, const char *name, uint64_t seed, uint64_t stream, int n, int kind) {
    leash_rng rng;
    leash_rng_seed(&rng, seed, stream);
    buffer b = {0};
    char text[512], path[4096];
    int rc = LEASH_OK;
    for (int i = 0; i < n && !rc; i++) {
        if (kind == 1) {
            leash_world_opening(&rng, text, sizeof text);
            rc = put(&b, "{\"prompt\": \"%s\"}\n", text, 0.0);
            continue;
        }
        // sentiment targets spread over [-1, 1] so that both ends are well represented
        int len = leash_world_review(&rng, 2.0 * leash_rng_uniform(&rng) - 1.0, text, sizeof text);
        if (kind == 0) rc = put(&b, "%s\n", text, 0.0);
        else rc = put(&b, "{\"text\": \"%s\", \"sentiment\": %.6f}\n", text, leash_world_score(text, len).sentiment);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!rc) rc = leash_write_file_atomic(path, b.s ? b.s : "", b.n);
    free(b.s);
    return rc;
}

int leash_world_write(const char *dir, uint64_t seed, int n_corpus, int n_prompts, int n_judge, int n_heldout) {
    if (n_corpus < 1 || n_prompts < 1 || n_judge < 0 || n_heldout < 0)
        return leash_fail(LEASH_EINVAL, "world sizes (corpus %d, prompts %d, judge %d, heldout %d): corpus and prompts "
                                        "need >= 1",
                          n_corpus, n_prompts, n_judge, n_heldout);
    int rc = leash_mkdir(dir);
    if (!rc) rc = write_set(dir, "corpus.txt", seed, 1, n_corpus, 0);
    if (!rc) rc = write_set(dir, "prompts.jsonl", seed, 2, n_prompts, 1);
    if (!rc) rc = write_set(dir, "judge.jsonl", seed, 3, n_judge, 2);
    if (!rc) rc = write_set(dir, "heldout.jsonl", seed, 4, n_heldout, 2);
    return rc;
}
