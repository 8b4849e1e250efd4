/* The reward commands of an RL run: see src/scorer.h. */
#define _POSIX_C_SOURCE 200809L
#include "scorer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/dist.h"
#include "leash/error.h"

int scorers_start(rl_scorers *s, const leash_reward_source *w, int world_gold) {
    memset(s, 0, sizeof *s);
    s->gold = -1, s->world_gold = world_gold;
    const char *const *cmds = w->n_cmds > 0 ? w->cmds : &w->cmd;
    int n = w->n_cmds > 0 ? w->n_cmds : 1;
    if (n > SCORER_MAX) return leash_fail(LEASH_EINVAL, "%d reward commands; at most %d are accepted", n, SCORER_MAX);
    for (int i = 0; i < n; i++) {
        const char *label = w->cmd_names ? w->cmd_names[i] : NULL;
        size_t len = label ? strlen(label) : 0;
        for (size_t k = 0; k < len; k++) // a label goes into metric names and messages: a plain word
            if (!(label[k] == '_' || label[k] == '-' || label[k] == '.' || (label[k] >= '0' && label[k] <= '9') ||
                  (label[k] >= 'a' && label[k] <= 'z') || (label[k] >= 'A' && label[k] <= 'Z')))
                len = 0;
        if (label && (len == 0 || len >= sizeof s->label[i]))
            return leash_fail(LEASH_EINVAL, "--reward-names: \"%s\" is not a name of 1 to %zu letters, digits, '_', '-' or '.'",
                              label, sizeof s->label[i] - 1);
        if (label) snprintf(s->label[i], sizeof s->label[i], "%s", label);
        else snprintf(s->label[i], sizeof s->label[i], "cmd%d", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(s->label[i], s->label[j]))
                return leash_fail(LEASH_EINVAL, "--reward-names: \"%s\" names two reward commands; give each its own", s->label[i]);
        char lab[sizeof s->label[i]]; // a copy: gcc -O1 (the sanitizer build) sees s->label and s->what as overlapping
        memcpy(lab, s->label[i], sizeof lab);
        if (n == 1) snprintf(s->what[i], sizeof s->what[i], "reward command");
        else snprintf(s->what[i], sizeof s->what[i], "reward command %s", lab);
        snprintf(s->reward_key[i], sizeof s->reward_key[i], "rewards/%s/mean", lab);
        s->weight[i] = w->weights ? w->weights[i] : 1.0;
        if (!isfinite(s->weight[i]))
            return leash_fail(LEASH_EINVAL, "--reward-weights: the weight of %s is %g; it must be finite", s->label[i], s->weight[i]);
    }
    if (!(s->proc = calloc(n, sizeof *s->proc))) return leash_fail(LEASH_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) s->proc[i].to = s->proc[i].from = -1;
    s->n = n;
    for (int i = 0; i < n; i++) {
        int rc = subprocess_start(&s->proc[i], cmds[i], s->what[i]);
        if (rc) return rc;
    }
    return LEASH_OK;
}

void scorers_stop(rl_scorers *s) {
    for (int i = 0; s->proc && i < s->n; i++)
        if (s->proc[i].pid > 0 || s->proc[i].to >= 0) subprocess_stop(&s->proc[i]);
    free(s->proc), free(s->own), free(s->rows);
    s->proc = NULL, s->own = s->rows = NULL, s->n = 0;
}

int scorers_begin(rl_scorers *s, int R) {
    if (!s->rows) {
        s->R = R;
        s->rows = calloc((size_t)SCORER_METRICS_MAX * R, sizeof *s->rows);
        s->own = calloc((size_t)s->n * R, sizeof *s->own);
        if (!s->rows || !s->own) return leash_fail(LEASH_ENOMEM, "out of memory");
    }
    memset(s->rows, 0, (size_t)SCORER_METRICS_MAX * R * sizeof *s->rows);
    memset(s->own, 0, (size_t)s->n * R * sizeof *s->own);
    return LEASH_OK;
}

/* A metric's name as it can be written into metrics.jsonl unescaped: printable ASCII but quotes and backslashes. */
static int plain_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= SCORER_NAME_MAX) return 0;
    for (size_t k = 0; k < n; k++)
        if (name[k] < 0x20 || name[k] > 0x7e || name[k] == '"' || name[k] == '\\') return 0;
    return 1;
}

static int find_name(const rl_scorers *s, const char *name) {
    for (int k = 0; k < s->n_metrics; k++)
        if (!strcmp(s->name[k], name)) return k;
    return -1;
}

/* Scorer i's first answer: its metrics' names become the run's (checked: unique, plain, not too many). */
static int learn_names(rl_scorers *s, int i, int id, const cJSON *m) {
    for (const cJSON *v = m ? m->child : NULL; v; v = v->next) {
        int k = find_name(s, v->string);
        if (k >= 0)
            return leash_fail(LEASH_EFORMAT, "%s: answer to request %d: metrics key \"%s\" is %s; give each metric one name",
                              s->what[i], id, v->string, s->of[k] == i ? "given twice" : "reported by another reward command too");
        if (!plain_name(v->string))
            return leash_fail(LEASH_EFORMAT, "%s: answer to request %d: metrics key \"%.80s\": a name is 1 to %d printable ASCII "
                                             "characters without quotes or backslashes, e.g. \"gold/correct\"",
                              s->what[i], id, v->string, SCORER_NAME_MAX - 1);
        if (!strcmp(v->string, "gold/reward") && s->world_gold)
            return leash_fail(LEASH_EINVAL, "%s: answer to request %d reports \"gold/reward\", and the run measures the default "
                                            "world's gold reward too (--gold-metrics or --gold-reward): use one of them",
                              s->what[i], id);
        if (s->n_metrics == SCORER_METRICS_MAX)
            return leash_fail(LEASH_EFORMAT, "%s: answer to request %d: more than %d metrics from the reward commands together",
                              s->what[i], id, SCORER_METRICS_MAX);
        snprintf(s->name[s->n_metrics], SCORER_NAME_MAX, "%s", v->string);
        if (!strcmp(v->string, "gold/reward")) s->gold = s->n_metrics;
        s->of[s->n_metrics++] = i;
    }
    s->seen[i] = 1;
    return LEASH_OK;
}

/* An answer's metrics (NULL: none) as row b's values: the same names as scorer i's first answer. */
static int keep_metrics(rl_scorers *s, int i, int id, int b, const cJSON *m) {
    int rc = s->seen[i] ? LEASH_OK : learn_names(s, i, id, m);
    for (const cJSON *v = m ? m->child : NULL; v && !rc; v = v->next) {
        int k = find_name(s, v->string);
        if (k < 0 || s->of[k] != i)
            return leash_fail(LEASH_EFORMAT, "%s: answer to request %d: metrics key \"%.80s\" was not in its first answer's "
                                             "metrics; every answer must carry the same names",
                              s->what[i], id, v->string);
        s->rows[(size_t)k * s->R + b] = v->valuedouble;
    }
    for (int k = 0; k < s->n_metrics && !rc; k++)
        if (s->of[k] == i && !cJSON_GetObjectItemCaseSensitive(m, s->name[k]))
            return leash_fail(LEASH_EFORMAT, "%s: answer to request %d lacks metrics key \"%s\", which its first answer carried; "
                                             "every answer must carry the same names",
                              s->what[i], id, s->name[k]);
    return rc;
}

/* The request of row id: {"id", "prompt", "response", then the prompt line's other columns}. */
static cJSON *request(int id, const char *prompt, const char *columns, const char *response) {
    cJSON *req = subprocess_request_object(id), *cols = columns ? cJSON_Parse(columns) : NULL;
    int ok = req && cJSON_AddStringToObject(req, "prompt", prompt) && cJSON_AddStringToObject(req, "response", response) &&
             (!columns || cols);
    while (ok && cols && cols->child) { // moved over in the line's order (the key is copied before the item's is freed)
        cJSON *v = cJSON_DetachItemViaPointer(cols, cols->child);
        ok = cJSON_AddItemToObject(req, v->string, v);
        if (!ok) cJSON_Delete(v);
    }
    cJSON_Delete(cols);
    if (!ok) cJSON_Delete(req);
    return ok ? req : NULL;
}

int scorers_score(rl_scorers *s, double timeout_s, int id, int b, const char *prompt, const char *columns,
                  const char *response, double *reward, double *gold) {
    cJSON *req = request(id, prompt, columns, response);
    if (!req) return leash_fail(LEASH_ENOMEM, "out of memory");
    int rc = LEASH_OK;
    *reward = 0.0;
    for (int i = 0; i < s->n && !rc; i++) {
        char *line = NULL;
        cJSON *m = NULL;
        double r = 0.0;
        if (!(rc = subprocess_call(&s->proc[i], timeout_s, id, i + 1 < s->n ? cJSON_Duplicate(req, 1) : req, &line)) &&
            !(rc = subprocess_parse_scored(line, id, s->what[i], &r, &m)))
            rc = keep_metrics(s, i, id, b, m);
        if (i + 1 == s->n) req = NULL; // consumed by the last call
        cJSON_Delete(m);
        free(line);
        if (s->n == 1) *reward = r; // one scorer: its reward as it is
        else *reward += s->weight[i] * r, s->own[(size_t)i * s->R + b] = r;
    }
    cJSON_Delete(req);
    s->known = s->known || (s->n && s->seen[0]);
    *gold = s->gold >= 0 ? s->rows[(size_t)s->gold * s->R + b] : NAN;
    return rc;
}

/* The metric names the same on every rank: the lowest rank that knows them gives them to the others, and a rank
 * that knows others is an error. A rank with no rows of its own learns them here. */
static int agree(rl_scorers *s) {
    if (s->agreed) return LEASH_OK;
    if (leash_dist_size() == 1) return s->agreed = s->known, LEASH_OK;
    double lead = s->known ? -(double)leash_dist_rank() : -INFINITY;
    int rc = leash_dist_max_f64(&lead, 1, "scorer metric names");
    if (rc || isinf(lead)) return rc; // no rank has had an answer yet
    enum { NAMES = SCORER_METRICS_MAX * SCORER_NAME_MAX };
    int *buf = calloc(NAMES + SCORER_METRICS_MAX + 1, sizeof *buf);
    if (!buf) return leash_fail(LEASH_ENOMEM, "out of memory");
    if (leash_dist_rank() == (int)-lead) { // the names' bytes, their scorers, their count: summed with zeros
        for (int k = 0; k < NAMES; k++) buf[k] = (unsigned char)s->name[k / SCORER_NAME_MAX][k % SCORER_NAME_MAX];
        for (int k = 0; k < SCORER_METRICS_MAX; k++) buf[NAMES + k] = s->of[k];
        buf[NAMES + SCORER_METRICS_MAX] = s->n_metrics;
    }
    if (!(rc = leash_dist_sum_i32(buf, NAMES + SCORER_METRICS_MAX + 1, "scorer metric names"))) {
        rl_scorers was = *s;
        for (int k = 0; k < NAMES; k++) s->name[k / SCORER_NAME_MAX][k % SCORER_NAME_MAX] = (char)buf[k];
        for (int k = 0; k < SCORER_METRICS_MAX; k++) s->of[k] = buf[NAMES + k];
        s->n_metrics = buf[NAMES + SCORER_METRICS_MAX];
        s->gold = find_name(s, "gold/reward");
        if (was.known && (was.n_metrics != s->n_metrics || memcmp(was.name, s->name, sizeof s->name) || memcmp(was.of, s->of, sizeof s->of)))
            rc = leash_fail(LEASH_EFORMAT, "the reward commands report other metric names on rank %d than on rank %d; every "
                                           "answer must carry the same names", leash_dist_rank(), (int)-lead);
        for (int i = 0; i < s->n; i++) s->seen[i] = 1;
        s->known = s->agreed = 1;
    }
    free(buf);
    return rc;
}

int scorers_end(rl_scorers *s) {
    int rc = agree(s), R = s->R;
    if (!rc && s->n_metrics) rc = leash_dist_sum_f64(s->rows, (size_t)s->n_metrics * R, "scorer metrics");
    if (!rc && s->n > 1) rc = leash_dist_sum_f64(s->own, (size_t)s->n * R, "rewards of each reward command");
    for (int k = 0; k < s->n_metrics && !rc; k++) {
        double sum = 0.0;
        for (int b = 0; b < R; b++) sum += s->rows[(size_t)k * R + b];
        s->mean[k] = sum / R;
    }
    for (int i = 0; i < s->n && s->n > 1 && !rc; i++) {
        double sum = 0.0;
        for (int b = 0; b < R; b++) sum += s->own[(size_t)i * R + b];
        s->rmean[i] = sum / R;
    }
    return rc;
}

int scorers_metrics(const rl_scorers *s, leash_metrics *t) {
    for (int k = 0; k < s->n_metrics; k++) {
        if (k == s->gold) continue; // the run's gold reward: "gold/reward" is in t already
        if (leash_metrics_find(t, s->name[k]))
            return leash_fail(LEASH_EFORMAT, "%s reports metrics key \"%s\", a name leash logs itself; rename it (e.g. "
                                             "\"scorer/%s\")",
                              s->what[s->of[k]], s->name[k], s->name[k]);
        leash_metrics_real(t, s->name[k], "%.8g", s->mean[k]);
    }
    for (int i = 0; i < s->n && s->n > 1; i++) leash_metrics_real(t, s->reward_key[i], "%.8g", s->rmean[i]);
    return LEASH_OK;
}

int leash_reward_lists(int n, const char *weights, const char *names, double *w, const char **labels, char *buf, size_t cap) {
    for (int i = 0; i < n; i++) w[i] = 1.0, labels[i] = NULL;
    if (weights) { // W1,W2,...: exactly n finite numbers
        const char *p = weights;
        int i = 0;
        for (;;) {
            char *end;
            double x = strtod(p, &end);
            if (end == p || !isfinite(x) || (*end && *end != ','))
                return leash_fail(LEASH_EINVAL, "--reward-weights \"%s\": give %d finite numbers separated by commas, one "
                                                "for each --reward-cmd in order", weights, n);
            if (i < n) w[i] = x;
            i++;
            if (!*end) break;
            p = end + 1;
        }
        if (i != n)
            return leash_fail(LEASH_EINVAL, "--reward-weights \"%s\" has %d weight(s) for %d --reward-cmd", weights, i, n);
    }
    if (!names) return LEASH_OK;
    if (strlen(names) >= cap) return leash_fail(LEASH_EINVAL, "--reward-names \"%.80s...\" is longer than %zu bytes", names, cap - 1);
    strcpy(buf, names);
    int i = 0;
    for (char *p = buf, *comma; p; p = comma ? comma + 1 : NULL) {
        if ((comma = strchr(p, ','))) *comma = '\0';
        if (i < n) labels[i] = p;
        i++;
    }
    if (i != n) {
        for (int k = 0; k < n; k++) labels[k] = NULL;
        return leash_fail(LEASH_EINVAL, "--reward-names \"%s\" has %d name(s) for %d --reward-cmd", names, i, n);
    }
    return LEASH_OK;
}

void scorers_describe(const leash_reward_source *w, char *out, size_t cap) {
    int n = w->n_cmds > 0 ? w->n_cmds : 1, plain = n == 1 && (!w->weights || w->weights[0] == 1.0) && (!w->cmd_names || !w->cmd_names[0]);
    const char *const *cmds = w->n_cmds > 0 ? w->cmds : &w->cmd;
    snprintf(out, cap, "%s", plain && w->cmd ? w->cmd : "");
    for (int i = 0; i < n && !plain; i++) { // "label x weight: cmd; ..."
        size_t k = strlen(out);
        char label[32];
        if (w->cmd_names && w->cmd_names[i]) snprintf(label, sizeof label, "%s", w->cmd_names[i]);
        else snprintf(label, sizeof label, "cmd%d", i);
        snprintf(out + k, cap - k, "%s%s x %.15g: %s", i ? "; " : "", label, w->weights ? w->weights[i] : 1.0, cmds[i] ? cmds[i] : "");
    }
}
