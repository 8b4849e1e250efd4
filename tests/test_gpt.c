/* The model beyond its gradients: padding invariance, KV-cache generation against the full forward,
 * batch-composition invariance of sampling, checkpoints that round-trip and refuse bad files, AdamW and
 * its schedule, and a pre-training run that resumes bit-identically. */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/config.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/optim.h"
#include "leash/rng.h"
#include "leash/safetensors.h"
#include "leash/sample.h"

/* A tiny GPT-2 or, with llama, a tiny Llama-family model with grouped-query attention, Qwen2-style
 * q/k/v biases and an untied head. */
static leash_gpt *tiny_arch(int scalar_head, uint64_t seed, int llama) {
    leash_gpt_config cfg = {.vocab_size = 50, .n_positions = 32, .n_embd = 16, .n_layer = 2, .n_head = 2,
                            .bos_token_id = 0, .eos_token_id = 1, .layer_norm_epsilon = 1e-5f, .scalar_head = scalar_head};
    if (llama) {
        cfg.arch = LEASH_ARCH_LLAMA, cfg.n_head = 4, cfg.n_kv_head = 2, cfg.n_inner = 24, cfg.qkv_bias = 1;
        cfg.untied_head = 1, cfg.rope_theta = 500.0f;
        snprintf(cfg.model_type, sizeof cfg.model_type, "qwen2");
    }
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0, "%s", leash_errmsg());
    leash_gpt_init(m, seed);
    // larger weights than GPT-2's init so that distributions are far from uniform
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) leash_gpt_params(m)[i] *= 10.0f;
    return m;
}
static leash_gpt *tiny(int scalar_head, uint64_t seed) { return tiny_arch(scalar_head, seed, 0); }

/* log-probs of seq[1..n) given its prefix, with the sequence placed in a (B, T) batch at row b, offset by
 * `left` padding positions. */
static void logprobs_in_batch(leash_gpt *m, const int *seq, int n, int B, int T, int b, int left, float *out) {
    int *tok = calloc(B * T, sizeof *tok), *tgt = malloc(B * T * sizeof *tgt);
    uint8_t *mask = calloc(B * T, 1);
    float *lp = malloc(B * T * sizeof *lp);
    for (int i = 0; i < B * T; i++) tgt[i] = -1, tok[i] = (i * 7) % 50;
    for (int r = 0; r < B; r++) // other rows: some real tokens, so the batch is not just padding
        for (int t = 0; t < T; t++) mask[r * T + t] = r != b;
    for (int t = 0; t < n; t++) {
        tok[b * T + left + t] = seq[t];
        mask[b * T + left + t] = 1;
        if (t + 1 < n) tgt[b * T + left + t] = seq[t + 1];
    }
    for (int t = 0; t < T; t++)
        if (t < left || t >= left + n) mask[b * T + t] = 0;
    cr_assert_eq(leash_gpt_forward(m, tok, mask, B, T), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_token_logprobs(m, tgt, 0.8f, lp, NULL), 0);
    for (int t = 0; t + 1 < n; t++) out[t] = lp[b * T + left + t];
    memset(leash_gpt_dlogits(m), 0, 0); // nothing to clear: no loss was taken
    free(tok), free(tgt), free(mask), free(lp);
}

static void padding_invariance(int llama) {
    leash_gpt *m = tiny_arch(0, 1, llama);
    const int seq[7] = {0, 5, 9, 33, 2, 17, 40};
    float alone[6], left[6], right[6];
    logprobs_in_batch(m, seq, 7, 1, 7, 0, 0, alone);
    logprobs_in_batch(m, seq, 7, 3, 12, 1, 5, left);  // left-padded by 5 in a batch of 3
    logprobs_in_batch(m, seq, 7, 2, 10, 0, 0, right); // right-padded by 3
    for (int t = 0; t < 6; t++) {
        // equal up to float32 reduction order in the matrix products (BLAS blocks differ with the batch shape)
        float tol = 1e-5f * fmaxf(1.0f, fabsf(alone[t]));
        cr_assert(fabsf(alone[t] - left[t]) <= tol, "position %d: alone %g, left-padded %g", t, alone[t], left[t]);
        cr_assert(fabsf(alone[t] - right[t]) <= tol, "position %d: alone %g, right-padded %g", t, alone[t], right[t]);
    }
    leash_gpt_free(m);
}
Test(gpt, logprobs_do_not_depend_on_padding_or_batch) { padding_invariance(0); }
// rotary positions too count real tokens only: a left-padded sequence is rotated as if alone
Test(gpt, llama_logprobs_do_not_depend_on_padding_or_batch) { padding_invariance(1); }

static void kv_cache_matches(int llama) {
    leash_gpt *m = tiny_arch(0, 2, llama);
    const int prompts[] = {0, 4, 8, /**/ 0, 3, /**/ 0, 7, 7, 7, 9};
    const int lens[3] = {3, 2, 5};
    enum { B = 3, M = 12 };
    leash_sample_config sc = leash_sample_defaults();
    sc.temperature = 0.8f;
    sc.max_new_tokens = M;
    sc.eos_id = 1;
    sc.seed = 7;
    int out[B * M], olens[B];
    float lps[B * M];
    cr_assert_eq(leash_generate(m, &sc, prompts, lens, B, NULL, out, lps, olens), 0, "%s", leash_errmsg());
    int off = 0;
    for (int b = 0; b < B; b++) {
        int n = lens[b] + olens[b], seq[32];
        memcpy(seq, prompts + off, lens[b] * sizeof(int));
        memcpy(seq + lens[b], out + b * M, olens[b] * sizeof(int));
        float full[32];
        logprobs_in_batch(m, seq, n, 1, n, 0, 0, full);
        for (int i = 0; i < olens[b]; i++) {
            float want = full[lens[b] - 1 + i];
            cr_assert(fabsf(lps[b * M + i] - want) < 1e-4f, "sequence %d token %d: KV cache %g, full forward %g", b, i,
                      lps[b * M + i], want);
        }
        if (olens[b] < M) {
            cr_assert_eq(out[b * M + olens[b] - 1], 1, "a sequence that stopped early ends with EOS");
            for (int i = olens[b]; i < M; i++) cr_assert(out[b * M + i] == 1 && lps[b * M + i] == 0.0f, "after EOS");
        }
        off += lens[b];
    }
    leash_gpt_free(m);
}
Test(gpt, kv_cache_generation_matches_the_full_forward) { kv_cache_matches(0); }
Test(gpt, llama_kv_cache_generation_matches_the_full_forward) { kv_cache_matches(1); }

Test(gpt, samples_do_not_depend_on_batch_composition) {
    leash_gpt *m = tiny(0, 3);
    const int prompts[] = {0, 4, 8, /**/ 0, 3, 11, 12, 13, 14};
    const int lens[2] = {3, 6};
    enum { M = 10 };
    leash_sample_config sc = leash_sample_defaults();
    sc.max_new_tokens = M;
    sc.seed = 99;
    const uint64_t streams[2] = {41, 42};
    int both[2 * M], alone[M], bl[2], al[1];
    float lb[2 * M], la[M];
    cr_assert_eq(leash_generate(m, &sc, prompts, lens, 2, streams, both, lb, bl), 0);
    cr_assert_eq(leash_generate(m, &sc, prompts + 3, lens + 1, 1, streams + 1, alone, la, al), 0);
    for (int i = 0; i < M; i++) {
        cr_assert_eq(both[M + i], alone[i], "token %d differs between batch and alone", i);
        cr_assert(fabsf(lb[M + i] - la[i]) < 1e-5f);
    }
    leash_gpt_free(m);
}

Test(gpt, top_k_and_top_p) {
    float z[6] = {1.0f, 3.0f, 2.0f, -1.0f, 2.5f, 0.0f};
    leash_scored_token work[6];
    leash_sample_config sc = leash_sample_defaults();
    int tok;
    float lp;
    sc.top_k = 1;
    for (double u = 0.0; u < 1.0; u += 0.1) {
        cr_assert_eq(leash_sample_token(z, 6, &sc, u, work, &tok, &lp), 0);
        cr_assert(tok == 1 && lp == 0.0f, "top-k 1 is greedy: got %d (log-prob %g)", tok, lp);
    }
    sc.top_k = 2; // tokens 1 and 4 only, renormalised
    double p1 = 1.0 / (1.0 + exp(-0.5));
    cr_assert_eq(leash_sample_token(z, 6, &sc, 0.99, work, &tok, &lp), 0);
    cr_assert(tok == 4 && fabs(lp - log(1 - p1)) < 1e-6, "got %d, log-prob %g", tok, lp);
    sc.top_k = 0;
    sc.top_p = 0.5f; // the top token alone holds > 0.5? p(1) = e^3 / sum
    double s = 0;
    for (int i = 0; i < 6; i++) s += exp(z[i]);
    cr_assert(exp(3.0) / s < 0.5);
    for (double u = 0.0; u < 1.0; u += 0.05) {
        cr_assert_eq(leash_sample_token(z, 6, &sc, u, work, &tok, &lp), 0);
        cr_assert(tok == 1 || tok == 4, "top-p 0.5 keeps tokens 1 and 4, drew %d", tok);
    }
}

static void round_trip(int llama) {
    leash_gpt *m = tiny_arch(1, 4, llama), *r;
    char dir[] = "/tmp/leash-ckpt-XXXXXX";
    cr_assert(mkdtemp(dir));
    cr_assert_eq(leash_gpt_save(m, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_load(&r, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_num_params(r), leash_gpt_num_params(m));
    cr_assert_eq(memcmp(leash_gpt_params(r), leash_gpt_params(m), leash_gpt_num_params(m) * 4), 0);
    cr_assert_eq(leash_gpt_cfg(r)->scalar_head, 1);
    cr_assert_eq(leash_gpt_cfg(r)->eos_token_id, 1);
    cr_assert_eq(memcmp(leash_gpt_cfg(r), leash_gpt_cfg(m), sizeof(leash_gpt_config)), 0, "the config reads back the same");
    leash_gpt_free(r);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    leash_gpt_free(m);
}
Test(gpt, checkpoint_round_trip_is_exact) { round_trip(0); }
Test(gpt, llama_checkpoint_round_trip_is_exact) { round_trip(1); }

/* A model split over two shards and an index, as Hugging Face writes large models, loads to the same
 * weights; an index naming a path outside the directory, or a tensor no shard holds, is refused. */
Test(gpt, sharded_checkpoint_loads) {
    leash_gpt *m = tiny_arch(0, 5, 1), *r = NULL;
    char dir[] = "/tmp/leash-shard-XXXXXX", path[512], cmd[1024];
    cr_assert(mkdtemp(dir));
    cr_assert_eq(leash_gpt_save(m, dir), 0, "%s", leash_errmsg());
    int n = leash_gpt_num_tensors(m), half = n / 2;
    leash_st_tensor *t = calloc(n, sizeof *t);
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    for (int i = 0; i < n; i++) {
        const leash_tensor_info *info = leash_gpt_tensor(m, i);
        t[i] = (leash_st_tensor){info->name, leash_gpt_params(m) + info->offset, info->ndim, {info->shape[0], info->shape[1]}};
        cJSON_AddStringToObject(map, info->name, i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
    }
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    cr_assert_eq(leash_st_save(path, t, half, NULL), 0);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    cr_assert_eq(leash_st_save(path, t + half, n - half, NULL), 0);
    char *text = cJSON_Print(index);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    cr_assert_eq(leash_write_file_atomic(path, text, strlen(text)), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(leash_gpt_load(&r, dir), 0, "%s", leash_errmsg());
    cr_assert_eq(memcmp(leash_gpt_params(r), leash_gpt_params(m), leash_gpt_num_params(m) * 4), 0);
    leash_gpt_free(r);
    // the second shard gone: the missing tensors are named
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    cr_assert_eq(rename(path, "/tmp/leash-shard-moved.safetensors"), 0);
    cr_assert_neq(leash_gpt_load(&r, dir), 0);
    cr_assert(strstr(leash_errmsg(), "model-00002-of-00002.safetensors"), "%s", leash_errmsg());
    cr_assert_eq(rename("/tmp/leash-shard-moved.safetensors", path), 0);
    // a shard name with a slash is refused before anything is opened
    cJSON_ReplaceItemInObject(map, leash_gpt_tensor(m, 0)->name, cJSON_CreateString("../elsewhere.safetensors"));
    free(text);
    text = cJSON_Print(index);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    cr_assert_eq(leash_write_file_atomic(path, text, strlen(text)), 0);
    cr_assert_neq(leash_gpt_load(&r, dir), 0);
    cr_assert(strstr(leash_errmsg(), "weight_map") && strstr(leash_errmsg(), "no '/'"), "%s", leash_errmsg());
    free(text), free(t);
    cJSON_Delete(index);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    leash_gpt_free(m);
}

/* config.json of the Llama family: what it may say, and the clear error for what leash does not support. */
Test(gpt, llama_config_json_variants) {
    char dir[] = "/tmp/leash-cfg-XXXXXX", path[512];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *base = "{\"model_type\": \"%s\", \"vocab_size\": 100, \"hidden_size\": 64, \"intermediate_size\": 96, "
                       "\"num_hidden_layers\": 2, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, "
                       "\"max_position_embeddings\": 2048, \"rms_norm_eps\": 1e-5, \"eos_token_id\": %s%s}";
    struct {
        const char *type, *eos, *extra, *error; // error: a piece of the expected message, or NULL
    } cases[] = {
        {"llama", "[7, 8, 9]", ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                               "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 512}", NULL},
        {"qwen2", "2", ", \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, \"use_sliding_window\": false", NULL},
        {"mistral", "2", ", \"sliding_window\": 1024", NULL},
        {"llama", "2", ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling \"yarn\" is not supported"},
        {"llama", "2", ", \"hidden_act\": \"gelu\"", "hidden_act"},
        {"gemma", "2", "", "\"model_type\" is \"gemma\""},
        {"llama", "2", ", \"head_dim\": 7", "head size 7 is odd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, base, cases[i].type, cases[i].eos, cases[i].extra);
        cr_assert_eq(leash_write_file_atomic(path, text, strlen(text)), 0);
        leash_gpt_config c;
        int rc = leash_config_load(path, &c, NULL);
        if (cases[i].error) {
            cr_assert_neq(rc, 0, "case %zu must fail", i);
            cr_assert(strstr(leash_errmsg(), cases[i].error) && strstr(leash_errmsg(), path), "case %zu: %s", i, leash_errmsg());
            continue;
        }
        cr_assert_eq(rc, 0, "case %zu: %s", i, leash_errmsg());
        cr_assert(c.arch == LEASH_ARCH_LLAMA && c.n_kv_head == 2 && c.n_inner == 96 && leash_gpt_head_size(&c) == 8);
        if (i == 0) cr_assert(c.eos_token_id == 7 && c.rope_scaling == LEASH_ROPE_LLAMA3 && c.untied_head && !c.qkv_bias);
        if (i == 1) cr_assert(c.qkv_bias && !c.o_bias && !c.untied_head && c.rope_theta == 1e6f);
        if (i == 2) cr_assert_eq(c.n_positions, 1024, "the sliding window bounds the sequence length");
    }
    // found by make fuzz: a head_dim beside zero attention heads divided by zero, and an epsilon beyond
    // float's range was converted with undefined behaviour; both are now clear errors
    const char *fuzzed[][2] = {
        {"\"num_attention_heads\": 0, \"head_dim\": 4, \"rms_norm_eps\": 1e-5", "n_head = 0"},
        {"\"num_attention_heads\": 2, \"rms_norm_eps\": 1e300", "layer_norm_epsilon = inf"},
        {"\"num_attention_heads\": 2, \"eos_token_id\": [4e37, 3]", "must be an integer or a list of integers"},
    };
    for (int k = 0; k < 3; k++) {
        char text[512];
        snprintf(text, sizeof text, "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": 8, "
                                    "\"intermediate_size\": 8, \"num_hidden_layers\": 1, \"max_position_embeddings\": 64, %s}",
                 fuzzed[k][0]);
        cr_assert_eq(leash_write_file_atomic(path, text, strlen(text)), 0);
        leash_gpt_config c0;
        cr_assert_neq(leash_config_load(path, &c0, NULL), 0);
        cr_assert(strstr(leash_errmsg(), fuzzed[k][1]), "%s", leash_errmsg());
    }
    unlink(path);
    rmdir(dir);
}

Test(gpt, bad_checkpoints_are_clear_errors) {
    leash_gpt *m = tiny(0, 5), *r = NULL;
    char dir[] = "/tmp/leash-bad-XXXXXX", path[256], cmd[256];
    cr_assert(mkdtemp(dir));
    cr_assert_eq(leash_gpt_save(m, dir), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    char *good;
    size_t n;
    cr_assert_eq(leash_read_file(path, 1 << 30, &good, &n), 0);
    // every truncation: an error naming the file, never a crash
    for (size_t cut = 0; cut < n; cut += (cut < 4096 ? 1 : 997)) {
        cr_assert_eq(leash_write_file_atomic(path, good, cut), 0);
        cr_assert_neq(leash_gpt_load(&r, dir), 0, "a file truncated to %zu bytes loaded", cut);
        cr_assert(strstr(leash_errmsg(), "model.safetensors"), "cut %zu: message lacks the file: %s", cut, leash_errmsg());
    }
    // a header whose offsets point past the data
    uint64_t hlen;
    memcpy(&hlen, good, 8);
    char *bad = malloc(n);
    memcpy(bad, good, n);
    char *p = strstr(bad + 8, "\"data_offsets\":[0,");
    cr_assert(p);
    memcpy(p, "\"data_offsets\":[9,", 18);
    cr_assert_eq(leash_write_file_atomic(path, bad, n), 0);
    cr_assert_eq(leash_gpt_load(&r, dir), LEASH_EFORMAT);
    // a huge header length
    memcpy(bad, good, n);
    memset(bad, 0xff, 8);
    cr_assert_eq(leash_write_file_atomic(path, bad, n), 0);
    cr_assert_eq(leash_gpt_load(&r, dir), LEASH_EFORMAT);
    cr_assert(strstr(leash_errmsg(), "header length"), "%s", leash_errmsg());
    // a missing tensor: drop the last layer norm from the header by renaming it
    memcpy(bad, good, n);
    p = strstr(bad + 8, "\"ln_f.bias\"");
    cr_assert(p);
    memcpy(p, "\"ln_f.bia2\"", 11);
    cr_assert_eq(leash_write_file_atomic(path, bad, n), 0);
    cr_assert_eq(leash_gpt_load(&r, dir), LEASH_EFORMAT);
    cr_assert(strstr(leash_errmsg(), "ln_f.bia2"), "%s", leash_errmsg());
    // a config that does not describe the weights
    cr_assert_eq(leash_write_file_atomic(path, good, n), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"model_type\": \"gpt2\", \"vocab_size\": 51, \"n_positions\": 32, \"n_embd\": 16, \"n_layer\": 2, "
                      "\"n_head\": 2}";
    cr_assert_eq(leash_write_file_atomic(path, cfg, strlen(cfg)), 0);
    cr_assert_eq(leash_gpt_load(&r, dir), LEASH_EFORMAT);
    cr_assert(strstr(leash_errmsg(), "wte.weight") && strstr(leash_errmsg(), "[51, 16]"), "%s", leash_errmsg());
    const char *other = "{\"model_type\": \"t5\"}";
    cr_assert_eq(leash_write_file_atomic(path, other, strlen(other)), 0);
    cr_assert_eq(leash_gpt_load(&r, dir), LEASH_EFORMAT);
    cr_assert(strstr(leash_errmsg(), "\"t5\""), "%s", leash_errmsg());
    // a Llama config beside GPT-2 weights: the first tensor it does not know is named
    const char *llama = "{\"model_type\": \"llama\", \"vocab_size\": 50, \"hidden_size\": 16, \"intermediate_size\": 64, "
                        "\"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"max_position_embeddings\": 32}";
    cr_assert_eq(leash_write_file_atomic(path, llama, strlen(llama)), 0);
    cr_assert_eq(leash_gpt_load(&r, dir), LEASH_EFORMAT);
    cr_assert(strstr(leash_errmsg(), "unexpected tensor 'wte.weight'"), "%s", leash_errmsg());
    free(good), free(bad);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    leash_gpt_free(m);
}

Test(gpt, bf16_and_f16_checkpoints_load_by_conversion) {
    // 1.5 in F16 is 0x3E00, in BF16 0x3FC0; -2 is 0xC000 in both
    char dir[] = "/tmp/leash-half-XXXXXX", path[256];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    const char *hdr = "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}";
    size_t hl = strlen(hdr);
    unsigned char buf[512] = {0};
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, hdr, hl);
    const unsigned char data[8] = {0x00, 0x3E, 0x00, 0xC0, 0xC0, 0x3F, 0x00, 0xC0};
    memcpy(buf + 8 + hl, data, 8);
    cr_assert_eq(leash_write_file_atomic(path, buf, 8 + hl + 8), 0);
    leash_st_file st;
    cr_assert_eq(leash_st_open(&st, path), 0, "%s", leash_errmsg());
    float a[2], b[2];
    cr_assert_eq(leash_st_read_f32(&st, leash_st_find(&st, "a"), a), 0);
    cr_assert_eq(leash_st_read_f32(&st, leash_st_find(&st, "b"), b), 0);
    cr_assert(a[0] == 1.5f && a[1] == -2.0f && b[0] == 1.5f && b[1] == -2.0f, "%g %g %g %g", a[0], a[1], b[0], b[1]);
    leash_st_close(&st);
    unlink(path);
    rmdir(dir);
}

Test(optim, adamw_first_step_and_schedule) {
    leash_gpt *m = tiny(0, 6);
    leash_adamw_config c = leash_adamw_defaults();
    c.lr = 0.01f, c.grad_clip = 0.0f, c.weight_decay = 0.5f;
    leash_adamw opt;
    cr_assert_eq(leash_adamw_create(&opt, &c, leash_gpt_num_params(m)), 0);
    float *p = leash_gpt_params(m), *g = leash_gpt_grads(m);
    float *before = malloc(leash_gpt_num_params(m) * 4);
    memcpy(before, p, leash_gpt_num_params(m) * 4);
    for (size_t i = 0; i < leash_gpt_num_params(m); i++) g[i] = (i % 3) ? 0.25f : -2.0f;
    double gn, lr;
    cr_assert_eq(leash_adamw_step(&opt, m, &gn, &lr), 0);
    // first step: mhat = g, vhat = g^2, so the move is lr * (sign(g) * ~1 + wd * p) where decay applies
    const leash_tensor_info *wte = leash_gpt_tensor(m, 0), *ln = leash_gpt_tensor(m, 2);
    size_t i = wte->offset + 1, j = ln->offset + 1; // g = +0.25 at both
    double want_w = before[i] - 0.01 * (0.25 / (0.25 + 1e-8) + 0.5 * before[i]);
    double want_l = before[j] - 0.01 * (0.25 / (0.25 + 1e-8));
    cr_assert(fabs(p[i] - want_w) < 1e-6, "decayed weight %.9g, want %.9g", p[i], want_w);
    cr_assert(fabs(p[j] - want_l) < 1e-6, "LayerNorm weight (no decay) %.9g, want %.9g", p[j], want_l);
    g[5] = NAN;
    memcpy(before, p, leash_gpt_num_params(m) * 4);
    cr_assert_eq(leash_adamw_step(&opt, m, &gn, &lr), LEASH_ENUMERIC);
    cr_assert(strstr(leash_errmsg(), "wte.weight[5]"), "%s", leash_errmsg());
    cr_assert_eq(memcmp(before, p, leash_gpt_num_params(m) * 4), 0, "a NaN gradient changed the weights");
    leash_adamw_config s = leash_adamw_defaults();
    s.lr = 1.0f, s.warmup_steps = 10, s.total_steps = 110, s.min_lr_ratio = 0.1f;
    // (min_lr_ratio 0.1f is 0.1 to float precision, hence 1e-7)
    cr_assert(fabs(leash_lr_at(&s, 0) - 0.1) < 1e-12 && fabs(leash_lr_at(&s, 9) - 1.0) < 1e-12);
    cr_assert(fabs(leash_lr_at(&s, 60) - 0.55) < 1e-7, "half-way through the cosine: %.12g", leash_lr_at(&s, 60));
    cr_assert(fabs(leash_lr_at(&s, 110) - 0.1) < 1e-7 && fabs(leash_lr_at(&s, 500) - 0.1) < 1e-7);
    free(before);
    leash_adamw_free(&opt);
    leash_gpt_free(m);
}

Test(pretrain, killed_and_resumed_run_is_bit_identical, .timeout = 120) {
    char dir[] = "/tmp/leash-pt-XXXXXX", cmd[2048];
    cr_assert(mkdtemp(dir));
    FILE *f;
    snprintf(cmd, sizeof cmd, "%s/corpus.txt", dir);
    cr_assert((f = fopen(cmd, "w")));
    for (int i = 0; i < 400; i++) fprintf(f, "review %d: the soup was %s and the bread was %s.\n", i, i % 3 ? "warm" : "cold", i % 5 ? "fresh" : "stale");
    fclose(f);
    const char *common = "--vocab-size 300 --n-layer 1 --n-embd 32 --n-head 2 --seq-len 16 --batch 4 --steps 6 "
                         "--val-every 3 --save-every 3 -q";
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=2 %s pretrain --data %s/corpus.txt --out %s/a %s", LEASH_BIN, dir, dir, common);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    // the same run stopped after 3 updates (as a kill after the step-3 checkpoint leaves it), then resumed
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=2 %s pretrain --data %s/corpus.txt --out %s/b %s --steps 3 && "
             "OMP_NUM_THREADS=2 %s pretrain --data %s/corpus.txt --out %s/b %s --resume",
             LEASH_BIN, dir, dir, common, LEASH_BIN, dir, dir, common);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "cmp %s/a/model.safetensors %s/b/model.safetensors && cmp %s/a/checkpoint/optimizer.safetensors "
                              "%s/b/checkpoint/optimizer.safetensors",
             dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "resumed run differs from the uninterrupted one");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(gpt, pitfall_logprobs_do_not_depend_on_thread_count) {
    // Pitfall 6 (docs/kl-pitfalls.md): the same batch scored with 1 and with 2 threads, at shapes where
    // OpenBLAS does split the matrix products between threads (N = 512 rows, C = 128). Not bit-identical:
    // OpenBLAS picks its blocking by thread count, which changes float32 summation order; the stated bound
    // is 1e-5 relative, the same as for batch shapes (measured: 9e-8). Same thread count: bit-identical.
    leash_gpt_config cfg = {.vocab_size = 500, .n_positions = 128, .n_embd = 128, .n_layer = 2, .n_head = 4,
                            .bos_token_id = 0, .eos_token_id = 1, .layer_norm_epsilon = 1e-5f};
    leash_gpt *m;
    cr_assert_eq(leash_gpt_create(&m, &cfg), 0);
    leash_gpt_init(m, 6);
    enum { B = 4, T = 128 };
    int *tok = malloc(B * T * sizeof *tok), *tgt = malloc(B * T * sizeof *tgt);
    uint8_t *mask = malloc(B * T);
    float *lp[2] = {malloc(B * T * sizeof(float)), malloc(B * T * sizeof(float))};
    for (int i = 0; i < B * T; i++) {
        int b = i / T, t = i % T;
        tok[i] = (i * 37 + 11) % 500;
        mask[i] = t >= 10 * b; // left padding of 0, 10, 20, 30
        tgt[i] = t + 1 < T && mask[i] ? (i * 53 + 5) % 500 : -1;
    }
    int before = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        cr_assert_eq(leash_gpt_forward(m, tok, mask, B, T), 0);
        cr_assert_eq(leash_gpt_token_logprobs(m, tgt, 0.7f, lp[k], NULL), 0);
    }
    omp_set_num_threads(before);
    double worst = 0.0;
    for (int i = 0; i < B * T; i++) worst = fmax(worst, fabs((double)lp[0][i] - lp[1][i]) / fmax(1.0, fabs(lp[0][i])));
    cr_assert(worst <= 1e-5, "log-probs with 1 and 2 threads differ by %g relative", worst);
    cr_log_info("thread count: worst relative difference %g\n", worst);
    free(tok), free(tgt), free(mask), free(lp[0]), free(lp[1]);
    leash_gpt_free(m);
}

Test(gpt, frozen_model_scores_the_same_and_holds_no_gradients) {
    // Pitfall 10 (docs/kl-pitfalls.md): a frozen model (the reference) computes the same logits, holds no
    // gradient or backward buffer, and refuses a backward or an optimiser step.
    leash_gpt *a = tiny(0, 5), *b = tiny(0, 5);
    enum { B = 2, T = 6 };
    int tok[B * T] = {0, 5, 9, 33, 2, 17, /**/ 0, 3, 3, 40, 1, 7};
    cr_assert_eq(leash_gpt_forward(a, tok, NULL, B, T), 0);
    leash_gpt_freeze(b);
    cr_assert(leash_gpt_is_frozen(b) && !leash_gpt_is_frozen(a));
    cr_assert_eq(leash_gpt_forward(b, tok, NULL, B, T), 0, "%s", leash_errmsg());
    cr_assert_eq(memcmp(leash_gpt_logits(a), leash_gpt_logits(b), sizeof(float) * B * T * 50), 0, "logits differ");
    cr_assert(leash_gpt_grads(b) == NULL && leash_gpt_dlogits(b) == NULL);
    cr_assert(leash_gpt_memory_bytes(b) < leash_gpt_memory_bytes(a) * 0.7, "frozen %zu bytes vs %zu",
              leash_gpt_memory_bytes(b), leash_gpt_memory_bytes(a));
    cr_assert_eq(leash_gpt_backward(b), LEASH_EINVAL);
    cr_assert(strstr(leash_errmsg(), "frozen"), "%s", leash_errmsg());
    int tgt[B * T];
    for (int i = 0; i < B * T; i++) tgt[i] = i % T == T - 1 ? -1 : tok[i + 1];
    double loss;
    cr_assert_eq(leash_gpt_cross_entropy(b, tgt, &loss, NULL), LEASH_EINVAL);
    leash_adamw_config oc = leash_adamw_defaults();
    leash_adamw opt;
    cr_assert_eq(leash_adamw_create(&opt, &oc, leash_gpt_num_params(b)), 0);
    cr_assert_eq(leash_adamw_step(&opt, b, NULL, NULL), LEASH_EINVAL);
    leash_adamw_free(&opt);
    leash_gpt_free(a), leash_gpt_free(b);
}
