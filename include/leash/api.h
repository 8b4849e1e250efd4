/* Flat entry points for bindings (the Python package in python/, through ctypes): the same library calls
 * with plain ints, floats and pointers in place of structs whose layout a binding would have to mirror
 * (leash_gpt_config, leash_sample_config), and row loops over one-row functions, so a binding makes one
 * call per array instead of one per row. Nothing here holds state (but the SIGINT handler that
 * leash_api_sigint_stop saved); every function returns a status and
 * leaves leash_errmsg() as the library does.
 *
 * Dimensions: N rows, V vocabulary size, B sequences, M = max_new_tokens.
 */
#ifndef LEASH_API_H
#define LEASH_API_H

#include <stdint.h>

#include "leash/gpt.h"
#include "leash/metrics.h"
#include "leash/rl.h"
#include "leash/tokenizer.h"

/* The configuration keys leash_api_config_value() answers, comma-separated: "vocab_size,n_positions,...". */
const char *leash_api_config_keys(void);
/* One number of m's configuration by key (derived sizes resolved: n_kv_head, head_dim and n_inner are the
 * values the model computes with, not config.json's zeros); LEASH_EINVAL for an unknown key. */
int leash_api_config_value(const leash_gpt *m, const char *key, double *value);
/* config.json's model_type ("gpt2", "llama", "qwen2", "mistral", ...). */
const char *leash_api_model_type(const leash_gpt *m);

/* The ids that end a text of model m with tokenizer tok (leash_sample_set_eos's choice: the model's
 * eos_token_id, else <|endoftext|>, and the rest of its eos list) into ids (at most max); returns their
 * count, 0 when the model has none. */
int leash_api_eos_ids(const leash_gpt *m, const leash_tokenizer *tok, int *ids, int max);

/* leash_generate with the sampling options as numbers, stopping at leash_api_eos_ids(m, tok):
 * prompts packed one after another (prompt_lens (B)), streams (B) or NULL (0 .. B-1); out_tokens (B, M),
 * out_logprobs (B, M), out_lens (B) as leash_generate writes them. */
int leash_api_generate(leash_gpt *m, const leash_tokenizer *tok, float temperature, int top_k, float top_p,
                       int max_new_tokens, uint64_t seed, const int *prompts, const int *prompt_lens, int B,
                       const uint64_t *streams, int *out_tokens, float *out_logprobs, int *out_lens);

/* One sequence ids (n >= 2) scored as `leash score` scores it: a forward over the whole text (B = 1), and
 * logp (n - 1): logp[t] = log p(ids[t + 1] | ids[<= t]) at the temperature. */
int leash_api_score(leash_gpt *m, const int *ids, int n, float temperature, float *logp);

/* leash_log_softmax and leash_entropy on N rows (N, V): out (N, V), lse (N) or NULL; entropy (N). */
int leash_api_log_softmax_rows(const float *logits, int N, int V, float temperature, float *out, double *lse);
int leash_api_entropy_rows(const float *logits, int N, int V, float temperature, double *entropy);

/* The trainers (leash_rl_train) with their options as the CLI's names and texts, so that a binding need not
 * mirror leash_rl_config: keys[i] = "lr", values[i] = "1e-5" is `leash grpo --lr 1e-5`; a flag ("gold-reward",
 * "overwrite") is on for "1" or "true" and left off for "0" or "false". Every option of `leash ppo --help` and
 * `leash grpo --help` is accepted (leash_api_rl_option_known; python/tests checks the two lists agree), with
 * the CLI's ranges, its refusal of the other algorithm's options, its run-directory lock (--resume,
 * --overwrite) and --tensorboard DIR. reward_fn non-NULL is the reward (LEASH_REWARD_BATCH, with reward_ctx),
 * instead of --reward, --reward-cmd or --gold-reward. step_fn (or NULL) is called after every step with the step's metrics table
 * (NULL for a skipped step: read it with leash_api_metric); its non-zero return stops the run after a
 * checkpoint, as leash_request_stop() does. *final_step is the last step done (< the steps asked when
 * stopped early). Unknown keys and bad values fail with LEASH_EINVAL naming the option. */
typedef int (*leash_api_step_fn)(const leash_metrics *metrics, int step, int steps, void *ctx);
int leash_api_rl_train(const char *algo, const char *const *keys, const char *const *values, int n_options,
                       leash_reward_batch_fn reward_fn, void *reward_ctx, leash_api_step_fn step_fn, void *step_ctx,
                       int *final_step);
/* 1 when algo ("ppo" or "grpo") takes the option key (a CLI name without the dashes), else 0. */
int leash_api_rl_option_known(const char *algo, const char *key);
/* Why the last leash_api_rl_train stopped itself early ("stop-at-peak": the fit and the KLs), "" when it did
 * not (it ran its steps, failed, or the step function or a signal stopped it). */
const char *leash_api_rl_stop_reason(void);

/* The other trainers as leash_api_rl_train runs PPO and GRPO (src/api_trainers.c): trainer "dpo" (leash dpo),
 * "rm_train" (leash rm train) or "pretrain" (leash pretrain), with the CLI's options by name and ranges
 * ("data" repeats for pretrain: one file each), its run-directory lock and tensorboard. step_fn (or NULL) gets
 * every step's metrics table (rm_train: step, epoch, loss, skipped; after each epoch's validation
 * val/accuracy, val/gold_accuracy, val/n instead of loss); its non-zero return stops the run after a
 * checkpoint. *final_step and *steps (may be NULL) receive the last step reported and the run's total. */
int leash_api_train(const char *trainer, const char *const *keys, const char *const *values, int n_options,
                    leash_api_step_fn step_fn, void *step_ctx, int *final_step, int *steps);
/* 1 when trainer takes the option key (a CLI name without the dashes), else 0. */
int leash_api_train_option_known(const char *trainer, const char *key);

/* Entry i of a metrics table: its name, kind (leash_metric_kind), value (REAL, INT), text (TEXT, else NULL)
 * and metrics.jsonl's printf format (REAL, else NULL). Returns the table's size (0 for NULL), reading nothing
 * when i is out of range. */
int leash_api_metric(const leash_metrics *t, int i, const char **name, int *kind, double *value, const char **text,
                     const char **format);

/* SIGINT asks a run to stop (leash_request_stop) while on is 1; 0 puts back the handler that was there. A
 * binding calls it around leash_api_rl_train so that Ctrl-C ends the run with its checkpoint. */
int leash_api_sigint_stop(int on);

/* Frees memory the library allocated for the caller (encode's ids, decode's bytes). */
void leash_api_free(void *p);

#endif
