/* A step's metrics as one table of names -> values, the JSONL logs of a run, and the trainers' clock. See
 * include/leash/metrics.h. */
#define _POSIX_C_SOURCE 200809L // clock_gettime
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "leash/checkpoint.h"
#include "leash/error.h"
#include "leash/metrics.h"

static leash_metric *add(leash_metrics *t, const char *name, leash_metric_kind kind) {
    if (t->n >= LEASH_METRICS_MAX) {
        t->n = LEASH_METRICS_MAX + 1; // full: remembered, refused by the writer
        return NULL;
    }
    leash_metric *m = &t->m[t->n++];
    *m = (leash_metric){.name = name, .kind = kind, .value = NAN};
    return m;
}

double leash_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

void leash_metrics_real(leash_metrics *t, const char *name, const char *format, double value) {
    leash_metric *m = add(t, name, LEASH_METRIC_REAL);
    if (m) m->format = format, m->value = value;
}

void leash_metrics_int(leash_metrics *t, const char *name, long value) {
    leash_metric *m = add(t, name, LEASH_METRIC_INT);
    if (m) m->value = (double)value;
}

void leash_metrics_text(leash_metrics *t, const char *name, const char *text) {
    leash_metric *m = add(t, name, LEASH_METRIC_TEXT);
    if (m) m->text = text;
}

const leash_metric *leash_metrics_find(const leash_metrics *t, const char *name) {
    for (int i = 0; i < t->n && i < LEASH_METRICS_MAX; i++)
        if (!strcmp(t->m[i].name, name)) return &t->m[i];
    return NULL;
}

double leash_metrics_value(const leash_metrics *t, const char *name) {
    const leash_metric *m = leash_metrics_find(t, name);
    return m ? m->value : NAN;
}

void leash_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f), fputc(*s, f);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

int leash_log_open(leash_log *log, const char *dir, const char *name, int resume_step) {
    snprintf(log->path, sizeof log->path, "%s/%s", dir, name);
    log->f = NULL;
    int rc = resume_step >= 0 ? leash_log_trim(log->path, resume_step) : LEASH_OK;
    if (!rc && !(log->f = fopen(log->path, resume_step >= 0 ? "a" : "w")))
        rc = leash_fail(LEASH_EIO, "cannot write '%s': %s", log->path, strerror(errno));
    return rc;
}

int leash_log_metrics(leash_log *log, const leash_metrics *t) {
    if (t->n > LEASH_METRICS_MAX)
        return leash_fail(LEASH_EINVAL, "%s: more than %d metrics in one step (LEASH_METRICS_MAX)", log->path, LEASH_METRICS_MAX);
    fputc('{', log->f);
    for (int i = 0; i < t->n; i++) {
        const leash_metric *m = &t->m[i];
        fprintf(log->f, "%s\"%s\": ", i ? ", " : "", m->name);
        if (m->kind == LEASH_METRIC_TEXT) leash_json_string(log->f, m->text);
        else if (m->kind == LEASH_METRIC_INT) fprintf(log->f, "%.0f", m->value);
        else if (isnan(m->value)) fputs("null", log->f);
        else fprintf(log->f, m->format, m->value);
    }
    fputs("}\n", log->f);
    return leash_log_flush(log);
}

int leash_log_flush(leash_log *log) {
    if (fflush(log->f) == 0 && !ferror(log->f)) return LEASH_OK;
    return leash_fail(LEASH_EIO, "cannot write '%s': %s%s", log->path, strerror(errno),
                      errno == ENOSPC ? " (the disk is full; the last checkpoint is intact: free space and --resume)" : "");
}

int leash_metrics_write_tb(leash_tb *w, const leash_metrics *t) {
    if (t->n > LEASH_METRICS_MAX)
        return leash_fail(LEASH_EINVAL, "%s: more than %d metrics in one step (LEASH_METRICS_MAX)", leash_tb_path(w), LEASH_METRICS_MAX);
    const leash_metric *step = leash_metrics_find(t, "step");
    if (!step || step->kind != LEASH_METRIC_INT) return leash_fail(LEASH_EINVAL, "%s: a metrics table without its step", leash_tb_path(w));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double wall = ts.tv_sec + 1e-9 * ts.tv_nsec;
    int rc = LEASH_OK;
    for (int i = 0; i < t->n && !rc; i++) {
        const leash_metric *m = &t->m[i];
        if (m == step || m->kind == LEASH_METRIC_TEXT || isnan(m->value)) continue;
        double v = m->value;
        if (m->kind == LEASH_METRIC_REAL) { // the digits metrics.jsonl holds, so both show the same number
            char buf[64];
            snprintf(buf, sizeof buf, m->format, m->value);
            v = strtod(buf, NULL);
        }
        rc = leash_tb_scalar(w, m->name, (int64_t)step->value, v, wall);
    }
    return rc ? rc : leash_tb_flush(w);
}

void leash_log_close(leash_log *log) {
    if (log->f) fclose(log->f);
    log->f = NULL;
}

double leash_repetition(const int *ids, const int *len, int rows, int stride) {
    double rep = 0.0;
    for (int b = 0; b < rows; b++) {
        const int *x = ids + (long)b * stride;
        int dup = 0;
        for (int j = 1; j < len[b]; j++)
            for (int q = 0; q < j; q++)
                if (x[q] == x[j]) { dup++; break; }
        rep += len[b] > 1 ? (double)dup / (len[b] - 1) : 0.0;
    }
    return rows ? rep / rows : 0.0;
}

int leash_distinct2(const int *ids, const int *len, int rows, int stride, double *out) {
    long nbig = 0, uniq = 0, hcap = 64;
    for (int b = 0; b < rows; b++) nbig += len[b] > 1 ? len[b] - 1 : 0;
    while (hcap < 2 * nbig + 2) hcap <<= 1;
    uint64_t *hs = malloc(hcap * sizeof *hs); // open addressing over the bigrams as 64-bit keys
    if (!hs) return leash_fail(LEASH_ENOMEM, "out of memory");
    for (long i = 0; i < hcap; i++) hs[i] = UINT64_MAX;
    for (int b = 0; b < rows; b++)
        for (int j = 0; j + 1 < len[b]; j++) {
            const int *x = ids + (long)b * stride + j;
            uint64_t key = (uint64_t)x[0] << 32 | (uint32_t)x[1];
            long h = (long)((key * 0x9E3779B97F4A7C15ull) >> 20) & (hcap - 1);
            while (hs[h] != UINT64_MAX && hs[h] != key) h = (h + 1) & (hcap - 1);
            if (hs[h] == UINT64_MAX) hs[h] = key, uniq++;
        }
    free(hs);
    *out = nbig ? (double)uniq / nbig : 0.0;
    return LEASH_OK;
}
