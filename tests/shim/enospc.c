/* A full disk on demand, for tests/kill_resume.sh: LD_PRELOAD this library and set
 * LEASH_TEST_ENOSPC_AFTER=N. leash flushes and fsyncs every file it writes whole (checkpoints, models,
 * optimizer states; src/fileio.c); once the files fsynced add up to more than N bytes, every further fsync
 * of a regular file fails with ENOSPC, as a disk that has filled up reports when the data cannot be
 * stored. (glibc's stdio writes through internal calls an LD_PRELOAD cannot catch; fsync is called by
 * leash itself.) Terminals, pipes and sockets are not touched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static long long budget = -2;

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (budget == -2) {
        const char *e = getenv("LEASH_TEST_ENOSPC_AFTER");
        budget = e ? atoll(e) : LLONG_MAX;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((long long)st.st_size > budget) {
            budget = 0;
            errno = ENOSPC;
            return -1;
        }
        budget -= (long long)st.st_size;
    }
    return real(fd);
}
