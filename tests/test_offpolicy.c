/* Off-policy correction and truncated sampling in RL (docs/rl.md): truncated importance sampling's weights
 * against TRL's definition computed here, the importance-ratio metrics of real runs, the sampler's partial
 * selection against the full sort it replaced (the same tokens, bit for bit), the scorer's truncation against
 * the sampler's log-probs, and top-k / top-p runs whose first ratio is exactly 1. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/rl_internal.h"
#include "leash/error.h"
#include "leash/kl.h"
#include "leash/rl.h"
#include "leash/rng.h"
#include "leash/sample.h"
#include "testutil.h"

/* ---- truncated importance sampling: the weights -------------------------------------------------------- */

/* Three rows, P = 2, M = 4, lengths 3, 1, 4; advantages 1 (row 2: -2), old and sampling log-probs apart by known
 * gaps d[b][j]. */
static const double GAP[3][4] = {{0.1, -0.3, 1.2, 0}, {2.5, 0, 0, 0}, {-0.2, 0.05, 0.4, -1.0}};
static const int LEN[3] = {3, 1, 4};

static void tis_rollout(rollout *r) {
    cr_assert_eq(rollout_alloc(r, 3, 2, 4, 3), 0);
    int T = r->T, P = r->P, M = r->M;
    for (int i = 0; i < 3 * T; i++) r->targets[i] = -1, r->adv[i] = 0.0f;
    for (int b = 0; b < 3; b++) {
        r->resp_len[b] = LEN[b];
        for (int j = 0; j < LEN[b]; j++) {
            int t = b * T + P + j - 1;
            r->targets[t] = 5;
            r->gen_lp[b * M + j] = -1.5f - 0.1f * j;
            r->old_logp[t] = (float)(r->gen_lp[b * M + j] + GAP[b][j]);
            r->adv[t] = b == 2 ? -2.0f : 1.0f;
        }
    }
}

Test(offpolicy, tis_weights_are_trls_truncated_or_masked_ratios) {
    const double cap = 2.0;
    const char *names[] = {"token_truncate", "token_mask", "sequence_truncate", "sequence_mask"};
    double worst = 0.0;
    for (int mode = 0; mode < 4; mode++) {
        leash_tis_mode m;
        cr_assert_eq(leash_tis_mode_parse(names[mode], &m), 0);
        cr_assert_eq((int)m, mode);
        cr_assert_str_eq(leash_tis_mode_name(m), names[mode]);
        rollout r;
        tis_rollout(&r);
        tis_stats st;
        offpolicy_tis(&r, (float)cap, m, &st);
        long want_n = 0, want_cut = 0;
        double want_sum = 0.0;
        for (int b = 0; b < 3; b++) {
            // the reference: the ratio exp(old - sample) as float log-probs give it, per token or per sequence
            double seq = 0.0;
            for (int j = 0; j < LEN[b]; j++) seq += (double)r.old_logp[b * r.T + r.P + j - 1] - r.gen_lp[b * r.M + j];
            for (int j = 0; j < LEN[b]; j++) {
                int t = b * r.T + r.P + j - 1;
                double ratio = mode >= 2 ? exp(seq) : exp((double)r.old_logp[t] - r.gen_lp[b * r.M + j]);
                double w = ratio > cap ? (mode % 2 ? 0.0 : cap) : ratio;
                double want = (b == 2 ? -2.0 : 1.0) * w, d = fabs(r.adv[t] - want);
                if (d > worst) worst = d;
                cr_assert(d <= 1e-6 * (1 + fabs(want)), "%s: row %d token %d advantage %g, want %g", names[mode], b, j, r.adv[t], want);
                if (mode < 2 || j == 0) want_n++, want_sum += w, want_cut += ratio > cap;
            }
        }
        for (int i = 0; i < 3 * r.T; i++)
            if (r.targets[i] < 0) cr_assert_eq(r.adv[i], 0.0f, "a prompt or padding place got a weight");
        cr_assert_eq(st.n, want_n, "%s: %ld weights, want %ld", names[mode], st.n, want_n);
        cr_assert_eq(st.cut, want_cut, "%s: %ld above the cap, want %ld", names[mode], st.cut, want_cut);
        cr_assert(fabs(st.w_sum - want_sum) < 1e-9, "%s: weights sum to %g, want %g", names[mode], st.w_sum, want_sum);
        rollout_free(&r);
    }
    // the gaps put exp(1.2) = 3.32 and exp(2.5) over the cap of 2 per token, and row 0's sequence exp(1.0) = 2.72
    printf("tis: worst |advantage - TRL's weight x advantage| over 4 modes %.3g\n", worst);
    leash_tis_mode m;
    cr_assert_eq(leash_tis_mode_parse("sequence", &m), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "token_truncate"), "%s", leash_errmsg());
}

/* ---- the sampler: partial selection against the full sort ------------------------------------------------ */

/* The sampler before issue 20, kept here as the reference: qsort of the whole vocabulary per token. */
static int by_desc(const void *a, const void *b) {
    const leash_scored_token *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

static void sample_by_sort(const float *logits, int V, const leash_sample_config *sc, double u, leash_scored_token *work,
                           int *token, float *logprob) {
    double lse;
    cr_assert_eq(leash_logsumexp(logits, V, sc->temperature, &lse), 0);
    double inv_t = 1.0 / sc->temperature;
    if (!((sc->top_k > 0 && sc->top_k < V) || sc->top_p < 1.0f)) { // no truncation: inverse CDF in id order
        double c = 0.0;
        int pick = V - 1;
        for (int v = 0; v < V; v++) {
            c += exp(logits[v] * inv_t - lse);
            if (u < c) {
                pick = v;
                break;
            }
        }
        *token = pick;
        *logprob = (float)(logits[pick] * inv_t - lse);
        return;
    }
    for (int v = 0; v < V; v++) work[v] = (leash_scored_token){logits[v], v};
    qsort(work, V, sizeof *work, by_desc);
    int keep = sc->top_k > 0 && sc->top_k < V ? sc->top_k : V;
    double kept_mass = 0.0;
    for (int i = 0; i < keep; i++) {
        kept_mass += exp(logits[work[i].id] * inv_t - lse);
        if (sc->top_p < 1.0f && kept_mass >= sc->top_p) {
            keep = i + 1;
            break;
        }
    }
    double target = u * kept_mass, c = 0.0;
    int pick = work[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        c += exp(logits[work[i].id] * inv_t - lse);
        if (target < c) {
            pick = work[i].id;
            break;
        }
    }
    *token = pick;
    *logprob = (float)(logits[pick] * inv_t - lse - log(kept_mass));
}

/* Logits with ties: a quarter of the rows rounded to a coarse grid, so equal logits are common. */
static void random_logits(leash_rng *rng, float *z, int V, int coarse) {
    for (int v = 0; v < V; v++) {
        double x = 4.0 * (leash_rng_uniform(rng) - 0.5) + (v % 7 == 0 ? 3.0 : 0.0);
        z[v] = coarse ? (float)(round(x * 2) / 2) : (float)x;
    }
}

Test(sample, partial_selection_draws_what_the_full_sort_drew, .timeout = 120) {
    const int Vs[] = {1, 2, 7, 64, 65, 300, 4099};
    const int ks[] = {0, 1, 2, 5, 40, 63, 64, 65, 129, 1000};
    const float ps[] = {1.0f, 0.999f, 0.9f, 0.5f, 0.05f, 1e-6f};
    const float temps[] = {1.0f, 0.7f, 2.5f};
    leash_rng rng;
    leash_rng_seed(&rng, 20, 0);
    long draws = 0;
    for (size_t iv = 0; iv < sizeof Vs / sizeof Vs[0]; iv++) {
        int V = Vs[iv];
        float *z = malloc(V * sizeof *z);
        leash_scored_token *w1 = malloc(V * sizeof *w1), *w2 = malloc(V * sizeof *w2);
        for (int row = 0; row < 6; row++) {
            random_logits(&rng, z, V, row % 4 == 0);
            for (size_t ik = 0; ik < sizeof ks / sizeof ks[0]; ik++)
                for (size_t ip = 0; ip < sizeof ps / sizeof ps[0]; ip++)
                    for (size_t it = 0; it < sizeof temps / sizeof temps[0]; it++) {
                        leash_sample_config sc = leash_sample_defaults();
                        sc.top_k = ks[ik], sc.top_p = ps[ip], sc.temperature = temps[it];
                        for (int d = 0; d < 3; d++) {
                            double u = leash_rng_uniform(&rng);
                            int t1, t2;
                            float l1, l2;
                            sample_by_sort(z, V, &sc, u, w1, &t1, &l1);
                            cr_assert_eq(leash_sample_token(z, V, &sc, u, w2, &t2, &l2), 0);
                            cr_assert(t1 == t2 && memcmp(&l1, &l2, sizeof l1) == 0,
                                      "V %d top-k %d top-p %g T %g u %.17g: the sort drew %d (%.9g), the selection %d (%.9g)",
                                      V, sc.top_k, (double)sc.top_p, (double)sc.temperature, u, t1, (double)l1, t2, (double)l2);
                            draws++;
                        }
                    }
        }
        free(z), free(w1), free(w2);
    }
    printf("sample: %ld draws, tokens and log-probs bit-identical to the full sort\n", draws);
}

Test(sample, partial_selection_is_faster_at_a_real_vocabulary, .timeout = 120) {
    // SmolLM2's 49152 tokens at top-k 50 and top-p 0.9: the time is printed, not asserted (a shared machine)
    const int V = 49152, N = 40;
    float *z = malloc((size_t)V * N * sizeof *z);
    leash_scored_token *w = malloc(V * sizeof *w);
    leash_rng rng;
    leash_rng_seed(&rng, 21, 0);
    for (int n = 0; n < N; n++) random_logits(&rng, z + (size_t)n * V, V, 0);
    const int ks[2] = {50, 0};
    const float ps[2] = {1.0f, 0.9f};
    for (int c = 0; c < 2; c++) {
        leash_sample_config sc = leash_sample_defaults();
        sc.top_k = ks[c], sc.top_p = ps[c];
        double t[2];
        int tok[2][N];
        for (int way = 0; way < 2; way++) {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            for (int n = 0; n < N; n++) {
                float lp;
                if (way == 0) sample_by_sort(z + (size_t)n * V, V, &sc, 0.37, w, &tok[0][n], &lp);
                else cr_assert_eq(leash_sample_token(z + (size_t)n * V, V, &sc, 0.37, w, &tok[1][n], &lp), 0);
            }
            clock_gettime(CLOCK_MONOTONIC, &b);
            t[way] = ((b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec)) / N;
        }
        cr_assert(!memcmp(tok[0], tok[1], sizeof tok[0]), "the two ways drew different tokens");
        printf("sample: V %d top-k %d top-p %g: full sort %.3f ms per token, selection %.3f ms (%.1fx)\n", V, sc.top_k,
               (double)sc.top_p, 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
    }
    free(z), free(w);
}

/* The scorer's truncation: the masked row's log-softmax at T is the sampler's log-prob of what it drew. */
Test(sample, masked_logits_score_what_the_sampler_drew) {
    const int V = 500;
    float z[500], zm[500], lsm[500];
    leash_scored_token w[500];
    leash_rng rng;
    leash_rng_seed(&rng, 22, 0);
    double worst = 0.0;
    for (int row = 0; row < 200; row++) {
        random_logits(&rng, z, V, row % 3 == 0);
        leash_sample_config sc = leash_sample_defaults();
        sc.top_k = row % 2 ? 1 + row % 60 : 0, sc.top_p = row % 5 == 4 ? 1.0f : 0.3f + 0.0035f * row;
        sc.temperature = 0.5f + 0.01f * row;
        if (!leash_sample_filtered(&sc, V)) sc.top_k = 7;
        int tok, outside;
        float lp;
        cr_assert_eq(leash_sample_token(z, V, &sc, leash_rng_uniform(&rng), w, &tok, &lp), 0);
        memcpy(zm, z, sizeof z);
        cr_assert_eq(leash_sample_mask_row(zm, V, &sc, tok, w, &outside), 0);
        cr_assert_eq(outside, 0, "the drawn token %d was masked", tok);
        cr_assert_eq(leash_log_softmax(zm, V, sc.temperature, lsm, NULL), 0);
        double d = fabs((double)lsm[tok] - lp);
        if (d > worst) worst = d;
        cr_assert(d < 2e-6, "row %d: the masked row scores %.9g, the sampler %.9g", row, (double)lsm[tok], (double)lp);
        // the unmasked ids are exactly the top of the order, as many as the sampler keeps
        int kept = 0;
        for (int v = 0; v < V; v++) kept += zm[v] != LEASH_SAMPLE_MASKED;
        for (int v = 0; v < V; v++)
            for (int u = 0; u < V && zm[v] == LEASH_SAMPLE_MASKED; u++)
                if (zm[u] != LEASH_SAMPLE_MASKED)
                    cr_assert(z[u] > z[v] || (z[u] == z[v] && u < v), "row %d: %d kept but %d (before it) masked", row, u, v);
        cr_assert(kept >= 1 && (sc.top_k == 0 || kept <= sc.top_k));
    }
    // a token outside the set is kept all the same, and said
    float one[4] = {5, 4, 0, -3};
    leash_sample_config sc = leash_sample_defaults();
    sc.top_k = 1;
    int outside;
    cr_assert_eq(leash_sample_mask_row(one, 4, &sc, 2, w, &outside), 0);
    cr_assert(outside == 1 && one[0] == 5 && one[2] == 0 && one[1] == LEASH_SAMPLE_MASKED && one[3] == LEASH_SAMPLE_MASKED);
    printf("sample: masked rows score the sampler's log-probs within %.3g\n", worst);
}

/* ---- runs ------------------------------------------------------------------------------------------------ */

typedef struct {
    int steps;
    double first_dev, gap_max, is_min, is_max, is_mean_dev, tis_mean, tis_cut, outside;
    double kl_worst;   /* step 1: max |exact KL - (log pi_trunc - log pi_ref)| per token */
    double kl_first;   /* step 1: the exact KL per sequence */
} watch;

static int on_step(const leash_rl_progress *p, void *ctx) {
    watch *w = ctx;
    const leash_metrics *t = p->metrics;
    if (p->step == 1) {
        w->first_dev = p->first_ratio_dev, w->kl_first = p->kl_exact;
        const leash_rl_batch *b = p->batch;
        for (long i = 0; i < (long)b->rows * b->T; i++)
            if (b->targets[i] >= 0) {
                double d = fabs(b->kl_exact[i] - ((double)b->logp[i] - b->ref_logp[i]));
                if (d > w->kl_worst) w->kl_worst = d;
            }
    }
    double lo = leash_metrics_value(t, "policy/is_ratio_min"), hi = leash_metrics_value(t, "policy/is_ratio_max");
    double mean = leash_metrics_value(t, "policy/is_ratio_mean");
    cr_assert(isfinite(lo) && isfinite(hi) && lo <= mean && mean <= hi, "step %d: is_ratio %g .. %g, mean %g", p->step, lo, hi, mean);
    if (lo < w->is_min) w->is_min = lo;
    if (hi > w->is_max) w->is_max = hi;
    if (fabs(mean - 1) > w->is_mean_dev) w->is_mean_dev = fabs(mean - 1);
    if (p->logprob_gap > w->gap_max) w->gap_max = p->logprob_gap;
    w->tis_mean = leash_metrics_value(t, "policy/tis_weight_mean"), w->tis_cut = leash_metrics_value(t, "policy/tis_cut_frac");
    w->outside = leash_metrics_value(t, "sampling/outside_set");
    w->steps = p->step;
    return 0;
}

static watch run_rl(const rl_scratch *s, leash_rl_algo algo, int epochs, int mb, float tis_cap, int top_k, float top_p) {
    leash_rl_config c = leash_rl_defaults(algo);
    c.policy_dir = s->dir, c.prompts = s->prompts, c.out_dir = s->out, c.reward.kind = LEASH_REWARD_GOLD;
    c.steps = 3, c.batch = algo == LEASH_PPO ? 8 : 2, c.grpo.group = 4, c.max_new = 8, c.seed = 4;
    c.epochs = epochs, c.minibatch = mb, c.optim.lr = 1e-2f, c.tis_cap = tis_cap, c.top_k = top_k, c.top_p = top_p;
    c.sample_every = 0;
    watch w = {.is_min = INFINITY, .is_max = -INFINITY};
    leash_rl_progress fin;
    cr_assert_eq(leash_rl_train(&c, on_step, &w, &fin), 0, "%s", leash_errmsg());
    cr_assert_eq(w.steps, 3);
    return w;
}

Test(offpolicy, is_ratios_show_the_staleness_of_later_updates, .timeout = 180) {
    rl_scratch s;
    rl_scratch_make(&s, "offp");
    // one update per step: the ratio is pi_old / pi_sample, 1 within the sampling-vs-scoring gap
    watch one = run_rl(&s, LEASH_PPO, 1, 0, 0.0f, 0, 1.0f);
    double bound = exp(one.gap_max) - 1 + 1e-6;
    cr_assert(one.is_max - 1 <= bound && 1 - one.is_min <= bound, "one update: is_ratio %.9g .. %.9g, gap %.3g", one.is_min,
              one.is_max, one.gap_max);
    // four epochs of minibatches of 2 at lr 1e-2: the later updates' policy has moved
    watch four = run_rl(&s, LEASH_PPO, 4, 2, 0.0f, 0, 1.0f);
    cr_assert(four.is_max > 1.01 || four.is_min < 0.99, "4 epochs: is_ratio %.6g .. %.6g", four.is_min, four.is_max);
    // truncated IS on: the weights are pi_old / pi_sample, 1 within the gap here, none above a cap of 2
    watch tis = run_rl(&s, LEASH_GRPO, 2, 4, 2.0f, 0, 1.0f);
    cr_assert(fabs(tis.tis_mean - 1) <= exp(tis.gap_max) - 1 + 1e-6 && tis.tis_cut == 0.0, "tis weights %.9g, cut %g",
              tis.tis_mean, tis.tis_cut);
    printf("offpolicy: 1 update: is_ratio %.9g .. %.9g (gap %.3g); 4 epochs x 4 minibatches: %.4f .. %.4f; "
           "GRPO 2 epochs with --tis-cap 2: weight mean %.9g\n",
           one.is_min, one.is_max, one.gap_max, four.is_min, four.is_max, tis.tis_mean);
    rl_scratch_drop(&s);
}

Test(offpolicy, top_k_top_p_runs_start_at_ratio_one, .timeout = 240) {
    rl_scratch s;
    rl_scratch_make(&s, "topp");
    struct {
        leash_rl_algo algo;
        int k;
        float p;
    } cases[] = {{LEASH_PPO, 0, 0.8f}, {LEASH_GRPO, 20, 1.0f}, {LEASH_GRPO, 30, 0.9f}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        watch w = run_rl(&s, cases[i].algo, 2, 0, 0.0f, cases[i].k, cases[i].p);
        // the scorer truncates as the sampler did: log-probs agree to float rounding (the untruncated
        // distribution's would differ by log of the kept mass), and the first update's ratio is exactly 1
        cr_assert_eq(w.first_dev, 0.0, "case %zu: the first minibatch's ratio is off 1 by %g", i, w.first_dev);
        cr_assert(w.gap_max < 1e-4, "case %zu: sampling and scoring log-probs differ by %g", i, w.gap_max);
        // at step 1 the policy is the reference: KL(truncated || whole) = -log(kept mass) = log pi_trunc - log pi_ref
        cr_assert(w.kl_worst < 1e-5, "case %zu: exact KL against log pi_trunc - log pi_ref: off by %g", i, w.kl_worst);
        cr_assert(w.kl_first > 0.01, "case %zu: step 1's exact KL %g: the truncation costs -log(kept mass) > 0", i, w.kl_first);
        cr_assert(w.outside == 0.0, "case %zu: %g sampled tokens outside their scored set", i, w.outside);
        printf("top-k %d top-p %g (%s): first ratio exactly 1, gap %.3g, step 1 exact KL %.4f nats/seq (= -log kept mass, "
               "worst %.2g per token)\n",
               cases[i].k, (double)cases[i].p, cases[i].algo == LEASH_PPO ? "ppo" : "grpo", w.gap_max, w.kl_first, w.kl_worst);
    }
    rl_scratch_drop(&s);
}

/* ---- reference refresh ------------------------------------------------------------------------------------ */

typedef struct {
    int lora;
    size_t n;
    float *policy2, *ref1, *ref3; /* step 2's policy (after its update), step 1's and step 3's reference */
    double kl[4], syncs[4];
} refwatch;

/* The reference's weights as the step's callback sees them (the LoRA reference is the policy's base). */
static const float *ref_weights(const leash_rl_batch *b, size_t *n) {
    leash_gpt *m = (leash_gpt *)(b->ref ? b->ref : b->policy);
    *n = leash_gpt_num_params(m);
    return leash_gpt_params(m);
}

static int on_ref_step(const leash_rl_progress *p, void *ctx) {
    refwatch *w = ctx;
    size_t n;
    const float *ref = ref_weights(p->batch, &n);
    w->n = n;
    if (p->step <= 4) w->kl[p->step - 1] = p->kl_exact, w->syncs[p->step - 1] = leash_metrics_value(p->metrics, "ref/syncs");
    float **keep = p->step == 1 ? &w->ref1 : p->step == 3 ? &w->ref3 : NULL;
    if (keep) {
        *keep = malloc(n * sizeof(float));
        memcpy(*keep, ref, n * sizeof(float));
    }
    if (p->step == 2) {
        w->policy2 = malloc(n * sizeof(float));
        memcpy(w->policy2, leash_gpt_params((leash_gpt *)p->batch->policy), n * sizeof(float));
    }
    return 0;
}

static leash_rl_config ref_config(const rl_scratch *s, leash_rl_algo algo, int lora, float alpha) {
    leash_rl_config c = leash_rl_defaults(algo);
    c.policy_dir = s->dir, c.prompts = s->prompts, c.out_dir = s->out, c.reward.kind = LEASH_REWARD_GOLD;
    c.steps = 4, c.batch = algo == LEASH_PPO ? 4 : 2, c.grpo.group = 3, c.max_new = 6, c.seed = 9, c.optim.lr = 1e-2f;
    c.sample_every = 0, c.lora_rank = lora ? 2 : 0, c.ref_sync_every = 2, c.ref_sync_alpha = alpha;
    return c;
}

Test(refsync, polyak_mix_every_n_steps, .timeout = 180) {
    rl_scratch s;
    rl_scratch_make(&s, "refsync");
    for (int lora = 0; lora < 2; lora++) {
        float alpha = lora ? 1.0f : 0.6f;
        leash_rl_config c = ref_config(&s, LEASH_PPO, lora, alpha);
        refwatch w = {.lora = lora};
        cr_assert_eq(leash_rl_train(&c, on_ref_step, &w, NULL), 0, "%s", leash_errmsg());
        // the step-3 reference is alpha x step 2's policy + (1 - alpha) x the SFT model, as computed here
        double worst = 0.0;
        size_t moved = 0;
        for (size_t i = 0; i < w.n; i++) {
            double a = alpha, want = lora ? w.ref1[i] : (float)(a * w.policy2[i] + (1.0 - a) * w.ref1[i]);
            double d = fabs(w.ref3[i] - want);
            if (!lora && d > worst) worst = d;
            moved += w.ref3[i] != w.ref1[i];
        }
        if (!lora) cr_assert_eq(worst, 0.0, "Polyak mix off by %g", worst);
        cr_assert(moved > 0, "the reference did not move");
        cr_assert(w.syncs[0] == 0 && w.syncs[1] == 0 && w.syncs[2] == 1 && w.syncs[3] == 1, "ref/syncs %g %g %g %g", w.syncs[0],
                  w.syncs[1], w.syncs[2], w.syncs[3]);
        cr_assert_eq(w.kl[0], 0.0);
        cr_assert(w.kl[1] > 0, "step 2's KL %g", w.kl[1]);
        // alpha 1 (LoRA: merged): the reference is the policy of step 3's rollout, so its KL is 0 to rounding
        if (lora) cr_assert(fabs(w.kl[2]) < 1e-4 * w.kl[1] + 1e-9, "after the merge the KL is %g (step 2: %g)", w.kl[2], w.kl[1]);
        else cr_assert(w.kl[2] < w.kl[1], "after the mix the KL %g did not fall below step 2's %g", w.kl[2], w.kl[1]);
        printf("refsync %s alpha %g: %zu of %zu weights moved, mix exact (worst %g); exact KL per step %.5f %.5f %.5f %.5f\n",
               lora ? "LoRA" : "full", (double)alpha, moved, w.n, worst, w.kl[0], w.kl[1], w.kl[2], w.kl[3]);
        free(w.policy2), free(w.ref1), free(w.ref3);
    }
    // LoRA below alpha 1 is refused, saying why
    leash_rl_config c = ref_config(&s, LEASH_GRPO, 1, 0.5f);
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "--ref-sync-alpha 0.5 with LoRA") && strstr(leash_errmsg(), "give --ref-sync-alpha 1"),
              "%s", leash_errmsg());
    rl_scratch_drop(&s);
}

/* A refreshed reference is in the checkpoint: 3 steps then --resume to 4 equals 4 steps straight. */
Test(refsync, resume_restores_the_refreshed_reference, .timeout = 240) {
    rl_scratch s;
    rl_scratch_make(&s, "refresume");
    char cmd[1024], a[200], b[200];
    for (int lora = 0; lora < 2; lora++) {
        leash_rl_config c = ref_config(&s, LEASH_PPO, lora, lora ? 1.0f : 0.6f);
        snprintf(a, sizeof a, "%s/straight%d", s.dir, lora), snprintf(b, sizeof b, "%s/resumed%d", s.dir, lora);
        c.out_dir = a;
        cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
        c.out_dir = b, c.steps = 3;
        cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
        snprintf(cmd, sizeof cmd, "test -f %s/checkpoint/reference.safetensors", b);
        cr_assert_eq(system(cmd), 0, "no reference in the checkpoint of step 3");
        c.steps = 4, c.resume = 1;
        cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
        // the same policy bytes, the same reference, and the same metrics but for the clock
        const char *model = lora ? "adapter_model.safetensors" : "model.safetensors";
        snprintf(cmd, sizeof cmd, "cmp %s/policy/%s %s/policy/%s && cmp %s/checkpoint/reference.safetensors "
                                  "%s/checkpoint/reference.safetensors", a, model, b, model, a, b);
        cr_assert_eq(system(cmd), 0, "%s run: resumed at step 3 differs from straight (%s)", lora ? "LoRA" : "full", cmd);
        snprintf(cmd, sizeof cmd, "for d in %s %s; do sed -e 's/, \"time[^,]*//g' -e 's/, \"tokens_per_s[^,]*//' "
                                  "$d/metrics.jsonl > $d/m.txt; done; cmp %s/m.txt %s/m.txt", a, b, a, b);
        cr_assert_eq(system(cmd), 0, "%s run: metrics differ (%s)", lora ? "LoRA" : "full", cmd);
        printf("refsync %s: 3 steps + --resume to 4 = 4 steps straight (policy, reference, metrics)\n", lora ? "LoRA" : "full");
        // without the reference in the checkpoint the resume would score against the SFT model: refuse
        snprintf(cmd, sizeof cmd, "rm %s/checkpoint/reference.safetensors", b);
        cr_assert_eq(system(cmd), 0);
        c.steps = 5;
        cr_assert_neq(leash_rl_train(&c, NULL, NULL, NULL), 0);
        cr_assert(strstr(leash_errmsg(), "refreshed reference"), "%s", leash_errmsg());
    }
    rl_scratch_drop(&s);
}

/* ---- the options through the CLI ------------------------------------------------------------------------ */

Test(offpolicy, cli_options_reach_the_run_and_define_it, .timeout = 180) {
    rl_scratch s;
    rl_scratch_make(&s, "offcli");
    char cmd[2048], out[8192];
    const char *opts = "--top-k 20 --top-p 0.9 --tis-cap 2 --tis-mode sequence_mask --ref-sync-every 1 --ref-sync-alpha 0.5";
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --prompts %s --out %s --gold-reward --steps 2 --batch 2 --group 3 "
                              "--max-new 6 -q %s", LEASH_BIN, s.dir, s.prompts, s.out, opts);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s\n%s", cmd, out);
    // every option landed: its metrics are logged and the checkpoint records it
    snprintf(cmd, sizeof cmd, "grep '\"sampling/outside_set\": 0' %s/metrics.jsonl | grep '\"policy/tis_weight_mean\"' | "
                              "grep '\"policy/tis_cut_frac\"' | grep -c '\"ref/syncs\"' && grep -q '\"tis_mode\":.*\"sequence_mask\"' %s/checkpoint/state.json && "
                              "grep -q '\"top_k\":.*20' %s/checkpoint/state.json && grep -q '\"ref_sync_alpha\":.*0.5' "
                              "%s/checkpoint/state.json && test -f %s/checkpoint/reference.safetensors",
             s.out, s.out, s.out, s.out, s.out);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 0, "%s\n%s", cmd, out);
    cr_assert(!strncmp(out, "2\n", 2), "metrics lines with the options' keys: %s", out);
    // they define the run: a resume with another cap is refused, naming the option
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --prompts %s --out %s --gold-reward --steps 3 --batch 2 --group 3 "
                              "--max-new 6 -q --top-k 20 --top-p 0.9 --tis-cap 3 --tis-mode sequence_mask --ref-sync-every 1 "
                              "--ref-sync-alpha 0.5 --resume", LEASH_BIN, s.dir, s.prompts, s.out);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "--tis-cap 2") && strstr(out, "asks for 3"), "%s", out);
    // a mode that is not TRL's is refused before anything runs
    snprintf(cmd, sizeof cmd, "%s ppo --policy %s --prompts %s --out %s/x --gold-reward --tis-mode sequence", LEASH_BIN, s.dir,
             s.prompts, s.dir);
    cr_assert_eq(run_capture(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "token_truncate (the default), token_mask, sequence_truncate or sequence_mask"), "%s", out);
    rl_scratch_drop(&s);
}
