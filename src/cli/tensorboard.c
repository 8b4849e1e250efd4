/* `leash tensorboard RUN_DIR [--out DIR]`: a run's metrics.jsonl as a TensorBoard event file. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/tensorboard.h"

static const char *usage =
    "usage: leash tensorboard RUN_DIR [--out DIR]\n"
    "\n"
    "Writes every number of RUN_DIR/metrics.jsonl (a pretrain, ppo or grpo run) as a TensorBoard scalar at its\n"
    "line's \"step\", tagged with its metric name, into a new event file in DIR (default RUN_DIR):\n"
    "    tensorboard --logdir DIR\n"
    "Values are stored as float32 (TensorBoard's scalars). Strings and nulls (not measured) are left out. Wall\n"
    "times are rebuilt from \"time/step_s\" so that the last step is when metrics.jsonl was last written (all\n"
    "at that time when the run has no step times). DIR must not hold an event file already: TensorBoard would\n"
    "show both.\n";

/* The name of an event file already in dir, or NULL. */
static char *existing_event_file(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *found = NULL;
    for (struct dirent *e; !found && (e = readdir(d));)
        if (strstr(e->d_name, "tfevents")) found = strdup(e->d_name); // TensorBoard's own test for the name
    closedir(d);
    return found;
}

/* The lines of a metrics file as parsed JSON objects, each with a numeric "step"; NULL after a message. */
static cJSON **parse_lines(const char *path, char *text, int *n) {
    int cap = 0;
    cJSON **lines = NULL;
    *n = 0;
    int lineno = 0;
    for (char *s = text, *nl; s && *s; s = nl ? nl + 1 : NULL) {
        nl = strchr(s, '\n');
        if (nl) *nl = 0;
        lineno++;
        if (strspn(s, " \t\r") == strlen(s)) continue;
        cJSON *o = cJSON_Parse(s);
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
        // an integer a double holds exactly (converting 1e300 or -1e300 to an integer is undefined behaviour)
        int step_ok = cJSON_IsNumber(step) && step->valuedouble == floor(step->valuedouble) &&
                      fabs(step->valuedouble) <= 9007199254740992.0;
        if (!cJSON_IsObject(o) || !step_ok) {
            fprintf(stderr, "leash tensorboard: %s:%d: %s; every line must be a JSON object with an integer \"step\"\n",
                    path, lineno, !cJSON_IsObject(o) ? "not a JSON object" : "no integer \"step\" (at most 2^53)");
            cJSON_Delete(o);
            goto fail;
        }
        if (*n == cap) {
            cJSON **l = realloc(lines, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *l);
            if (!l) {
                cJSON_Delete(o);
                fputs("leash tensorboard: out of memory\n", stderr);
                goto fail;
            }
            lines = l;
        }
        lines[(*n)++] = o;
    }
    if (*n) return lines;
    fprintf(stderr, "leash tensorboard: %s holds no metrics (no line with a \"step\"): nothing to convert\n", path);
fail:
    for (int i = 0; i < *n; i++) cJSON_Delete(lines[i]);
    free(lines);
    return NULL;
}

/* Writes every numeric value of every line; returns the scalars written, or -1 after a message. */
static long write_scalars(leash_tb *w, cJSON **lines, int n, double end_time) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(lines[i], "time/step_s");
        if (cJSON_IsNumber(t)) total += t->valuedouble;
    }
    double wall = end_time - total;
    long count = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(lines[i], "time/step_s");
        if (cJSON_IsNumber(t)) wall += t->valuedouble;
        long long step = (long long)cJSON_GetObjectItemCaseSensitive(lines[i], "step")->valuedouble;
        for (const cJSON *v = lines[i]->child; v; v = v->next) {
            if (!cJSON_IsNumber(v) || !strcmp(v->string, "step")) continue;
            if (leash_tb_scalar(w, v->string, step, v->valuedouble, wall)) {
                fprintf(stderr, "leash tensorboard: %s\n", leash_errmsg());
                return -1;
            }
            count++;
        }
    }
    return count;
}

int cli_tensorboard(int argc, char **argv) {
    const char *run = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return fputs(usage, stdout), 0;
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] != '-' && !run) run = argv[i];
        else return fprintf(stderr, "leash tensorboard: unexpected argument '%s'\n\n%s", argv[i], usage), 2;
    }
    if (!run) return fputs(usage, stderr), 2;
    if (!out) out = run;
    char path[4200], *text = NULL, *old = existing_event_file(out);
    if (old) {
        fprintf(stderr, "leash tensorboard: %s already holds the event file %s, and TensorBoard would show both; "
                        "remove it or give --out another directory\n", out, old);
        free(old);
        return 1;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    struct stat st;
    if (leash_read_file(path, (size_t)4 << 30, &text, NULL) || stat(path, &st) != 0) {
        fprintf(stderr, "leash tensorboard: %s\n", leash_errmsg());
        free(text);
        return 1;
    }
    int n;
    cJSON **lines = parse_lines(path, text, &n);
    free(text);
    if (!lines) return 1;
    leash_tb *w = NULL;
    long count = -1;
    if (leash_tb_open(&w, out)) fprintf(stderr, "leash tensorboard: %s\n", leash_errmsg());
    else count = write_scalars(w, lines, n, (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec);
    if (w) snprintf(path, sizeof path, "%s", leash_tb_path(w));
    if (w && leash_tb_close(w)) fprintf(stderr, "leash tensorboard: %s\n", leash_errmsg()), count = -1;
    for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
    free(lines);
    if (count < 0) return 1;
    fprintf(stderr, "leash tensorboard: wrote %ld scalars of %d steps to %s\n", count, n, path);
    return 0;
}

int cli_tb_finish(leash_tb *tb, int write_rc, int rc) {
    int close_rc = leash_tb_close(tb);
    return rc ? rc : write_rc ? write_rc : close_rc; // the message is the first failure's
}
