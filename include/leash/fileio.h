/* Atomic file writes: a file is written to a temporary name beside its destination, flushed, fsynced,
 * and renamed over the destination (then the directory is fsynced), so a reader sees the old file or
 * the new one, never half of one, whatever kills the writer. */
#ifndef LEASH_FILEIO_H
#define LEASH_FILEIO_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4096 + 32];
} leash_atomic_file;

/* Opens a temporary file for `path`. */
int leash_atomic_open(leash_atomic_file *af, const char *path);
/* Checks every write (ferror), flushes, fsyncs, renames over `path`, fsyncs the directory. On any
 * failure the temporary is removed, `path` is untouched, and the message names the file and the cause
 * (a full disk says so). */
int leash_atomic_commit(leash_atomic_file *af);
/* Removes the temporary; `path` is untouched. */
void leash_atomic_abort(leash_atomic_file *af);

/* Whole-file helpers. */
int leash_write_file_atomic(const char *path, const void *data, size_t len);
/* Reads a whole file into a NUL-terminated buffer (caller frees); fails on files over max_bytes. */
int leash_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* mkdir -p for one level (the directory itself); fine if it exists. */
int leash_mkdir(const char *dir);

#endif
