/* The benchmark hooks of leash_sgemm (src/matmul.c): the time and FLOPs its products take, and the shapes it
 * was called with, for benchmarks (bench/bench_gpt.c) that compare the products inside a training step with
 * OpenBLAS alone. Not a public header: not part of the library's API. */
#ifndef LEASH_MATMUL_STATS_H
#define LEASH_MATMUL_STATS_H

/* Seconds and floating-point operations spent in leash_sgemm since the last reset. reset != 0 zeroes them. */
void leash_sgemm_stats(double *seconds, double *flops, int reset);

typedef struct {
    int trans_a, trans_b, M, N, K;
} leash_sgemm_shape;

/* Records the shapes of the following leash_sgemm calls into shapes (up to max; shapes = NULL stops).
 * Returns how many calls were recorded since recording started. */
int leash_sgemm_record(leash_sgemm_shape *shapes, int max);

#endif
