/* config.json in the Hugging Face GPT-2 layout: read and written for leash_gpt_config. */
#ifndef LEASH_CONFIG_H
#define LEASH_CONFIG_H

#include "leash/gpt.h"

/* Reads a Hugging Face GPT-2 config.json ("model_type": "gpt2", n_embd, n_layer, n_head, n_positions,
 * vocab_size, layer_norm_epsilon, bos/eos_token_id). Keys GPT-2 does not use must have GPT-2's values
 * (activation_function gelu_new, n_inner null or 4 * n_embd, tied embeddings); anything else is an
 * error naming the key. */
int leash_config_load(const char *path, leash_gpt_config *cfg);
/* Writes it atomically, with leash's own keys under "leash". */
int leash_config_save(const char *path, const leash_gpt_config *cfg);

#endif
