/* The Bayesian view of KL-regularised RL, as a built-in check on every trainer.
 *
 * Maximising J(pi) = E_pi[r] - beta KL(pi || pi_ref) over all distributions on a set of outcomes y
 * has the closed-form solution (Korbak et al. 2022, "RL with KL penalties is better viewed as
 * Bayesian inference"):
 *     pi*(y) = pi_ref(y) exp(r(y) / beta) / Z,   Z = sum_y pi_ref(y) exp(r(y) / beta),
 * and the optimal value is J(pi*) = beta log Z.
 *
 * Best-of-n sampling (draw n samples from pi_ref, keep the highest reward) is the other standard
 * way to trade reward for KL; its KL is often quoted as log n - (n - 1)/n, which is exact only when
 * no two outcomes share a reward and is an upper bound otherwise (Beirami et al. 2024).
 *
 * Dimension: M outcomes. Distributions over outcomes are float64 (they are sums over whole sequences).
 */
#ifndef LEASH_OPTIMUM_H
#define LEASH_OPTIMUM_H

/* pi* over M outcomes: logp_star (M) and log Z. ref_logp holds log pi_ref(y), normalised (its
 * logsumexp within 1e-6 of 0; -inf allowed for an outcome the reference never produces); reward
 * finite; beta > 0. */
int leash_optimum(const double *ref_logp, const double *reward, int M, double beta, double *logp_star,
                  double *log_z);

/* J(pi) = E_pi[r] - beta KL(pi || pi_ref) for a normalised logp (M); also its parts if not NULL. */
int leash_kl_objective(const double *logp, const double *ref_logp, const double *reward, int M, double beta,
                       double *objective, double *expected_reward, double *kl);

/* log n - (n - 1) / n: the textbook best-of-n KL (n >= 1). */
double leash_bon_kl_formula(long n);

/* The exact best-of-n distribution and its KL(pi_bon || pi_ref) for a finite distribution p (M, sums
 * to 1 within 1e-9) with rewards (M). Ties: among samples that share the highest reward, the kept
 * one is chosen uniformly at random, so pi_bon(y) = p(y) (F(r)^n - F_<(r)^n) / p(level of y), with
 * F(r) = P(R <= r) and F_<(r) = P(R < r). p_bon (M) may be NULL. */
int leash_bon(const double *p, const double *reward, int M, long n, double *p_bon, double *kl);

#endif
