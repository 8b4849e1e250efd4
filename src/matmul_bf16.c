/* Matrix products with BF16 weights and FP32 accumulation, for frozen models stored in BF16 (leash_gpt_store_bf16):
 * oneDNN's matmul, which on a CPU with AVX512_BF16 (VDPBF16PS) or AMX multiplies pairs of BF16 values into FP32
 * sums at about twice FP32's multiply-add rate. The input rows are rounded to BF16 (nearest, ties to even) first;
 * the products and the sums are FP32. See include/leash/ops.h.
 *
 * oneDNN's primitives are made per shape (its kernels are generated for it): a few dozen are kept, the oldest
 * made replaced first. That state is shared, so one product runs at a time (a lock: two models may score from
 * two threads of a host program; each product is itself parallel over OpenMP's threads). Should
 * oneDNN fail on a shape (memory), that product runs in F32 through leash_sgemm instead, a block of the weight
 * converted at a time. */
#define _POSIX_C_SOURCE 200809L
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "leash/ops.h"

#define CACHE 48 // primitives kept: a model's forward uses 4 to 7 shapes, decoding and scoring a few each

typedef struct {
    int N, C, OC, ldo, out_in, bias;
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, bia, dst;
} entry;

static entry cache[CACHE];
static int n_cache, next_slot;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; // over everything below
static int state;      // 0 not yet asked, 1 available, -1 not
static uint16_t *xbuf; // (N, C) the input rows in BF16
static size_t xcap;

uint16_t leash_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) return (uint16_t)((u >> 16) | 0x40u); // NaN stays NaN
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

int leash_bf16_exact(const float *x, size_t n) {
    uint32_t any = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        any |= u & 0xFFFFu;
    }
    return any == 0;
}

static void drop(entry *e) {
    dnnl_primitive_destroy(e->prim);
    dnnl_memory_destroy(e->src), dnnl_memory_destroy(e->wei), dnnl_memory_destroy(e->dst);
    if (e->bia) dnnl_memory_destroy(e->bia);
    memset(e, 0, sizeof *e);
}

/* The primitive for one shape: src (N, C) BF16, weights (C, OC) BF16 (strides for either layout), bias (1, OC)
 * F32, dst (N, OC) F32 with row stride ldo. impl receives oneDNN's name for the kernel it chose. */
static int make(entry *e, const char **impl) {
    dnnl_memory_desc_t sd, wd, bd, dd;
    dnnl_dims_t sdims = {e->N, e->C}, sstr = {e->C, 1}, wdims = {e->C, e->OC}, wstr = {e->OC, 1}, wstr_t = {1, e->C},
                bdims = {1, e->OC}, bstr = {e->OC, 1}, ddims = {e->N, e->OC}, dstr = {e->ldo, 1};
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t md;
    int ok = dnnl_memory_desc_init_by_strides(&sd, 2, sdims, dnnl_bf16, sstr) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&wd, 2, wdims, dnnl_bf16, e->out_in ? wstr_t : wstr) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&bd, 2, bdims, dnnl_f32, bstr) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&dd, 2, ddims, dnnl_f32, dstr) == dnnl_success &&
             dnnl_matmul_desc_init(&md, &sd, &wd, e->bias ? &bd : NULL, &dd) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &md, NULL, engine, NULL) == dnnl_success;
    if (ok && impl) ok = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)impl) == dnnl_success;
    ok = ok && dnnl_primitive_create(&e->prim, pd) == dnnl_success &&
         dnnl_memory_create(&e->src, &sd, engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->wei, &wd, engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->dst, &dd, engine, DNNL_MEMORY_NONE) == dnnl_success &&
         (!e->bias || dnnl_memory_create(&e->bia, &bd, engine, DNNL_MEMORY_NONE) == dnnl_success);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (!ok) drop(e);
    return ok;
}

/* Available when the CPU has AVX512_BF16 and oneDNN picks a kernel of its own for BF16 (not its slow reference
 * loops, which it falls back to on CPUs without BF16 instructions). */
static int available(void) {
    if (state) return state > 0;
    state = -1;
    if (!__builtin_cpu_supports("avx512bf16")) return 0;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) return 0;
    if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) return 0;
    entry probe = {.N = 64, .C = 64, .OC = 64, .ldo = 64, .out_in = 0, .bias = 1};
    const char *impl = NULL;
    if (!make(&probe, &impl)) return 0;
    if (impl && strncmp(impl, "ref", 3)) state = 1;
    drop(&probe);
    return state > 0;
}

int leash_bf16_compute_available(void) {
    pthread_mutex_lock(&lock);
    int on = available();
    pthread_mutex_unlock(&lock);
    return on;
}

static entry *find(int N, int C, int OC, int ldo, int out_in, int bias) {
    for (int i = 0; i < n_cache; i++) {
        entry *e = &cache[i];
        if (e->N == N && e->C == C && e->OC == OC && e->ldo == ldo && e->out_in == out_in && e->bias == bias) return e;
    }
    entry *e = &cache[n_cache < CACHE ? n_cache++ : next_slot];
    if (e->prim) drop(e), next_slot = (next_slot + 1) % CACHE;
    *e = (entry){.N = N, .C = C, .OC = OC, .ldo = ldo, .out_in = out_in, .bias = bias};
    return make(e, NULL) ? e : NULL;
}

/* The F32 product when oneDNN cannot run one: blocks of the weight back in F32, accumulated into out. */
static void f32_fallback(float *out, int ldo, const float *inp, const uint16_t *w, const float *bias, int N, int C,
                         int OC, int w_out_in) {
    enum { BLOCK = 1 << 14 };
    static float wf[BLOCK];
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * ldo + o] = bias ? bias[o] : 0.0f;
    int rows = w_out_in ? OC : C, cols = w_out_in ? C : OC, step = BLOCK / cols > 0 ? BLOCK / cols : 1;
    for (int r0 = 0; r0 < rows; r0 += step) {
        int nr = rows - r0 < step ? rows - r0 : step;
        for (size_t k = 0; k < (size_t)nr * cols; k++) {
            uint32_t u = (uint32_t)w[(size_t)r0 * cols + k] << 16;
            memcpy(&wf[k], &u, 4);
        }
        if (w_out_in) // rows r0.. of (OC, C): output columns r0..
            leash_sgemm(0, 1, N, nr, C, 1.0f, inp, C, wf, C, 1.0f, out + r0, ldo);
        else // rows r0.. of (C, OC): input columns r0..
            leash_sgemm(0, 0, N, OC, nr, 1.0f, inp + r0, C, wf, OC, 1.0f, out, ldo);
    }
}

void leash_linear_forward_bf16(float *out, int ldo, const float *inp, const uint16_t *w, const float *bias, int N,
                               int C, int OC, int w_out_in) {
    pthread_mutex_lock(&lock);
    entry *e = available() ? find(N, C, OC, ldo, w_out_in, bias != NULL) : NULL;
    size_t n = (size_t)N * C;
    if (e && n > xcap) {
        uint16_t *grown = realloc(xbuf, n * sizeof *grown);
        if (grown) xbuf = grown, xcap = n;
    }
    if (!e || n > xcap) {
        f32_fallback(out, ldo, inp, w, bias, N, C, OC, w_out_in);
        pthread_mutex_unlock(&lock);
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < n; k++) xbuf[k] = leash_bf16_round(inp[k]);
    dnnl_memory_set_data_handle(e->src, xbuf);
    dnnl_memory_set_data_handle(e->wei, (void *)w);
    dnnl_memory_set_data_handle(e->dst, out);
    if (bias) dnnl_memory_set_data_handle(e->bia, (void *)bias);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst},
                               {DNNL_ARG_BIAS, e->bia}};
    if (dnnl_primitive_execute(e->prim, stream, bias ? 4 : 3, args) != dnnl_success ||
        dnnl_stream_wait(stream) != dnnl_success)
        f32_fallback(out, ldo, inp, w, bias, N, C, OC, w_out_in);
    pthread_mutex_unlock(&lock);
}
