/* Direct preference optimisation: the offline twin of the KL-regularised RL objective
 *   max_pi E[r(y)] - beta KL(pi || pi_ref),
 * whose optimum is pi*(y) = pi_ref(y) exp(r(y) / beta) / Z. When preferences come from the Bradley-Terry
 * model of r (P(a preferred to b) = sigmoid(r(a) - r(b))), the DPO loss over pairs (chosen w, rejected l)
 *   sigmoid: -log sigmoid(beta h),   IPO: (h - 1 / (2 beta))^2,
 *   h = (log pi(w) - log pi_ref(w)) - (log pi(l) - log pi_ref(l)),
 * is minimised by pi* (sigmoid; IPO's optimum is the same family at another temperature). Log-probs are
 * summed over the response's tokens only (the prompt and padding masked): nats per sequence. The
 * reference's log-probs are computed once, with the initial policy (or, with LoRA, adapters still zero),
 * before any update, and cached: no second model is held.
 * Dimensions: n pairs, R = 2 n rows (chosen rows then rejected rows), T tokens. */
#ifndef LEASH_DPO_H
#define LEASH_DPO_H

#include <stdint.h>

#include "leash/gpt.h"
#include "leash/metrics.h"
#include "leash/optim.h"

typedef enum { LEASH_DPO_SIGMOID = 0, LEASH_DPO_IPO = 1 } leash_dpo_loss;

/* One pair's loss at log-ratio difference h; *dh (may be NULL) receives d loss / d h. Stable for any h. */
double leash_dpo_pair_loss(leash_dpo_loss kind, double beta, double h, double *dh);

/* A token sequence: prompt ids[0, prompt_len), response ids[prompt_len, n); prompt_len >= 1 (the first
 * response token is predicted from the prompt). */
typedef struct {
    const int *ids;
    int n, prompt_len;
} leash_dpo_seq;

/* TRL's DPO metrics over a batch (weighted means): rewards/chosen = beta (log pi(w) - log pi_ref(w)), etc.,
 * nats per sequence. */
typedef struct {
    double loss, reward_chosen, reward_rejected, accuracy, margin, logp_chosen, logp_rejected;
} leash_dpo_metrics;

/* log pi(response | prompt) summed over response tokens, for R rows, one forward: logp (R). */
int leash_dpo_seq_logps(leash_gpt *m, const leash_dpo_seq *rows, int R, double *logp);

/* The loss of n pairs under m, as the weighted mean over pairs (weight NULL: all 1; a weight w counts a
 * pair w times, so identical pairs may be given once with their count), with reference log-probs ref_w,
 * ref_l (n), and its gradient times scale added to m's gradients (a forward and backward; scale 0: no
 * backward). mt (may be NULL) receives the metrics. */
int leash_dpo_accumulate(leash_gpt *m, leash_dpo_loss kind, double beta, const leash_dpo_seq *chosen,
                         const leash_dpo_seq *rejected, const double *ref_w, const double *ref_l, const double *weight,
                         int n, double scale, leash_dpo_metrics *mt);

typedef struct {
    const char *policy;   /* model directory or .gguf: the initial policy and the reference */
    const char *data;     /* preference JSONL {"prompt", "chosen", "rejected", ...} (what `judge label` writes) */
    const char *out_dir;  /* OUT/policy, OUT/metrics.jsonl, OUT/checkpoint */
    double beta;
    leash_dpo_loss loss;
    int steps;            /* 0: epochs * ceil(pairs / batch) */
    int epochs;
    int batch_size;
    leash_adamw_config optim;
    uint64_t seed;
    int resume;           /* continue OUT/checkpoint (its settings must match) */
    int save_every;       /* > 0: a checkpoint every this many steps too (always one at the end) */
    int lora_rank;        /* > 0: train LoRA adapters; the reference is the adapters-off model */
    float lora_alpha;     /* 0: 2 * rank */
    const char *lora_targets;
    int checkpoint_activations; /* recompute activations in the backward: less memory, the same numbers */
} leash_dpo_config;

leash_dpo_config leash_dpo_defaults(void);

typedef struct {
    int step, steps;
    int epoch;
    leash_dpo_metrics m;
    const leash_metrics *metrics; /* this step's metrics by name, as metrics.jsonl writes them */
} leash_dpo_progress;

typedef int (*leash_dpo_fn)(const leash_dpo_progress *p, void *ctx); /* nonzero: stop (a checkpoint is written) */

/* Trains; every step appends a line to OUT/metrics.jsonl (step, epoch, loss, beta, rewards/chosen,
 * rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen, logps/rejected, lr, grad_norm).
 * A stop request (leash_request_stop: SIGINT, SIGTERM) ends after the step in progress, as the end does.
 * At the end writes OUT/checkpoint (weights or adapters, optimiser, state.json with the settings a resume
 * must match) and OUT/policy (with its tokenizer). The caller holds OUT's lock (leash_rundir_open). */
int leash_dpo_train(const leash_dpo_config *c, leash_dpo_fn fn, void *ctx, leash_dpo_progress *final);

#endif
