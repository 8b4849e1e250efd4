/* `leash report RUN_DIR...`: runs side by side, from their metrics.jsonl and samples.jsonl; --html OUT.html
 * writes them as one page instead (src/cli/report_html.c). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/data.h"
#include "leash/error.h"
#include "leash/fileio.h"

static const char *const KEYS[] = {"step", "objective/scores", "gold/reward", "gold/grammatical", "objective/kl",
                                   "objective/kl_exact", "beta", "fluency/ref_nll", "text/repetition", "text/distinct2",
                                   "text/length", "alarm/reward_hacking"};
static const char *LABELS[] = {"", "proxy reward (reward model)", "gold reward (the truth)", "grammatical",
                                     "KL, nats/sequence (estimator)", "KL, nats/sequence (exact)", "beta",
                                     "reference NLL, nats/token", "repetition", "distinct-2", "response tokens", ""};
enum { NK = sizeof KEYS / sizeof KEYS[0], WINDOW = 5 };

double cli_report_mean(const leash_table *t, int k, int from, int to) {
    double s = 0;
    int n = 0;
    for (int i = from; i < to; i++)
        if (i >= 0 && i < t->n && !isnan(t->num[k][i])) s += t->num[k][i], n++;
    return n ? s / n : NAN;
}

int cli_report_scorer_keys(const char *run, char (*keys)[CLI_KEY_MAX], int n, int max) {
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    if (leash_read_file(path, (size_t)1 << 30, &text, &len)) return n;
    char *nl = memchr(text, '\n', len);
    if (nl) *nl = '\0';
    cJSON *o = cJSON_Parse(text); // the first line: a run logs the same names on every line
    for (const cJSON *v = cJSON_IsObject(o) ? o->child : NULL; v && n < max; v = v->next) {
        int mine = (!strncmp(v->string, "gold/", 5) && strcmp(v->string, "gold/reward") && strcmp(v->string, "gold/grammatical")) ||
                   !strncmp(v->string, "rewards/", 8);
        for (int k = 0; k < n && mine; k++) mine = strcmp(keys[k], v->string) != 0;
        if (mine && strlen(v->string) < CLI_KEY_MAX) strcpy(keys[n++], v->string);
    }
    cJSON_Delete(o);
    free(text);
    return n;
}

/* The scorers' own rows (gold/..., rewards/<label>/mean) of each run, first and last WINDOW steps. */
static void scorer_rows(const char *const *runs, int n) {
    char keys[16][CLI_KEY_MAX];
    int nk = 0;
    for (int r = 0; r < n; r++) nk = cli_report_scorer_keys(runs[r], keys, nk, 16);
    if (!nk) return;
    const char *names[16];
    for (int k = 0; k < nk; k++) names[k] = keys[k];
    leash_table t[8] = {{0}};
    for (int r = 0; r < n; r++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", runs[r]);
        leash_jsonl_load(path, NULL, 0, names, nk, 1, &t[r]); // a key a run lacks: NAN
    }
    for (int k = 0; k < nk; k++) {
        printf("%-32.32s", keys[k]);
        for (int r = 0; r < n; r++) {
            double a = cli_report_mean(&t[r], k, 0, WINDOW), b = cli_report_mean(&t[r], k, t[r].n - WINDOW, t[r].n);
            if (isnan(a)) printf(" | %-27s", "-");
            else printf(" | %+11.3f -> %+11.3f", a, b);
        }
        printf("\n");
    }
    for (int r = 0; r < n; r++) leash_table_free(&t[r]);
}

/* The proxy row's label: what the runs' checkpoint/state.json say they were scored by (a reward model, a
 * scorer command, the gold reward, a function), when every run that recorded it agrees; else "proxy reward". */
static const char *proxy_label(const char *const *runs, int n) {
    static const char *const names[] = {"proxy reward", "proxy reward (reward model)", "proxy reward (scorer)",
                                        "proxy reward (gold)", "proxy reward (function)"};
    int kind = -1;
    for (int r = 0; r < n; r++) {
        char path[4200], *text = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/checkpoint/state.json", runs[r]);
        if (leash_read_file(path, (size_t)1 << 26, &text, &len)) continue; // logs only: not recorded
        cJSON *o = cJSON_Parse(text);
        free(text);
        const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(o, "reward_cmd");
        int k = cJSON_IsString(cmd) && cmd->valuestring[0] ? 2
                : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "gold_reward")) ? 3
                : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "reward_fn")) ? 4
                : cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "reward")) ? 1 : 0;
        cJSON_Delete(o);
        kind = kind < 0 || kind == k ? k : 0;
    }
    return names[kind < 0 ? 0 : kind];
}

int cli_report(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs("usage: leash report RUN_DIR [RUN_DIR ...] [--html OUT.html]\n\nPrints each run's first and last 5 steps side by side "
              "(proxy and gold reward, grammaticality, KL, fluency, repetition, and a reward command's gold/* metrics and "
              "rewards/<label>/mean), when the reward-hacking alarm fired, "
              "and samples from the start and the end.\n--html OUT.html writes one self-contained page instead: the runs' "
              "configuration, that table, the training curves (SVG) and the samples.\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *runs[8], *html = NULL;
    int n = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--html") && i + 1 < argc) html = argv[++i];
        else if (argv[i][0] == '-') return fprintf(stderr, "leash report: unknown option '%s' (see --help)\n", argv[i]), 2;
        else if (n < 8) runs[n++] = argv[i];
    LABELS[1] = proxy_label(runs, n);
    leash_table t[8] = {{0}}, s[8] = {{0}};
    static const char *const skeys[] = {"prompt", "response"}, *const snum[] = {"step", "score", "gold"};
    for (int r = 0; r < n; r++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.jsonl", runs[r]);
        if (leash_jsonl_load(path, NULL, 0, KEYS, NK, 1, &t[r])) {
            fprintf(stderr, "leash report: %s\n", leash_errmsg());
            return 1;
        }
        snprintf(path, sizeof path, "%s/samples.jsonl", runs[r]);
        leash_jsonl_load(path, skeys, 2, snum, 3, 1, &s[r]); // samples are optional
    }
    if (html) {
        int rc = cli_report_html(html, runs, n, t, s, LABELS, NK, WINDOW);
        for (int r = 0; r < n; r++) leash_table_free(&t[r]), leash_table_free(&s[r]);
        return rc;
    }
    printf("%-32s", "first -> last 5 steps");
    for (int r = 0; r < n; r++) printf(" | %-27.27s", runs[r]);
    printf("\n");
    for (int k = 1; k < NK - 1; k++) {
        printf("%-32s", LABELS[k]);
        for (int r = 0; r < n; r++) {
            double a = cli_report_mean(&t[r], k, 0, WINDOW), b = cli_report_mean(&t[r], k, t[r].n - WINDOW, t[r].n);
            if (isnan(a)) printf(" | %-27s", "-");
            else printf(" | %+11.3f -> %+11.3f", a, b);
        }
        printf("\n");
    }
    scorer_rows(runs, n);
    printf("%-32s", "reward-hacking alarm");
    for (int r = 0; r < n; r++) {
        int at = 0;
        for (int i = 0; i < t[r].n && !at; i++)
            if (t[r].num[NK - 1][i] > 0) at = (int)t[r].num[0][i];
        char buf[64];
        snprintf(buf, sizeof buf, at ? "fired at step %d" : "silent", at);
        printf(" | %-27s", buf);
    }
    printf("\n");
    for (int r = 0; r < n; r++) {
        if (!s[r].n) continue;
        double first = s[r].num[0][0], last = s[r].num[0][s[r].n - 1];
        printf("\n%s: samples at step %.0f and step %.0f (proxy score, gold reward):\n", runs[r], first, last);
        for (int i = 0; i < s[r].n; i++)
            if (s[r].num[0][i] == first || s[r].num[0][i] == last)
            {
                char gold[16] = "     -"; // a run without a gold reward
                if (!isnan(s[r].num[2][i])) snprintf(gold, sizeof gold, "%+6.2f", s[r].num[2][i]);
                printf("  step %3.0f  %+6.2f %s  %s|%s\n", s[r].num[0][i], s[r].num[1][i], gold, s[r].str[0][i],
                       s[r].str[1][i]);
            }
    }
    for (int r = 0; r < n; r++) leash_table_free(&t[r]), leash_table_free(&s[r]);
    return 0;
}
