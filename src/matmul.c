/* The one F32 matrix-product function: everything goes through OpenBLAS sgemm. See include/leash/ops.h.
 * It also counts the time and FLOPs it spends (two clock reads per call), so benchmarks can say how
 * close the products inside a training step come to OpenBLAS alone (matmul_stats.h, not public). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <time.h>

#include "leash/ops.h"
#include "matmul_stats.h"

static double sgemm_seconds, sgemm_flops; // called from serial code only: no race
static leash_sgemm_shape *rec;
static int rec_max, rec_n;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void leash_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
    sgemm_seconds += now() - t0;
    sgemm_flops += 2.0 * M * N * K;
    if (rec && rec_n < rec_max) rec[rec_n++] = (leash_sgemm_shape){trans_a, trans_b, M, N, K};
}

int leash_sgemm_record(leash_sgemm_shape *shapes, int max) {
    int n = rec_n;
    if (shapes != rec) rec_n = 0;
    rec = shapes;
    rec_max = max;
    return shapes ? rec_n : n;
}

void leash_sgemm_stats(double *seconds, double *flops, int reset) {
    if (seconds) *seconds = sgemm_seconds;
    if (flops) *flops = sgemm_flops;
    if (reset) sgemm_seconds = sgemm_flops = 0.0;
}
