/* Benchmark of the KL core: exact KL with gradient and log-softmax over large vocabularies, side by
 * side with a bandwidth floor (one read-only pass over the same bytes) and, where Debian's
 * python3-torch is installed, PyTorch on the same shapes and thread count. Prints times and ratios;
 * asserts nothing about speed. Dimensions: N rows, V vocabulary. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "leash/error.h"
#include "leash/kl.h"
#include "leash/rng.h"

#include "bench.h"

/* The floor: read both (N, V) rows once and write one row, as the gradient pass must. */
static double floor_pass(const float *a, const float *b, float *out, int N, int V) {
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int n = 0; n < N; n++) {
        double s = 0.0;
        for (int v = 0; v < V; v++) {
            size_t i = (size_t)n * V + v;
            out[i] = a[i] - b[i];
            s += out[i];
        }
        total += s;
    }
    return total;
}

typedef struct {
    double kl_grad, kl, log_softmax, floor;
} timings;

static timings time_leash(int N, int V, int reps) {
    size_t sz = (size_t)N * V;
    float *z = malloc(sz * sizeof *z), *r = malloc(sz * sizeof *r), *g = malloc(sz * sizeof *g);
    double *kl = malloc(N * sizeof *kl), sink = 0.0;
    leash_rng rng;
    leash_rng_seed(&rng, 0, 0);
    for (size_t i = 0; i < sz; i++) z[i] = (float)(leash_rng_uniform(&rng) * 20 - 10), r[i] = (float)(leash_rng_uniform(&rng) * 20 - 10);
    timings t = {INFINITY, INFINITY, INFINITY, INFINITY};
    for (int k = 0; k <= reps; k++) { // k = 0 warms up
        double t0 = bench_now();
        if (leash_kl_exact_rows(z, r, N, V, 1.0f, kl, g)) {
            fprintf(stderr, "bench_kl: %s\n", leash_errmsg());
            exit(1);
        }
        double t1 = bench_now();
        if (leash_kl_exact_rows(z, r, N, V, 1.0f, kl, NULL)) exit(1);
        double t2 = bench_now();
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) leash_log_softmax(z + (size_t)n * V, V, 1.0f, g + (size_t)n * V, NULL);
        double t3 = bench_now();
        sink += floor_pass(z, r, g, N, V);
        double t4 = bench_now();
        if (k == 0) continue;
        t.kl_grad = fmin(t.kl_grad, t1 - t0);
        t.kl = fmin(t.kl, t2 - t1);
        t.log_softmax = fmin(t.log_softmax, t3 - t2);
        t.floor = fmin(t.floor, t4 - t3);
    }
    if (sink == 12345.678) puts(""); // keep the floor pass alive
    free(z), free(r), free(g), free(kl);
    return t;
}

/* PyTorch on the same shape and threads; 0 when python3-torch is not installed. */
static int time_torch(int N, int V, int threads, int reps, double *kl_grad, double *lsm) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, TORCH_ENV "/usr/bin/python3 bench/ref_kl.py %d %d %d %d 2>/dev/null", N, V, threads, reps);
    FILE *f = popen(cmd, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%lf %lf", kl_grad, lsm) == 2;
    return pclose(f) == 0 && ok;
}

int main(void) {
    int threads = omp_get_max_threads(), reps = 5;
    int have_torch = system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
    printf("exact KL(pi || pi_ref) with d/dlogits, N rows x V vocabulary, %d thread(s), best of %d\n", threads, reps);
    if (!have_torch) printf("(PyTorch column skipped: /usr/bin/python3 cannot import torch; apt-get install python3-torch)\n");
    printf("%6s %7s | %10s %10s %10s %10s | %9s %9s | %10s %9s\n", "N", "V", "kl+grad ms", "kl ms", "lsm ms", "floor ms",
           "grad/flr", "ns/elem", "torch ms", "torch/us");
    const int shapes[][2] = {{64, 50257}, {16, 262144}, {512, 2048}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], V = shapes[s][1];
        timings t = time_leash(N, V, reps);
        double tk = 0, tl = 0;
        int ok = have_torch && time_torch(N, V, threads, reps, &tk, &tl);
        printf("%6d %7d | %10.3f %10.3f %10.3f %10.3f | %9.2f %9.2f |", N, V, 1e3 * t.kl_grad, 1e3 * t.kl,
               1e3 * t.log_softmax, 1e3 * t.floor, t.kl_grad / t.floor, 1e9 * t.kl_grad / ((double)N * V));
        if (ok)
            printf(" %10.3f %9.2f\n", 1e3 * tk, tk / t.kl_grad);
        else
            printf(" %10s %9s\n", "-", "-");
    }
    printf("grad/flr: exact KL with gradient over one read-and-write pass of the same bytes (1 = bandwidth bound).\n"
           "torch/us: PyTorch time over leash time for the same KL with gradient (> 1: leash is faster).\n");
    return 0;
}
