/* Reading lists of numbers from files or stdin, as plain text or JSON, option numbers and progress lines, for
 * the CLI. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "leash/stop.h"

const char *cli_name = "leash";

char *cli_read_file(const char *path, size_t *len) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open '%s': %s\n", cli_name, path, strerror(errno));
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
        fprintf(stderr, "%s: cannot read '%s': %s\n", cli_name, path, buf ? "read error" : "out of memory");
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
                fprintf(stderr, "%s: %s:%d: more than %d lists of numbers; expected exactly %d lines\n", cli_name,
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
                    fprintf(stderr, "%s: %s:%d:%d: '%.*s' is not a number\n", cli_name, path, line,
                            (int)(q - p) + 1, w, q);
                    return -1;
                }
                if (isinf(x) && errno == ERANGE) { // 1e400: too large, not the infinity the checks after would blame
                    fprintf(stderr, "%s: %s:%d:%d: '%.*s' is too large (it overflows a double, |x| > 1.8e308)\n", cli_name,
                            path, line, (int)(q - p) + 1, (int)(end - q), q);
                    return -1;
                }
                if (push(l, x)) {
                    fprintf(stderr, "%s: %s: out of memory\n", cli_name, path);
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
        fprintf(stderr, "%s: %s: \"%s\" must be an array of numbers\n", cli_name, path, key);
        return -1;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsNumber(it)) {
            fprintf(stderr, "%s: %s: \"%s\"[%d] is not a number\n", cli_name, path, key, i);
            return -1;
        }
        if (isinf(it->valuedouble)) { // JSON has no infinity: the number overflowed a double
            fprintf(stderr, "%s: %s: \"%s\"[%d] is too large (it overflows a double, |x| > 1.8e308)\n", cli_name, path, key, i);
            return -1;
        }
        if (push(out, it->valuedouble)) {
            fprintf(stderr, "%s: %s: out of memory\n", cli_name, path);
            return -1;
        }
        i++;
    }
    return 0;
}

/* What is wrong with an option's number text, or NULL when it is a plain decimal number (sign, digits, point,
 * exponent) that strtod reads whole into a finite *v of normal size (or zero). Hex (0x10), nan, inf, spaces
 * before or after, overflow (1e400) and denormals (1e-320) are refused: they are typos far more often than
 * intent, and strtod would read them silently. */
static const char *number_problem(const char *arg, double *v) {
    if (!*arg) return "is empty";
    if (isspace((unsigned char)arg[0])) return "starts with a space";
    if (isspace((unsigned char)arg[strlen(arg) - 1])) return "ends with a space";
    for (const char *p = arg; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) {
            if (strchr("xX", *p)) return "is hexadecimal; write it in decimal";
            const char *u = arg + (*arg == '+' || *arg == '-');
            if (!strcasecmp(u, "nan") || !strcasecmp(u, "inf") || !strcasecmp(u, "infinity"))
                return "is not a finite number (nan and inf are not accepted)";
            return "is not a number";
        }
    char *end;
    errno = 0;
    *v = strtod(arg, &end);
    if (end == arg || *end) return "is not a number";
    if (isinf(*v) || (errno == ERANGE && fabs(*v) > 1.0)) return "is too large (it overflows a double)";
    if (*v != 0.0 && fabs(*v) < DBL_MIN) return "is too small (a denormal or underflow); use 0 or a normal number";
    if (*v == 0.0 && errno == ERANGE) return "is too small (it underflows to 0); write 0";
    return NULL;
}

int cli_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, int *out) {
    const char *why = NULL;
    if (!*arg) why = "is empty";
    else if (isspace((unsigned char)arg[0])) why = "starts with a space";
    else if (arg[0] == '0' && (arg[1] == 'x' || arg[1] == 'X')) why = "is hexadecimal; write it in decimal";
    char *end;
    errno = 0;
    long v = why ? 0 : strtol(arg, &end, 10);
    if (!why && (end == arg || *end)) why = "is not an integer";
    if (!why && errno == ERANGE) why = "is too large";
    if (why || v < lo || v > hi) {
        fprintf(stderr, "leash %s: %s '%s' must be an integer in [%ld, %ld]%s%s%s%s\n", cmd, opt, arg, lo, hi,
                why ? "; '" : "", why ? arg : "", why ? "' " : "", why ? why : "");
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_plain_number(const char *arg, double *v) { return number_problem(arg, v) ? -1 : 0; }

int cli_double(const char *cmd, const char *opt, const char *arg, double lo, double hi, double *out) {
    double v = 0.0;
    const char *why = number_problem(arg, &v);
    if (why || !(v >= lo && v <= hi)) {
        fprintf(stderr, "leash %s: %s '%s' must be a number in [%g, %g]%s%s%s%s\n", cmd, opt, arg, lo, hi,
                why ? "; '" : "", why ? arg : "", why ? "' " : "", why ? why : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *opt, const char *arg, double lo, double hi, float *out) {
    double v;
    if (cli_double(cmd, opt, arg, lo, hi, &v)) return -1;
    if (fabs(v) > FLT_MAX || (v != 0.0 && fabs(v) < FLT_MIN)) {
        fprintf(stderr, "leash %s: %s '%s' must be a number in [%g, %g]; it does not fit a float (0, or a magnitude "
                "from %g to %g)\n", cmd, opt, arg, lo, hi, (double)FLT_MIN, (double)FLT_MAX);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static int progress_open; // a \r-line is on the terminal, not yet ended
static double progress_last = -1e30;

void cli_progress(int last, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (isatty(STDERR_FILENO)) {
        fputc('\r', stderr);
        vfprintf(stderr, fmt, ap);
        progress_open = 1;
    } else {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        double now = (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
        if (last || now - progress_last >= 5.0) {
            vfprintf(stderr, fmt, ap);
            fputc('\n', stderr);
            progress_last = now;
        }
    }
    va_end(ap);
    fflush(stderr);
}

void cli_progress_end(void) {
    if (progress_open) fputc('\n', stderr);
    progress_open = 0;
}

/* SIGINT / SIGTERM ask the library to stop (leash_request_stop): a trainer finishes its step and writes a
 * checkpoint, a labelling or a wait for a command ends; a second signal ends the process the default way. */
static void on_stop_signal(int sig) {
    leash_request_stop();
    signal(sig, SIG_DFL);
}

void cli_stop_on_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
