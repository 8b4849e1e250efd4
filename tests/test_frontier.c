/* The Gao et al. frontier fit (src/frontier.c): alpha and beta recovered exactly from noiseless points of
 * both forms, the fitted peak against a grid search of the fitted curve, the least-squares optimality of a
 * noisy fit (residual orthogonal to both columns) and its error against the truth, refused degenerate inputs,
 * the run watcher behind --stop-at-peak, and `leash sweep`'s fits of its own points on tiny models.
 * Dimension: N points. */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/frontier.h"
#include "leash/data.h"
#include "leash/fileio.h"
#include "leash/rng.h"
#include "testutil.h"

enum { N = 40 };

static double truth(leash_frontier_form form, double a, double b, double d) {
    return form == LEASH_FRONTIER_RL ? (d > 0 ? d * (a - b * log(d)) : 0.0) : d * (a - b * d);
}

/* The fit's peak against the argmax of the fitted curve on a fine grid over [0, 3 d*]. */
static void check_peak(const leash_frontier_fit *f) {
    cr_assert(f->has_peak, "no peak: alpha %g beta %g", f->alpha, f->beta);
    double best = -INFINITY, at = 0;
    for (int i = 1; i <= 300000; i++) {
        double d = 3.0 * f->d_peak * i / 300000.0, g = leash_frontier_eval(f, d);
        if (g > best) best = g, at = d;
    }
    printf("  %s peak: d* = %.6f (grid %.6f), gain %.6f (grid %.6f), KL %.6f\n", leash_frontier_form_name(f->form),
           f->d_peak, at, f->gain_peak, best, f->kl_peak);
    cr_assert(fabs(at - f->d_peak) <= 2e-5 * f->d_peak, "peak at %g, the grid's argmax at %g", f->d_peak, at);
    cr_assert(fabs(best - f->gain_peak) <= 1e-9 * fabs(best) + 1e-12, "peak gain %g, grid %g", f->gain_peak, best);
    cr_assert(fabs(f->kl_peak - f->d_peak * f->d_peak) <= 1e-12 * f->kl_peak);
}

static void recover(leash_frontier_form form, double a, double b) {
    double d[N], g[N];
    for (int i = 0; i < N; i++) d[i] = 0.1 * i, g[i] = truth(form, a, b, d[i]); // d = 0 included
    leash_frontier_fit f;
    cr_assert_eq(leash_frontier_fit_points(form, d, g, N, &f), LEASH_OK, "%s", leash_errmsg());
    printf("%s: alpha %.12f (true %g), beta %.12f (true %g), rmse %.2e\n", leash_frontier_form_name(form), f.alpha, a,
           f.beta, b, f.rmse);
    cr_assert(fabs(f.alpha - a) < 1e-10 && fabs(f.beta - b) < 1e-10, "alpha %.15g beta %.15g", f.alpha, f.beta);
    cr_assert(f.rmse < 1e-10);
    check_peak(&f);
}

Test(frontier, noiseless_points_give_alpha_and_beta_exactly) {
    recover(LEASH_FRONTIER_RL, 0.8, 0.5);  // d* = exp(0.6) = 1.822
    recover(LEASH_FRONTIER_RL, 0.3, 0.7);  // d* = exp(-0.571) < 1
    recover(LEASH_FRONTIER_BON, 0.9, 0.25); // d* = 1.8
    recover(LEASH_FRONTIER_BON, 0.2, 0.1);
    // closed forms, by hand: RL d* = exp(alpha/beta - 1), BoN d* = alpha / (2 beta)
    leash_frontier_fit f;
    double d[3] = {0.5, 1.5, 2.5}, g[3];
    for (int i = 0; i < 3; i++) g[i] = truth(LEASH_FRONTIER_RL, 0.8, 0.5, d[i]);
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_RL, d, g, 3, &f), LEASH_OK);
    cr_assert(fabs(f.d_peak - exp(0.6)) < 1e-9 && fabs(f.gain_peak - 0.5 * exp(0.6)) < 1e-9);
    for (int i = 0; i < 3; i++) g[i] = truth(LEASH_FRONTIER_BON, 0.9, 0.25, d[i]);
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_BON, d, g, 3, &f), LEASH_OK);
    cr_assert(fabs(f.d_peak - 1.8) < 1e-9 && fabs(f.gain_peak - 0.81) < 1e-9 && fabs(f.kl_peak - 3.24) < 1e-9);
}

/* With noise of sd s the fit is the least-squares one (the residual orthogonal to both columns of the design
 * matrix, to rounding) and within 5 standard errors of the truth (standard errors from (X'X)^-1 s^2). */
static void noisy(leash_frontier_form form, double a, double b, double s, uint64_t seed) {
    enum { M = 400 };
    double d[M], g[M], s11 = 0, s12 = 0, s22 = 0;
    leash_rng rng;
    leash_rng_seed(&rng, seed, 7);
    for (int i = 0; i < M; i++) {
        d[i] = 3.0 * (i + 1) / M;
        g[i] = truth(form, a, b, d[i]) + s * leash_rng_normal(&rng);
        double x1 = d[i], x2 = form == LEASH_FRONTIER_RL ? -d[i] * log(d[i]) : -d[i] * d[i];
        s11 += x1 * x1, s12 += x1 * x2, s22 += x2 * x2;
    }
    leash_frontier_fit f;
    cr_assert_eq(leash_frontier_fit_points(form, d, g, M, &f), LEASH_OK);
    double o1 = 0, o2 = 0, scale = 0;
    for (int i = 0; i < M; i++) {
        double r = g[i] - leash_frontier_eval(&f, d[i]), x2 = form == LEASH_FRONTIER_RL ? -d[i] * log(d[i]) : -d[i] * d[i];
        o1 += r * d[i], o2 += r * x2, scale += fabs(g[i] * d[i]) + fabs(g[i] * x2);
    }
    double det = s11 * s22 - s12 * s12, se_a = s * sqrt(s22 / det), se_b = s * sqrt(s11 / det);
    printf("%s noisy (sd %g): alpha %.4f (true %g, se %.4f), beta %.4f (true %g, se %.4f), rmse %.4f; residual . "
           "columns %.2e %.2e (of %.2e)\n", leash_frontier_form_name(form), s, f.alpha, a, se_a, f.beta, b, se_b, f.rmse,
           o1, o2, scale);
    cr_assert(fabs(o1) < 1e-10 * scale && fabs(o2) < 1e-10 * scale, "not the least-squares solution");
    cr_assert(fabs(f.alpha - a) < 5 * se_a && fabs(f.beta - b) < 5 * se_b, "more than 5 standard errors off");
    cr_assert(fabs(f.rmse - s) < 0.2 * s, "rmse %g for noise sd %g", f.rmse, s);
}

Test(frontier, noisy_points_fit_by_least_squares_within_the_standard_error) {
    noisy(LEASH_FRONTIER_RL, 0.8, 0.5, 0.05, 1);
    noisy(LEASH_FRONTIER_BON, 0.9, 0.25, 0.05, 2);
    noisy(LEASH_FRONTIER_RL, 0.3, 0.7, 0.01, 3);
}

Test(frontier, degenerate_inputs_are_refused_and_no_peak_without_a_downturn) {
    leash_frontier_fit f;
    double d[3] = {1.0, 1.0, 1.0}, g[3] = {0.1, 0.2, 0.3};
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_RL, d, g, 1, &f), LEASH_EINVAL);
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_BON, d, g, 3, &f), LEASH_EINVAL); // one distinct d
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_RL, d, g, 3, &f), LEASH_EINVAL);  // d log d = 0 at d = 1
    printf("refused: %s\n", leash_errmsg());
    double z[3] = {0, 0, 0};
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_BON, z, g, 3, &f), LEASH_EINVAL);
    double bad[3] = {0.5, -1.0, 2.0};
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_RL, bad, g, 3, &f), LEASH_EINVAL);
    double nan_g[3] = {0.1, NAN, 0.3}, e[3] = {0.5, 1.5, 2.5};
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_RL, e, nan_g, 3, &f), LEASH_EINVAL);
    // gain still rising: beta < 0, no peak
    double up[3];
    for (int i = 0; i < 3; i++) up[i] = truth(LEASH_FRONTIER_BON, 0.5, -0.2, e[i]);
    cr_assert_eq(leash_frontier_fit_points(LEASH_FRONTIER_BON, e, up, 3, &f), LEASH_OK);
    cr_assert(!f.has_peak && isinf(f.kl_peak) && isnan(f.gain_peak), "beta %g gave a peak", f.beta);
}

/* A run whose KL grows by 0.1 nats a step and whose gold follows the RL form (alpha 0.8, beta 0.5: the peak at
 * KL e^1.2 = 3.32, crossed at step 34), with noise: the watcher stops after the crossing, within a few steps,
 * and never on a run whose gold keeps rising. */
Test(frontier, the_watcher_stops_a_run_after_its_fitted_peak) {
    leash_rng rng;
    leash_rng_seed(&rng, 5, 9);
    leash_frontier_watch w;
    leash_frontier_watch_init(&w, 10, 3);
    int stop = 0, step = 0;
    for (step = 1; step <= 200 && !stop; step++) {
        double kl = 0.1 * (step - 1), d = sqrt(kl);
        stop = leash_frontier_watch_add(&w, kl, -0.5 + truth(LEASH_FRONTIER_RL, 0.8, 0.5, d) + 0.01 * leash_rng_normal(&rng));
        cr_assert(stop >= 0);
    }
    step--;
    printf("watcher: stopped at step %d (KL %.2f), fitted alpha %.3f beta %.3f, peak KL %.3f (true %.3f)\n", step,
           0.1 * (step - 1), w.fit.alpha, w.fit.beta, w.fit.kl_peak, exp(1.2));
    cr_assert(stop, "never stopped");
    // the fitted gain falls by the rmse (about the noise, 0.01) 0.27 past d* = 1.82: KL 4.4, step 45
    cr_assert(step >= 36 && step <= 52, "stopped at step %d; the peak is crossed at step 34", step);
    cr_assert(fabs(w.fit.kl_peak - exp(1.2)) < 0.5);
    leash_frontier_watch_free(&w);

    leash_frontier_watch_init(&w, 10, 3);
    for (step = 1; step <= 200; step++) {
        double kl = 0.1 * (step - 1);
        cr_assert_eq(leash_frontier_watch_add(&w, kl, 0.3 * sqrt(kl) + 0.01 * leash_rng_normal(&rng)), 0, "stopped a rising run at step %d", step);
    }
    cr_assert_eq(leash_frontier_watch_add(&w, NAN, 0.0), 0);
    cr_assert_eq(w.n, 200, "a NaN point was kept");
    leash_frontier_watch_free(&w);

    // gold that only wanders (sd 0.03) while the KL creeps up: a fit finds a spurious peak near d = 0 (as on a
    // 60-step SFT's run, where the first stop fired at step 10 with a peak gain of 0.0098); no stop
    int spurious = 0;
    for (int seed = 0; seed < 20; seed++) {
        leash_rng_seed(&rng, 100 + seed, 1);
        leash_frontier_watch_init(&w, 10, 3);
        for (step = 1; step <= 60; step++) {
            leash_frontier_fit f;
            int halt = leash_frontier_watch_add(&w, 0.005 * step, -0.93 + 0.03 * leash_rng_normal(&rng));
            if (step >= 10 && !leash_frontier_fit_points(LEASH_FRONTIER_RL, w.d, w.gain, w.n, &f) && f.has_peak) spurious++;
            cr_assert_eq(halt, 0, "seed %d: a wandering gold stopped at step %d (peak gain %g, rmse %g)", seed, step,
                         w.fit.gain_peak, w.fit.rmse);
        }
        leash_frontier_watch_free(&w);
    }
    printf("wandering gold: 20 runs of 60 steps, %d fits with a (spurious) peak, no stop\n", spurious);
    cr_assert(spurious > 0, "the guard is untested: no spurious peak was fitted");
}

/* Cramer's rule on the sums, written out here (not the library's code path): alpha, beta of gain = alpha d +
 * beta x2. */
static void refit(leash_frontier_form form, const double *d, const double *g, int n, double *alpha, double *beta) {
    double a = 0, b = 0, c = 0, p = 0, q = 0;
    for (int i = 0; i < n; i++) {
        double x2 = form == LEASH_FRONTIER_RL ? (d[i] > 0 ? -d[i] * log(d[i]) : 0) : -d[i] * d[i];
        a += d[i] * d[i], b += d[i] * x2, c += x2 * x2, p += d[i] * g[i], q += x2 * g[i];
    }
    *alpha = (p * c - b * q) / (a * c - b * b), *beta = (a * q - b * p) / (a * c - b * b);
}

static double fit_field(const cJSON *fit, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fit, key);
    cr_assert(cJSON_IsNumber(v), "frontier_fit.json has no number %s", key);
    return v->valuedouble;
}

/* leash sweep on a tiny policy and reward model: best-of-1 is sampled though not asked for, frontier.jsonl
 * carries both best-of-n KLs, and frontier_fit.json's alpha and beta equal a refit of frontier.jsonl's points
 * (gold gained over best-of-1 against sqrt(KL)), with the peak where the closed form puts it. */
Test(frontier, sweep_fits_its_points, .timeout = 300) {
    rl_scratch w;
    rl_scratch_make(&w, "sweepfit");
    char cmd[2048], out[16384], path[256];
    snprintf(path, sizeof path, "%s/prefs.jsonl", w.dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 16; i++) fprintf(f, "{\"prompt\": \"the bread was\", \"chosen\": \" good\", \"rejected\": \" bad\"}\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s rm train --data %s --init %s --out %s/rm --epochs 1 --batch 8 --val-fraction 0 -q", LEASH_BIN,
             path, w.dir, w.dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=PASSIVE %s sweep --policy %s --reward %s/rm --prompts %s --out %s/sweep --beta "
             "0,0.3,3 --best-of 2,4,8 --steps 5 --batch 4 --max-new 6 --bon-prompts 8 -q", LEASH_BIN, w.dir, w.dir, w.prompts, w.dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    fprintf(stderr, "%s", out);
    cr_assert(strstr(out, "best-of-1 ") && strstr(out, "frontier fits") && strstr(out, "KL Beirami"), "%s", out);

    leash_table t = {0};
    static const char *const num[] = {"kl", "gold", "kl_beirami", "n"};
    snprintf(path, sizeof path, "%s/sweep/frontier.jsonl", w.dir);
    cr_assert_eq(leash_jsonl_load(path, NULL, 0, num, 4, 1, &t), 0, "%s", leash_errmsg());
    cr_assert_eq(t.n, 3 + 4, "3 PPO rows and best-of-1, 2, 4, 8");
    cr_assert(t.num[3][3] == 1 && t.num[0][3] == 0 && t.num[2][3] == 0, "best-of-1 is not the 4th row at KL 0");
    double gold0 = t.num[1][3], d[4], g[4], alpha, beta;
    for (int i = 3; i < 7; i++) cr_assert(t.num[2][i] <= t.num[0][i] + 1e-6, "Beirami above the bound");
    char *text = NULL;
    snprintf(path, sizeof path, "%s/sweep/frontier_fit.json", w.dir);
    cr_assert_eq(leash_read_file(path, 1 << 20, &text, NULL), 0);
    cJSON *fit = cJSON_Parse(text);
    cr_assert(fit, "frontier_fit.json does not parse: %s", text);
    cr_assert(fabs(fit_field(fit, "gold0") - gold0) < 1e-6);
    const char *names[2] = {"ppo", "best_of_n"};
    for (int k = 0; k < 2; k++) {
        int n = k ? 4 : 3, o = k ? 3 : 0;
        for (int i = 0; i < n; i++) d[i] = sqrt(fmax(t.num[0][o + i], 0)), g[i] = t.num[1][o + i] - gold0;
        leash_frontier_form form = k ? LEASH_FRONTIER_BON : LEASH_FRONTIER_RL;
        refit(form, d, g, n, &alpha, &beta);
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(fit, names[k]);
        cr_assert(cJSON_IsObject(x), "no %s fit: %s", names[k], text);
        double fa = fit_field(x, "alpha"), fb = fit_field(x, "beta");
        printf("sweep %s fit: alpha %.6f beta %.6f; refit from frontier.jsonl %.6f %.6f\n", names[k], fa, fb, alpha, beta);
        // frontier.jsonl holds 6 decimals: the refit agrees to what they carry
        cr_assert(fabs(fa - alpha) < 1e-3 * (1 + fabs(alpha)) && fabs(fb - beta) < 1e-3 * (1 + fabs(beta)), "fit differs from the refit");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "has_peak"))) {
            double dp = k ? fa / (2 * fb) : exp(fa / fb - 1);
            cr_assert(fabs(fit_field(x, "d_peak") - dp) < 1e-6 * dp && fabs(fit_field(x, "kl_peak") - dp * dp) < 1e-6 * dp * dp);
        }
    }
    // leash report --html on two of the sweep's runs: the frontier section, its fits table, and each fitted
    // curve read back through the plot's data-fx/data-fy maps equal to gold0 + the fit (to the 0.005 px rounding).
    // The tiny models' gold is flat (their fits are 0), so frontier_fit.json is replaced by curved fits first.
    cJSON_Delete(fit);
    free(text);
    f = fopen(path, "w");
    fprintf(f, "{\"gold0\": %.9g, \"ppo\": {\"form\": \"rl\", \"points\": 3, \"alpha\": 0.3, \"beta\": 0.4, \"rmse\": 0.01, "
               "\"has_peak\": true, \"d_peak\": %.9g, \"kl_peak\": %.9g, \"gold_peak\": 0}, \"best_of_n\": {\"form\": \"best-of-n\", "
               "\"points\": 4, \"alpha\": 0.5, \"beta\": 0.6, \"rmse\": 0.02, \"has_peak\": true, \"d_peak\": 0.416666667, \"kl_peak\": "
               "0.173611111, \"gold_peak\": 0}, \"best_of_n_beirami\": null}\n", gold0, exp(-0.25), exp(-0.5));
    fclose(f);
    cr_assert_eq(leash_read_file(path, 1 << 20, &text, NULL), 0);
    fit = cJSON_Parse(text);
    char page[256], rep[256];
    snprintf(page, sizeof page, "%s/report.html", w.dir);
    snprintf(rep, sizeof rep, "%s/report.txt", w.dir);
    snprintf(cmd, sizeof cmd, "%s report %s/sweep/ppo-beta-0 %s/sweep/ppo-beta-0.3 > %s && %s report --html %s %s/sweep/ppo-beta-0 "
             "%s/sweep/ppo-beta-0.3 && /usr/bin/python3 tests/ref/html_report_check.py %s %s %s/sweep/ppo-beta-0 %s/sweep/ppo-beta-0.3",
             LEASH_BIN, w.dir, w.dir, rep, LEASH_BIN, page, w.dir, w.dir, page, rep, w.dir, w.dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    char *html = NULL;
    cr_assert_eq(leash_read_file(page, 1 << 24, &html, NULL), 0);
    cr_assert(strstr(html, "<h2>Reward-vs-KL frontier: ") && strstr(html, "id=\"frontier-fits\""), "no frontier section");
    char *svg = strstr(html, "id=\"plot-frontier-0\"");
    cr_assert(svg, "no frontier plot");
    double m[8];
    cr_assert_eq(sscanf(strstr(svg, "data-fx=\""), "data-fx=\"%lf %lf %lf %lf\" data-fy=\"%lf %lf %lf %lf\"", &m[0], &m[1], &m[2],
                        &m[3], &m[4], &m[5], &m[6], &m[7]), 8);
    double worst = 0;
    int points = 0;
    for (int k = 0; k < 2; k++) {
        char tag[64];
        snprintf(tag, sizeof tag, "<path data-fit=\"%s\"", names[k]);
        char *pth = strstr(svg, tag);
        cr_assert(pth, "no curve %s", names[k]);
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(fit, names[k]);
        double a = fit_field(x, "alpha"), b = fit_field(x, "beta");
        for (char *q = strstr(pth, " d=\"") + 4; *q && *q != '"';) {
            double px, py;
            int used = 0;
            while (*q == ' ' || *q == 'M' || *q == 'L') q++;
            cr_assert_eq(sscanf(q, "%lf,%lf%n", &px, &py, &used), 2, "bad path at %.20s", q);
            q += used;
            double dd = m[0] + (px - m[2]) / (m[3] - m[2]) * (m[1] - m[0]);
            double want = gold0 + dd * (a - b * (k ? dd : (dd > 0 ? log(dd) : 0)));
            double want_py = m[6] + (want - m[4]) / (m[5] - m[4]) * (m[7] - m[6]);
            worst = fmax(worst, fabs(want_py - py)), points++;
        }
    }
    printf("frontier plot: %d fitted points read back, worst %.4f px\n", points, worst);
    cr_assert(points > 0 && worst <= 0.0051 + 1e-9 * fabs(m[7] - m[6]), "a fitted curve is %g px off", worst);
    free(html);
    cJSON_Delete(fit);
    free(text);
    leash_table_free(&t);

    // --best-of with 1 in it: best-of-1 once, the rows exactly the n asked (a first version left ns[0] unset)
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=PASSIVE %s sweep --policy %s --reward %s/rm --prompts %s --out %s/sweep1 --beta "
             "0,1 --best-of 1,4 --steps 5 --batch 4 --max-new 6 --bon-prompts 4 -q", LEASH_BIN, w.dir, w.dir, w.prompts, w.dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/sweep1/frontier.jsonl", w.dir);
    cr_assert_eq(leash_jsonl_load(path, NULL, 0, num, 4, 1, &t), 0, "%s", leash_errmsg());
    cr_assert(t.n == 4 && t.num[3][2] == 1 && t.num[3][3] == 4, "best-of rows: %d lines, n = %g, %g", t.n, t.num[3][2], t.num[3][3]);
    leash_table_free(&t);
    rl_scratch_drop(&w);
}

/* --stop-at-peak on tiny runs (their gold is flat, so no peak): on, it changes nothing (the same policy
 * bytes, all steps done) and is refused by nothing; without a gold reward it says once that it cannot stop. */
Test(frontier, stop_at_peak_changes_nothing_before_a_peak, .timeout = 300) {
    rl_scratch w;
    rl_scratch_make(&w, "stoppeak");
    char cmd[2048], out[16384], a[256], b[256];
    const char *common = "--gold-reward --steps 12 --batch 4 --max-new 6 --sample-every 0 -q";
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=PASSIVE %s ppo --policy %s --prompts %s --out %s/off %s && OMP_WAIT_POLICY=PASSIVE "
             "%s ppo --policy %s --prompts %s --out %s/on %s --stop-at-peak", LEASH_BIN, w.dir, w.prompts, w.dir, common,
             LEASH_BIN, w.dir, w.prompts, w.dir, common);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(!strstr(out, "stop-at-peak"), "a message without a peak: %s", out);
    snprintf(a, sizeof a, "%s/off/policy/model.safetensors", w.dir);
    snprintf(b, sizeof b, "%s/on/policy/model.safetensors", w.dir);
    snprintf(cmd, sizeof cmd, "cmp %s %s && test $(wc -l < %s/on/metrics.jsonl) = 12", a, b, w.dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "--stop-at-peak changed the run: %s", out);

    // no gold: a scorer as the reward and no --gold-metrics
    snprintf(a, sizeof a, "%s/scorer.sh", w.dir);
    FILE *f = fopen(a, "w");
    fputs("#!/bin/sh\nwhile IFS= read -r line; do\n  id=$(printf '%s\\n' \"$line\" | LC_ALL=C sed 's/.*\"id\":\\([0-9]*\\).*/\\1/')\n"
          "  echo \"{\\\"id\\\": $id, \\\"reward\\\": 0.5}\"\ndone\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "chmod +x %s && OMP_WAIT_POLICY=PASSIVE %s grpo --policy %s --prompts %s --out %s/nogold "
             "--reward-cmd %s --steps 3 --batch 2 --group 2 --max-new 4 -q --stop-at-peak", a, LEASH_BIN, w.dir, w.prompts, w.dir, a);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s", out);
    fprintf(stderr, "%s", out);
    const char *msg = "leash: --stop-at-peak: step 1 has no gold reward";
    char *at = strstr(out, msg);
    cr_assert(at && !strstr(at + strlen(msg), "--stop-at-peak: step"), "the missing gold is not said exactly once: %s", out);
    snprintf(cmd, sizeof cmd, "test $(wc -l < %s/nogold/metrics.jsonl) = 3", w.dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "the run without gold did not finish");
    rl_scratch_drop(&w);
}
