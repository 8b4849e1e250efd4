/* RLAIF labelling: sample two responses per prompt from a policy and ask an AI judge which is better,
 * writing preference pairs as JSONL {"prompt", "chosen", "rejected", "margin"}.
 *
 * Judges: a scalar-head model (leash's own: the default world's sentiment judge, or any reward model),
 * which prefers the higher score, with margin = the score difference; or an external command speaking
 * this protocol on its stdin and stdout, one JSON object per line, answers in request order:
 *     leash -> judge:  {"id": 7, "prompt": "...", "a": "...", "b": "..."}
 *     judge -> leash:  {"id": 7, "preferred": "a", "margin": 0.8}     ("b" likewise; margin optional, >= 0)
 * A judge that exits, answers malformed JSON, answers another id, or is silent past the timeout stops the
 * run with an error saying which. The output file is written whole (a temporary renamed over it): a run
 * that fails leaves a file that existed untouched; into a new file it keeps the pairs labelled before.
 * Pairs the judge cannot separate (equal scores, identical responses) are skipped and counted.
 */
#ifndef LEASH_JUDGE_H
#define LEASH_JUDGE_H

#include "leash/sample.h"

typedef struct {
    const char *policy_dir;   /* the model that writes the responses (its tokenizer too) */
    const char *prompts_path; /* JSONL {"prompt"} */
    const char *out_path;     /* JSONL pairs, written whole at the end */
    const char *judge_dir;    /* a scalar-head model, or NULL with judge_cmd */
    const char *judge_cmd;    /* an external judge (run with /bin/sh -c), or NULL */
    double timeout_s;         /* per answer of an external judge */
    leash_sample_config sample;
    int batch;                /* prompts generated together */
    int max_prompts;          /* 0: all */
} leash_label_config;

leash_label_config leash_label_defaults(void);

typedef struct {
    int prompts_done, prompts;
    int written, skipped;
} leash_label_progress;

typedef int (*leash_label_fn)(const leash_label_progress *p, void *ctx);

int leash_judge_label(const leash_label_config *cfg, leash_label_fn fn, void *ctx, leash_label_progress *final);

#endif
