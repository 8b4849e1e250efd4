/* Interoperability with the field's own libraries: Hugging Face transformers and PEFT (tests/ref/
 * hf_transformers_ref.py, in the venv scripts/deps.sh --ref makes; pinned to versions that run on Debian's
 * torch 1.13). Directories transformers writes (sharded, BF16, Llama with llama3 rope, Qwen2, Mistral,
 * GPT-2) load in leash with the same logits; directories leash writes load in transformers, and leash's
 * LoRA adapters in PEFT, with the same logits (relative error <= 1e-4 of the largest logit). Skips with a
 * printed reason when the venv is missing, unless LEASH_REQUIRE_REF=1 (CI). */
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

enum { B = 2, T = 8 };
static const int rows[B * T] = {5, 9, 33, 2, 17, 38, 11, 4, /**/ 1, 2, 3, 4, 5, 6, 7, 8};

static const char *hf_python(void) {
    const char *p = getenv("LEASH_HF_PYTHON");
    return p && *p ? p : "/opt/leash-hf/bin/python";
}

static int have_hf(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import transformers, peft' >/dev/null 2>&1", hf_python());
    return system(cmd) == 0;
}

#define NEED_HF()                                                                                                       \
    if (!have_hf())                                                                                                     \
    LEASH_SKIP_OR_FAIL("Hugging Face transformers and peft are not in %s (scripts/deps.sh --ref makes that venv; or set "  \
                       "LEASH_HF_PYTHON)",                                                                              \
                       hf_python())

/* Runs the reference (mode "logits DIR" or "write KIND DIR") on rows; returns its logits (B, T, V). */
static float *reference(const char *work, const char *args, int V) {
    char path[512], out[512], cmd[2048];
    snprintf(path, sizeof path, "%s/tokens.json", work);
    snprintf(out, sizeof out, "%s/logits.json", work);
    FILE *f = fopen(path, "w");
    fprintf(f, "[");
    for (int b = 0; b < B; b++) {
        fprintf(f, "%s[", b ? ", " : "");
        for (int t = 0; t < T; t++) fprintf(f, "%s%d", t ? ", " : "", rows[b * T + t]);
        fprintf(f, "]");
    }
    fprintf(f, "]\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' tests/ref/hf_transformers_ref.py %s '%s' '%s' 2>'%s/stderr.txt'",
             LEASH_SRCDIR, hf_python(), args, path, out, work);
    cr_assert_eq(system(cmd), 0, "the transformers reference failed: %s (see %s/stderr.txt)", cmd, work);
    char *text;
    cr_assert_eq(leash_read_file(out, 1 << 26, &text, NULL), 0);
    cJSON *j = cJSON_Parse(text);
    free(text);
    float *z = malloc((size_t)B * T * V * sizeof *z);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const cJSON *row = cJSON_GetArrayItem(cJSON_GetArrayItem(j, b), t);
            cr_assert_eq(cJSON_GetArraySize(row), V, "the reference's vocabulary differs");
            for (int v = 0; v < V; v++) z[((size_t)b * T + t) * V + v] = (float)cJSON_GetArrayItem(row, v)->valuedouble;
        }
    cJSON_Delete(j);
    return z;
}

static double compare(leash_gpt *m, const float *want) {
    cr_assert_eq(leash_gpt_forward(m, rows, NULL, B, T), 0, "%s", leash_errmsg());
    size_t n = (size_t)B * T * leash_gpt_cfg(m)->vocab_size;
    double worst = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)leash_gpt_logits(m)[i] - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    return worst / scale;
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

Test(hf_interop, leash_loads_what_transformers_writes, .timeout = 300) {
    NEED_HF();
    const char *kinds[] = {"llama", "qwen2", "mistral", "gpt2"};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        char dir[64], mdir[128], args[256];
        scratch(dir);
        snprintf(mdir, sizeof mdir, "%s/model", dir);
        snprintf(args, sizeof args, "write %s '%s'", kinds[k], mdir);
        float *want = reference(dir, args, 97);
        leash_gpt *m;
        cr_assert_eq(leash_gpt_load(&m, mdir), 0, "%s: %s", kinds[k], leash_errmsg());
        double err = compare(m, want);
        cr_log_info("%s written by transformers (sharded%s): leash's logits within %.2g", kinds[k],
                    k == 0 ? ", BF16" : "", err);
        cr_assert(err <= 1e-4, "%s: relative error %g", kinds[k], err);
        leash_gpt_free(m);
        free(want);
        drop(dir);
    }
}

static leash_gpt *random_model(leash_gpt_config c, uint64_t seed) {
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &c), 0, "%s", leash_errmsg());
    leash_gpt_init(m, seed);
    leash_rng r;
    leash_rng_seed(&r, seed, 1);
    for (int i = 0; i < leash_gpt_num_tensors(m); i++) { // norms and biases away from 1 and 0
        const leash_tensor_info *t = leash_gpt_tensor(m, i);
        if (t->ndim == 1)
            for (size_t k = 0; k < t->numel; k++) leash_gpt_params(m)[t->offset + k] += (float)(0.1 * leash_rng_normal(&r));
    }
    return m;
}

Test(hf_interop, transformers_and_peft_load_what_leash_writes, .timeout = 300) {
    NEED_HF();
    leash_gpt_config llama = {.vocab_size = 97, .n_positions = 64, .n_embd = 32, .n_layer = 2, .n_head = 4,
                              .arch = LEASH_ARCH_LLAMA, .n_kv_head = 2, .n_inner = 48, .bos_token_id = 1,
                              .eos_token_id = 2, .layer_norm_epsilon = 1e-5f, .rope_theta = 500000.0f, .untied_head = 1,
                              .rope_scaling = LEASH_ROPE_LLAMA3, .rope_factor = 8.0f, .rope_low_freq_factor = 1.0f,
                              .rope_high_freq_factor = 4.0f, .rope_original_max_positions = 16};
    snprintf(llama.model_type, sizeof llama.model_type, "llama");
    leash_gpt_config qwen2 = llama;
    qwen2.rope_scaling = 0, qwen2.untied_head = 0, qwen2.qkv_bias = 1, qwen2.rope_theta = 1e6f;
    snprintf(qwen2.model_type, sizeof qwen2.model_type, "qwen2");
    leash_gpt_config gpt2 = {.vocab_size = 97, .n_positions = 64, .n_embd = 32, .n_layer = 2, .n_head = 4,
                             .bos_token_id = 1, .eos_token_id = 2, .layer_norm_epsilon = 1e-5f};
    const leash_gpt_config *cfgs[] = {&llama, &qwen2, &gpt2};
    const char *names[] = {"llama (GQA, untied, llama3 rope)", "qwen2 (q/k/v biases, tied)", "gpt2"};
    for (int k = 0; k < 3; k++) {
        char dir[64], mdir[128], adir[128], args[300];
        scratch(dir);
        snprintf(mdir, sizeof mdir, "%s/model", dir);
        leash_gpt *m = random_model(*cfgs[k], (uint64_t)k + 10);
        cr_assert_eq(leash_gpt_save(m, mdir), 0, "%s", leash_errmsg());
        snprintf(args, sizeof args, "logits '%s'", mdir);
        float *want = reference(dir, args, 97);
        double err = compare(m, want);
        cr_log_info("%s written by leash: transformers' logits within %.2g", names[k], err);
        cr_assert(err <= 1e-4, "%s: relative error %g", names[k], err);
        free(want);
        // its LoRA adapter, trained-looking (B != 0), in PEFT
        leash_gpt *base, *lm;
        cr_assert_eq(leash_gpt_load(&base, mdir), 0);
        leash_gpt_config lc = {.lora_rank = 4, .lora_alpha = 8.0f};
        cr_assert_eq(leash_lora_parse_targets("all-linear", cfgs[k]->arch, &lc.lora_targets), 0);
        cr_assert_eq(leash_gpt_add_lora(&lm, base, &lc, 3), 0, "%s", leash_errmsg());
        leash_rng r;
        leash_rng_seed(&r, 4, 4);
        for (int i = leash_gpt_first_trainable(lm); i < leash_gpt_num_tensors(lm); i++) {
            const leash_tensor_info *t = leash_gpt_tensor(lm, i);
            if (strstr(t->name, "lora_B"))
                for (size_t j = 0; j < t->numel; j++) leash_gpt_params(lm)[t->offset + j] = (float)(0.2 * leash_rng_normal(&r));
        }
        snprintf(adir, sizeof adir, "%s/adapter", dir);
        cr_assert_eq(leash_gpt_save(lm, adir), 0, "%s", leash_errmsg());
        snprintf(args, sizeof args, "logits '%s'", adir);
        want = reference(dir, args, 97);
        err = compare(lm, want);
        cr_log_info("%s LoRA adapter written by leash: PEFT's logits within %.2g", names[k], err);
        cr_assert(err <= 1e-4, "%s LoRA: relative error %g", names[k], err);
        free(want);
        leash_gpt_free(lm), leash_gpt_free(base), leash_gpt_free(m);
        drop(dir);
    }
}
