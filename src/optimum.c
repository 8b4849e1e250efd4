/* The closed-form optimum of KL-regularised RL and the KL of best-of-n: see include/leash/optimum.h.
 *
 * Dimension: M outcomes.
 */
#include "leash/optimum.h"

#include <math.h>
#include <stdlib.h>

#include "leash/error.h"

/* logsumexp of x (M) in float64; -inf entries allowed; -inf if all are. */
static double logsumexp(const double *x, int M) {
    double mx = -INFINITY;
    for (int i = 0; i < M; i++)
        if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) return -INFINITY;
    double s = 0.0;
    for (int i = 0; i < M; i++) s += exp(x[i] - mx);
    return mx + log(s);
}

static int check_log_dist(const double *logp, int M, const char *what) {
    if (!logp) return leash_fail(LEASH_EINVAL, "%s is NULL", what);
    if (M <= 0) return leash_fail(LEASH_EINVAL, "outcome count M = %d; it must be >= 1", M);
    for (int i = 0; i < M; i++)
        if (isnan(logp[i]) || logp[i] == INFINITY)
            return leash_fail(LEASH_ENUMERIC, "%s[%d] = %g; log-probs must be finite or -inf", what, i, logp[i]);
    double z = logsumexp(logp, M);
    if (!(fabs(z) <= 1e-6))
        return leash_fail(LEASH_EINVAL, "%s is not normalised: logsumexp = %g (probabilities sum to %g); "
                                        "subtract its logsumexp first",
                          what, z, exp(z));
    return LEASH_OK;
}

static int check_rewards(const double *reward, int M) {
    if (!reward) return leash_fail(LEASH_EINVAL, "reward is NULL");
    for (int i = 0; i < M; i++)
        if (!isfinite(reward[i])) return leash_fail(LEASH_ENUMERIC, "reward[%d] = %g; rewards must be finite", i, reward[i]);
    return LEASH_OK;
}

int leash_optimum(const double *ref_logp, const double *reward, int M, double beta, double *logp_star,
                  double *log_z) {
    int rc = check_log_dist(ref_logp, M, "ref_logp");
    if (rc || (rc = check_rewards(reward, M))) return rc;
    if (!(beta > 0.0) || !isfinite(beta))
        return leash_fail(LEASH_EINVAL, "beta = %g; the tilted optimum needs a finite beta > 0 (as beta -> 0 "
                                        "pi* concentrates on the highest reward)",
                          beta);
    if (!logp_star || !log_z) return leash_fail(LEASH_EINVAL, "an output pointer is NULL");
    for (int i = 0; i < M; i++) logp_star[i] = ref_logp[i] + reward[i] / beta;
    double z = logsumexp(logp_star, M);
    for (int i = 0; i < M; i++) logp_star[i] -= z;
    *log_z = z;
    return LEASH_OK;
}

int leash_kl_objective(const double *logp, const double *ref_logp, const double *reward, int M, double beta,
                       double *objective, double *expected_reward, double *kl) {
    int rc = check_log_dist(logp, M, "logp");
    if (rc || (rc = check_log_dist(ref_logp, M, "ref_logp")) || (rc = check_rewards(reward, M))) return rc;
    if (!(beta >= 0.0) || !isfinite(beta)) return leash_fail(LEASH_EINVAL, "beta = %g; it must be finite and >= 0", beta);
    double er = 0.0, d = 0.0;
    for (int i = 0; i < M; i++) {
        if (logp[i] == -INFINITY) continue; // 0 log 0 = 0
        double p = exp(logp[i]);
        er += p * reward[i];
        d += p * (logp[i] - ref_logp[i]); // +inf when pi puts mass where pi_ref has none
    }
    if (d < 0.0) d = 0.0;
    if (objective) *objective = er - beta * d;
    if (expected_reward) *expected_reward = er;
    if (kl) *kl = d;
    return LEASH_OK;
}

double leash_bon_kl_formula(long n) { return log((double)n) - (double)(n - 1) / (double)n; }

typedef struct {
    double reward;
    int index;
} outcome;

static int by_reward(const void *a, const void *b) {
    const outcome *x = a, *y = b;
    if (x->reward != y->reward) return (x->reward > y->reward) - (x->reward < y->reward);
    return (x->index > y->index) - (x->index < y->index);
}

int leash_bon(const double *p, const double *reward, int M, long n, double *p_bon, double *kl) {
    if (!p) return leash_fail(LEASH_EINVAL, "p is NULL");
    if (M <= 0) return leash_fail(LEASH_EINVAL, "outcome count M = %d; it must be >= 1", M);
    int rc = check_rewards(reward, M);
    if (rc) return rc;
    if (n < 1) return leash_fail(LEASH_EINVAL, "n = %ld; best-of-n needs n >= 1", n);
    if (!kl) return leash_fail(LEASH_EINVAL, "kl output is NULL");
    double total = 0.0;
    for (int i = 0; i < M; i++) {
        if (!(p[i] >= 0.0) || !isfinite(p[i]))
            return leash_fail(LEASH_EINVAL, "p[%d] = %g; probabilities must be finite and >= 0", i, p[i]);
        total += p[i];
    }
    if (!(fabs(total - 1.0) <= 1e-9))
        return leash_fail(LEASH_EINVAL, "p sums to %.12g; it must sum to 1 (within 1e-9)", total);

    outcome *o = malloc((size_t)M * sizeof *o);
    if (!o) return leash_fail(LEASH_ENOMEM, "best-of-n: cannot allocate %d outcomes", M);
    for (int i = 0; i < M; i++) o[i] = (outcome){reward[i], i};
    qsort(o, (size_t)M, sizeof *o, by_reward);

    // walk the reward levels upwards; F_lt = P(R < level), mass = P(R = level)
    double F_lt = 0.0, d = 0.0;
    for (int lo = 0; lo < M;) {
        int hi = lo;
        double mass = 0.0;
        while (hi < M && o[hi].reward == o[lo].reward) mass += p[o[hi++].index];
        // q = (F_lt + mass)^n - F_lt^n, without cancellation when mass << F_lt
        double q = F_lt > 0.0 ? pow(F_lt, (double)n) * expm1((double)n * log1p(mass / F_lt))
                              : pow(mass, (double)n);
        if (q > 0.0 && mass > 0.0) d += q * log(q / mass);
        if (p_bon)
            for (int k = lo; k < hi; k++) p_bon[o[k].index] = mass > 0.0 ? p[o[k].index] * (q / mass) : 0.0;
        F_lt += mass;
        lo = hi;
    }
    free(o);
    *kl = d > 0.0 ? d : 0.0;
    return LEASH_OK;
}
