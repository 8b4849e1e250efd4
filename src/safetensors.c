/* safetensors reader and writer: see include/leash/safetensors.h. */
#define _POSIX_C_SOURCE 200809L
#include "leash/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "leash/error.h"
#include "leash/fileio.h"

#define MAX_HEADER (100u << 20) /* the format's own limit: 100 MB */

static const struct {
    const char *name;
    leash_st_dtype dtype;
    int size;
} dtypes[] = {{"F32", LEASH_ST_F32, 4}, {"F16", LEASH_ST_F16, 2}, {"BF16", LEASH_ST_BF16, 2}, {"F64", LEASH_ST_OTHER, 8},
              {"I64", LEASH_ST_OTHER, 8}, {"I32", LEASH_ST_OTHER, 4}, {"I16", LEASH_ST_OTHER, 2}, {"I8", LEASH_ST_OTHER, 1},
              {"U8", LEASH_ST_OTHER, 1},  {"BOOL", LEASH_ST_OTHER, 1}, {"U16", LEASH_ST_OTHER, 2}, {"U32", LEASH_ST_OTHER, 4},
              {"U64", LEASH_ST_OTHER, 8}, {"F8_E4M3", LEASH_ST_OTHER, 1}, {"F8_E5M2", LEASH_ST_OTHER, 1}};

void leash_st_close(leash_st_file *st) {
    if (st->f) fclose(st->f);
    for (int i = 0; i < st->n; i++) free(st->entries[i].name);
    free(st->entries);
    free(st->metadata_json);
    memset(st, 0, sizeof *st);
}

static int by_begin(const void *a, const void *b) {
    const leash_st_entry *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static int bad(leash_st_file *st, const char *fmt_name, const char *what) {
    int rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s': %s", st->path, fmt_name, what);
    return rc;
}

static int parse_entry(leash_st_file *st, const cJSON *item, leash_st_entry *e) {
    const char *name = item->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsObject(item)) return bad(st, name, "header entry is not an object");
    if (!cJSON_IsString(dt)) return bad(st, name, "missing or non-string \"dtype\"");
    if (!cJSON_IsArray(sh)) return bad(st, name, "missing or non-array \"shape\"");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return bad(st, name, "\"data_offsets\" must be an array [begin, end]");
    int size = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dt->valuestring, dtypes[i].name) == 0) e->dtype = dtypes[i].dtype, size = dtypes[i].size;
    if (!size) return leash_fail(LEASH_EFORMAT, "%s: tensor '%s': unknown dtype \"%.16s\"", st->path, name, dt->valuestring);
    snprintf(e->dtype_name, sizeof e->dtype_name, "%s", dt->valuestring);
    e->ndim = cJSON_GetArraySize(sh);
    if (e->ndim > LEASH_ST_MAX_DIMS) return bad(st, name, "more than 8 dimensions");
    // the product of the shape must not overflow, and must fit in the file
    size_t numel = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh) {
        double v = cJSON_IsNumber(d) ? d->valuedouble : -1.0;
        if (!(v >= 0.0) || v != floor(v) || v > 9.007199254740992e15) return bad(st, name, "shape entries must be integers >= 0");
        e->shape[i++] = (int64_t)v;
        if (v > 0 && numel > (SIZE_MAX / 8) / (size_t)v) return bad(st, name, "shape product overflows");
        numel *= (size_t)v;
    }
    e->numel = numel;
    double b = cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) ? cJSON_GetArrayItem(off, 0)->valuedouble : -1.0;
    double en = cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) ? cJSON_GetArrayItem(off, 1)->valuedouble : -1.0;
    if (!(b >= 0.0) || !(en >= b) || b != floor(b) || en != floor(en))
        return bad(st, name, "data_offsets must be integers with 0 <= begin <= end");
    if (en > (double)st->data_size) {
        return leash_fail(LEASH_EFORMAT, "%s: tensor '%s': data_offsets end %.0f is past the end of the data (%zu bytes); "
                                         "the file is truncated or the header lies",
                          st->path, name, en, st->data_size);
    }
    e->begin = (size_t)b;
    e->end = (size_t)en;
    if (e->end - e->begin != numel * (size_t)size)
        return leash_fail(LEASH_EFORMAT, "%s: tensor '%s': %zu bytes of data for shape with %zu elements of %s (%zu bytes)",
                          st->path, name, e->end - e->begin, numel, e->dtype_name, numel * (size_t)size);
    if (!(e->name = strdup(name))) return leash_fail(LEASH_ENOMEM, "out of memory");
    return LEASH_OK;
}

int leash_st_open(leash_st_file *st, const char *path) {
    memset(st, 0, sizeof *st);
    snprintf(st->path, sizeof st->path, "%s", path);
    st->f = fopen(path, "rb");
    if (!st->f) return leash_fail(LEASH_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(st->f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        leash_st_close(st);
        return leash_fail(LEASH_EIO, "'%s' is not a regular file", path);
    }
    size_t file_size = (size_t)sb.st_size;
    unsigned char len8[8];
    if (file_size < 8 || fread(len8, 1, 8, st->f) != 8) {
        leash_st_close(st);
        return leash_fail(LEASH_EFORMAT, "%s: %zu bytes; a safetensors file starts with an 8-byte header length", path,
                          file_size);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > MAX_HEADER || hlen > file_size - 8) {
        leash_st_close(st);
        return leash_fail(LEASH_EFORMAT, "%s: header length %llu does not fit the file (%zu bytes) or the 100 MB limit; "
                                         "is this a safetensors file?",
                          path, (unsigned long long)hlen, file_size);
    }
    char *h = malloc(hlen + 1);
    if (!h || fread(h, 1, hlen, st->f) != hlen) {
        free(h);
        leash_st_close(st);
        return leash_fail(LEASH_EIO, "%s: cannot read the %llu-byte header", path, (unsigned long long)hlen);
    }
    h[hlen] = '\0';
    st->data_start = 8 + hlen;
    st->data_size = file_size - st->data_start;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, hlen, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        long at = end ? (long)(end - h) : -1L;
        free(h);
        cJSON_Delete(root);
        leash_st_close(st);
        return leash_fail(LEASH_EFORMAT, "%s: the header is not a JSON object (malformed at byte %ld of the header)", path,
                          at);
    }
    free(h);
    int count = cJSON_GetArraySize(root), rc = LEASH_OK;
    st->entries = calloc(count ? count : 1, sizeof *st->entries);
    if (!st->entries) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (rc) break;
        if (strcmp(item->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(item)) rc = leash_fail(LEASH_EFORMAT, "%s: \"__metadata__\" must be an object", path);
            else if (st->metadata_json) rc = leash_fail(LEASH_EFORMAT, "%s: \"__metadata__\" appears twice", path);
            else if (!(st->metadata_json = cJSON_PrintUnformatted(item))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
            continue;
        }
        if (!(rc = parse_entry(st, item, &st->entries[st->n]))) st->n++;
    }
    cJSON_Delete(root);
    if (!rc) {
        // the data section must be covered exactly: no overlaps, no holes (the format's rule)
        qsort(st->entries, st->n, sizeof *st->entries, by_begin);
        size_t at = 0;
        for (int i = 0; i < st->n && !rc; i++) {
            if (st->entries[i].begin != at)
                rc = leash_fail(LEASH_EFORMAT, "%s: tensor '%s' starts at byte %zu of the data, expected %zu: tensors %s",
                                path, st->entries[i].name, st->entries[i].begin, at,
                                st->entries[i].begin < at ? "overlap" : "leave a hole");
            at = st->entries[i].end;
        }
        if (!rc && at != st->data_size)
            rc = leash_fail(LEASH_EFORMAT, "%s: the tensors cover %zu bytes of data but the file holds %zu", path, at,
                            st->data_size);
    }
    if (rc) leash_st_close(st);
    return rc;
}

const leash_st_entry *leash_st_find(const leash_st_file *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->entries[i].name, name) == 0) return &st->entries[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { // subnormal: normalise
            int e = -1;
            do man <<= 1, e++;
            while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | man << 13;
    else bits = sign | (exp + 127 - 15) << 23 | man << 13;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int leash_st_read_f32(const leash_st_file *st, const leash_st_entry *e, float *dst) {
    if (e->dtype == LEASH_ST_OTHER)
        return leash_fail(LEASH_EFORMAT, "%s: tensor '%s' has dtype %s; leash reads F32, F16 and BF16 (convert the "
                                         "checkpoint, e.g. with torch: model.float().save_pretrained(...))",
                          st->path, e->name, e->dtype_name);
    if (fseeko(st->f, (off_t)(st->data_start + e->begin), SEEK_SET) != 0)
        return leash_fail(LEASH_EIO, "%s: cannot seek to tensor '%s'", st->path, e->name);
    if (e->dtype == LEASH_ST_F32) {
        if (fread(dst, 4, e->numel, st->f) != e->numel)
            return leash_fail(LEASH_EIO, "%s: tensor '%s': short read (file truncated?)", st->path, e->name);
        return LEASH_OK; // little-endian host assumed (x86-64, aarch64)
    }
    uint16_t buf[4096];
    for (size_t i = 0; i < e->numel;) {
        size_t k = e->numel - i < 4096 ? e->numel - i : 4096;
        if (fread(buf, 2, k, st->f) != k)
            return leash_fail(LEASH_EIO, "%s: tensor '%s': short read (file truncated?)", st->path, e->name);
        for (size_t j = 0; j < k; j++) {
            if (e->dtype == LEASH_ST_BF16) {
                uint32_t bits = (uint32_t)buf[j] << 16;
                memcpy(&dst[i + j], &bits, 4);
            } else {
                dst[i + j] = half_to_float(buf[j]);
            }
        }
        i += k;
    }
    return LEASH_OK;
}

int leash_st_save(const char *path, const leash_st_tensor *t, int n, const char *metadata_json) {
    cJSON *h = cJSON_CreateObject();
    if (!h) return leash_fail(LEASH_ENOMEM, "out of memory");
    if (metadata_json) {
        cJSON *md = cJSON_Parse(metadata_json);
        if (!cJSON_IsObject(md)) {
            cJSON_Delete(md);
            cJSON_Delete(h);
            return leash_fail(LEASH_EINVAL, "safetensors metadata must be a JSON object of strings");
        }
        cJSON_AddItemToObject(h, "__metadata__", md);
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        cJSON *e = cJSON_AddObjectToObject(h, t[i].name), *shape = cJSON_AddArrayToObject(e, "shape"),
              *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddStringToObject(e, "dtype", "F32");
        for (int d = 0; d < t[i].ndim; d++) {
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
            numel *= (size_t)t[i].shape[d];
        }
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
        at += numel * 4;
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) return leash_fail(LEASH_ENOMEM, "out of memory");
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7; // data 8-byte aligned, padded with spaces
    leash_atomic_file af;
    int rc = leash_atomic_open(&af, path);
    if (rc) {
        free(text);
        return rc;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(padded >> (8 * i));
    fwrite(len8, 1, 8, af.f);
    fwrite(text, 1, hlen, af.f);
    for (size_t i = hlen; i < padded; i++) fputc(' ', af.f);
    free(text);
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        if (numel) fwrite(t[i].data, 4, numel, af.f);
    }
    return leash_atomic_commit(&af); // checks ferror: a short write (full disk) fails here
}
