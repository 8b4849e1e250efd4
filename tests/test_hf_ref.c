/* Interoperability with the field's own libraries: Hugging Face transformers and PEFT (tests/ref/
 * hf_transformers_ref.py), each check run with both venvs scripts/deps.sh --ref makes: transformers 4.44.2 +
 * PEFT 0.12.0 on Debian's torch 1.13 (suite hf_interop), and transformers 5 + the current PEFT on PyPI's torch
 * (suite hf5_interop). Directories transformers writes (sharded, BF16, Llama with default, linear and llama3
 * rope, Qwen2 with theta 1e6, Mistral, GPT-2, GPT-2 with the attention mask buffers older transformers saved)
 * load in leash with the same logits; directories leash writes load in transformers, and its LoRA adapters in
 * PEFT, with the same logits; adapters PEFT writes load in leash with the same logits. Same means a relative
 * error <= 1e-5 of the largest logit (the reference computes in float64). transformers 5 writes rope_theta and
 * rope scaling only inside "rope_parameters": the thetas away from 10000 and the scaled kinds catch a reader
 * that misses them. Skips with a printed reason when a venv is missing, unless LEASH_REQUIRE_REF=1 (CI). */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/rng.h"
#include "testutil.h"

enum { B = 2, T = 8, V = 97 };
static const int rows[B * T] = {5, 9, 33, 2, 17, 38, 11, 4, /**/ 1, 2, 3, 4, 5, 6, 7, 8};
static const double tol = 1e-5;

/* One reference: a Python with transformers and PEFT, overridable by an environment variable. */
typedef struct {
    const char *name, *env, *python;
} hf_ref;
static const hf_ref hf4 = {"transformers 4.44.2 / PEFT 0.12.0", "LEASH_HF_PYTHON", "/opt/leash-hf/bin/python"};
static const hf_ref hf5 = {"transformers 5 / current PEFT", "LEASH_HF5_PYTHON", "/opt/leash-hf5/bin/python"};

static const char *python(const hf_ref *ref) {
    const char *p = getenv(ref->env);
    return p && *p ? p : ref->python;
}

static int have(const hf_ref *ref) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, // finds them without importing them (seconds with PyPI's torch)
             "'%s' -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec(\"transformers\") and "
             "u.find_spec(\"peft\")))' >/dev/null 2>&1",
             python(ref));
    return system(cmd) == 0;
}

#define NEED(ref)                                                                                                       \
    if (!have(ref))                                                                                                     \
    LEASH_SKIP_OR_FAIL("%s is not in %s (scripts/deps.sh --ref makes that venv; or set %s)", (ref)->name, python(ref), \
                       (ref)->env)

/* Runs the reference: "MODE WORK/tokens.json ARGS" (see its usage); its stderr goes to WORK/stderr.txt. */
static void run_ref(const hf_ref *ref, const char *work, const char *mode, const char *args) {
    char path[512], cmd[4096];
    snprintf(path, sizeof path, "%s/tokens.json", work);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "[");
    for (int b = 0; b < B; b++) {
        fprintf(f, "%s[", b ? ", " : "");
        for (int t = 0; t < T; t++) fprintf(f, "%s%d", t ? ", " : "", rows[b * T + t]);
        fprintf(f, "]");
    }
    fprintf(f, "]\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' tests/ref/hf_transformers_ref.py %s '%s' %s 2>'%s/stderr.txt'",
             LEASH_SRCDIR, python(ref), mode, path, args, work);
    cr_assert_eq(system(cmd), 0, "%s: the reference failed: %s (see %s/stderr.txt)", ref->name, cmd, work);
}

/* The reference's logits for directory dir (dir.logits.json), (B, T, V). */
static float *ref_logits(const char *dir) {
    char path[512], *text;
    snprintf(path, sizeof path, "%s.logits.json", dir);
    cr_assert_eq(leash_read_file(path, 1 << 26, &text, NULL), 0, "%s", leash_errmsg());
    cJSON *j = cJSON_Parse(text);
    free(text);
    float *z = malloc((size_t)B * T * V * sizeof *z);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const cJSON *row = cJSON_GetArrayItem(cJSON_GetArrayItem(j, b), t);
            cr_assert_eq(cJSON_GetArraySize(row), V, "%s: the reference's vocabulary differs", path);
            for (int v = 0; v < V; v++) z[((size_t)b * T + t) * V + v] = (float)cJSON_GetArrayItem(row, v)->valuedouble;
        }
    cJSON_Delete(j);
    return z;
}

/* m's logits against the reference's for dir: the worst error relative to the largest logit, <= tol. */
static void expect_same(leash_gpt *m, const char *dir, const char *what, const hf_ref *ref) {
    float *want = ref_logits(dir);
    cr_assert_eq(leash_gpt_forward(m, rows, NULL, B, T), 0, "%s: %s", what, leash_errmsg());
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < (size_t)B * T * V; i++) {
        worst = fmax(worst, fabs((double)leash_gpt_logits(m)[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    free(want);
    cr_log_info("%s: %s: logits within %.2g", ref->name, what, worst / scale);
    cr_expect(worst / scale <= tol, "%s: %s: relative error %g > %g", ref->name, what, worst / scale, tol);
}

/* Loads dir into *m; a failure is reported and the other directories are still checked. */
static int expect_load(leash_gpt **m, const char *dir, const char *what, const hf_ref *ref) {
    int rc = leash_gpt_load(m, dir);
    cr_expect_eq(rc, 0, "%s: %s: %s", ref->name, what, leash_errmsg());
    return rc == 0;
}

static void scratch(char *dir) {
    strcpy(dir, "/tmp/leash-hf-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void drop(const char *dir) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- transformers writes, leash loads -------------------------------------------------------------- */

static void loads_what_transformers_writes(const hf_ref *ref) {
    static const char *const kinds[] = {"llama", "llama-linear", "llama3", "qwen2", "mistral",
                                        "gpt2", "gpt2-mask-u8", "gpt2-mask-bool", "gpt2-mask-f32"};
    enum { N = sizeof kinds / sizeof kinds[0] };
    char dir[64], args[512], mdir[128], what[128];
    scratch(dir);
    int at = snprintf(args, sizeof args, "'%s'", dir);
    for (int k = 0; k < N; k++) at += snprintf(args + at, sizeof args - at, " %s", kinds[k]);
    run_ref(ref, dir, "write", args);
    for (int k = 0; k < N; k++) {
        snprintf(mdir, sizeof mdir, "%s/%s", dir, kinds[k]);
        snprintf(what, sizeof what, "%s written by transformers", kinds[k]);
        leash_gpt *m;
        if (!expect_load(&m, mdir, what, ref)) continue;
        expect_same(m, mdir, what, ref);
        leash_gpt_free(m);
    }
    drop(dir);
}

Test(hf_interop, leash_loads_what_transformers_writes, .timeout = 300) {
    NEED(&hf4);
    loads_what_transformers_writes(&hf4);
}

Test(hf5_interop, leash_loads_what_transformers_writes, .timeout = 300) {
    NEED(&hf5);
    loads_what_transformers_writes(&hf5);
}

/* ---- leash writes, transformers and PEFT load, and PEFT writes adapters leash loads ----------------- */

enum { NMODELS = 4 };
static const char *const model_names[NMODELS] = {"llama3", "llama-linear", "qwen2", "gpt2"};

/* The models leash writes: Llama (GQA, untied) with llama3 and with linear rope scaling, Qwen2 (q/k/v biases,
 * tied, theta 1e6), GPT-2; norms and biases away from 1 and 0. */
static leash_gpt *leash_model(int k) {
    leash_gpt_config llama = {.vocab_size = V, .n_positions = 64, .n_embd = 32, .n_layer = 2, .n_head = 4,
                              .arch = LEASH_ARCH_LLAMA, .n_kv_head = 2, .n_inner = 48, .bos_token_id = 1,
                              .eos_token_id = 2, .layer_norm_epsilon = 1e-5f, .rope_theta = 500000.0f, .untied_head = 1,
                              .rope_scaling = LEASH_ROPE_LLAMA3, .rope_factor = 8.0f, .rope_low_freq_factor = 1.0f,
                              .rope_high_freq_factor = 4.0f, .rope_original_max_positions = 16};
    snprintf(llama.model_type, sizeof llama.model_type, "llama");
    leash_gpt_config linear = llama;
    linear.rope_scaling = LEASH_ROPE_LINEAR, linear.rope_factor = 2.0f, linear.rope_theta = 100000.0f;
    leash_gpt_config qwen2 = llama;
    qwen2.rope_scaling = 0, qwen2.untied_head = 0, qwen2.qkv_bias = 1, qwen2.rope_theta = 1e6f;
    snprintf(qwen2.model_type, sizeof qwen2.model_type, "qwen2");
    leash_gpt_config gpt2 = {.vocab_size = V, .n_positions = 64, .n_embd = 32, .n_layer = 2, .n_head = 4,
                             .bos_token_id = 1, .eos_token_id = 2, .layer_norm_epsilon = 1e-5f};
    const leash_gpt_config *cfgs[NMODELS] = {&llama, &linear, &qwen2, &gpt2};
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, cfgs[k]), 0, "%s", leash_errmsg());
    leash_gpt_init(m, (uint64_t)k + 10);
    leash_rng r;
    leash_rng_seed(&r, (uint64_t)k + 10, 1);
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        if (t->ndim == 1)
            for (size_t j = 0; j < t->numel; j++) leash_gpt_params(m)[t->offset + j] += (float)(0.1 * leash_rng_normal(&r));
    }
    return m;
}

/* dir/NAME: leash's model k; dir/NAME-lora: its all-linear LoRA adapters, trained-looking (B != 0). */
static void write_leash_model(const char *dir, int k, leash_gpt **model, leash_gpt **lora) {
    char mdir[128], adir[160];
    snprintf(mdir, sizeof mdir, "%s/%s", dir, model_names[k]);
    *model = leash_model(k);
    cr_assert_eq(leash_gpt_save(*model, mdir), 0, "%s", leash_errmsg());
    leash_gpt *base;
    cr_assert_eq(leash_gpt_load(&base, mdir), 0, "%s", leash_errmsg());
    leash_lora_config lc = {.rank = 4, .alpha = 8.0f};
    cr_assert_eq(leash_lora_parse_targets("all-linear", leash_gpt_cfg(base)->arch, &lc.targets), 0);
    cr_assert_eq(leash_gpt_add_lora(lora, base, &lc, 3), 0, "%s", leash_errmsg());
    leash_gpt_free(base);
    leash_rng r;
    leash_rng_seed(&r, 4, 4);
    for (int i = leash_gpt_first_trainable(*lora); i < leash_gpt_num_tensors(*lora); i++) {
        const leash_tensor_info *t = leash_gpt_tensor(*lora, i);
        if (strstr(t->name, "lora_B"))
            for (size_t j = 0; j < t->numel; j++) leash_gpt_params(*lora)[t->offset + j] = (float)(0.2 * leash_rng_normal(&r));
    }
    snprintf(adir, sizeof adir, "%s-lora", mdir);
    cr_assert_eq(leash_gpt_save(*lora, adir), 0, "%s", leash_errmsg());
}

static void transformers_and_peft_load_what_leash_writes(const hf_ref *ref) {
    char dir[64], args[1024] = "", path[160], what[128];
    scratch(dir);
    leash_gpt *m[NMODELS], *lm[NMODELS];
    for (int k = 0, at = 0; k < NMODELS; k++) {
        write_leash_model(dir, k, &m[k], &lm[k]);
        at += snprintf(args + at, sizeof args - at, " '%s/%s' '%s/%s-lora'", dir, model_names[k], dir, model_names[k]);
    }
    run_ref(ref, dir, "logits", args);
    for (int k = 0; k < NMODELS; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, model_names[k]);
        snprintf(what, sizeof what, "%s written by leash, in transformers", model_names[k]);
        expect_same(m[k], path, what, ref);
        snprintf(path, sizeof path, "%s/%s-lora", dir, model_names[k]);
        snprintf(what, sizeof what, "%s LoRA adapters written by leash, in PEFT", model_names[k]);
        expect_same(lm[k], path, what, ref);
        leash_gpt_free(lm[k]), leash_gpt_free(m[k]);
    }
    drop(dir);
}

Test(hf_interop, transformers_and_peft_load_what_leash_writes, .timeout = 300) {
    NEED(&hf4);
    transformers_and_peft_load_what_leash_writes(&hf4);
}

Test(hf5_interop, transformers_and_peft_load_what_leash_writes, .timeout = 300) {
    NEED(&hf5);
    transformers_and_peft_load_what_leash_writes(&hf5);
}

/* PEFT's adapters on leash's models, on every linear layer but the head: targets "names" lists their short
 * names in target_modules, "all-linear" leaves the choice to PEFT (which writes what it chose). */
static void leash_loads_adapters_peft_writes(const hf_ref *ref, const char *targets) {
    char dir[64], args[1024], path[160], what[128];
    scratch(dir);
    int at = snprintf(args, sizeof args, "%s", targets);
    for (int k = 0; k < NMODELS; k++) {
        leash_gpt *m, *lm;
        write_leash_model(dir, k, &m, &lm);
        leash_gpt_free(lm), leash_gpt_free(m);
        at += snprintf(args + at, sizeof args - at, " '%s/%s'", dir, model_names[k]);
    }
    run_ref(ref, dir, "peft", args);
    for (int k = 0; k < NMODELS; k++) {
        snprintf(path, sizeof path, "%s/%s-peft", dir, model_names[k]);
        snprintf(what, sizeof what, "%s LoRA adapters written by PEFT (%s)", model_names[k], targets);
        leash_gpt *m;
        if (!expect_load(&m, path, what, ref)) continue;
        expect_same(m, path, what, ref);
        leash_gpt_free(m);
    }
    drop(dir);
}

Test(hf_interop, leash_loads_adapters_peft_writes, .timeout = 300) {
    NEED(&hf4);
    leash_loads_adapters_peft_writes(&hf4, "names");
}

Test(hf_interop, leash_loads_all_linear_adapters_peft_writes, .timeout = 300) {
    NEED(&hf4);
    leash_loads_adapters_peft_writes(&hf4, "all-linear");
}

Test(hf5_interop, leash_loads_adapters_peft_writes, .timeout = 300) {
    NEED(&hf5);
    leash_loads_adapters_peft_writes(&hf5, "names");
}

/* For all-linear, PEFT 0.21 writes every adapted module's full path in target_modules
 * ("model.layers.0.self_attn.q_proj", ..., "transformer.h.0.attn.c_attn"); PEFT 0.12 wrote the short names. */
Test(hf5_interop, leash_loads_all_linear_adapters_peft_writes, .timeout = 300) {
    NEED(&hf5);
    leash_loads_adapters_peft_writes(&hf5, "all-linear");
}
