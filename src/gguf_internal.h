/* What the GGUF reader (gguf_model.c) and writer (gguf_write.c) share: llama.cpp's names for leash's tensors
 * and the converter's layout changes (src/gguf_names.c). Not part of the public API. */
#ifndef LEASH_GGUF_INTERNAL_H
#define LEASH_GGUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "leash/gpt.h"

/* How convert_hf_to_gguf.py stores a tensor: as it is, with q/k rows permuted within each head for ggml's
 * interleaved rotary (Llama, Mistral; not Qwen2's NEOX rotary), or transposed (GPT-2's Conv1D (in, out)). */
enum { LEASH_GGUF_AS_IS, LEASH_GGUF_PERMUTED, LEASH_GGUF_TRANSPOSED };

/* The GGUF name ("blk.3.attn_q.weight") of leash's tensor `name` in a model of cfg, and how it is stored
 * (LEASH_GGUF_*): 1, or 0 when llama.cpp has no place for it (a scalar head). */
int leash_gguf_tensor_name(const leash_gpt_config *cfg, const char *name, char *out, size_t size, int *how);

/* The Hugging Face row that a permuted tensor (rows in heads of hs, hs even) stores at row r: llama.cpp's
 * LlamaModel.permute, stored[h hs + 2 j + i] = hf[h hs + i hs/2 + j] (i in {0, 1}, j < hs/2). */
int64_t leash_gguf_permuted_row(int64_t r, int hs);

/* rope_freqs.weight for llama3 rotary scaling (hs / 2 values), as llama.cpp's converter computes it in float32:
 * the factor each rotary frequency is divided by, 1 for short wavelengths, rope_factor for long ones, a smooth
 * band between. */
void leash_gguf_llama3_factors(const leash_gpt_config *c, int hs, float *out);

#endif
