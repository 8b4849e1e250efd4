/* safetensors, the Hugging Face checkpoint format: 8-byte little-endian header length N, N bytes of
 * JSON header {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}, then the raw little-endian data. The reader checks everything a
 * file can lie about (lengths, offsets, shapes, overlaps, dtypes) before touching data; F32, F16 and
 * BF16 tensors read into float32. The writer is atomic. */
#ifndef LEASH_SAFETENSORS_H
#define LEASH_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LEASH_ST_MAX_DIMS 8

typedef enum { LEASH_ST_F32, LEASH_ST_F16, LEASH_ST_BF16, LEASH_ST_OTHER } leash_st_dtype;

typedef struct {
    char *name;
    char dtype_name[16];
    leash_st_dtype dtype;
    int ndim;
    int64_t shape[LEASH_ST_MAX_DIMS];
    size_t numel;
    size_t begin, end; /* byte offsets into the data section */
} leash_st_entry;

typedef struct {
    char path[4096];
    FILE *f;
    size_t data_start; /* 8 + header length */
    size_t data_size;
    int n;
    leash_st_entry *entries; /* (n), in file order of data */
    char *metadata_json;     /* the "__metadata__" object as JSON text, or NULL */
} leash_st_file;

int leash_st_open(leash_st_file *st, const char *path);
void leash_st_close(leash_st_file *st);
const leash_st_entry *leash_st_find(const leash_st_file *st, const char *name);
/* Reads a tensor into dst (numel floats), converting F16/BF16; other dtypes are an error naming them. */
int leash_st_read_f32(const leash_st_file *st, const leash_st_entry *e, float *dst);

typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[LEASH_ST_MAX_DIMS];
} leash_st_tensor;

/* Writes F32 tensors atomically; metadata_json is a JSON object of strings, or NULL. */
int leash_st_save(const char *path, const leash_st_tensor *tensors, int n, const char *metadata_json);

#endif
