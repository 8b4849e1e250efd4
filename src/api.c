#define _POSIX_C_SOURCE 200809L /* sigaction */
/* Flat entry points for bindings: see include/leash/api.h.
 *
 * Dimensions: N rows, V vocabulary size, B sequences, M = max_new_tokens.
 */
#include "leash/api.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "leash/error.h"
#include "leash/frontier.h"
#include "leash/kl.h"
#include "leash/rundir.h"
#include "leash/sample.h"
#include "leash/stop.h"
#include "leash/tensorboard.h"
#include "api_relay.h"

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
CFG_FIELD(scalar_head)
#undef CFG_FIELD
static double get_n_kv_head(const leash_gpt *m) { return leash_gpt_kv_heads(leash_gpt_cfg(m)); }
static double get_head_dim(const leash_gpt *m) { return leash_gpt_head_size(leash_gpt_cfg(m)); }
static double get_n_inner(const leash_gpt *m) { return leash_gpt_mlp_width(leash_gpt_cfg(m)); }
static double get_num_params(const leash_gpt *m) { return (double)leash_gpt_num_params(m); }
static double get_lora_rank(const leash_gpt *m) { return leash_gpt_lora(m) ? leash_gpt_lora(m)->rank : 0; }

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

/* ---- the trainers: the CLI's options by name (src/cli/rl.c's table, whose names python/tests compares) ---- */

/* Everything an option sets: the configuration and what the CLI turns into it after parsing. */
typedef struct {
    leash_rl_config c;
    float beta, target, horizon, timeout;
    int fixed, per_token, seed, overwrite, gold, quiet;
    const char *tensorboard; /* the CLI's --tensorboard DIR: every step's metrics as TensorBoard scalars too */
    const char *tis_mode;    /* --tis-mode's name, parsed by finish_options */
    int stop_at_peak;        /* the CLI's --stop-at-peak (leash/frontier.h) */
    const char *reward_weights, *reward_names; /* the reward command's weight and label (one command here) */
    double weight;
    const char *label;
    char labels[256];
} rl_state;

typedef enum { OPT_STR, OPT_INT, OPT_FLOAT, OPT_SET, OPT_CLEAR, OPT_EST, OPT_GRPO } opt_type; /* OPT_GRPO: leash_grpo_choice */
enum { BOTH = -1 };

typedef struct {
    const char *name;
    opt_type type;
    int only;       /* BOTH, LEASH_PPO or LEASH_GRPO */
    double lo, hi;  /* INT and FLOAT: the CLI's range */
    size_t off;     /* the field in rl_state */
} rl_option;

#define F(x) offsetof(rl_state, x)
static const rl_option RL_OPTIONS[] = {
    {"policy", OPT_STR, BOTH, 0, 0, F(c.policy_dir)},       {"prompts", OPT_STR, BOTH, 0, 0, F(c.prompts)},
    {"out", OPT_STR, BOTH, 0, 0, F(c.out_dir)},             {"ref", OPT_STR, BOTH, 0, 0, F(c.ref_dir)},
    {"reward", OPT_STR, BOTH, 0, 0, F(c.reward.dir)},       {"reward-cmd", OPT_STR, BOTH, 0, 0, F(c.reward.cmd)},
    {"gold-reward", OPT_SET, BOTH, 0, 0, F(gold)},          {"gold-metrics", OPT_SET, BOTH, 0, 0, F(c.gold_metrics)},
    {"reward-timeout", OPT_FLOAT, BOTH, 1e-3, 1e6, F(timeout)},
    {"beta", OPT_FLOAT, BOTH, 0, 1e6, F(beta)},             {"fixed-beta", OPT_SET, LEASH_PPO, 0, 0, F(fixed)},
    {"kl-target", OPT_FLOAT, BOTH, 1e-6, 1e6, F(target)},   /* GRPO: NAN until given (then beta adapts) */
    {"kl-horizon", OPT_FLOAT, BOTH, 1, 1e12, F(horizon)},
    {"kl-per-token", OPT_SET, BOTH, 0, 0, F(per_token)},
    {"kl-estimator", OPT_EST, BOTH, 0, 0, 0},               {"no-normalize", OPT_CLEAR, BOTH, 0, 0, F(c.normalize_scores)},
    {"score-clip", OPT_FLOAT, BOTH, 0, 1e6, F(c.score_clip)},
    {"no-eos-penalty", OPT_FLOAT, BOTH, -1e6, 1e6, F(c.no_eos_penalty)},
    {"length-penalty", OPT_FLOAT, BOTH, 0, 1e6, F(c.length_penalty)},
    {"whiten-rewards", OPT_SET, LEASH_PPO, 0, 0, F(c.ppo.whiten_rewards)},
    {"steps", OPT_INT, BOTH, 1, 1 << 30, F(c.steps)},      {"batch", OPT_INT, BOTH, 1, 1 << 16, F(c.batch)},
    {"group", OPT_INT, LEASH_GRPO, 2, 1 << 12, F(c.grpo.group)},
    {"max-new", OPT_INT, BOTH, 1, 1 << 20, F(c.max_new)},  {"temperature", OPT_FLOAT, BOTH, 1e-3, 100, F(c.temperature)},
    {"seed", OPT_INT, BOTH, 0, 2147483647, F(seed)},       {"epochs", OPT_INT, BOTH, 1, 1000, F(c.epochs)},
    {"minibatch", OPT_INT, BOTH, 1, 1 << 16, F(c.minibatch)}, {"lr", OPT_FLOAT, BOTH, 1e-12, 1, F(c.optim.lr)},
    {"grad-accum", OPT_INT, BOTH, 1, 1 << 16, F(c.grad_accum)}, {"separate-scoring", OPT_SET, BOTH, 0, 0, F(c.separate_scoring)},
    {"value-lr", OPT_FLOAT, LEASH_PPO, 1e-12, 1, F(c.ppo.value_optim.lr)},
    {"clip", OPT_FLOAT, BOTH, 1e-6, 0.999, F(c.clip_eps)},
    {"value-clip", OPT_FLOAT, LEASH_PPO, 1e-6, 1e6, F(c.ppo.value_clip)},
    {"vf-coef", OPT_FLOAT, LEASH_PPO, 0, 1e6, F(c.ppo.vf_coef)},
    {"gamma", OPT_FLOAT, LEASH_PPO, 0, 1, F(c.ppo.gamma)},  {"lambda", OPT_FLOAT, LEASH_PPO, 0, 1, F(c.ppo.lam)},
    {"no-std-scaling", OPT_CLEAR, LEASH_GRPO, 0, 0, F(c.grpo.scale_rewards)}, /* LEASH_SCALE_NONE is 0 */
    {"token-level-loss", OPT_SET, LEASH_GRPO, 0, 0, F(c.grpo.loss)},          /* LEASH_LOSS_BNPO is 1 */
    {"baseline", OPT_GRPO, LEASH_GRPO, 0, 0, 0},            {"loss", OPT_GRPO, LEASH_GRPO, 0, 0, 0},
    {"scale-rewards", OPT_GRPO, LEASH_GRPO, 0, 0, 0},       {"importance-sampling-level", OPT_GRPO, LEASH_GRPO, 0, 0, 0},
    {"epsilon-high", OPT_FLOAT, LEASH_GRPO, 0, 100, F(c.grpo.epsilon_high)},
    {"mask-truncated-completions", OPT_SET, LEASH_GRPO, 0, 0, F(c.grpo.mask_truncated)},
    {"entropy-coef", OPT_FLOAT, LEASH_GRPO, 0, 1e6, F(c.grpo.entropy_coef)},
    {"sample-every", OPT_INT, BOTH, 0, 1 << 30, F(c.sample_every)},
    {"save-every", OPT_INT, BOTH, 0, 1 << 30, F(c.save_every)},
    {"resume", OPT_SET, BOTH, 0, 0, F(c.resume)},           {"overwrite", OPT_SET, BOTH, 0, 0, F(overwrite)},
    {"skip-nonfinite", OPT_SET, BOTH, 0, 0, F(c.skip_nonfinite)},
    {"quiet", OPT_SET, BOTH, 0, 0, F(quiet)}, /* the CLI's progress line; the library prints nothing anyway */
    {"lora-r", OPT_INT, BOTH, 0, 4096, F(c.lora_rank)},    {"lora-alpha", OPT_FLOAT, BOTH, 0, 1e6, F(c.lora_alpha)},
    {"lora-dropout", OPT_FLOAT, BOTH, 0, 0.999, F(c.lora_dropout)},
    {"lora-targets", OPT_STR, BOTH, 0, 0, F(c.lora_targets)},
    {"frozen-bf16", OPT_SET, BOTH, 0, 0, F(c.frozen_bf16)},
    {"checkpoint-activations", OPT_SET, BOTH, 0, 0, F(c.checkpoint_activations)},
    {"grad-clip", OPT_FLOAT, BOTH, 0, 1e30, F(c.optim.grad_clip)},
    {"weight-decay", OPT_FLOAT, BOTH, 0, 10, F(c.optim.weight_decay)},
    {"warmup", OPT_INT, BOTH, 0, 1 << 30, F(c.optim.warmup_steps)},
    {"tensorboard", OPT_STR, BOTH, 0, 0, F(tensorboard)},
    {"reward-weights", OPT_STR, BOTH, 0, 0, F(reward_weights)}, {"reward-names", OPT_STR, BOTH, 0, 0, F(reward_names)},
    {"chat-template", OPT_SET, BOTH, 0, 0, F(c.chat_template)},
    {"top-k", OPT_INT, BOTH, 0, 1 << 30, F(c.top_k)},      {"top-p", OPT_FLOAT, BOTH, 1e-9, 1.0, F(c.top_p)},
    {"ref-sync-every", OPT_INT, BOTH, 0, 1 << 30, F(c.ref_sync_every)},
    {"ref-sync-alpha", OPT_FLOAT, BOTH, 1e-6, 1.0, F(c.ref_sync_alpha)},
    {"tis-cap", OPT_FLOAT, BOTH, 0, 1e6, F(c.tis_cap)},     {"tis-mode", OPT_STR, BOTH, 0, 0, F(tis_mode)},
    {"stop-at-peak", OPT_SET, BOTH, 0, 0, F(stop_at_peak)},
};
#undef F
#define N_RL_OPTIONS (sizeof RL_OPTIONS / sizeof RL_OPTIONS[0])

static int parse_algo(const char *algo, leash_rl_algo *a) {
    if (algo && !strcmp(algo, "ppo")) return *a = LEASH_PPO, LEASH_OK;
    if (algo && !strcmp(algo, "grpo")) return *a = LEASH_GRPO, LEASH_OK;
    return leash_fail(LEASH_EINVAL, "trainer \"%s\": expected \"ppo\" or \"grpo\"", algo ? algo : "(null)");
}

static const rl_option *find_option(const char *key) {
    for (size_t i = 0; key && i < N_RL_OPTIONS; i++)
        if (!strcmp(key, RL_OPTIONS[i].name)) return &RL_OPTIONS[i];
    return NULL;
}

int leash_api_rl_option_known(const char *algo, const char *key) {
    leash_rl_algo a = LEASH_PPO;
    const rl_option *o = find_option(key);
    return !parse_algo(algo, &a) && o && (o->only == BOTH || o->only == (int)a);
}

/* A flag's value: 1 for "1"/"true", 0 for "0"/"false". */
static int parse_flag(const char *cmd, const char *key, const char *v, int *on) {
    if (v && (!strcmp(v, "1") || !strcasecmp(v, "true"))) return *on = 1, LEASH_OK;
    if (v && (!strcmp(v, "0") || !strcasecmp(v, "false"))) return *on = 0, LEASH_OK;
    return leash_fail(LEASH_EINVAL, "leash %s: option %s is a flag: give true or false, not \"%s\"", cmd, key, v ? v : "(null)");
}

static int parse_number(const char *cmd, const rl_option *o, const char *v, double *x) {
    char *end = NULL;
    errno = 0;
    *x = v ? strtod(v, &end) : NAN;
    if (!v || end == v || *end || errno || !(*x >= o->lo && *x <= o->hi) || (o->type == OPT_INT && *x != (double)(long)*x))
        return leash_fail(LEASH_EINVAL, "leash %s: option %s = \"%s\": expected %s in [%g, %g]", cmd, o->name,
                          v ? v : "(null)", o->type == OPT_INT ? "an integer" : "a number", o->lo, o->hi);
    return LEASH_OK;
}

/* One option onto s, as the CLI's getopt loop sets it. */
static int set_option(rl_state *s, const char *cmd, const char *key, const char *v) {
    const rl_option *o = find_option(key);
    if (!o)
        return leash_fail(LEASH_EINVAL, "leash %s: unknown option \"%s\" (the options are those of `leash %s --help`, "
                          "with - or _ between words)", cmd, key ? key : "(null)", cmd);
    if (o->only != BOTH && o->only != (int)s->c.algo)
        return leash_fail(LEASH_EINVAL, "leash %s: %s is a%s option; leash %s does not take it (see leash %s --help)", cmd,
                          key, o->only == LEASH_PPO ? " PPO" : " GRPO", cmd, cmd);
    char *field = (char *)s + o->off;
    double x;
    int on = 0, rc = LEASH_OK;
    switch (o->type) {
    case OPT_STR: *(const char **)field = v; break;
    case OPT_SET: if (!(rc = parse_flag(cmd, key, v, &on)) && on) *(int *)field = 1; break;
    case OPT_CLEAR: if (!(rc = parse_flag(cmd, key, v, &on)) && on) *(int *)field = 0; break;
    case OPT_INT: if (!(rc = parse_number(cmd, o, v, &x))) *(int *)field = (int)x; break;
    case OPT_FLOAT: if (!(rc = parse_number(cmd, o, v, &x))) *(float *)field = (float)x; break;
    case OPT_EST:
        if (v && !strcmp(v, "exact")) s->c.kl_estimator = LEASH_KL_EXACT;
        else if ((rc = leash_kl_estimator_parse(v ? v : "", &s->c.kl_estimator)))
            rc = leash_fail_wrap(rc, "leash %s: option kl-estimator (or exact)", cmd);
        break;
    case OPT_GRPO:
        if ((rc = leash_grpo_choice(&s->c.grpo, o->name, v))) rc = leash_fail_wrap(rc, "leash %s", cmd);
        break;
    }
    return rc;
}

/* What the CLI does after its loop: the reward's kind, the seed, the optimiser options shared with the value
 * model, and the beta controller. */
static int finish_options(rl_state *s, const char *cmd, leash_reward_batch_fn fn, void *ctx) {
    leash_rl_config *c = &s->c;
    int kinds = (c->reward.dir != NULL) + (c->reward.cmd != NULL) + s->gold + (fn != NULL);
    if (kinds > 1)
        return leash_fail(LEASH_EINVAL, "leash %s: give exactly one reward: reward functions, reward (a directory), "
                          "reward-cmd or gold-reward", cmd);
    c->reward.kind = c->reward.dir ? LEASH_REWARD_MODEL : c->reward.cmd ? LEASH_REWARD_COMMAND : s->gold ? LEASH_REWARD_GOLD
                   : fn ? LEASH_REWARD_BATCH : LEASH_REWARD_NONE;
    c->reward.batch_fn = fn, c->reward.ctx = ctx;
    c->reward.timeout_s = s->timeout;
    if ((s->reward_weights || s->reward_names) && !c->reward.cmd)
        return leash_fail(LEASH_EINVAL, "leash %s: reward-weights and reward-names go with reward-cmd", cmd);
    if (c->reward.cmd) {
        int rc = leash_reward_lists(1, s->reward_weights, s->reward_names, &s->weight, &s->label, s->labels, sizeof s->labels);
        if (rc) return leash_fail_wrap(rc, "leash %s", cmd);
        c->reward.weights = &s->weight, c->reward.cmd_names = &s->label;
    }
    c->seed = (uint64_t)s->seed;
    c->ppo.value_optim.grad_clip = c->optim.grad_clip;
    c->ppo.value_optim.weight_decay = c->optim.weight_decay;
    c->ppo.value_optim.warmup_steps = c->optim.warmup_steps;
    if (isnan(s->target) && s->horizon != (float)LEASH_BETA_DEFAULT_HORIZON) // GRPO without kl-target: beta stays fixed
        return leash_fail(LEASH_EINVAL, "leash %s: kl-horizon is the adaptive controller's; beta is fixed here (give kl-target)", cmd);
    int rc = s->fixed || s->beta == 0.0f || isnan(s->target) ? leash_beta_fixed(&c->beta, s->beta)
                                                            : leash_beta_adaptive(&c->beta, s->beta, s->target, s->horizon);
    if (rc) return leash_fail_wrap(rc, "leash %s", cmd);
    if (s->per_token && c->beta.kind != LEASH_BETA_ADAPTIVE)
        return leash_fail(LEASH_EINVAL, "leash %s: kl-per-token sets the adaptive controller's units; beta is fixed here", cmd);
    c->beta.units = s->per_token ? LEASH_KL_PER_TOKEN : LEASH_KL_PER_SEQUENCE;
    if (s->tis_mode && (rc = leash_tis_mode_parse(s->tis_mode, &c->tis_mode))) return leash_fail_wrap(rc, "leash %s", cmd);
    return LEASH_OK;
}

typedef struct {
    api_relay out;              /* TensorBoard and the binding's callback */
    leash_frontier_watch *peak; /* stop-at-peak: the run's (sqrt exact KL, gold) history, or NULL */
} step_relay;

static char stop_reason[512]; /* why the last leash_api_rl_train stopped early by itself ("" otherwise) */

const char *leash_api_rl_stop_reason(void) { return stop_reason; }

/* stop-at-peak as the CLI does it: the gold/reward metric (a scorer's, or the world's) against the exact KL. */
static int peak_passed(leash_frontier_watch *w, const leash_rl_progress *p) {
    double gold = p->metrics ? leash_metrics_value(p->metrics, "gold/reward") : NAN;
    int past = leash_frontier_watch_add(w, p->kl_exact, isnan(gold) ? p->gold_reward : gold);
    if (past < 0) snprintf(stop_reason, sizeof stop_reason, "stop-at-peak: %s", leash_errmsg());
    else if (past) leash_frontier_watch_reason(w, p->step, p->kl_exact, stop_reason, sizeof stop_reason);
    return past != 0;
}

static int relay_step(const leash_rl_progress *p, void *vctx) {
    step_relay *r = vctx;
    if (api_relay_tb(&r->out, p->metrics)) return 1;
    if (r->peak && peak_passed(r->peak, p)) return 1;
    return api_relay_call(&r->out, p->metrics, p->step, p->steps);
}

int leash_api_rl_train(const char *algo, const char *const *keys, const char *const *values, int n_options,
                       leash_reward_batch_fn reward_fn, void *reward_ctx, leash_api_step_fn step_fn, void *step_ctx,
                       int *final_step) {
    leash_rl_algo a = LEASH_PPO;
    int rc = parse_algo(algo, &a), lock = -1;
    if (rc) return rc;
    rl_state s = {.c = leash_rl_defaults(a), .target = a == LEASH_GRPO ? NAN : LEASH_BETA_DEFAULT_TARGET,
                  .horizon = LEASH_BETA_DEFAULT_HORIZON};
    s.beta = (float)s.c.beta.beta, s.timeout = (float)s.c.reward.timeout_s;
    for (int i = 0; i < n_options && !rc; i++) rc = set_option(&s, algo, keys[i], values[i]);
    if (!rc) rc = finish_options(&s, algo, reward_fn, reward_ctx);
    if (!rc && !s.c.out_dir) rc = leash_fail(LEASH_EINVAL, "leash %s: out (the run directory) is required", algo);
    if (!rc) rc = leash_rundir_open(s.c.out_dir, s.c.resume, s.overwrite, &lock);
    step_relay relay = {{step_fn, step_ctx, NULL, 0, 0, 0}, NULL};
    leash_frontier_watch peak;
    stop_reason[0] = 0;
    if (s.stop_at_peak) leash_frontier_watch_init(&peak, 10, 3), relay.peak = &peak;
    if (!rc && s.tensorboard && (rc = leash_tb_open(&relay.out.tb, s.tensorboard))) leash_rundir_unlock(lock);
    if (rc) return rc;
    leash_rl_progress fin = {0};
    leash_stop_reset();
    rc = leash_rl_train(&s.c, relay_step, &relay, &fin);
    if (relay.peak) leash_frontier_watch_free(relay.peak);
    leash_stop_reset();
    leash_rundir_unlock(lock);
    rc = api_relay_finish(&relay.out, rc);
    if (final_step) *final_step = fin.step;
    return rc;
}

int leash_api_metric(const leash_metrics *t, int i, const char **name, int *kind, double *value, const char **text,
                     const char **format) {
    if (!t) return 0;
    if (i >= 0 && i < t->n) {
        const leash_metric *m = &t->m[i];
        *name = m->name, *kind = (int)m->kind, *value = m->value;
        *text = m->kind == LEASH_METRIC_TEXT ? m->text : NULL;
        *format = m->kind == LEASH_METRIC_REAL ? m->format : NULL;
    }
    return t->n;
}

static void on_sigint(int sig) {
    (void)sig;
    leash_request_stop();
}

int leash_api_sigint_stop(int on) {
    static struct sigaction saved;
    static int installed = 0;
    if (on && !installed) {
        struct sigaction sa = {0};
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGINT, &sa, &saved)) return leash_fail(LEASH_EIO, "cannot catch SIGINT: %s", strerror(errno));
        installed = 1;
    } else if (!on && installed) {
        if (sigaction(SIGINT, &saved, NULL)) return leash_fail(LEASH_EIO, "cannot restore SIGINT's handler: %s", strerror(errno));
        installed = 0;
    }
    return LEASH_OK;
}

void leash_api_free(void *p) { free(p); }
