/* xoshiro256** (Blackman and Vigna, 2018) seeded with splitmix64. See include/leash/rng.h. */
#include "leash/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void leash_rng_seed(leash_rng *rng, uint64_t seed, uint64_t stream) {
    // mix the stream id through splitmix first so that nearby (seed, stream) pairs do not share state
    uint64_t x = seed;
    uint64_t y = stream ^ 0xD1B54A32D192ED03ull;
    x ^= splitmix64(&y);
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

uint64_t leash_rng_next(leash_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double leash_rng_uniform(leash_rng *rng) { return (double)(leash_rng_next(rng) >> 11) * 0x1.0p-53; }

double leash_rng_normal(leash_rng *rng) {
    double u1 = 1.0 - leash_rng_uniform(rng); // (0, 1]: log is finite
    double u2 = leash_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

int leash_rng_categorical(leash_rng *rng, const double *p, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += p[i];
    double u = leash_rng_uniform(rng) * total, c = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] <= 0.0) continue;
        c += p[i];
        last = i;
        if (u < c) return i;
    }
    return last;
}
