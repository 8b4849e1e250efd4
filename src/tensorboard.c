/* TensorBoard event files: see include/leash/tensorboard.h. */
#define _POSIX_C_SOURCE 200809L
#include "leash/tensorboard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "tensorboard_event.pb-c.h" // generated from proto/tensorboard_event.proto by protoc-c (see there)

struct leash_tb {
    FILE *f;
    char path[4400];
    uint8_t *buf; // (cap) one packed Event
    size_t cap;
};

static int tb_io_fail(const leash_tb *w, const char *what, int err) {
    return leash_fail(LEASH_EIO, "TensorBoard event file '%s': %s: %s%s", w->path, what, strerror(err),
                      err == ENOSPC ? " (the disk is full: free space or write elsewhere)" : "");
}

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* One TFRecord: length (uint64 LE), masked CRC-32C of the length, the packed Event, its masked CRC-32C. */
static int write_record(leash_tb *w, const Tensorboard__Event *ev) {
    size_t n = tensorboard__event__get_packed_size(ev);
    if (n > w->cap) {
        uint8_t *b = realloc(w->buf, n);
        if (!b) return leash_fail(LEASH_ENOMEM, "out of memory for an event of %zu bytes ('%s')", n, w->path);
        w->buf = b, w->cap = n;
    }
    tensorboard__event__pack(ev, w->buf);
    uint8_t head[12], tail[4];
    put_le(head, n, 8);
    put_le(head + 8, crc32c_masked(head, 8), 4);
    put_le(tail, crc32c_masked(w->buf, n), 4);
    errno = 0;
    if (fwrite(head, 1, 12, w->f) != 12 || fwrite(w->buf, 1, n, w->f) != n || fwrite(tail, 1, 4, w->f) != 4)
        return tb_io_fail(w, "write", errno ? errno : EIO);
    return LEASH_OK;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* DIR/events.out.tfevents.<%010 unix time>.<hostname> (TensorFlow's EventsWriter spelling), created
 * exclusively; ".1", ".2", ... after it when a file of that name exists (two writers in one second). */
static int create_file(leash_tb *w, const char *dir) {
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    long long t = (long long)time(NULL);
    for (int k = 0; k < 100; k++) {
        int len = k ? snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%010lld.%s.%d", dir, t, host, k)
                    : snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%010lld.%s", dir, t, host);
        if (len >= (int)sizeof w->path) return leash_fail(LEASH_EINVAL, "TensorBoard directory path too long: '%.64s...'", dir);
        int fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) return tb_io_fail(w, "cannot create it", errno);
        if (!(w->f = fdopen(fd, "wb"))) {
            int err = errno;
            close(fd);
            return tb_io_fail(w, "cannot open it", err);
        }
        return LEASH_OK;
    }
    return leash_fail(LEASH_EIO, "'%s': 100 event files of this second and host already exist in '%s'", w->path, dir);
}

int leash_tb_open(leash_tb **out, const char *dir) {
    *out = NULL;
    if (!dir || !dir[0]) return leash_fail(LEASH_EINVAL, "TensorBoard directory: an empty path; give a directory");
    int rc = leash_mkdir(dir);
    if (rc) return leash_fail_wrap(rc, "TensorBoard directory");
    leash_tb *w = calloc(1, sizeof *w);
    if (!w) return leash_fail(LEASH_ENOMEM, "out of memory");
    if ((rc = create_file(w, dir))) {
        free(w);
        return rc;
    }
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = now_s();
    ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2"; // the version TensorBoard's own writers put first
    if ((rc = write_record(w, &ev)) || (rc = leash_tb_flush(w))) {
        fclose(w->f);
        unlink(w->path);
        free(w->buf), free(w);
        return rc;
    }
    *out = w;
    return LEASH_OK;
}

const char *leash_tb_path(const leash_tb *w) { return w->path; }

int leash_tb_scalar(leash_tb *w, const char *tag, int64_t step, double value, double wall_time) {
    if (!tag || !tag[0]) return leash_fail(LEASH_EINVAL, "'%s': a scalar needs a non-empty tag", w->path);
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT, *vp = &v;
    v.tag = (char *)tag;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE; // written even when 0: a oneof member
    v.simple_value = (float)value;
    Tensorboard__Summary s = TENSORBOARD__SUMMARY__INIT;
    s.n_value = 1, s.value = &vp;
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = wall_time, ev.step = step;
    ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
    ev.summary = &s;
    return write_record(w, &ev);
}

int leash_tb_flush(leash_tb *w) {
    if (ferror(w->f)) return tb_io_fail(w, "an earlier write failed", EIO);
    if (fflush(w->f) != 0) return tb_io_fail(w, "flush", errno);
    return LEASH_OK;
}

int leash_tb_close(leash_tb *w) {
    if (!w) return LEASH_OK;
    int rc = leash_tb_flush(w);
    if (!rc && fsync(fileno(w->f)) != 0) rc = tb_io_fail(w, "fsync", errno);
    if (fclose(w->f) != 0 && !rc) rc = tb_io_fail(w, "close", errno);
    free(w->buf), free(w);
    return rc;
}
