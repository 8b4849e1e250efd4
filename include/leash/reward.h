/* Reward models: a GPT with a scalar head whose value at the last token of a text is its score.
 *
 *   leash_rm_train with LEASH_RM_BRADLEY_TERRY: preference pairs (JSONL {"prompt", "chosen", "rejected"}),
 *       loss -log sigmoid(r(prompt + chosen) - r(prompt + rejected)) (the RLHF reward model);
 *   leash_rm_train with LEASH_RM_REGRESSION: labelled texts (JSONL {"text", "sentiment"}), loss
 *       (r(text) - label)^2 (the default world's AI judge, a sentiment classifier).
 *
 * A text is scored as tokenize(text) + <|endoftext|>: the value at the end-of-text token. After training,
 * the mean and standard deviation of the model's scores on the training texts are stored in config.json
 * ("leash": {"score_mean", "score_std"}) so trainers can normalise rewards.
 * Dimensions: B texts, T tokens.
 */
#ifndef LEASH_REWARD_H
#define LEASH_REWARD_H

#include <stdint.h>

#include "leash/gpt.h"
#include "leash/optim.h"
#include "leash/tokenizer.h"

/* Bradley-Terry loss over n pairs, averaged: -log sigmoid(rc - rr); drc, drr (n) get its gradient (may be
 * NULL). Stable for any margin (uses log1p(exp(-|d|))). */
double leash_bt_loss(const float *rc, const float *rr, int n, float *drc, float *drr);

/* Scores n texts with a scalar-head model: scores (n), in batches of `batch` texts. A text longer than
 * the model's positions keeps its last n_positions tokens (the end, where the score is read), so a long
 * rollout is scored rather than stopping a run; training data that long is an error instead. */
int leash_rm_score_texts(leash_gpt *m, const leash_tokenizer *tok, const char *const *texts, int n, int batch,
                         float *scores);

typedef enum { LEASH_RM_BRADLEY_TERRY = 0, LEASH_RM_REGRESSION = 1 } leash_rm_loss;

typedef struct {
    const char *data;      /* JSONL: pairs (Bradley-Terry) or labelled texts (regression) */
    const char *out_dir;
    const char *init_dir;  /* start from this model (the SFT checkpoint); a scalar head is added if missing */
    const char *tokenizer_dir; /* with no init: the tokenizer of a new model */
    leash_gpt_config model;    /* with no init: the new model's shape */
    leash_rm_loss loss;
    int batch_size, epochs;
    leash_adamw_config optim;
    float val_fraction;    /* held out, from the end of the file */
    uint64_t seed;
    /* optional gold reward of a text (the default world's), to report agreement with the truth */
    double (*gold)(const char *text, void *ctx);
    void *gold_ctx;
    int skip_nonfinite;    /* a non-finite loss or gradient skips that batch's update (counted) instead of
                            * stopping the training with an error */
    /* LoRA (with init_dir): lora_rank > 0 trains adapters on lora_targets (PEFT names; NULL: q_proj,v_proj, or
     * c_attn for GPT-2) and the scalar head, the base frozen; out_dir is then a PEFT adapter directory (with
     * the head and its score statistics) that every command loads like a full model */
    int lora_rank;
    float lora_alpha;      /* 0: 2 * rank */
    const char *lora_targets;
    int checkpoint_activations; /* recompute activations in the backward: less memory, the same numbers */
} leash_rm_config;

leash_rm_config leash_rm_defaults(void);

typedef struct {
    int step, steps, epoch;
    int validation;           /* 1: this report is an end-of-epoch validation */
    double loss;
    double val_accuracy;      /* pairs: fraction with r(chosen) > r(rejected); texts: sign agreement */
    double val_gold_accuracy; /* pairs: agreement with the default world's gold order, NAN when not measured */
    int val_n;
    long skipped;             /* updates skipped for a non-finite value (skip_nonfinite) */
    char skip_reason[320];    /* why the last of them was skipped ("" while none was): the library prints nothing */
    /* After the last epoch, the score statistics' pass over the training texts reports after each batch:
     * stats_done of stats_total texts scored (stats_total 0 in every other report; fn's return is ignored
     * there, the statistics are needed to write the model) */
    int stats_done, stats_total;
} leash_rm_progress;

typedef int (*leash_rm_fn)(const leash_rm_progress *p, void *ctx);

/* Trains, reports through fn after every update and after every epoch's validation, writes the model
 * (with score statistics) to out_dir. final (may be NULL) receives the last validation. */
int leash_rm_train(const leash_rm_config *cfg, leash_rm_fn fn, void *ctx, leash_rm_progress *final);

#endif
