/* The Gao et al. frontier fit and the run watcher that stops at its peak: see include/leash/frontier.h.
 * Dimension: N points. */
#include "leash/frontier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "leash/error.h"

/* The second column of the design matrix: the fit is gain = alpha d + beta x2(d). */
static double second_column(leash_frontier_form form, double d) {
    if (form == LEASH_FRONTIER_BON) return -d * d;
    return d > 0 ? -d * log(d) : 0.0; // d log d -> 0 as d -> 0
}

const char *leash_frontier_form_name(leash_frontier_form form) { return form == LEASH_FRONTIER_BON ? "best-of-n" : "rl"; }

double leash_frontier_eval(const leash_frontier_fit *f, double d) { return f->alpha * d + f->beta * second_column(f->form, d); }

int leash_frontier_fit_points(leash_frontier_form form, const double *d, const double *gain, int N, leash_frontier_fit *out) {
    if (N < 2) return leash_fail(LEASH_EINVAL, "frontier fit: %d point(s); alpha and beta need at least 2", N);
    double s11 = 0, s12 = 0, s22 = 0, b1 = 0, b2 = 0, scale = 0; // the normal equations
    for (int i = 0; i < N; i++) {
        if (!(d[i] >= 0) || !isfinite(d[i]) || !isfinite(gain[i]))
            return leash_fail(LEASH_EINVAL, "frontier fit: point %d has d = %g, gain = %g; d = sqrt(KL) must be finite "
                              "and >= 0 and the gain finite", i, d[i], gain[i]);
        double x1 = d[i], x2 = second_column(form, d[i]);
        s11 += x1 * x1, s12 += x1 * x2, s22 += x2 * x2, b1 += x1 * gain[i], b2 += x2 * gain[i];
    }
    scale = s11 * s22;
    double det = s11 * s22 - s12 * s12;
    if (!(scale > 0) || det <= 1e-12 * scale)
        return leash_fail(LEASH_EINVAL, "frontier fit: the %d points do not determine alpha and beta (they need two "
                          "distinct d = sqrt(KL) > 0%s); run more betas or values of n", N,
                          form == LEASH_FRONTIER_RL ? ", not both at d = 1 where d log d = 0" : "");
    leash_frontier_fit f = {.form = form, .points = N};
    f.alpha = (s22 * b1 - s12 * b2) / det;
    f.beta = (s11 * b2 - s12 * b1) / det;
    double ss = 0;
    for (int i = 0; i < N; i++) {
        double r = gain[i] - leash_frontier_eval(&f, d[i]);
        ss += r * r;
    }
    f.rmse = sqrt(ss / N);
    f.d_peak = f.kl_peak = INFINITY, f.gain_peak = NAN;
    double dp = f.beta > 0 ? (form == LEASH_FRONTIER_RL ? exp(f.alpha / f.beta - 1.0) : f.alpha / (2.0 * f.beta)) : NAN;
    if (dp > 0 && isfinite(dp)) {
        f.has_peak = 1, f.d_peak = dp, f.kl_peak = dp * dp;
        f.gain_peak = form == LEASH_FRONTIER_RL ? f.beta * dp : f.alpha * f.alpha / (4.0 * f.beta);
    }
    *out = f;
    return LEASH_OK;
}

void leash_frontier_watch_init(leash_frontier_watch *w, int min_points, int confirm) {
    *w = (leash_frontier_watch){.min_points = min_points < 3 ? 3 : min_points, .confirm = confirm < 1 ? 1 : confirm};
}

void leash_frontier_watch_free(leash_frontier_watch *w) {
    free(w->d), free(w->gain);
    w->d = w->gain = NULL, w->n = w->cap = 0;
}

int leash_frontier_watch_add(leash_frontier_watch *w, double kl, double gold) {
    if (!isfinite(kl) || !isfinite(gold)) return 0;
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        double *d = realloc(w->d, (size_t)cap * sizeof *d);
        if (d) w->d = d;
        double *g = d ? realloc(w->gain, (size_t)cap * sizeof *g) : NULL;
        if (!g) return leash_fail(LEASH_ENOMEM, "out of memory for the frontier's history of %d steps", cap);
        w->gain = g, w->cap = cap;
    }
    if (w->n == 0) w->gold0 = gold;
    w->d[w->n] = sqrt(fmax(kl, 0.0)), w->gain[w->n] = gold - w->gold0; // an estimate may dip below 0: d = 0
    w->n++;
    if (w->n < w->min_points || w->n < w->confirm) return 0;
    leash_frontier_fit f;
    if (leash_frontier_fit_points(LEASH_FRONTIER_RL, w->d, w->gain, w->n, &f) || !f.has_peak) return 0;
    if (!(f.gain_peak >= 2.0 * f.rmse)) return 0; // no rise above the noise: not a peak to stop at
    for (int i = w->n - w->confirm; i < w->n; i++)
        if (!(w->d[i] > f.d_peak)) return 0;
    if (!(leash_frontier_eval(&f, w->d[w->n - 1]) <= f.gain_peak - f.rmse)) return 0; // still on the plateau
    w->fit = f;
    return 1;
}

void leash_frontier_watch_reason(const leash_frontier_watch *w, int step, double kl, char *buf, size_t cap) {
    const leash_frontier_fit *f = &w->fit;
    snprintf(buf, cap, "stopping after step %d: the exact KL (%.3f nats/seq) has been past the fitted gold peak at %.3f "
             "nats/seq for %d steps (d (alpha - beta log d) fitted to %d steps: alpha %+.4f, beta %+.4f, peak gold %+.4f, "
             "the first step's %+.4f)", step, kl, f->kl_peak, w->confirm, f->points, f->alpha, f->beta, w->gold0 + f->gain_peak,
             w->gold0);
}
