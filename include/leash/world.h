/* The default world: a seeded probabilistic grammar of short English reviews, and a gold scorer that knows
 * the truth about any text: whether the grammar can produce it (an exact recogniser) and, if so, its true
 * sentiment. The gold reward is what a proxy reward model only approximates (Gao et al. 2022's setup).
 *
 * The grammar (docs/world.md has the word lists and the sentiment arithmetic):
 *     review   := sentence (" " sentence){0,2}
 *     sentence := Clause "." | Clause ", but " clause "."      (Clause: first letter capitalised)
 *     clause   := det [modifier] noun verb ["not"] [intensifier] evaluation
 * Every word belongs to exactly one class, so the recogniser is a deterministic left-to-right parse.
 */
#ifndef LEASH_WORLD_H
#define LEASH_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "leash/rng.h"

/* Gold reward of a text the grammar cannot produce: the bottom of the [-1, 1] sentiment scale. */
#define LEASH_WORLD_UNGRAMMATICAL_REWARD (-1.0)

/* One review from the grammar into out (NUL-terminated; cap >= 512 is always enough); returns its length.
 * target_sentiment in [-1, 1] biases the evaluations' polarity (0: unbiased). */
int leash_world_review(leash_rng *rng, double target_sentiment, char *out, size_t cap);

/* A review opening, used as a prompt: "Det [modifier] noun verb", capitalised ("The pasta was"). */
int leash_world_opening(leash_rng *rng, char *out, size_t cap);

typedef struct {
    int grammatical; /* 1 if the grammar produces this text exactly (after trimming outer whitespace) */
    double sentiment; /* the true sentiment in [-1, 1] when grammatical, else 0 */
    double reward;    /* gold reward: sentiment, or LEASH_WORLD_UNGRAMMATICAL_REWARD */
    int sentences;
    int error_at;     /* byte offset where parsing failed, -1 when grammatical */
} leash_world_gold;

/* Parses len bytes of text exactly. */
leash_world_gold leash_world_score(const char *text, size_t len);

/* Number of distinct words the grammar can produce. */
int leash_world_vocabulary_size(void);

/* Writes the world's files into dir (created if missing), all from seed:
 *   corpus.txt       n_corpus reviews, one per line (pre-training / SFT data)
 *   prompts.jsonl    n_prompts {"prompt": opening}
 *   judge.jsonl      n_judge {"text": review, "sentiment": gold} labelled grammatical reviews (judge data)
 *   heldout.jsonl    n_heldout {"text", "sentiment"} for evaluation, disjoint random stream
 */
int leash_world_write(const char *dir, uint64_t seed, int n_corpus, int n_prompts, int n_judge, int n_heldout);

#endif
