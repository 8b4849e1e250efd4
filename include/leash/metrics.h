/* A training step's metrics as one table of names -> values, and the JSONL logs written from it.
 *
 * A trainer fills a leash_metrics table once per step (TRL's names where TRL has one: "objective/kl",
 * "policy/clipfrac_avg", ...), in the order its metrics.jsonl lists them. Every reader takes the same table:
 * leash_metrics_write_jsonl writes metrics.jsonl's line, a progress callback (the CLI, Python's on_step)
 * looks values up by name, a TensorBoard writer walks it and writes every numeric entry.
 *
 * A leash_log is one JSONL file of a run directory (metrics.jsonl, samples.jsonl): on resume cut back to the
 * checkpoint's step and appended to, flushed after every line, a full disk named in the error. */
#ifndef LEASH_METRICS_H
#define LEASH_METRICS_H

#include <stdio.h>

#include "leash/tensorboard.h"

typedef enum {
    LEASH_METRIC_REAL, /* value, written with format; NAN is written as null (not measured) */
    LEASH_METRIC_INT,  /* value holds an integer (exactly, below 2^53), written as one */
    LEASH_METRIC_TEXT  /* text, written as a JSON string; value is NAN */
} leash_metric_kind;

typedef struct {
    const char *name;   /* e.g. "objective/kl"; a string that outlives the table */
    leash_metric_kind kind;
    const char *format; /* REAL: printf format of the value in metrics.jsonl, e.g. "%.6f" */
    double value;       /* REAL and INT */
    const char *text;   /* TEXT */
} leash_metric;

#define LEASH_METRICS_MAX 128 /* a step's own metrics and the reward commands' (src/scorer.h: up to 32 + 8) */

typedef struct {
    int n;
    leash_metric m[LEASH_METRICS_MAX];
} leash_metrics;

/* Appending to a full table is a programming error: the entry is dropped and leash_metrics_write_jsonl fails. */
void leash_metrics_real(leash_metrics *t, const char *name, const char *format, double value);
void leash_metrics_int(leash_metrics *t, const char *name, long value);
void leash_metrics_text(leash_metrics *t, const char *name, const char *text);
/* The entry called name, or NULL. */
const leash_metric *leash_metrics_find(const leash_metrics *t, const char *name);
/* The value called name; NAN when absent or text. */
double leash_metrics_value(const leash_metrics *t, const char *name);

/* Text metrics of a batch of responses: ids (rows, stride), the first len[b] of row b its response.
 * text/repetition: the mean over rows of the share of a response's tokens (after its first) that already
 * appeared earlier in it. text/distinct2: unique bigrams / bigrams over the whole batch (0 without any). */
double leash_repetition(const int *ids, const int *len, int rows, int stride);
int leash_distinct2(const int *ids, const int *len, int rows, int stride, double *out);

/* Seconds on the monotonic clock (time/step_s, tokens_per_s, phase timings): the trainers' one clock. */
double leash_now_s(void);

/* Writes s as a JSON string (quoted, escaped). */
void leash_json_string(FILE *f, const char *s);

typedef struct {
    FILE *f;
    char path[4096];
} leash_log;

/* Opens DIR/NAME for writing; resume_step >= 0: cuts it back to the lines of steps <= resume_step and appends
 * (a killed run may have logged further, or half a line), else starts it empty. */
int leash_log_open(leash_log *log, const char *dir, const char *name, int resume_step);
/* metrics.jsonl's line of t: {"name": value, ...} in t's order, then flushed. */
int leash_log_metrics(leash_log *log, const leash_metrics *t);
/* Flushes what was written with fprintf(log->f, ...); a failure names the file (and a full disk). */
int leash_log_flush(leash_log *log);
void leash_log_close(leash_log *log);

/* TensorBoard (--tensorboard DIR): every numeric entry of t but "step" as a scalar at t's step, with the value
 * metrics.jsonl writes (its printed digits, then float32 as TensorBoard stores it); null entries (NAN) and text
 * are left out. Flushed, so TensorBoard sees the step at once. */
int leash_metrics_write_tb(leash_tb *w, const leash_metrics *t);

#endif
