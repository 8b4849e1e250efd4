/* The Bayesian check of the trainers: on an enumerable problem, RL with a KL penalty must land on the
 * closed-form optimum pi* = pi_ref exp(r / beta) / Z (src/optimum.c), or on the point its own gradient
 * defines. One-token responses over GPT-2's 257-symbol byte alphabet (+ end-of-text), reward 2 on 8 tokens,
 * beta = 1: pi_ref is near uniform, and pi* moves 17% of the mass (TV(pi_ref, pi*) = 0.17).
 *   PPO, k1 in the reward:                  pi*                                   (TV < 0.05; measured 0.014)
 *   GRPO, k2 in the loss, no std scaling:   pi* of the reward shrunk by (G-1)/G,  (TV < 0.05; measured 0.023)
 *     because the group mean baseline contains the sample itself
 *   GRPO, k3 in the loss (the paper):       the stationary point of E[r'] - beta KL(pi_ref || pi), the
 *     reverse KL, which k3's gradient follows (TV < 0.05; measured 0.043), and not pi* (TV > 0.2) */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/optimum.h"
#include "leash/rl.h"
#include "leash/tokenizer.h"
#include "testutil.h"

enum { MAXV = 300, REWARDED_FIRST = 'a' - '!', REWARDED = 8, G = 8 };

static double table(const char *prompt, const char *response, const int *tok, int n, void *ctx) {
    (void)prompt, (void)response, (void)ctx;
    return n > 0 && tok[0] >= REWARDED_FIRST && tok[0] < REWARDED_FIRST + REWARDED ? 2.0 : 0.0;
}

/* log pi(y | "a") over the vocabulary for the model in dir. */
static int next_token_logp(const char *dir, double *logp) {
    leash_gpt *m;
    leash_tokenizer *t;
    cr_assert_eq(leash_gpt_load(&m, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_tokenizer_load_dir(&t, dir), 0);
    int *ids = NULL;
    size_t n = 0, cap = 0;
    cr_assert_eq(leash_tokenizer_encode(t, "a", 1, 0, &ids, &n, &cap), 0);
    cr_assert_eq(leash_gpt_forward(m, ids, NULL, 1, (int)n), 0);
    int V = leash_gpt_cfg(m)->vocab_size;
    const float *z = leash_gpt_logits(m) + (n - 1) * V;
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, z[v]);
    for (int v = 0; v < V; v++) s += exp(z[v] - mx);
    for (int v = 0; v < V; v++) logp[v] = z[v] - mx - log(s);
    free(ids);
    leash_gpt_free(m);
    leash_tokenizer_free(t);
    return V;
}

static double tv(const double *lp, const double *lq, int V) {
    double d = 0;
    for (int v = 0; v < V; v++) d += 0.5 * fabs(exp(lp[v]) - exp(lq[v]));
    return d;
}

/* Trains from a fresh near-uniform model; returns V, the reference and the final policy. */
static int train(leash_rl_algo algo, leash_kl_estimator est, int steps, double *ref, double *pol) {
    char dir[] = "/tmp/leash-bayes-XXXXXX", path[512], out[256], cmd[300];
    cr_assert(mkdtemp(dir));
    char text[4000];
    for (int i = 0; i < 4000; i++) text[i] = (char)('a' + i % 26);
    tiny_model_dir(dir, text, sizeof text, 257, 8);
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    cr_assert_eq(leash_write_file_atomic(path, "{\"prompt\": \"a\"}\n", 16), 0);
    snprintf(out, sizeof out, "%s/run", dir);
    leash_rl_config c = leash_rl_defaults(algo);
    c.policy_dir = dir, c.prompts = path, c.out_dir = out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = table;
    c.steps = steps, c.batch = algo == LEASH_GRPO ? 256 / G : 256, c.grpo.group = G, c.max_new = 1, c.sample_every = 0;
    c.optim.lr = 1e-3f, c.optim.grad_clip = 0.0f, c.normalize_scores = 0, c.grpo.scale_group_std = 0, c.kl_estimator = est;
    cr_assert_eq(leash_beta_fixed(&c.beta, 1.0), 0);
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    int V = next_token_logp(dir, ref);
    snprintf(path, sizeof path, "%s/policy", out);
    next_token_logp(path, pol);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    return V;
}

static void optimum(const double *ref, int V, double shrink, double *star) {
    double r[MAXV], lz;
    int tok[1];
    for (int v = 0; v < V; v++) tok[0] = v, r[v] = shrink * table(NULL, NULL, tok, 1, NULL);
    cr_assert_eq(leash_optimum(ref, r, V, 1.0, star, &lz), 0);
}

Test(bayes, ppo_with_k1_reaches_pi_star, .timeout = 120) {
    double ref[MAXV], pol[MAXV], star[MAXV];
    int V = train(LEASH_PPO, LEASH_KL_K1, 300, ref, pol);
    optimum(ref, V, 1.0, star);
    cr_assert(tv(ref, star, V) > 0.15, "the problem is too easy: TV(ref, pi*) = %g", tv(ref, star, V));
    double d = tv(pol, star, V);
    cr_log_info("PPO: TV(policy, pi*) = %.4f (TV(ref, pi*) = %.4f)", d, tv(ref, star, V));
    cr_assert(d < 0.05, "PPO ended %g (total variation) from pi*", d);
}

Test(bayes, grpo_with_k2_reaches_pi_star_of_the_shrunk_reward, .timeout = 120) {
    double ref[MAXV], pol[MAXV], star[MAXV];
    int V = train(LEASH_GRPO, LEASH_KL_K2, 400, ref, pol);
    optimum(ref, V, (G - 1.0) / G, star);
    double d = tv(pol, star, V);
    cr_log_info("GRPO k2: TV(policy, pi* of (G-1)/G r) = %.4f", d);
    cr_assert(d < 0.05, "GRPO with k2 ended %g from pi* of the shrunk reward", d);
}

Test(bayes, grpo_with_k3_follows_the_reverse_kl, .timeout = 120) {
    double ref[MAXV], pol[MAXV], star[MAXV], th[MAXV], q[MAXV];
    int V = train(LEASH_GRPO, LEASH_KL_K3, 400, ref, pol);
    // the stationary point of E_pi[r'] - KL(pi_ref || pi), r' = (G-1)/G r, by gradient ascent on logits:
    // d/d theta = pi (r' - E r') - (pi - pi_ref)
    double r[MAXV];
    int tok[1];
    for (int v = 0; v < V; v++) tok[0] = v, r[v] = (G - 1.0) / G * table(NULL, NULL, tok, 1, NULL), th[v] = ref[v];
    for (int it = 0; it < 100000; it++) {
        double mx = -INFINITY, z = 0, er = 0, pi[MAXV];
        for (int v = 0; v < V; v++) mx = fmax(mx, th[v]);
        for (int v = 0; v < V; v++) z += (pi[v] = exp(th[v] - mx));
        for (int v = 0; v < V; v++) pi[v] /= z, er += pi[v] * r[v];
        for (int v = 0; v < V; v++) th[v] += 5.0 * (pi[v] * (r[v] - er) - (pi[v] - exp(ref[v])));
    }
    double mx = -INFINITY, z = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, th[v]);
    for (int v = 0; v < V; v++) z += exp(th[v] - mx);
    for (int v = 0; v < V; v++) q[v] = th[v] - mx - log(z);
    optimum(ref, V, 1.0, star);
    double d = tv(pol, q, V), far = tv(pol, star, V);
    cr_log_info("GRPO k3: TV to the reverse-KL point %.4f, to pi* %.4f", d, far);
    cr_assert(d < 0.06, "GRPO with k3 ended %g from the reverse-KL stationary point", d);
    cr_assert(far > 0.2, "GRPO with k3 should not land on pi* here (TV %g)", far);
}
