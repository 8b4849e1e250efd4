/* Best-of-n sampling: the inference-time baseline for KL-regularised RL. For each prompt, n responses from
 * the policy; the one the reward model scores highest is kept. Its KL to the policy is at most
 * log n - (n - 1)/n nats per sequence (exact without ties; leash_bon in optimum.h computes the exact value
 * for a finite distribution). */
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
} leash_bon_result;

/* Samples max(ns) responses for each of `prompts` prompts (drawn from seed) once, scores them all, and
 * reports best-of-n for every n in ns (the first n samples of each prompt), so the results are nested. */
int leash_best_of_n(const char *policy_dir, const char *reward_dir, const char *prompts_path, const int *ns, int n_ns,
                    int prompts, int max_new, float temperature, uint64_t seed, leash_bon_result *out);

#endif
