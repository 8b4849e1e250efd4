/* Pre-training and supervised fine-tuning of a GPT-2 on plain text: next-token cross-entropy, AdamW,
 * validation loss, metrics JSONL, checkpoints that resume exactly.
 *
 * Data: text files, one document per line, or documents separated by "<|endoftext|>". Documents are
 * tokenised and joined with the end-of-text token between them into one stream; the last val_fraction
 * of the documents is held out. A batch is B windows of T + 1 tokens at positions drawn from the random
 * stream of (seed, step), so a resumed run draws exactly the batches the uninterrupted run would have.
 */
#ifndef LEASH_PRETRAIN_H
#define LEASH_PRETRAIN_H

#include "leash/gpt.h"
#include "leash/metrics.h"
#include "leash/optim.h"

typedef struct {
    const char *out_dir;    /* the model and tokenizer (at the end), metrics.jsonl, and checkpoint/ (weights,
                             * optimizer.safetensors, trainer_state.json; replaced as a set) */
    const char **data;      /* text files */
    int n_data;
    const char *init_dir;   /* start from this model (and its tokenizer); NULL: a new model */
    const char *tokenizer_dir; /* for a new model: the tokenizer; NULL: train one of vocab_size on the data */
    leash_gpt_config model; /* for a new model (vocab_size from the tokenizer, eos from "<|endoftext|>") */
    int vocab_size;         /* for a tokenizer trained on the data */
    int batch_size, seq_len, grad_accum;
    int steps;              /* optimizer updates in total */
    leash_adamw_config optim;
    float val_fraction;     /* of documents held out */
    int val_every, val_batches, save_every;
    uint64_t seed;
    int resume;             /* continue from out_dir's checkpoint */
    int skip_nonfinite;     /* a non-finite loss or gradient skips that update (counted: "skipped" in the
                             * metrics) instead of stopping the run */
    int checkpoint_activations; /* recompute activations in the backward: less memory, the same numbers */
} leash_pretrain_config;

/* Defaults: a 6-layer, 256-wide, 8-head model with 128 positions and a 2048-token tokenizer, batch 16,
 * 1000 steps, lr 1e-3 with 50 warmup steps and cosine decay, validation every 100 steps. */
leash_pretrain_config leash_pretrain_defaults(void);

typedef struct {
    int step, steps;          /* updates done, in total */
    double loss;              /* training loss of this update, nats per token */
    double val_loss;          /* NAN when not measured this step */
    double lr, grad_norm, tokens_per_s;
    long tokens_seen;
    long skipped;             /* updates skipped so far for a non-finite value (skip_nonfinite); the library
                               * prints nothing: the caller reports a skip when this grows */
    const leash_metrics *metrics; /* this update's metrics by name, as metrics.jsonl writes them */
} leash_pretrain_progress;

/* Called after every update; a non-zero return stops the run after a checkpoint. */
typedef int (*leash_pretrain_fn)(const leash_pretrain_progress *p, void *ctx);

int leash_pretrain(const leash_pretrain_config *cfg, leash_pretrain_fn fn, void *ctx);

#endif
