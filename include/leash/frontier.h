/* The over-optimisation frontier (Gao, Schulman & Hilton 2022, "Scaling laws for reward model
 * overoptimization"): the gold reward gained over the reference, against d = sqrt(KL(pi || pi_ref)) in
 * sqrt(nats per sequence), follows
 *     RL (PPO, GRPO at some beta):  gain(d) = d (alpha - beta log d)
 *     best-of-n:                    gain(d) = d (alpha - beta d)
 * Both are linear in (alpha, beta) for known d, so the least-squares fit is the 2 x 2 normal equations.
 * With beta > 0 the fitted gain peaks at
 *     RL:  d* = exp(alpha / beta - 1), gain(d*) = beta d*
 *     BoN: d* = alpha / (2 beta),       gain(d*) = alpha^2 / (4 beta)
 * and the KL there is d*^2. Past d* a larger KL buys less gold: the proxy is being over-optimised.
 *
 * Dimension: N points. */
#ifndef LEASH_FRONTIER_H
#define LEASH_FRONTIER_H

#include <stddef.h>

typedef enum { LEASH_FRONTIER_RL, LEASH_FRONTIER_BON } leash_frontier_form;

typedef struct {
    leash_frontier_form form;
    int points;       /* N, the points fitted */
    double alpha, beta;
    int has_peak;     /* beta > 0 and d* > 0: the fitted gain turns down at d* */
    double d_peak;    /* d*, sqrt(nats per sequence); INFINITY without a peak */
    double kl_peak;   /* d*^2, nats per sequence; INFINITY without a peak */
    double gain_peak; /* the fitted gain at d* (NAN without a peak) */
    double rmse;      /* root mean squared residual of the fit, in gold units */
} leash_frontier_fit;

/* Fits gain (N) against d (N, each >= 0, finite) by least squares; N >= 2 and the two columns of the
 * design matrix must not be (near) collinear (two distinct d > 0, and d != 1 for the RL form's d log d),
 * else LEASH_EINVAL naming what is missing. */
int leash_frontier_fit_points(leash_frontier_form form, const double *d, const double *gain, int N, leash_frontier_fit *out);

/* The fitted gain at d >= 0. */
double leash_frontier_eval(const leash_frontier_fit *f, double d);

/* "rl" or "best-of-n". */
const char *leash_frontier_form_name(leash_frontier_form form);

/* A run's own frontier, for stopping at the peak: the RL form fitted to its history of (sqrt of the exact KL,
 * gold - the first step's gold). leash_frontier_watch_add returns 1 once the run has passed the fitted peak:
 * at least `min_points` points; a peak (beta > 0) that rises above the noise (the fitted gain at d* at least
 * twice the fit's rmse: gold that only wanders fits a spurious peak near d = 0); and the last `confirm` points
 * all beyond d*, the fitted gain at the last of them fallen from the peak by at least the rmse. Then
 * w->fit holds the fit that said so. 0 otherwise (also for a non-finite point, which is not kept);
 * LEASH_ENOMEM (negative) when the history cannot grow. */
typedef struct {
    int min_points, confirm;
    int n, cap;
    double gold0;      /* the first point's gold: gains are measured from it */
    double *d, *gain;  /* (cap) the history */
    leash_frontier_fit fit;
} leash_frontier_watch;

void leash_frontier_watch_init(leash_frontier_watch *w, int min_points, int confirm);
int leash_frontier_watch_add(leash_frontier_watch *w, double kl, double gold);
void leash_frontier_watch_free(leash_frontier_watch *w);
/* Why the watcher stopped the run after `step` at exact KL kl, for a log: the KL, the peak's, the fit. */
void leash_frontier_watch_reason(const leash_frontier_watch *w, int step, double kl, char *buf, size_t cap);

#endif
