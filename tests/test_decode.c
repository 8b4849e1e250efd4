/* The rollout path at batch size (issue 20): the prefill multiplies only each sequence's last column by the LM
 * head, and those logits are the full forward's last column bit for bit; sequences are sampled in parallel and
 * draw the same tokens and log-probs, bit for bit, on 1 thread as on several, with top-k / top-p on and off;
 * sequences that stop leave the batch (leash_kv_cache_keep) and the others draw what a batch that keeps every
 * row would. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/rng.h"
#include "leash/sample.h"

/* A small Llama-family model (grouped-query attention, untied head) or a GPT-2, random weights; a vocabulary big
 * enough that top-p selects in more than one chunk. */
static leash_gpt *model(int llama, int V) {
    leash_gpt_config cfg = {.vocab_size = V, .n_positions = 64, .n_embd = 32, .n_layer = 2, .n_head = 4,
                            .bos_token_id = 0, .eos_token_id = 1, .layer_norm_epsilon = 1e-5f};
    if (llama) cfg.arch = LEASH_ARCH_LLAMA, cfg.n_kv_head = 2, cfg.n_inner = 48, cfg.untied_head = 1, cfg.rope_theta = 1e4f;
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 11);
    return m;
}

static void prefill_matches(int llama) {
    leash_gpt *m = model(llama, 700);
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
    leash_gpt *m = model(1, 700);
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

/* Generation as before leash_kv_cache_keep, written out here: every row fed at every step (a stopped sequence
 * feeds its EOS), each sequence sampled from its own stream (seed, b) until it stops. */
static void generate_all_rows(leash_gpt *m, const leash_sample_config *sc, const int *prompts, int Tp, int B, int *out,
                              float *lps, int *lens) {
    int M = sc->max_new_tokens, V = leash_gpt_cfg(m)->vocab_size, cur[16], done[16] = {0};
    leash_rng rng[16];
    leash_scored_token *work = malloc((size_t)V * sizeof *work);
    leash_kv_cache *kv;
    cr_assert_eq(leash_kv_cache_create(&kv, m, B, Tp + M), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_prefill(m, kv, prompts, NULL, Tp), 0, "%s", leash_errmsg());
    for (int b = 0; b < B; b++) leash_rng_seed(&rng[b], sc->seed, (uint64_t)b), lens[b] = M;
    for (int i = 0; i < M; i++) {
        for (int b = 0; b < B; b++) {
            int tok = sc->eos_id;
            float lp = 0.0f;
            double u = leash_rng_uniform(&rng[b]);
            if (!done[b]) {
                cr_assert_eq(leash_sample_token(leash_kv_cache_logits(kv) + (size_t)b * V, V, sc, u, work, &tok, &lp), 0);
                if (tok == sc->eos_id) done[b] = 1, lens[b] = i + 1;
            }
            out[b * M + i] = tok, lps[b * M + i] = lp, cur[b] = tok;
        }
        if (i < M - 1) cr_assert_eq(leash_gpt_decode_step(m, kv, cur), 0, "%s", leash_errmsg());
    }
    leash_kv_cache_free(kv);
    free(work);
}

static void stopped_sequences_leave(int llama) {
    leash_gpt *m = model(llama, 40); // 40 ids at temperature 1.5: EOS comes about once in 40 draws
    enum { B = 9, Tp = 4, M = 30 };
    int prompts[B * Tp];
    for (int i = 0; i < B * Tp; i++) prompts[i] = (3 * i + 2) % 40;
    leash_sample_config sc = leash_sample_defaults();
    sc.max_new_tokens = M, sc.seed = 3, sc.eos_id = 5, sc.temperature = 1.5f;
    int lens[B], want[B * M], want_lens[B], got[B * M], got_lens[B];
    float want_lp[B * M], got_lp[B * M];
    for (int b = 0; b < B; b++) lens[b] = Tp;
    generate_all_rows(m, &sc, prompts, Tp, B, want, want_lp, want_lens);
    cr_assert_eq(leash_generate(m, &sc, prompts, lens, B, NULL, got, got_lp, got_lens), 0, "%s", leash_errmsg());
    int differ = 0, stopped = 0;
    for (int b = 0; b < B; b++) {
        stopped += want_lens[b] < M;
        cr_assert_eq(got_lens[b], want_lens[b], "sequence %d: %d tokens, every row kept %d", b, got_lens[b], want_lens[b]);
        for (int i = 0; i < M; i++) differ += got[b * M + i] != want[b * M + i] || memcmp(&got_lp[b * M + i], &want_lp[b * M + i], sizeof(float));
    }
    printf("decode: %s, %d of %d sequences stop early (lengths", llama ? "llama" : "gpt2", stopped, B);
    for (int b = 0; b < B; b++) printf(" %d", want_lens[b]);
    printf("); %d of %d tokens or log-probs differ from the batch that keeps every row\n", differ, B * M);
    cr_assert(stopped >= 3 && stopped < B, "the test needs sequences that stop at different steps (%d of %d stopped)",
              stopped, B);
    cr_assert_eq(differ, 0, "%d tokens or log-probs differ", differ);
    leash_gpt_free(m);
}
Test(decode, stopped_sequences_leave_the_batch_and_the_others_draw_the_same) { stopped_sequences_leave(0); }
Test(decode, llama_stopped_sequences_leave_the_batch_and_the_others_draw_the_same) { stopped_sequences_leave(1); }

Test(decode, keep_refuses_bad_rows) {
    leash_gpt *m = model(0, 700);
    leash_kv_cache *kv;
    cr_assert_eq(leash_kv_cache_create(&kv, m, 4, 8), 0);
    const int dup[] = {0, 0}, out_of[] = {1, 4}, ok[] = {1, 3};
    cr_assert_neq(leash_kv_cache_keep(kv, dup, 2), 0, "repeated rows are refused");
    cr_assert_neq(leash_kv_cache_keep(kv, out_of, 2), 0, "a row past the batch is refused");
    cr_assert_neq(leash_kv_cache_keep(kv, ok, 0), 0, "keeping none is refused");
    cr_assert_eq(leash_kv_cache_keep(kv, ok, 2), 0, "%s", leash_errmsg());
    cr_assert_neq(leash_kv_cache_keep(kv, ok, 2), 0, "row 3 of 2 rows is refused");
    leash_kv_cache_free(kv);
    leash_gpt_free(m);
}
