/* KL pitfalls 2, 3, 4, 9 and 10 of docs/kl-pitfalls.md, checked on real PPO and GRPO runs through the batch
 * each step hands its callback (leash_rl_batch): the numbers the trainer used, recomputed here from the
 * checkpoints by an independent path.
 *
 * The policy is a tiny model whose final LayerNorm bias leans towards EOS, so that responses end at every
 * position from 1 to max_new (and some never emit EOS); its weights are perturbed away from the reference
 * so that every KL is non-zero. Prompts have different lengths, so they are left-padded.
 *
 * Each check was seen to fail on a broken variant when it was written: scoring at temperature 1 while
 * sampling at 0.7 (a token's exact KL 0.575 against the trainer's 0.281; the batch KL is 50% off at T=1);
 * the score placed one column after the last response token (a reward off the response); objective/kl
 * summed from kl_exact while k1 entered the reward (2.67 logged against 2.37 used); the controller fed the
 * per-token mean with a per-sequence target (see controller_units); the reference's weights synced to the
 * policy after each step (frozen check). */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/kl.h"
#include "leash/rl.h"
#include "leash/tokenizer.h"
#include "testutil.h"

enum { MAX_NEW = 6 };
/* near the measured KLs (2.6, 2.7, then 2.0-2.3 nats/seq; 0.52, 0.62, then 0.49-0.56 nats/token), so that the controller's error
 * is not clipped on the first steps and feeding the wrong unit shows */
#define TARGET_SEQ 2.4
#define TARGET_TOKEN 0.55
#define EOS_LEAN 3.0 // measured: responses ending at lengths 1..6: 20 11 16 12 6 6, without EOS 57 (of 128)

typedef struct {
    char dir[64], ref[128], pol[128], prompts[160], out[160];
    int eos;
} world;

/* The final LayerNorm bias set to c wte[eos] / |wte[eos]|^2: every position's EOS logit gains c. */
static void lean_to_eos(leash_gpt *m, int eos, double c) {
    int C = leash_gpt_cfg(m)->n_embd;
    float *p = leash_gpt_params(m), *wte = NULL, *lnfb = NULL;
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        if (!strcmp(t->name, "wte.weight")) wte = p + t->offset;
        if (!strcmp(t->name, "ln_f.bias")) lnfb = p + t->offset;
    }
    const float *e = wte + (size_t)eos * C;
    double norm2 = 0;
    for (int k = 0; k < C; k++) norm2 += (double)e[k] * e[k];
    for (int k = 0; k < C; k++) lnfb[k] = (float)(c * e[k] / norm2);
}

/* ref: the tiny model leaning towards EOS; pol: ref + N(0, 0.05) noise, leaning the same way. */
static void make_world(world *w) {
    strcpy(w->dir, "/tmp/leash-pitfall-XXXXXX");
    cr_assert(mkdtemp(w->dir));
    tiny_policy(w->dir);
    snprintf(w->ref, sizeof w->ref, "%s/ref", w->dir);
    snprintf(w->pol, sizeof w->pol, "%s/pol", w->dir);
    snprintf(w->prompts, sizeof w->prompts, "%s/prompts.jsonl", w->dir);
    snprintf(w->out, sizeof w->out, "%s/run", w->dir);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, w->dir), 0);
    w->eos = leash_gpt_cfg(m)->eos_token_id;
    lean_to_eos(m, w->eos, EOS_LEAN);
    cr_assert_eq(leash_gpt_save(m, w->ref), 0);
    cr_assert_eq(leash_tokenizer_copy(w->dir, w->ref), 0);
    leash_rng rng;
    leash_rng_seed(&rng, 12, 0);
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) leash_gpt_params(m)[i] += (float)(0.05 * leash_rng_normal(&rng));
    lean_to_eos(m, w->eos, EOS_LEAN);
    cr_assert_eq(leash_gpt_save(m, w->pol), 0);
    cr_assert_eq(leash_tokenizer_copy(w->dir, w->pol), 0);
    leash_gpt_free(m);
}

static void drop_world(world *w) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    cr_assert_eq(system(cmd), 0);
}

static double zero_reward(const char *p, const char *r, const int *t, int n, void *ctx) {
    (void)p, (void)r, (void)ctx;
    return 0.1 * n + (n > 0 ? 0.01 * t[0] : 0.0); // any deterministic score that differs between responses
}

typedef struct {
    const world *w;
    leash_rl_algo algo;
    leash_gpt *pol0, *ref0;   // independent copies of the starting checkpoints
    double beta[8], kl[8], kl_tok[8];
    int ends[MAX_NEW + 2];    // responses seen ending with EOS at each length, [MAX_NEW + 1]: without EOS
    double temp_err, temp_err_at_1; // worst relative error of the reported exact KL at T and at 1
    int steps, frozen_ok;
} probe;

/* Pitfall 2: the reported exact KL (objective/kl_exact) and the per-token log-probs equal a direct
 * computation at the rollout temperature from the starting checkpoints (step 1: the policy has not moved). */
static void check_temperature(probe *pr, const leash_rl_progress *p, float temperature) {
    const leash_rl_batch *b = p->batch;
    int R = b->rows, T = b->T, V = leash_gpt_cfg(pr->pol0)->vocab_size;
    cr_assert_eq(leash_gpt_forward(pr->pol0, b->tokens, b->mask, R, T), 0);
    cr_assert_eq(leash_gpt_forward(pr->ref0, b->tokens, b->mask, R, T), 0);
    const float *zp = leash_gpt_logits(pr->pol0), *zq = leash_gpt_logits(pr->ref0);
    float *lp = malloc(V * sizeof *lp);
    double sum[2] = {0, 0};
    const float temps[2] = {temperature, 1.0f};
    for (int k = 0; k < 2; k++)
        for (long i = 0; i < (long)R * T; i++) {
            if (b->targets[i] < 0) continue;
            double kl;
            cr_assert_eq(leash_kl_exact(zp + i * V, zq + i * V, V, temps[k], &kl, NULL), 0);
            sum[k] += kl;
            if (k == 0) {
                cr_assert(fabs(kl - b->kl_exact[i]) <= 1e-4 * kl + 1e-6, "token %ld: exact KL %g, trainer %g", i, kl, b->kl_exact[i]);
                cr_assert_eq(leash_log_softmax(zp + i * V, V, temperature, lp, NULL), 0);
                cr_assert(fabsf(lp[b->targets[i]] - b->logp[i]) <= 1e-5f * fmaxf(1.0f, fabsf(lp[b->targets[i]])),
                          "token %ld: log-prob %g at T, trainer %g", i, lp[b->targets[i]], b->logp[i]);
            }
        }
    free(lp);
    pr->temp_err = fabs(sum[0] / R - p->kl_exact) / p->kl_exact;
    pr->temp_err_at_1 = fabs(sum[1] / R - p->kl_exact) / p->kl_exact;
}

/* Pitfalls 3 and 4 on every step: the layout of every row, masks, the score on the last response token,
 * and the KL the algorithm used being the KL that was logged. */
static void check_batch(probe *pr, const leash_rl_progress *p) {
    const leash_rl_batch *b = p->batch;
    int T = b->T, P = b->P;
    const float *per_token[] = {b->logp, b->ref_logp, b->kl, b->kl_exact, b->advantages, b->rewards};
    double kl_sum = 0.0;
    for (int r = 0; r < b->rows; r++) {
        int L = b->resp_len[r];
        cr_assert(L >= 1 && L <= MAX_NEW, "row %d: response length %d", r, L);
        // the prompt: left-padded, contiguous up to column P - 1
        int pl = 0;
        for (int t = 0; t < P; t++) pl += b->mask[(long)r * T + t];
        cr_assert(pl >= 1, "row %d has no prompt", r);
        for (int t = 0; t < T; t++) {
            long i = (long)r * T + t;
            int want_mask = (t >= P - pl && t < P + L), want_target = t >= P - 1 && t <= P + L - 2;
            cr_assert_eq(b->mask[i], want_mask, "row %d column %d: mask %d (P %d, prompt %d, response %d)", r, t, b->mask[i], P, pl, L);
            cr_assert_eq(b->targets[i] >= 0, want_target, "row %d column %d: target %d", r, t, b->targets[i]);
            if (want_target) cr_assert_eq(b->targets[i], b->tokens[i + 1], "row %d: target is not the next token", r);
            else
                for (size_t k = 0; k < sizeof per_token / sizeof per_token[0]; k++)
                    if (per_token[k]) cr_assert_eq(per_token[k][i], 0.0f, "row %d column %d: array %zu is %g off the response", r, t, k, per_token[k][i]);
        }
        // EOS: the response ends at the EOS when one was emitted, else at max_new
        int last = b->tokens[(long)r * T + P + L - 1];
        cr_assert_eq(b->has_eos[r], last == pr->w->eos, "row %d: has_eos %d, last token %d", r, b->has_eos[r], last);
        if (!b->has_eos[r]) cr_assert_eq(L, MAX_NEW, "row %d stopped at %d tokens without EOS", r, L);
        for (int j = 0; j < L - 1; j++) cr_assert_neq(b->tokens[(long)r * T + P + j], pr->w->eos, "row %d: EOS inside", r);
        pr->ends[b->has_eos[r] ? L : MAX_NEW + 1]++;
        // pitfall 4: the per-token KL is the named estimator of exactly the logged log-probs
        double k = 0.0;
        for (int t = P - 1; t <= P + L - 2; t++) {
            long i = (long)r * T + t;
            leash_kl_estimator est = pr->algo == LEASH_PPO ? LEASH_KL_K1 : LEASH_KL_K3;
            cr_assert_eq(b->kl[i], (float)leash_kl_estimate(est, b->logp[i], b->ref_logp[i]), "row %d column %d", r, t);
            k += b->kl[i];
            if (pr->algo == LEASH_PPO) { // the reward GAE saw: -beta * kl, plus the shaped score on the last token
                float want = (float)(-p->beta * b->kl[i]);
                if (t == P + L - 2) want += (float)b->shaped[r];
                cr_assert_eq(b->rewards[i], want, "row %d column %d: reward %g, want %g (last response token %d)", r, t,
                             b->rewards[i], want, P + L - 2);
            } else {
                cr_assert_eq(b->advantages[i], b->advantages[(long)r * T + P - 1], "GRPO: one advantage per response");
            }
        }
        kl_sum += k;
    }
    cr_assert_eq(p->kl, kl_sum / b->rows, "objective/kl %.17g is not the mean of the KL used, %.17g", p->kl, kl_sum / b->rows);
}

static int on_step(const leash_rl_progress *p, void *ctx) {
    probe *pr = ctx;
    cr_assert(p->batch, "the callback gets the step's batch");
    pr->beta[p->step - 1] = p->beta, pr->kl[p->step - 1] = p->kl, pr->kl_tok[p->step - 1] = p->kl_per_token;
    if (p->step == 1) check_temperature(pr, p, 0.7f);
    check_batch(pr, p);
    // pitfall 10: the reference is frozen and still the starting checkpoint, bit for bit
    const leash_gpt *ref = p->batch->ref;
    size_t n = leash_gpt_num_params(ref);
    pr->frozen_ok &= leash_gpt_is_frozen(ref) && leash_gpt_grads((leash_gpt *)ref) == NULL &&
                    !memcmp(leash_gpt_params((leash_gpt *)ref), leash_gpt_params(pr->ref0), n * sizeof(float));
    pr->steps = p->step;
    return 0;
}

static void run(const world *w, leash_rl_algo algo, leash_kl_units units, probe *pr) {
    memset(pr, 0, sizeof *pr);
    pr->w = w, pr->algo = algo, pr->frozen_ok = 1;
    cr_assert_eq(leash_gpt_load(&pr->pol0, w->pol), 0);
    cr_assert_eq(leash_gpt_load(&pr->ref0, w->ref), 0);
    leash_rl_config c = leash_rl_defaults(algo);
    c.policy_dir = w->pol, c.ref_dir = w->ref, c.prompts = w->prompts, c.out_dir = w->out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = zero_reward;
    c.steps = 4, c.batch = algo == LEASH_GRPO ? 8 : 32, c.grpo.group = 4, c.max_new = MAX_NEW, c.temperature = 0.7f;
    c.minibatch = 8, c.optim.lr = 1e-3f, c.sample_every = 0;
    if (algo == LEASH_PPO) {
        cr_assert_eq(leash_beta_adaptive(&c.beta, 0.2, units == LEASH_KL_PER_TOKEN ? TARGET_TOKEN : TARGET_SEQ, 100.0), 0);
        c.beta.units = units;
    }
    cr_assert_eq(leash_rl_train(&c, on_step, pr, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(pr->steps, 4);
    leash_gpt_free(pr->pol0), leash_gpt_free(pr->ref0);
}

Test(pitfall, temperature_masks_eos_and_logged_kl_ppo, .timeout = 120) {
    world w;
    make_world(&w);
    probe pr;
    run(&w, LEASH_PPO, LEASH_KL_PER_SEQUENCE, &pr);
    cr_log_info("exact KL vs direct at T=0.7: %.2g relative; at T=1: %.2g", pr.temp_err, pr.temp_err_at_1);
    cr_assert(pr.temp_err < 1e-5, "reported exact KL differs from the direct one at T=0.7 by %g", pr.temp_err);
    cr_assert(pr.temp_err_at_1 > 0.05, "the check cannot tell T=0.7 from T=1 (%g)", pr.temp_err_at_1);
    cr_log_info("responses ending with EOS at lengths 1..%d: %d %d %d %d %d %d; without EOS %d", MAX_NEW, pr.ends[1], pr.ends[2],
                pr.ends[3], pr.ends[4], pr.ends[5], pr.ends[6], pr.ends[7]);
    for (int L = 1; L <= MAX_NEW; L++) cr_assert(pr.ends[L] > 0, "no response ended with EOS at length %d", L);
    cr_assert(pr.ends[MAX_NEW + 1] > 0, "no response hit max_new without EOS");
    cr_assert(pr.frozen_ok, "the reference moved, holds gradients, or is not frozen");
    drop_world(&w);
}

Test(pitfall, masks_eos_and_logged_kl_grpo, .timeout = 120) {
    world w;
    make_world(&w);
    probe pr;
    run(&w, LEASH_GRPO, LEASH_KL_PER_SEQUENCE, &pr);
    for (int L = 1; L <= MAX_NEW; L++) cr_assert(pr.ends[L] > 0, "no response ended with EOS at length %d", L);
    cr_assert(pr.frozen_ok, "the reference moved, holds gradients, or is not frozen");
    drop_world(&w);
}

/* Pitfall 9: the adaptive controller sees the KL in its own units: beta_{k+1} = beta_k (1 + clip(KL_k /
 * target - 1, +-0.2) n / horizon), with KL_k per sequence (objective/kl) or per token
 * (objective/kl_per_token), n = 32 sequences, horizon 100. Feeding the per-token mean to the
 * per-sequence target made the first check fail (beta 0.1872 instead of 0.2056). */
Test(pitfall, controller_units, .timeout = 120) {
    world w;
    make_world(&w);
    for (int u = 0; u < 2; u++) {
        probe pr;
        run(&w, LEASH_PPO, u ? LEASH_KL_PER_TOKEN : LEASH_KL_PER_SEQUENCE, &pr);
        double target = u ? TARGET_TOKEN : TARGET_SEQ;
        cr_log_info("%s: KL %g %g %g nats/seq, %g %g %g nats/token", leash_kl_units_name(u), pr.kl[0], pr.kl[1], pr.kl[2],
                    pr.kl_tok[0], pr.kl_tok[1], pr.kl_tok[2]);
        int unclipped = 0;
        for (int s = 0; s + 1 < 4; s++) {
            double kl = u ? pr.kl_tok[s] : pr.kl[s], e = kl / target - 1.0;
            unclipped += fabs(e) < 0.2;
            e = e > 0.2 ? 0.2 : e < -0.2 ? -0.2 : e;
            double want = pr.beta[s] * (1.0 + e * 32 / 100.0);
            cr_assert(fabs(pr.beta[s + 1] - want) < 1e-12 * want, "%s step %d: beta %.17g, want %.17g",
                      leash_kl_units_name(u), s + 2, pr.beta[s + 1], want);
        }
        cr_assert(unclipped > 0, "%s: every error was clipped; the check could not tell the units apart", leash_kl_units_name(u));
        char cmd[512];
        snprintf(cmd, sizeof cmd, "grep -q '\"kl_target_units\": \"%s\"' %s/metrics.jsonl", leash_kl_units_name(u), w.out);
        cr_assert_eq(system(cmd), 0, "metrics.jsonl does not name the units %s", leash_kl_units_name(u));
    }
    drop_world(&w);
}
