/* Activation checkpointing (leash_gpt_set_checkpoint_activations): the backward recomputes each layer's forward
 * from its kept input, so every parameter gradient, the loss, the logits and the values must be bit-identical
 * (memcmp) to the default path's, for GPT-2 and the Llama family, with LoRA (also with a BF16-stored base and
 * the adapters switched off between forward and backward), a scalar head, padding, gradient accumulation over
 * two batches of different shapes, and two backwards of one forward. Also: a prefill and decode agree exactly,
 * the activations shrink, and a frozen model (one layer's activations too) computes what it did. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/rng.h"
#include "testutil.h"

enum { B = 3, T = 9, L = 3, V = 50 };

static leash_gpt *tiny(int llama, int head) {
    leash_gpt_config c = {.vocab_size = V, .n_positions = 16, .n_embd = 24, .n_layer = L, .n_head = 4,
                          .bos_token_id = 0, .eos_token_id = 1, .layer_norm_epsilon = 1e-5f, .scalar_head = head};
    if (llama) {
        c.arch = LEASH_ARCH_LLAMA, c.n_kv_head = 2, c.n_inner = 40, c.untied_head = 1, c.qkv_bias = 1;
        snprintf(c.model_type, sizeof c.model_type, "qwen2");
    }
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &c), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 7);
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) leash_gpt_params(m)[i] *= 4.0f; // away from uniform
    return m;
}

/* A LoRA copy of base on every target with trained-looking (non-zero) B; base is freed. */
static leash_gpt *lora(leash_gpt *base, int llama) {
    leash_lora_config lc = {.rank = 4, .alpha = 8.0f,
                            .targets = llama ? 0x7Fu : (LEASH_LORA_Q | LEASH_LORA_O | LEASH_LORA_GATE | LEASH_LORA_DOWN)};
    leash_gpt *m;
    cr_assert_eq(leash_gpt_add_lora(&m, base, &lc, 3), 0, "%s", leash_errmsg());
    leash_gpt_free(base);
    lora_randomise_b(m);
    return m;
}

typedef struct {
    double loss;
    float *grads, *logits, *values;
} result;

/* One batch (b rows of T, the second left-padded) into the gradients: cross-entropy, plus sum(values) when the
 * model has a scalar head; adapters_off_in_backward switches a LoRA model's adapters off between its forward
 * and backward (the backward must follow the forward's setting). */
static double batch(leash_gpt *m, int b, int adapters_off_in_backward, float *logits, float *values) {
    int tok[B * T], tgt[B * T];
    uint8_t mask[B * T];
    for (int i = 0; i < b * T; i++) {
        tok[i] = (i * 7 + b * 3) % V;
        tgt[i] = i % T == T - 1 ? -1 : (i * 11 + 5) % V;
        mask[i] = !(i / T == 1 && i % T < 3); // sequence 1 left-padded by 3
        if (!mask[i]) tgt[i] = -1;
    }
    cr_assert_eq(leash_gpt_forward(m, tok, mask, b, T), 0, "%s", leash_errmsg());
    double loss;
    cr_assert_eq(leash_gpt_cross_entropy(m, tgt, &loss, NULL), 0, "%s", leash_errmsg());
    if (logits) memcpy(logits, leash_gpt_logits(m), sizeof(float) * b * T * V);
    if (leash_gpt_values(m)) {
        for (int i = 0; i < b * T; i++) leash_gpt_dvalues(m)[i] = 0.1f * (float)(i % 5) - 0.2f;
        memcpy(values, leash_gpt_values(m), sizeof(float) * b * T);
    }
    if (adapters_off_in_backward) leash_gpt_set_adapters(m, 0);
    cr_assert_eq(leash_gpt_backward(m), 0, "%s", leash_errmsg());
    if (b == B) { // a second backward of the same forward (its layer buffers now hold layer 0's, not the last's)
        cr_assert_eq(leash_gpt_cross_entropy(m, tgt, &loss, NULL), 0, "%s", leash_errmsg());
        cr_assert_eq(leash_gpt_backward(m), 0, "%s", leash_errmsg());
    }
    leash_gpt_set_adapters(m, 1);
    return loss;
}

/* Two accumulated batches (B, then B - 1 rows: a reallocation in between) with checkpointing on or off; the
 * first has two backwards. */
static result run(leash_gpt *m, int ckpt, int adapters_off) {
    size_t n = leash_gpt_num_trainable(m);
    result r = {0, calloc(n, sizeof(float)), calloc(2 * B * T * V, sizeof(float)), calloc(2 * B * T, sizeof(float))};
    leash_gpt_set_checkpoint_activations(m, ckpt);
    cr_assert_eq(leash_gpt_checkpoint_activations(m), ckpt);
    leash_gpt_zero_grad(m);
    r.loss = batch(m, B, adapters_off, r.logits, r.values);
    r.loss += batch(m, B - 1, 0, r.logits + B * T * V, r.values + B * T);
    memcpy(r.grads, leash_gpt_grads(m), n * sizeof(float));
    return r;
}

/* The worst |a - b| over n floats, for the message when they are not bit-identical. */
static double worst(const float *a, const float *b, size_t n) {
    double w = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] > b[i] ? (double)a[i] - b[i] : (double)b[i] - a[i];
        if (d > w || d != d) w = d;
    }
    return w;
}

static void same_with_and_without(leash_gpt *m, const char *what, int adapters_off) {
    size_t n = leash_gpt_num_trainable(m);
    result a = run(m, 0, adapters_off);
    size_t full = leash_gpt_memory_bytes(m);
    result b = run(m, 1, adapters_off);
    size_t ckpt = leash_gpt_memory_bytes(m);
    result c = run(m, 0, adapters_off); // and back: the default path is unchanged by having checkpointed
    double g = 0.0;
    for (size_t i = 0; i < n; i++) g += a.grads[i] * (double)a.grads[i];
    cr_assert(g > 0.0, "%s: all gradients are 0; the test would prove nothing", what);
    cr_assert(a.loss == b.loss, "%s: loss %.17g with checkpointing, %.17g without", what, b.loss, a.loss);
    cr_assert(!memcmp(a.logits, b.logits, sizeof(float) * 2 * B * T * V), "%s: logits differ by up to %g", what,
              worst(a.logits, b.logits, 2 * B * T * V));
    cr_assert(!memcmp(a.values, b.values, sizeof(float) * 2 * B * T), "%s: values differ", what);
    cr_assert(!memcmp(a.grads, b.grads, n * sizeof(float)), "%s: gradients differ by up to %g over %zu", what,
              worst(a.grads, b.grads, n), n);
    cr_assert(!memcmp(a.grads, c.grads, n * sizeof(float)) && a.loss == c.loss, "%s: the default path changed after "
              "checkpointing (worst %g)", what, worst(a.grads, c.grads, n));
    cr_assert(ckpt < full, "%s: %zu bytes with checkpointing, %zu without", what, ckpt, full);
    fprintf(stderr, "checkpoint_activations %s: %zu trainable gradients identical; model memory %zu -> %zu bytes\n",
            what, n, full, ckpt);
    free(a.grads), free(a.logits), free(a.values), free(b.grads), free(b.logits), free(b.values);
    free(c.grads), free(c.logits), free(c.values);
}

Test(checkpoint_activations, gpt2_gradients_bit_identical) {
    leash_gpt *m = tiny(0, 0);
    same_with_and_without(m, "gpt2", 0);
    leash_gpt_free(m);
}

Test(checkpoint_activations, llama_gradients_bit_identical) {
    leash_gpt *m = tiny(1, 0);
    same_with_and_without(m, "llama", 0);
    leash_gpt_free(m);
}

Test(checkpoint_activations, scalar_head_gradients_bit_identical) { // a PPO value model: dvalues too
    leash_gpt *m = tiny(1, 1);
    same_with_and_without(m, "llama + scalar head", 0);
    leash_gpt_free(m);
    m = tiny(0, 1);
    same_with_and_without(m, "gpt2 + scalar head", 0);
    leash_gpt_free(m);
}

Test(checkpoint_activations, lora_gradients_bit_identical) {
    for (int llama = 0; llama <= 1; llama++) {
        leash_gpt *m = lora(tiny(llama, 0), llama);
        same_with_and_without(m, llama ? "llama + LoRA" : "gpt2 + LoRA", 0);
        same_with_and_without(m, llama ? "llama + LoRA, adapters off at backward" : "gpt2 + LoRA, adapters off at backward", 1);
        cr_assert_eq(leash_gpt_store_bf16(m), 0, "%s", leash_errmsg()); // the BF16 base (and compute where the CPU has it)
        same_with_and_without(m, llama ? "llama + LoRA, BF16 base" : "gpt2 + LoRA, BF16 base", 0);
        leash_gpt_free(m);
    }
}

/* The prefill reads each layer's keys and values as the forward makes them (checkpointing keeps one layer's):
 * generation's logits must be the same, bit for bit. */
Test(checkpoint_activations, prefill_and_decode_unchanged) {
    for (int llama = 0; llama <= 1; llama++) {
        float logits[2][4][B * V];
        for (int ckpt = 0; ckpt <= 1; ckpt++) {
            leash_gpt *m = tiny(llama, 0);
            leash_gpt_set_checkpoint_activations(m, ckpt);
            leash_kv_cache *kv;
            cr_assert_eq(leash_kv_cache_create(&kv, m, B, 12), 0, "%s", leash_errmsg());
            int prompt[B * 5] = {0, 4, 9, 2, 3, /**/ 1, 1, 0, 7, 8, /**/ 5, 6, 7, 8, 9};
            uint8_t mask[B * 5] = {1, 1, 1, 1, 1, /**/ 0, 0, 1, 1, 1, /**/ 1, 1, 1, 1, 1};
            cr_assert_eq(leash_gpt_prefill(m, kv, prompt, mask, 5), 0, "%s", leash_errmsg());
            memcpy(logits[ckpt][0], leash_kv_cache_logits(kv), sizeof logits[0][0]);
            for (int s = 1; s < 4; s++) {
                int next[B] = {s, 10 + s, 20 + s};
                cr_assert_eq(leash_gpt_decode_step(m, kv, next), 0, "%s", leash_errmsg());
                memcpy(logits[ckpt][s], leash_kv_cache_logits(kv), sizeof logits[0][0]);
            }
            leash_kv_cache_free(kv);
            leash_gpt_free(m);
        }
        cr_assert(!memcmp(logits[0], logits[1], sizeof logits[0]), "%s: decode logits differ with checkpointing by up to %g",
                  llama ? "llama" : "gpt2", worst(&logits[0][0][0], &logits[1][0][0], 4 * B * V));
    }
}

/* A frozen model (a reference, a reward model) has no backward, so it keeps one layer's activations as
 * checkpointing does: its logits and values must be those of the same weights unfrozen, bit for bit. */
Test(checkpoint_activations, frozen_forward_unchanged) {
    for (int llama = 0; llama <= 1; llama++) {
        leash_gpt *m = tiny(llama, 1), *f = tiny(llama, 1);
        leash_gpt_freeze(f);
        int tok[B * T];
        uint8_t mask[B * T];
        for (int i = 0; i < B * T; i++) tok[i] = (i * 13 + 1) % V, mask[i] = !(i / T == 2 && i % T < 4);
        cr_assert_eq(leash_gpt_forward(m, tok, mask, B, T), 0, "%s", leash_errmsg());
        cr_assert_eq(leash_gpt_forward(f, tok, mask, B, T), 0, "%s", leash_errmsg());
        cr_assert(!memcmp(leash_gpt_logits(m), leash_gpt_logits(f), sizeof(float) * B * T * V),
                  "%s: frozen logits differ by up to %g", llama ? "llama" : "gpt2",
                  worst(leash_gpt_logits(m), leash_gpt_logits(f), B * T * V));
        cr_assert(!memcmp(leash_gpt_values(m), leash_gpt_values(f), sizeof(float) * B * T), "frozen values differ");
        cr_assert_eq(leash_gpt_forward_values(f, tok, NULL, B, T), 0, "%s", leash_errmsg());
        cr_assert_eq(leash_gpt_forward_values(m, tok, NULL, B, T), 0, "%s", leash_errmsg());
        cr_assert(!memcmp(leash_gpt_values(m), leash_gpt_values(f), sizeof(float) * B * T), "frozen values differ (no mask)");
        fprintf(stderr, "checkpoint_activations frozen %s: model memory %zu (trainable) and %zu (frozen) bytes\n",
                llama ? "llama" : "gpt2", leash_gpt_memory_bytes(m), leash_gpt_memory_bytes(f));
        leash_gpt_free(m), leash_gpt_free(f);
    }
}
