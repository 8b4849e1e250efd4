/* GGUF, llama.cpp's (and ollama's) single-file model format: a header, typed key/value metadata
 * ("general.architecture", "llama.block_count", "tokenizer.ggml.tokens", ...), tensor descriptions and the
 * aligned tensor data, in F32, F16, BF16 or one of ggml's block quantisations. Specification:
 * ggml's docs/gguf.md (version 3; versions 2 and 3 are read).
 *
 * Reading: leash_gguf_open() parses and checks the whole header (every offset and size inside the file)
 * before anything is used, so the accessors below cannot run off the data. Tensors are dequantised to F32
 * on demand (bit-exact with ggml's own dequantisation). A model's config, weights and tokenizer are built
 * from a file by leash_gpt_load() and leash_tokenizer_load_dir(), which take a .gguf file wherever they
 * take a directory. Writing: leash_gguf_save() (src/gguf_write.c). */
#ifndef LEASH_GGUF_H
#define LEASH_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "leash/gpt.h"

/* Metadata value types, as numbered in the file. */
enum {
    LEASH_GGUF_UINT8 = 0, LEASH_GGUF_INT8 = 1, LEASH_GGUF_UINT16 = 2, LEASH_GGUF_INT16 = 3,
    LEASH_GGUF_UINT32 = 4, LEASH_GGUF_INT32 = 5, LEASH_GGUF_FLOAT32 = 6, LEASH_GGUF_BOOL = 7,
    LEASH_GGUF_STRING = 8, LEASH_GGUF_ARRAY = 9, LEASH_GGUF_UINT64 = 10, LEASH_GGUF_INT64 = 11,
    LEASH_GGUF_FLOAT64 = 12
};

/* Tensor types (ggml_type), as numbered in the file; the ones leash reads. */
enum {
    LEASH_GGML_F32 = 0, LEASH_GGML_F16 = 1, LEASH_GGML_Q4_0 = 2, LEASH_GGML_Q4_1 = 3,
    LEASH_GGML_Q5_0 = 6, LEASH_GGML_Q5_1 = 7, LEASH_GGML_Q8_0 = 8,
    LEASH_GGML_Q2_K = 10, LEASH_GGML_Q3_K = 11, LEASH_GGML_Q4_K = 12, LEASH_GGML_Q5_K = 13,
    LEASH_GGML_Q6_K = 14, LEASH_GGML_BF16 = 30
};

typedef struct leash_gguf leash_gguf;

typedef struct {
    const char *name;  /* NUL-terminated */
    int type;          /* LEASH_GGML_* */
    int n_dims;        /* 1..4 */
    int64_t ne[4];     /* ggml order: ne[0] is the fastest-varying (a Linear weight (out, in) has ne = {in, out}) */
    int64_t numel;
    uint64_t offset;   /* of the data, from the start of the data section (leash_gguf_tensor_data gives the bytes) */
    uint64_t nbytes;
} leash_gguf_tensor;

/* 1 when path is a regular file that starts with the GGUF magic, else 0 (never an error). */
int leash_gguf_is_file(const char *path);

/* Opens and validates a GGUF file; every failure names the file and what is wrong. */
int leash_gguf_open(leash_gguf **out, const char *path);
void leash_gguf_close(leash_gguf *g);
const char *leash_gguf_path(const leash_gguf *g);

/* Metadata. Each getter returns LEASH_OK, 1 when the key is absent (*out untouched), or an error naming
 * the file and key when it holds another type. Integers of any width convert to int64 (uint64 beyond
 * INT64_MAX is an error); floats of either width to double; a string is returned with its length (the
 * pointer lives as long as g; the bytes are NUL-terminated there as well). */
int leash_gguf_get_int(const leash_gguf *g, const char *key, int64_t *out);
int leash_gguf_get_float(const leash_gguf *g, const char *key, double *out);
int leash_gguf_get_bool(const leash_gguf *g, const char *key, int *out);
int leash_gguf_get_string(const leash_gguf *g, const char *key, const char **out, size_t *len);
/* An array: its element type (LEASH_GGUF_*) and length; then its elements by index. */
int leash_gguf_get_array(const leash_gguf *g, const char *key, int *elem_type, uint64_t *n);
int leash_gguf_array_int(const leash_gguf *g, const char *key, uint64_t i, int64_t *out);
int leash_gguf_array_float(const leash_gguf *g, const char *key, uint64_t i, double *out);
int leash_gguf_array_string(const leash_gguf *g, const char *key, uint64_t i, const char **out, size_t *len);
/* Every key, for listing and for refusing keys that change the math but are not understood. */
int leash_gguf_num_keys(const leash_gguf *g);
const char *leash_gguf_key(const leash_gguf *g, int i);

/* Tensors. */
int leash_gguf_num_tensors(const leash_gguf *g);
const leash_gguf_tensor *leash_gguf_tensor_at(const leash_gguf *g, int i);
const leash_gguf_tensor *leash_gguf_find_tensor(const leash_gguf *g, const char *name); /* NULL: none */
/* Dequantises a tensor's numel values, in file order, into out (F32). */
int leash_gguf_read_f32(const leash_gguf *g, const leash_gguf_tensor *t, float *out);
/* The tensor's raw bytes (nbytes of them, inside the mapped file; valid as long as g). */
const void *leash_gguf_tensor_data(const leash_gguf *g, const leash_gguf_tensor *t);

/* ---- ggml tensor types (src/gguf_quant.c) ------------------------------------------------------ */

/* ggml's name of a type number ("Q4_K", "IQ2_XS", ...), or NULL for a number ggml does not define. */
const char *leash_ggml_type_name(int type);
/* A type leash reads: values and bytes per block (F32: 1 and 4; Q4_0: 32 and 18; Q6_K: 256 and 210); 0 for
 * one it does not read (then *block_values = *block_bytes = 0). */
int leash_ggml_type_block(int type, int *block_values, int *block_bytes);
/* Dequantises n values (a whole number of blocks) of a type leash reads from src into dst, bit-exact with
 * ggml's dequantize_row_* (ggml-quants.c). */
void leash_ggml_dequantize(int type, const void *src, float *dst, int64_t n);

/* ---- models (src/gguf_model.c) ----------------------------------------------------------------- */

/* The model configuration of a GGUF file, from general.architecture (llama, qwen2, mistral, gpt2) and its
 * {arch}.* keys: every key that changes the math must be understood, or it is an error naming it. */
int leash_gguf_load_config(const char *path, leash_gpt_config *cfg);
/* Reads the file's tensors into m (created from that configuration) under leash's Hugging Face names and
 * layouts, undoing the converter's changes (llama's q/k row permutation, GPT-2's Conv1D transposes), marking
 * seen[i] for each of m's tensors read; a missing, unexpected or misshapen tensor, or a non-finite weight,
 * is an error naming it. */
int leash_gguf_load_weights(const char *path, leash_gpt *m, char *seen);

/* ---- writing (src/gguf_write.c) ---- */

/* Writes m as a GGUF v3 file (alignment 32) that llama.cpp loads, atomically, as its convert_hf_to_gguf.py
 * would convert the model's directory: architecture llama (also Mistral, SmolLM2), qwen2 or gpt2, its
 * {arch}.* keys, tensor names and layouts (llama's q/k rows permuted, GPT-2's Conv1D weights transposed;
 * llama3 rotary scaling as rope_freqs.weight), and the tokenizer of tok_dir (tokenizer.json of a known
 * pre-tokenizer, or vocab.json + merges.txt; tokenizer_config.json's special tokens and chat template).
 * type (LEASH_GGML_F32, F16, BF16 or Q8_0) is that of the 2-D weights; 1-D tensors and GPT-2's position
 * embedding stay F32, and Q8_0 falls back to F16 for rows that are not whole blocks of 32, as the converter
 * does. name is general.name (NULL: tok_dir's base name). Models with LoRA adapters, a scalar head or BF16
 * storage are refused. */
int leash_gguf_save(const leash_gpt *m, const char *tok_dir, const char *path, int type, const char *name);

#endif
