/* The inside of a leash_gpt, shared by gpt_params.c (the tensor table, BF16 storage), gpt.c (forward,
 * backward) and gpt_decode.c (the KV cache and its decode step).
 * Not a public header. Dimensions: B batch, T time, C channels, V vocabulary, L layers, NH heads,
 * N = B * T rows. */
#ifndef LEASH_GPT_INTERNAL_H
#define LEASH_GPT_INTERNAL_H

#include "leash/gpt.h"

/* One projection: weight and bias (NULL when it has none), and its LoRA adapter (A (r, in), B (out, r);
 * NULL when it has none). */
typedef struct {
    float *w, *b;
    float *A, *B;
    const uint16_t *wh; // the weight in BF16 where the forward multiplies in BF16 (leash_gpt_layer), else NULL
} proj;

/* The adapter slots, in the order of LEASH_LORA_* bits; a layer's per-slot LoRA activations (N, r) sit
 * in this order. */
enum { SLOT_Q, SLOT_K, SLOT_V, SLOT_O, SLOT_GATE, SLOT_UP, SLOT_DOWN };

/* Pointers to one layer's tensors, into the parameter block or the gradient block; NULL where the
 * architecture has no such tensor. GPT-2 keeps its fused c_attn in q (k and v empty), c_fc in gate
 * (up empty) and the MLP's c_proj in down. */
typedef struct {
    float *ln1w, *ln1b;   // (C); the bias only for LayerNorm
    proj q, k, v, o;      // GPT-2: q = c_attn (C, 3C), o = c_proj (C, C); Llama: (NH hs, C), (NKV hs, C) x 2, (C, NH hs)
    float *ln2w, *ln2b;   // (C)
    proj gate, up, down;  // GPT-2: gate = c_fc (C, 4C), down = c_proj (4C, C); Llama: (I, C), (I, C), (C, I)
} layer_ptrs;

typedef struct {
    float *wte;         // (V, C), also the LM head when it is tied
    float *wpe;         // (n_positions, C) learned positions, or NULL (rotary)
    layer_ptrs *layer;  // (L)
    float *lnfw, *lnfb; // (C), (C) or NULL
    float *lm_head;     // (V, C) untied LM head, or NULL
    float *headw;       // (C) scalar head, or NULL
    float *headb;       // (1), or NULL
} param_ptrs;

/* The derived shape of a model, computed once from its config. */
typedef struct {
    int C, L, NH, NKV, hs, I, V;
    int W;        // qkv row width: (NH + 2 NKV) hs
    int AW;       // attention output width: NH hs
    int FW;       // MLP input-projection width: GPT-2 I (= 4C), Llama 2I (gate, then up)
    int out_in;   // 1: projection weights in Linear (out, in) layout (Llama), 0: Conv1D (in, out) (GPT-2)
    int rms;      // 1: RMSNorm, 0: LayerNorm
    int rope;     // 1: rotary positions, 0: learned
    int swiglu;   // 1: SwiGLU MLP, 0: GELU
} dims;

/* Activations of one forward pass at shape (B, T), one allocation. With activation checkpointing (ckpt), and
 * for a frozen model (which has no backward), only resid3 keeps all L layers (each layer's output, the next
 * one's input): the other per-layer buffers hold one layer (L reads 1), which a backward fills again by
 * recomputing that layer's forward. */
typedef struct {
    int *pos;                       // (B, T) position ids
    uint8_t *mask;                  // (B, T) the forward's mask, kept for the recompute (ckpt, not frozen; else NULL)
    float *encoded;                 // (N, C)
    float *ln1, *ln1_mean, *ln1_rstd; // (L, N, C), (L, N), (L, N)
    float *qkv;                     // (L, N, W), q and k after the rotation
    float *atty;                    // (L, N, AW)
    float *att;                     // (L, B, NH, T, T)
    float *resid2;                  // (L, N, C) after attention
    float *ln2, *ln2_mean, *ln2_rstd; // (L, N, C), (L, N), (L, N)
    float *fch, *fch_gelu;          // (L, N, FW), (L, N, I): MLP input projection and its activation
    float *resid3;                  // (L, N, C) after the MLP: the layer's output
    float *lnf, *lnf_mean, *lnf_rstd; // (N, C), (N), (N)
    float *logits;                  // (N, V), in head_memory: only leash_gpt_forward makes it
    float *values;                  // (N) or NULL
    // backward
    float *dlogits;                 // (N, V), in head_memory
    float *tokbuf;                  // (N) per-token scratch for losses
    float *dvalues;                 // (N) or NULL
    float *dresid, *dln;            // (N, C)
    float *datty;                   // (N, AW)
    float *dqkv;                    // (N, W)
    float *dfch, *dfch_gelu;        // (N, FW), (N, I)
    float *scratch;                 // (B, NH, T)
    float *lora_u;                  // (L, SLOTS, N, r) each adapter's x A^T, or NULL
    float *lora_du;                 // (N, r) backward scratch, or NULL
} acts;

/* out (N, C) = the model's norm (LayerNorm or RMSNorm) of x (N, C) with weight w and bias b; mean (N) is
 * written for LayerNorm only (NULL with RMSNorm), rstd (N) for both. */
void leash_gpt_norm(const leash_gpt *m, float *out, float *mean, float *rstd, const float *x, const float *w,
                    const float *b, int N);

/* One layer's activations at N rows: slices of acts for the full forward, the decode step's own (B) rows in
 * a KV cache. */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd; // (N, C), (N) or NULL (RMSNorm), (N)
    float *qkv;                       // (N, W) q and k after the rotation
    float *atty;                      // (N, AW) the attention's output, written between the two halves
    float *att;                       // (B, NH, T, T) the full forward's attention weights; NULL when decoding
    float *r2;                        // (N, C) after attention
    float *ln2, *ln2_mean, *ln2_rstd; // (N, C), (N) or NULL, (N)
    float *fch, *fchg;                // (N, FW), (N, I): the MLP's input projection and its activation
    float *r3;                        // (N, C) the layer's output; may be x's buffer (x is read before r3 is written)
    float *u;                         // (SLOTS, N, r) the LoRA activations x A^T, or NULL without adapters
} layer_acts;
/* A layer is x -> layer_in -> attention (the caller's: over the sequence, or over a KV cache) -> layer_out.
 * layer_in: ln1 = norm1(x) and qkv from it (rotated at positions pos (N) when the model is rotary).
 * layer_out: r2 = x + o(atty), ln2 = norm2(r2), r3 = r2 + MLP(ln2). */
void leash_gpt_layer_in(const leash_gpt *m, const layer_ptrs *w, const float *x, const layer_acts *s, const int *pos,
                        int N);
void leash_gpt_layer_out(const leash_gpt *m, const layer_ptrs *w, const float *x, const layer_acts *s, int N);
/* Called by the forward after layer l's leash_gpt_layer_in, with its activations s (qkv (N, W) rotated):
 * how a prefill fills a KV cache without reading the per-layer buffers, which checkpointing does not keep. */
typedef void (*leash_gpt_layer_fn)(void *ctx, const leash_gpt *m, int l, const layer_acts *s);
/* leash_gpt_forward, calling fn(ctx, ...) at each layer (fn may be NULL). */
int leash_gpt_forward_each(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T, leash_gpt_layer_fn fn,
                           void *ctx);
/* leash_gpt_forward_each without the LM head: up to the final norm, a.lnf (B T, C), and no logits (the KV
 * cache's prefill multiplies only each sequence's last column by the head). */
int leash_gpt_forward_hidden(leash_gpt *m, const int *tokens, const uint8_t *mask, int B, int T, leash_gpt_layer_fn fn,
                             void *ctx);
/* leash_gpt_create with LoRA adapters of lora's settings (NULL: none, leash_gpt_create itself) after the base
 * tensors; the adapters are zero until leash_gpt_init_tensor or a load fills them. */
int leash_gpt_create_lora(leash_gpt **out, const leash_gpt_config *cfg, const leash_lora_config *lora);
/* Every LoRA target of an architecture (LEASH_LORA_* bits): all seven for the Llama family, GPT-2's four. */
unsigned leash_lora_all_targets(int arch);
/* Initialises tensor i as leash_gpt_init does (its own random stream of seed): loaders use it for the
 * adapters alone. */
void leash_gpt_init_tensor(leash_gpt *m, int i, uint64_t seed);
/* Layer l's weights: m->p.layer[l], or with BF16 storage a copy in tmp whose frozen weights point at the
 * layer converted back to F32 (valid until the next call); with BF16 compute on (m->bf16_compute) the
 * projections' weights are not converted: their wh points into the BF16 block and w is NULL. For forwards;
 * leash_gpt_layer_f32 converts every weight (the backward through a frozen BF16 base). */
const layer_ptrs *leash_gpt_layer(leash_gpt *m, int l, layer_ptrs *tmp);
const layer_ptrs *leash_gpt_layer_f32(leash_gpt *m, int l, layer_ptrs *tmp);
/* The LM head's weight (V, C): the token embedding or the untied head. */
const float *leash_gpt_head_weight(const leash_gpt *m);
/* logits (N, V) = x (N, C) through the LM head: in BF16 with FP32 sums where a frozen model keeps its head in
 * BF16 (leash_gpt_store_head_bf16) and BF16 compute is on, else in F32. The forward, the prefill and the decode
 * step all multiply here, so a model samples with the arithmetic it scores with. */
void leash_gpt_head_forward(const leash_gpt *m, float *logits, const float *x, int N);

struct leash_gpt {
    leash_gpt_config cfg;
    leash_lora_config lora;     // the adapters' settings; rank 0: none (leash_gpt_lora() is then NULL)
    leash_score_stats score;    // the scalar head's score statistics (leash_gpt_score_stats)
    dims d;
    float *inv_freq;            // (hs / 2) rotary frequencies, or NULL
    int n_tensors;
    leash_tensor_info *tensors; // (n_tensors)
    int *tensor_layer;          // (n_tensors) the layer a tensor belongs to, -1 for global ones
    size_t *tensor_slot;        // (n_tensors) offset of its pointer in layer_ptrs or param_ptrs
    size_t num_params;
    float *params, *grads;      // (num_params) each
    param_ptrs p, g;
    int B, T;                   // the shape activations are allocated for (0, 0: none)
    void *act_memory;
    acts a;
    float *head_memory;         // logits and dlogits for shape (head_B, head_T), allocated on first use
    int head_B, head_T;
    int has_logits;             // the last pass was leash_gpt_forward (it made logits)
    int *tokens;                // (B, T) copy of the last forward's tokens
    int frozen;                 // leash_gpt_freeze(): no gradients, no backward buffers
    int first_trainable;        // the first tensor with a gradient: 0, or with LoRA the first adapter
    size_t trainable_offset;    // its offset in params; grads hold num_params - trainable_offset floats
    int adapters_on;            // LoRA: forwards add the adapters (leash_gpt_set_adapters)
    int fwd_adapters;           // adapters_on at the last forward, which its backward follows
    char *source_dir;           // the directory the base weights were loaded from (LoRA saves point at it)
    uint16_t *bf16;             // leash_gpt_store_bf16: the frozen layer weights, (bf16_n), or NULL
    size_t bf16_n;
    size_t *layer_bf16;         // (L + 1) where each layer's run starts in bf16
    float *wscratch;            // (largest layer run) one layer's weights back in F32
    uint16_t *head_bf16;        // (V, C) a frozen model's LM head in BF16 (leash_gpt_store_head_bf16), or NULL
    int bf16_compute;           // forwards multiply the BF16 projection weights in BF16 (leash_gpt_set_bf16_compute)
    size_t act_bytes;           // bytes of act_memory
    int ckpt;                   // activation checkpointing (leash_gpt_set_checkpoint_activations)
    int act_ckpt;               // the layout act_memory has: 1 one layer's buffers (ckpt or frozen), 0 all L layers'
    int fwd_masked;             // the last forward had a mask (kept in a.mask when act_ckpt)
    int ckpt_live;              // act_ckpt: the layer whose activations the one layer's buffers hold, or -1
};

#endif
