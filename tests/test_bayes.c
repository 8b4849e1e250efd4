/* The Bayesian check of the trainers: on an enumerable problem, RL with a KL penalty must land on the
 * closed-form optimum pi* = pi_ref exp(r / beta) / Z (src/optimum.c), or on the point its own gradient
 * defines. One-token responses over GPT-2's 257-symbol byte alphabet (+ end-of-text), reward 2 on 8 tokens,
 * beta = 1: pi_ref is near uniform, and pi* moves 17% of the mass (TV(pi_ref, pi*) = 0.17). The table, with
 * the measured total variation to each method's own target (docs/rl.md has it with the figures):
 *   PPO, k1 in the reward:                  pi*                                   (TV < 0.05)
 *   PPO, exact KL in the reward:            no leash at all here: the exact KL of the state is the same for
 *     every action, so it carries no gradient on the last (here: only) token; the policy runs past pi*
 *   GRPO, k2 in the loss, no std scaling:   pi* of the reward shrunk by (G-1)/G,  (TV < 0.05)
 *     because the group mean baseline contains the sample itself
 *   GRPO, k3 in the loss (the paper):       the stationary point of E[r'] - beta KL(pi_ref || pi), the
 *     reverse KL, which k3's gradient follows (TV < 0.06), and not pi* (TV > 0.2)
 *   RLOO (leave-one-out), k2 or exact:      pi* itself (TV < 0.05), not the shrunk one
 *   GRPO, exact KL in the loss:             pi* of the shrunk reward (TV < 0.05)
 *   Dr. GRPO (dr_grpo loss, no std):        the same as GRPO without std here: one-token responses have no
 *                                           length to normalise, and the baseline still contains the sample
 *   RLOO + exact KL + entropy bonus c:      the optimum of E r - beta KL + c H, pi_ref^(beta/(beta+c))
 *                                           exp(r / (beta + c)) / Z (TV < 0.05)
 *   GRPO with the group's std scaling       the stationary point of the expected scaled advantage, a reward
 *     (the paper's default), k2 or k3:      that depends on the policy's own rewarded mass (computed in
 *                                           closed form per binomial count), with k2's or k3's KL gradient
 *                                           (TV < 0.05); with k3 it is far from pi* (rewarded mass 0.47 vs 0.20)
 * G = 2 where the shrink must show: (G-1)/G = 1/2 moves pi* by TV 0.11, beyond the noise of a run. */
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

/* One row of the table: the trainer and the options it differs in. */
typedef struct {
    leash_rl_algo algo;
    leash_kl_estimator est;
    int steps, group;
    leash_grpo_baseline baseline;
    leash_scale_rewards scale;
    leash_grpo_loss loss;
    float entropy_coef;
} method;

/* Trains from a fresh near-uniform model; returns V, the reference and the final policy. */
static int train_method(const method *m, double *ref, double *pol) {
    char dir[] = "/tmp/leash-bayes-XXXXXX", path[512], out[256], cmd[300];
    cr_assert(mkdtemp(dir));
    char text[4000];
    for (int i = 0; i < 4000; i++) text[i] = (char)('a' + i % 26);
    tiny_model_dir(dir, text, sizeof text, 257, 8);
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    cr_assert_eq(leash_write_file_atomic(path, "{\"prompt\": \"a\"}\n", 16), 0);
    snprintf(out, sizeof out, "%s/run", dir);
    leash_rl_config c = leash_rl_defaults(m->algo);
    int g = m->group ? m->group : G;
    c.policy_dir = dir, c.prompts = path, c.out_dir = out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = table;
    c.steps = m->steps, c.batch = m->algo == LEASH_GRPO ? 256 / g : 256, c.grpo.group = g, c.max_new = 1, c.sample_every = 0;
    c.optim.lr = 1e-3f, c.optim.grad_clip = 0.0f, c.normalize_scores = 0, c.kl_estimator = m->est;
    c.grpo.baseline = m->baseline, c.grpo.scale_rewards = m->scale, c.grpo.loss = m->loss, c.grpo.entropy_coef = m->entropy_coef;
    cr_assert_eq(leash_beta_fixed(&c.beta, 1.0), 0);
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    int V = next_token_logp(dir, ref);
    snprintf(path, sizeof path, "%s/policy", out);
    next_token_logp(path, pol);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    return V;
}

/* The first rows of the table: GRPO without std scaling, the group baseline, the paper's loss. */
static int train(leash_rl_algo algo, leash_kl_estimator est, int steps, double *ref, double *pol) {
    method m = {.algo = algo, .est = est, .steps = steps, .scale = LEASH_SCALE_NONE};
    return train_method(&m, ref, pol);
}

static void optimum(const double *ref, int V, double shrink, double *star) {
    double r[MAXV], lz;
    int tok[1];
    for (int v = 0; v < V; v++) tok[0] = v, r[v] = shrink * table(NULL, NULL, tok, 1, NULL);
    cr_assert_eq(leash_optimum(ref, r, V, 1.0, star, &lz), 0);
}

/* q = log softmax(th) over V. */
static void log_normalise(const double *th, int V, double *q) {
    double mx = -INFINITY, z = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, th[v]);
    for (int v = 0; v < V; v++) z += exp(th[v] - mx);
    for (int v = 0; v < V; v++) q[v] = th[v] - mx - log(z);
}

/* The mass a distribution (log-probs) puts on the rewarded tokens. */
static double rewarded_mass(const double *lp) {
    double s = 0;
    for (int v = REWARDED_FIRST; v < REWARDED_FIRST + REWARDED; v++) s += exp(lp[v]);
    return s;
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
    log_normalise(th, V, q);
    optimum(ref, V, 1.0, star);
    double d = tv(pol, q, V), far = tv(pol, star, V);
    cr_log_info("GRPO k3: TV to the reverse-KL point %.4f, to pi* %.4f", d, far);
    cr_assert(d < 0.06, "GRPO with k3 ended %g from the reverse-KL stationary point", d);
    cr_assert(far > 0.2, "GRPO with k3 should not land on pi* here (TV %g)", far);
}

/* Where a trained policy landed: TV to the row's target and to another point (pi*, or the shrunk pi*), and the
 * rewarded tokens' mass, the sharper measure (the TV also sums the sampling noise of the 250 unrewarded tokens).
 * Asserts TV < 0.05 to the target and the masses within 0.02; apart > 0: also TV > apart to the other point. */
static void check_landing(const char *name, const double *pol, const double *target, const double *other, int V, double apart) {
    double d = tv(pol, target, V), far = tv(pol, other, V), mass = rewarded_mass(pol), want = rewarded_mass(target);
    cr_log_info("%s: TV to its target %.4f, to the other point %.4f (they are %.4f apart); rewarded mass %.4f, the target's %.4f",
                name, d, far, tv(target, other, V), mass, want);
    cr_assert(d < 0.05, "%s ended %g (TV) from its target", name, d);
    cr_assert(fabs(mass - want) < 0.02, "%s put %g on the rewarded tokens, its target %g", name, mass, want);
    if (apart > 0) cr_assert(far > apart, "%s should not land on the other point (TV %g)", name, far);
}

/* A row of the table whose target is pi* of shrink x r (RLOO 1, GRPO (G-1)/G), checked against pi* of other x r. */
static void lands_on_pi_star(const char *name, const method *m, double shrink, double other, double apart) {
    double ref[MAXV], pol[MAXV], target[MAXV], away[MAXV];
    int V = train_method(m, ref, pol);
    optimum(ref, V, shrink, target), optimum(ref, V, other, away);
    check_landing(name, pol, target, away, V, apart);
}

Test(bayes, rloo_with_k2_reaches_pi_star_without_the_shrink, .timeout = 180) {
    method m = {.algo = LEASH_GRPO, .est = LEASH_KL_K2, .steps = 800, .group = 2, .baseline = LEASH_BASELINE_LOO,
                .scale = LEASH_SCALE_NONE};
    lands_on_pi_star("RLOO k2 (G = 2)", &m, 1.0, 0.5, 0.07);
}

Test(bayes, grpo_with_g2_lands_on_half_the_reward, .timeout = 180) {
    method m = {.algo = LEASH_GRPO, .est = LEASH_KL_K2, .steps = 400, .group = 2, .scale = LEASH_SCALE_NONE};
    lands_on_pi_star("GRPO k2 (G = 2), on pi* of r/2", &m, 0.5, 1.0, 0.07);
}

Test(bayes, rloo_with_the_exact_kl_in_the_loss_reaches_pi_star, .timeout = 180) {
    method m = {.algo = LEASH_GRPO, .est = LEASH_KL_EXACT, .steps = 800, .group = 2, .baseline = LEASH_BASELINE_LOO,
                .scale = LEASH_SCALE_NONE};
    lands_on_pi_star("RLOO exact KL (G = 2)", &m, 1.0, 0.5, 0.0);
}

Test(bayes, grpo_with_the_exact_kl_in_the_loss_reaches_pi_star_of_the_shrunk_reward, .timeout = 180) {
    method m = {.algo = LEASH_GRPO, .est = LEASH_KL_EXACT, .steps = 400, .group = 2, .scale = LEASH_SCALE_NONE};
    lands_on_pi_star("GRPO exact KL (G = 2), on pi* of r/2", &m, 0.5, 1.0, 0.0);
}

Test(bayes, dr_grpo_is_grpo_without_std_on_one_token_responses, .timeout = 180) {
    method m = {.algo = LEASH_GRPO, .est = LEASH_KL_K2, .steps = 400, .scale = LEASH_SCALE_NONE, .loss = LEASH_LOSS_DR_GRPO};
    lands_on_pi_star("Dr. GRPO k2, on pi* of (G-1)/G r", &m, (G - 1.0) / G, 1.0, 0.0);
}

Test(bayes, rloo_with_an_entropy_bonus_reaches_its_tempered_optimum, .timeout = 180) {
    double ref[MAXV], pol[MAXV], star[MAXV], th[MAXV], tempered[MAXV];
    const double c = 0.5; // the optimum of E r - KL(pi || pi_ref) + c H(pi): pi_ref^(1/(1+c)) exp(r/(1+c)) / Z
    method m = {.algo = LEASH_GRPO, .est = LEASH_KL_EXACT, .steps = 800, .group = 2, .baseline = LEASH_BASELINE_LOO,
                .scale = LEASH_SCALE_NONE, .entropy_coef = (float)c};
    int V = train_method(&m, ref, pol);
    // stationary: r - (log pi - log pi_ref) - c log pi = const, so log pi = (r + log pi_ref) / (1 + c) - log Z
    int tok[1];
    for (int v = 0; v < V; v++) tok[0] = v, th[v] = (table(NULL, NULL, tok, 1, NULL) + ref[v]) / (1.0 + c);
    log_normalise(th, V, tempered);
    optimum(ref, V, 1.0, star);
    check_landing("RLOO exact KL + entropy 0.5", pol, tempered, star, V, 0.05);
}

Test(bayes, ppo_with_the_exact_kl_in_the_reward_has_no_leash_on_the_last_token, .timeout = 120) {
    double ref[MAXV], pol[MAXV], star[MAXV];
    int V = train(LEASH_PPO, LEASH_KL_EXACT, 300, ref, pol);
    optimum(ref, V, 1.0, star);
    double d = tv(pol, star, V), mass = rewarded_mass(pol), mstar = rewarded_mass(star);
    cr_log_info("PPO exact KL in the reward: TV to pi* %.4f; rewarded mass %.4f (pi*: %.4f)", d, mass, mstar);
    cr_assert(mass > mstar + 0.1, "without a leash on the action the policy should run past pi* (mass %g, pi* %g)", mass, mstar);
}

/* GRPO's expected advantage with the group's std scaling (the paper's default), given that a response is
 * rewarded (*a1) or not (*a0), when the policy puts mass p on the rewarded tokens: over the k rewarded among
 * the other G - 1 (binomial), (r - mean) / (sample std + 1e-4) of the group, as grpo_advantages computes it. */
static void std_scaled_advantages(double p, double *a1, double *a0) {
    *a1 = *a0 = 0;
    for (int k = 0; k < G; k++) {
        double w = 1;
        for (int i = 0; i < k; i++) w *= (double)(G - 1 - i) / (i + 1) * p;
        w *= pow(1 - p, G - 1 - k);
        for (int self = 0; self < 2; self++) { // the response rewarded (self = 1) or not
            int n1 = k + self;
            double r = 2.0 * self, mean = 2.0 * n1 / G;
            double var = (n1 * (2 - mean) * (2 - mean) + (G - n1) * mean * mean) / (G - 1);
            *(self ? a1 : a0) += w * (r - mean) / (sqrt(var) + 1e-4);
        }
    }
}

/* The stationary point of E_pi[a] - KL (beta = 1) by gradient ascent on the logits, a(y) = a1 on the rewarded
 * tokens and a0 elsewhere, recomputed from the policy's rewarded mass at every iteration: d/d theta =
 * pi (a - E a) - grad KL, with grad KL = pi (log pi - log pi_ref - KL) for KL(pi || pi_ref) (k2's expected
 * gradient) or pi - pi_ref for KL(pi_ref || pi) (k3's). */
static void std_scaled_stationary(const double *ref, int V, int reverse, double *q) {
    double th[MAXV];
    for (int v = 0; v < V; v++) th[v] = ref[v];
    for (int it = 0; it < 20000; it++) {
        double mx = -INFINITY, z = 0, pi[MAXV], p = 0, a1, a0, ea, kl = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, th[v]);
        for (int v = 0; v < V; v++) z += (pi[v] = exp(th[v] - mx));
        for (int v = 0; v < V; v++) pi[v] /= z;
        for (int v = REWARDED_FIRST; v < REWARDED_FIRST + REWARDED; v++) p += pi[v];
        std_scaled_advantages(p, &a1, &a0);
        ea = p * a1 + (1 - p) * a0;
        for (int v = 0; v < V; v++) kl += pi[v] * (log(pi[v]) - ref[v]);
        for (int v = 0; v < V; v++) {
            double a = v >= REWARDED_FIRST && v < REWARDED_FIRST + REWARDED ? a1 : a0;
            double gkl = reverse ? pi[v] - exp(ref[v]) : pi[v] * (log(pi[v]) - ref[v] - kl);
            th[v] += 5.0 * (pi[v] * (a - ea) - gkl);
        }
    }
    log_normalise(th, V, q);
}

/* The paper's defaults, std scaling on: the advantage divided by the group's std is a reward that depends on
 * the policy itself (through how many of a group are rewarded), so GRPO lands on the stationary point of that
 * reward, with k2 (the forward KL) and with k3 (the reverse KL) alike; computed above, asserted here. */
Test(bayes, grpo_with_std_scaling_lands_on_its_own_stationary_point, .timeout = 180) {
    double ref[MAXV], pol[MAXV], star[MAXV], q[MAXV];
    for (int k = 0; k < 2; k++) {
        method m = {.algo = LEASH_GRPO, .est = k ? LEASH_KL_K3 : LEASH_KL_K2, .steps = 400, .scale = LEASH_SCALE_GROUP};
        int V = train_method(&m, ref, pol);
        optimum(ref, V, 1.0, star);
        std_scaled_stationary(ref, V, k, q);
        // k3: far from pi* (TV 0.27); k2: here 1/std nearly cancels the (G-1)/G shrink, so no distance is asserted
        check_landing(k ? "GRPO k3, std scaling (the paper)" : "GRPO k2, std scaling", pol, q, star, V, k ? 0.2 : 0.0);
    }
}
