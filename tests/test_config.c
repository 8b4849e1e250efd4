/* config.json as today's writers write it, and the files old ones left: transformers 5's rope_parameters
 * (read, never defaulted), keys leash does not understand (refused, never skipped), eos_token_id lists
 * (every id ends a text, also in the sampler) and GPT-2 checkpoints carrying their attention buffers. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/config.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/safetensors.h"
#include "leash/sample.h"

/* A config.json of the Llama family with the sizes filled in and `extra` (JSON members) appended. */
static int load_llama_text(const char *dir, const char *extra, leash_gpt_config *c) {
    char path[512], text[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(text, sizeof text,
             "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 96, "
             "\"num_hidden_layers\": 2, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, "
             "\"max_position_embeddings\": 2048, \"rms_norm_eps\": 1e-5%s}",
             extra);
    cr_assert_eq(leash_write_file_atomic(path, text, strlen(text)), 0);
    return leash_config_load_dir(dir, c, NULL);
}

/* What transformers 5.x's save_pretrained writes for a Llama (keys as it orders them): the rotary base only
 * inside rope_parameters. Read at the top level alone, it would have been 10000, silently. */
Test(config, transformers5_rope_parameters) {
    char dir[] = "/tmp/leash-cfg5-XXXXXX";
    cr_assert(mkdtemp(dir));
    leash_gpt_config c;
    cr_assert_eq(load_llama_text(dir, ", \"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, "
                                      "\"attention_dropout\": 0.0, \"bos_token_id\": 1, \"dtype\": \"float32\", "
                                      "\"eos_token_id\": 2, \"head_dim\": 8, \"hidden_act\": \"silu\", "
                                      "\"initializer_range\": 0.02, \"mlp_bias\": false, \"pad_token_id\": null, "
                                      "\"pretraining_tp\": 1, \"rope_parameters\": {\"rope_theta\": 100000.0, "
                                      "\"rope_type\": \"default\"}, \"tie_word_embeddings\": true, "
                                      "\"transformers_version\": \"5.0.0\", \"use_cache\": true",
                                 &c),
                 0, "%s", leash_errmsg());
    cr_assert_eq(c.rope_theta, 100000.0f, "rope_theta %g", (double)c.rope_theta);
    cr_assert_eq(c.rope_scaling, LEASH_ROPE_DEFAULT);
    // Llama 3.1's scaling, transformers 5 style
    cr_assert_eq(load_llama_text(dir, ", \"rope_parameters\": {\"factor\": 8.0, \"high_freq_factor\": 4.0, "
                                      "\"low_freq_factor\": 1.0, \"original_max_position_embeddings\": 512, "
                                      "\"rope_theta\": 500000.0, \"rope_type\": \"llama3\"}",
                                 &c),
                 0, "%s", leash_errmsg());
    cr_assert(c.rope_theta == 500000.0f && c.rope_scaling == LEASH_ROPE_LLAMA3 && c.rope_factor == 8.0f &&
              c.rope_original_max_positions == 512);
    // transformers 4's form, and both forms agreeing
    cr_assert_eq(load_llama_text(dir, ", \"rope_theta\": 1000000.0, \"rope_scaling\": {\"rope_type\": \"linear\", "
                                      "\"factor\": 2.0}",
                                 &c),
                 0, "%s", leash_errmsg());
    cr_assert(c.rope_theta == 1e6f && c.rope_scaling == LEASH_ROPE_LINEAR && c.rope_factor == 2.0f);
    cr_assert_eq(load_llama_text(dir, ", \"rope_theta\": 1000000.0, \"rope_parameters\": {\"rope_theta\": 1000000.0, "
                                      "\"rope_type\": \"linear\", \"factor\": 2.0}, \"rope_scaling\": {\"type\": "
                                      "\"linear\", \"factor\": 2.0}",
                                 &c),
                 0, "%s", leash_errmsg());
    cr_assert(c.rope_theta == 1e6f && c.rope_scaling == LEASH_ROPE_LINEAR);
    // what must not be guessed: each an error naming the key
    struct {
        const char *extra, *error;
    } bad[] = {
        {", \"rope_parameters\": {\"rope_type\": \"default\"}", "has no \"rope_theta\""},
        {", \"rope_theta\": 10000.0, \"rope_parameters\": {\"rope_theta\": 100000.0, \"rope_type\": \"default\"}",
         "\"rope_theta\" is 10000 but \"rope_parameters\".rope_theta is 100000"},
        {", \"rope_parameters\": {\"rope_theta\": 1e4, \"rope_type\": \"linear\", \"factor\": 2.0}, \"rope_scaling\": "
         "{\"rope_type\": \"linear\", \"factor\": 4.0}",
         "describe different rotary scalings"},
        {", \"rope_parameters\": {\"rope_theta\": 1e4, \"rope_type\": \"yarn\", \"factor\": 4.0}",
         "rope_parameters \"yarn\" is not supported"},
        {", \"rope_parameters\": {\"rope_theta\": 1e4, \"rope_type\": \"default\", \"mrope_section\": [1, 2]}",
         "key \"mrope_section\""},
        {", \"rope_parameters\": {\"rope_theta\": 1e4, \"rope_type\": \"default\", \"partial_rotary_factor\": 0.5}",
         "partial_rotary_factor is 0.5"},
        {", \"rope_parameters\": 5", "\"rope_parameters\" must be an object"},
        // (review) a rope_theta inside transformers 4's rope_scaling was accepted and ignored
        {", \"rope_theta\": 10000.0, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0, \"rope_theta\": 5e5}",
         "rope_theta is 10000 but \"rope_scaling\".rope_theta is 500000"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_neq(load_llama_text(dir, bad[i].extra, &c), 0, "case %zu must fail", i);
        cr_assert(strstr(leash_errmsg(), bad[i].error) && strstr(leash_errmsg(), dir), "case %zu: %s", i, leash_errmsg());
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* A key that is not understood is refused, named; harmless ones and keys at the value leash computes pass.
 * The first case is SmolLM2-135M-Instruct's own config.json (with nanotron's and transformers.js's keys). */
Test(config, unknown_keys_are_errors_that_name_them) {
    char dir[] = "/tmp/leash-cfgk-XXXXXX", path[512];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *smollm2 =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0, "
        "\"bos_token_id\": 1, \"eos_token_id\": 2, \"head_dim\": 64, \"hidden_act\": \"silu\", \"hidden_size\": 576, "
        "\"initializer_range\": 0.041666666666666664, \"intermediate_size\": 1536, \"is_llama_config\": true, "
        "\"max_position_embeddings\": 8192, \"mlp_bias\": false, \"model_type\": \"llama\", \"num_attention_heads\": 9, "
        "\"num_hidden_layers\": 30, \"num_key_value_heads\": 3, \"pad_token_id\": 2, \"pretraining_tp\": 1, "
        "\"rms_norm_eps\": 1e-05, \"rope_interleaved\": false, \"rope_scaling\": null, \"rope_theta\": 100000, "
        "\"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.42.3\", "
        "\"transformers.js_config\": {\"kv_cache_dtype\": {\"q4f16\": \"float16\", \"fp16\": \"float16\"}}, "
        "\"use_cache\": true, \"vocab_size\": 49152}";
    cr_assert_eq(leash_write_file_atomic(path, smollm2, strlen(smollm2)), 0);
    leash_gpt_config c;
    cr_assert_eq(leash_config_load(path, &c, NULL), 0, "%s", leash_errmsg());
    cr_assert(c.n_layer == 30 && c.n_kv_head == 3 && c.rope_theta == 100000.0f && !c.untied_head && c.eos_token_id == 2);
    struct {
        const char *extra, *error;
    } bad[] = {
        {", \"quantization_config\": {\"quant_method\": \"gptq\"}", "key \"quantization_config\""},
        {", \"rope_interleaved\": true", "\"rope_interleaved\" is true; leash computes only false"},
        {", \"partial_rotary_factor\": 0.5", "\"partial_rotary_factor\" is 0.5"},
        {", \"attn_logit_softcapping\": 50.0", "\"attn_logit_softcapping\""},
        {", \"layer_types\": [\"full_attention\", \"chunked_attention\"]", "\"chunked_attention\""},
        {", \"use_qk_norm\": true", "key \"use_qk_norm\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_neq(load_llama_text(dir, bad[i].extra, &c), 0, "case %zu must fail", i);
        cr_assert(strstr(leash_errmsg(), bad[i].error) && strstr(leash_errmsg(), path), "case %zu: %s", i, leash_errmsg());
    }
    cr_assert_eq(load_llama_text(dir, ", \"layer_types\": [\"full_attention\", \"full_attention\"], \"rope_interleaved\": false", &c),
                 0, "%s", leash_errmsg());
    // GPT-2: the original config.json (summary_* for the double-heads model, task_specific_params) loads;
    // a layer-scaled attention does not
    const char *gpt2 = "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"], "
                       "\"attn_pdrop\": 0.1, \"bos_token_id\": 50256, \"embd_pdrop\": 0.1, \"eos_token_id\": 50256, "
                       "\"initializer_range\": 0.02, \"layer_norm_epsilon\": 1e-05, \"model_type\": \"gpt2\", "
                       "\"n_ctx\": 1024, \"n_embd\": 768, \"n_head\": 12, \"n_layer\": 12, \"n_positions\": 1024, "
                       "\"resid_pdrop\": 0.1, \"summary_activation\": null, \"summary_first_dropout\": 0.1, "
                       "\"summary_proj_to_labels\": true, \"summary_type\": \"cls_index\", \"summary_use_proj\": true, "
                       "\"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}}, "
                       "\"vocab_size\": 50257%s}";
    char text[2048];
    snprintf(text, sizeof text, gpt2, ", \"scale_attn_weights\": true, \"reorder_and_upcast_attn\": false");
    cr_assert_eq(leash_write_file_atomic(path, text, strlen(text)), 0);
    cr_assert_eq(leash_config_load(path, &c, NULL), 0, "%s", leash_errmsg());
    snprintf(text, sizeof text, gpt2, ", \"scale_attn_by_inverse_layer_idx\": true");
    cr_assert_eq(leash_write_file_atomic(path, text, strlen(text)), 0);
    cr_assert_neq(leash_config_load(path, &c, NULL), 0);
    cr_assert(strstr(leash_errmsg(), "scale_attn_by_inverse_layer_idx"), "%s", leash_errmsg());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* eos_token_id as a list (config.json) and generation_config.json's ids: every one ends a text; the list
 * survives a save. */
Test(config, eos_lists) {
    char dir[] = "/tmp/leash-eos-XXXXXX", path[512];
    cr_assert(mkdtemp(dir));
    leash_gpt_config c;
    cr_assert_eq(load_llama_text(dir, ", \"eos_token_id\": [7, 8, 9]", &c), 0, "%s", leash_errmsg());
    cr_assert(c.eos_token_id == 7 && c.n_eos_more == 2 && c.eos_more[0] == 8 && c.eos_more[1] == 9);
    cr_assert(leash_gpt_is_eos(&c, 9) && leash_gpt_is_eos(&c, 7) && !leash_gpt_is_eos(&c, 6));
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    const char *gen = "{\"bos_token_id\": 1, \"eos_token_id\": [7, 11], \"do_sample\": true, \"temperature\": 0.6}";
    cr_assert_eq(leash_write_file_atomic(path, gen, strlen(gen)), 0);
    cr_assert_eq(load_llama_text(dir, ", \"eos_token_id\": [7, 8, 9]", &c), 0, "%s", leash_errmsg());
    cr_assert(c.n_eos_more == 3 && c.eos_more[2] == 11, "generation_config.json's <|eot_id|> is an end too");
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(leash_config_save(path, &c, NULL), 0);
    leash_gpt_config back;
    cr_assert_eq(leash_config_load(path, &back, NULL), 0, "%s", leash_errmsg());
    cr_assert(back.eos_token_id == 7 && back.n_eos_more == 3 && back.eos_more[2] == 11);
    cr_assert_neq(load_llama_text(dir, ", \"eos_token_id\": [7, 8, 9, 10, 11, 12, 13, 14, 15]", &c), 0);
    cr_assert(strstr(leash_errmsg(), "lists 9 ids"), "%s", leash_errmsg());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The sampler stops at any id of the model's list, not only the first. */
Test(config, sampling_stops_at_every_eos_of_the_list) {
    leash_gpt_config cfg = {.vocab_size = 40, .n_positions = 32, .n_embd = 16, .n_layer = 1, .n_head = 2,
                            .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0);
    leash_gpt_init(m, 7);
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) leash_gpt_params(m)[i] *= 10.0f;
    int prompt[] = {3, 4, 5}, plen = 3, out[8], lens[1];
    float lp[8];
    leash_sample_config sc = leash_sample_defaults();
    sc.max_new_tokens = 8, sc.temperature = 1e-4f, sc.seed = 1;
    cr_assert_eq(leash_generate(m, &sc, prompt, &plen, 1, NULL, out, lp, lens), 0, "%s", leash_errmsg());
    cr_assert_eq(lens[0], 8);
    // make the third generated token the list's second end id: generation stops right after it
    int end = out[2], k = 0;
    while (k < 2 && out[k] != end) k++;
    leash_gpt_config listed = cfg;
    listed.eos_token_id = end == 0 ? 1 : 0, listed.n_eos_more = 1, listed.eos_more[0] = end;
    if (listed.eos_token_id == out[0] || listed.eos_token_id == out[1]) listed.eos_token_id = 39;
    leash_sample_set_eos(&sc, &listed, listed.eos_token_id);
    int first[8];
    memcpy(first, out, sizeof out);
    cr_assert_eq(leash_generate(m, &sc, prompt, &plen, 1, NULL, out, lp, lens), 0, "%s", leash_errmsg());
    cr_assert_eq(lens[0], k + 1, "stopped after %d tokens; the end id %d came at %d", lens[0], end, k);
    cr_assert_eq(memcmp(out, first, (k + 1) * sizeof *out), 0);
    for (int j = k + 1; j < 8; j++) cr_assert_eq(out[j], listed.eos_token_id, "padding after the end is eos_id");
    leash_gpt_free(m);
}

/* The original GPT-2 checkpoints, and any older transformers saved, carry h.N.attn.bias (the causal mask,
 * (1, 1, n_positions, n_positions)) and h.N.attn.masked_bias (a scalar); they are buffers, not weights. */
Test(config, gpt2_checkpoint_with_attention_buffers_loads) {
    leash_gpt_config cfg = {.vocab_size = 40, .n_positions = 16, .n_embd = 16, .n_layer = 2, .n_head = 2,
                            .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    leash_gpt *m, *r = NULL;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0);
    leash_gpt_init(m, 3);
    char dir[] = "/tmp/leash-buf-XXXXXX", path[512], name[2][2][64];
    cr_assert(mkdtemp(dir));
    cr_assert_eq(leash_gpt_save(m, dir), 0, "%s", leash_errmsg());
    int n = leash_gpt_num_tensors(m), P = cfg.n_positions;
    leash_st_tensor *t = calloc(n + 4, sizeof *t);
    float *mask = calloc((size_t)P * P, sizeof *mask), masked = -1e4f;
    for (int i = 0; i < P; i++)
        for (int j = 0; j <= i; j++) mask[i * P + j] = 1.0f;
    for (int i = 0; i < n; i++) {
        const leash_tensor_info *info = leash_gpt_tensor(m, i);
        t[i] = (leash_st_tensor){info->name, leash_gpt_params(m) + info->offset, info->ndim, {info->shape[0], info->shape[1]}};
    }
    for (int l = 0; l < 2; l++) { // with the "transformer." prefix, as GPT2LMHeadModel saved them
        snprintf(name[l][0], sizeof name[l][0], "transformer.h.%d.attn.bias", l);
        snprintf(name[l][1], sizeof name[l][1], "transformer.h.%d.attn.masked_bias", l);
        t[n + 2 * l] = (leash_st_tensor){name[l][0], mask, 4, {1, 1, P, P}};
        t[n + 2 * l + 1] = (leash_st_tensor){name[l][1], &masked, 0, {0}};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(leash_st_save(path, t, n + 4, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&r, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(memcmp(leash_gpt_params(r), leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float)), 0);
    leash_gpt_free(r);
    free(t), free(mask);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    leash_gpt_free(m);
}

/* A reward head's score statistics are not the architecture: the model holds them, config.json (and a
 * PEFT adapter_config.json) carries them under "leash" beside scalar_head; a copy with a new head starts at
 * 0, one that keeps its head, gets adapters or has them merged keeps them. */
Test(config, score_stats_travel_beside_the_architecture) {
    leash_gpt_config cfg = {.vocab_size = 40, .n_positions = 16, .n_embd = 16, .n_layer = 1, .n_head = 2,
                            .bos_token_id = -1, .eos_token_id = -1, .layer_norm_epsilon = 1e-5f, .scalar_head = 1};
    const leash_score_stats want = {0.25f, 1.5f};
    char dir[] = "/tmp/leash-score-XXXXXX", adir[600], path[600], cmd[1300];
    cr_assert(mkdtemp(dir));
    leash_gpt *m, *r, *lm, *merged, *fresh, *kept;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, 2);
    cr_assert(leash_gpt_score_stats(m).mean == 0.0f && leash_gpt_score_stats(m).std == 0.0f, "not measured: both 0");
    leash_gpt_set_score_stats(m, want);
    cr_assert_eq(leash_gpt_save(m, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&r, dir), 0, "%s", leash_errmsg());
    cr_assert(leash_gpt_score_stats(r).mean == want.mean && leash_gpt_score_stats(r).std == want.std, "%g %g",
              (double)leash_gpt_score_stats(r).mean, (double)leash_gpt_score_stats(r).std);
    snprintf(path, sizeof path, "%s/config.json", dir);
    leash_gpt_config back;
    leash_score_stats got = {9.0f, 9.0f};
    cr_assert_eq(leash_config_load(path, &back, &got), 0, "%s", leash_errmsg());
    cr_assert(back.scalar_head && got.mean == want.mean && got.std == want.std);
    cr_assert_eq(leash_config_load(path, &back, NULL), 0, "score may be NULL: %s", leash_errmsg());
    // copies: a new head starts unmeasured, a kept head keeps its statistics
    cr_assert_eq(leash_gpt_copy_with_head(&fresh, r, 0, 1), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_copy_with_head(&kept, r, 1, 1), 0, "%s", leash_errmsg());
    cr_assert(leash_gpt_score_stats(fresh).std == 0.0f && leash_gpt_score_stats(kept).std == want.std);
    // adapters keep them; a PEFT directory with a head (its base has none, as leash rm train --lora-r writes
    // it) carries them, and a merge keeps them
    leash_lora_config lora = {.rank = 2, .alpha = 4.0f, .targets = LEASH_LORA_Q};
    cr_assert_eq(leash_gpt_add_lora(&lm, r, &lora, 3), 0, "%s", leash_errmsg());
    cr_assert(leash_gpt_score_stats(lm).std == want.std && leash_gpt_lora(lm)->rank == 2);
    leash_gpt_free(lm);
    leash_gpt_config plain = cfg;
    plain.scalar_head = 0;
    leash_gpt *p0, *p, *pl;
    cr_assert_eq(leash_gpt_create(&p0, &plain), 0, "%s", leash_errmsg());
    leash_gpt_init(p0, 4);
    snprintf(adir, sizeof adir, "%s/base", dir);
    cr_assert_eq(leash_gpt_save(p0, adir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&p, adir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_add_lora(&pl, p, &lora, 3), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_copy_with_head(&lm, pl, 0, 5), 0, "%s", leash_errmsg());
    cr_assert(leash_gpt_lora(lm) && leash_gpt_lora(lm)->rank == 2, "a copy keeps its adapters");
    leash_gpt_free(p0), leash_gpt_free(p), leash_gpt_free(pl);
    leash_gpt_set_score_stats(lm, (leash_score_stats){-0.5f, 2.0f});
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    cr_assert_eq(leash_gpt_save(lm, adir), 0, "%s", leash_errmsg());
    leash_gpt_free(lm);
    cr_assert_eq(leash_gpt_load(&lm, adir), 0, "%s", leash_errmsg());
    cr_assert(leash_gpt_score_stats(lm).mean == -0.5f && leash_gpt_score_stats(lm).std == 2.0f,
              "adapter_config.json's statistics: %g", (double)leash_gpt_score_stats(lm).mean);
    cr_assert_eq(leash_gpt_merge_lora(&merged, lm), 0, "%s", leash_errmsg());
    cr_assert(!leash_gpt_lora(merged) && leash_gpt_score_stats(merged).std == 2.0f);
    // a negative standard deviation is an error naming the key and the file
    const char *bad = "{\"model_type\": \"gpt2\", \"vocab_size\": 40, \"n_positions\": 16, \"n_embd\": 16, \"n_layer\": 1, "
                      "\"n_head\": 2, \"leash\": {\"scalar_head\": true, \"score_mean\": 0, \"score_std\": -1}}";
    cr_assert_eq(leash_write_file_atomic(path, bad, strlen(bad)), 0);
    cr_assert_neq(leash_config_load(path, &back, &got), 0);
    cr_assert(strstr(leash_errmsg(), "score_std") && strstr(leash_errmsg(), path), "%s", leash_errmsg());
    leash_gpt_free(m), leash_gpt_free(r), leash_gpt_free(lm), leash_gpt_free(merged), leash_gpt_free(fresh);
    leash_gpt_free(kept);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
