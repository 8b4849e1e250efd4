/* The GGUF container: parsing and checking the header, metadata access, tensor data. See include/leash/gguf.h.
 *
 * Layout (ggml docs/gguf.md, versions 2 and 3; little-endian): "GGUF", u32 version, u64 tensor count, u64
 * key/value count; the key/values (string key, u32 value type, value); the tensor infos (string name, u32
 * n_dims, u64 ne[n_dims], u32 ggml type, u64 offset into the data); padding to general.alignment (default
 * 32); the data. A string is a u64 length and that many bytes (no NUL); an array is a u32 element type, a u64
 * count and the elements (arrays of arrays allowed).
 *
 * The file is mapped read-only; leash_gguf_open() walks every byte of the header once, refusing anything that
 * cannot be right (a count or length past the end of the file, an unknown type, a tensor outside the data
 * or overlapping another, a duplicate name), and copies the strings, NUL-terminated, into one arena. */
#define _DEFAULT_SOURCE
#include "leash/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "leash/error.h"

#define MAX_DEPTH 8 /* arrays of arrays of ... */

typedef struct {
    uint64_t key;      /* index into strs */
    int type;          /* LEASH_GGUF_* */
    int elem_type;     /* arrays: the elements' type */
    uint64_t n;        /* arrays: element count */
    uint64_t at;       /* file offset of a scalar value, or of a numeric array's first element */
    uint64_t str;      /* a string, or a string array's first element: index into strs */
} kv;

typedef struct {
    uint64_t off, len; /* into the arena; the bytes are followed by a NUL */
} str_ref;

typedef struct {
    const char *name;
    int index;
} name_index;

struct leash_gguf {
    char *path;
    const uint8_t *map;
    uint64_t size, pos;   /* file size; the parser's position */
    uint64_t alignment, data_start;
    char *arena;          /* every string, NUL-terminated */
    uint64_t arena_len, arena_cap;
    str_ref *strs;
    uint64_t n_strs, cap_strs;
    kv *kvs;
    int n_kv;
    leash_gguf_tensor *tensors;
    int n_tensors;
    name_index *key_sorted, *tensor_sorted; /* (n_kv), (n_tensors) by name, for lookups */
};

static int bad(const leash_gguf *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const leash_gguf *g, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return leash_fail(LEASH_EFORMAT, "%s: %s", g->path, msg);
}

static const int value_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}; /* 0: string, array */
static const char *const value_name[13] = {"uint8", "int8",  "uint16", "int16", "uint32", "int32",  "float32",
                                           "bool",  "string", "array", "uint64", "int64", "float64"};

static int need(leash_gguf *g, uint64_t n, const char *what) {
    if (g->size - g->pos < n)
        return bad(g, "%s at byte %llu needs %llu bytes, but the file ends at byte %llu (truncated, or a count or length "
                      "that lies)",
                   what, (unsigned long long)g->pos, (unsigned long long)n, (unsigned long long)g->size);
    return LEASH_OK;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int read_u(leash_gguf *g, int n, uint64_t *out, const char *what) {
    int rc = need(g, (uint64_t)n, what);
    if (rc) return rc;
    *out = le(g->map + g->pos, n);
    g->pos += (uint64_t)n;
    return LEASH_OK;
}

/* A string at the current position; stored (copied into the arena, its index in *index) when store. A name
 * (key, tensor) must be non-empty and hold no NUL byte. */
static int read_str(leash_gguf *g, int store, int is_name, uint64_t *index, const char *what) {
    uint64_t len;
    int rc = read_u(g, 8, &len, what);
    if (rc) return rc;
    if (len > g->size - g->pos)
        return bad(g, "%s: a string of %llu bytes at byte %llu is longer than the rest of the file (%llu bytes)", what,
                   (unsigned long long)len, (unsigned long long)(g->pos - 8), (unsigned long long)(g->size - g->pos));
    const uint8_t *s = g->map + g->pos;
    if (is_name && (len == 0 || memchr(s, 0, len)))
        return bad(g, "%s: a name must be non-empty and hold no NUL byte", what);
    g->pos += len;
    if (!store) return LEASH_OK;
    if (g->n_strs == g->cap_strs) {
        uint64_t cap = g->cap_strs ? 2 * g->cap_strs : 256;
        str_ref *p = realloc(g->strs, cap * sizeof *p);
        if (!p) return leash_fail(LEASH_ENOMEM, "%s: out of memory for the strings", g->path);
        g->strs = p, g->cap_strs = cap;
    }
    if (g->arena_cap - g->arena_len < len + 1) {
        uint64_t cap = g->arena_cap ? g->arena_cap : 4096;
        while (cap - g->arena_len < len + 1) cap *= 2;
        char *p = realloc(g->arena, cap);
        if (!p) return leash_fail(LEASH_ENOMEM, "%s: out of memory for the strings", g->path);
        g->arena = p, g->arena_cap = cap;
    }
    memcpy(g->arena + g->arena_len, s, len);
    g->arena[g->arena_len + len] = 0;
    g->strs[g->n_strs] = (str_ref){g->arena_len, len};
    g->arena_len += len + 1;
    *index = g->n_strs++;
    return LEASH_OK;
}

/* One value of `type` at the current position; e (the top-level key/value, or NULL inside an array of arrays,
 * which is checked but not kept) receives where it is. */
static int parse_value(leash_gguf *g, int type, int depth, kv *e, const char *what) {
    char ctx[320];
    int rc;
    if (type < 0 || type > LEASH_GGUF_FLOAT64)
        return bad(g, "%s has value type %d; GGUF value types are 0..12", what, type);
    if (type == LEASH_GGUF_STRING) {
        uint64_t idx = 0;
        if ((rc = read_str(g, e != NULL, 0, &idx, what))) return rc;
        if (e) e->str = idx, e->n = 1;
        return LEASH_OK;
    }
    if (type != LEASH_GGUF_ARRAY) {
        if ((rc = need(g, (uint64_t)value_size[type], what))) return rc;
        if (type == LEASH_GGUF_BOOL && g->map[g->pos] > 1)
            return bad(g, "%s is a bool holding %d (must be 0 or 1)", what, g->map[g->pos]);
        if (e) e->at = g->pos;
        g->pos += (uint64_t)value_size[type];
        return LEASH_OK;
    }
    uint64_t et, n, left;
    if ((rc = read_u(g, 4, &et, what)) || (rc = read_u(g, 8, &n, what))) return rc;
    if (et > LEASH_GGUF_FLOAT64) return bad(g, "%s is an array of value type %llu; GGUF value types are 0..12", what, (unsigned long long)et);
    if (et == LEASH_GGUF_ARRAY && depth + 1 >= MAX_DEPTH) return bad(g, "%s nests arrays more than %d deep", what, MAX_DEPTH);
    left = g->size - g->pos;
    uint64_t least = value_size[et] ? (uint64_t)value_size[et] : et == LEASH_GGUF_STRING ? 8 : 12;
    if (n > left / least)
        return bad(g, "%s is an array of %llu %s values, which cannot fit in the %llu bytes left in the file", what,
                   (unsigned long long)n, value_name[et], (unsigned long long)left);
    if (e) e->elem_type = (int)et, e->n = n, e->at = g->pos, e->str = g->n_strs;
    if (value_size[et]) {
        if (et == LEASH_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (g->map[g->pos + i] > 1) return bad(g, "%s[%llu] is a bool holding %d (must be 0 or 1)", what, (unsigned long long)i, g->map[g->pos + i]);
        g->pos += n * (uint64_t)value_size[et];
        return LEASH_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t idx;
        if (et == LEASH_GGUF_STRING && (rc = read_str(g, e != NULL, 0, &idx, what))) return rc;
        if (et == LEASH_GGUF_ARRAY) {
            snprintf(ctx, sizeof ctx, "%s[%llu]", what, (unsigned long long)i);
            if ((rc = parse_value(g, LEASH_GGUF_ARRAY, depth + 1, NULL, ctx))) return rc;
        }
    }
    return LEASH_OK;
}

static int parse_kvs(leash_gguf *g) {
    char what[320];
    for (int i = 0; i < g->n_kv; i++) {
        kv *e = &g->kvs[i];
        uint64_t type;
        snprintf(what, sizeof what, "key/value %d's key", i);
        int rc = read_str(g, 1, 1, &e->key, what);
        if (rc) return rc;
        snprintf(what, sizeof what, "key \"%.200s\"", g->arena + g->strs[e->key].off);
        if ((rc = read_u(g, 4, &type, what))) return rc;
        e->type = type > LEASH_GGUF_FLOAT64 ? -1 : (int)type;
        if (e->type < 0) return bad(g, "%s has value type %llu; GGUF value types are 0..12", what, (unsigned long long)type);
        if ((rc = parse_value(g, e->type, 0, e, what))) return rc;
    }
    return LEASH_OK;
}

static int parse_tensor_infos(leash_gguf *g, uint64_t *name_idx) {
    char what[320];
    for (int i = 0; i < g->n_tensors; i++) {
        leash_gguf_tensor *t = &g->tensors[i];
        uint64_t nd, type, v;
        snprintf(what, sizeof what, "tensor info %d's name", i);
        int rc = read_str(g, 1, 1, &name_idx[i], what);
        if (rc) return rc;
        snprintf(what, sizeof what, "tensor '%.200s'", g->arena + g->strs[name_idx[i]].off);
        if ((rc = read_u(g, 4, &nd, what))) return rc;
        if (nd < 1 || nd > 4) return bad(g, "%s has n_dims = %llu; GGUF tensors have 1 to 4 dimensions", what, (unsigned long long)nd);
        t->n_dims = (int)nd;
        t->numel = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (int d = 0; d < t->n_dims; d++) {
            if ((rc = read_u(g, 8, &v, what))) return rc;
            if (v == 0 || v > (uint64_t)INT64_MAX)
                return bad(g, "%s has ne[%d] = %llu; each dimension must be >= 1", what, d, (unsigned long long)v);
            if ((uint64_t)t->numel > (uint64_t)INT64_MAX / v) return bad(g, "%s: the product of its dimensions overflows", what);
            t->ne[d] = (int64_t)v;
            t->numel *= (int64_t)v;
        }
        if ((rc = read_u(g, 4, &type, what))) return rc;
        int bv, bb, known = type < 64 ? (int)type : -1; // (a u32 from the file: no int conversion beyond range)
        const char *tn = leash_ggml_type_name(known);
        if (!leash_ggml_type_block(known, &bv, &bb))
            return bad(g, "%s has ggml type %llu (%s); leash reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K..Q6_K",
                       what, (unsigned long long)type, tn ? tn : "not a ggml type");
        t->type = (int)type;
        if (t->ne[0] % bv)
            return bad(g, "%s: ne[0] = %lld is not a multiple of %s's block of %d values", what, (long long)t->ne[0], tn, bv);
        if ((uint64_t)(t->numel / bv) > (uint64_t)INT64_MAX / (uint64_t)bb) return bad(g, "%s: its size in bytes overflows", what);
        t->nbytes = (uint64_t)(t->numel / bv) * (uint64_t)bb;
        if ((rc = read_u(g, 8, &t->offset, what))) return rc;
    }
    return LEASH_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const name_index *)a)->name, ((const name_index *)b)->name);
}

/* A sorted (name, index) table; a name twice is an error. */
static int sort_names(leash_gguf *g, name_index **out, int n, const char *kind) {
    name_index *s = calloc(n ? (size_t)n : 1, sizeof *s);
    if (!s) return leash_fail(LEASH_ENOMEM, "%s: out of memory", g->path);
    for (int i = 0; i < n; i++) s[i] = (name_index){kind[0] == 'k' ? leash_gguf_key(g, i) : g->tensors[i].name, i};
    qsort(s, (size_t)n, sizeof *s, by_name);
    *out = s;
    for (int i = 1; i < n; i++)
        if (strcmp(s[i - 1].name, s[i].name) == 0) return bad(g, "%s \"%.200s\" appears twice", kind, s[i].name);
    return LEASH_OK;
}

static const kv *find_kv(const leash_gguf *g, const char *key) {
    name_index k = {key, 0};
    const name_index *f = g->key_sorted ? bsearch(&k, g->key_sorted, (size_t)g->n_kv, sizeof k, by_name) : NULL;
    return f ? &g->kvs[f->index] : NULL;
}

static int by_offset(const void *a, const void *b) {
    const leash_gguf_tensor *x = *(leash_gguf_tensor *const *)a, *y = *(leash_gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* general.alignment, the data section's start, and every tensor inside it, aligned and apart. */
static int check_data(leash_gguf *g) {
    const kv *a = find_kv(g, "general.alignment");
    g->alignment = 32;
    if (a) {
        if (a->type != LEASH_GGUF_UINT32) return bad(g, "\"general.alignment\" is a %s; it must be a uint32", value_name[a->type]);
        g->alignment = le(g->map + a->at, 4);
        if (g->alignment == 0 || (g->alignment & (g->alignment - 1)))
            return bad(g, "\"general.alignment\" = %llu; it must be a power of 2", (unsigned long long)g->alignment);
    }
    g->data_start = (g->pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && g->data_start > g->size)
        return bad(g, "the tensor data would start at byte %llu, past the end of the file (%llu bytes)",
                   (unsigned long long)g->data_start, (unsigned long long)g->size);
    uint64_t data_size = g->n_tensors ? g->size - g->data_start : 0;
    leash_gguf_tensor **order = malloc((g->n_tensors ? (size_t)g->n_tensors : 1) * sizeof *order);
    if (!order) return leash_fail(LEASH_ENOMEM, "%s: out of memory", g->path);
    int rc = LEASH_OK;
    for (int i = 0; i < g->n_tensors && !rc; i++) {
        const leash_gguf_tensor *t = order[i] = &g->tensors[i];
        if (t->offset % g->alignment)
            rc = bad(g, "tensor '%s': data offset %llu is not a multiple of the alignment %llu", t->name,
                     (unsigned long long)t->offset, (unsigned long long)g->alignment);
        else if (t->offset > data_size || t->nbytes > data_size - t->offset)
            rc = bad(g, "tensor '%s': its data, bytes %llu..%llu of the data section, is outside it (%llu bytes: the file is "
                        "truncated or the offset lies)",
                     t->name, (unsigned long long)t->offset, (unsigned long long)t->offset + t->nbytes,
                     (unsigned long long)data_size);
    }
    if (!rc) qsort(order, (size_t)g->n_tensors, sizeof *order, by_offset);
    for (int i = 1; i < g->n_tensors && !rc; i++)
        if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
            rc = bad(g, "tensors '%s' and '%s' overlap (bytes %llu..%llu and from %llu of the data)", order[i - 1]->name,
                     order[i]->name, (unsigned long long)order[i - 1]->offset,
                     (unsigned long long)(order[i - 1]->offset + order[i - 1]->nbytes), (unsigned long long)order[i]->offset);
    free(order);
    return rc;
}

static int parse(leash_gguf *g) {
    uint64_t magic, version, n_tensors, n_kv;
    int rc;
    if ((rc = read_u(g, 4, &magic, "the magic")) || (rc = read_u(g, 4, &version, "the version"))) return rc;
    if (memcmp(g->map, "GGUF", 4)) return bad(g, "not a GGUF file (it does not start with \"GGUF\")");
    if (version == 1) return bad(g, "GGUF version 1 (32-bit counts) is not supported; re-convert the model with a current llama.cpp");
    if (version >= (1u << 16))
        return bad(g, "version field 0x%08llx: a big-endian GGUF file, which leash does not read", (unsigned long long)version);
    if (version != 2 && version != 3) return bad(g, "GGUF version %llu; leash reads versions 2 and 3", (unsigned long long)version);
    if ((rc = read_u(g, 8, &n_tensors, "the tensor count")) || (rc = read_u(g, 8, &n_kv, "the key/value count"))) return rc;
    uint64_t left = g->size - g->pos; // a key/value takes at least 13 bytes, a tensor info 32
    if (n_kv > left / 13 || n_kv > 0x7fffffff)
        return bad(g, "the key/value count %llu cannot fit in the %llu bytes of the file", (unsigned long long)n_kv, (unsigned long long)g->size);
    if (n_tensors > left / 32 || n_tensors > 0x7fffffff)
        return bad(g, "the tensor count %llu cannot fit in the %llu bytes of the file", (unsigned long long)n_tensors,
                   (unsigned long long)g->size);
    g->n_kv = (int)n_kv, g->n_tensors = (int)n_tensors;
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    uint64_t *name_idx = calloc(n_tensors ? n_tensors : 1, sizeof *name_idx);
    if (!g->kvs || !g->tensors || !name_idx) rc = leash_fail(LEASH_ENOMEM, "%s: out of memory for the header", g->path);
    if (!rc) rc = parse_kvs(g);
    if (!rc) rc = parse_tensor_infos(g, name_idx);
    for (int i = 0; !rc && i < g->n_tensors; i++) g->tensors[i].name = g->arena + g->strs[name_idx[i]].off; // arena final now
    free(name_idx);
    if (!rc) rc = sort_names(g, &g->key_sorted, g->n_kv, "key");
    if (!rc) rc = sort_names(g, &g->tensor_sorted, g->n_tensors, "tensor name");
    if (!rc) rc = check_data(g);
    return rc;
}

int leash_gguf_is_file(const char *path) {
    struct stat sb;
    char magic[4];
    if (!path || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return ok;
}

int leash_gguf_open(leash_gguf **out, const char *path) {
    leash_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        return leash_fail(LEASH_ENOMEM, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY), rc = LEASH_OK;
    struct stat sb;
    if (fd < 0) rc = leash_fail(LEASH_EIO, "%s: cannot open: %s", path, strerror(errno));
    else if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) rc = leash_fail(LEASH_EIO, "%s: not a regular file", path);
    else if (sb.st_size < 24) rc = bad(g, "%lld bytes is too short for a GGUF header (24 bytes at least)", (long long)sb.st_size);
    else {
        g->size = (uint64_t)sb.st_size;
        void *p = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) rc = leash_fail(LEASH_EIO, "%s: cannot map the file: %s", path, strerror(errno));
        else g->map = p;
    }
    if (fd >= 0) close(fd);
    if (!rc) rc = parse(g);
    if (rc) {
        leash_gguf_close(g);
        return rc;
    }
    *out = g;
    return LEASH_OK;
}

void leash_gguf_close(leash_gguf *g) {
    if (!g) return;
    if (g->map) munmap((void *)g->map, (size_t)g->size);
    free(g->path), free(g->arena), free(g->strs), free(g->kvs), free(g->tensors);
    free(g->key_sorted), free(g->tensor_sorted);
    free(g);
}

const char *leash_gguf_path(const leash_gguf *g) { return g->path; }

/* ---- metadata ---------------------------------------------------------------------------------- */

static int is_int_type(int t) { return (t >= LEASH_GGUF_UINT8 && t <= LEASH_GGUF_INT32) || t == LEASH_GGUF_UINT64 || t == LEASH_GGUF_INT64; }

/* The integer of type t at p, as int64 (a uint64 beyond INT64_MAX is an error naming key). */
static int int_at(const leash_gguf *g, const char *key, int t, const uint8_t *p, int64_t *out) {
    uint64_t u = le(p, value_size[t]);
    switch (t) {
    case LEASH_GGUF_INT8: *out = (int8_t)u; break;
    case LEASH_GGUF_INT16: *out = (int16_t)u; break;
    case LEASH_GGUF_INT32: *out = (int32_t)u; break;
    case LEASH_GGUF_INT64: *out = (int64_t)u; break;
    case LEASH_GGUF_UINT64:
        if (u > (uint64_t)INT64_MAX) return bad(g, "\"%s\" = %llu is too large", key, (unsigned long long)u);
        *out = (int64_t)u;
        break;
    default: *out = (int64_t)u; break;
    }
    return LEASH_OK;
}

static double float_at(int t, const uint8_t *p) {
    uint64_t u = le(p, value_size[t]);
    if (t == LEASH_GGUF_FLOAT64) {
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    uint32_t w = (uint32_t)u;
    float f;
    memcpy(&f, &w, 4);
    return f;
}

/* The key's entry of type `type` (any integer type when type is UINT64 and ints is set, any float when FLOAT32
 * and floats is set); 1 when absent; an error when of another type. */
static int lookup(const leash_gguf *g, const char *key, int type, const kv **out) {
    const kv *e = find_kv(g, key);
    if (!e) return 1;
    int ok = type == LEASH_GGUF_INT64 ? is_int_type(e->type)
             : type == LEASH_GGUF_FLOAT64 ? (e->type == LEASH_GGUF_FLOAT32 || e->type == LEASH_GGUF_FLOAT64)
                                          : e->type == type;
    if (!ok)
        return bad(g, "\"%s\" is a %s; expected %s", key, value_name[e->type],
                   type == LEASH_GGUF_INT64 ? "an integer" : type == LEASH_GGUF_FLOAT64 ? "a float" : value_name[type]);
    *out = e;
    return LEASH_OK;
}

int leash_gguf_get_int(const leash_gguf *g, const char *key, int64_t *out) {
    const kv *e = NULL;
    int rc = lookup(g, key, LEASH_GGUF_INT64, &e);
    return rc ? rc : int_at(g, key, e->type, g->map + e->at, out);
}

int leash_gguf_get_float(const leash_gguf *g, const char *key, double *out) {
    const kv *e = NULL;
    int rc = lookup(g, key, LEASH_GGUF_FLOAT64, &e);
    if (!rc) *out = float_at(e->type, g->map + e->at);
    return rc;
}

int leash_gguf_get_bool(const leash_gguf *g, const char *key, int *out) {
    const kv *e = NULL;
    int rc = lookup(g, key, LEASH_GGUF_BOOL, &e);
    if (!rc) *out = g->map[e->at] != 0;
    return rc;
}

int leash_gguf_get_string(const leash_gguf *g, const char *key, const char **out, size_t *len) {
    const kv *e = NULL;
    int rc = lookup(g, key, LEASH_GGUF_STRING, &e);
    if (!rc) *out = g->arena + g->strs[e->str].off, *len = (size_t)g->strs[e->str].len;
    return rc;
}

int leash_gguf_get_array(const leash_gguf *g, const char *key, int *elem_type, uint64_t *n) {
    const kv *e = NULL;
    int rc = lookup(g, key, LEASH_GGUF_ARRAY, &e);
    if (!rc) *elem_type = e->elem_type, *n = e->n;
    return rc;
}

/* Element i of the array key, whose elements must be of a kind `ok` accepts. */
static int element(const leash_gguf *g, const char *key, uint64_t i, int (*ok)(int), const char *kind, const kv **out) {
    const kv *e = NULL;
    int rc = lookup(g, key, LEASH_GGUF_ARRAY, &e);
    if (rc) return rc;
    if (!ok(e->elem_type)) return bad(g, "\"%s\" is an array of %s; expected %s", key, value_name[e->elem_type], kind);
    if (i >= e->n)
        return leash_fail(LEASH_EINVAL, "%s: \"%s\" has %llu elements; index %llu is out of range", g->path, key,
                          (unsigned long long)e->n, (unsigned long long)i);
    *out = e;
    return LEASH_OK;
}

static int is_float_type(int t) { return t == LEASH_GGUF_FLOAT32 || t == LEASH_GGUF_FLOAT64; }
static int is_string_type(int t) { return t == LEASH_GGUF_STRING; }

int leash_gguf_array_int(const leash_gguf *g, const char *key, uint64_t i, int64_t *out) {
    const kv *e = NULL;
    int rc = element(g, key, i, is_int_type, "integers", &e);
    return rc ? rc : int_at(g, key, e->elem_type, g->map + e->at + i * (uint64_t)value_size[e->elem_type], out);
}

int leash_gguf_array_float(const leash_gguf *g, const char *key, uint64_t i, double *out) {
    const kv *e = NULL;
    int rc = element(g, key, i, is_float_type, "floats", &e);
    if (!rc) *out = float_at(e->elem_type, g->map + e->at + i * (uint64_t)value_size[e->elem_type]);
    return rc;
}

int leash_gguf_array_string(const leash_gguf *g, const char *key, uint64_t i, const char **out, size_t *len) {
    const kv *e = NULL;
    int rc = element(g, key, i, is_string_type, "strings", &e);
    if (!rc) *out = g->arena + g->strs[e->str + i].off, *len = (size_t)g->strs[e->str + i].len;
    return rc;
}

int leash_gguf_num_keys(const leash_gguf *g) { return g->n_kv; }

const char *leash_gguf_key(const leash_gguf *g, int i) {
    return i >= 0 && i < g->n_kv ? g->arena + g->strs[g->kvs[i].key].off : NULL;
}

/* ---- tensors ----------------------------------------------------------------------------------- */

int leash_gguf_num_tensors(const leash_gguf *g) { return g->n_tensors; }

const leash_gguf_tensor *leash_gguf_tensor_at(const leash_gguf *g, int i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const leash_gguf_tensor *leash_gguf_find_tensor(const leash_gguf *g, const char *name) {
    name_index k = {name, 0};
    const name_index *f = bsearch(&k, g->tensor_sorted, (size_t)g->n_tensors, sizeof k, by_name);
    return f ? &g->tensors[f->index] : NULL;
}

const void *leash_gguf_tensor_data(const leash_gguf *g, const leash_gguf_tensor *t) {
    return g->map + g->data_start + t->offset;
}

int leash_gguf_read_f32(const leash_gguf *g, const leash_gguf_tensor *t, float *out) {
    int bv, bb;
    if (!leash_ggml_type_block(t->type, &bv, &bb))
        return bad(g, "tensor '%s' has ggml type %d, which leash does not read", t->name, t->type);
    const uint8_t *src = leash_gguf_tensor_data(g, t);
    int64_t rows = t->numel / t->ne[0], row_bytes = t->ne[0] / bv * bb;
    // one thread: 0.2 s for the whole 135M-parameter file here, where threads cost more than they saved on busy cores
    for (int64_t r = 0; r < rows; r++) leash_ggml_dequantize(t->type, src + r * row_bytes, out + r * t->ne[0], t->ne[0]);
    return LEASH_OK;
}
