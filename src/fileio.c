/* Atomic writes and whole-file reads: see include/leash/fileio.h. */
#define _POSIX_C_SOURCE 200809L
#include "leash/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "leash/error.h"

static int io_fail(const char *what, const char *path, int err) {
    return leash_fail(LEASH_EIO, "%s '%s': %s%s", what, path, strerror(err),
                      err == ENOSPC ? " (the disk is full: free space or write elsewhere; the previous file is intact)"
                                    : "");
}

int leash_atomic_open(leash_atomic_file *af, const char *path) {
    if (strlen(path) >= sizeof af->path) return leash_fail(LEASH_EINVAL, "path too long: '%.64s...'", path);
    strcpy(af->path, path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) return io_fail("cannot create", af->tmp, errno);
    return LEASH_OK;
}

void leash_atomic_abort(leash_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    unlink(af->tmp);
}

int leash_atomic_commit(leash_atomic_file *af) {
    int err = 0;
    if (ferror(af->f)) err = errno ? errno : EIO;
    if (!err && fflush(af->f) != 0) err = errno;
    if (!err && fsync(fileno(af->f)) != 0) err = errno;
    if (fclose(af->f) != 0 && !err) err = errno;
    af->f = NULL;
    if (!err && rename(af->tmp, af->path) != 0) err = errno;
    if (err) {
        unlink(af->tmp);
        return io_fail("cannot write", af->path, err);
    }
    char dir[4096];
    strcpy(dir, af->path);
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); // best effort: the rename is already visible
        close(fd);
    }
    return LEASH_OK;
}

int leash_write_file_atomic(const char *path, const void *data, size_t len) {
    leash_atomic_file af;
    int rc = leash_atomic_open(&af, path);
    if (rc) return rc;
    if (len && fwrite(data, 1, len, af.f) != len) {
        int err = errno ? errno : EIO;
        leash_atomic_abort(&af);
        return io_fail("cannot write", path, err);
    }
    return leash_atomic_commit(&af);
}

int leash_read_file(const char *path, size_t max_bytes, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return io_fail("cannot open", path, errno);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return leash_fail(LEASH_EIO, "'%s' is not a regular file", path);
    }
    if ((size_t)st.st_size > max_bytes) {
        fclose(f);
        return leash_fail(LEASH_EFORMAT, "'%s' is %lld bytes; more than the %zu this reader accepts", path,
                          (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return leash_fail(LEASH_ENOMEM, "cannot allocate %zu bytes to read '%s'", n + 1, path);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (got != n) {
        free(buf);
        return err ? io_fail("cannot read", path, err)
                   : leash_fail(LEASH_EIO, "'%s' changed size while being read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return LEASH_OK;
}

int leash_mkdir(const char *dir) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return LEASH_OK;
        return leash_fail(LEASH_EIO, "'%s' exists and is not a directory", dir);
    }
    return io_fail("cannot create directory", dir, errno);
}
