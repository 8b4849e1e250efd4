/* ggml's tensor types and their dequantisation to F32: see include/leash/gguf.h.
 *
 * Block layouts (ggml-common.h; every multi-byte field little-endian, d/dmin are IEEE half floats):
 *   Q4_0  {d; qs[16]}                    32 values: (nibble - 8) d; low nibbles are values 0..15, high 16..31
 *   Q4_1  {d, m; qs[16]}                 nibble d + m
 *   Q5_0  {d; qh[4]; qs[16]}             (nibble | bit j of qh << 4) - 16, times d
 *   Q5_1  {d, m; qh[4]; qs[16]}          (nibble | high bit) d + m
 *   Q8_0  {d; qs[32] int8}               q d
 *   Q2_K  {scales[16]; qs[64]; d, dmin}  256 values in 16 groups of 16: d (sc & 15) q - dmin (sc >> 4)
 *   Q3_K  {hmask[32]; qs[64]; scales[12]; d}   16 groups, 6-bit signed scales (- 32), q = 2 bits - 4 unless hmask bit
 *   Q4_K  {d, dmin; scales[12]; qs[128]} 8 groups of 32, 6-bit scales and mins
 *   Q5_K  {d, dmin; scales[12]; qh[32]; qs[128]}
 *   Q6_K  {ql[128]; qh[64]; scales[16] int8; d}  16 groups of 16, q = 6 bits - 32
 * Each value is computed with the same float32 operations in the same order as ggml's dequantize_row_*, one
 * operation per statement (no contraction into a fused multiply-add), so the results are bit-exact. */
#include <stdint.h>
#include <string.h>

#include "leash/gguf.h"

static const char *const type_names[] = {
    [0] = "F32",      [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",   [6] = "Q5_0",    [7] = "Q5_1",
    [8] = "Q8_0",     [9] = "Q8_1",    [10] = "Q2_K",   [11] = "Q3_K",  [12] = "Q4_K",   [13] = "Q5_K",
    [14] = "Q6_K",    [15] = "Q8_K",   [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S",
    [20] = "IQ4_NL",  [21] = "IQ3_S",  [22] = "IQ2_S",  [23] = "IQ4_XS", [24] = "I8",     [25] = "I16",
    [26] = "I32",     [27] = "I64",    [28] = "F64",    [29] = "IQ1_M", [30] = "BF16",   [34] = "TQ1_0",
    [35] = "TQ2_0",   [39] = "MXFP4"};

const char *leash_ggml_type_name(int type) {
    return type >= 0 && type < (int)(sizeof type_names / sizeof type_names[0]) ? type_names[type] : NULL;
}

int leash_ggml_type_block(int type, int *block_values, int *block_bytes) {
    int v = 0, b = 0;
    switch (type) {
    case LEASH_GGML_F32: v = 1, b = 4; break;
    case LEASH_GGML_F16: v = 1, b = 2; break;
    case LEASH_GGML_BF16: v = 1, b = 2; break;
    case LEASH_GGML_Q4_0: v = 32, b = 18; break;
    case LEASH_GGML_Q4_1: v = 32, b = 20; break;
    case LEASH_GGML_Q5_0: v = 32, b = 22; break;
    case LEASH_GGML_Q5_1: v = 32, b = 24; break;
    case LEASH_GGML_Q8_0: v = 32, b = 34; break;
    case LEASH_GGML_Q2_K: v = 256, b = 84; break;
    case LEASH_GGML_Q3_K: v = 256, b = 110; break;
    case LEASH_GGML_Q4_K: v = 256, b = 144; break;
    case LEASH_GGML_Q5_K: v = 256, b = 176; break;
    case LEASH_GGML_Q6_K: v = 256, b = 210; break;
    default: break;
    }
    *block_values = v, *block_bytes = b;
    return v != 0;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* IEEE half to float, exactly: normals rebias the exponent, subnormals are normalised, Inf and NaN keep
 * their payload (as ggml_compute_fp16_to_fp32 does). */
static float half(const uint8_t *p) {
    uint32_t h = u16(p), sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | man << 13);
    if (exp != 0) return bits_f32(sign | (exp + 112) << 23 | man << 13);
    if (man == 0) return bits_f32(sign);
    int e = 113; // a subnormal man * 2^-24: shift the leading 1 into the implicit bit
    while (!(man & 0x400)) man <<= 1, e--;
    return bits_f32(sign | (uint32_t)e << 23 | (man & 0x3ff) << 13);
}

/* Q4_0, Q4_1, Q5_0, Q5_1: one block of 32; d scale, m offset (Q4_1/Q5_1), qh high bits (Q5). */
static void q4_5(const uint8_t *b, float *y, int has_min, int has_high) {
    float d = half(b), m = has_min ? half(b + 2) : 0.0f;
    const uint8_t *p = b + (has_min ? 4 : 2);
    uint32_t qh = 0;
    if (has_high) qh = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24, p += 4;
    int bias = has_min ? 0 : (has_high ? 16 : 8);
    for (int j = 0; j < 16; j++) {
        int x0 = p[j] & 0x0f, x1 = p[j] >> 4;
        if (has_high) x0 |= (int)((qh >> j) << 4 & 0x10), x1 |= (int)((qh >> (j + 12)) & 0x10);
        float a = (float)(x0 - bias) * d, c = (float)(x1 - bias) * d;
        if (has_min) a = a + m, c = c + m;
        y[j] = a, y[j + 16] = c;
    }
}

static void q8_0(const uint8_t *b, float *y) {
    float d = half(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    float d = half(b + 80), dmin = half(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int half16 = 0; half16 < 2; half16++, is++) {
                float dl = d * (float)(sc[is] & 0xf), ml = dmin * (float)(sc[is] >> 4);
                for (int l = 0; l < 16; l++) {
                    float v = dl * (float)((q[l + 16 * half16] >> shift) & 3);
                    *y++ = v - ml;
                }
            }
}

/* Q3_K's 16 6-bit scales: low 4 bits in bytes 0..7 (low nibbles first), high 2 bits in bytes 8..11. */
static void q3_k_scales(const uint8_t *s, int *out) {
    for (int i = 0; i < 16; i++) {
        int lo = (i < 8 ? s[i] : s[i - 8] >> 4) & 0xf, hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (lo | hi << 4) - 32;
    }
}

static void q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32;
    float d = half(b + 108);
    int sc[16], is = 0;
    q3_k_scales(b + 96, sc);
    uint8_t mbit = 1;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2, mbit = (uint8_t)(mbit << 1))
            for (int half16 = 0; half16 < 2; half16++, is++) {
                float dl = d * (float)sc[is];
                for (int l = 16 * half16; l < 16 * half16 + 16; l++)
                    *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & mbit) ? 0 : 4));
            }
}

/* Q4_K and Q5_K's 8 6-bit scales and mins (ggml's get_scale_min_k4). */
static void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) *d = q[j] & 63, *m = q[j + 4] & 63;
    else *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
}

/* Q4_K (qh NULL) and Q5_K. */
static void q45_k(const uint8_t *b, float *y, int five) {
    float d = half(b), dmin = half(b + 2);
    const uint8_t *scales = b + 4, *qh = five ? b + 16 : NULL, *ql = b + (five ? 48 : 16);
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < 256; j += 64, ql += 32, is += 2, u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2)) {
        int sc, mn;
        scale_min_k4(is, scales, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(is + 1, scales, &sc, &mn);
        float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) {
            float v = d1 * (float)((ql[l] & 0xf) + (qh && (qh[l] & u1) ? 16 : 0));
            *y++ = v - m1;
        }
        for (int l = 0; l < 32; l++) {
            float v = d2 * (float)((ql[l] >> 4) + (qh && (qh[l] & u2) ? 16 : 0));
            *y++ = v - m2;
        }
    }
}

static void q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = half(b + 208);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32, q2 = ((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32;
            int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32, q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            float s1 = d * (float)sc[is], s2 = d * (float)sc[is + 2], s3 = d * (float)sc[is + 4], s4 = d * (float)sc[is + 6];
            y[l] = s1 * (float)q1, y[l + 32] = s2 * (float)q2, y[l + 64] = s3 * (float)q3, y[l + 96] = s4 * (float)q4;
        }
}

void leash_ggml_dequantize(int type, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    int bv, bb;
    if (!leash_ggml_type_block(type, &bv, &bb)) return;
    if (type == LEASH_GGML_F32) { // (little-endian hosts, like ggml)
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    for (int64_t i = 0; i < n / bv; i++, s += bb, dst += bv) switch (type) {
        case LEASH_GGML_F32: memcpy(dst, s, 4); break;
        case LEASH_GGML_F16: *dst = half(s); break;
        case LEASH_GGML_BF16: *dst = bits_f32((uint32_t)u16(s) << 16); break;
        case LEASH_GGML_Q4_0: q4_5(s, dst, 0, 0); break;
        case LEASH_GGML_Q4_1: q4_5(s, dst, 1, 0); break;
        case LEASH_GGML_Q5_0: q4_5(s, dst, 0, 1); break;
        case LEASH_GGML_Q5_1: q4_5(s, dst, 1, 1); break;
        case LEASH_GGML_Q8_0: q8_0(s, dst); break;
        case LEASH_GGML_Q2_K: q2_k(s, dst); break;
        case LEASH_GGML_Q3_K: q3_k(s, dst); break;
        case LEASH_GGML_Q4_K: q45_k(s, dst, 0); break;
        case LEASH_GGML_Q5_K: q45_k(s, dst, 1); break;
        case LEASH_GGML_Q6_K: q6_k(s, dst); break;
        }
}
