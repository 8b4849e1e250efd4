/* leash/dist.h under mpirun -np 2 or more (make MPI=1 test-mpi): sums, maxima, the split of rows between
 * ranks, and the check that catches ranks whose weights differ (shown by flipping one bit on the last rank).
 * Prints one line per check; exit status 1 on the first failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/dist.h"
#include "leash/error.h"

static int rank, size, checks;

#define CHECK(cond, ...)                                                                                              \
    do {                                                                                                             \
        checks++;                                                                                                    \
        if (!(cond)) {                                                                                               \
            fprintf(stderr, "collectives: rank %d: FAILED %s: ", rank, #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fputc('\n', stderr);                                                                                     \
            leash_dist_abort(1, "a collectives check failed");                                                       \
            exit(1);                                                                                                 \
        }                                                                                                            \
    } while (0)

int main(int argc, char **argv) {
    CHECK(leash_dist_init(&argc, &argv) == LEASH_OK, "init");
    rank = leash_dist_rank(), size = leash_dist_size();
    CHECK(leash_dist_built() && size >= 2, "run me with mpirun -np 2 (or more), built with make MPI=1; size %d", size);
    // sums and maxima of rank-dependent values, on every rank
    enum { N = 1000 };
    float f[N];
    double d[N], mx = rank * 1.5;
    int i32[N];
    int64_t i64[N];
    for (int i = 0; i < N; i++) f[i] = (float)(rank + 1) * i, d[i] = 0.25 * rank + i, i32[i] = rank * i, i64[i] = (int64_t)rank << 40;
    CHECK(leash_dist_sum_f32(f, N, "f32") == LEASH_OK, "%s", leash_errmsg());
    CHECK(leash_dist_sum_f64(d, N, "f64") == LEASH_OK, "%s", leash_errmsg());
    CHECK(leash_dist_sum_i32(i32, N, "i32") == LEASH_OK, "%s", leash_errmsg());
    CHECK(leash_dist_sum_i64(i64, N, "i64") == LEASH_OK, "%s", leash_errmsg());
    CHECK(leash_dist_max_f64(&mx, 1, "max") == LEASH_OK, "%s", leash_errmsg());
    double tri = size * (size + 1) / 2.0, ranks = size * (size - 1) / 2.0;
    for (int i = 0; i < N; i++) {
        CHECK(f[i] == (float)(tri * i), "f32[%d] = %g, want %g", i, f[i], tri * i);
        CHECK(d[i] == 0.25 * ranks + (double)size * i, "f64[%d] = %g", i, d[i]);
        CHECK(i32[i] == (int)(ranks * i), "i32[%d] = %d", i, i32[i]);
        CHECK(i64[i] == (int64_t)ranks << 40, "i64[%d]", i);
    }
    CHECK(mx == (size - 1) * 1.5, "max %g", mx);
    // the split: every item of every n in exactly one rank's part, parts contiguous and in rank order
    for (int n = 0; n <= 40; n++)
        for (int parts = 1; parts <= 6; parts++) {
            int next = 0;
            for (int r = 0; r < parts; r++) {
                int lo, hi;
                leash_dist_split(n, r, parts, &lo, &hi);
                CHECK(lo == next && hi >= lo && hi - lo <= n / parts + 1 && hi - lo >= n / parts, "split(%d, %d of %d) = [%d, %d)", n, r, parts, lo, hi);
                next = hi;
            }
            CHECK(next == n, "split of %d into %d parts covers %d", n, parts, next);
        }
    // identical buffers pass; one flipped bit on one rank is caught on every rank
    float w[4096];
    for (int i = 0; i < 4096; i++) w[i] = sinf((float)i);
    uint64_t h0;
    CHECK(leash_dist_check_same(w, sizeof w, "weights", &h0) == LEASH_OK, "%s", leash_errmsg());
    CHECK(h0 == leash_hash64(w, sizeof w), "hash");
    if (rank == size - 1) {
        unsigned char *bytes = (unsigned char *)w;
        bytes[12345] ^= 1;
    }
    CHECK(leash_dist_check_same(w, sizeof w, "weights", NULL) == LEASH_ENUMERIC, "a flipped bit went unnoticed");
    CHECK(strstr(leash_errmsg(), "differ between ranks") != NULL, "message: %s", leash_errmsg());
    if (rank == 0) printf("collectives: %d checks passed on each of %d ranks\n", checks, size);
    leash_dist_finalize();
    return 0;
}
