/* Vectorisable math for the hot loops, and the multiversioning that lets them use the CPU's widest
 * vectors. Internal to the library.
 *
 * glibc's exp, expf and tanhf are scalar calls that stop a loop from vectorising (without -ffast-math,
 * which leash does not use); these are small polynomial versions that the compiler vectorises, with
 * their accuracy stated and tested.
 */
#ifndef LEASH_VECMATH_H
#define LEASH_VECMATH_H

#include <stdint.h>
#include <string.h>

/* Hot functions are compiled three times, for baseline x86-64 (SSE2), AVX2 and AVX-512, and the loader
 * picks the widest the CPU has (GCC function multiversioning). The choice is fixed per machine, so a
 * binary is bit-reproducible on its machine. Helpers they call are always inlined so that they are
 * compiled for the same target. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define VEC_KERNEL __attribute__((target_clones("default", "avx2", "arch=x86-64-v4")))
#else
#define VEC_KERNEL
#endif
#define VEC_HELPER static inline __attribute__((always_inline))

/* exp(x) for x <= 0 in float64, written so that loops over a row vectorise (glibc's exp does not
 * without -ffast-math): x = n ln2 + r with |r| <= ln2/2 (Cody-Waite), exp(r) by its Taylor series to
 * degree 13 (truncation < 5e-18), times 2^n built from the exponent bits. Relative error ~2e-16.
 * Below -708 it returns 0: such a term is under 1e-307 next to the row's largest term, which is 1. */
VEC_HELPER double exp_nonpos(double x) {
    const double shifter = 0x1.8p52, log2e = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    double xc = x < -708.0 ? -708.0 : x;
    double t = xc * log2e + shifter; // round(x / ln2) sits in the low bits of t
    double n = t - shifter;
    double r = (xc - n * ln2_hi) - n * ln2_lo;
    double p = 1.0 / 6227020800.0; // 1/13!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4338000000000000ull + 1023) << 52; // 2^n, n in [-1022, 0]
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -708.0 ? 0.0 : p * scale;
}

/* exp(x) for x <= 0 in float32: the same scheme with a degree-6 Taylor series on |r| <= ln2/2
 * (truncation < 3e-8); relative error ~2 ulp. Below -87 it returns 0. */
VEC_HELPER float expf_nonpos(float x) {
    const float shifter = 0x1.8p23f, log2e = 0x1.715476p0f;
    const float ln2_hi = 0x1.62e400p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    float xc = x < -87.0f ? -87.0f : x;
    float t = xc * log2e + shifter; // round(x / ln2) in the low mantissa bits
    float n = t - shifter;
    float r = (xc - n * ln2_hi) - n * ln2_lo;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000u + 127u) << 23; // 2^n, n in [-126, 0]
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

/* tanh(x) in float32 from expf_nonpos: sign(x) (1 - e) / (1 + e) with e = exp(-2|x|); absolute error
 * below 1e-7, which is what GELU's 1 + tanh needs. */
VEC_HELPER float tanhf_vec(float x) {
    float ax = x < 0.0f ? -x : x;
    float e = expf_nonpos(-2.0f * ax);
    float t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}

#endif
