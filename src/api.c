/* Flat entry points for bindings: see include/leash/api.h.
 *
 * Dimensions: N rows, V vocabulary size, B sequences, M = max_new_tokens.
 */
#include "leash/api.h"

#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/kl.h"
#include "leash/sample.h"

/* The configuration's numbers a binding shows, by name; the order of leash_api_config_keys(). */
typedef struct {
    const char *key;
    double (*get)(const leash_gpt *m);
} config_key;

#define CFG_FIELD(name) static double get_##name(const leash_gpt *m) { return (double)leash_gpt_cfg(m)->name; }
CFG_FIELD(vocab_size)
CFG_FIELD(n_positions)
CFG_FIELD(n_embd)
CFG_FIELD(n_layer)
CFG_FIELD(n_head)
CFG_FIELD(bos_token_id)
CFG_FIELD(eos_token_id)
CFG_FIELD(untied_head)
CFG_FIELD(rope_theta)
CFG_FIELD(layer_norm_epsilon)
CFG_FIELD(lora_rank)
CFG_FIELD(scalar_head)
#undef CFG_FIELD
static double get_n_kv_head(const leash_gpt *m) { return leash_gpt_kv_heads(leash_gpt_cfg(m)); }
static double get_head_dim(const leash_gpt *m) { return leash_gpt_head_size(leash_gpt_cfg(m)); }
static double get_n_inner(const leash_gpt *m) { return leash_gpt_mlp_width(leash_gpt_cfg(m)); }
static double get_num_params(const leash_gpt *m) { return (double)leash_gpt_num_params(m); }

static const config_key CONFIG_KEYS[] = {
    {"vocab_size", get_vocab_size},   {"n_positions", get_n_positions},
    {"n_embd", get_n_embd},           {"n_layer", get_n_layer},
    {"n_head", get_n_head},           {"n_kv_head", get_n_kv_head},
    {"head_dim", get_head_dim},       {"n_inner", get_n_inner},
    {"bos_token_id", get_bos_token_id}, {"eos_token_id", get_eos_token_id},
    {"untied_head", get_untied_head}, {"rope_theta", get_rope_theta},
    {"layer_norm_epsilon", get_layer_norm_epsilon}, {"lora_rank", get_lora_rank},
    {"scalar_head", get_scalar_head}, {"num_params", get_num_params},
};
#define N_CONFIG_KEYS (sizeof CONFIG_KEYS / sizeof CONFIG_KEYS[0])

/* CONFIG_KEYS' names in order (tests/test_api.c checks that the two agree) */
const char *leash_api_config_keys(void) {
    return "vocab_size,n_positions,n_embd,n_layer,n_head,n_kv_head,head_dim,n_inner,bos_token_id,eos_token_id,"
           "untied_head,rope_theta,layer_norm_epsilon,lora_rank,scalar_head,num_params";
}

int leash_api_config_value(const leash_gpt *m, const char *key, double *value) {
    if (!m || !key || !value) return leash_fail(LEASH_EINVAL, "leash_api_config_value: a NULL argument");
    for (size_t i = 0; i < N_CONFIG_KEYS; i++)
        if (!strcmp(key, CONFIG_KEYS[i].key)) return *value = CONFIG_KEYS[i].get(m), LEASH_OK;
    return leash_fail(LEASH_EINVAL, "configuration key \"%s\" is not one leash reports; the keys are %s", key,
                      leash_api_config_keys());
}

const char *leash_api_model_type(const leash_gpt *m) {
    const leash_gpt_config *cfg = leash_gpt_cfg(m);
    if (cfg->model_type[0]) return cfg->model_type;
    return cfg->arch == LEASH_ARCH_GPT2 ? "gpt2" : "llama";
}

/* The sampling options of a generation from m with tok's end of text. */
static leash_sample_config stop_config(const leash_gpt *m, const leash_tokenizer *tok) {
    leash_sample_config sc = leash_sample_defaults();
    const leash_gpt_config *cfg = leash_gpt_cfg(m);
    leash_sample_set_eos(&sc, cfg, leash_tokenizer_eos(tok, cfg->eos_token_id));
    return sc;
}

int leash_api_eos_ids(const leash_gpt *m, const leash_tokenizer *tok, int *ids, int max) {
    leash_sample_config sc = stop_config(m, tok);
    int n = 0;
    if (sc.eos_id >= 0 && n < max) ids[n++] = sc.eos_id;
    for (int i = 0; i < sc.n_eos_more && n < max; i++) ids[n++] = sc.eos_more[i];
    return n;
}

int leash_api_generate(leash_gpt *m, const leash_tokenizer *tok, float temperature, int top_k, float top_p,
                       int max_new_tokens, uint64_t seed, const int *prompts, const int *prompt_lens, int B,
                       const uint64_t *streams, int *out_tokens, float *out_logprobs, int *out_lens) {
    if (!m || !tok) return leash_fail(LEASH_EINVAL, "leash_api_generate: no model or no tokenizer");
    leash_sample_config sc = stop_config(m, tok);
    sc.temperature = temperature;
    sc.top_k = top_k;
    sc.top_p = top_p;
    sc.max_new_tokens = max_new_tokens;
    sc.seed = seed;
    return leash_generate(m, &sc, prompts, prompt_lens, B, streams, out_tokens, out_logprobs, out_lens);
}

int leash_api_score(leash_gpt *m, const int *ids, int n, float temperature, float *logp) {
    if (!m || !ids || !logp) return leash_fail(LEASH_EINVAL, "leash_api_score: a NULL argument");
    if (n < 2)
        return leash_fail(LEASH_EINVAL, "a text of %d token(s): nothing to score (a token's log-prob needs a token "
                          "before it; bos=True scores the first token against BOS)", n);
    int *targets = malloc((size_t)n * sizeof *targets); // (n): the next token, -1 after the last
    float *lp = malloc((size_t)n * sizeof *lp);         // (n): lp[n - 1] is the unscored last position
    if (!targets || !lp) {
        free(targets), free(lp);
        return leash_fail(LEASH_ENOMEM, "out of memory scoring a text of %d tokens", n);
    }
    for (int t = 0; t < n; t++) targets[t] = t + 1 < n ? ids[t + 1] : -1;
    int rc = leash_gpt_forward(m, ids, NULL, 1, n);
    if (!rc) rc = leash_gpt_token_logprobs(m, targets, temperature, lp, NULL);
    if (!rc) memcpy(logp, lp, (size_t)(n - 1) * sizeof *lp);
    free(targets), free(lp);
    return rc;
}

int leash_api_log_softmax_rows(const float *logits, int N, int V, float temperature, float *out, double *lse) {
    if (N < 0) return leash_fail(LEASH_EINVAL, "N = %d rows; it must be >= 0", N);
    for (int i = 0; i < N; i++) {
        int rc = leash_log_softmax(logits + (size_t)i * V, V, temperature, out + (size_t)i * V, lse ? lse + i : NULL);
        if (rc) return leash_fail_wrap(rc, "row %d", i);
    }
    return LEASH_OK;
}

int leash_api_entropy_rows(const float *logits, int N, int V, float temperature, double *entropy) {
    if (N < 0) return leash_fail(LEASH_EINVAL, "N = %d rows; it must be >= 0", N);
    for (int i = 0; i < N; i++) {
        int rc = leash_entropy(logits + (size_t)i * V, V, temperature, &entropy[i]);
        if (rc) return leash_fail_wrap(rc, "row %d", i);
    }
    return LEASH_OK;
}

void leash_api_free(void *p) { free(p); }
