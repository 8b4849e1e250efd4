/* The KL penalty: log-softmax, exact KL between two logit rows, sampled per-token estimators with
 * their gradients, and masked aggregation over a batch of sequences.
 *
 * Dimensions: V vocabulary size, N rows (positions), B sequences, T tokens per sequence.
 * Storage is float32; every sum over a vocabulary or a sequence is accumulated in float64, and the
 * scalar results (a KL, a sequence sum) are returned as double.
 *
 * Units. A per-token KL is in nats per token. Summed over the response tokens of one sequence it is
 * in nats per sequence: the unit of the classic adaptive-controller target (6 nats) and of
 * KL(pi || pi_ref) of whole responses. leash_masked_reduce() says which one it returns.
 *
 * Temperature. pi = softmax(logits / T). A rollout sampled at temperature T must be scored at the
 * same T, for the policy and for the reference, or the KL is the KL of other distributions.
 */
#ifndef LEASH_KL_H
#define LEASH_KL_H

#include <stdint.h>

/* ---- one logits row -------------------------------------------------------------------------- */

/* out[i] = logits[i]/T - logsumexp(logits/T), for i < V. Logits must be finite (mask a token with a
 * large negative logit such as -1e30, not with -inf); T > 0. `out` may alias `logits`.
 * If lse != NULL it receives logsumexp(logits/T). */
int leash_log_softmax(const float *logits, int V, float temperature, float *out, double *lse);

/* logsumexp(logits / T) of one row, in float64. */
int leash_logsumexp(const float *logits, int V, float temperature, double *lse);

/* dlogits (V) += g * d log pi(target) / d logits = (g / T) (onehot(target) - pi), where pi =
 * softmax(logits / T) and lse = logsumexp(logits / T) from leash_logsumexp(). No checks: the caller
 * has validated the row with leash_logsumexp(). */
void leash_logprob_backward(const float *logits, int V, float temperature, double lse, int target, float g,
                            float *dlogits);

/* Entropy H(pi) = -sum pi log pi of pi = softmax(logits/T), in nats. */
int leash_entropy(const float *logits, int V, float temperature, double *entropy);

/* Exact KL(pi || pi_ref) = sum_v pi(v) (log pi(v) - log pi_ref(v)) for pi = softmax(logits/T) and
 * pi_ref = softmax(ref_logits/T), over the full vocabulary: nats per token, always >= 0.
 * If grad != NULL it receives d KL / d logits (V): (1/T) pi(v) (log pi(v) - log pi_ref(v) - KL).
 * The reference gets no gradient: it is frozen. */
int leash_kl_exact(const float *logits, const float *ref_logits, int V, float temperature, double *kl,
                   float *grad);

/* leash_kl_exact on N rows (N, V) at once, rows in parallel: kl (N), grad (N, V) or NULL. */
int leash_kl_exact_rows(const float *logits, const float *ref_logits, int N, int V, float temperature,
                        double *kl, float *grad);

/* ---- sampled estimators ---------------------------------------------------------------------- */

/* Estimators of KL(pi || pi_ref) from one token x ~ pi, with log r = log pi_ref(x) - log pi(x).
 * Bias and variance (x ~ pi; see docs/kl.md for the derivations):
 *   K1  = -log r                 unbiased; high variance; negative on many samples.
 *   K2  = (log r)^2 / 2          biased: E[K2] = KL + O(third moments of log r); never negative;
 *                                low variance when pi is close to pi_ref. "mse" is its other name.
 *   K3  = (r - 1) - log r        unbiased (E[r] = 1 on the reference's support); never negative;
 *                                lower variance than K1 when pi is close to pi_ref.
 *   ABS = |log r|                biased upwards (E|log r| >= KL); never negative.
 * Gradients are d k / d log pi(x), for a KL term inside a loss (GRPO). Their expectations under pi,
 * through log pi only (no score-function term), are:
 *   K1: 0 (useless inside a loss); K2: the exact gradient of KL(pi || pi_ref);
 *   K3: the gradient of the reverse KL(pi_ref || pi); ABS: no KL gradient in general.
 * Inside a reward (PPO) the value is used detached and no gradient is needed. */
typedef enum {
    LEASH_KL_K1 = 0,
    LEASH_KL_K2 = 1,
    LEASH_KL_K3 = 2,
    LEASH_KL_ABS = 3,
    LEASH_KL_K3_PLUS = 4, /* "k3+": the value of K3 (unbiased, never negative) with the gradient of K2
                           * (whose expectation is exactly grad KL(pi || pi_ref)): for a KL inside a loss
                           * that logs an unbiased KL and pulls along the true KL gradient */
    LEASH_KL_EXACT = 5,   /* "exact": not a sampled estimator but the full-vocabulary KL of both logit rows
                           * (leash_kl_exact) and its gradient in the logits; the trainers' choice, which
                           * leash_kl_estimate() and leash_kl_tokens() refuse (NAN, an error): they see one token */
} leash_kl_estimator;

/* K3 grows like r = exp(log r): at log r = 1e3 it would be +inf, and its gradient too. Beyond
 * log r = LEASH_KL_LOG_RATIO_MAX, K3 (and K3+'s value) continues as the straight line tangent at the
 * bound: finite, still increasing, still pulling the policy back with the bound's slope 1 - e^20. The
 * other estimators need no bound (|log r| <= 1e3 keeps K2 <= 5e5). leash_kl_estimate_clamped() says when
 * the line is in use; the trainers count those tokens (metric kl/clamped_tokens). */
#define LEASH_KL_LOG_RATIO_MAX 20.0

/* "k1" ("kl"), "k2" ("mse"), "k3" ("low_var_kl"), "abs", "k3+". Returns LEASH_EINVAL for another name. */
int leash_kl_estimator_parse(const char *name, leash_kl_estimator *est);
const char *leash_kl_estimator_name(leash_kl_estimator est);

/* One token: the estimate and its derivative with respect to log pi(x). Pure functions of two
 * finite numbers; finite for every finite input (K3 beyond LEASH_KL_LOG_RATIO_MAX: see above). */
double leash_kl_estimate(leash_kl_estimator est, double logp, double ref_logp);
double leash_kl_estimate_grad(leash_kl_estimator est, double logp, double ref_logp);
/* 1 when the estimate of this token runs on K3's tangent line (log r > LEASH_KL_LOG_RATIO_MAX). */
int leash_kl_estimate_clamped(leash_kl_estimator est, double logp, double ref_logp);

/* n tokens: kl[i] (and grad[i] = d kl[i] / d logp[i] if grad != NULL) where mask[i] != 0, exactly 0
 * where mask[i] == 0 (prompt and padding: their inputs are never read). mask == NULL selects all.
 * Fails on a non-finite selected input, or on a value that overflows float32. */
int leash_kl_tokens(leash_kl_estimator est, const float *logp, const float *ref_logp, const uint8_t *mask,
                    int n, float *kl, float *grad);

/* ---- masked aggregation over a batch (B, T) -------------------------------------------------- */

typedef enum {
    LEASH_AGG_SEQ_SUM = 0,    /* mean over sequences of the per-sequence sum: nats per sequence */
    LEASH_AGG_TOKEN_MEAN = 1, /* sum over all selected tokens / their count: nats per token */
    LEASH_AGG_SEQ_MEAN = 2,   /* mean over sequences of the per-sequence token mean (GRPO paper) */
} leash_agg;

/* Per-sequence sums of x (B, T) over mask (B, T): sums (B) in float64, counts (B) or NULL. A selected value
 * that is not finite is an error naming its place. */
int leash_masked_row_sums(const float *x, const uint8_t *mask, int B, int T, double *sums, int *counts);

/* One number from x (B, T) under mask (B, T) by `agg`. Sequences with no selected token count as
 * sequences (their sum is 0) for SEQ_SUM and are left out for SEQ_MEAN; the call fails when no token
 * at all is selected, or a selected value is not finite. If weights != NULL it receives d out / d x (B, T),
 * so a loss can backpropagate through the aggregation: masked-out entries get weight 0.
 * A public helper for callers with one whole batch in memory: `leash kl` (src/cli/kl.c) and bindings (the
 * Python package's leash.masked_reduce, tests/test_aggregate.c). The trainers do not call it, on purpose:
 * their batch is split over ranks, so counts and sums are summed over every rank's rows before dividing
 * (leash_dist); their token selection is the rollout's targets >= 0, not a byte mask; their losses weight
 * tokens by TRL's loss types (grpo.c's row_weight: Dr. GRPO's S x M, masked truncations), none of these
 * three; and their metric sums (rl.c's sum_batch) add several quantities in one pass, in an order whose
 * float64 rounding these per-row sums would change, and must pass non-finite values on to --skip-nonfinite
 * rather than fail. */
int leash_masked_reduce(const float *x, const uint8_t *mask, int B, int T, leash_agg agg, double *out,
                        float *weights);

#endif
