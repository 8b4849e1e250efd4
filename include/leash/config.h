/* A model's configuration, leash_gpt_config (the architecture, its sizes and switches; what config.json
 * holds), its checks and derived sizes, a scalar head's score statistics (leash_score_stats, which
 * config.json carries beside it), and config.json in the Hugging Face layouts of GPT-2 and the Llama
 * family, read and written. The model (leash/gpt.h) is built from it; the files that describe a model fill
 * it without reaching into the model. */
#ifndef LEASH_CONFIG_H
#define LEASH_CONFIG_H

enum { LEASH_ARCH_GPT2 = 0, LEASH_ARCH_LLAMA = 1 };
/* Rotary scaling variants (config.json "rope_scaling"): none, "linear" (positions / factor) and "llama3"
 * (Llama 3.1's frequency-band rescaling). Others are refused at load with their name. */
enum { LEASH_ROPE_DEFAULT = 0, LEASH_ROPE_LINEAR = 1, LEASH_ROPE_LLAMA3 = 2 };

#define LEASH_MAX_EOS 8 /* end-of-text ids a model may list */

/* Every field's zero is GPT-2's choice, so a GPT-2 configuration names only the sizes. Architecture only:
 * LoRA's settings are leash/lora.h's leash_lora_config, a reward head's statistics leash_score_stats below. */
typedef struct {
    int vocab_size;           /* V */
    int n_positions;          /* the longest sequence, T <= n_positions */
    int n_embd;               /* C */
    int n_layer;              /* L */
    int n_head;               /* NH */
    int arch;                 /* LEASH_ARCH_GPT2 or LEASH_ARCH_LLAMA */
    char model_type[16];      /* config.json's model_type, kept for saving ("" = "gpt2" or "llama") */
    int n_kv_head;            /* NKV, grouped-query attention (NH % NKV == 0); 0: NKV = NH */
    int head_dim;             /* hs; 0: C / NH (then C % NH == 0) */
    int n_inner;              /* I, the MLP width; 0: 4 C */
    int qkv_bias;             /* Llama family: q, k, v projections have biases (Qwen2; GPT-2 always has all biases) */
    int o_bias;               /* Llama family: o_proj has a bias */
    int mlp_bias;             /* Llama family: gate, up, down projections have biases */
    int untied_head;          /* 1: a separate lm_head.weight (V, C); 0: the LM head is the token embedding */
    float rope_theta;         /* RoPE base; 0: 10000 */
    int rope_scaling;         /* LEASH_ROPE_* */
    float rope_factor;        /* linear and llama3 scaling */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_original_max_positions;                  /* llama3 */
    int bos_token_id;         /* -1 when none */
    int eos_token_id;         /* -1 when none; config.json's first id when it gives a list */
    int n_eos_more;           /* the list's further end ids (Llama 3.1's <|eom_id|>, <|eot_id|>): eos_more[0..n) */
    int eos_more[LEASH_MAX_EOS - 1];
    float layer_norm_epsilon; /* GPT-2's LayerNorm or Llama's RMSNorm epsilon: 1e-5, 1e-6, ... */
    int scalar_head;          /* 1: a scalar head (value or reward) on the final hidden state */
} leash_gpt_config;

/* A scalar head's score statistics: the mean and standard deviation of its scores on reference texts (a
 * reward model's training pairs), for reward normalisation; both 0 when not measured. They are not the
 * architecture: the model holds them beside its head (leash_gpt_score_stats, leash/gpt.h), and config.json
 * (or a PEFT adapter_config.json with a head) carries them under "leash", next to scalar_head. */
typedef struct {
    float mean, std;
} leash_score_stats;

/* 1 when id ends a text for this model: eos_token_id or one of eos_more. */
int leash_gpt_is_eos(const leash_gpt_config *cfg, int id);
/* Checks ranges and consistency (C % NH, NH % NKV, ids < V, ...); a message names the field. */
int leash_gpt_config_check(const leash_gpt_config *cfg);
/* The derived sizes: head size hs, key/value heads NKV, MLP width I. */
int leash_gpt_head_size(const leash_gpt_config *cfg);
int leash_gpt_kv_heads(const leash_gpt_config *cfg);
int leash_gpt_mlp_width(const leash_gpt_config *cfg);

/* ---- config.json (src/config.c) ---------------------------------------------------------------- */

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
 * value leash does not compute (rope_interleaved true, scale_attn_by_inverse_layer_idx true, ...).
 * score (may be NULL) receives the score statistics under "leash" (both 0 when the file has none). */
int leash_config_load(const char *path, leash_gpt_config *cfg, leash_score_stats *score);
/* A model directory's config.json, with the end ids of its generation_config.json (where transformers'
 * generate() reads them; Llama 3 instruct models list <|eot_id|> only there) added to eos_more. */
int leash_config_load_dir(const char *dir, leash_gpt_config *cfg, leash_score_stats *score);
/* Writes it atomically, with leash's own keys under "leash": scalar_head, and with a scalar head the score
 * statistics (score NULL: both 0). */
int leash_config_save(const char *path, const leash_gpt_config *cfg, const leash_score_stats *score);

/* A JSON number as a float, +-infinity beyond float's range (a plain conversion would be undefined). */
float leash_config_float(double x);
struct cJSON;
/* For other files that carry leash's keys (adapter_config.json): adds "leash": {scalar_head, and with a
 * scalar head the score statistics (score NULL: both 0)} to the cJSON object o, reads them from such an
 * object lh into cfg and score (may be NULL; an error names path), and writes o (then deleted) atomically
 * with a final newline. */
void leash_config_add_own_keys(struct cJSON *o, const leash_gpt_config *cfg, const leash_score_stats *score);
int leash_config_read_own_keys(const char *path, const struct cJSON *lh, leash_gpt_config *cfg, leash_score_stats *score);
int leash_json_save(const char *path, struct cJSON *o);

#endif
