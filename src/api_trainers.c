/* Flat entry points for bindings over the trainers other than PPO and GRPO (src/api.c has those): leash dpo,
 * leash rm train and leash pretrain, with the CLI's options by name and its ranges, as leash_api_rl_train
 * takes ppo's and grpo's (include/leash/api.h). python/tests compares each table with `leash CMD --help`. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "leash/api.h"
#include "leash/dpo.h"
#include "leash/error.h"
#include "leash/pretrain.h"
#include "leash/reward.h"
#include "leash/rundir.h"
#include "leash/stop.h"
#include "leash/tensorboard.h"
#include "leash/world.h"
#include "api_relay.h"

enum { MAX_DATA = 256 };

/* Everything an option of one of the three trainers sets. */
typedef struct {
    leash_dpo_config dpo;
    leash_rm_config rm;
    leash_pretrain_config pt;
    int seed, overwrite, quiet, gold_world;
    const char *tensorboard, *loss, *arch;
    const char *data[MAX_DATA]; /* pretrain's --data, repeated */
    int n_data;
} train_state;

typedef enum { T_STR, T_INT, T_FLOAT, T_DOUBLE, T_SET, T_DATA } opt_kind;

typedef struct {
    const char *name;
    opt_kind type;
    double lo, hi; /* INT, FLOAT, DOUBLE: the CLI's range */
    size_t off;    /* the field in train_state */
} train_option;

#define F(x) offsetof(train_state, x)
static const train_option DPO_OPTIONS[] = { /* src/cli/dpo.c */
    {"policy", T_STR, 0, 0, F(dpo.policy)},      {"data", T_STR, 0, 0, F(dpo.data)},
    {"out", T_STR, 0, 0, F(dpo.out_dir)},        {"beta", T_DOUBLE, 1e-6, 1e6, F(dpo.beta)},
    {"loss", T_STR, 0, 0, F(loss)},              {"lr", T_FLOAT, 0, 10, F(dpo.optim.lr)},
    {"warmup", T_INT, 0, 1 << 30, F(dpo.optim.warmup_steps)},
    {"grad-clip", T_FLOAT, 0, 1e9, F(dpo.optim.grad_clip)},
    {"weight-decay", T_FLOAT, 0, 10, F(dpo.optim.weight_decay)},
    {"batch", T_INT, 1, 4096, F(dpo.batch_size)}, {"epochs", T_INT, 1, 1 << 20, F(dpo.epochs)},
    {"steps", T_INT, 1, 1 << 30, F(dpo.steps)},  {"seed", T_INT, 0, 1 << 30, F(seed)},
    {"lora-r", T_INT, 0, 4096, F(dpo.lora_rank)}, {"lora-alpha", T_FLOAT, 0, 1e6, F(dpo.lora_alpha)},
    {"lora-targets", T_STR, 0, 0, F(dpo.lora_targets)},
    {"resume", T_SET, 0, 0, F(dpo.resume)},      {"overwrite", T_SET, 0, 0, F(overwrite)},
    {"save-every", T_INT, 0, 1 << 30, F(dpo.save_every)},
    {"tensorboard", T_STR, 0, 0, F(tensorboard)}, {"quiet", T_SET, 0, 0, F(quiet)},
    {"checkpoint-activations", T_SET, 0, 0, F(dpo.checkpoint_activations)},
};
static const train_option RM_OPTIONS[] = { /* src/cli/rm.c, cli_rm_train_options */
    {"data", T_STR, 0, 0, F(rm.data)},           {"init", T_STR, 0, 0, F(rm.init_dir)},
    {"tokenizer", T_STR, 0, 0, F(rm.tokenizer_dir)}, {"out", T_STR, 0, 0, F(rm.out_dir)},
    {"epochs", T_INT, 1, 100000, F(rm.epochs)},  {"batch", T_INT, 1, 256, F(rm.batch_size)},
    {"lr", T_FLOAT, 1e-12, 10, F(rm.optim.lr)},  {"warmup", T_INT, 0, 1 << 30, F(rm.optim.warmup_steps)},
    {"weight-decay", T_FLOAT, 0, 10, F(rm.optim.weight_decay)},
    {"grad-clip", T_FLOAT, 0, 1e30, F(rm.optim.grad_clip)},
    {"val-fraction", T_FLOAT, 0, 0.99, F(rm.val_fraction)}, {"seed", T_INT, 0, 2147483647, F(seed)},
    {"gold-world", T_SET, 0, 0, F(gold_world)},  {"n-layer", T_INT, 1, 1024, F(rm.model.n_layer)},
    {"n-embd", T_INT, 1, 65536, F(rm.model.n_embd)}, {"n-head", T_INT, 1, 1024, F(rm.model.n_head)},
    {"n-positions", T_INT, 1, 1 << 20, F(rm.model.n_positions)},
    {"skip-nonfinite", T_SET, 0, 0, F(rm.skip_nonfinite)}, {"quiet", T_SET, 0, 0, F(quiet)},
    {"lora-r", T_INT, 0, 4096, F(rm.lora_rank)}, {"lora-alpha", T_FLOAT, 0, 1e6, F(rm.lora_alpha)},
    {"lora-targets", T_STR, 0, 0, F(rm.lora_targets)},
    {"checkpoint-activations", T_SET, 0, 0, F(rm.checkpoint_activations)},
};
static const train_option PRETRAIN_OPTIONS[] = { /* src/cli/pretrain.c */
    {"data", T_DATA, 0, 0, 0},                   {"out", T_STR, 0, 0, F(pt.out_dir)},
    {"init", T_STR, 0, 0, F(pt.init_dir)},       {"tokenizer", T_STR, 0, 0, F(pt.tokenizer_dir)},
    {"vocab-size", T_INT, 257, 1000000, F(pt.vocab_size)}, {"n-layer", T_INT, 1, 1024, F(pt.model.n_layer)},
    {"n-embd", T_INT, 1, 65536, F(pt.model.n_embd)}, {"n-head", T_INT, 1, 1024, F(pt.model.n_head)},
    {"n-positions", T_INT, 1, 1 << 20, F(pt.model.n_positions)}, {"batch", T_INT, 1, 1 << 16, F(pt.batch_size)},
    {"seq-len", T_INT, 1, 1 << 20, F(pt.seq_len)}, {"grad-accum", T_INT, 1, 1 << 16, F(pt.grad_accum)},
    {"steps", T_INT, 1, 1 << 30, F(pt.steps)},   {"seed", T_INT, 0, 2147483647, F(seed)},
    {"lr", T_FLOAT, 1e-12, 10, F(pt.optim.lr)},  {"warmup", T_INT, 0, 1 << 30, F(pt.optim.warmup_steps)},
    {"min-lr-ratio", T_FLOAT, 0, 1, F(pt.optim.min_lr_ratio)},
    {"weight-decay", T_FLOAT, 0, 10, F(pt.optim.weight_decay)},
    {"grad-clip", T_FLOAT, 0, 1e30, F(pt.optim.grad_clip)},
    {"beta1", T_FLOAT, 0, 0.999999, F(pt.optim.beta1)}, {"beta2", T_FLOAT, 0, 0.999999, F(pt.optim.beta2)},
    {"val-fraction", T_FLOAT, 0, 0.99, F(pt.val_fraction)}, {"val-every", T_INT, 0, 1 << 30, F(pt.val_every)},
    {"val-batches", T_INT, 1, 1 << 20, F(pt.val_batches)}, {"save-every", T_INT, 0, 1 << 30, F(pt.save_every)},
    {"resume", T_SET, 0, 0, F(pt.resume)},       {"overwrite", T_SET, 0, 0, F(overwrite)},
    {"skip-nonfinite", T_SET, 0, 0, F(pt.skip_nonfinite)}, {"quiet", T_SET, 0, 0, F(quiet)},
    {"arch", T_STR, 0, 0, F(arch)},              {"n-kv-head", T_INT, 1, 1024, F(pt.model.n_kv_head)},
    {"tensorboard", T_STR, 0, 0, F(tensorboard)},
    {"checkpoint-activations", T_SET, 0, 0, F(pt.checkpoint_activations)},
};
#undef F

typedef enum { TR_DPO, TR_RM, TR_PRETRAIN } trainer_id;

static const struct {
    const char *name; /* as bindings call it; the CLI's "rm train" is "rm_train" */
    const train_option *opts;
    size_t n;
} TRAINERS[] = {
    {"dpo", DPO_OPTIONS, sizeof DPO_OPTIONS / sizeof DPO_OPTIONS[0]},
    {"rm_train", RM_OPTIONS, sizeof RM_OPTIONS / sizeof RM_OPTIONS[0]},
    {"pretrain", PRETRAIN_OPTIONS, sizeof PRETRAIN_OPTIONS / sizeof PRETRAIN_OPTIONS[0]},
};

static int find_trainer(const char *name) {
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, TRAINERS[i].name)) return i;
    return -1;
}

static const train_option *find_train_option(int t, const char *key) {
    for (size_t i = 0; key && i < TRAINERS[t].n; i++)
        if (!strcmp(key, TRAINERS[t].opts[i].name)) return &TRAINERS[t].opts[i];
    return NULL;
}

int leash_api_train_option_known(const char *trainer, const char *key) {
    int t = find_trainer(trainer);
    return t >= 0 && find_train_option(t, key) != NULL;
}

/* One option onto s, as the CLI's getopt loop sets it. */
static int set_train_option(train_state *s, int t, const char *key, const char *v) {
    const char *cmd = TRAINERS[t].name;
    const train_option *o = find_train_option(t, key);
    if (!o)
        return leash_fail(LEASH_EINVAL, "leash %s: unknown option \"%s\" (the options are those of `leash %s --help`, "
                          "with - or _ between words)", cmd, key ? key : "(null)", t == TR_RM ? "rm train" : cmd);
    char *field = (char *)s + o->off, *end = NULL;
    if (o->type == T_STR) return *(const char **)field = v, LEASH_OK;
    if (o->type == T_DATA) {
        if (s->n_data == MAX_DATA) return leash_fail(LEASH_EINVAL, "leash %s: more than %d data files", cmd, MAX_DATA);
        return s->data[s->n_data++] = v, LEASH_OK;
    }
    if (o->type == T_SET) {
        if (v && (!strcmp(v, "1") || !strcasecmp(v, "true"))) return *(int *)field = 1, LEASH_OK;
        if (v && (!strcmp(v, "0") || !strcasecmp(v, "false"))) return LEASH_OK;
        return leash_fail(LEASH_EINVAL, "leash %s: option %s is a flag: give true or false, not \"%s\"", cmd, key, v ? v : "(null)");
    }
    errno = 0;
    double x = v ? strtod(v, &end) : NAN;
    if (!v || end == v || *end || errno || !(x >= o->lo && x <= o->hi) || (o->type == T_INT && x != (double)(long)x))
        return leash_fail(LEASH_EINVAL, "leash %s: option %s = \"%s\": expected %s in [%g, %g]", cmd, key, v ? v : "(null)",
                          o->type == T_INT ? "an integer" : "a number", o->lo, o->hi);
    if (o->type == T_INT) *(int *)field = (int)x;
    else if (o->type == T_FLOAT) *(float *)field = (float)x;
    else *(double *)field = x;
    return LEASH_OK;
}

static double world_gold(const char *text, void *ctx) {
    (void)ctx;
    return leash_world_score(text, strlen(text)).reward;
}

/* What each CLI does after its option loop (src/cli/dpo.c, rm.c, pretrain.c). */
static int finish_train_options(train_state *s, int t) {
    if (t == TR_DPO) {
        if (s->loss && strcmp(s->loss, "sigmoid") && strcmp(s->loss, "ipo"))
            return leash_fail(LEASH_EINVAL, "leash dpo: loss \"%s\"; it must be sigmoid or ipo", s->loss);
        s->dpo.loss = s->loss && !strcmp(s->loss, "ipo") ? LEASH_DPO_IPO : LEASH_DPO_SIGMOID;
        s->dpo.seed = (uint64_t)s->seed;
        if (!s->dpo.policy || !s->dpo.data || !s->dpo.out_dir)
            return leash_fail(LEASH_EINVAL, "leash dpo: policy, data and out are required");
    } else if (t == TR_RM) {
        s->rm.seed = (uint64_t)s->seed;
        if (s->gold_world) s->rm.gold = world_gold;
        if (!s->rm.data || !s->rm.out_dir) return leash_fail(LEASH_EINVAL, "leash rm_train: data and out are required");
    } else {
        leash_pretrain_config *c = &s->pt;
        c->data = s->data, c->n_data = s->n_data, c->seed = (uint64_t)s->seed, c->optim.total_steps = c->steps;
        if (c->seq_len > c->model.n_positions) c->model.n_positions = c->seq_len;
        if (s->arch && strcmp(s->arch, "gpt2") && strcmp(s->arch, "llama"))
            return leash_fail(LEASH_EINVAL, "leash pretrain: arch \"%s\": choose gpt2 or llama", s->arch);
        if (s->arch && !strcmp(s->arch, "llama")) {
            c->model.arch = LEASH_ARCH_LLAMA, c->model.layer_norm_epsilon = 1e-6f;
            strcpy(c->model.model_type, "llama");
        } else if (c->model.n_kv_head)
            return leash_fail(LEASH_EINVAL, "leash pretrain: n-kv-head needs arch llama (GPT-2 has no grouped-query attention)");
        if (!c->n_data || !c->out_dir) return leash_fail(LEASH_EINVAL, "leash pretrain: data and out are required");
    }
    return LEASH_OK;
}

int api_relay_tb(api_relay *r, const leash_metrics *m) {
    return r->tb && m && (r->tb_rc = leash_metrics_write_tb(r->tb, m)) != 0;
}

int api_relay_call(const api_relay *r, const leash_metrics *m, int step, int steps) {
    return r->fn ? r->fn(m, step, steps, r->ctx) : 0;
}

int api_relay_finish(api_relay *r, int rc) {
    if (!rc && r->tb_rc) rc = r->tb_rc;
    int rc_tb = leash_tb_close(r->tb);
    return rc ? rc : rc_tb;
}

static int relay_metrics(api_relay *r, const leash_metrics *m, int step, int steps) {
    r->step = step, r->steps = steps;
    return api_relay_tb(r, m) || api_relay_call(r, m, step, steps);
}

static int dpo_step(const leash_dpo_progress *p, void *ctx) { return relay_metrics(ctx, p->metrics, p->step, p->steps); }
static int pretrain_step(const leash_pretrain_progress *p, void *ctx) { return relay_metrics(ctx, p->metrics, p->step, p->steps); }

/* The reward model's trainer reports fields, not a table: its updates' and validations' values as one. */
static int rm_step(const leash_rm_progress *p, void *ctx) {
    if (p->stats_total) return 0; // the score statistics' pass after training: no step of its own
    leash_metrics m = {0};
    leash_metrics_int(&m, "step", p->step);
    leash_metrics_int(&m, "epoch", p->epoch);
    if (p->validation) {
        leash_metrics_real(&m, "val/accuracy", "%.6f", p->val_accuracy);
        leash_metrics_real(&m, "val/gold_accuracy", "%.6f", p->val_gold_accuracy);
        leash_metrics_int(&m, "val/n", p->val_n);
    } else leash_metrics_real(&m, "loss", "%.6f", p->loss);
    leash_metrics_int(&m, "skipped", p->skipped);
    return relay_metrics(ctx, &m, p->step, p->steps);
}

int leash_api_train(const char *trainer, const char *const *keys, const char *const *values, int n_options,
                    leash_api_step_fn step_fn, void *step_ctx, int *final_step, int *steps) {
    int t = find_trainer(trainer), rc = LEASH_OK, lock = -1;
    if (t < 0) return leash_fail(LEASH_EINVAL, "trainer \"%s\": expected dpo, rm_train or pretrain", trainer ? trainer : "(null)");
    train_state *s = calloc(1, sizeof *s);
    if (!s) return leash_fail(LEASH_ENOMEM, "out of memory");
    s->dpo = leash_dpo_defaults(), s->rm = leash_rm_defaults(), s->pt = leash_pretrain_defaults();
    s->seed = t == TR_DPO ? 1 : 0; // the CLIs' default seeds
    for (int i = 0; i < n_options && !rc; i++) rc = set_train_option(s, t, keys[i], values[i]);
    if (!rc) rc = finish_train_options(s, t);
    const char *out = t == TR_DPO ? s->dpo.out_dir : t == TR_RM ? s->rm.out_dir : s->pt.out_dir;
    int resume = t == TR_DPO ? s->dpo.resume : t == TR_PRETRAIN ? s->pt.resume : 0;
    if (!rc) rc = leash_rundir_open(out, resume, s->overwrite, &lock);
    api_relay relay = {step_fn, step_ctx, NULL, 0, 0, 0};
    if (!rc && s->tensorboard && (rc = leash_tb_open(&relay.tb, s->tensorboard))) leash_rundir_unlock(lock);
    if (rc) return free(s), rc;
    leash_stop_reset();
    if (t == TR_DPO) {
        leash_dpo_progress fin = {0};
        rc = leash_dpo_train(&s->dpo, dpo_step, &relay, &fin);
    } else if (t == TR_RM) rc = leash_rm_train(&s->rm, rm_step, &relay, NULL);
    else rc = leash_pretrain(&s->pt, pretrain_step, &relay);
    leash_stop_reset();
    leash_rundir_unlock(lock);
    rc = api_relay_finish(&relay, rc);
    if (final_step) *final_step = relay.step;
    if (steps) *steps = relay.steps;
    free(s);
    return rc;
}
