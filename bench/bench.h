/* What the benchmarks share: the clock, and how they run their PyTorch references. */
#ifndef LEASH_BENCH_H
#define LEASH_BENCH_H

#include <time.h>

/* PyTorch's OpenMP workers busy-wait between operations by default, and on a small machine they then fight
 * its other thread pool for the cores (shared/PERF.md: up to 2.6x slower; 4.7x measured here on the Llama
 * shapes). The references run as their users should run them on CPU: with passive waiting. Prefix of every
 * reference's command line. */
#define TORCH_ENV "OMP_WAIT_POLICY=PASSIVE "

/* Seconds on a monotonic clock. */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#endif
