/* A small, fast, reproducible random number generator (xoshiro256**, seeded through splitmix64).
 *
 * Every stream is a pure function of (seed, stream id), so a sequence can own its own stream and its
 * samples do not depend on which other sequences share its batch or on the thread count.
 */
#ifndef LEASH_RNG_H
#define LEASH_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} leash_rng;

/* Seeds stream `stream` of seed `seed`; distinct (seed, stream) pairs give independent streams. */
void leash_rng_seed(leash_rng *rng, uint64_t seed, uint64_t stream);

uint64_t leash_rng_next(leash_rng *rng);

/* Uniform double in [0, 1) with 53 random bits. */
double leash_rng_uniform(leash_rng *rng);

/* Standard normal (Box-Muller; uses two uniforms per call, no hidden state). */
double leash_rng_normal(leash_rng *rng);

/* Index i drawn with probability p[i] / sum(p) from n non-negative weights (inverse CDF, float64
 * accumulation). Returns n - 1 for the last positive weight if rounding leaves u past the total. */
int leash_rng_categorical(leash_rng *rng, const double *p, int n);

#endif
