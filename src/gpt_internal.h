/* The inside of a leash_gpt, shared by gpt.c (forward, backward) and sample.c (KV-cache decoding).
 * Not a public header. Dimensions: B batch, T time, C channels, V vocabulary, L layers, NH heads,
 * N = B * T rows. */
#ifndef LEASH_GPT_INTERNAL_H
#define LEASH_GPT_INTERNAL_H

#include "leash/gpt.h"

/* Pointers to one layer's tensors, into the parameter block or the gradient block. */
typedef struct {
    float *ln1w, *ln1b;         // (C), (C)
    float *qkvw, *qkvb;         // (C, 3C), (3C)
    float *attprojw, *attprojb; // (C, C), (C)
    float *ln2w, *ln2b;         // (C), (C)
    float *fcw, *fcb;           // (C, 4C), (4C)
    float *fcprojw, *fcprojb;   // (4C, C), (C)
} layer_ptrs;

typedef struct {
    float *wte;         // (V, C), also the LM head
    float *wpe;         // (n_positions, C)
    layer_ptrs *layer;  // (L)
    float *lnfw, *lnfb; // (C), (C)
    float *headw;       // (C) scalar head, or NULL
    float *headb;       // (1), or NULL
} param_ptrs;

#define LAYER_TENSORS 12
_Static_assert(sizeof(layer_ptrs) == LAYER_TENSORS * sizeof(float *), "layer_ptrs must be 12 pointers");

/* Activations of one forward pass at shape (B, T), one allocation. */
typedef struct {
    int *pos;                       // (B, T) position ids
    float *encoded;                 // (N, C)
    float *ln1, *ln1_mean, *ln1_rstd; // (L, N, C), (L, N), (L, N)
    float *qkv;                     // (L, N, 3C)
    float *atty;                    // (L, N, C)
    float *att;                     // (L, B, NH, T, T)
    float *resid2;                  // (L, N, C) after attention
    float *ln2, *ln2_mean, *ln2_rstd; // (L, N, C), (L, N), (L, N)
    float *fch, *fch_gelu;          // (L, N, 4C)
    float *resid3;                  // (L, N, C) after the MLP: the layer's output
    float *lnf, *lnf_mean, *lnf_rstd; // (N, C), (N), (N)
    float *logits;                  // (N, V), in head_memory: only leash_gpt_forward makes it
    float *values;                  // (N) or NULL
    // backward
    float *dlogits;                 // (N, V), in head_memory
    float *tokbuf;                  // (N) per-token scratch for losses
    float *dvalues;                 // (N) or NULL
    float *dresid, *dln, *datty;    // (N, C)
    float *dqkv;                    // (N, 3C)
    float *dfch, *dfch_gelu;        // (N, 4C)
    float *scratch;                 // (B, NH, T)
} acts;

struct leash_gpt {
    leash_gpt_config cfg;
    int n_tensors;
    leash_tensor_info *tensors; // (n_tensors)
    size_t num_params;
    float *params, *grads;      // (num_params) each
    param_ptrs p, g;
    int B, T;                   // the shape activations are allocated for (0, 0: none)
    void *act_memory;
    acts a;
    float *head_memory;         // logits and dlogits for shape (head_B, head_T), allocated on first use
    int head_B, head_T;
    int has_logits;             // the last pass was leash_gpt_forward (not leash_gpt_score)
    float *chunk;               // (SCORE_ROWS, V) logits of a few rows, for leash_gpt_score
    int *tokens;                // (B, T) copy of the last forward's tokens
    int frozen;                 // leash_gpt_freeze(): no gradients, no backward buffers
    size_t act_bytes;           // bytes of act_memory
};

#endif
