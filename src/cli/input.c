/* Reading lists of numbers from files or stdin, as plain text or JSON, for the CLI. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

char *cli_read_file(const char *path, size_t *len) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "leash: cannot open '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n + 1 >= cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int failed = !buf || ferror(f);
    if (!is_stdin) fclose(f);
    if (failed) {
        fprintf(stderr, "leash: cannot read '%s': %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static int push(cli_numbers *l, double x) {
    if ((l->n & (l->n - 1)) == 0) { // grow at powers of two
        double *v = realloc(l->v, (size_t)(l->n ? 2 * l->n : 1) * sizeof *v);
        if (!v) return -1;
        l->v = v;
    }
    l->v[l->n++] = x;
    return 0;
}

void cli_numbers_free(cli_numbers *l) {
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int cli_parse_text_lists(const char *path, const char *text, cli_numbers *lists, int max) {
    int found = 0, line = 1;
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < eol && *q != '#') {
            if (found == max) {
                fprintf(stderr, "leash: %s:%d: more than %d lists of numbers; expected exactly %d lines\n",
                        path, line, max, max);
                return -1;
            }
            cli_numbers *l = &lists[found++];
            while (q < eol) {
                if (*q == ' ' || *q == '\t' || *q == ',' || *q == '\r') {
                    q++;
                    continue;
                }
                char *end;
                errno = 0;
                double x = strtod(q, &end);
                if (end == q || end > eol || (*end && !strchr(" \t,\r\n", *end))) {
                    int w = 0;
                    while (q + w < eol && !strchr(" \t,\r", q[w])) w++;
                    fprintf(stderr, "leash: %s:%d:%d: '%.*s' is not a number\n", path, line,
                            (int)(q - p) + 1, w, q);
                    return -1;
                }
                if (push(l, x)) {
                    fprintf(stderr, "leash: %s: out of memory\n", path);
                    return -1;
                }
                q = end;
            }
        }
        line++;
        p = *eol ? eol + 1 : eol;
    }
    return found;
}

int cli_json_numbers(const char *path, const char *key, const cJSON *arr, cli_numbers *out) {
    if (!cJSON_IsArray(arr)) {
        fprintf(stderr, "leash: %s: \"%s\" must be an array of numbers\n", path, key);
        return -1;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsNumber(it)) {
            fprintf(stderr, "leash: %s: \"%s\"[%d] is not a number\n", path, key, i);
            return -1;
        }
        if (push(out, it->valuedouble)) {
            fprintf(stderr, "leash: %s: out of memory\n", path);
            return -1;
        }
        i++;
    }
    return 0;
}

int cli_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "leash %s: %s '%s' must be an integer in [%ld, %ld]\n", cmd, opt, arg, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *arg, double lo, double hi, float *out) {
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "leash %s: %s '%s' must be a number in [%g, %g]\n", cmd, opt, arg, lo, hi);
        return -1;
    }
    *out = (float)v;
    return 0;
}
