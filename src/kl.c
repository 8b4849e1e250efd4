/* The KL penalty: see include/leash/kl.h.
 *
 * Dimensions: V vocabulary, N rows, B sequences, T tokens per sequence.
 * Every row is processed in float64 from float32 storage: logits / T, the max, the exponentials and
 * every sum. A logit of +-1e4 at T = 1e-3 is 1e7 in float64 and nothing overflows after the max is
 * subtracted.
 */
#include "leash/kl.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "leash/error.h"
#include "vecmath.h"

/* ---- one logits row -------------------------------------------------------------------------- */

static int check_row_args(const float *logits, int V, float temperature, const char *what) {
    if (!logits) return leash_fail(LEASH_EINVAL, "%s is NULL", what);
    if (V <= 0) return leash_fail(LEASH_EINVAL, "vocabulary size V = %d; it must be >= 1", V);
    if (!(temperature > 0.0f) || !isfinite(temperature))
        return leash_fail(LEASH_EINVAL,
                          "temperature = %g; it must be finite and > 0 (T = 1 scores the raw logits; "
                          "use the temperature the rollout sampled with)",
                          (double)temperature);
    return LEASH_OK;
}

/* max(logits) in float64, or a failure naming the first non-finite logit. */
VEC_HELPER int row_max(const float *logits, int V, const char *what, double *mx) {
    float m = -FLT_MAX;
    int bad = 0;
#pragma omp simd reduction(max : m) reduction(| : bad)
    for (int v = 0; v < V; v++) {
        bad |= !(fabsf(logits[v]) <= FLT_MAX); // NaN and +-Inf
        m = logits[v] > m ? logits[v] : m;
    }
    if (bad) {
        for (int v = 0; v < V; v++)
            if (!isfinite(logits[v]))
                return leash_fail(LEASH_ENUMERIC,
                                  "%s[%d] = %g; logits must be finite (mask a token with a large negative "
                                  "logit such as -1e30, not -inf; a NaN usually comes from an earlier "
                                  "overflow in the model)",
                                  what, v, (double)logits[v]);
    }
    *mx = m;
    return LEASH_OK;
}

/* Per row: m = max(logits) / T (division by T > 0 keeps the argmax), a_v = logits_v / T - m <= 0,
 * S = sum_v exp(a_v) in [1, V], and log pi(v) = a_v - log S. */
VEC_HELPER int row_sum_exp(const float *logits, int V, double inv_t, const char *what, double *m, double *S) {
    double mx = 0.0;
    int rc = row_max(logits, V, what, &mx);
    if (rc) return rc;
    mx *= inv_t;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int v = 0; v < V; v++) s += exp_nonpos(logits[v] * inv_t - mx);
    *m = mx;
    *S = s;
    return LEASH_OK;
}

VEC_KERNEL int leash_log_softmax(const float *logits, int V, float temperature, float *out, double *lse) {
    int rc = check_row_args(logits, V, temperature, "logits");
    if (rc) return rc;
    if (!out) return leash_fail(LEASH_EINVAL, "output row is NULL");
    double inv_t = 1.0 / temperature, m = 0.0, S = 1.0;
    if ((rc = row_sum_exp(logits, V, inv_t, "logits", &m, &S))) return rc;
    double z = m + log(S);
#pragma omp simd
    for (int v = 0; v < V; v++) out[v] = (float)(logits[v] * inv_t - z);
    if (lse) *lse = z;
    return LEASH_OK;
}

VEC_KERNEL int leash_logsumexp(const float *logits, int V, float temperature, double *lse) {
    int rc = check_row_args(logits, V, temperature, "logits");
    if (rc) return rc;
    double m = 0.0, S = 1.0;
    if ((rc = row_sum_exp(logits, V, 1.0 / temperature, "logits", &m, &S))) return rc;
    *lse = m + log(S);
    return LEASH_OK;
}

VEC_KERNEL void leash_logprob_backward(const float *logits, int V, float temperature, double lse, int target, float g,
                                       float *dlogits) {
    double inv_t = 1.0 / temperature, scale = g * inv_t;
#pragma omp simd
    for (int v = 0; v < V; v++) dlogits[v] -= (float)(scale * exp_nonpos(logits[v] * inv_t - lse));
    dlogits[target] += (float)scale;
}

VEC_KERNEL int leash_entropy(const float *logits, int V, float temperature, double *entropy) {
    int rc = check_row_args(logits, V, temperature, "logits");
    if (rc) return rc;
    double inv_t = 1.0 / temperature, m = 0.0;
    if ((rc = row_max(logits, V, "logits", &m))) return rc;
    m *= inv_t;
    // H = -sum pi (a - log S) = log S - (sum e^a a) / S
    double S = 0.0, W = 0.0;
#pragma omp simd reduction(+ : S, W)
    for (int v = 0; v < V; v++) {
        double a = logits[v] * inv_t - m, e = exp_nonpos(a);
        S += e;
        W += e * a;
    }
    double h = log(S) - W / S;
    *entropy = h > 0.0 ? h : 0.0;
    return LEASH_OK;
}

VEC_KERNEL int leash_kl_exact(const float *logits, const float *ref_logits, int V, float temperature, double *kl,
                   float *grad) {
    int rc = check_row_args(logits, V, temperature, "logits");
    if (rc || (rc = check_row_args(ref_logits, V, temperature, "ref_logits"))) return rc;
    if (!kl) return leash_fail(LEASH_EINVAL, "kl output is NULL");
    double inv_t = 1.0 / temperature, mp = 0.0, mq = 0.0, Sq = 1.0;
    if ((rc = row_max(logits, V, "logits", &mp))) return rc;
    if ((rc = row_sum_exp(ref_logits, V, inv_t, "ref_logits", &mq, &Sq))) return rc;
    mp *= inv_t;

    // with a = z/T - mp, b = r/T - mq: log pi - log pi_ref = (a - b) - log Sp + log Sq, so
    // KL = sum pi (log pi - log pi_ref) = W / Sp - log Sp + log Sq with W = sum e^a (a - b): one pass.
    // Identical rows give a == b, W = 0 and Sp == Sq: KL(p||p) = 0 exactly.
    double Sp = 0.0, W = 0.0;
#pragma omp simd reduction(+ : Sp, W)
    for (int v = 0; v < V; v++) {
        double a = logits[v] * inv_t - mp, b = ref_logits[v] * inv_t - mq, e = exp_nonpos(a);
        Sp += e;
        W += e * (a - b);
    }
    double c = log(Sq) - log(Sp), d = W / Sp + c;
    if (grad) {
        // d KL / d z_v = (1/T) pi(v) (log pi(v) - log pi_ref(v) - KL)
        double scale = inv_t / Sp, shift = c - d;
#pragma omp simd
        for (int v = 0; v < V; v++) {
            double a = logits[v] * inv_t - mp, b = ref_logits[v] * inv_t - mq;
            grad[v] = (float)(scale * exp_nonpos(a) * ((a - b) + shift));
        }
    }
    *kl = d > 0.0 ? d : 0.0; // KL >= 0; rounding can leave -1e-17 when pi ~ pi_ref
    return LEASH_OK;
}

int leash_kl_exact_rows(const float *logits, const float *ref_logits, int N, int V, float temperature,
                        double *kl, float *grad) {
    if (N < 0) return leash_fail(LEASH_EINVAL, "row count N = %d; it must be >= 0", N);
    if (!logits || !ref_logits || !kl) return leash_fail(LEASH_EINVAL, "a logits, ref_logits or kl pointer is NULL");
    if (V <= 0) return leash_fail(LEASH_EINVAL, "vocabulary size V = %d; it must be >= 1", V);
    int first_bad = N;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t off = (size_t)n * V;
        if (leash_kl_exact(logits + off, ref_logits + off, V, temperature, kl + n, grad ? grad + off : NULL)) {
#pragma omp critical(leash_kl_rows)
            if (n < first_bad) first_bad = n;
        }
    }
    if (first_bad < N) {
        // the message was written on a worker thread; redo the failing row here to set it for the caller
        size_t off = (size_t)first_bad * V;
        double dummy;
        int rc = leash_kl_exact(logits + off, ref_logits + off, V, temperature, &dummy, NULL);
        return leash_fail_wrap(rc, "row %d", first_bad);
    }
    return LEASH_OK;
}

/* ---- sampled estimators ---------------------------------------------------------------------- */

int leash_kl_estimator_parse(const char *name, leash_kl_estimator *est) {
    static const struct {
        const char *name;
        leash_kl_estimator est;
    } names[] = {{"k1", LEASH_KL_K1}, {"kl", LEASH_KL_K1},         {"k2", LEASH_KL_K2},
                 {"mse", LEASH_KL_K2}, {"k3", LEASH_KL_K3},        {"low_var_kl", LEASH_KL_K3},
                 {"abs", LEASH_KL_ABS}, {"k3+", LEASH_KL_K3_PLUS}};
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *est = names[i].est;
            return LEASH_OK;
        }
    }
    return leash_fail(LEASH_EINVAL, "KL estimator '%s' is unknown; use k1 (alias kl), k2 (alias mse), "
                                    "k3 (alias low_var_kl), abs, or k3+ (k3's value, k2's gradient)",
                      name ? name : "(null)");
}

const char *leash_kl_estimator_name(leash_kl_estimator est) {
    switch (est) {
    case LEASH_KL_K1: return "k1";
    case LEASH_KL_K2: return "k2";
    case LEASH_KL_K3: return "k3";
    case LEASH_KL_ABS: return "abs";
    case LEASH_KL_K3_PLUS: return "k3+";
    case LEASH_KL_EXACT: return "exact";
    }
    return "?";
}

/* K3 = (r - 1) - log r of log r = lr, and its derivative in lr, r - 1; the tangent line beyond the bound. */
static double k3_value(double lr) {
    if (lr > LEASH_KL_LOG_RATIO_MAX) return k3_value(LEASH_KL_LOG_RATIO_MAX) + expm1(LEASH_KL_LOG_RATIO_MAX) * (lr - LEASH_KL_LOG_RATIO_MAX);
    if (fabs(lr) < 1e-2) { // (r - 1) - log r = sum_{k>=2} lr^k / k!; the subtraction would cancel
        double term = lr * lr / 2.0, sum = term;
        for (int k = 3; k <= 9; k++) sum += (term *= lr / k);
        return sum;
    }
    return expm1(lr) - lr;
}

double leash_kl_estimate(leash_kl_estimator est, double logp, double ref_logp) {
    double lr = ref_logp - logp; // log r = log pi_ref(x) - log pi(x)
    switch (est) {
    case LEASH_KL_K1: return -lr;
    case LEASH_KL_K2: return 0.5 * lr * lr;
    case LEASH_KL_K3:
    case LEASH_KL_K3_PLUS: return k3_value(lr);
    case LEASH_KL_ABS: return fabs(lr);
    case LEASH_KL_EXACT: break; // needs both logit rows: leash_kl_exact
    }
    return NAN;
}

double leash_kl_estimate_grad(leash_kl_estimator est, double logp, double ref_logp) {
    double lr = ref_logp - logp; // d lr / d logp = -1
    switch (est) {
    case LEASH_KL_K1: return 1.0;
    case LEASH_KL_K2:
    case LEASH_KL_K3_PLUS: return -lr;
    case LEASH_KL_K3: return -expm1(lr < LEASH_KL_LOG_RATIO_MAX ? lr : LEASH_KL_LOG_RATIO_MAX); // 1 - r
    case LEASH_KL_ABS: return lr < 0.0 ? 1.0 : (lr > 0.0 ? -1.0 : 0.0);
    case LEASH_KL_EXACT: break; // its gradient is in the logits: leash_kl_exact
    }
    return NAN;
}

int leash_kl_estimate_clamped(leash_kl_estimator est, double logp, double ref_logp) {
    return (est == LEASH_KL_K3 || est == LEASH_KL_K3_PLUS) && ref_logp - logp > LEASH_KL_LOG_RATIO_MAX;
}

int leash_kl_tokens(leash_kl_estimator est, const float *logp, const float *ref_logp, const uint8_t *mask,
                    int n, float *kl, float *grad) {
    if (n < 0) return leash_fail(LEASH_EINVAL, "token count n = %d; it must be >= 0", n);
    if (!logp || !ref_logp || !kl) return leash_fail(LEASH_EINVAL, "a logp, ref_logp or kl pointer is NULL");
    if ((unsigned)est > LEASH_KL_K3_PLUS) return leash_fail(LEASH_EINVAL, "KL estimator %d is unknown", (int)est);
    for (int i = 0; i < n; i++) {
        if (mask && !mask[i]) {
            kl[i] = 0.0f;
            if (grad) grad[i] = 0.0f;
            continue;
        }
        if (!isfinite(logp[i]) || !isfinite(ref_logp[i]))
            return leash_fail(LEASH_ENUMERIC,
                              "token %d: log pi = %g, log pi_ref = %g; both must be finite (a -inf "
                              "log-prob means the token was sampled with a filter, top-k or top-p, that "
                              "scoring did not apply)",
                              i, (double)logp[i], (double)ref_logp[i]);
        double k = leash_kl_estimate(est, logp[i], ref_logp[i]);
        double g = leash_kl_estimate_grad(est, logp[i], ref_logp[i]);
        if (!(fabs(k) <= FLT_MAX) || !(fabs(g) <= FLT_MAX))
            return leash_fail(LEASH_ENUMERIC,
                              "token %d: the %s estimate overflows float32 (log pi_ref - log pi = %g): the "
                              "policy has drifted far from the reference; raise beta or lower the "
                              "learning rate",
                              i, leash_kl_estimator_name(est), (double)ref_logp[i] - (double)logp[i]);
        kl[i] = (float)k;
        if (grad) grad[i] = (float)g;
    }
    return LEASH_OK;
}

/* ---- masked aggregation ---------------------------------------------------------------------- */

static int check_batch(const float *x, int B, int T) {
    if (!x) return leash_fail(LEASH_EINVAL, "values pointer is NULL");
    if (B <= 0 || T <= 0) return leash_fail(LEASH_EINVAL, "batch shape (B=%d, T=%d); both must be >= 1", B, T);
    return LEASH_OK;
}

/* Sum and count of the selected entries of row b of x (B, T). */
static int row_sum(const float *x, const uint8_t *mask, int T, int b, double *sum, int *count) {
    double s = 0.0;
    int c = 0;
    for (int t = 0; t < T; t++) {
        size_t i = (size_t)b * T + t;
        if (mask && !mask[i]) continue;
        if (!isfinite(x[i]))
            return leash_fail(LEASH_ENUMERIC, "value at (sequence %d, token %d) = %g; selected values must be finite",
                              b, t, (double)x[i]);
        s += x[i];
        c++;
    }
    *sum = s;
    *count = c;
    return LEASH_OK;
}

int leash_masked_row_sums(const float *x, const uint8_t *mask, int B, int T, double *sums, int *counts) {
    int rc = check_batch(x, B, T);
    if (rc) return rc;
    if (!sums) return leash_fail(LEASH_EINVAL, "sums output is NULL");
    for (int b = 0; b < B; b++) {
        int c = 0;
        if ((rc = row_sum(x, mask, T, b, &sums[b], &c))) return rc;
        if (counts) counts[b] = c;
    }
    return LEASH_OK;
}

int leash_masked_reduce(const float *x, const uint8_t *mask, int B, int T, leash_agg agg, double *out,
                        float *weights) {
    int rc = check_batch(x, B, T);
    if (rc) return rc;
    if (!out) return leash_fail(LEASH_EINVAL, "output is NULL");
    if ((unsigned)agg > LEASH_AGG_SEQ_MEAN) return leash_fail(LEASH_EINVAL, "aggregation %d is unknown", (int)agg);

    // pass 1: totals, and how many sequences have at least one selected token
    long total_count = 0;
    int nonempty = 0;
    double total = 0.0, seq_mean_sum = 0.0;
    for (int b = 0; b < B; b++) {
        double s = 0.0;
        int c = 0;
        if ((rc = row_sum(x, mask, T, b, &s, &c))) return rc;
        total += s;
        total_count += c;
        if (c > 0) {
            nonempty++;
            seq_mean_sum += s / c;
        }
    }
    if (total_count == 0)
        return leash_fail(LEASH_EINVAL, "the mask selects no token in a (B=%d, T=%d) batch: nothing to "
                                        "average (is the response mask empty?)",
                          B, T);

    switch (agg) {
    case LEASH_AGG_SEQ_SUM: *out = total / B; break;
    case LEASH_AGG_TOKEN_MEAN: *out = total / (double)total_count; break;
    case LEASH_AGG_SEQ_MEAN: *out = seq_mean_sum / nonempty; break;
    }
    if (!weights) return LEASH_OK;

    // pass 2: d out / d x
    for (int b = 0; b < B; b++) {
        int c = 0;
        for (int t = 0; t < T; t++) c += !mask || mask[(size_t)b * T + t];
        double w = agg == LEASH_AGG_SEQ_SUM      ? 1.0 / B
                   : agg == LEASH_AGG_TOKEN_MEAN ? 1.0 / (double)total_count
                   : c > 0                       ? 1.0 / ((double)nonempty * c)
                                                 : 0.0;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            weights[i] = (!mask || mask[i]) ? (float)w : 0.0f;
        }
    }
    return LEASH_OK;
}
