/* Atomic checkpoint directories and log trimming: see include/leash/checkpoint.h. */
#define _XOPEN_SOURCE 700
#include "leash/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/fileio.h"

static int unlink_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* rm -r of a checkpoint directory (fine if it does not exist). */
static int remove_tree(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return LEASH_OK;
    if (nftw(dir, unlink_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return leash_fail(LEASH_EIO, "cannot remove '%s': %s", dir, strerror(errno));
    return LEASH_OK;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) fsync(fd), close(fd);
}

int leash_checkpoint_begin(const char *out_dir, char *dir, size_t cap) {
    if ((size_t)snprintf(dir, cap, "%s/checkpoint.new", out_dir) >= cap) return leash_fail(LEASH_EINVAL, "path too long: %s", out_dir);
    int rc = remove_tree(dir);
    return rc ? rc : leash_mkdir(dir);
}

int leash_checkpoint_commit(const char *out_dir) {
    char cur[4200], old[4200], dir[4200];
    snprintf(dir, sizeof dir, "%s/checkpoint.new", out_dir);
    snprintf(cur, sizeof cur, "%s/checkpoint", out_dir);
    snprintf(old, sizeof old, "%s/checkpoint.old", out_dir);
    fsync_dir(dir);
    if (exists(old) && exists(cur)) { // a previous commit was killed after its second rename
        int rc = remove_tree(old);
        if (rc) return rc;
    }
    if (exists(cur) && rename(cur, old) != 0)
        return leash_fail(LEASH_EIO, "cannot rename '%s' to '%s': %s", cur, old, strerror(errno));
    if (rename(dir, cur) != 0) return leash_fail(LEASH_EIO, "cannot rename '%s' to '%s': %s", dir, cur, strerror(errno));
    fsync_dir(out_dir);
    return remove_tree(old);
}

int leash_checkpoint_find(const char *out_dir, char *dir, size_t cap) {
    char old[4200];
    if ((size_t)snprintf(dir, cap, "%s/checkpoint", out_dir) >= cap) return leash_fail(LEASH_EINVAL, "path too long: %s", out_dir);
    snprintf(old, sizeof old, "%s/checkpoint.old", out_dir);
    if (!exists(dir) && exists(old)) { // killed between the two renames of a commit
        if (rename(old, dir) != 0) return leash_fail(LEASH_EIO, "cannot rename '%s' back to '%s': %s", old, dir, strerror(errno));
        fsync_dir(out_dir);
    }
    if (!exists(dir))
        return leash_fail(LEASH_EINVAL, "%s has no checkpoint (a run writes one every --save-every steps, when stopped "
                                        "by SIGINT/SIGTERM, and at the end)",
                          out_dir);
    return LEASH_OK;
}

int leash_log_trim(const char *path, int max_step) {
    char *text = NULL;
    size_t n = 0;
    int rc = leash_read_file(path, (size_t)1 << 31, &text, &n);
    if (rc == LEASH_EIO && !exists(path)) return LEASH_OK; // nothing written yet
    if (rc) return rc;
    // keep whole lines (ending in a newline) whose "step" is at most max_step: a line cut by a kill, and the
    // lines of steps after the checkpoint, go
    size_t keep = 0, at = 0;
    while (at < n) {
        char *nl = memchr(text + at, '\n', n - at);
        if (!nl) break;
        size_t end = (size_t)(nl - text) + 1;
        const char *s = strstr(text + at, "\"step\": ");
        int step = s && s < nl ? atoi(s + 8) : -1;
        if (step < 0 || step > max_step) break;
        keep = at = end;
    }
    rc = keep < n ? leash_write_file_atomic(path, text, keep) : LEASH_OK;
    free(text);
    return rc;
}
