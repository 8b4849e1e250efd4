/* leash's transformer against independent PyTorch implementations (float64): tests/ref/gpt2_ref.py for
 * GPT-2 and tests/ref/llama_ref.py for the Llama family. Logits, loss, scalar head and every parameter
 * gradient must agree to a relative error of 1e-4 (worst entry over the tensor's largest), with left and
 * right padding in the batch: GPT-2 on two configurations (one with its vocabulary of 50257), the Llama
 * family on configurations with grouped-query attention, tied and untied heads, attention biases on and
 * off (Qwen2's q/k/v biases, Llama's attention_bias and mlp_bias), a head size other than C / NH, and
 * rope_theta with no, linear and llama3 scaling. Skips with a printed reason when python3-torch is missing, unless
 * LEASH_REQUIRE_REF=1 (CI sets it), where a missing reference is a failure. */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "testutil.h"
#include "leash/gpt.h"
#include "leash/rng.h"
#include "leash/safetensors.h"

static int have_torch(void) { return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0; }

/* testutil.h's rel_err_f against a float reference (PyTorch's float32 tensors), widened to double. */
static double rel_err(const float *a, const float *b, size_t n) {
    double *wide = malloc(n * sizeof *wide);
    cr_assert_not_null(wide);
    for (size_t i = 0; i < n; i++) wide[i] = b[i];
    double err = rel_err_f(a, wide, (int)n);
    free(wide);
    return err;
}

static cJSON *int_matrix(const int *x, int B, int T) {
    cJSON *rows = cJSON_CreateArray();
    for (int b = 0; b < B; b++) cJSON_AddItemToArray(rows, cJSON_CreateIntArray(x + b * T, T));
    return rows;
}

static void check_against_torch(const leash_gpt_config *cfg, int B, int T, uint64_t seed) {
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, cfg), 0);
    leash_gpt_init(m, seed);
    // make LayerNorm and biases non-trivial so their gradients are tested at generic values
    leash_rng rng;
    leash_rng_seed(&rng, seed, 999);
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        if (t->ndim == 1)
            for (size_t k = 0; k < t->numel; k++) leash_gpt_params(m)[t->offset + k] += (float)(0.1 * leash_rng_normal(&rng));
    }
    char dir[] = "/tmp/leash-ref-XXXXXX";
    cr_assert(mkdtemp(dir));
    cr_assert_eq(leash_gpt_save(m, dir), 0);

    // batch: row 0 full, row 1 left-padded by 2, row 2 (if any) right-padded by 3
    int N = B * T, V = cfg->vocab_size;
    int *tokens = malloc(N * sizeof *tokens), *targets = malloc(N * sizeof *targets);
    uint8_t *mask = malloc(N);
    int *mask_i = malloc(N * sizeof *mask_i);
    float *vw = malloc(N * sizeof *vw);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t;
            tokens[i] = (int)(leash_rng_uniform(&rng) * V);
            mask[i] = !((b == 1 && t < 2) || (b == 2 && t >= T - 3));
            mask_i[i] = mask[i];
            vw[i] = mask[i] ? (float)leash_rng_normal(&rng) : 0.0f;
        }
    for (int i = 0; i < N; i++) targets[i] = mask[i] && (i + 1) % T && mask[i + 1] ? tokens[i + 1] : -1;
    cJSON *in = cJSON_CreateObject();
    cJSON_AddItemToObject(in, "tokens", int_matrix(tokens, B, T));
    cJSON_AddItemToObject(in, "mask", int_matrix(mask_i, B, T));
    cJSON_AddItemToObject(in, "targets", int_matrix(targets, B, T));
    cJSON *vws = cJSON_AddArrayToObject(in, "value_weights");
    for (int b = 0; b < B; b++) cJSON_AddItemToArray(vws, cJSON_CreateFloatArray(vw + b * T, T));
    char path[256], *text = cJSON_Print(in);
    snprintf(path, sizeof path, "%s/inputs.json", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(in);

    // leash: forward, loss, backward
    double loss;
    cr_assert_eq(leash_gpt_forward(m, tokens, mask, B, T), 0);
    cr_assert_eq(leash_gpt_cross_entropy(m, targets, &loss, NULL), 0, "%s", leash_errmsg());
    if (cfg->scalar_head) {
        for (int i = 0; i < N; i++) loss += vw[i] * leash_gpt_values(m)[i];
        memcpy(leash_gpt_dvalues(m), vw, N * sizeof *vw);
    }
    leash_gpt_zero_grad(m);
    cr_assert_eq(leash_gpt_backward(m), 0);

    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd '%s' && /usr/bin/python3 tests/ref/%s_ref.py '%s'", LEASH_SRCDIR,
             cfg->arch == LEASH_ARCH_LLAMA ? "llama" : "gpt2", dir);
    cr_assert_eq(system(cmd), 0, "the PyTorch reference failed: %s", cmd);
    leash_st_file st;
    snprintf(path, sizeof path, "%s/ref.safetensors", dir);
    cr_assert_eq(leash_st_open(&st, path), 0);
    size_t cap = (size_t)N * V > leash_gpt_num_params(m) ? (size_t)N * V : leash_gpt_num_params(m);
    float *ref = malloc(cap * sizeof *ref);
    const leash_st_entry *e = leash_st_find(&st, "logits");
    cr_assert(e && e->numel == (size_t)N * V);
    cr_assert_eq(leash_st_read_f32(&st, e, ref), 0);
    double err = rel_err(leash_gpt_logits(m), ref, (size_t)N * V);
    cr_log_info("%s V=%d C=%d L=%d: logits relative error %.3g", cfg->model_type, V, cfg->n_embd, cfg->n_layer, err);
    cr_assert(err <= 1e-4, "logits: relative error %g", err);
    cr_assert_eq(leash_st_read_f32(&st, leash_st_find(&st, "loss"), ref), 0);
    cr_assert(fabs(loss - ref[0]) <= 1e-4 * fabs(ref[0]), "loss %.9g vs PyTorch %.9g", loss, (double)ref[0]);
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        char name[128];
        snprintf(name, sizeof name, "grad.%s", t->name);
        e = leash_st_find(&st, name);
        cr_assert(e && e->numel == t->numel, "reference lacks %s", name);
        cr_assert_eq(leash_st_read_f32(&st, e, ref), 0);
        err = rel_err(leash_gpt_grads(m) + t->offset, ref, t->numel);
        if (err > worst) worst = err, worst_name = t->name;
        cr_assert(err <= 1e-4, "gradient of %s: relative error %g", t->name, err);
    }
    cr_log_info("worst parameter-gradient relative error %.3g (%s)", worst, worst_name);
    leash_st_close(&st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    free(tokens), free(targets), free(mask), free(mask_i), free(vw), free(ref);
    leash_gpt_free(m);
}

Test(gpt_vs_pytorch, small_with_scalar_head, .timeout = 120) {
    if (!have_torch()) LEASH_SKIP_OR_FAIL("python3-torch is not installed (apt-get install python3-torch)");
    leash_gpt_config cfg = {.vocab_size = 61, .n_positions = 16, .n_embd = 32, .n_layer = 2, .n_head = 4,
                            .bos_token_id = -1, .eos_token_id = 60, .layer_norm_epsilon = 1e-5f, .scalar_head = 1};
    check_against_torch(&cfg, 3, 9, 1);
}

Test(gpt_vs_pytorch, gpt2_vocabulary, .timeout = 120) {
    if (!have_torch()) LEASH_SKIP_OR_FAIL("python3-torch is not installed (apt-get install python3-torch)");
    leash_gpt_config cfg = {.vocab_size = 50257, .n_positions = 8, .n_embd = 16, .n_layer = 2, .n_head = 2,
                            .bos_token_id = 50256, .eos_token_id = 50256, .layer_norm_epsilon = 1e-5f, .scalar_head = 0};
    check_against_torch(&cfg, 3, 6, 2);
}

/* The Llama family: sizes shared by the cases below, each changing what it tests. */
static leash_gpt_config llama_base(const char *type) {
    leash_gpt_config c = {.vocab_size = 67, .n_positions = 16, .n_embd = 32, .n_layer = 2, .n_head = 4,
                          .arch = LEASH_ARCH_LLAMA, .n_kv_head = 2, .n_inner = 40, .bos_token_id = 1,
                          .eos_token_id = 2, .layer_norm_epsilon = 1e-6f, .rope_theta = 10000.0f};
    snprintf(c.model_type, sizeof c.model_type, "%s", type);
    return c;
}

Test(gpt_vs_pytorch, llama_gqa_untied_head_scalar_head, .timeout = 120) {
    if (!have_torch()) LEASH_SKIP_OR_FAIL("python3-torch is not installed (apt-get install python3-torch)");
    leash_gpt_config c = llama_base("llama");
    c.untied_head = 1, c.scalar_head = 1;
    check_against_torch(&c, 3, 9, 3);
}

Test(gpt_vs_pytorch, qwen2_qkv_bias_tied_theta_1e6, .timeout = 120) {
    if (!have_torch()) LEASH_SKIP_OR_FAIL("python3-torch is not installed (apt-get install python3-torch)");
    leash_gpt_config c = llama_base("qwen2");
    c.qkv_bias = 1, c.n_kv_head = 1, c.rope_theta = 1e6f;
    check_against_torch(&c, 3, 9, 4);
}

Test(gpt_vs_pytorch, llama_all_biases_head_dim_llama3_rope, .timeout = 120) {
    if (!have_torch()) LEASH_SKIP_OR_FAIL("python3-torch is not installed (apt-get install python3-torch)");
    leash_gpt_config c = llama_base("llama");
    // head size 12 (not 32 / 4, so q is 48 wide); wavelengths 6.3 .. 4600 cover all three llama3 bands of 64
    c.head_dim = 12, c.qkv_bias = c.o_bias = c.mlp_bias = 1, c.untied_head = 1;
    c.rope_scaling = LEASH_ROPE_LLAMA3, c.rope_factor = 8.0f, c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f, c.rope_original_max_positions = 64;
    check_against_torch(&c, 3, 12, 5);
}

Test(gpt_vs_pytorch, llama_linear_rope_multi_head, .timeout = 120) {
    if (!have_torch()) LEASH_SKIP_OR_FAIL("python3-torch is not installed (apt-get install python3-torch)");
    leash_gpt_config c = llama_base("llama");
    c.n_kv_head = 0, c.rope_scaling = LEASH_ROPE_LINEAR, c.rope_factor = 2.5f, c.scalar_head = 1;
    check_against_torch(&c, 2, 10, 6);
}
