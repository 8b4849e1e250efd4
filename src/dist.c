/* Data-parallel collectives over MPI, or one process without it: see include/leash/dist.h. */
#define _POSIX_C_SOURCE 200809L
#include "leash/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "leash/error.h"

uint64_t leash_hash64(const void *buf, size_t n) {
    // 64-bit words mixed with a multiply-xorshift (fast enough to run over a whole model every step)
    const unsigned char *p = buf;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    return h;
}

#ifdef LEASH_MPI
#include <mpi.h>

static int g_rank = 0, g_size = 1, g_started = 0;

int leash_dist_built(void) { return 1; }

int leash_dist_init(int *argc, char ***argv) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init(argc, argv) != MPI_SUCCESS) return leash_fail(LEASH_EIO, "MPI_Init failed");
    g_started = !inited;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    return LEASH_OK;
}

void leash_dist_finalize(void) {
    if (g_started) MPI_Finalize();
    g_started = 0;
}

int leash_dist_rank(void) { return g_rank; }
int leash_dist_size(void) { return g_size; }

static double timeout_s(void) {
    const char *e = getenv("LEASH_DIST_TIMEOUT");
    double t = e ? atof(e) : 600.0;
    return t > 0 ? t : 600.0;
}

/* One nonblocking collective, waited for with a deadline: a rank that died or hangs cannot hang us. */
static int wait_for(MPI_Request *req, const char *op, const char *what) {
    struct timespec t0, now, nap = {0, 200000}; // 0.2 ms between polls
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double limit = timeout_s();
    for (;;) {
        int done = 0;
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return leash_fail(LEASH_EIO, "MPI %s of %s failed", op, what);
        if (done) return LEASH_OK;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) + 1e-9 * (now.tv_nsec - t0.tv_nsec) > limit) {
            fprintf(stderr, "\nleash: rank %d of %d: no answer from the other ranks for %.0f s in the %s of %s: a rank died or "
                            "hangs; stopping the job (set LEASH_DIST_TIMEOUT=SECONDS to wait longer)\n",
                    g_rank, g_size, limit, op, what);
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, 3);
        }
        nanosleep(&nap, NULL);
    }
}

static int allreduce(void *buf, size_t n, MPI_Datatype type, size_t size, MPI_Op op, const char *what) {
    if (g_size == 1) return LEASH_OK;
    const size_t chunk = (size_t)1 << 28; // MPI counts are int
    for (size_t off = 0; off < n; off += chunk) {
        int count = (int)(n - off < chunk ? n - off : chunk);
        MPI_Request req;
        if (MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * size, count, type, op, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
            return leash_fail(LEASH_EIO, "MPI allreduce of %s failed", what);
        int rc = wait_for(&req, "sum", what);
        if (rc) return rc;
    }
    return LEASH_OK;
}

int leash_dist_sum_f32(float *buf, size_t n, const char *what) { return allreduce(buf, n, MPI_FLOAT, 4, MPI_SUM, what); }
int leash_dist_sum_f64(double *buf, size_t n, const char *what) { return allreduce(buf, n, MPI_DOUBLE, 8, MPI_SUM, what); }
int leash_dist_sum_i32(int *buf, size_t n, const char *what) { return allreduce(buf, n, MPI_INT, 4, MPI_SUM, what); }
int leash_dist_sum_i64(int64_t *buf, size_t n, const char *what) { return allreduce(buf, n, MPI_INT64_T, 8, MPI_SUM, what); }
int leash_dist_max_f64(double *buf, size_t n, const char *what) { return allreduce(buf, n, MPI_DOUBLE, 8, MPI_MAX, what); }

int leash_dist_check_same(const void *buf, size_t n, const char *what, uint64_t *hash) {
    uint64_t h = leash_hash64(buf, n);
    if (hash) *hash = h;
    if (g_size == 1) return LEASH_OK;
    uint64_t mm[2] = {h, ~h}; // max of h and max of ~h (= ~min h): equal on all ranks iff every h is
    MPI_Request req;
    if (MPI_Iallreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return leash_fail(LEASH_EIO, "MPI check of %s failed", what);
    int rc = wait_for(&req, "check", what);
    if (rc) return rc;
    if (mm[0] != ~mm[1])
        return leash_fail(LEASH_ENUMERIC, "the %s differ between ranks (hash %016llx on rank %d): the ranks have diverged; "
                                          "this is a bug in leash, please report it",
                          what, (unsigned long long)h, g_rank);
    return LEASH_OK;
}

void leash_dist_abort(int code, const char *msg) {
    if (g_size == 1) return;
    fprintf(stderr, "leash: rank %d of %d: %s; stopping every rank of the job\n", g_rank, g_size, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}

#else /* one process */

int leash_dist_built(void) { return 0; }
int leash_dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return LEASH_OK;
}
void leash_dist_finalize(void) {}
int leash_dist_rank(void) { return 0; }
int leash_dist_size(void) { return 1; }
int leash_dist_sum_f32(float *buf, size_t n, const char *what) { return (void)buf, (void)n, (void)what, LEASH_OK; }
int leash_dist_sum_f64(double *buf, size_t n, const char *what) { return (void)buf, (void)n, (void)what, LEASH_OK; }
int leash_dist_sum_i32(int *buf, size_t n, const char *what) { return (void)buf, (void)n, (void)what, LEASH_OK; }
int leash_dist_sum_i64(int64_t *buf, size_t n, const char *what) { return (void)buf, (void)n, (void)what, LEASH_OK; }
int leash_dist_max_f64(double *buf, size_t n, const char *what) { return (void)buf, (void)n, (void)what, LEASH_OK; }
int leash_dist_check_same(const void *buf, size_t n, const char *what, uint64_t *hash) {
    (void)what;
    if (hash) *hash = leash_hash64(buf, n);
    return LEASH_OK;
}
void leash_dist_abort(int code, const char *msg) { (void)code, (void)msg; }

#endif
