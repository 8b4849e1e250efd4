/* `leash plot RUN_DIR... [--out FILE.png]`: training curves of RL runs as one PNG, drawn by gnuplot. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "leash/data.h"
#include "leash/error.h"

static const char *const KEYS[] = {"step", "objective/scores", "gold/reward", "gold/grammatical", "objective/kl",
                                   "beta", "fluency/ref_nll", "objective/kl_exact"};
static const char *const TITLES[] = {"", "proxy reward (reward model score)", "gold reward", "grammatical fraction",
                                     "KL, nats per sequence", "beta", "reference NLL, nats per token", ""};
enum { NK = sizeof KEYS / sizeof KEYS[0], EXTRA_MAX = 12 };

int cli_plot(int argc, char **argv) {
    const char *out = NULL;
    const char *runs[8];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: leash plot RUN_DIR [RUN_DIR ...] [--out FILE.png]\n\nDraws proxy reward, gold reward, "
                 "grammaticality, KL, beta and reference NLL per step for each run (from metrics.jsonl), and a reward "
                 "command's gold/* metrics and rewards/<label>/mean, into one PNG "
                 "(default: RUN_DIR/curves.png of the first run). Needs gnuplot (apt-get install gnuplot-nox).");
            return 0;
        } else if (argv[i][0] == '-') return fprintf(stderr, "leash plot: unknown option '%s' (see --help)\n", argv[i]), 2;
        else if (n < 8) runs[n++] = argv[i];
    }
    if (!n) {
        fputs("usage: leash plot RUN_DIR [RUN_DIR ...] [--out FILE.png]\n", stderr);
        return 2;
    }
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fputs("leash plot: gnuplot is not installed; run: apt-get install gnuplot-nox (or scripts/deps.sh)\n", stderr);
        return 1;
    }
    char def[4096], tmp[] = "/tmp/leash-plot-XXXXXX", path[4200];
    if (!out) snprintf(def, sizeof def, "%s/curves.png", runs[0]), out = def;
    if (!mkdtemp(tmp)) {
        perror("leash plot: mkdtemp");
        return 1;
    }
    // the fixed panels' metrics, then the reward commands' own (gold/..., rewards/<label>/mean): a panel each
    char extra[EXTRA_MAX][CLI_KEY_MAX];
    int ne = 0;
    for (int r = 0; r < n; r++) ne = cli_report_scorer_keys(runs[r], extra, ne, EXTRA_MAX);
    const char *keys[NK + EXTRA_MAX];
    int nk = NK;
    for (int k = 0; k < NK; k++) keys[k] = KEYS[k];
    for (int k = 0; k < ne; k++) keys[nk++] = extra[k];
    int present[NK + EXTRA_MAX] = {0}; // a metric some run has (a run outside the default world has no gold reward)
    for (int r = 0; r < n; r++) { // one whitespace-separated data file per run; NaN where a metric is absent
        leash_table t;
        char mpath[4096];
        snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", runs[r]);
        if (leash_jsonl_load(mpath, NULL, 0, keys, nk, 1, &t)) {
            fprintf(stderr, "leash plot: %s\n", leash_errmsg());
            return 1;
        }
        snprintf(path, sizeof path, "%s/run%d.dat", tmp, r);
        FILE *f = fopen(path, "w");
        for (int i = 0; f && i < t.n; i++) {
            for (int k = 0; k < nk; k++) {
                fprintf(f, k ? " %.6g" : "%.6g", isnan(t.num[k][i]) ? NAN : t.num[k][i]);
                present[k] |= !isnan(t.num[k][i]);
            }
            fputc('\n', f);
        }
        if (f) fclose(f);
        leash_table_free(&t);
    }
    snprintf(path, sizeof path, "%s/plot.gp", tmp);
    FILE *g = fopen(path, "w");
    if (!g) {
        perror("leash plot");
        return 1;
    }
    int panels[6 + EXTRA_MAX], np = 0, rows; // the six fixed panels, then one per reward-command metric
    for (int k = 1; k <= 6; k++) panels[np++] = k;
    for (int k = NK; k < nk; k++) panels[np++] = k;
    rows = (np + 2) / 3;
    fprintf(g, "set terminal pngcairo size 1400,%d noenhanced\nset output '%s'\nset multiplot layout %d,3 title 'leash'\n",
            450 * rows, out, rows);
    fprintf(g, "set key bottom left font ',8'\nset grid\nset xlabel 'step'\nset datafile missing 'nan'\n");
    for (int i = 0; i < np; i++) {
        int k = panels[i];
        const char *title = k < NK ? TITLES[k] : keys[k];
        if (!present[k]) { // an empty panel that says so, rather than a gnuplot error
            fprintf(g, "set title '%s'\nset label 1 'not measured in these runs' at graph 0.5,0.5 center\n"
                       "set xrange [0:1]\nset yrange [0:1]\nplot 2 notitle\nunset label 1\nset autoscale\n",
                    title);
            continue;
        }
        fprintf(g, "set title '%s'\nplot ", title);
        for (int r = 0; r < n; r++)
            fprintf(g, "%s'%s/run%d.dat' using 1:%d with lines lw 2 title '%s'", r ? ", " : "", tmp, r, k + 1, runs[r]);
        fputc('\n', g);
    }
    fputs("unset multiplot\n", g);
    fclose(g);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "gnuplot '%s/plot.gp' 2>&1 | grep -v '^$' >&2; test -s '%s'", tmp, out);
    int st = system(cmd);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "leash plot: could not remove %s\n", tmp);
    if (st != 0) {
        fprintf(stderr, "leash plot: gnuplot did not write %s\n", out);
        return 1;
    }
    fprintf(stderr, "leash plot: wrote %s\n", out);
    return 0;
}
