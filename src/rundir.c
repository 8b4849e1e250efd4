/* Run directories: a lock and the existing-run check. See include/leash/rundir.h. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH, O_CLOEXEC */
#include "leash/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/fileio.h"

static int lock_dir(const char *dir, int *fd) {
    char path[4200];
    *fd = -1;
    int rc = leash_mkdir(dir);
    if (rc) return rc;
    if ((size_t)snprintf(path, sizeof path, "%s/.lock", dir) >= sizeof path) return leash_fail(LEASH_EINVAL, "path too long: %s", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) return leash_fail(LEASH_EIO, "cannot create the lock file '%s': %s", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char pid[32] = "";
        ssize_t n = pread(f, pid, sizeof pid - 1, 0);
        close(f);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (err != EWOULDBLOCK) return leash_fail(LEASH_EIO, "cannot lock '%s': %s", path, strerror(err));
        return leash_fail(LEASH_EIO, "%s is in use by another run (PID %s holds %s): two runs in one directory would "
                                     "mix their files; wait for it to end, stop it, or choose another --out",
                          dir, pid[0] ? pid : "unknown", path);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)n, 0) != n) { // only informative: the flock is the lock
        int err = errno;
        close(f);
        return leash_fail(LEASH_EIO, "cannot write the lock file '%s': %s", path, strerror(err));
    }
    *fd = f;
    return LEASH_OK;
}

void leash_rundir_unlock(int fd) {
    if (fd >= 0) close(fd); // closing releases the flock
}

static int exists(const char *dir, const char *name) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

/* A checkpoint (checkpoint/, or checkpoint.old/ that a kill left) or metrics.jsonl. */
static int has_run(const char *dir) {
    return exists(dir, "checkpoint") || exists(dir, "checkpoint.old") || exists(dir, "metrics.jsonl");
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int leash_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return LEASH_OK;
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return leash_fail(LEASH_EIO, "cannot remove '%s': %s", path, strerror(errno));
    return LEASH_OK;
}

static int clear_run(const char *dir) {
    static const char *const names[] = {"checkpoint", "checkpoint.old", "checkpoint.new", "metrics.jsonl", "samples.jsonl"};
    char path[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        int rc = leash_remove_tree(path);
        if (rc) return leash_fail_wrap(rc, "--overwrite");
    }
    return LEASH_OK;
}

int leash_rundir_open(const char *dir, int resume, int overwrite, int *fd) {
    *fd = -1;
    if (resume && overwrite) return leash_fail(LEASH_EINVAL, "--resume continues the run in %s and --overwrite replaces it: give one", dir);
    int rc = lock_dir(dir, fd);
    if (rc || resume || !has_run(dir)) return rc;
    if (overwrite) rc = clear_run(dir);
    else rc = leash_fail(LEASH_EINVAL, "%s already holds a run (a checkpoint or metrics.jsonl): continue it with --resume, "
                                      "replace it with --overwrite, or choose another --out", dir);
    if (rc) leash_rundir_unlock(*fd), *fd = -1;
    return rc;
}
