/* Best-of-n sampling: the inference-time baseline for KL-regularised RL. For each prompt, n responses from
 * the policy; the one the reward model scores highest is kept. Its KL to the policy is at most
 * log n - (n - 1)/n nats per sequence (exact when every response has vanishing probability; leash_bon in
 * optimum.h computes the exact value for a finite distribution). Beirami et al. 2024 ("Theoretical guarantees
 * on the best-of-n alignment policy", arXiv 2401.01879, eq. 25) show the formula is only that upper bound and
 * estimate the KL from eps = pi_ref(kept response): the exact KL of best-of-n when the top-reward outcome
 * has probability eps and every other outcome a vanishing one,
 *     d_n(eps) = (1 - eps)^n [log n + (n - 1) log(1 - eps) - (n - 1)/n]
 *              + (1 - (1 - eps)^n) log((1 - (1 - eps)^n) / eps),
 * d_n(0) = log n - (n - 1)/n, d_n(1) = 0. The first term is the continuous part below the top outcome (density
 * n u^(n-1) on u in [0, 1 - eps]), the second the top outcome's mass 1 - (1 - eps)^n against its eps. */
#ifndef LEASH_BON_H
#define LEASH_BON_H

#include <stdint.h>

typedef struct {
    int n;              /* samples per prompt */
    int prompts;        /* prompts averaged over */
    double proxy;       /* mean reward-model score of the kept responses */
    double gold;        /* mean gold reward (the default world's) of the kept responses */
    double grammatical; /* fraction of kept responses the grammar produces */
    double kl_bound;    /* log n - (n - 1)/n, nats per sequence */
    double kl_beirami;  /* Beirami et al.'s estimate: the mean over prompts of d_n(eps), eps = pi_ref(kept
                         * response) at the sampling temperature (nats per sequence) */
    double eps_mean;    /* the mean of that eps */
} leash_bon_result;

/* d_n(eps) above, for n >= 1 and eps in [0, 1] (NAN outside). */
double leash_bon_kl_beirami(long n, double eps);

/* Samples max(ns) responses for each of `prompts` prompts (drawn from seed) once, scores them all, and
 * reports best-of-n for every n in ns (the first n samples of each prompt), so the results are nested. */
int leash_best_of_n(const char *policy_dir, const char *reward_dir, const char *prompts_path, const int *ns, int n_ns,
                    int prompts, int max_new, float temperature, uint64_t seed, leash_bon_result *out);

#endif
