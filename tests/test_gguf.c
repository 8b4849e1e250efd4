/* GGUF (src/gguf.c, gguf_quant.c, gguf_model.c) against llama.cpp's own Python package `gguf`
 * (tests/ref/gguf_ref.py):
 *   - dequantisation bit for bit (each float compared as its 32 bits; the count of differing values is
 *     printed per type), on every tensor of the real SmolLM2-135M Q4_1 file and on a generated file with
 *     every type leash reads;
 *   - the real file loads into the model its metadata describes, and runs;
 *   - leash models written as GGUF the way convert_hf_to_gguf.py writes them (llama's and mistral's q/k
 *     rows permuted, GPT-2's Conv1D weights transposed) load back to the same weights bit for bit;
 *   - bad files (every truncation, 400 byte changes, lying headers, keys leash does not understand): no
 *     crash, and every failure names the file.
 * Tests needing the package or the real file skip with the reason, and fail under LEASH_REQUIRE_REF=1. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gguf.h"
#include "leash/gpt.h"
#include "leash/rng.h"
#include "testutil.h"

static const char *gguf_python(void) {
    const char *p = getenv("LEASH_GGUF_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

static int have_gguf_package(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import gguf, numpy' >/dev/null 2>&1", gguf_python());
    return system(cmd) == 0;
}

#define NEED_GGUF_PACKAGE()                                                                                           \
    if (!have_gguf_package())                                                                                         \
    LEASH_SKIP_OR_FAIL("the Python package gguf is not importable by %s (pip install gguf, or set LEASH_GGUF_PYTHON)", \
                       gguf_python())

static const char *real_file(void) {
    const char *p = getenv("LEASH_SMOLLM2_GGUF");
    return p && *p ? p : "/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf";
}

#define NEED_REAL_FILE()                                                                                              \
    if (access(real_file(), R_OK) != 0)                                                                               \
    LEASH_SKIP_OR_FAIL("the real GGUF file %s is absent (scripts/deps.sh --ref; or set LEASH_SMOLLM2_GGUF)", real_file())

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_ref(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' tests/ref/gguf_ref.py %s", LEASH_SRCDIR, gguf_python(), args);
    cr_assert_eq(system(cmd), 0, "the gguf reference failed: %s", cmd);
}

/* ---- dequantisation against gguf.quants.dequantize ----------------------------------------------- */

/* Every tensor of path dequantised by leash and by the gguf package (streamed through a pipe), compared as
 * bits; per type: tensors, values and differing values, printed. Returns the number of differing values. */
static long compare_dequant(const char *path, int per_tensor) {
    leash_gguf *g;
    cr_assert_eq(leash_gguf_open(&g, path), 0, "%s", leash_errmsg());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' tests/ref/gguf_ref.py dequant '%s'", LEASH_SRCDIR, gguf_python(), path);
    FILE *ref = popen(cmd, "r");
    cr_assert(ref, "cannot run %s", cmd);
    long tensors[64] = {0}, values[64] = {0}, differ[64] = {0}, total = 0;
    for (int i = 0; i < leash_gguf_num_tensors(g); i++) {
        const leash_gguf_tensor *t = leash_gguf_tensor_at(g, i);
        uint32_t *mine = malloc((size_t)t->numel * 4), *want = malloc((size_t)t->numel * 4);
        cr_assert(mine && want);
        cr_assert_eq(leash_gguf_read_f32(g, t, (float *)mine), 0, "%s", leash_errmsg());
        cr_assert_eq(fread(want, 4, (size_t)t->numel, ref), (size_t)t->numel, "the reference ended early at tensor '%s'", t->name);
        long d = 0;
        for (int64_t j = 0; j < t->numel; j++) d += mine[j] != want[j];
        if (d && per_tensor) {
            int64_t j = 0;
            while (mine[j] == want[j]) j++;
            fprintf(stderr, "gguf: %s: first difference at %lld: 0x%08x, the gguf package 0x%08x\n", t->name, (long long)j,
                    mine[j], want[j]);
        }
        if (per_tensor)
            cr_log_info("%-28s %-5s %10lld values, %ld differ\n", t->name, leash_ggml_type_name(t->type), (long long)t->numel, d);
        tensors[t->type]++, values[t->type] += t->numel, differ[t->type] += d, total += d;
        free(mine), free(want);
    }
    char extra;
    cr_assert_eq(fread(&extra, 1, 1, ref), 0, "the reference wrote more values than the file has");
    cr_assert_eq(pclose(ref), 0, "the gguf reference failed: %s", cmd);
    for (int k = 0; k < 64; k++)
        if (tensors[k])
            fprintf(stderr, "gguf: %s: %-5s %3ld tensors, %10ld values, %ld differ from gguf.quants.dequantize\n", path,
                    leash_ggml_type_name(k), tensors[k], values[k], differ[k]);
    leash_gguf_close(g);
    return total;
}

Test(gguf, dequantise_every_type_bit_exact, .timeout = 120) {
    NEED_GGUF_PACKAGE();
    char dir[] = "/tmp/leash-gguf-XXXXXX", path[128], args[256];
    cr_assert(mkdtemp(dir));
    for (int seed = 1; seed <= 3; seed++) {
        snprintf(path, sizeof path, "%s/synth-%d.gguf", dir, seed);
        snprintf(args, sizeof args, "synth '%s' %d", path, seed);
        run_ref(args);
        leash_gguf *g;
        cr_assert_eq(leash_gguf_open(&g, path), 0, "%s", leash_errmsg());
        cr_assert_eq(leash_gguf_num_tensors(g), 13, "every type leash reads, once");
        leash_gguf_close(g);
        long d = compare_dequant(path, 1);
        cr_assert_eq(d, 0, "%ld values differ from gguf.quants.dequantize (seed %d)", d, seed);
    }
}

Test(gguf, dequantise_real_file_bit_exact, .timeout = 300) {
    NEED_REAL_FILE();
    NEED_GGUF_PACKAGE();
    long d = compare_dequant(real_file(), 1);
    cr_assert_eq(d, 0, "%ld values of %s differ from gguf.quants.dequantize", d, real_file());
}

/* Half floats: every one of the 65536 bit patterns against the C compiler's own conversion. */
Test(gguf, f16_every_bit_pattern_exact) {
    long differ = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint8_t b[2] = {(uint8_t)h, (uint8_t)(h >> 8)};
        float mine, want;
        leash_ggml_dequantize(LEASH_GGML_F16, b, &mine, 1);
        _Float16 x;
        memcpy(&x, b, 2);
        want = (float)x;
        uint32_t a, c;
        memcpy(&a, &mine, 4), memcpy(&c, &want, 4);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) differ += !isnan(mine); // NaN stays NaN (its quiet bit may differ)
        else differ += a != c;
    }
    cr_assert_eq(differ, 0, "%ld half floats convert differently from _Float16", differ);
}

/* ---- the real model ------------------------------------------------------------------------------- */

Test(gguf, real_smollm2_loads_and_runs, .timeout = 300) {
    NEED_REAL_FILE();
    leash_gpt *m;
    double t0 = now();
    cr_assert_eq(leash_gpt_load(&m, real_file()), 0, "%s", leash_errmsg());
    double t1 = now();
    fprintf(stderr, "gguf: %s loaded in %.2f s (%zu parameters)\n", real_file(), t1 - t0, leash_gpt_num_params(m));
    const leash_gpt_config *c = leash_gpt_cfg(m);
    cr_assert_eq(c->arch, LEASH_ARCH_LLAMA);
    cr_assert_eq(c->n_layer, 30); cr_assert_eq(c->n_embd, 576); cr_assert_eq(c->n_head, 9);
    cr_assert_eq(leash_gpt_kv_heads(c), 3); cr_assert_eq(leash_gpt_mlp_width(c), 1536);
    cr_assert_eq(leash_gpt_head_size(c), 64); cr_assert_eq(c->vocab_size, 49152); cr_assert_eq(c->n_positions, 8192);
    cr_assert_eq(c->rope_theta, 100000.0f); cr_assert_eq(c->layer_norm_epsilon, 1e-5f); cr_assert_eq(c->untied_head, 0);
    cr_assert_eq(c->qkv_bias, 0); cr_assert_eq(c->bos_token_id, 1); cr_assert_eq(c->eos_token_id, 2);
    cr_assert_eq(c->rope_scaling, LEASH_ROPE_DEFAULT);
    cr_assert_str_eq(leash_gpt_source_dir(m) + strlen(leash_gpt_source_dir(m)) - 5, ".gguf");
    const int tokens[8] = {1, 9690, 198, 2683, 359, 253, 5356, 28};
    cr_assert_eq(leash_gpt_forward(m, tokens, NULL, 1, 8), 0, "%s", leash_errmsg());
    const float *z = leash_gpt_logits(m);
    double lo = 1e30, hi = -1e30;
    for (size_t i = 0; i < (size_t)8 * c->vocab_size; i++) {
        cr_assert(isfinite(z[i]), "logit %zu is %g", i, (double)z[i]);
        lo = fmin(lo, z[i]), hi = fmax(hi, z[i]);
    }
    fprintf(stderr, "gguf: forward of 8 tokens %.2f s, logits in [%.2f, %.2f]\n", now() - t1, lo, hi);
    leash_gpt_free(m);
}

/* ---- leash models written by the converter's rules load back bit for bit -------------------------- */

static void round_trip(const char *arch, leash_gpt_config cfg) {
    NEED_GGUF_PACKAGE();
    char dir[] = "/tmp/leash-gguf-XXXXXX", path[128], args[512];
    cr_assert(mkdtemp(dir));
    leash_gpt *m, *back;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_rng rng; // every parameter random, norms and biases too, so no permutation can hide
    leash_rng_seed(&rng, 7, 0);
    float *p = leash_gpt_params(m);
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) p[i] = (float)(2.0 * leash_rng_uniform(&rng) - 1.0);
    cr_assert_eq(leash_gpt_save(m, dir), 0, "%s", leash_errmsg());
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    snprintf(args, sizeof args, "convert %s '%s' '%s'", arch, dir, path);
    run_ref(args);
    cr_assert_eq(leash_gpt_load(&back, path), 0, "%s", leash_errmsg());
    const leash_gpt_config *b = leash_gpt_cfg(back);
    cr_assert_eq(b->arch, cfg.arch); cr_assert_eq(leash_gpt_kv_heads(b), leash_gpt_kv_heads(&cfg));
    cr_assert_eq(b->qkv_bias, cfg.qkv_bias); cr_assert_eq(b->untied_head, cfg.untied_head);
    cr_assert_eq(leash_gpt_num_tensors(back), leash_gpt_num_tensors(m));
    long differ = 0;
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i), *u = leash_gpt_tensor(back, i);
        cr_assert_str_eq(t->name, u->name);
        const uint32_t *x = (const uint32_t *)(leash_gpt_params(m) + t->offset), *y = (const uint32_t *)(leash_gpt_params(back) + u->offset);
        long d = 0;
        for (size_t j = 0; j < t->numel; j++) d += x[j] != y[j];
        if (d) fprintf(stderr, "gguf: %s round trip: '%s' differs in %ld of %zu values\n", arch, t->name, d, t->numel);
        differ += d;
    }
    fprintf(stderr, "gguf: %s round trip through the converter's layout: %zu parameters, %ld differ\n", arch,
            leash_gpt_num_params(m), differ);
    cr_assert_eq(differ, 0);
    leash_gpt_free(m), leash_gpt_free(back);
}

static const leash_gpt_config llama_cfg = {.vocab_size = 40, .n_positions = 32, .n_embd = 32, .n_layer = 2, .n_head = 4,
                                           .arch = LEASH_ARCH_LLAMA, .model_type = "llama", .n_kv_head = 2, .n_inner = 48,
                                           .untied_head = 1, .rope_theta = 10000.0f, .bos_token_id = 1, .eos_token_id = 2,
                                           .layer_norm_epsilon = 1e-5f};

Test(gguf, llama_round_trip_undoes_the_permutation, .timeout = 120) { round_trip("llama", llama_cfg); }

Test(gguf, mistral_round_trip, .timeout = 120) {
    leash_gpt_config c = llama_cfg;
    snprintf(c.model_type, sizeof c.model_type, "mistral");
    c.untied_head = 0;
    round_trip("mistral", c);
}

Test(gguf, qwen2_round_trip_with_biases, .timeout = 120) {
    leash_gpt_config c = llama_cfg;
    snprintf(c.model_type, sizeof c.model_type, "qwen2");
    c.qkv_bias = 1, c.rope_theta = 1000000.0f, c.layer_norm_epsilon = 1e-6f;
    round_trip("qwen2", c);
}

Test(gguf, gpt2_round_trip_transposes_conv1d, .timeout = 120) {
    leash_gpt_config c = {.vocab_size = 40, .n_positions = 16, .n_embd = 16, .n_layer = 2, .n_head = 2,
                          .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    round_trip("gpt2", c);
}

/* ---- bad files ------------------------------------------------------------------------------------ */

/* A byte buffer for writing GGUF files by hand. */
typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf;

static void put(buf *w, const void *p, size_t n) {
    if (w->n + n > w->cap) w->b = realloc(w->b, w->cap = 2 * (w->n + n) + 256);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void put_u32(buf *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(buf *w, uint64_t v) { put(w, &v, 8); }
static void put_str(buf *w, const char *s) { put_u64(w, strlen(s)), put(w, s, strlen(s)); }
static void kv_u32(buf *w, const char *k, uint32_t v) { put_str(w, k), put_u32(w, LEASH_GGUF_UINT32), put_u32(w, v); }
static void kv_f32(buf *w, const char *k, float v) { put_str(w, k), put_u32(w, LEASH_GGUF_FLOAT32), put(w, &v, 4); }

/* Byte positions of fields in the tiny file, for the malicious variants. */
typedef struct {
    size_t n_kv, info0_ndims, info0_type, info0_offset, info1_offset, data;
} layout;

/* A tiny llama GGUF (V 16, C 8, 1 layer, 2 heads, 1 kv head, I 16; F32 data) with extra_key (a uint32 key,
 * or NULL) added. */
static buf tiny_llama(const char *extra_key, layout *at) {
    static const struct {
        const char *name;
        int64_t ne0, ne1;
    } t[] = {{"token_embd.weight", 8, 16},     {"blk.0.attn_norm.weight", 8, 1}, {"blk.0.attn_q.weight", 8, 8},
             {"blk.0.attn_k.weight", 8, 4},    {"blk.0.attn_v.weight", 8, 4},    {"blk.0.attn_output.weight", 8, 8},
             {"blk.0.ffn_norm.weight", 8, 1},  {"blk.0.ffn_gate.weight", 8, 16}, {"blk.0.ffn_up.weight", 8, 16},
             {"blk.0.ffn_down.weight", 16, 8}, {"output_norm.weight", 8, 1}};
    int nt = (int)(sizeof t / sizeof t[0]);
    buf w = {0};
    layout l;
    put(&w, "GGUF", 4), put_u32(&w, 3), put_u64(&w, (uint64_t)nt);
    l.n_kv = w.n;
    put_u64(&w, extra_key ? 11 : 10);
    put_str(&w, "general.architecture"), put_u32(&w, LEASH_GGUF_STRING), put_str(&w, "llama");
    kv_u32(&w, "llama.context_length", 32), kv_u32(&w, "llama.embedding_length", 8), kv_u32(&w, "llama.block_count", 1);
    kv_u32(&w, "llama.feed_forward_length", 16), kv_u32(&w, "llama.attention.head_count", 2);
    kv_u32(&w, "llama.attention.head_count_kv", 1), kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_f32(&w, "llama.rope.freq_base", 10000.0f), kv_u32(&w, "llama.vocab_size", 16);
    if (extra_key) kv_u32(&w, extra_key, 1);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        put_str(&w, t[i].name);
        if (i == 0) l.info0_ndims = w.n;
        put_u32(&w, t[i].ne1 > 1 ? 2 : 1), put_u64(&w, (uint64_t)t[i].ne0);
        if (t[i].ne1 > 1) put_u64(&w, (uint64_t)t[i].ne1);
        if (i == 0) l.info0_type = w.n;
        put_u32(&w, LEASH_GGML_F32);
        if (i < 2) *(i ? &l.info1_offset : &l.info0_offset) = w.n;
        put_u64(&w, off);
        off += ((uint64_t)(t[i].ne0 * t[i].ne1) * 4 + 31) / 32 * 32;
    }
    while (w.n % 32) put(&w, "", 1);
    l.data = w.n;
    leash_rng rng;
    leash_rng_seed(&rng, 3, 0);
    for (int i = 0; i < nt; i++) {
        for (int64_t j = 0; j < t[i].ne0 * t[i].ne1; j++) {
            float v = (float)(leash_rng_uniform(&rng) - 0.5);
            put(&w, &v, 4);
        }
        while ((w.n - l.data) % 32) put(&w, "", 1);
    }
    if (at) *at = l;
    return w;
}

static int load_tiny(const char *path, leash_gpt **out) {
    leash_gpt *m = NULL;
    int rc = leash_gpt_load(&m, path);
    if (out) *out = m;
    else leash_gpt_free(m);
    return rc;
}

/* Writes w to path and loads it: the load must fail with a message naming the file and containing want. */
static void expect_error(const char *path, const buf *w, const char *want) {
    cr_assert_eq(leash_write_file_atomic(path, w->b, w->n), 0);
    int rc = leash_gguf_is_file(path) ? load_tiny(path, NULL) : LEASH_OK;
    cr_assert_neq(rc, LEASH_OK, "a bad file loaded (expected an error about '%s')", want);
    cr_assert(strstr(leash_errmsg(), path), "the message does not name the file: %s", leash_errmsg());
    cr_assert(strstr(leash_errmsg(), want), "the message does not say '%s': %s", want, leash_errmsg());
}

static void patch_u64(buf *w, size_t at, uint64_t v) { memcpy(w->b + at, &v, 8); }
static void patch_u32(buf *w, size_t at, uint32_t v) { memcpy(w->b + at, &v, 4); }

Test(gguf, tiny_file_loads_and_bad_headers_are_named) {
    char dir[] = "/tmp/leash-gguf-XXXXXX", path[128];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    layout at;
    buf good = tiny_llama(NULL, &at), w;
    cr_assert_eq(leash_write_file_atomic(path, good.b, good.n), 0);
    leash_gpt *m;
    cr_assert_eq(load_tiny(path, &m), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_kv_heads(leash_gpt_cfg(m)), 1);
    cr_assert_eq(leash_gpt_cfg(m)->untied_head, 0);
    leash_gpt_free(m);
#define VARIANT(stmt, want) (w = tiny_llama(NULL, NULL), stmt, expect_error(path, &w, want), free(w.b))
    VARIANT(patch_u64(&w, at.info0_offset, 64 * 1024), "outside");                  // data past the end
    VARIANT(patch_u64(&w, at.info0_offset, 4), "not a multiple of the alignment");   // misaligned
    VARIANT(patch_u64(&w, at.info1_offset, 0), "overlap");                          // two tensors on the same bytes
    VARIANT(patch_u32(&w, at.info0_ndims, 5), "n_dims = 5");                         // too many dimensions
    VARIANT(patch_u32(&w, at.info0_type, 99), "ggml type 99");                       // unknown type, named
    VARIANT(patch_u32(&w, at.info0_type, 16), "IQ2_XXS");                            // a ggml type leash does not read
    VARIANT(patch_u64(&w, at.n_kv, (uint64_t)1 << 40), "key/value count");          // a count that cannot fit
    VARIANT(patch_u64(&w, at.n_kv + 8, (uint64_t)1 << 50), "longer than the rest"); // a string length that lies
    VARIANT(patch_u32(&w, 4, 1), "version 1");
    VARIANT(patch_u32(&w, 4, 0x03000000), "big-endian");
    VARIANT(patch_u64(&w, at.info0_ndims + 4, 0), "ne[0] = 0");
    VARIANT(patch_u64(&w, at.info0_ndims + 12, (uint64_t)1 << 62), "overflows");
#undef VARIANT
    // keys: unknown math-changing keys are named; duplicates refused; harmless namespaces accepted
    w = tiny_llama("llama.attention.logit_softcapping", NULL), expect_error(path, &w, "llama.attention.logit_softcapping"), free(w.b);
    w = tiny_llama("llama.rope.dimension_count", NULL), expect_error(path, &w, "rope.dimension_count"), free(w.b);
    w = tiny_llama("llama.block_count", NULL), expect_error(path, &w, "appears twice"), free(w.b);
    w = tiny_llama("llama.expert_count", NULL), expect_error(path, &w, "expert"), free(w.b);
    w = tiny_llama("general.quantization_version", NULL);
    cr_assert_eq(leash_write_file_atomic(path, w.b, w.n), 0);
    free(w.b);
    cr_assert_eq(load_tiny(path, NULL), 0, "a harmless key was refused: %s", leash_errmsg());
    free(good.b);
}

/* Every truncation and 400 random byte changes: no crash; each failure names the file. */
Test(gguf, every_truncation_and_byte_change, .timeout = 600) {
    char dir[] = "/tmp/leash-gguf-XXXXXX", path[128];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    buf good = tiny_llama(NULL, NULL);
    uint8_t *bad = malloc(good.n);
    long tried = 0, loaded = 0;
    leash_rng rng;
    leash_rng_seed(&rng, 11, 0);
    for (size_t k = 0; k < good.n + 400; k++) {
        size_t n = k < good.n ? k : good.n;
        memcpy(bad, good.b, good.n);
        if (k >= good.n) bad[(size_t)(leash_rng_uniform(&rng) * good.n)] = (uint8_t)(leash_rng_uniform(&rng) * 256);
        cr_assert_eq(leash_write_file_atomic(path, bad, n), 0);
        leash_gguf *g;
        int rc = leash_gguf_open(&g, path);
        if (!rc) {
            for (int i = 0; i < leash_gguf_num_tensors(g); i++) { // reading every tensor stays inside the file
                const leash_gguf_tensor *t = leash_gguf_tensor_at(g, i);
                float *x = malloc((size_t)t->numel * sizeof *x);
                cr_assert_eq(leash_gguf_read_f32(g, t, x), 0);
                free(x);
            }
            leash_gguf_close(g);
            rc = load_tiny(path, NULL);
        }
        tried++, loaded += rc == LEASH_OK;
        if (rc) cr_assert(strstr(leash_errmsg(), path), "(%zu bytes, change %zu) the message does not name the file: %s", n,
                          k, leash_errmsg());
    }
    fprintf(stderr, "gguf: tiny file of %zu bytes: %ld truncated or changed copies, %ld loaded, %ld clear errors\n", good.n,
            tried, loaded, tried - loaded);
    free(bad), free(good.b);
}

/* LoRA on a GGUF base: the adapters' adapter_config.json names the file (leash_gpt_source_dir), and the
 * saved adapters load back onto it. */
Test(gguf, lora_adapters_on_a_gguf_base) {
    char dir[] = "/tmp/leash-gguf-XXXXXX", path[128], out[160];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    snprintf(out, sizeof out, "%s/adapter", dir);
    buf w = tiny_llama(NULL, NULL);
    cr_assert_eq(leash_write_file_atomic(path, w.b, w.n), 0);
    free(w.b);
    leash_gpt *m, *back;
    cr_assert_eq(leash_gpt_load_lora(&m, path, 2, 4.0f, 0.0f, "all-linear", 5), 0, "%s", leash_errmsg());
    cr_assert(strstr(leash_gpt_source_dir(m), "tiny.gguf"), "source: %s", leash_gpt_source_dir(m));
    float *p = leash_gpt_trainable(m); // non-zero B, so the adapters matter
    for (size_t i = 0; i < leash_gpt_num_trainable(m); i++) p[i] = 0.01f * (float)(i % 17);
    cr_assert_eq(leash_gpt_save(m, out), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&back, out), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_num_params(back), leash_gpt_num_params(m));
    cr_assert(!memcmp(leash_gpt_params(back), leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float)),
              "the adapters and their GGUF base did not load back bit for bit");
    leash_gpt_free(m), leash_gpt_free(back);
}
