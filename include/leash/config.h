/* config.json in the Hugging Face layouts of GPT-2 and the Llama family: read and written for
 * leash_gpt_config. */
#ifndef LEASH_CONFIG_H
#define LEASH_CONFIG_H

#include "leash/gpt.h"

/* Reads a Hugging Face config.json.
 * "gpt2": n_embd, n_layer, n_head, n_positions, vocab_size, layer_norm_epsilon, bos/eos_token_id; keys
 * GPT-2 does not use must have GPT-2's values (activation_function gelu_new, n_inner null or 4 * n_embd,
 * tied embeddings).
 * "llama", "qwen2", "mistral": hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, head_dim, max_position_embeddings, rms_norm_eps, rope_theta, rope_scaling
 * (default, linear, llama3; any other type is an error naming it), or both inside transformers 5's
 * "rope_parameters" (a file giving both forms must give the same values), attention_bias, mlp_bias (Qwen2:
 * q, k, v biases), tie_word_embeddings, hidden_act silu, bos_token_id, eos_token_id (one id, or a list whose
 * every id ends a text), layer_types. A sliding window shorter than max_position_embeddings becomes the
 * model's n_positions (identical results within it).
 * No key is skipped silently: a key that is neither read nor on a short list of keys known to change nothing
 * leash computes (bookkeeping, generation defaults, dropout) is an error naming it, and so is a key with a
 * value leash does not compute (rope_interleaved true, scale_attn_by_inverse_layer_idx true, ...). */
int leash_config_load(const char *path, leash_gpt_config *cfg);
/* A model directory's config.json, with the end ids of its generation_config.json (where transformers'
 * generate() reads them; Llama 3 instruct models list <|eot_id|> only there) added to eos_more. */
int leash_config_load_dir(const char *dir, leash_gpt_config *cfg);
/* Writes it atomically, with leash's own keys under "leash". */
int leash_config_save(const char *path, const leash_gpt_config *cfg);

/* For other files that carry leash's keys (adapter_config.json): adds "leash": {scalar_head, score
 * statistics} to the cJSON object o, reads them from such an object lh into cfg (an error names path),
 * and writes o (then deleted) atomically with a final newline. */
struct cJSON;
/* A JSON number as a float, +-infinity beyond float's range (a plain conversion would be undefined). */
float leash_config_float(double x);
void leash_config_add_own_keys(struct cJSON *o, const leash_gpt_config *cfg);
int leash_config_read_own_keys(const char *path, const struct cJSON *lh, leash_gpt_config *cfg);
int leash_json_save(const char *path, struct cJSON *o);

#endif
