/* `leash report --html OUT.html RUN...`: the runs as one self-contained page (no network, no scripts, no
 * fonts to fetch): their configuration side by side, the first/last metrics table of `leash report`, the
 * training curves as inline SVG drawn here (proxy and gold reward, KL with the adaptive controller's band,
 * beta, entropy, fluency; the reward-hacking alarm's step marked), and samples from the start and the end.
 * Every text from a run (responses are arbitrary model output) goes through html_text().
 *
 * Each plot's <svg> carries data-x="x0 x1 px0 px1" and data-y="y0 y1 py0 py1": the linear maps from steps
 * and values to its pixels, so that a test can read the curves back from the points. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "leash/beta.h"
#include "leash/data.h"
#include "leash/error.h"
#include "leash/fileio.h"

/* The runs' colours; red is kept for the reward-hacking alarm. */
static const char *const COLORS[8] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#7f7f7f"};

/* The columns the plots read from metrics.jsonl (P_* index them). */
static const char *const PKEYS[] = {"step", "objective/scores", "gold/reward", "objective/kl", "objective/kl_exact",
                                    "objective/kl_per_token", "beta", "objective/entropy", "fluency/ref_nll",
                                    "alarm/reward_hacking"};
enum { P_STEP, P_PROXY, P_GOLD, P_KL, P_KL_EXACT, P_KL_TOKEN, P_BETA, P_ENTROPY, P_NLL, P_ALARM, NPK };

/* Text as HTML: the five special characters as entities; bytes that are not UTF-8 as U+FFFD; control
 * characters other than tab and newline as their visible Control Pictures (U+2400 + c, U+2421 for DEL). */
static void html_text(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0;
        for (int i = 1; ok && i < len; i++) ok = (p[i] & 0xC0) == 0x80;
        if (ok && len > 1) { // no overlong forms, surrogates or code points past U+10FFFF
            unsigned cp = len == 2 ? (c & 0x1F) << 6 | (p[1] & 0x3F)
                        : len == 3 ? (c & 0x0F) << 12 | (p[1] & 0x3F) << 6 | (p[2] & 0x3F)
                                   : (c & 0x07) << 18 | (p[1] & 0x3F) << 12 | (p[2] & 0x3F) << 6 | (p[3] & 0x3F);
            ok = cp >= (len == 2 ? 0x80u : len == 3 ? 0x800u : 0x10000u) && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (!ok) fputs("\xEF\xBF\xBD", f), p++;
        else if (len > 1) fwrite(p, 1, (size_t)len, f), p += len;
        else {
            if (c == '&') fputs("&amp;", f);
            else if (c == '<') fputs("&lt;", f);
            else if (c == '>') fputs("&gt;", f);
            else if (c == '"') fputs("&quot;", f);
            else if (c == '\'') fputs("&#39;", f);
            else if (c == 0x7F) fputs("&#x2421;", f);
            else if (c < 0x20 && c != '\t' && c != '\n') fprintf(f, "&#x%X;", 0x2400 + c);
            else fputc((int)c, f);
            p++;
        }
    }
}

static const char *STYLE =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}h1{font-size:22px}h2{font-size:18px;"
    "margin-top:28px;border-bottom:1px solid #ccc}table{border-collapse:collapse;font-size:13px;margin:8px 0}"
    "td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}"
    "td.num{text-align:right;font-family:monospace;white-space:nowrap}tr.differs td{background:#fff8e0}"
    "td.text{font-family:monospace;white-space:pre-wrap;max-width:560px;word-break:break-word}"
    ".plots{display:flex;flex-wrap:wrap;gap:12px}svg.plot{border:1px solid #ddd;background:#fff}"
    ".swatch{display:inline-block;width:14px;height:4px;margin:0 4px 3px 10px}.note{color:#666;font-size:13px}";

/* ---- configuration ---- */

static cJSON *load_json(const char *dir, const char *name) {
    char path[8500], *text = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (leash_read_file(path, 1 << 24, &text, NULL)) return NULL;
    cJSON *o = cJSON_Parse(text);
    free(text);
    return o;
}

/* The first value among keys that o has, as text; "" when none. */
static void json_field(const cJSON *o, const char *const *keys, int nkeys, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < nkeys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (cJSON_IsNumber(v)) return (void)snprintf(out, cap, "%.10g", v->valuedouble);
        if (cJSON_IsString(v)) return (void)snprintf(out, cap, "%s", v->valuestring);
        if (cJSON_IsBool(v)) return (void)snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
        if (cJSON_IsArray(v)) {
            size_t k = 0;
            for (const cJSON *e = v->child; e && k + 2 < cap; e = e->next)
                k += (size_t)snprintf(out + k, cap - k, "%s%s", k ? "," : "", cJSON_IsString(e) ? e->valuestring : "?");
            return;
        }
    }
}

enum { NCONF = 13, CONF_LEN = 512 };
static const char *const CONF_LABELS[NCONF] = {"algorithm", "steps done", "seed", "batch", "group (GRPO)",
                                                "max new tokens", "minibatch (0: whole batch)", "epochs", "temperature",
                                                "beta controller", "beta at the last checkpoint", "KL estimator",
                                                "model"};

/* One run's configuration cells: checkpoint/state.json's settings (what a resume must keep), the KL
 * estimator from metrics.jsonl, the policy's config.json (and adapter_config.json for LoRA). */
static void run_config(const char *run, const char *estimator, char cell[NCONF][CONF_LEN]) {
    for (int i = 0; i < NCONF; i++) strcpy(cell[i], "not recorded");
    cJSON *st = load_json(run, "checkpoint/state.json");
    if (cJSON_IsObject(st)) {
        static const char *const k[] = {"algo", "step", "seed", "batch", "group", "max_new", "minibatch", "epochs", "temperature"};
        for (int i = 0; i < 9; i++) {
            char v[CONF_LEN];
            json_field(st, &k[i], 1, v, sizeof v);
            if (v[0]) strcpy(cell[i], v);
        }
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(st, "beta");
        double kind = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "kind"));
        double target = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "target"));
        double horizon = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "horizon"));
        double units = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "units"));
        if (kind == LEASH_BETA_FIXED) strcpy(cell[9], "fixed");
        else if (kind == LEASH_BETA_ADAPTIVE)
            snprintf(cell[9], CONF_LEN, "adaptive: target %g nats per %s, horizon %g", target,
                     units == LEASH_KL_PER_TOKEN ? "token" : "sequence", horizon);
        json_field(b, (const char *const[]){"beta"}, 1, cell[10], CONF_LEN);
        if (!cell[10][0]) strcpy(cell[10], "not recorded");
    }
    cJSON_Delete(st);
    if (estimator && estimator[0]) snprintf(cell[11], CONF_LEN, "%s", estimator);
    char policy[4200];
    snprintf(policy, sizeof policy, "%s/policy", run);
    cJSON *cfg = load_json(policy, "config.json"), *lora = load_json(policy, "adapter_config.json");
    if (cJSON_IsObject(cfg)) {
        char type[64], layers[32], width[32], heads[32], vocab[32];
        json_field(cfg, (const char *const[]){"model_type"}, 1, type, sizeof type);
        json_field(cfg, (const char *const[]){"n_layer", "num_hidden_layers"}, 2, layers, sizeof layers);
        json_field(cfg, (const char *const[]){"n_embd", "hidden_size"}, 2, width, sizeof width);
        json_field(cfg, (const char *const[]){"n_head", "num_attention_heads"}, 2, heads, sizeof heads);
        json_field(cfg, (const char *const[]){"vocab_size"}, 1, vocab, sizeof vocab);
        snprintf(cell[12], CONF_LEN, "%s: layers %s, width %s, heads %s, vocabulary %s", type, layers, width, heads, vocab);
    } else if (cJSON_IsObject(lora)) {
        char r[32], alpha[32], targets[128], base[128];
        json_field(lora, (const char *const[]){"r"}, 1, r, sizeof r);
        json_field(lora, (const char *const[]){"lora_alpha"}, 1, alpha, sizeof alpha);
        json_field(lora, (const char *const[]){"target_modules"}, 1, targets, sizeof targets);
        json_field(lora, (const char *const[]){"base_model_name_or_path"}, 1, base, sizeof base);
        snprintf(cell[12], CONF_LEN, "LoRA r %s, alpha %s on %s; base %s", r, alpha, targets, base);
    }
    cJSON_Delete(cfg), cJSON_Delete(lora);
}

/* The "kl_estimator" of metrics.jsonl's first line ("" when absent). */
static void first_estimator(const char *run, char *out, size_t cap) {
    char path[4200], *line = NULL;
    size_t n = 0;
    out[0] = 0;
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "r");
    if (f && getline(&line, &n, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        json_field(o, (const char *const[]){"kl_estimator"}, 1, out, cap);
        cJSON_Delete(o);
    }
    free(line);
    if (f) fclose(f);
}

static void write_config(FILE *f, const char *const *runs, int n) {
    static char cell[8][NCONF][CONF_LEN];
    for (int r = 0; r < n; r++) {
        char est[64];
        first_estimator(runs[r], est, sizeof est);
        run_config(runs[r], est, cell[r]);
    }
    fputs("<h2>Configuration</h2>\n<p class=\"note\">From each run's checkpoint/state.json (the settings a resume keeps), "
          "metrics.jsonl and policy/config.json; rows where the runs differ are highlighted.</p>\n<table id=\"config\">"
          "<tr><th></th>", f);
    for (int r = 0; r < n; r++) fputs("<th>", f), html_text(f, runs[r]), fputs("</th>", f);
    fputs("</tr>\n", f);
    for (int i = 0; i < NCONF; i++) {
        int differs = 0;
        for (int r = 1; r < n; r++) differs |= strcmp(cell[r][i], cell[0][i]) != 0;
        fprintf(f, "<tr%s><th>%s</th>", differs ? " class=\"differs\"" : "", CONF_LABELS[i]);
        for (int r = 0; r < n; r++) fputs("<td>", f), html_text(f, cell[r][i]), fputs("</td>", f);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

/* ---- the first/last table ---- */

/* The step of the first line with the reward-hacking alarm on, 0 when it stayed silent (a double, as read:
 * converting a step beyond int to int would be undefined behaviour). */
static double alarm_step(const leash_table *p) {
    for (int i = 0; i < p->n; i++)
        if (p->num[P_ALARM][i] > 0) return p->num[P_STEP][i];
    return 0;
}

/* One first -> last row per run of column k of tables t. */
static void metric_row(FILE *f, const char *label, const leash_table *t, int n, int k, int window) {
    fputs("<tr><th>", f), html_text(f, label), fputs("</th>", f);
    for (int r = 0; r < n; r++) {
        double a = cli_report_mean(&t[r], k, 0, window), b = cli_report_mean(&t[r], k, t[r].n - window, t[r].n);
        if (isnan(a)) fputs("<td class=\"num\">-</td>", f);
        else fprintf(f, "<td class=\"num\">%+.3f &#8594; %+.3f</td>", a, b);
    }
    fputs("</tr>\n", f);
}

/* The scorers' own metrics (gold/..., rewards/<label>/mean; cli_report_scorer_keys) are the plot tables'
 * columns NPK .. NPK + nsk - 1, named skeys. */
static void write_metrics(FILE *f, const char *const *runs, int n, const leash_table *t, const leash_table *p,
                          const char *const *labels, int nk, int window, char (*skeys)[CLI_KEY_MAX], int nsk) {
    fprintf(f, "<h2>First and last %d steps</h2>\n<p class=\"note\">Means over the first and the last %d steps "
               "(as <code>leash report</code> prints them); - where a run did not measure it.</p>\n<table id=\"metrics\">"
               "<tr><th></th>", window, window);
    for (int r = 0; r < n; r++) fputs("<th>", f), html_text(f, runs[r]), fputs("</th>", f);
    fputs("</tr>\n", f);
    for (int k = 1; k < nk - 1; k++) metric_row(f, labels[k], t, n, k, window);
    for (int k = 0; k < nsk; k++) metric_row(f, skeys[k], p, n, NPK + k, window);
    fputs("<tr><th>reward-hacking alarm</th>", f);
    for (int r = 0; r < n; r++) {
        double at = alarm_step(&p[r]);
        if (at != 0) fprintf(f, "<td class=\"num\" style=\"color:#c00\">fired at step %.0f</td>", at);
        else fputs("<td class=\"num\">silent</td>", f);
    }
    fputs("</tr>\n</table>\n", f);
}

/* ---- plots ---- */

enum { W = 550, H = 300, ML = 62, MR = 14, MT = 46, MB = 38 };

typedef struct {
    int key;          /* column of the plot table */
    const char *dash; /* stroke-dasharray, "" for solid */
    const char *name;
    const char *keyname; /* the metrics.jsonl key (data-key), NULL for PKEYS[key] */
} series;

/* The adaptive controller's band for run r on this panel: beta moves in proportion to the KL's distance from
 * the target inside [target (1 - c), target (1 + c)] (c = LEASH_BETA_ERROR_CLIP) and at its cap outside. */
typedef struct {
    int has;
    double target;
} band;

/* Tick spacing: 1, 2 or 5 times a power of ten, about 5 ticks over the span. */
static double tick_step(double span) {
    double raw = span / 5.0, p = pow(10.0, floor(log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
}

static void axes(FILE *f, double x0, double x1, double y0, double y1, const char *xlabel, const char *ylabel) {
    double px0 = ML, px1 = W - MR, py0 = H - MB, py1 = MT;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", ML, MT, W - ML - MR, H - MT - MB);
    double dy = tick_step(y1 - y0), dx = tick_step(x1 - x0);
    // ticks counted, not accumulated: v += dy stops moving where dy is below v's precision (1e9 and 1e9 + 1e-7:
    // an endless loop that filled the disk); tick_step gives about 5, so 16 bounds even a degenerate axis
    for (int k = 0; k < 16; k++) {
        double v = (ceil(y0 / dy) + k) * dy;
        if (!(v <= y1 + 1e-9 * dy)) break; // (NaN too, from an infinite span)
        double py = py0 + (v - y0) / (y1 - y0) * (py1 - py0);
        fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#eee\"/><text x=\"%d\" y=\"%.2f\" "
                   "font-size=\"11\" text-anchor=\"end\">%g</text>\n", px0, px1, py, py, ML - 4, py + 4, fabs(v) < 1e-12 * dy ? 0 : v);
    }
    for (int k = 0; k < 16; k++) {
        double v = (ceil(x0 / dx) + k) * dx;
        if (!(v <= x1 + 1e-9 * dx)) break;
        double px = px0 + (v - x0) / (x1 - x0) * (px1 - px0);
        fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%g\" y2=\"%g\" stroke=\"#eee\"/><text x=\"%.2f\" y=\"%d\" "
                   "font-size=\"11\" text-anchor=\"middle\">%g</text>\n", px, px, py0, py1, px, H - MB + 15, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n", (ML + W - MR) / 2, H - 6, xlabel);
    fprintf(f, "<text x=\"14\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 14 %d)\">%s</text>\n",
            (MT + H - MB) / 2, (MT + H - MB) / 2, ylabel);
}

/* The range of steps and of the values (series and bands) of all runs; 0 when the panel has no value. */
static int ranges(const leash_table *p, int n, const series *ser, int ns, const band *bands, double *x0, double *x1,
                  double *y0, double *y1) {
    *x0 = *y0 = INFINITY, *x1 = *y1 = -INFINITY;
    int any = 0;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < p[r].n; i++)
            for (int s = 0; s < ns; s++) {
                double x = p[r].num[P_STEP][i], y = p[r].num[ser[s].key][i];
                if (isnan(y)) continue;
                any = 1;
                *x0 = fmin(*x0, x), *x1 = fmax(*x1, x), *y0 = fmin(*y0, y), *y1 = fmax(*y1, y);
            }
    for (int r = 0; any && bands && r < n; r++)
        if (bands[r].has)
            *y0 = fmin(*y0, bands[r].target * (1 - LEASH_BETA_ERROR_CLIP)), *y1 = fmax(*y1, bands[r].target * (1 + LEASH_BETA_ERROR_CLIP));
    if (!any) return 0;
    if (*x1 <= *x0) *x0 -= 1, *x1 += 1;
    double pad = *y1 > *y0 ? 0.06 * (*y1 - *y0) : fmax(0.5, 0.1 * fabs(*y0));
    *y0 -= pad, *y1 += pad;
    return 1;
}

/* One run's series as polylines of its measured points (a NaN ends a piece; a lone point also gets a dot). */
static void curve(FILE *f, const leash_table *p, int r, const series *s, double x0, double x1, double y0, double y1) {
    double sx = (W - MR - ML) / (x1 - x0), sy = (MT - (H - MB)) / (y1 - y0);
    for (int i = 0; i < p->n;) {
        if (isnan(p->num[s->key][i])) {
            i++;
            continue;
        }
        int j = i;
        fprintf(f, "<polyline data-run=\"%d\" data-key=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s%s%s points=\"",
                r, s->keyname ? s->keyname : PKEYS[s->key], COLORS[r], s->dash[0] ? " stroke-dasharray=\"" : "", s->dash, s->dash[0] ? "\"" : "");
        for (; j < p->n && !isnan(p->num[s->key][j]); j++)
            fprintf(f, "%s%.2f,%.2f", j > i ? " " : "", ML + (p->num[P_STEP][j] - x0) * sx, (H - MB) + (p->num[s->key][j] - y0) * sy);
        fputs("\"/>\n", f);
        if (j == i + 1)
            fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n", ML + (p->num[P_STEP][i] - x0) * sx,
                    (H - MB) + (p->num[s->key][i] - y0) * sy, COLORS[r]);
        i = j;
    }
}

static void panel(FILE *f, const char *id, const char *title, const char *ylabel, const leash_table *p, int n, const series *ser, int ns, const band *bands) {
    double x0, x1, y0, y1;
    int any = ranges(p, n, ser, ns, bands, &x0, &x1, &y0, &y1);
    double py0 = H - MB, py1 = MT, px0 = ML, px1 = W - MR;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" id=\"%s\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\"", id, W, H, W, H);
    if (any) fprintf(f, " data-x=\"%.17g %.17g %g %g\" data-y=\"%.17g %.17g %g %g\"", x0, x1, px0, px1, y0, y1, py0, py1);
    fprintf(f, ">\n<text x=\"%d\" y=\"17\" font-size=\"13\" font-weight=\"bold\">%s</text>\n", ML, title);
    int lx = ML; // the legend: line styles, then the runs' colours
    for (int s = 0; s < ns && ns > 1; s++, lx += 160)
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"33\" y2=\"33\" stroke=\"#444\" stroke-width=\"1.8\" stroke-dasharray=\"%s\"/>"
                   "<text x=\"%d\" y=\"37\" font-size=\"11\">", lx, lx + 22, ser[s].dash, lx + 26),
            html_text(f, ser[s].name), fputs("</text>\n", f); // a scorer's metric name comes from its replies
    if (!any) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\" fill=\"#888\">not measured in these runs</text></svg>\n",
                W / 2, H / 2);
        return;
    }
    axes(f, x0, x1, y0, y1, "step", ylabel);
    double sy = (py1 - py0) / (y1 - y0);
    for (int r = 0; bands && r < n; r++) {
        if (!bands[r].has) continue;
        double lo = bands[r].target * (1 - LEASH_BETA_ERROR_CLIP), hi = bands[r].target * (1 + LEASH_BETA_ERROR_CLIP);
        fprintf(f, "<rect class=\"band\" x=\"%g\" y=\"%.2f\" width=\"%g\" height=\"%.2f\" fill=\"%s\" fill-opacity=\"0.12\"/>"
                   "<line x1=\"%g\" x2=\"%g\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-dasharray=\"2 3\"/>"
                   "<text x=\"%g\" y=\"%.2f\" font-size=\"10\" text-anchor=\"end\" fill=\"%s\">target %g &#177;%g%%</text>\n",
                px0, py0 + (hi - y0) * sy, px1 - px0, (lo - hi) * sy, COLORS[r], px0, px1, py0 + (bands[r].target - y0) * sy,
                py0 + (bands[r].target - y0) * sy, COLORS[r], px1 - 3, py0 + (hi - y0) * sy - 2, COLORS[r], bands[r].target,
                100 * LEASH_BETA_ERROR_CLIP);
    }
    for (int r = 0; r < n; r++) {
        for (int s = 0; s < ns; s++) curve(f, &p[r], r, &ser[s], x0, x1, y0, y1);
        double at = alarm_step(&p[r]);
        if (at == 0) continue;
        double px = px0 + (at - x0) / (x1 - x0) * (px1 - px0);
        fprintf(f, "<line class=\"alarm\" data-run=\"%d\" data-step=\"%.0f\" x1=\"%.2f\" x2=\"%.2f\" y1=\"%g\" y2=\"%g\" "
                   "stroke=\"#c00\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"/><text x=\"%.2f\" y=\"%g\" font-size=\"10\" "
                   "fill=\"#c00\">alarm, step %.0f</text>\n", r, at, px, px, py0, py1, px + 3, py1 + 11 + 11 * r, at);
    }
    fputs("</svg>\n", f);
}

static void write_plots(FILE *f, const char *const *runs, int n, const leash_table *p, const band *seq, const band *tok,
                        char (*skeys)[CLI_KEY_MAX], int nsk) {
    fputs("<h2>Training curves</h2>\n<p class=\"note\">", f);
    for (int r = 0; r < n; r++)
        fprintf(f, "<span class=\"swatch\" style=\"background:%s\"></span>", COLORS[r]), html_text(f, runs[r]);
    fputs("<br>Red dashed line: the step where the reward-hacking alarm fired (proxy up while gold falls). Shaded: the "
          "adaptive beta controller's proportional band around its KL target.</p>\n<div class=\"plots\">\n", f);
    const series reward[] = {{P_PROXY, "", "proxy (reward model)", NULL}, {P_GOLD, "6 4", "gold (the truth)", NULL}};
    const series kl[] = {{P_KL, "", "estimator", NULL}, {P_KL_EXACT, "2 3", "exact", NULL}};
    const series kl_tok[] = {{P_KL_TOKEN, "", "per token", NULL}};
    const series beta[] = {{P_BETA, "", "beta", NULL}}, ent[] = {{P_ENTROPY, "", "entropy", NULL}}, nll[] = {{P_NLL, "", "NLL", NULL}};
    panel(f, "plot-reward", "Proxy vs gold reward", "reward", p, n, reward, 2, NULL);
    panel(f, "plot-kl", "KL to the reference, nats per sequence", "KL (nats/sequence)", p, n, kl, 2, seq);
    int per_token = 0;
    for (int r = 0; r < n; r++) per_token |= tok[r].has;
    if (per_token) panel(f, "plot-kl-token", "KL per token (the target's units)", "KL (nats/token)", p, n, kl_tok, 1, tok);
    panel(f, "plot-beta", "beta (KL coefficient)", "beta", p, n, beta, 1, NULL);
    panel(f, "plot-entropy", "Policy entropy, nats per token", "entropy", p, n, ent, 1, NULL);
    panel(f, "plot-fluency", "Fluency: reference NLL, nats per token", "NLL (nats/token)", p, n, nll, 1, NULL);
    series sc[16];
    static const char *const dashes[] = {"", "6 4", "2 3", "8 3 2 3"};
    for (int k = 0; k < nsk; k++) sc[k] = (series){NPK + k, dashes[k % 4], skeys[k], skeys[k]};
    if (nsk) panel(f, "plot-scorer", "Scorer metrics (gold/..., rewards/&lt;label&gt;/mean)", "value", p, n, sc, nsk, NULL);
    fputs("</div>\n", f);
}

/* Each run's KL target from checkpoint/state.json, in the panel of its units. */
static void run_bands(const char *const *runs, int n, band *seq, band *tok) {
    for (int r = 0; r < n; r++) {
        seq[r] = tok[r] = (band){0, 0};
        cJSON *st = load_json(runs[r], "checkpoint/state.json");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(st, "beta");
        double kind = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "kind"));
        double target = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "target"));
        double units = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(b, "units"));
        if (kind == LEASH_BETA_ADAPTIVE && target > 0) *(units == LEASH_KL_PER_TOKEN ? &tok[r] : &seq[r]) = (band){1, target};
        cJSON_Delete(st);
    }
}

/* ---- the frontier of a sweep (leash sweep's frontier.jsonl and frontier_fit.json) ---- */

enum { FW = 720, FH = 420 };

/* The directory above run when it holds a sweep's frontier.jsonl; 0 otherwise. */
static int sweep_dir_of(const char *run, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", run);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') dir[--n] = 0;
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/frontier.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (f) fclose(f);
    return f != NULL;
}

static double fit_num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* gold0 + the fit at d (the forms of leash/frontier.h). */
static double fit_gold(const cJSON *fit, double gold0, double d) {
    double a = fit_num(fit, "alpha"), b = fit_num(fit, "beta");
    const cJSON *form = cJSON_GetObjectItemCaseSensitive(fit, "form");
    int rl = cJSON_IsString(form) && !strcmp(form->valuestring, "rl");
    return gold0 + d * (a - b * (rl ? (d > 0 ? log(d) : 0) : d));
}

static const char *const FIT_KEYS[3] = {"ppo", "best_of_n", "best_of_n_beirami"};
static const char *const FIT_TEXT[3] = {"PPO: d (alpha - beta log d)", "best-of-n: d (alpha - beta d), KL bound",
                                        "best-of-n: the same, Beirami's KL"};

static void frontier_tables(FILE *f, const leash_table *t, const cJSON *fits, double gold0) {
    fputs("<table class=\"frontier-points\"><tr><th>method</th><th>KL (nats/seq)</th><th>sqrt(KL)</th><th>proxy</th>"
          "<th>gold</th><th>KL, Beirami (best-of-n)</th></tr>\n", f);
    for (int i = 0; i < t->n; i++) {
        int bon = !strcmp(t->str[0][i], "best-of-n");
        fprintf(f, bon ? "<tr><td>best-of-%g</td>" : "<tr><td>PPO beta = %g</td>", t->num[bon ? 4 : 3][i]);
        fprintf(f, "<td class=\"num\">%.3f</td><td class=\"num\">%.3f</td><td class=\"num\">%+.3f</td><td class=\"num\">%+.3f</td>",
                t->num[0][i], sqrt(fmax(t->num[0][i], 0)), t->num[1][i], t->num[2][i]);
        if (isnan(t->num[5][i])) fputs("<td class=\"num\">-</td></tr>\n", f);
        else fprintf(f, "<td class=\"num\">%.3f</td></tr>\n", t->num[5][i]);
    }
    fprintf(f, "</table>\n<p class=\"note\">Gao et al. 2022's forms fitted by least squares to the gold gained over "
               "best-of-1 (%+.4f, the SFT policy) against d = sqrt(KL).</p>\n<table id=\"frontier-fits\"><tr><th>fit</th>"
               "<th>alpha</th><th>beta</th><th>peak: KL (nats/seq)</th><th>peak: gold</th><th>rmse</th></tr>\n", gold0);
    for (int k = 0; k < 3; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(fits, FIT_KEYS[k]);
        fprintf(f, "<tr data-fit=\"%s\"><th>%s</th>", FIT_KEYS[k], FIT_TEXT[k]);
        if (!cJSON_IsObject(x)) {
            fputs("<td colspan=\"5\">no fit (too few distinct KLs)</td></tr>\n", f);
            continue;
        }
        fprintf(f, "<td class=\"num\">%+.4f</td><td class=\"num\">%+.4f</td>", fit_num(x, "alpha"), fit_num(x, "beta"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "has_peak")))
            fprintf(f, "<td class=\"num\">%.3f</td><td class=\"num\">%+.4f</td>", fit_num(x, "kl_peak"), fit_num(x, "gold_peak"));
        else fputs("<td colspan=\"2\">no peak: the fitted gold still rises</td>", f);
        fprintf(f, "<td class=\"num\">%.4f</td></tr>\n", fit_num(x, "rmse"));
    }
    fputs("</table>\n", f);
}

/* The gold against sqrt(KL): the points, the fitted curves as paths, their peaks as dashed lines. The svg's
 * data-fx and data-fy hold its maps (as the training plots' data-x and data-y). */
static void frontier_plot(FILE *f, const leash_table *t, const cJSON *fits, double gold0, int idx) {
    double x1 = 0.1, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < t->n; i++) {
        x1 = fmax(x1, sqrt(fmax(t->num[0][i], 0)));
        if (isfinite(t->num[2][i])) y0 = fmin(y0, t->num[2][i]), y1 = fmax(y1, t->num[2][i]);
    }
    x1 *= 1.1;
    if (!(y1 >= y0)) y0 = -1, y1 = 1;
    double pad = y1 > y0 ? 0.12 * (y1 - y0) : 0.5;
    y0 -= pad, y1 += pad;
    double px0 = ML, px1 = FW - MR, py0 = FH - MB, py1 = MT, sx = (px1 - px0) / x1, sy = (py1 - py0) / (y1 - y0);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" id=\"plot-frontier-%d\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" data-fx=\"0 %.17g %g %g\" data-fy=\"%.17g %.17g %g %g\">\n<text x=\"%d\" y=\"17\" "
               "font-size=\"13\" font-weight=\"bold\">Gold reward against sqrt(KL), with Gao et al.'s fits</text>\n",
            idx, FW, FH, FW, FH, x1, px0, px1, y0, y1, py0, py1, ML);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", ML, MT, FW - ML - MR, FH - MT - MB);
    double dy = tick_step(y1 - y0), dx = tick_step(x1);
    for (int k = 0; k < 16; k++) {
        double v = (ceil(y0 / dy) + k) * dy, py = py0 + (v - y0) * sy;
        if (!(v <= y1)) break;
        fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#eee\"/><text x=\"%d\" y=\"%.2f\" font-size=\"11\" "
                   "text-anchor=\"end\">%g</text>\n", px0, px1, py, py, ML - 4, py + 4, fabs(v) < 1e-12 * dy ? 0 : v);
    }
    for (int k = 0; k < 16; k++) {
        double v = k * dx, px = px0 + v * sx;
        if (!(v <= x1)) break;
        fprintf(f, "<line x1=\"%.2f\" x2=\"%.2f\" y1=\"%g\" y2=\"%g\" stroke=\"#eee\"/><text x=\"%.2f\" y=\"%d\" font-size=\"11\" "
                   "text-anchor=\"middle\">%g</text>\n", px, px, py0, py1, px, FH - MB + 15, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">sqrt(KL to the reference), sqrt(nats per "
               "sequence)</text>\n<text x=\"14\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 14 %d)\">"
               "gold reward</text>\n", (ML + FW - MR) / 2, FH - 6, (MT + FH - MB) / 2, (MT + FH - MB) / 2);
    for (int k = 0; k < 2; k++) { // the fits: PPO in the first colour, best-of-n (bound) in the second
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(fits, FIT_KEYS[k]);
        if (!cJSON_IsObject(x)) continue;
        fprintf(f, "<path data-fit=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" d=\"", FIT_KEYS[k], COLORS[k]);
        for (int i = 0, pen = 0; i <= 200; i++) { // the curve inside the frame only (a clipPath would need url())
            double d = x1 * i / 200, py = py0 + (fit_gold(x, gold0, d) - y0) * sy;
            int in = py >= py1 && py <= py0;
            if (in) fprintf(f, "%s%.2f,%.2f", pen ? " L" : " M", px0 + d * sx, py);
            pen = in;
        }
        fputs("\"/>\n", f);
        double dp = fit_num(x, "d_peak");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "has_peak")) && dp <= x1)
            fprintf(f, "<line class=\"peak\" data-fit=\"%s\" data-kl=\"%.6g\" x1=\"%.2f\" x2=\"%.2f\" y1=\"%g\" y2=\"%g\" stroke=\"%s\" "
                       "stroke-dasharray=\"4 3\"/><text x=\"%.2f\" y=\"%g\" font-size=\"10\" fill=\"%s\">peak, KL %.2f</text>\n",
                    FIT_KEYS[k], fit_num(x, "kl_peak"), px0 + dp * sx, px0 + dp * sx, py0, py1, COLORS[k], px0 + dp * sx + 3,
                    py1 + 12 + 12 * k, COLORS[k], fit_num(x, "kl_peak"));
    }
    for (int i = 0; i < t->n; i++) { // the points; best-of-n also at Beirami's KL (hollow)
        int bon = !strcmp(t->str[0][i], "best-of-n");
        double cx = px0 + sqrt(fmax(t->num[0][i], 0)) * sx, cy = py0 + (t->num[2][i] - y0) * sy;
        if (!isfinite(cy)) continue;
        if (bon) {
            fprintf(f, "<rect data-method=\"best-of-n\" x=\"%.2f\" y=\"%.2f\" width=\"7\" height=\"7\" fill=\"%s\"/>\n", cx - 3.5, cy - 3.5, COLORS[1]);
            if (!isnan(t->num[5][i]))
                fprintf(f, "<rect data-method=\"best-of-n-beirami\" x=\"%.2f\" y=\"%.2f\" width=\"9\" height=\"9\" fill=\"none\" "
                           "stroke=\"%s\"/>\n", px0 + sqrt(fmax(t->num[5][i], 0)) * sx - 4.5, cy - 4.5, COLORS[1]);
        } else fprintf(f, "<circle data-method=\"ppo\" cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"%s\"/>\n", cx, cy, COLORS[0]);
    }
    fprintf(f, "<circle cx=\"%d\" cy=\"33\" r=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"37\" font-size=\"11\">PPO (one beta each)</text>"
               "<rect x=\"%d\" y=\"29\" width=\"7\" height=\"7\" fill=\"%s\"/><text x=\"%d\" y=\"37\" font-size=\"11\">best-of-n (KL "
               "bound; hollow: Beirami's KL)</text>\n</svg>\n", ML + 4, COLORS[0], ML + 12, ML + 170, COLORS[1], ML + 182);
}

static void write_frontiers(FILE *f, const char *const *runs, int n) {
    char seen[8][4096];
    int ns = 0;
    for (int r = 0; r < n; r++) {
        char dir[4096];
        if (!sweep_dir_of(runs[r], dir, sizeof dir)) continue;
        int dup = 0;
        for (int i = 0; i < ns; i++) dup |= !strcmp(seen[i], dir);
        if (dup) continue;
        snprintf(seen[ns++], sizeof seen[0], "%s", dir);
        char path[4200];
        leash_table t = {0};
        static const char *const str[] = {"method"}, *const num[] = {"kl", "proxy", "gold", "beta", "n", "kl_beirami"};
        snprintf(path, sizeof path, "%s/frontier.jsonl", dir);
        fputs("<h2>Reward-vs-KL frontier: ", f), html_text(f, dir), fputs("</h2>\n", f);
        if (leash_jsonl_load(path, str, 1, num, 6, 1, &t)) {
            fputs("<p class=\"note\">frontier.jsonl does not read: ", f), html_text(f, leash_errmsg()), fputs("</p>\n", f);
            continue;
        }
        cJSON *fits = load_json(dir, "frontier_fit.json");
        double gold0 = fit_num(fits, "gold0");
        frontier_tables(f, &t, fits, gold0);
        if (fits) frontier_plot(f, &t, fits, gold0, ns - 1);
        else fputs("<p class=\"note\">no frontier_fit.json (a sweep from before the fits): points only.</p>\n", f);
        cJSON_Delete(fits);
        leash_table_free(&t);
    }
}

/* ---- samples ---- */

static void write_samples(FILE *f, const char *const *runs, int n, const leash_table *s) {
    fputs("<h2>Samples</h2>\n", f);
    for (int r = 0; r < n; r++) {
        fputs("<h3>", f), html_text(f, runs[r]), fputs("</h3>\n", f);
        if (!s[r].n) {
            fputs("<p class=\"note\">no samples.jsonl</p>\n", f);
            continue;
        }
        double first = s[r].num[0][0], last = s[r].num[0][s[r].n - 1];
        fprintf(f, "<table class=\"samples\"><tr><th>step</th><th>proxy</th><th>gold</th><th>prompt</th><th>response</th></tr>\n");
        for (int i = 0; i < s[r].n; i++) {
            if (s[r].num[0][i] != first && s[r].num[0][i] != last) continue;
            fprintf(f, "<tr><td class=\"num\">%.0f</td><td class=\"num\">%+.3f</td>", s[r].num[0][i], s[r].num[1][i]);
            if (isnan(s[r].num[2][i])) fputs("<td class=\"num\">-</td>", f); // not measured (a run without gold)
            else fprintf(f, "<td class=\"num\">%+.3f</td>", s[r].num[2][i]);
            fputs("<td class=\"text\">", f), html_text(f, s[r].str[0][i]);
            fputs("</td><td class=\"text\">", f), html_text(f, s[r].str[1][i]), fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
    }
}

int cli_report_html(const char *out, const char *const *runs, int n, const leash_table *t, const leash_table *s,
                    const char *const *labels, int nk, int window) {
    if (n < 1) {
        fputs("leash report: --html needs at least one RUN_DIR\n", stderr);
        return 2;
    }
    leash_table p[8] = {{0}};
    band seq[8], tok[8];
    char skeys[16][CLI_KEY_MAX]; // the scorers' metrics, after PKEYS in the plot tables (a key a run lacks: NAN)
    int nsk = 0;
    for (int r = 0; r < n; r++) nsk = cli_report_scorer_keys(runs[r], skeys, nsk, 16);
    const char *names[NPK + 16];
    for (int k = 0; k < NPK + nsk; k++) names[k] = k < NPK ? PKEYS[k] : skeys[k - NPK];
    for (int r = 0; r < n; r++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/metrics.jsonl", runs[r]);
        if (leash_jsonl_load(path, NULL, 0, names, NPK + nsk, 1, &p[r])) {
            fprintf(stderr, "leash report: %s\n", leash_errmsg());
            for (int q = 0; q < r; q++) leash_table_free(&p[q]);
            return 1;
        }
    }
    run_bands(runs, n, seq, tok);
    leash_atomic_file af;
    int rc = leash_atomic_open(&af, out);
    if (!rc) {
        FILE *f = af.f;
        char when[64];
        time_t now = time(NULL);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
        fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>leash report</title>\n"
                   "<style>%s</style>\n</head>\n<body>\n<h1>leash report</h1>\n<p class=\"note\">%d run%s, written %s by "
                   "<code>leash report --html</code>.</p>\n", STYLE, n, n > 1 ? "s" : "", when);
        write_config(f, runs, n);
        write_metrics(f, runs, n, t, p, labels, nk, window, skeys, nsk);
        write_plots(f, runs, n, p, seq, tok, skeys, nsk);
        write_frontiers(f, runs, n);
        write_samples(f, runs, n, s);
        fputs("</body>\n</html>\n", f);
        rc = leash_atomic_commit(&af);
    }
    for (int r = 0; r < n; r++) leash_table_free(&p[r]);
    if (rc) {
        fprintf(stderr, "leash report: %s\n", leash_errmsg());
        return 1;
    }
    fprintf(stderr, "leash report: wrote %s\n", out);
    return 0;
}
