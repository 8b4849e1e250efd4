/* The transformer: parameters, forward, backward, token log-probs and an optional scalar head, for two
 * architecture families chosen by the configuration (one code path, not a fork):
 *   GPT-2 (LEASH_ARCH_GPT2): LayerNorm, learned positions, GELU MLP, fused Conv1D qkv, tied LM head;
 *   Llama (LEASH_ARCH_LLAMA; also Qwen2, Mistral, SmolLM2): RMSNorm, rotary positions, SwiGLU MLP,
 *   separate q/k/v/o projections with grouped-query attention, optional biases, tied or untied head.
 *
 * Dimensions: B batch, T time, C channels (n_embd), V vocabulary, L layers, NH query heads, NKV key/value
 * heads, hs head size, I MLP width, N = B * T rows.
 * Parameters live in one allocation (and the gradients of the trainable ones, all or LoRA's adapters, in
 * another of the same layout), laid out tensor after tensor in the order of leash_gpt_tensor(); each tensor is one contiguous slice with its
 * Hugging Face name and layout (GPT-2: "wte.weight", "h.0.attn.c_attn.weight" in Conv1D (in, out) layout;
 * Llama: "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight" in Linear (out, in)
 * layout, ...), so a checkpoint is one write per tensor and copying a model is one memcpy.
 *
 * Padding. A batch is (B, T) tokens with a mask (B, T) of real tokens (NULL: all real). Positions count
 * real tokens only, and attention never looks at padding, so a sequence gets the same numbers left-padded,
 * right-padded or alone. Tokens at padded places must still be valid ids (any, e.g. EOS).
 *
 * Gradients. Losses add d loss / d logits into leash_gpt_dlogits() (and d loss / d value into
 * leash_gpt_dvalues()); leash_gpt_backward() turns them into parameter gradients (accumulated, for
 * gradient accumulation) and clears them.
 */
#ifndef LEASH_GPT_H
#define LEASH_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "leash/config.h"
#include "leash/lora.h"

/* leash_gpt_config, the architecture enums and leash_score_stats: leash/config.h; leash_lora_config and the
 * LoRA target bits: leash/lora.h */

typedef struct {
    char name[96];    /* Hugging Face name (PEFT's for LoRA adapters) */
    size_t offset;    /* into the parameter (and gradient) block, in floats */
    size_t numel;
    int ndim;
    int64_t shape[2];
    int decay;        /* 1: AdamW weight decay applies (matrices and embeddings, not biases or LayerNorm) */
    int bf16;         /* 1: stored in BF16 (leash_gpt_store_bf16); offset then indexes the BF16 block, not params */
} leash_tensor_info;

typedef struct leash_gpt leash_gpt;

/* A model with zeroed parameters and no LoRA adapters (leash_gpt_add_lora adds them); leash_gpt_init() or a
 * checkpoint fills them. */
int leash_gpt_create(leash_gpt **out, const leash_gpt_config *cfg);
void leash_gpt_free(leash_gpt *m);
/* GPT-2's initialisation: N(0, 0.02) weights, residual projections N(0, 0.02 / sqrt(2 L)), zero biases,
 * norm weights 1 (the same for the Llama family). Deterministic in seed. */
void leash_gpt_init(leash_gpt *m, uint64_t seed);

const leash_gpt_config *leash_gpt_cfg(const leash_gpt *m);
/* A copy of src (with its LoRA adapters, if any) with a scalar head (new, N(0, 0.02) weight and zero bias,
 * from seed) or, if src has one and keep_head, the same head: how a reward or value model starts from the
 * SFT checkpoint. */
int leash_gpt_copy_with_head(leash_gpt **out, const leash_gpt *src, int keep_head, uint64_t seed);
/* The scalar head's score statistics, read with the model's config.json (or adapter_config.json) and
 * written with it on save; both 0 when not measured. A copy with a new head starts at 0, one that keeps its
 * head or adds or merges adapters keeps them. */
leash_score_stats leash_gpt_score_stats(const leash_gpt *m);
void leash_gpt_set_score_stats(leash_gpt *m, leash_score_stats score);
size_t leash_gpt_num_params(const leash_gpt *m);
float *leash_gpt_params(leash_gpt *m); /* (num_params) */
/* The trainable parameters: every one, or with LoRA the adapters (and a scalar head), which come last in
 * the parameter block as a contiguous run starting at tensor first_trainable. Optimizers, gradient
 * sums and checkpoints of training state work on this run. */
int leash_gpt_first_trainable(const leash_gpt *m);
size_t leash_gpt_num_trainable(const leash_gpt *m);
float *leash_gpt_trainable(leash_gpt *m); /* (num_trainable), inside params */
float *leash_gpt_grads(leash_gpt *m);     /* (num_trainable) gradients of the trainable run; NULL when frozen */
int leash_gpt_num_tensors(const leash_gpt *m);
const leash_tensor_info *leash_gpt_tensor(const leash_gpt *m, int i);
void leash_gpt_zero_grad(leash_gpt *m);

/* Freezes the model for good, as a reference or any model that only scores: its gradients are freed and
 * its later forwards allocate no backward buffers (about half the activation and logit memory) and keep one
 * layer's activations, as checkpointing does (the same numbers);
 * leash_gpt_grads() and leash_gpt_dlogits() then return NULL and a backward fails with a clear error. */
void leash_gpt_freeze(leash_gpt *m);
int leash_gpt_is_frozen(const leash_gpt *m);
/* Stores the frozen weights of the transformer layers in BF16, halving their memory: every layer weight of
 * a frozen model, or a LoRA model's base layer weights (its adapters, embeddings, final norm and heads stay
 * F32). Values are rounded to the nearest BF16 once (exact for a checkpoint distributed in BF16) and
 * converted back to F32 a layer at a time for computing, or multiplied in BF16 (leash_gpt_set_bf16_compute).
 * Afterwards params holds only the F32 tensors (at
 * the offsets leash_gpt_tensor gives; num_params still counts all), and the model can score, generate and
 * (LoRA) train, but not be copied, merged or saved in full. */
int leash_gpt_store_bf16(leash_gpt *m);
/* BF16 compute for a model with BF16 storage: its forwards multiply the layers' projection weights in BF16 with
 * FP32 sums (leash_linear_forward_bf16) instead of converting them to F32 a layer at a time. leash_gpt_store_bf16
 * turns it on where the CPU has it (AVX512_BF16 or AMX); on = 0 turns it off. Returns whether it is on. */
int leash_gpt_set_bf16_compute(leash_gpt *m, int on);
/* A frozen model with BF16 storage keeps its LM head in BF16 too (V x C x 2 bytes more; the F32 head stays, the
 * embedding reads it) and, while BF16 compute is on, multiplies it there: its forward, prefill and decode step
 * alike. For a model that only scores, such as a full fine-tuning run's separate reference (--frozen-bf16):
 * its logits then differ from an F32 head's by BF16 rounding. Fails for a model that is not frozen (a LoRA
 * base, whose head the policy trains through and samples with) or has no BF16 storage. */
int leash_gpt_store_head_bf16(leash_gpt *m);
/* LoRA (leash/lora.h). A copy of base (which must have no adapters) with adapters of lora's rank on its
 * targets: A ~ U(-1/sqrt(in), 1/sqrt(in)) as PEFT initialises them and B = 0, so the copy computes exactly
 * what base does; base's weights are frozen in it (no gradients, no optimizer state). The copy holds lora;
 * its architecture (leash_gpt_cfg) is base's. */
int leash_gpt_add_lora(leash_gpt **out, const leash_gpt *base, const leash_lora_config *lora, uint64_t seed);
/* The same straight from a model directory, without a second copy of the weights in memory: rank, alpha,
 * dropout (checked as leash_lora_config_check does) and PEFT target names (NULL: q_proj,v_proj, or c_attn
 * for GPT-2). */
int leash_gpt_load_lora(leash_gpt **out, const char *dir, int rank, float alpha, float dropout, const char *targets,
                        uint64_t seed);
/* The model's LoRA settings, or NULL when it has no adapters. */
const leash_lora_config *leash_gpt_lora(const leash_gpt *m);
/* Turns a LoRA model's adapters off (0) or on (1): off, it is its base model, which is how PPO and GRPO get
 * the reference without a second copy of the weights. A backward uses the setting of its forward. */
void leash_gpt_set_adapters(leash_gpt *m, int on);
/* The directory the (base) weights were loaded from, or NULL for a model made in memory. */
const char *leash_gpt_source_dir(const leash_gpt *m);
/* A model without adapters whose weights are base + (alpha / r) B A: what the LoRA model computes. */
int leash_gpt_merge_lora(leash_gpt **out, const leash_gpt *m);
/* The same in place: base += (alpha / r) B A, then B = 0 (A is kept), so the model computes what it did (to
 * float rounding) and its base, the reference with adapters off, is now the policy: a hard reference refresh. */
int leash_gpt_merge_lora_into_base(leash_gpt *m);

/* Activation checkpointing, off (0) by default: forwards keep only each layer's input (the residual stream,
 * (L, B, T, C)) and one layer's activations; the backward recomputes each layer's forward, one at a time, into
 * that one layer's buffers before its backward. Gradients and everything else are bit-identical to the
 * default's (the recompute is the same arithmetic); the cost is about one more forward per backward, the saving
 * about (L - 1) / L of the per-layer activations. Takes effect at the next forward (which reallocates). */
void leash_gpt_set_checkpoint_activations(leash_gpt *m, int on);
int leash_gpt_checkpoint_activations(const leash_gpt *m);

/* Bytes the model holds now: parameters, gradients, activations and logits of the current batch shape. */
size_t leash_gpt_memory_bytes(const leash_gpt *m);

/* Forward pass over tokens (B, T) with mask (B, T) or NULL. Activations are allocated for a (B, T) shape
 * on its first use and reused while the shape stays. Fails on a token outside [0, V) or T > n_positions. */
int leash_gpt_forward(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T);
const float *leash_gpt_logits(const leash_gpt *m); /* (B, T, V) of the last forward */
const float *leash_gpt_values(const leash_gpt *m); /* (B, T) scalar head of the last forward, or NULL */
/* The forward of a model with a scalar head up to its values only (leash_gpt_values), without the LM head's
 * (B, T, V) logits: how a reward model scores. The same values, bit for bit, as leash_gpt_forward's; no
 * backward or logits follow it. */
int leash_gpt_forward_values(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T);
float *leash_gpt_dlogits(leash_gpt *m);            /* (B, T, V) gradient accumulator, zero after backward (NULL frozen) */
float *leash_gpt_dvalues(leash_gpt *m);            /* (B, T) gradient accumulator, or NULL */

/* Backward pass of the last forward: parameter gradients += from dlogits and dvalues. */
int leash_gpt_backward(leash_gpt *m);

/* log pi(targets[b,t] | tokens[b, <=t]) at temperature T, from the last forward: logp (B, T), and the
 * entropy of each position's distribution if entropy != NULL. Positions with target < 0 get 0. */
int leash_gpt_token_logprobs(leash_gpt *m, const int *targets, float temperature, float *logp, float *entropy);
/* dlogits += d (sum_bt dlogp[b,t] * logp[b,t]) / d logits, for the same targets and temperature. */
int leash_gpt_token_logprobs_backward(leash_gpt *m, const int *targets, float temperature, const float *dlogp);
/* Mean next-token cross-entropy over positions with targets >= 0 (nats per token), and its gradient
 * added to dlogits. count receives the number of such positions (may be NULL). */
int leash_gpt_cross_entropy(leash_gpt *m, const int *targets, double *loss, long *count);

/* ---- KV-cache decoding (src/gpt_decode.c) ----------------------------------------------------- */

/* The keys and values of B sequences at every layer, up to Tc columns, and the decode step's activations:
 * one allocation per cache, none per token. */
typedef struct leash_kv_cache leash_kv_cache;
int leash_kv_cache_create(leash_kv_cache **out, const leash_gpt *m, int B, int Tc);
void leash_kv_cache_free(leash_kv_cache *kv);
/* Fills columns [0, Tp) from tokens (B, Tp) with mask (B, Tp) or NULL (left-padded prompts: the last column
 * must be real) through the forward's layers; the logits are then those of each sequence's last column, the only
 * column the LM head multiplies (leash_gpt_logits is not set). */
int leash_gpt_prefill(leash_gpt *m, leash_kv_cache *kv, const int *tokens, const uint8_t *mask, int Tp);
/* Feeds one token per sequence, tokens (B; n after leash_kv_cache_keep), at the next column (at the next position of its own sequence)
 * through the same layers as the forward, attending over the cache; the logits are then this step's. */
int leash_gpt_decode_step(leash_gpt *m, leash_kv_cache *kv, const int *tokens);
const float *leash_kv_cache_logits(const leash_kv_cache *kv); /* (n, V) of the last prefill or decode step */
/* The next decode steps feed only rows[0..n) (increasing indices into the current rows) of the sequences: the
 * others (stopped ones) leave the batch, nothing in the cache moves. A prefill feeds all B again; after a keep,
 * decode steps take tokens (n) and give logits (n, V), row j being the kept sequence rows[j]. */
int leash_kv_cache_keep(leash_kv_cache *kv, const int *rows, int n);

/* ---- checkpoints (src/gpt_io.c) -------------------------------------------------------------- */

/* Loads a Hugging Face-style model directory: config.json (model_type gpt2, llama, qwen2 or mistral) and
 * model.safetensors, or the shards a model.safetensors.index.json names (F32, F16 or BF16, read into
 * float32; GPT-2 names with or without the "transformer." prefix; a tied model's "lm_head.weight" and the
 * attention or rotary buffers old checkpoints carry are ignored). Every missing, unexpected or misshapen
 * tensor is an error that names it and its file. A PEFT LoRA directory (adapter_config.json +
 * adapter_model.safetensors) loads as the base model named by base_model_name_or_path (relative to dir, or
 * absolute) with these adapters. */
int leash_gpt_load(leash_gpt **out, const char *dir);
/* Writes config.json and model.safetensors (F32, Hugging Face names and layout) into dir (created if
 * missing), each atomically. A LoRA model writes only its adapters, as PEFT does: adapter_config.json
 * (pointing at its base's directory) and adapter_model.safetensors. */
int leash_gpt_save(const leash_gpt *m, const char *dir);

#endif
