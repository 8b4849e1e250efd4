/* BF16 compute for frozen models (src/matmul_bf16.c): the product against a double-precision product of the same
 * BF16 values, whole models against their F32 path, a frozen model's LM head in BF16 (its logits, prefill and
 * decode), and the reference of a BF16 checkpoint still at KL 0.
 * Skipped, with the reason, on a CPU without AVX512_BF16 (there every product is F32 and the rest of the suite
 * covers it). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/gpt_internal.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/ops.h"
#include "leash/rl.h"
#include "leash/rng.h"
#include "testutil.h"

static int need_bf16(void) {
    if (leash_bf16_compute_available()) return 1;
    cr_skip_test("this CPU has no AVX512_BF16 (or oneDNN has no BF16 kernel for it): frozen models multiply in F32");
    return 0;
}

static float bf(float x) { // x rounded to BF16, back as a float
    uint32_t u = (uint32_t)leash_bf16_round(x) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* One shape, both weight layouts, with and without a bias, into an output of row stride ldo > OC. Each output is
 * compared with the double-precision sum of the products of the BF16-rounded input and weight: they may differ by
 * FP32 summation alone, |d| <= C 2^-24 sum_k |x_k w_k| (+ |bias| 2^-24). And with the F32 product of the unrounded
 * input: the input's rounding adds at most 2^-9 sum_k |x_k w_k|. */
static void check_shape(int N, int C, int OC, int out_in, int with_bias) {
    int ldo = OC + 3;
    leash_rng rng;
    leash_rng_seed(&rng, 7, (uint64_t)(N * 131 + C * 7 + OC + out_in * 2 + with_bias));
    float *x = malloc((size_t)N * C * sizeof *x), *bias = malloc(OC * sizeof *bias);
    float *out = malloc((size_t)N * ldo * sizeof *out);
    uint16_t *w = malloc((size_t)C * OC * sizeof *w);
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] = (float)leash_rng_normal(&rng);
    for (size_t i = 0; i < (size_t)C * OC; i++) w[i] = leash_bf16_round((float)(0.1 * leash_rng_normal(&rng)));
    for (int o = 0; o < OC; o++) bias[o] = (float)leash_rng_normal(&rng);
    for (size_t i = 0; i < (size_t)N * ldo; i++) out[i] = 12345.0f; // the gap between rows must stay untouched
    leash_linear_forward_bf16(out, ldo, x, w, with_bias ? bias : NULL, N, C, OC, out_in);
    double worst = 0, worst_f32 = 0;
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double s = with_bias ? bias[o] : 0, s32 = s, mag = 0;
            for (int k = 0; k < C; k++) {
                uint32_t u = (uint32_t)w[out_in ? (size_t)o * C + k : (size_t)k * OC + o] << 16;
                float wk;
                memcpy(&wk, &u, 4);
                s += (double)bf(x[(size_t)n * C + k]) * wk, s32 += (double)x[(size_t)n * C + k] * wk;
                mag += fabs((double)x[(size_t)n * C + k] * wk);
            }
            double d = fabs(out[(size_t)n * ldo + o] - s), tol = C * ldexp(mag + fabs(s), -24) + 1e-30;
            double d32 = fabs(out[(size_t)n * ldo + o] - s32), tol32 = ldexp(mag, -9) * 1.01 + tol;
            if (d / tol > worst) worst = d / tol;
            if (d32 / tol32 > worst_f32) worst_f32 = d32 / tol32;
        }
        for (int o = OC; o < ldo && n < N - 1; o++) cr_assert_eq(out[(size_t)n * ldo + o], 12345.0f, "row gap written");
    }
    cr_log_info("N %d C %d OC %d %s%s: worst |diff| / bound %.3f against the BF16 values in double, %.3f against F32", N,
                C, OC, out_in ? "(OC, C)" : "(C, OC)", with_bias ? " + bias" : "", worst, worst_f32);
    cr_assert(worst <= 1.0, "beyond FP32 summation of the BF16 products: %.3f of the bound", worst);
    cr_assert(worst_f32 <= 1.0, "beyond BF16 rounding of the input: %.3f of the bound", worst_f32);
    free(x), free(bias), free(out), free(w);
}

Test(bf16_compute, the_product_is_the_bf16_values_summed_in_fp32) {
    if (!need_bf16()) return;
    for (int out_in = 0; out_in <= 1; out_in++)
        for (int with_bias = 0; with_bias <= 1; with_bias++) {
            check_shape(37, 96, 80, out_in, with_bias);
            check_shape(1, 576, 192, out_in, with_bias); // a decoding step at SmolLM2's k/v width
        }
    check_shape(300, 128, 512, 0, 1);
}

/* A frozen model in BF16: logits with BF16 compute on against its F32 path (the same BF16 weights converted to
 * F32, as before BF16 compute), which must equal a model whose F32 weights were rounded to BF16 beforehand, bit
 * for bit. The BF16 path rounds each projection's input to BF16 (2^-9 relative), so log-probs move by a few
 * thousandths of a nat at these sizes: bound 0.02 nats; and the two paths must differ (BF16 was used). */
static void model_check(leash_gpt_config cfg, const char *name) {
    leash_gpt *m, *r;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 5);
    cr_assert_eq(leash_gpt_create(&r, &cfg), 0);
    memcpy(leash_gpt_params(r), leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float));
    for (int i = 0; i < leash_gpt_num_tensors(r); i++) { // the layer weights rounded as store_bf16 rounds them
        const leash_tensor_info *t = leash_gpt_tensor(r, i);
        if (strstr(t->name, "h.") == t->name || strstr(t->name, "model.layers."))
            for (size_t k = 0; k < t->numel; k++) leash_gpt_params(r)[t->offset + k] = bf(leash_gpt_params(r)[t->offset + k]);
    }
    leash_gpt_freeze(m), leash_gpt_freeze(r);
    cr_assert_eq(leash_gpt_store_bf16(m), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_set_bf16_compute(m, 1), 1);
    enum { B = 3, T = 16 };
    int tokens[B * T];
    uint8_t mask[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 37 + 11) % cfg.vocab_size, mask[i] = !(i / T == 2 && i % T < 4);
    size_t n = (size_t)B * T * cfg.vocab_size;
    float *on = malloc(n * sizeof *on), *off = malloc(n * sizeof *off), lp_on[B * T], lp_off[B * T];
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, T), 0, "%s", leash_errmsg());
    memcpy(on, leash_gpt_logits(m), n * sizeof *on);
    cr_assert_eq(leash_gpt_token_logprobs(m, tokens, 1.0f, lp_on, NULL), 0);
    cr_assert_eq(leash_gpt_set_bf16_compute(m, 0), 0);
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, T), 0);
    memcpy(off, leash_gpt_logits(m), n * sizeof *off);
    cr_assert_eq(leash_gpt_token_logprobs(m, tokens, 1.0f, lp_off, NULL), 0);
    cr_assert_eq(leash_gpt_forward(r, tokens, mask, B, T), 0);
    cr_assert_eq(memcmp(off, leash_gpt_logits(r), n * sizeof *off), 0, "%s: BF16 compute off is not the F32 path", name);
    double dl = 0, dp = 0, scale = 0;
    for (size_t i = 0; i < n; i++) dl = fmax(dl, fabs(on[i] - off[i])), scale = fmax(scale, fabs(off[i]));
    for (int i = 0; i < B * T; i++)
        if (mask[i]) dp = fmax(dp, fabs(lp_on[i] - lp_off[i]));
    cr_log_info("%s: BF16 compute against F32: worst |logit diff| %.2e (largest logit %.2f), |log-prob diff| %.2e nats",
                name, dl, scale, dp);
    cr_assert(dl > 0, "%s: BF16 compute gave the F32 logits bit for bit: it did not run", name);
    cr_assert(dp <= 0.02, "%s: log-probs %.3g nats from the F32 path", name, dp);
    free(on), free(off);
    leash_gpt_free(m), leash_gpt_free(r);
}

Test(bf16_compute, models_agree_with_their_f32_path_within_bf16_error) {
    if (!need_bf16()) return;
    leash_gpt_config gpt2 = {.vocab_size = 96, .n_positions = 32, .n_embd = 64, .n_layer = 2, .n_head = 4,
                             .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    model_check(gpt2, "GPT-2");
    leash_gpt_config llama = {.vocab_size = 96, .n_positions = 32, .n_embd = 64, .n_layer = 2, .n_head = 4,
                              .n_kv_head = 2, .n_inner = 96, .arch = LEASH_ARCH_LLAMA, .bos_token_id = -1,
                              .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    model_check(llama, "Llama (GQA)");
}

/* A frozen model can keep its LM head in BF16 too (leash_gpt_store_head_bf16; a LoRA base cannot): each logit is the
 * FP32 sum of the BF16-rounded final-norm output times the BF16 head (checked against that sum in double within
 * FP32 summation, and away from the F32 head's product, so the BF16 head ran); the prefill's logits are the
 * forward's last column and a decode step's agree with a forward over one more token, within FP32 summation. */
Test(bf16_compute, a_frozen_models_lm_head_multiplies_in_bf16) {
    if (!need_bf16()) return;
    leash_gpt_config cfg = {.vocab_size = 200, .n_positions = 32, .n_embd = 64, .n_layer = 2, .n_head = 4,
                            .n_kv_head = 2, .n_inner = 96, .arch = LEASH_ARCH_LLAMA, .bos_token_id = -1,
                            .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    enum { B = 2, T = 9, C = 64, V = 200 };
    leash_gpt *m, *base, *lora;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 3);
    leash_gpt_freeze(m);
    cr_assert_neq(leash_gpt_store_head_bf16(m), 0, "a BF16 head without BF16 storage");
    cr_assert_eq(leash_gpt_store_bf16(m), 0, "%s", leash_errmsg());
    size_t before = leash_gpt_memory_bytes(m);
    cr_assert_eq(leash_gpt_store_head_bf16(m), 0, "%s", leash_errmsg());
    cr_assert(m->head_bf16 && m->bf16_compute, "the frozen model's head is not in BF16");
    cr_assert_eq(leash_gpt_memory_bytes(m), before + (size_t)V * C * 2, "the BF16 head's bytes are not counted");
    cr_assert_eq(leash_gpt_create(&base, &cfg), 0);
    leash_lora_config lc = {.rank = 2, .alpha = 4.0f, .targets = LEASH_LORA_Q | LEASH_LORA_V};
    cr_assert_eq(leash_gpt_add_lora(&lora, base, &lc, 1), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_store_bf16(lora), 0, "%s", leash_errmsg());
    cr_assert_neq(leash_gpt_store_head_bf16(lora), 0, "a LoRA base's head (the policy's) went BF16");
    cr_assert(strstr(leash_errmsg(), "trainable"), "%s", leash_errmsg());
    int tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 53 + 7) % V;
    cr_assert_eq(leash_gpt_forward(m, tokens, NULL, B, T), 0, "%s", leash_errmsg());
    static float logits[B * T * V], last[B * V], step[B * V];
    memcpy(logits, leash_gpt_logits(m), sizeof logits);
    const float *lnf = m->a.lnf, *w = leash_gpt_head_weight(m);
    double worst = 0, away = 0;
    for (int n = 0; n < B * T; n++)
        for (int v = 0; v < V; v++) {
            double s = 0, s32 = 0, mag = 0;
            for (int c = 0; c < C; c++) {
                double x = lnf[(size_t)n * C + c];
                s += (double)bf((float)x) * bf(w[(size_t)v * C + c]), s32 += x * w[(size_t)v * C + c];
                mag += fabs(x * w[(size_t)v * C + c]);
            }
            double tol = C * ldexp(mag + fabs(s), -24) + 1e-30;
            worst = fmax(worst, fabs(logits[(size_t)n * V + v] - s) / tol);
            away = fmax(away, fabs(logits[(size_t)n * V + v] - s32) / tol);
        }
    cr_log_info("BF16 LM head: worst |logit - BF16 sum| %.3f of FP32 summation's bound; from the F32 head up to %.0fx it",
                worst, away);
    cr_assert(worst <= 1.0, "the head's logits are not the BF16 products summed in FP32: %.3f of the bound", worst);
    cr_assert(away > 1.0, "the logits are the F32 head's: the BF16 head did not run");
    // the prefill's logits: the forward's last column; a decode step: a forward over one more token
    leash_kv_cache *kv;
    cr_assert_eq(leash_kv_cache_create(&kv, m, B, T + 1), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_prefill(m, kv, tokens, NULL, T), 0, "%s", leash_errmsg());
    memcpy(last, leash_kv_cache_logits(kv), sizeof last);
    int next[B] = {5, 77}, longer[B * (T + 1)];
    cr_assert_eq(leash_gpt_decode_step(m, kv, next), 0, "%s", leash_errmsg());
    memcpy(step, leash_kv_cache_logits(kv), sizeof step);
    for (int b = 0; b < B; b++) {
        memcpy(longer + b * (T + 1), tokens + b * T, T * sizeof(int));
        longer[b * (T + 1) + T] = next[b];
    }
    static float full[B * (T + 1) * V];
    double d_prefill = 0, d_step = 0, big = 0;
    for (int b = 0; b < B; b++)
        for (int v = 0; v < V; v++) {
            d_prefill = fmax(d_prefill, fabs(last[b * V + v] - logits[((size_t)b * T + T - 1) * V + v]));
            big = fmax(big, fabs(logits[((size_t)b * T + T - 1) * V + v]));
        }
    cr_assert_eq(leash_gpt_forward(m, longer, NULL, B, T + 1), 0, "%s", leash_errmsg());
    memcpy(full, leash_gpt_logits(m), sizeof full);
    for (int b = 0; b < B; b++)
        for (int v = 0; v < V; v++) d_step = fmax(d_step, fabs(step[b * V + v] - full[((size_t)b * (T + 1) + T) * V + v]));
    cr_log_info("BF16 LM head: prefill against the forward's last column %.2e, a decode step against a longer forward "
                "%.2e (largest logit %.2f)", d_prefill, d_step, big);
    cr_assert(d_prefill <= 1e-5 * big && d_step <= 1e-4 * big, "prefill %g, decode %g from the forward", d_prefill, d_step);
    leash_kv_cache_free(kv);
    leash_gpt_free(m), leash_gpt_free(lora), leash_gpt_free(base);
}

static double kl_step1;
static int first_kl(const leash_rl_progress *p, void *ctx) {
    (void)ctx;
    if (p->step == 1) kl_step1 = p->kl_exact;
    return 0;
}
static double reward_len(const char *prompt, const char *response, const int *ids, int n, void *ctx) {
    (void)prompt, (void)response, (void)ids, (void)ctx;
    return n / 6.0;
}

/* Full fine-tuning from a checkpoint whose weights are BF16 values, with --frozen-bf16: the reference (the
 * policy's own checkpoint) keeps F32 products, so KL is exactly 0 at step 1, as before BF16 compute. The same
 * checkpoint named as --ref gets BF16 compute: its KL at step 1 is small but not 0 (what the rule prevents). */
Test(bf16_compute, a_bf16_checkpoints_reference_starts_at_kl_0, .timeout = 120) {
    if (!need_bf16()) return;
    rl_scratch w;
    rl_scratch_make(&w, "bf16-kl");
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, w.dir), 0, "%s", leash_errmsg());
    float *p = leash_gpt_params(m);
    for (size_t k = 0; k < leash_gpt_num_params(m); k++) p[k] = bf(p[k]);
    cr_assert_eq(leash_gpt_save(m, w.dir), 0, "%s", leash_errmsg());
    leash_gpt_free(m);
    double kl[2];
    char out2[160];
    snprintf(out2, sizeof out2, "%s/run-ref", w.dir);
    for (int named = 0; named <= 1; named++) {
        leash_rl_config c = leash_rl_defaults(LEASH_PPO);
        c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_FUNCTION;
        c.reward.fn = reward_len, c.steps = 1, c.batch = 8, c.max_new = 6, c.sample_every = 0, c.frozen_bf16 = 1;
        c.out_dir = named ? out2 : w.out, c.ref_dir = named ? w.dir : NULL;
        kl_step1 = -1;
        cr_assert_eq(leash_rl_train(&c, first_kl, NULL, NULL), 0, "%s", leash_errmsg());
        kl[named] = kl_step1;
    }
    cr_log_info("exact KL at step 1: %g (reference = the policy's checkpoint), %g (the same named as --ref)", kl[0], kl[1]);
    cr_assert_eq(kl[0], 0.0, "KL at step 1 is %g, not exactly 0", kl[0]);
    cr_assert(kl[1] > 0 && kl[1] < 1e-2, "the BF16-compute reference: KL %g at step 1", kl[1]);
    rl_scratch_drop(&w);
}
