/* The rollout path at batch size (issue 20): the prefill multiplies only each sequence's last column by the LM
 * head, and those logits are the full forward's last column bit for bit; sequences are sampled in parallel and
 * draw the same tokens and log-probs, bit for bit, on 1 thread as on several, with top-k / top-p on and off. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/sample.h"

/* A small Llama-family model (grouped-query attention, untied head) or a GPT-2, random weights; a vocabulary big
 * enough that top-p selects in more than one chunk. */
static leash_gpt *model(int llama) {
    leash_gpt_config cfg = {.vocab_size = 700, .n_positions = 64, .n_embd = 32, .n_layer = 2, .n_head = 4,
                            .bos_token_id = 0, .eos_token_id = 1, .layer_norm_epsilon = 1e-5f};
    if (llama) cfg.arch = LEASH_ARCH_LLAMA, cfg.n_kv_head = 2, cfg.n_inner = 48, cfg.untied_head = 1, cfg.rope_theta = 1e4f;
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 11);
    return m;
}

static void prefill_matches(int llama) {
    leash_gpt *m = model(llama);
    enum { B = 5, Tp = 9, V = 700 };
    int tokens[B * Tp];
    uint8_t mask[B * Tp];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tp; t++) // left padding of b tokens
            tokens[b * Tp + t] = (7 * b + 13 * t + 1) % V, mask[b * Tp + t] = t >= b;
    leash_kv_cache *kv;
    cr_assert_eq(leash_kv_cache_create(&kv, m, B, Tp + 4), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_prefill(m, kv, tokens, mask, Tp), 0, "%s", leash_errmsg());
    float *got = malloc((size_t)B * V * sizeof(float));
    memcpy(got, leash_kv_cache_logits(kv), (size_t)B * V * sizeof(float));
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, Tp), 0, "%s", leash_errmsg());
    const float *full = leash_gpt_logits(m);
    double worst = 0.0;
    int differ = 0;
    for (int b = 0; b < B; b++)
        for (int v = 0; v < V; v++) {
            float a = got[b * V + v], w = full[((size_t)b * Tp + Tp - 1) * V + v];
            differ += memcmp(&a, &w, sizeof a) != 0;
            worst = fmax(worst, fabs((double)a - w));
        }
    printf("decode: prefill logits against the full forward's last column (%s): %d of %d differ, worst %.3g\n",
           llama ? "llama" : "gpt2", differ, B * V, worst);
    cr_assert_eq(differ, 0, "%d logits differ from the full forward's (worst %g)", differ, worst);
    free(got);
    leash_kv_cache_free(kv);
    leash_gpt_free(m);
}
Test(decode, prefill_logits_are_the_full_forwards_last_column) { prefill_matches(0); }
Test(decode, llama_prefill_logits_are_the_full_forwards_last_column) { prefill_matches(1); }

Test(decode, parallel_sampling_draws_as_one_thread_does) {
    leash_gpt *m = model(1);
    enum { B = 12, M = 10 };
    int prompts[B * 3], lens[B];
    for (int i = 0; i < B * 3; i++) prompts[i] = (5 * i + 2) % 700;
    for (int b = 0; b < B; b++) lens[b] = 3;
    const struct {
        int k;
        float p, t;
    } cases[] = {{0, 1.0f, 1.0f}, {0, 0.9f, 1.3f}, {20, 1.0f, 0.8f}, {50, 0.7f, 1.0f}};
    int max_threads = omp_get_max_threads() > 1 ? omp_get_max_threads() : 2;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        leash_sample_config sc = leash_sample_defaults();
        sc.max_new_tokens = M, sc.seed = 5, sc.eos_id = 1;
        sc.top_k = cases[c].k, sc.top_p = cases[c].p, sc.temperature = cases[c].t;
        int tok[2][B * M], len[2][B];
        float lp[2][B * M];
        for (int run = 0; run < 2; run++) {
            omp_set_num_threads(run ? max_threads : 1);
            cr_assert_eq(leash_generate(m, &sc, prompts, lens, B, NULL, tok[run], lp[run], len[run]), 0, "%s",
                         leash_errmsg());
        }
        omp_set_num_threads(max_threads);
        cr_assert(!memcmp(tok[0], tok[1], sizeof tok[0]) && !memcmp(len[0], len[1], sizeof len[0]),
                  "case %zu: tokens differ between 1 and %d threads", c, max_threads);
        cr_assert(!memcmp(lp[0], lp[1], sizeof lp[0]), "case %zu: log-probs differ between 1 and %d threads", c,
                  max_threads);
    }
    leash_gpt_free(m);
}
