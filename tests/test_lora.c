/* LoRA: adapters start with exactly no effect, switch off to exactly the base model, train only
 * themselves, agree with the merged model (forward and gradients), match finite differences, and
 * survive a PEFT save and load. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/rl.h"
#include "leash/rng.h"
#include "leash/sample.h"
#include "leash/tokenizer.h"
#include "testutil.h"

enum { B = 2, T = 7 };

static leash_gpt *base_model_layers(int llama, uint64_t seed, int n_layer) {
    leash_gpt_config c = {.vocab_size = 40, .n_positions = 16, .n_embd = 16, .n_layer = n_layer, .n_head = 4,
                          .bos_token_id = 0, .eos_token_id = 1, .layer_norm_epsilon = 1e-5f};
    if (llama) {
        c.arch = LEASH_ARCH_LLAMA, c.n_kv_head = 2, c.n_inner = 24, c.untied_head = 1, c.qkv_bias = 1;
        snprintf(c.model_type, sizeof c.model_type, "qwen2");
    }
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &c), 0, "%s", leash_errmsg());
    leash_gpt_init(m, seed);
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) leash_gpt_params(m)[i] *= 5.0f;
    return m;
}
static leash_gpt *base_model(int llama, uint64_t seed) { return base_model_layers(llama, seed, 2); }

static leash_gpt *with_lora(const leash_gpt *base, unsigned targets, int randomise_b) {
    leash_lora_config lc = {.rank = 3, .alpha = 6.0f, .targets = targets};
    leash_gpt *m;
    cr_assert_eq(leash_gpt_add_lora(&m, base, &lc, 9), 0, "%s", leash_errmsg());
    if (randomise_b) lora_randomise_b(m); // a trained-looking adapter: B != 0
    return m;
}

static const int tokens[B * T] = {0, 5, 9, 33, 2, 17, 38, /**/ 0, 0, 3, 3, 12, 30, 7};
static const uint8_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, /**/ 0, 1, 1, 1, 1, 1, 1};
static const int targets_[B * T] = {5, 9, 33, 2, 17, 38, -1, /**/ -1, 3, 3, 12, 30, 7, -1};

static double loss_of(leash_gpt *m, int backward) {
    double loss;
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, T), 0, "%s", leash_errmsg());
    if (backward) leash_gpt_zero_grad(m);
    cr_assert_eq(leash_gpt_cross_entropy(m, targets_, &loss, NULL), 0, "%s", leash_errmsg());
    if (backward) cr_assert_eq(leash_gpt_backward(m), 0, "%s", leash_errmsg());
    else memset(leash_gpt_dlogits(m), 0, sizeof(float) * B * T * leash_gpt_cfg(m)->vocab_size);
    return loss;
}

static void zero_effect_and_switch(int llama) {
    leash_gpt *base = base_model(llama, 1);
    unsigned all = llama ? 0x7F : (LEASH_LORA_Q | LEASH_LORA_O | LEASH_LORA_GATE | LEASH_LORA_DOWN);
    leash_gpt *m = with_lora(base, all, 0);
    size_t NV = (size_t)B * T * 40;
    float *want = malloc(NV * sizeof *want);
    cr_assert_eq(leash_gpt_forward(base, tokens, mask, B, T), 0);
    memcpy(want, leash_gpt_logits(base), NV * sizeof *want);
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, T), 0);
    cr_assert_eq(memcmp(leash_gpt_logits(m), want, NV * sizeof *want), 0, "B = 0: the adapters change nothing, bit for bit");
    // only the adapters train: the gradient block is theirs
    size_t n_lora = 0;
    for (int i = leash_gpt_first_trainable(m); i < leash_gpt_num_tensors(m); i++) n_lora += leash_gpt_tensor(m, i)->numel;
    cr_assert_eq(leash_gpt_num_trainable(m), n_lora);
    cr_assert(n_lora < leash_gpt_num_params(m) / 4, "%zu adapter weights of %zu", n_lora, leash_gpt_num_params(m));
    leash_gpt_free(m);
    // trained adapters change the output; switched off, the model is its base again, bit for bit
    m = with_lora(base, all, 1);
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, T), 0);
    double diff = 0.0;
    for (size_t i = 0; i < NV; i++) diff = fmax(diff, fabs(leash_gpt_logits(m)[i] - want[i]));
    cr_assert(diff > 1e-3, "trained adapters must change the logits (max change %g)", diff);
    leash_gpt_set_adapters(m, 0);
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, T), 0);
    cr_assert_eq(memcmp(leash_gpt_logits(m), want, NV * sizeof *want), 0, "adapters off = the base model, bit for bit");
    free(want);
    leash_gpt_free(m), leash_gpt_free(base);
}
Test(lora, zero_effect_at_start_and_off_is_the_base_gpt2) { zero_effect_and_switch(0); }
Test(lora, zero_effect_at_start_and_off_is_the_base_llama) { zero_effect_and_switch(1); }

/* With W' = W + s B A: the LoRA model's logits are the merged model's, and its adapter gradients are
 * dB = s G A^T, dA = s B^T G with G the merged model's weight gradient (in Linear layout). */
static void agrees_with_merged(int llama) {
    leash_gpt *base = base_model(llama, 2);
    unsigned all = llama ? 0x7F : (LEASH_LORA_Q | LEASH_LORA_O | LEASH_LORA_GATE | LEASH_LORA_DOWN);
    leash_gpt *m = with_lora(base, all, 1), *merged;
    cr_assert_eq(leash_gpt_merge_lora(&merged, m), 0, "%s", leash_errmsg());
    double lm = loss_of(merged, 1), ll = loss_of(m, 1);
    cr_assert(fabs(lm - ll) < 1e-5 * fabs(lm), "loss: merged %.9g, LoRA %.9g", lm, ll);
    size_t NV = (size_t)B * T * 40;
    double dz = 0.0, zs = 0.0;
    for (size_t i = 0; i < NV; i++)
        dz = fmax(dz, fabs(leash_gpt_logits(m)[i] - leash_gpt_logits(merged)[i])), zs = fmax(zs, fabs(leash_gpt_logits(merged)[i]));
    cr_assert(dz <= 1e-5 * zs, "logits: LoRA and merged differ by %g (scale %g)", dz, zs);
    // each adapter against the merged model's weight gradient
    const float s = 6.0f / 3;
    int checked = 0;
    double worst = 0.0;
    for (int i = leash_gpt_first_trainable(m); i < leash_gpt_num_tensors(m); i += 2) {
        const leash_tensor_info *ta = leash_gpt_tensor(m, i), *tb = leash_gpt_tensor(m, i + 1);
        int r = (int)ta->shape[0], in = (int)ta->shape[1], out = (int)tb->shape[0];
        // the base weight's name: PEFT name minus "base_model.model." (and GPT-2's "transformer."), lora_A -> weight
        char name[96];
        const char *p = ta->name + strlen("base_model.model.");
        if (!strncmp(p, "transformer.", 12)) p += 12;
        snprintf(name, sizeof name, "%.*s.weight", (int)(strstr(p, ".lora_A") - p), p);
        const leash_tensor_info *tw = NULL;
        for (int k = 0; k < leash_gpt_num_tensors(merged) && !tw; k++)
            if (!strcmp(leash_gpt_tensor(merged, k)->name, name)) tw = leash_gpt_tensor(merged, k);
        cr_assert(tw, "no base weight %s", name);
        const float *G = leash_gpt_grads(merged) + tw->offset, *A = leash_gpt_params(m) + ta->offset;
        const float *Bw = leash_gpt_params(m) + tb->offset;
        const float *dA = leash_gpt_grads(m) + (ta->offset - leash_gpt_tensor(m, leash_gpt_first_trainable(m))->offset);
        const float *dB = dA + ta->numel;
        double *wantA = calloc(ta->numel, sizeof *wantA), *wantB = calloc(tb->numel, sizeof *wantB);
        for (int o = 0; o < out; o++)
            for (int x = 0; x < in; x++) {
                double g = llama ? G[(size_t)o * in + x] : G[(size_t)x * out + o]; // Linear (out, in) or Conv1D (in, out)
                for (int k = 0; k < r; k++) {
                    wantB[(size_t)o * r + k] += s * g * A[(size_t)k * in + x];
                    wantA[(size_t)k * in + x] += s * Bw[(size_t)o * r + k] * g;
                }
            }
        double scale = 1e-12, err = 0.0;
        for (size_t k = 0; k < ta->numel; k++) scale = fmax(scale, fabs(wantA[k])), err = fmax(err, fabs(dA[k] - wantA[k]));
        for (size_t k = 0; k < tb->numel; k++) scale = fmax(scale, fabs(wantB[k])), err = fmax(err, fabs(dB[k] - wantB[k]));
        worst = fmax(worst, err / scale);
        cr_assert(err / scale < 1e-4, "%s: relative error %g against the merged model's gradient", ta->name, err / scale);
        free(wantA), free(wantB);
        checked++;
    }
    cr_log_info("%s: %d adapters agree with the merged model's gradients (worst %.2g)", llama ? "llama" : "gpt2", checked, worst);
    cr_assert_eq(checked, llama ? 14 : 8);
    leash_gpt_free(merged), leash_gpt_free(m), leash_gpt_free(base);
}
Test(lora, forward_and_gradients_agree_with_the_merged_model_gpt2) { agrees_with_merged(0); }
Test(lora, forward_and_gradients_agree_with_the_merged_model_llama) { agrees_with_merged(1); }

/* A few adapter entries against central finite differences of the loss (float64 sums of float32). */
Test(lora, adapter_gradients_match_finite_differences) {
    leash_gpt *base = base_model(1, 3), *m = with_lora(base, LEASH_LORA_V | LEASH_LORA_DOWN, 1);
    loss_of(m, 1);
    size_t n = leash_gpt_num_trainable(m);
    float *g = malloc(n * sizeof *g), *w = leash_gpt_trainable(m);
    memcpy(g, leash_gpt_grads(m), n * sizeof *g);
    for (size_t k = 0; k < n; k += n / 23 + 1) {
        float w0 = w[k], h = 1e-2f;
        w[k] = w0 + h;
        double lp = loss_of(m, 0);
        w[k] = w0 - h;
        double lm = loss_of(m, 0);
        w[k] = w0;
        double fd = (lp - lm) / (2.0 * h);
        cr_assert(fabs(fd - g[k]) <= 2e-3 + 2e-2 * fabs(fd), "adapter weight %zu: backward %g, finite difference %g", k,
                  (double)g[k], fd);
    }
    free(g);
    leash_gpt_free(m), leash_gpt_free(base);
}

/* PEFT layout on disk: adapter files beside a base directory; loading rebuilds base + adapters exactly,
 * with the base found by its path; a missing base is a clear error. */
Test(lora, peft_directory_round_trip) {
    char dir[] = "/tmp/leash-lora-XXXXXX", bdir[64], adir[64], cmd[512];
    cr_assert(mkdtemp(dir));
    snprintf(bdir, sizeof bdir, "%s/base", dir);
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    leash_gpt *b0 = base_model(1, 4), *base, *m, *r;
    cr_assert_eq(leash_gpt_save(b0, bdir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&base, bdir), 0, "%s", leash_errmsg());
    // loading with fresh adapters straight from the directory = loading, then adding them (one copy in memory)
    leash_gpt *direct, *added;
    leash_lora_config lc = {.rank = 3, .alpha = 6.0f, .targets = LEASH_LORA_Q | LEASH_LORA_V};
    cr_assert_eq(leash_gpt_load_lora(&direct, bdir, 3, 6.0f, 0.0f, "q_proj,v_proj", 9), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_add_lora(&added, base, &lc, 9), 0);
    cr_assert_eq(leash_gpt_num_params(direct), leash_gpt_num_params(added));
    cr_assert_eq(memcmp(leash_gpt_params(direct), leash_gpt_params(added), leash_gpt_num_params(added) * sizeof(float)), 0);
    leash_gpt_free(direct), leash_gpt_free(added);
    m = with_lora(base, LEASH_LORA_Q | LEASH_LORA_V, 1);
    cr_assert_eq(leash_gpt_save(m, adir), 0, "%s", leash_errmsg());
    snprintf(cmd, sizeof cmd, "test -f %s/adapter_config.json && test -f %s/adapter_model.safetensors && test ! -f %s/model.safetensors",
             adir, adir, adir);
    cr_assert_eq(system(cmd), 0, "a LoRA model writes adapter files only");
    cr_assert_eq(leash_gpt_load(&r, adir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_num_params(r), leash_gpt_num_params(m));
    cr_assert_eq(memcmp(leash_gpt_params(r), leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float)), 0);
    cr_assert(leash_gpt_lora(r) && leash_gpt_lora(r)->rank == 3 && leash_gpt_lora(r)->targets == (LEASH_LORA_Q | LEASH_LORA_V));
    cr_assert(leash_gpt_lora(r)->alpha == 6.0f && leash_gpt_lora(r)->dropout == 0.0f);
    cr_assert(!leash_gpt_lora(base), "a model without adapters has no LoRA settings");
    cr_assert_eq(memcmp(leash_gpt_cfg(r), leash_gpt_cfg(base), sizeof(leash_gpt_config)), 0,
                 "adapters leave the architecture as it was");
    leash_gpt_free(r);
    snprintf(cmd, sizeof cmd, "mv %s %s.moved", bdir, bdir);
    cr_assert_eq(system(cmd), 0);
    cr_assert_neq(leash_gpt_load(&r, adir), 0);
    cr_assert(strstr(leash_errmsg(), "base_model_name_or_path") && strstr(leash_errmsg(), "downloads nothing"), "%s",
              leash_errmsg());
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    leash_gpt_free(m), leash_gpt_free(base), leash_gpt_free(b0);
}

/* A reward model as the base of a LoRA reward model (`leash rm train --init RM_DIR --lora-r N`): the base
 * directory holds a scalar head, and so does the adapter directory (the trained head travels with the
 * adapters); the adapter file's head is the one loaded, the base's only the starting point. */
Test(lora, adapters_on_a_reward_model_round_trip_with_their_head) {
    char dir[] = "/tmp/leash-lora-rm-XXXXXX", bdir[64], adir[64];
    cr_assert(mkdtemp(dir));
    snprintf(bdir, sizeof bdir, "%s/rm", dir);
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    leash_gpt *shape = base_model(1, 4);
    leash_gpt_config c = *leash_gpt_cfg(shape);
    leash_gpt_free(shape);
    c.scalar_head = 1;
    leash_gpt *rm, *m, *r;
    cr_assert_eq(leash_gpt_create(&rm, &c), 0, "%s", leash_errmsg());
    leash_gpt_init(rm, 4);
    cr_assert_eq(leash_gpt_save(rm, bdir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load_lora(&m, bdir, 3, 6.0f, 0.0f, "q_proj,v_proj", 9), 0, "%s", leash_errmsg());
    lora_randomise_b(m);
    for (int i = leash_gpt_first_trainable(m); i < leash_gpt_num_tensors(m); i++) { // a head unlike the base's
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        if (!strncmp(t->name, "score.", 6))
            for (size_t k = 0; k < t->numel; k++) leash_gpt_params(m)[t->offset + k] += 0.25f * (float)(k + 1);
    }
    cr_assert_eq(leash_gpt_save(m, adir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&r, adir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_num_params(r), leash_gpt_num_params(m));
    cr_assert_eq(memcmp(leash_gpt_params(r), leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float)), 0,
                 "the reloaded LoRA reward model is not the saved one (its head or adapters)");
    cr_assert_eq(leash_gpt_forward_values(m, tokens, mask, B, T), 0, "%s", leash_errmsg());
    float want[B * T];
    memcpy(want, leash_gpt_values(m), sizeof want);
    cr_assert_eq(leash_gpt_forward_values(r, tokens, mask, B, T), 0, "%s", leash_errmsg());
    cr_assert_eq(memcmp(leash_gpt_values(r), want, sizeof want), 0, "scores differ after the round trip");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    leash_gpt_free(rm), leash_gpt_free(m), leash_gpt_free(r);
}

Test(lora, target_names) {
    unsigned t;
    cr_assert_eq(leash_lora_parse_targets("q_proj,v_proj", LEASH_ARCH_LLAMA, &t), 0);
    cr_assert_eq(t, LEASH_LORA_Q | LEASH_LORA_V);
    cr_assert_eq(leash_lora_parse_targets("all-linear", LEASH_ARCH_LLAMA, &t), 0);
    cr_assert_eq(t, 0x7Fu);
    cr_assert_eq(leash_lora_parse_targets("c_attn c_proj", LEASH_ARCH_GPT2, &t), 0);
    cr_assert_eq(t, LEASH_LORA_Q | LEASH_LORA_O | LEASH_LORA_DOWN);
    cr_assert_neq(leash_lora_parse_targets("q_proj", LEASH_ARCH_GPT2, &t), 0);
    cr_assert(strstr(leash_errmsg(), "\"q_proj\"") && strstr(leash_errmsg(), "c_attn"), "%s", leash_errmsg());
    cr_assert_neq(leash_lora_parse_targets("", LEASH_ARCH_LLAMA, &t), 0);
}

/* PEFT 0.21 writes all-linear adapters' target_modules as full module paths; they load when they cover every
 * layer, and adapting only some layers is an error naming it. */
Test(lora, full_module_paths_as_peft_writes_them) {
    const char *llama[14], *gpt2[8];
    char buf[22][64];
    const char *proj[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    for (int l = 0; l < 2; l++)
        for (int j = 0; j < 7; j++) snprintf(buf[l * 7 + j], 64, "model.layers.%d.%s", l, proj[j]), llama[l * 7 + j] = buf[l * 7 + j];
    const char *gproj[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
    for (int l = 0; l < 2; l++)
        for (int j = 0; j < 4; j++) snprintf(buf[14 + l * 4 + j], 64, "transformer.h.%d.%s", l, gproj[j]), gpt2[l * 4 + j] = buf[14 + l * 4 + j];
    unsigned t = 0;
    cr_assert_eq(leash_lora_parse_modules(llama, 14, LEASH_ARCH_LLAMA, 2, &t), 0, "%s", leash_errmsg());
    cr_assert_eq(t, 0x7Fu);
    cr_assert_eq(leash_lora_parse_modules(gpt2, 8, LEASH_ARCH_GPT2, 2, &t), 0, "%s", leash_errmsg());
    cr_assert_eq(t, LEASH_LORA_Q | LEASH_LORA_O | LEASH_LORA_GATE | LEASH_LORA_DOWN, "0x%x", t);
    const char *short_names[] = {"v_proj", "q_proj"};
    cr_assert_eq(leash_lora_parse_modules(short_names, 2, LEASH_ARCH_LLAMA, 2, &t), 0);
    cr_assert_eq(t, LEASH_LORA_Q | LEASH_LORA_V);
    // layer 0's projections only
    cr_assert_neq(leash_lora_parse_modules(llama, 7, LEASH_ARCH_LLAMA, 2, &t), 0);
    cr_assert(strstr(leash_errmsg(), "q_proj in 1 of the model's 2 layers"), "%s", leash_errmsg());
    const char *outside[] = {"model.layers.5.self_attn.q_proj"}, *head[] = {"lm_head"}, *odd[] = {"model.norm.weight"};
    cr_assert_neq(leash_lora_parse_modules(outside, 1, LEASH_ARCH_LLAMA, 2, &t), 0);
    cr_assert(strstr(leash_errmsg(), "model.layers.5.self_attn.q_proj"), "%s", leash_errmsg());
    cr_assert_neq(leash_lora_parse_modules(head, 1, LEASH_ARCH_LLAMA, 2, &t), 0);
    cr_assert_neq(leash_lora_parse_modules(odd, 1, LEASH_ARCH_LLAMA, 2, &t), 0);
}

/* adapter_config.json keys PEFT has added for variants leash does not compute are refused by name. */
Test(lora, adapter_config_keys_that_change_the_adapter_are_refused) {
    char dir[] = "/tmp/leash-peftk-XXXXXX", bdir[64], adir[64], path[128];
    cr_assert(mkdtemp(dir));
    snprintf(bdir, sizeof bdir, "%s/base", dir);
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    leash_gpt *base = base_model(1, 4), *m = with_lora(base, LEASH_LORA_Q | LEASH_LORA_V, 1), *r;
    cr_assert_eq(leash_gpt_save(base, bdir), 0);
    leash_gpt_free(m);
    cr_assert_eq(leash_gpt_load_lora(&m, bdir, 2, 4.0f, 0.0f, "q_proj,v_proj", 1), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_save(m, adir), 0, "%s", leash_errmsg());
    snprintf(path, sizeof path, "%s/adapter_config.json", adir);
    char *good;
    cr_assert_eq(leash_read_file(path, 1 << 20, &good, NULL), 0);
    struct {
        const char *add, *error; // a JSON member added after the opening brace; NULL error: loads
    } cases[] = {
        {"\"peft_version\": \"0.21.2\", \"alora_invocation_tokens\": null, \"use_qalora\": false, \"exclude_modules\": null, "
         "\"init_lora_weights\": true, \"layer_replication\": null, \"trainable_token_indices\": null, ",
         NULL},
        {"\"alora_invocation_tokens\": [7, 8], ", "\"alora_invocation_tokens\" is set"},
        {"\"use_dora\": true, ", "\"use_dora\" is set"},
        {"\"layer_replication\": [[0, 1]], ", "\"layer_replication\" is set"},
        {"\"init_lora_weights\": \"pissa\", ", "\"init_lora_weights\" is pissa"},
        {"\"some_future_variant\": 1, ", "key \"some_future_variant\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[8192];
        snprintf(text, sizeof text, "{%s%s", cases[i].add, strchr(good, '{') + 1);
        cr_assert_eq(leash_write_file_atomic(path, text, strlen(text)), 0);
        int rc = leash_gpt_load(&r, adir);
        if (!cases[i].error) {
            cr_assert_eq(rc, 0, "case %zu: %s", i, leash_errmsg());
            leash_gpt_free(r);
            continue;
        }
        cr_assert_neq(rc, 0, "case %zu must fail", i);
        cr_assert(strstr(leash_errmsg(), cases[i].error) && strstr(leash_errmsg(), path), "case %zu: %s", i, leash_errmsg());
    }
    free(good);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    leash_gpt_free(m), leash_gpt_free(base);
}

/* ---- LoRA in PPO and GRPO ---- */

typedef struct {
    leash_gpt *base;
    int steps, worst_step;
    double last_kl;
    float temperature;
} lora_probe;

static double length_reward(const char *prompt, const char *response, const int *ids, int n, void *ctx) {
    (void)prompt, (void)response, (void)ids, (void)ctx;
    return n / 6.0; // any signal that moves the adapters
}

/* The known pitfall: with fresh adapters the KL of step 1 is exactly 0, and at every step the reference
 * log-probs are the base model's (loaded separately), bit for bit. */
static int check_step(const leash_rl_progress *p, void *vctx) {
    lora_probe *pr = vctx;
    const leash_rl_batch *b = p->batch;
    cr_assert_null(b->ref, "with LoRA the reference is the policy with its adapters off");
    size_t n = (size_t)b->rows * b->T;
    if (p->step == 1)
        for (size_t i = 0; i < n; i++)
            cr_assert(b->kl[i] == 0.0f && b->kl_exact[i] == 0.0f, "step 1: KL %g (exact %g) at %zu; fresh adapters must give 0",
                      (double)b->kl[i], (double)b->kl_exact[i], i);
    float *lp = malloc(n * sizeof *lp);
    cr_assert_eq(leash_gpt_forward(pr->base, b->tokens, b->mask, b->rows, b->T), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_token_logprobs(pr->base, b->targets, pr->temperature, lp, NULL), 0);
    cr_assert_eq(memcmp(lp, b->ref_logp, n * sizeof *lp), 0, "step %d: reference log-probs are not the base model's", p->step);
    free(lp);
    pr->steps = p->step;
    pr->last_kl = p->kl_exact;
    return 0;
}

static void lora_rl(leash_rl_algo algo, int bf16) {
    rl_scratch w;
    rl_scratch_make(&w, "lora-rl");
    lora_probe pr = {.temperature = 0.8f};
    cr_assert_eq(leash_gpt_load(&pr.base, w.dir), 0);
    leash_gpt_freeze(pr.base);
    if (bf16) cr_assert_eq(leash_gpt_store_bf16(pr.base), 0); // the reference then is the base rounded to BF16
    leash_rl_config c = leash_rl_defaults(algo);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = length_reward;
    c.steps = 4, c.batch = algo == LEASH_GRPO ? 4 : 12, c.grpo.group = 3, c.max_new = 6, c.temperature = pr.temperature;
    c.optim.lr = 2e-2f, c.sample_every = 0;
    c.lora_rank = 4, c.lora_targets = "c_attn,c_fc", c.frozen_bf16 = bf16;
    cr_assert_eq(leash_rl_train(&c, check_step, &pr, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(pr.steps, 4);
    cr_assert(pr.last_kl > 1e-4, "the adapters must have moved the policy (exact KL %g at the last step)", pr.last_kl);
    // OUT/policy: PEFT adapters on the untouched base
    char path[256];
    snprintf(path, sizeof path, "%s/policy", w.out);
    leash_gpt *trained;
    cr_assert_eq(leash_gpt_load(&trained, path), 0, "%s", leash_errmsg());
    int first = leash_gpt_first_trainable(trained);
    cr_assert(first > 0 && leash_gpt_lora(trained) && leash_gpt_lora(trained)->rank == 4);
    size_t nbase = leash_gpt_tensor(trained, first)->offset;
    leash_gpt *orig;
    cr_assert_eq(leash_gpt_load(&orig, w.dir), 0);
    cr_assert_eq(memcmp(leash_gpt_params(trained), leash_gpt_params(orig), nbase * sizeof(float)), 0, "the base is unchanged");
    leash_gpt_free(orig);
    // leash lora merge: a full model, the same weights as the library's merge
    char cmd[600], mdir[256];
    snprintf(mdir, sizeof mdir, "%s/merged", w.out);
    snprintf(cmd, sizeof cmd, LEASH_BIN " lora merge %s %s >/dev/null", path, mdir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    leash_gpt *merged, *want;
    cr_assert_eq(leash_gpt_load(&merged, mdir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_merge_lora(&want, trained), 0);
    cr_assert(!leash_gpt_lora(merged) && !leash_gpt_lora(want) && leash_gpt_num_params(merged) == leash_gpt_num_params(want));
    cr_assert_eq(memcmp(leash_gpt_params(merged), leash_gpt_params(want), leash_gpt_num_params(want) * sizeof(float)), 0);
    leash_gpt_free(merged), leash_gpt_free(want);
    cr_log_info("%s with LoRA: KL exactly 0 at step 1, %.4f nats/seq at step 4; reference = base at every step",
                algo == LEASH_PPO ? "PPO" : "GRPO", pr.last_kl);
    leash_gpt_free(trained), leash_gpt_free(pr.base);
    rl_scratch_drop(&w);
}
Test(lora, ppo_starts_at_zero_kl_and_its_reference_is_the_base, .timeout = 120) { lora_rl(LEASH_PPO, 0); }
Test(lora, grpo_starts_at_zero_kl_and_its_reference_is_the_base, .timeout = 120) { lora_rl(LEASH_GRPO, 0); }
// with the base in BF16 (--frozen-bf16) policy and reference share the rounded base: still exactly 0 at step 1
Test(lora, ppo_with_a_bf16_base_starts_at_zero_kl, .timeout = 120) { lora_rl(LEASH_PPO, 1); }

/* A LoRA run stopped after 2 steps and resumed to 4 ends with the same adapters, bit for bit, as a run of
 * 4: the checkpoint holds adapters (PEFT layout), their optimizer state and the value model. */
Test(lora, resumed_run_is_bit_identical, .timeout = 120) {
    rl_scratch w;
    rl_scratch_make(&w, "lora-resume");
    char a[200], b[200], cmd[600];
    snprintf(a, sizeof a, "%s/straight", w.dir);
    snprintf(b, sizeof b, "%s/resumed", w.dir);
    leash_rl_config c = leash_rl_defaults(LEASH_PPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = length_reward, c.batch = 8, c.max_new = 5;
    c.optim.lr = 1e-2f, c.sample_every = 0, c.lora_rank = 2, c.lora_targets = "c_attn,c_proj";
    c.out_dir = a, c.steps = 4;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    c.out_dir = b, c.steps = 2;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    c.steps = 4, c.resume = 1;
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    snprintf(cmd, sizeof cmd, "cmp -s %s/policy/adapter_model.safetensors %s/policy/adapter_model.safetensors", a, b);
    cr_assert_eq(system(cmd), 0, "resumed adapters differ from the uninterrupted run's");
    rl_scratch_drop(&w);
}

/* ---- open-model conventions in RL ---- */

typedef struct {
    int special_in_prompt, padded_sampled, tok_vocab, eot;
} conv_probe;

static int check_conventions(const leash_rl_progress *p, void *vctx) {
    conv_probe *pr = vctx;
    const leash_rl_batch *b = p->batch;
    for (int r = 0; r < b->rows; r++)
        for (int t = 0; t < b->T; t++) {
            int id = b->tokens[(size_t)r * b->T + t], real = b->mask[(size_t)r * b->T + t];
            if (real && t < b->P && id == pr->eot) pr->special_in_prompt++;
            if (real && t >= b->P && id >= pr->tok_vocab) pr->padded_sampled++;
        }
    return 0;
}

/* A model whose vocabulary is larger than its tokenizer's (as Qwen2.5 pads it) samples padding ids like any
 * other and decodes them to nothing; a special token written in a prompt is its id. */
Test(open_models, padded_vocabulary_and_special_tokens_in_prompts, .timeout = 120) {
    rl_scratch w;
    rl_scratch_make(&w, "conv");
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, w.dir), 0);
    conv_probe pr = {.tok_vocab = leash_tokenizer_vocab_size(tok), .eot = leash_tokenizer_special_id(tok, "<|endoftext|>")};
    // the end of a text, the same rule for RL, reward-model training and scoring, and labelling: the model's
    // eos_token_id, else <|endoftext|>
    cr_assert_eq(leash_tokenizer_eos(tok, 5), 5);
    cr_assert_eq(leash_tokenizer_eos(tok, -1), pr.eot);
    cr_assert_eq(leash_tokenizer_eos(NULL, -1), -1);
    leash_tokenizer_free(tok);
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, w.dir), 0);
    leash_gpt_config cfg = *leash_gpt_cfg(m);
    leash_gpt_free(m);
    cfg.vocab_size = pr.tok_vocab + 64;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0);
    leash_gpt_init(m, 7);
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) leash_gpt_params(m)[i] *= 4.0f; // far from uniform: padding ids too
    cr_assert_eq(leash_gpt_save(m, w.dir), 0);
    leash_gpt_free(m);
    FILE *f = fopen(w.prompts, "w");
    fprintf(f, "{\"prompt\": \"<|endoftext|>The food\"}\n{\"prompt\": \"A<|endoftext|>B\"}\n");
    fclose(f);
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = length_reward;
    c.steps = 1, c.batch = 2, c.grpo.group = 4, c.max_new = 12, c.sample_every = 0;
    cr_assert_eq(leash_rl_train(&c, check_conventions, &pr, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(pr.special_in_prompt, 8, "each of the 8 rows has one <|endoftext|> in its prompt, as the special id");
    cr_assert(pr.padded_sampled > 0, "the test needs padding ids sampled (none in this run)");
    cr_log_info("%d padding ids sampled and decoded to nothing", pr.padded_sampled);
    rl_scratch_drop(&w);
}

/* ---- BF16 storage of frozen weights ---- */

/* A frozen model stored in BF16 computes exactly what the F32 model with its weights rounded to BF16
 * computes, bit for bit, in the full forward, in scoring and in KV-cache generation, in about half the
 * memory of its layers; and it refuses to be saved or copied. */
static void bf16_matches_rounded(int llama) {
    enum { L = 6 };
    leash_gpt *a = base_model_layers(llama, 6, L), *b = base_model_layers(llama, 6, L);
    for (int i = 0; i < leash_gpt_num_tensors(a); i++) { // round a's layer weights to BF16 by hand (ties to even)
        const leash_tensor_info *t = leash_gpt_tensor(a, i);
        if (!strstr(t->name, "h.") && !strstr(t->name, "layers.")) continue;
        for (size_t k = 0; k < t->numel; k++) {
            float *x = leash_gpt_params(a) + t->offset + k;
            uint32_t u;
            memcpy(&u, x, 4);
            u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
            memcpy(x, &u, 4);
        }
    }
    leash_gpt_freeze(a), leash_gpt_freeze(b);
    size_t before = leash_gpt_memory_bytes(b);
    cr_assert_eq(leash_gpt_store_bf16(b), 0, "%s", leash_errmsg());
    leash_gpt_set_bf16_compute(b, 0); // the storage, multiplied in F32 (bf16_compute/* tests the BF16 products)
    size_t after = leash_gpt_memory_bytes(b);
    size_t NV = (size_t)B * T * 40;
    float *want = malloc(NV * sizeof *want);
    cr_assert_eq(leash_gpt_forward(a, tokens, mask, B, T), 0);
    memcpy(want, leash_gpt_logits(a), NV * sizeof *want);
    cr_assert_eq(leash_gpt_forward(b, tokens, mask, B, T), 0, "%s", leash_errmsg());
    cr_assert_eq(memcmp(leash_gpt_logits(b), want, NV * sizeof *want), 0, "BF16 storage = F32 weights rounded to BF16");
    float lpa[B * T], lpb[B * T];
    cr_assert_eq(leash_gpt_token_logprobs(a, targets_, 0.9f, lpa, NULL), 0);
    cr_assert_eq(leash_gpt_token_logprobs(b, targets_, 0.9f, lpb, NULL), 0);
    cr_assert_eq(memcmp(lpa, lpb, sizeof lpa), 0);
    const int prompts[] = {0, 4, 8, 0, 3};
    const int lens[2] = {3, 2};
    leash_sample_config sc = leash_sample_defaults();
    sc.max_new_tokens = 6, sc.seed = 3;
    int oa[12], ob[12], la[2], lb[2];
    float pa[12], pb[12];
    cr_assert_eq(leash_generate(a, &sc, prompts, lens, 2, NULL, oa, pa, la), 0);
    cr_assert_eq(leash_generate(b, &sc, prompts, lens, 2, NULL, ob, pb, lb), 0, "%s", leash_errmsg());
    cr_assert(!memcmp(oa, ob, sizeof oa) && !memcmp(pa, pb, sizeof pa), "KV-cache generation from BF16 storage");
    cr_log_info("%s: frozen model %zu -> %zu bytes with BF16 layers", llama ? "llama" : "gpt2", before, after);
    size_t layer_weights = 0; // BF16 halves them, and one layer at a time comes back as F32 for computing
    for (int i = 0; i < leash_gpt_num_tensors(b); i++)
        if (leash_gpt_tensor(b, i)->bf16) layer_weights += leash_gpt_tensor(b, i)->numel;
    cr_assert(layer_weights > 0);
    cr_assert_eq(after, before - 2 * layer_weights + 4 * layer_weights / L, "%zu -> %zu", before, after);
    cr_assert(after < before * 3 / 4, "%zu -> %zu", before, after);
    cr_assert_neq(leash_gpt_save(b, "/tmp/leash-bf16-never-written"), 0);
    leash_gpt *c;
    cr_assert_neq(leash_gpt_copy_with_head(&c, b, 0, 1), 0);
    free(want);
    leash_gpt_free(a), leash_gpt_free(b);
}
Test(bf16, frozen_storage_is_the_rounded_model_gpt2) { bf16_matches_rounded(0); }
Test(bf16, frozen_storage_is_the_rounded_model_llama) { bf16_matches_rounded(1); }

Test(bf16, refused_for_weights_that_train) {
    leash_gpt *m = base_model(1, 7);
    cr_assert_neq(leash_gpt_store_bf16(m), 0);
    cr_assert(strstr(leash_errmsg(), "frozen"), "%s", leash_errmsg());
    leash_gpt_free(m);
}

/* An adapter directory as --policy (here one without a tokenizer, as PEFT writes them) continues training
 * those adapters: the reference is its base, so step 1's KL is that of the trained adapters, not 0, and the
 * base's tokenizer goes with the result. */
static int first_kl(const leash_rl_progress *p, void *ctx) {
    if (p->step == 1) *(double *)ctx = p->kl_exact;
    return 0;
}

Test(lora, an_adapter_directory_continues_training, .timeout = 120) {
    rl_scratch w;
    rl_scratch_make(&w, "lora-cont");
    char adir[200], out2[200], cmd[600];
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = length_reward, c.batch = 4, c.grpo.group = 3;
    c.max_new = 6, c.steps = 3, c.optim.lr = 3e-2f, c.sample_every = 0, c.lora_rank = 4, c.lora_targets = "c_attn,c_fc";
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    snprintf(adir, sizeof adir, "%s/peft", w.dir);
    snprintf(cmd, sizeof cmd, "mkdir %s && cp %s/policy/adapter_* %s/", adir, w.out, adir);
    cr_assert_eq(system(cmd), 0);
    snprintf(out2, sizeof out2, "%s/run2", w.dir);
    double kl1 = -1.0;
    // other LoRA options on an adapter directory would be ignored (issue 16, item 8: r stayed 4): refused
    c.policy_dir = adir, c.out_dir = out2, c.lora_rank = 8, c.lora_targets = "all-linear", c.steps = 1;
    cr_assert_neq(leash_rl_train(&c, NULL, NULL, NULL), 0);
    cr_assert(strstr(leash_errmsg(), "r = 4") && strstr(leash_errmsg(), "c_attn,c_fc") && strstr(leash_errmsg(), "--lora-r 8"),
              "%s", leash_errmsg());
    c.lora_rank = 4, c.lora_targets = "c_fc,c_attn"; // the same adapters, asked for again: fine
    snprintf(cmd, sizeof cmd, "rm -rf %s", out2);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(leash_rl_train(&c, NULL, NULL, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(system(cmd), 0);
    c.lora_rank = 0, c.lora_targets = NULL;
    cr_assert_eq(leash_rl_train(&c, first_kl, &kl1, NULL), 0, "%s", leash_errmsg());
    cr_assert(kl1 > 1e-6, "continued adapters start away from the base: KL %g", kl1);
    snprintf(cmd, sizeof cmd, "test -f %s/policy/adapter_model.safetensors && test -f %s/policy/vocab.json", out2, out2);
    cr_assert_eq(system(cmd), 0, "the continued policy is an adapter directory with the base's tokenizer");
    rl_scratch_drop(&w);
}
