/* Data-parallel training across processes: MPI (Open MPI from Debian) when leash is built with `make MPI=1`
 * and started by mpirun; otherwise one process, rank 0 of 1, and every call below succeeds at once.
 *
 * The model: every rank holds the whole model and the whole optimiser state. A step's rows are split
 * between the ranks (leash_dist_split), each rank computes its rows, the per-row results are assembled on
 * every rank (a sum in which each row has exactly one owner), and gradients are summed in one call over
 * the model's single gradient block, each rank's loss already normalised by the global count, so the sum is
 * the gradient of the global batch. Every rank then takes the same AdamW step, and leash_dist_check_same()
 * verifies after each step that the weights are bit-identical everywhere.
 *
 * Failure. Every collective waits at most LEASH_DIST_TIMEOUT seconds (environment; default 600) for the
 * other ranks; past it the job is aborted with a message saying which collective timed out (a rank died
 * or hangs). A rank that fails with an error calls leash_dist_abort(), which stops the whole job at once.
 */
#ifndef LEASH_DIST_H
#define LEASH_DIST_H

#include <stddef.h>
#include <stdint.h>

/* MPI_Init when built with MPI (harmless when started without mpirun: one rank). */
int leash_dist_init(int *argc, char ***argv);
void leash_dist_finalize(void);
int leash_dist_rank(void);
int leash_dist_size(void);
/* 1 when built with MPI (make MPI=1). */
int leash_dist_built(void);

/* In-place sums over all ranks, the result on every rank; `what` names the data in a timeout message. */
int leash_dist_sum_f32(float *buf, size_t n, const char *what);
int leash_dist_sum_f64(double *buf, size_t n, const char *what);
int leash_dist_sum_i32(int *buf, size_t n, const char *what);
int leash_dist_sum_i64(int64_t *buf, size_t n, const char *what);
int leash_dist_max_f64(double *buf, size_t n, const char *what);

/* Fails (LEASH_ENUMERIC, naming `what`) unless the n bytes at buf are identical on every rank (compared by a
 * 64-bit hash, returned in *hash if not NULL). */
int leash_dist_check_same(const void *buf, size_t n, const char *what, uint64_t *hash);

/* After an error on this rank: prints "leash: rank R of N: msg" and stops every rank of the job with exit
 * code `code`. Returns (doing nothing) in a one-rank job. */
void leash_dist_abort(int code, const char *msg);

/* The part [lo, hi) of n items that rank r of N takes: contiguous, sizes differing by at most 1. */
static inline void leash_dist_split(int n, int r, int N, int *lo, int *hi) {
    *lo = (int)((long long)n * r / N);
    *hi = (int)((long long)n * (r + 1) / N);
}

/* The 64-bit hash leash_dist_check_same uses (any process can compute it for a file or a buffer). */
uint64_t leash_hash64(const void *buf, size_t n);

#endif
