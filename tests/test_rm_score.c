/* How a reward model scores (issue 20, item 3): the scalar head without the LM head's logits. Its values must
 * be leash_gpt_forward's bit for bit, and leash_rm_score_texts' rewards those of a plain forward of each text. */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/reward.h"
#include "leash/tokenizer.h"
#include "testutil.h"

/* Values of a padded batch: leash_gpt_forward_values against leash_gpt_forward, memcmp; F32 and BF16 storage. */
static void values_check(leash_gpt_config cfg, const char *name, int bf16) {
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 9);
    leash_gpt_freeze(m);
    if (bf16) cr_assert_eq(leash_gpt_store_bf16(m), 0, "%s", leash_errmsg());
    enum { B = 4, T = 12 };
    int tokens[B * T];
    uint8_t mask[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 29 + 5) % cfg.vocab_size, mask[i] = i % T < T - (i / T) * 2;
    float full[B * T], only[B * T];
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, T), 0, "%s", leash_errmsg());
    memcpy(full, leash_gpt_values(m), sizeof full);
    cr_assert_eq(leash_gpt_forward_values(m, tokens, mask, B, T), 0, "%s", leash_errmsg());
    memcpy(only, leash_gpt_values(m), sizeof only);
    cr_assert_eq(memcmp(full, only, sizeof full), 0, "%s%s: values without the logits differ", name, bf16 ? " (BF16)" : "");
    cr_assert_neq(leash_gpt_backward(m), 0, "a backward after a values-only forward must be refused");
    leash_gpt_free(m);
}

Test(rm_score, values_without_logits_are_the_full_forwards) {
    leash_gpt_config gpt2 = {.vocab_size = 80, .n_positions = 16, .n_embd = 32, .n_layer = 2, .n_head = 2,
                             .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f, .scalar_head = 1};
    leash_gpt_config llama = gpt2;
    llama.arch = LEASH_ARCH_LLAMA, llama.n_head = 4, llama.n_kv_head = 2, llama.n_inner = 48;
    for (int bf16 = 0; bf16 <= 1; bf16++) values_check(gpt2, "GPT-2", bf16), values_check(llama, "Llama", bf16);
    leash_gpt *p;
    cr_assert_eq(leash_gpt_create(&p, &(leash_gpt_config){.vocab_size = 80, .n_positions = 16, .n_embd = 32, .n_layer = 1,
                                                          .n_head = 2, .bos_token_id = -1, .eos_token_id = -1,
                                                          .layer_norm_epsilon = 1e-5f}),
                 0);
    int tok[4] = {1, 2, 3, 4};
    cr_assert_neq(leash_gpt_forward_values(p, tok, NULL, 1, 4), 0, "a model without a scalar head has no values");
    leash_gpt_free(p);
}

/* leash_rm_score_texts (one text at a time) against leash_gpt_forward on each text's tokens and <|endoftext|>:
 * the same reward, bit for bit. */
Test(rm_score, rewards_are_a_plain_forwards_value_at_the_last_token, .timeout = 60) {
    rl_scratch w;
    rl_scratch_make(&w, "rm-score");
    leash_gpt *pol, *rm;
    leash_tokenizer *tok;
    cr_assert_eq(leash_gpt_load(&pol, w.dir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_tokenizer_load_dir(&tok, w.dir), 0);
    cr_assert_eq(leash_gpt_copy_with_head(&rm, pol, 0, 4), 0);
    leash_gpt_freeze(rm);
    const char *texts[] = {"the food was good.", "was the the.", "great service and a friendly place to eat",
                           "bad."};
    enum { N = sizeof texts / sizeof *texts };
    float got[N];
    cr_assert_eq(leash_rm_score_texts(rm, tok, texts, N, 1, got), 0, "%s", leash_errmsg());
    int eos = leash_tokenizer_special_id(tok, "<|endoftext|>");
    for (int i = 0; i < N; i++) {
        int *ids = NULL;
        size_t n = 0, cap = 0;
        cr_assert_eq(leash_tokenizer_encode(tok, texts[i], strlen(texts[i]), 0, &ids, &n, &cap), 0);
        ids = realloc(ids, (n + 1) * sizeof *ids);
        ids[n++] = eos;
        cr_assert_eq(leash_gpt_forward(rm, ids, NULL, 1, (int)n), 0, "%s", leash_errmsg());
        float want = leash_gpt_values(rm)[n - 1];
        cr_assert_eq(memcmp(&got[i], &want, sizeof want), 0, "text %d: reward %.9g, a plain forward gives %.9g", i,
                     got[i], want);
        free(ids);
    }
    leash_tokenizer_free(tok), leash_gpt_free(pol), leash_gpt_free(rm);
    rl_scratch_drop(&w);
}
