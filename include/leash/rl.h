/* RL fine-tuning with a KL leash: PPO (the InstructGPT / RLHF recipe) and GRPO (DeepSeekMath).
 *
 * Both sample responses from the policy at temperature T, score prompt + response with a reward model (or
 * the default world's gold scorer), and measure the KL to a frozen reference (the starting checkpoint,
 * loaded once, never updated) with log-probs computed at the same T.
 *   PPO:  per-token reward -beta * kl_t, plus the (shaped) score at the last response token; a value model
 *         (initialised from the reward model, or the policy plus a head); GAE; whitened advantages; clipped
 *         policy and value losses; several epochs over mini-batches.
 *   GRPO: G responses per prompt; advantage (r - mean) / (std + eps) within the group (or r - mean); the KL
 *         inside the loss with the k3 estimator and its gradient; clipped ratio; loss averaged per sequence
 *         (the paper) or per token.
 * Dimensions: B sequences in a step, P longest prompt, M new tokens, T = P + M.
 */
#ifndef LEASH_RL_H
#define LEASH_RL_H

#include <stdint.h>

#include "leash/beta.h"
#include "leash/kl.h"
#include "leash/gpt.h"
#include "leash/metrics.h"
#include "leash/optim.h"

typedef enum { LEASH_PPO = 0, LEASH_GRPO = 1 } leash_rl_algo;

/* What scores a response: a tagged choice, one kind per run. */
typedef enum {
    LEASH_REWARD_NONE = 0,  /* not chosen yet: leash_rl_train refuses it */
    LEASH_REWARD_MODEL,     /* a reward model (scalar head) in dir, on prompt + response */
    LEASH_REWARD_GOLD,      /* the default world's gold reward */
    LEASH_REWARD_COMMAND,   /* scorer commands (/bin/sh -c cmd), one JSON line each way, answers in order:
                             *   leash -> cmd: {"id": 7, "prompt": "...", "response": "...", "answer": "12"}
                             *     (the prompt line's other columns after "response", as written)
                             *   cmd -> leash: {"id": 7, "reward": 0.5, "metrics": {"gold/correct": 1}}
                             *     ("metrics" optional: named values whose batch means are logged; docs/rl.md) */
    LEASH_REWARD_FUNCTION,  /* fn, once per response */
    LEASH_REWARD_BATCH      /* batch_fn, once per step with every response this process scores */
} leash_reward_kind;

/* The score of a response, given its prompt text, its text and its token ids (the EOS included when it was
 * emitted). */
typedef double (*leash_reward_fn)(const char *prompt, const char *response, const int *tokens, int n, void *ctx);
/* The scores of n responses at once (completions[i] answers prompts[i]) into rewards[i]; a non-zero return
 * fails the run (a Python caller's exception, say). */
typedef int (*leash_reward_batch_fn)(const char *const *prompts, const char *const *completions, int n, double *rewards,
                                     void *ctx);

typedef struct {
    leash_reward_kind kind;
    const char *dir;          /* MODEL */
    const char *cmd;          /* COMMAND: the scorer (the first of cmds when there are several) */
    const char *const *cmds;  /* COMMAND: n_cmds > 0 scorers, the reward their weighted sum (cmd then unused) */
    int n_cmds;
    const char *const *cmd_names; /* COMMAND: n_cmds labels (rewards/<label>/mean); NULL: cmd0, cmd1, ... */
    const double *weights;    /* COMMAND: n_cmds weights; NULL: all 1 */
    double timeout_s;         /* COMMAND: seconds per answer (default 30) */
    leash_reward_fn fn;       /* FUNCTION */
    leash_reward_batch_fn batch_fn; /* BATCH */
    void *ctx;                /* FUNCTION and BATCH: handed to the function */
} leash_reward_source;

/* What PPO alone uses: GAE, the value model and its loss, reward whitening. */
typedef struct {
    float gamma, lam;        /* GAE's discount and lambda */
    float vf_coef, value_clip; /* the clipped value loss's weight and clip */
    int whiten_rewards;      /* whiten per-token rewards over the batch (scale only, as TRL) */
    leash_adamw_config value_optim; /* the value model's optimiser */
} leash_ppo_config;

/* GRPO's baseline: the group mean (the paper; it contains the sample itself, so the advantage is (G-1)/G of
 * r_i minus the others' mean), or RLOO's leave-one-out mean of the other G-1 responses (unbiased). */
typedef enum { LEASH_BASELINE_GROUP = 0, LEASH_BASELINE_LOO = 1 } leash_grpo_baseline;
/* TRL's scale_rewards: the advantage divided by (std + 1e-4) of the group's rewards (the paper), of the whole
 * batch's, or not at all (Dr. GRPO, RLOO). The std is the sample std (n - 1), as TRL's. */
typedef enum { LEASH_SCALE_NONE = 0, LEASH_SCALE_GROUP = 1, LEASH_SCALE_BATCH = 2 } leash_scale_rewards;
/* TRL's loss_type: how the per-token losses of a minibatch of S sequences become one number.
 *   GRPO:    each sequence's token mean, averaged over sequences (the paper)
 *   BNPO:    one mean over the minibatch's tokens (TRL's "bnpo", and "dapo": the minibatch is one update
 *            here and its tokens are counted over every rank)
 *   DR_GRPO: the token sum divided by S x max_new, a constant (Dr. GRPO: no length bias) */
typedef enum { LEASH_LOSS_GRPO = 0, LEASH_LOSS_BNPO = 1, LEASH_LOSS_DR_GRPO = 2 } leash_grpo_loss;
/* TRL's importance_sampling_level: one ratio per token, or GSPO's per sequence, exp of the mean log-ratio. */
typedef enum { LEASH_IS_TOKEN = 0, LEASH_IS_SEQUENCE = 1 } leash_is_level;

/* What GRPO alone uses: groups, the baseline and scaling of the advantages, the loss's averaging. */
typedef struct {
    int group;               /* responses per prompt (G) */
    leash_grpo_baseline baseline;
    leash_scale_rewards scale_rewards; /* default GROUP; --no-std-scaling: NONE */
    leash_grpo_loss loss;    /* default GRPO; --token-level-loss: BNPO */
    float epsilon_high;      /* DAPO's clip-higher: the ratio's upper clip 1 + epsilon_high; 0: clip_eps */
    int mask_truncated;      /* TRL's mask_truncated_completions: a response without EOS adds no loss (it still
                              * counts as a sequence in the loss's normalisation, as TRL's) */
    leash_is_level is_level; /* TRL's importance_sampling_level */
    float entropy_coef;      /* subtracts coef x the policy's entropy (per token, full vocabulary) from the loss */
} leash_grpo_config;

/* Sets one of GRPO's named choices from its TRL value: option "baseline" (group | loo), "loss" (grpo | bnpo |
 * dapo | dr_grpo), "scale-rewards" (group | batch | none; true | false as TRL's older bool) or
 * "importance-sampling-level" (token | sequence). An unknown option or value is an error naming both. */
int leash_grpo_choice(leash_grpo_config *c, const char *option, const char *value);
/* The TRL name of each choice's value, for logs and checkpoints. */
const char *leash_grpo_choice_name(const leash_grpo_config *c, const char *option);

/* TRL's vllm_importance_sampling_mode (docs/rl.md, "Off-policy correction"): the weight of a response token's
 * clipped surrogate is pi_old / pi_sample, the policy scored for training over the distribution the sampler drew
 * the token from, per token or for the whole response (the product over its tokens), truncated at the cap or
 * zeroed above it (a mask). */
typedef enum {
    LEASH_TIS_TOKEN_TRUNCATE = 0,
    LEASH_TIS_TOKEN_MASK = 1,
    LEASH_TIS_SEQUENCE_TRUNCATE = 2,
    LEASH_TIS_SEQUENCE_MASK = 3
} leash_tis_mode;
/* "token_truncate", "token_mask", "sequence_truncate", "sequence_mask" (TRL's names). */
int leash_tis_mode_parse(const char *name, leash_tis_mode *mode);
const char *leash_tis_mode_name(leash_tis_mode mode);

typedef struct {
    leash_rl_algo algo;
    const char *policy_dir;  /* the SFT checkpoint: the policy starts here and it is the frozen reference */
    const char *ref_dir;     /* another frozen reference (same vocabulary), e.g. the original SFT model when
                              * continuing from an RL checkpoint; NULL: policy_dir */
    leash_reward_source reward; /* what scores a response: exactly one kind (see above) */
    int gold_metrics;        /* report the default world's gold reward and grammaticality */
    const char *prompts;     /* JSONL {"prompt"}; special tokens written in a prompt (a chat template's
                              * <|im_start|>, Llama 3's <|begin_of_text|>) become their ids. A response ends at
                              * the policy's eos_token_id (config.json), else at <|endoftext|>. Other fields of a
                              * line are the prompt's columns, passed to reward commands */
    int chat_template;       /* each prompt is a user message the policy's own chat template wraps (with its
                              * generation prompt) before tokenising; scorers, samples and the reward model get
                              * the plain prompt */
    const char *out_dir;     /* policy (and value model), metrics.jsonl, samples.jsonl, report.json */
    int steps, batch;        /* updates; prompts per step (PPO: sequences; GRPO: groups) */
    int max_new;             /* M */
    float temperature;       /* rollouts and every log-prob */
    int top_k;               /* sample from the top_k most likely tokens only; 0: off */
    float top_p;             /* sample from the smallest set with mass >= top_p; 1: off. With either, every log-prob
                              * of the policy (ratios, KL, entropy) is that of the truncated, renormalised
                              * distribution the sampler drew from; the reference's is its full one (docs/rl.md) */
    uint64_t seed;
    /* the leash */
    leash_beta_ctl beta;     /* fixed or adaptive (target in nats per sequence, or per token: beta.units) */
    leash_kl_estimator kl_estimator; /* PPO: k1 (default), k3 (or k3+, the same value) or exact in the reward;
                                      * GRPO: k3 (default), k2, k3+ or exact inside the loss (exact: the
                                      * full-vocabulary KL at every response token and its gradient in the
                                      * logits, one more reference forward per update) */
    /* reward shaping */
    int normalize_scores;    /* (score - mean) / std with the reward model's stored statistics */
    float score_clip;        /* clip the (normalised) score to [-x, x]; 0: off */
    float no_eos_penalty;    /* added to the score of a response that never emitted EOS (e.g. -1); 0: off */
    float length_penalty;    /* subtracted per response token */
    /* optimisation */
    leash_adamw_config optim;       /* policy */
    int epochs, minibatch;   /* passes over each batch; sequences per update */
    int grad_accum;          /* gradient accumulation (TRL's gradient_accumulation_steps): each update's
                              * minibatch (this rank's part of it) runs as grad_accum micro-batches whose
                              * gradients add up before the one optimiser step, every loss normalised by the whole
                              * minibatch's counts, so the step equals the un-accumulated one up to float
                              * summation order; peak memory falls with the micro-batch. 0 or 1: off */
    int separate_scoring;    /* 1: always run the scoring forward before the updates. With one epoch and one
                              * minibatch the update's own forward serves as the scoring pass (the old log-probs,
                              * entropy and exact KL; bit-identical, one policy forward per step less); this turns
                              * that off, for comparisons */
    float clip_eps;          /* the clipped surrogate's epsilon (both) */
    leash_ppo_config ppo;    /* PPO only */
    leash_grpo_config grpo;  /* GRPO only */
    /* off-policy correction: truncated importance sampling (TRL's), tis_mode's weight capped at tis_cap; 0: off.
     * policy/is_ratio_{mean,min,max} are logged either way */
    float tis_cap;
    leash_tis_mode tis_mode;
    /* reference refresh (TR-DPO; TRL's sync_ref_model): after every ref_sync_every-th step the reference becomes
     * ref_sync_alpha x policy + (1 - alpha) x reference (Polyak; TRL's ref_model_mixup_alpha, default 0.6). With
     * LoRA, where the reference is the base under the adapters, only alpha 1: the adapters are merged into the
     * base and start again from B = 0. A refreshed reference is kept in the checkpoint. 0: never */
    int ref_sync_every;
    float ref_sync_alpha;
    /* reporting */
    int sample_every;        /* print / store samples every N steps; 0: off */
    /* checkpoints (OUT/checkpoint, replaced atomically as a set): every save_every steps (0: only at the end
     * and when stopped), and when leash_request_stop() (SIGINT/SIGTERM in the CLI) stops the run after a step */
    int save_every;
    int resume;              /* continue OUT's run from OUT/checkpoint: bit-identical to an uninterrupted run */
    int skip_nonfinite;      /* a non-finite reward, KL or gradient skips that batch (or minibatch update),
                              * counted (skipped/nonfinite) and reported, instead of stopping the run */
    /* LoRA: lora_rank > 0 trains low-rank adapters on lora_targets (PEFT names, e.g. "q_proj,v_proj";
     * NULL: q_proj,v_proj, or c_attn for GPT-2) with the base frozen; the reference is then the policy with
     * its adapters off (no second copy of the weights, unless ref_dir names another model), and OUT/policy
     * holds the adapters in PEFT's layout. A policy_dir that is already a PEFT adapter directory continues
     * training those adapters (its base is the reference). */
    int lora_rank;
    float lora_alpha;        /* 0: 2 * rank */
    float lora_dropout;      /* written to adapter_config.json; PPO/GRPO forwards run without dropout */
    const char *lora_targets;
    /* frozen weights in BF16 (leash_gpt_store_bf16): the reference, the reward model and, with LoRA, the
     * base under the adapters; half their memory. A reference rounded to BF16 is not exactly the F32 policy
     * it started as (KL > 0 at step 1) unless the checkpoint is BF16 already; with LoRA policy and reference
     * share the rounded base and step 1's KL stays exactly 0. */
    int frozen_bf16;
    int checkpoint_activations; /* the trained models (policy, value) recompute activations in their backward:
                                 * less memory, about one more forward, the same numbers (leash/gpt.h) */
} leash_rl_config;

leash_rl_config leash_rl_defaults(leash_rl_algo algo);

/* The CLI's lists for n reward commands: weights "1,0.5" into w[n] (NULL text: all 1) and names "proxy,format"
 * into labels[n] (NULL text: all NULL, i.e. cmd0, cmd1, ...), pointing into buf (cap bytes; 256 hold 8 names).
 * A count other than n, or a weight that is not a finite number, is an error naming the option. */
int leash_reward_lists(int n, const char *weights, const char *names, double *w, const char **labels, char *buf, size_t cap);

/* The batch of one step as the trainer saw it, for a callback that inspects it (valid during the callback).
 * Row b: its prompt left-padded to P columns, its response from column P, then padding (EOS ids, mask 0).
 * Per-token arrays (rows, T) are indexed by the input position t whose next token is a response token:
 * response token j of row b is predicted at t = P + j - 1, where targets[b, t] is that token; targets is
 * -1 at every other place, and every per-token array is exactly 0 there. */
typedef struct {
    int rows, P, T;
    const int *tokens;        /* (rows, T) */
    const uint8_t *mask;      /* (rows, T) 1 at real (prompt and response) tokens */
    const int *targets;       /* (rows, T) */
    const int *resp_len;      /* (rows) response tokens, the EOS included when emitted */
    const int *has_eos;       /* (rows) */
    const float *logp;        /* (rows, T) the policy's log-probs at the rollout temperature, before the update */
    const float *ref_logp;    /* (rows, T) the reference's, at the same temperature */
    const float *kl;          /* (rows, T) the per-token KL the algorithm used (objective/kl sums these) */
    const float *kl_exact;    /* (rows, T) the exact full-vocabulary KL per token */
    const float *rewards;     /* (rows, T) PPO: the per-token rewards GAE saw; NULL for GRPO */
    const float *advantages;  /* (rows, T) */
    const double *scores;     /* (rows) raw scores */
    const double *shaped;     /* (rows) scores after shaping */
    const leash_gpt *policy, *ref; /* the models (the policy after this step's update); ref NULL: the reference is
                                    * the LoRA policy with its adapters off (leash_gpt_set_adapters) */
} leash_rl_batch;

/* One step's metrics (TRL's names in the JSONL where TRL has one). KLs are nats per sequence unless
 * marked per token. Every metric is also in the table p->metrics by its metrics.jsonl name. */
typedef struct {
    int step, steps;
    const char *kl_estimator;    /* kl_estimator: "k1", "k3", "exact", ... */
    const char *kl_target_units; /* kl_target_units: "nats/seq" or "nats/token" */
    double kl;             /* objective/kl: mean per-sequence KL by the estimator used (nats/seq) */
    double kl_per_token;   /* the same, per response token */
    double kl_exact;       /* objective/kl_exact: exact full-vocabulary KL of the same batch (nats/seq) */
    double entropy;        /* objective/entropy: per response token (nats) */
    double scores;         /* objective/scores: raw reward-model score */
    double non_score_reward; /* objective/non_score_reward: mean of -beta * KL summed per sequence */
    double rlhf_reward;    /* objective/rlhf_reward = shaped score + non-score reward */
    double beta;
    double clipfrac, approxkl, policy_loss, value_loss, ratio;
    double first_ratio_dev; /* max |ratio - 1| on the first minibatch: 0 when rollout and training agree */
    double logprob_gap;     /* max |log-prob at sampling - log-prob recomputed for training| */
    double gold_reward, grammatical; /* NAN without the world */
    double ref_nll;        /* fluency: reference model's NLL of the responses, per token */
    double distinct2, repetition, length, eos_rate;
    int hacking_alarm;     /* proxy up while gold reward or fluency falls */
    int kl_band_warning;   /* running KL outside the band (-0.1..10 nats per sequence): leash/klwatch.h */
    int kl_negative_warning; /* the running KL stays below -0.1 nats per sequence */
    long kl_clamped;       /* tokens of the batch whose k3 ran on its tangent line (log r > 20) */
    long kl_clamped_loss;  /* GRPO: the same inside the loss, over all updates */
    long ratio_clamped;    /* tokens whose |log ratio| exceeded 20 in the clipped surrogate (clamped) */
    long skipped;          /* batches and minibatch updates skipped for a non-finite value so far (skip_nonfinite) */
    char skip_reason[320]; /* why the last of them was skipped ("" while none was): the library prints nothing */
    double seconds;
    double phase_seconds[4]; /* rollout, policy + reference scoring (and values), rewards, updates */
    const char *sample;    /* one response of this step, when sampled */
    const leash_rl_batch *batch; /* the step's batch */
    const leash_metrics *metrics; /* the step's metrics by name, as metrics.jsonl writes them (NULL for a
                                   * skipped step) */
} leash_rl_progress;

/* Called after every step on every rank; a non-zero return stops the run after a checkpoint. */
typedef int (*leash_rl_fn)(const leash_rl_progress *p, void *ctx);


/* Trains; LEASH_OK also when stopped early (by fn or leash_request_stop()) with a checkpoint written: then
 * final->step < cfg->steps. */
int leash_rl_train(const leash_rl_config *cfg, leash_rl_fn fn, void *ctx, leash_rl_progress *final);

#endif
