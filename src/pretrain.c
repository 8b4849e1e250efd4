/* Pre-training / supervised fine-tuning on plain text: see include/leash/pretrain.h.
 * Dimensions: B batch, T sequence length. */
#define _DEFAULT_SOURCE // realpath
#define _POSIX_C_SOURCE 200809L
#include "leash/pretrain.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/checkpoint.h"
#include "leash/dist.h"
#include "leash/error.h"
#include "leash/stop.h"
#include "leash/fileio.h"
#include "leash/rng.h"
#include "leash/tokenizer.h"

#define EOT "<|endoftext|>"

leash_pretrain_config leash_pretrain_defaults(void) {
    leash_pretrain_config c = {0};
    c.model = (leash_gpt_config){.n_positions = 128, .n_embd = 256, .n_layer = 6, .n_head = 8, .bos_token_id = -1,
                                 .eos_token_id = -1, .layer_norm_epsilon = 1e-5f};
    c.vocab_size = 2048;
    c.batch_size = 16;
    c.seq_len = 128;
    c.grad_accum = 1;
    c.steps = 1000;
    c.optim = leash_adamw_defaults();
    c.optim.lr = 1e-3f;
    c.optim.warmup_steps = 50;
    c.val_fraction = 0.05f;
    c.val_every = 100;
    c.val_batches = 8;
    c.save_every = 500;
    return c;
}

typedef struct {
    int *ids;
    size_t n, cap;
} stream;

/* Splits the text of all files into documents (by "<|endoftext|>" when a file has one, else by line) and
 * tokenises them into train and val streams, each document followed by eos. */
static int load_corpus(const leash_pretrain_config *c, const leash_tokenizer *tok, int eos, stream *train, stream *val) {
    // pass 1: documents as (pointer, length) into the loaded texts
    char **texts = calloc(c->n_data, sizeof *texts);
    size_t n_docs = 0, cap_docs = 1024;
    struct doc {
        const char *s;
        size_t n;
    } *docs = malloc(cap_docs * sizeof *docs);
    int rc = texts && docs ? LEASH_OK : leash_fail(LEASH_ENOMEM, "out of memory");
    for (int f = 0; f < c->n_data && !rc; f++) {
        size_t len;
        if ((rc = leash_read_file(c->data[f], (size_t)4 << 30, &texts[f], &len))) break;
        int by_eot = strstr(texts[f], EOT) != NULL;
        for (char *p = texts[f]; *p && !rc;) {
            char *end = by_eot ? strstr(p, EOT) : strchr(p, '\n');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            const char *s = p;
            p = end ? end + (by_eot ? strlen(EOT) : 1) : p + n;
            while (n && (s[0] == '\n' || s[0] == '\r')) s++, n--; // documents do not start or end with newlines
            while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
            if (!n) continue;
            if (n_docs == cap_docs) {
                struct doc *g = realloc(docs, (cap_docs *= 2) * sizeof *docs);
                if (!g) { rc = leash_fail(LEASH_ENOMEM, "out of memory"); break; }
                docs = g;
            }
            docs[n_docs++] = (struct doc){s, n};
        }
    }
    size_t n_val = (size_t)floor(n_docs * (double)c->val_fraction);
    if (!rc && c->val_fraction > 0 && n_val == 0 && n_docs >= 2) n_val = 1;
    if (!rc && n_docs - n_val == 0)
        rc = leash_fail(LEASH_EINVAL, "the data files hold %zu document(s): nothing left to train on after the %zu held out",
                        n_docs, n_val);
    for (size_t d = 0; d < n_docs && !rc; d++) {
        stream *s = d < n_docs - n_val ? train : val;
        rc = leash_tokenizer_encode(tok, docs[d].s, docs[d].n, 0, &s->ids, &s->n, &s->cap);
        if (!rc && s->n == s->cap) {
            int *g = realloc(s->ids, (s->cap = 2 * s->cap + 1) * sizeof *g);
            if (!g) rc = leash_fail(LEASH_ENOMEM, "out of memory");
            else s->ids = g;
        }
        if (!rc) s->ids[s->n++] = eos;
    }
    for (int f = 0; texts && f < c->n_data; f++) free(texts[f]);
    free(texts);
    free(docs);
    return rc;
}

/* B windows of T + 1 tokens from s at positions drawn from rng: inputs (B, T) and targets (B, T). */
static void draw_batch(const stream *s, leash_rng *rng, int B, int T, int *inputs, int *targets) {
    size_t span = s->n - (size_t)T - 1 + 1;
    for (int b = 0; b < B; b++) {
        size_t at = (size_t)(leash_rng_uniform(rng) * span);
        for (int t = 0; t < T; t++) inputs[b * T + t] = s->ids[at + t], targets[b * T + t] = s->ids[at + t + 1];
    }
}

static int check_config(const leash_pretrain_config *c) {
    if (!c->out_dir) return leash_fail(LEASH_EINVAL, "--out: an output directory is required");
    if (c->n_data < 1 && !c->resume) return leash_fail(LEASH_EINVAL, "--data: at least one text file is required");
    if (c->batch_size < 1) return leash_fail(LEASH_EINVAL, "--batch = %d; it must be >= 1", c->batch_size);
    if (c->seq_len < 1) return leash_fail(LEASH_EINVAL, "--seq-len = %d; it must be >= 1", c->seq_len);
    if (c->grad_accum < 1) return leash_fail(LEASH_EINVAL, "--grad-accum = %d; it must be >= 1", c->grad_accum);
    if (c->steps < 1) return leash_fail(LEASH_EINVAL, "--steps = %d; it must be >= 1", c->steps);
    if (!(c->val_fraction >= 0.0f && c->val_fraction < 1.0f))
        return leash_fail(LEASH_EINVAL, "--val-fraction = %g; it must be in [0, 1)", (double)c->val_fraction);
    if (c->val_every < 0 || c->save_every < 0 || c->val_batches < 1)
        return leash_fail(LEASH_EINVAL, "--val-every and --save-every must be >= 0 and --val-batches >= 1");
    return leash_adamw_config_check(&c->optim);
}

/* The options that define a pretraining run, in one place: saved in trainer_state.json and compared on
 * --resume, a difference refused naming the option. The first four keys are in every checkpoint; a checkpoint
 * written before the others existed is not checked on them. --steps, --save-every, --val-every and -q may
 * change. */
static const char *const SETTING_OPTIONS[][2] = {
    {"seed", "--seed"}, {"batch_size", "--batch"}, {"seq_len", "--seq-len"}, {"grad_accum", "--grad-accum"},
    {"data", "--data"}, {"init", "--init"}, {"tokenizer", "--tokenizer"}, {"vocab_size", "--vocab-size"},
    {"arch", "--arch"}, {"n_layer", "--n-layer"}, {"n_embd", "--n-embd"}, {"n_head", "--n-head"},
    {"n_kv_head", "--n-kv-head"}, {"n_positions", "--n-positions"}, {"lr", "--lr"}, {"warmup", "--warmup"},
    {"min_lr_ratio", "--min-lr-ratio"}, {"weight_decay", "--weight-decay"}, {"grad_clip", "--grad-clip"},
    {"beta1", "--beta1"}, {"beta2", "--beta2"}, {"val_fraction", "--val-fraction"}, {"val_batches", "--val-batches"}};
#define OLD_SETTINGS 4

static cJSON *real_path(const char *path) {
    char real[4096];
    return path ? cJSON_CreateString(realpath(path, real) ? real : path) : cJSON_CreateNull();
}

static void add_settings(cJSON *o, const leash_pretrain_config *c) {
    int fresh = !c->init_dir; // a new model: its shape comes from the options
    double v[] = {(double)c->seed, c->batch_size, c->seq_len, c->grad_accum};
    for (int i = 0; i < OLD_SETTINGS; i++) cJSON_AddNumberToObject(o, SETTING_OPTIONS[i][0], v[i]);
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (int f = 0; f < c->n_data; f++) cJSON_AddItemToArray(data, real_path(c->data[f]));
    cJSON_AddItemToObject(o, "init", real_path(c->init_dir));
    cJSON_AddItemToObject(o, "tokenizer", real_path(fresh ? c->tokenizer_dir : NULL));
    cJSON_AddNumberToObject(o, "vocab_size", fresh && !c->tokenizer_dir ? c->vocab_size : 0);
    cJSON_AddStringToObject(o, "arch", !fresh ? "" : c->model.arch == LEASH_ARCH_LLAMA ? "llama" : "gpt2");
    const int shape[] = {c->model.n_layer, c->model.n_embd, c->model.n_head, c->model.n_kv_head, c->model.n_positions};
    for (int i = 0; i < 5; i++) cJSON_AddNumberToObject(o, SETTING_OPTIONS[9 + i][0], fresh ? shape[i] : 0);
    const double opt[] = {c->optim.lr, c->optim.warmup_steps, c->optim.min_lr_ratio, c->optim.weight_decay,
                          c->optim.grad_clip, c->optim.beta1, c->optim.beta2, c->val_fraction, c->val_batches};
    for (int i = 0; i < 9; i++) cJSON_AddNumberToObject(o, SETTING_OPTIONS[14 + i][0], opt[i]);
}

/* The first setting of this run that differs from the checkpoint's state o (read from path), refused by name. */
static int check_settings(const cJSON *o, const leash_pretrain_config *c, const char *path) {
    cJSON *want = cJSON_CreateObject();
    if (!want) return leash_fail(LEASH_ENOMEM, "out of memory");
    add_settings(want, c);
    int k = 0, rc = LEASH_OK;
    for (const cJSON *item = want->child; item && !rc; item = item->next, k++) {
        const cJSON *have = cJSON_GetObjectItemCaseSensitive(o, item->string);
        if (!have && k >= OLD_SETTINGS) continue; // an older checkpoint: not recorded
        if (have && cJSON_Compare(have, item, 1)) continue;
        char *a = have ? cJSON_PrintUnformatted(have) : NULL, *b = cJSON_PrintUnformatted(item);
        rc = leash_fail(LEASH_EINVAL, "%s: the checkpoint was trained with %s %s, this run asks for %s; an option that defines "
                                      "the run cannot change on --resume (only --steps, --save-every, --val-every and -q may): "
                                      "resume with the same value, or start a new run",
                        path, SETTING_OPTIONS[k][1], a ? a : "(missing)", b ? b : "?");
        free(a), free(b);
    }
    cJSON_Delete(want);
    return rc;
}

/* The checkpoint (OUT/checkpoint, replaced as a set: include/leash/checkpoint.h): weights, optimizer state and
 * trainer_state.json; at the end of the run the weights also go to OUT itself, the model directory. */
static int save_state(const leash_pretrain_config *c, leash_gpt *m, const leash_adamw *opt, int step, long skipped, int last) {
    char dir[4200], path[4300];
    int rc = leash_checkpoint_begin(c->out_dir, dir, sizeof dir);
    if (!rc) rc = leash_gpt_save(m, dir);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (!rc) rc = leash_adamw_save(opt, path);
    if (rc) return leash_fail_wrap(rc, "writing the checkpoint of step %d (the previous one is intact)", step);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddNumberToObject(o, "skipped", (double)skipped);
    add_settings(o, c);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    rc = text ? leash_write_file_atomic(path, text, strlen(text)) : leash_fail(LEASH_ENOMEM, "out of memory");
    free(text);
    if (!rc) rc = leash_checkpoint_commit(c->out_dir);
    if (!rc && last) rc = leash_gpt_save(m, c->out_dir);
    return rc;
}

static int load_state(const leash_pretrain_config *c, const char *dir, int *step, long *skipped) {
    char path[4300], *text;
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    int rc = leash_read_file(path, 1 << 20, &text, NULL);
    if (rc) return leash_fail_wrap(rc, "--resume: the checkpoint is damaged");
    cJSON *o = cJSON_Parse(text);
    free(text);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
    if (!cJSON_IsNumber(st)) rc = leash_fail(LEASH_EFORMAT, "%s: missing or non-numeric \"step\"", path);
    else *step = st->valueint;
    if (!rc) rc = check_settings(o, c, path);
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(o, "skipped");
    if (!rc && !cJSON_IsNumber(sk)) rc = leash_fail(LEASH_EFORMAT, "%s: missing or non-numeric \"skipped\"", path);
    if (!rc) *skipped = (long)sk->valuedouble;
    if (!rc && (*skipped < 0 || *skipped > *step))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"skipped\" = %ld is not in [0, step %d]", path, *skipped, *step);
    cJSON_Delete(o);
    return rc;
}

static int validate(leash_gpt *m, const leash_pretrain_config *c, const stream *val, int *inputs, int *targets,
                    double *loss) {
    leash_rng rng;
    leash_rng_seed(&rng, c->seed, UINT64_C(0x76616c)); // the same windows every time
    double total = 0.0;
    for (int i = 0; i < c->val_batches; i++) {
        draw_batch(val, &rng, c->batch_size, c->seq_len, inputs, targets);
        double l;
        int rc = leash_gpt_forward(m, inputs, NULL, c->batch_size, c->seq_len);
        if (!rc) rc = leash_gpt_cross_entropy(m, targets, &l, NULL);
        if (rc) return rc;
        total += l;
    }
    // the cross-entropy left a gradient in dlogits: clear it, validation must not train
    memset(leash_gpt_dlogits(m), 0, (size_t)c->batch_size * c->seq_len * leash_gpt_cfg(m)->vocab_size * sizeof(float));
    *loss = total / c->val_batches;
    return LEASH_OK;
}

/* metrics.jsonl's line of an update: the table every writer reads (leash/metrics.h). */
static void pretrain_metrics(const leash_pretrain_progress *p, leash_metrics *t) {
    t->n = 0;
    leash_metrics_int(t, "step", p->step);
    leash_metrics_real(t, "loss", "%.6f", p->loss); // null for a skipped update
    leash_metrics_real(t, "val_loss", "%.6f", p->val_loss); // null when not measured
    leash_metrics_real(t, "lr", "%.6g", p->lr);
    leash_metrics_real(t, "grad_norm", "%.6g", p->grad_norm);
    leash_metrics_real(t, "learning_rate", "%.8g", p->lr); // TRL's (transformers') name: the rate this update used
    leash_metrics_real(t, "tokens_per_s", "%.1f", p->tokens_per_s);
    leash_metrics_int(t, "tokens", p->tokens_seen);
    leash_metrics_int(t, "skipped", p->skipped);
}

/* A run's state from setup to the last step. */
typedef struct {
    int rank, nranks, lo, hi; // this rank of nranks, and its rows [lo, hi) of every batch
    leash_tokenizer *tok;
    leash_gpt *m;
    leash_adamw opt;
    stream train, val;
    int have_val;          // the val stream holds a window
    size_t BT;             // B * T
    int *inputs, *targets; // (B, T)
    int start;             // the steps done before this invocation (resuming)
    long skipped, tokens_seen;
    leash_log metrics;
    leash_metrics table;
} pretrain_run;

/* Trains a tokenizer of c->vocab_size on the data files (concatenated, a newline after each) into OUT; rank 0
 * alone writes it, the others only read the files. */
static int train_tokenizer(const leash_pretrain_config *c, int rank) {
    int rc = LEASH_OK;
    size_t total = 0, cap = 0;
    char *all = NULL;
    for (int f = 0; f < c->n_data && !rc; f++) {
        char *t;
        size_t n;
        if ((rc = leash_read_file(c->data[f], (size_t)4 << 30, &t, &n))) break;
        if (total + n + 2 > cap) {
            char *g = realloc(all, cap = 2 * (total + n + 2));
            if (!g) { free(t); rc = leash_fail(LEASH_ENOMEM, "out of memory"); break; }
            all = g;
        }
        memcpy(all + total, t, n);
        total += n;
        all[total++] = '\n';
        free(t);
    }
    if (!rc && rank == 0) rc = leash_tokenizer_train(all ? all : "", total, c->vocab_size, 2, c->out_dir);
    free(all);
    return rc;
}

/* The tokenizer: the starting model's, the one given, or one trained on the data; rank 0 writes it to OUT and
 * every rank loads it. *eos: its document separator. */
static int load_tokenizer(pretrain_run *s, const leash_pretrain_config *c, int *eos) {
    int rc = LEASH_OK;
    const char *tok_dir = c->resume ? c->out_dir : c->init_dir ? c->init_dir : c->tokenizer_dir;
    if (!tok_dir) {
        rc = train_tokenizer(c, s->rank);
        tok_dir = c->out_dir;
    } else if (!c->resume && s->rank == 0) {
        rc = leash_tokenizer_copy(tok_dir, c->out_dir);
    }
    if (s->nranks > 1) { // wait for rank 0's tokenizer, and stop together if it failed
        int failed = rc != 0;
        int rc2 = leash_dist_sum_i32(&failed, 1, "tokenizer");
        if (!rc && (rc2 || failed)) rc = rc2 ? rc2 : leash_fail(LEASH_EIO, "rank 0 could not write the tokenizer to %s", c->out_dir);
    }
    if (!rc) rc = leash_tokenizer_load_dir(&s->tok, tok_dir);
    *eos = s->tok ? leash_tokenizer_special_id(s->tok, EOT) : -1;
    if (!rc && *eos < 0) rc = leash_fail(LEASH_EFORMAT, "%s: the tokenizer has no \"<|endoftext|>\" token to separate documents", tok_dir);
    return rc;
}

/* The model (the checkpoint's when resuming, the starting one, or a fresh one of c->model's shape sized to the
 * tokenizer) and its optimizer; when resuming also the optimizer's state, the step and the skipped count. */
static int load_model(pretrain_run *s, const leash_pretrain_config *c, int eos) {
    int rc = LEASH_OK;
    char ckpt[4200] = "", path[4400];
    if (c->resume && (rc = leash_checkpoint_find(c->out_dir, ckpt, sizeof ckpt))) rc = leash_fail_wrap(rc, "--resume");
    if (!rc && (c->resume || c->init_dir)) rc = leash_gpt_load(&s->m, c->resume ? ckpt : c->init_dir);
    else if (!rc) {
        leash_gpt_config mc = c->model;
        mc.vocab_size = leash_tokenizer_vocab_size(s->tok);
        mc.eos_token_id = mc.bos_token_id = eos;
        if (mc.n_positions < c->seq_len) mc.n_positions = c->seq_len;
        if (!(rc = leash_gpt_create(&s->m, &mc))) leash_gpt_init(s->m, c->seed);
    }
    if (!rc && leash_gpt_cfg(s->m)->vocab_size < leash_tokenizer_vocab_size(s->tok))
        rc = leash_fail(LEASH_EINVAL, "the model's vocab_size %d is smaller than the tokenizer's %d: they do not belong "
                                      "together",
                        leash_gpt_cfg(s->m)->vocab_size, leash_tokenizer_vocab_size(s->tok));
    if (!rc && c->seq_len > leash_gpt_cfg(s->m)->n_positions)
        rc = leash_fail(LEASH_EINVAL, "--seq-len %d exceeds the model's n_positions %d", c->seq_len,
                        leash_gpt_cfg(s->m)->n_positions);
    if (!rc) leash_gpt_set_checkpoint_activations(s->m, c->checkpoint_activations);
    if (!rc) rc = leash_adamw_create(&s->opt, &c->optim, leash_gpt_num_trainable(s->m));
    if (!rc && c->resume) {
        snprintf(path, sizeof path, "%s/optimizer.safetensors", ckpt);
        // the optimizer counts the updates it made: the steps done less those skipped
        if (!(rc = load_state(c, ckpt, &s->start, &s->skipped)) && !(rc = leash_adamw_load(&s->opt, path)) &&
            s->opt.step != s->start - s->skipped)
            rc = leash_fail(LEASH_EFORMAT, "%s: the optimizer is at step %ld but trainer_state.json at %d: the checkpoint "
                                           "is damaged (its files were not written together)",
                            ckpt, s->opt.step, s->start);
        s->opt.cfg = c->optim; // the schedule of this invocation (same as before when resuming exactly)
    }
    return rc;
}

/* The train and val token streams, the batch buffers, and metrics.jsonl (rank 0). */
static int load_data(pretrain_run *s, const leash_pretrain_config *c, int eos) {
    int rc = load_corpus(c, s->tok, eos, &s->train, &s->val);
    if (!rc && s->train.n < (size_t)c->seq_len + 1)
        rc = leash_fail(LEASH_EINVAL, "the training data has %zu tokens; a window needs --seq-len + 1 = %d", s->train.n,
                        c->seq_len + 1);
    s->have_val = !rc && s->val.n >= (size_t)c->seq_len + 1;
    s->inputs = malloc(s->BT * sizeof *s->inputs);
    s->targets = malloc(s->BT * sizeof *s->targets);
    if (!rc && (!s->inputs || !s->targets)) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    // a killed run may have logged further (or half a line): on resume, cut back to the checkpoint's step
    if (!rc && s->rank == 0) rc = leash_log_open(&s->metrics, c->out_dir, "metrics.jsonl", c->resume ? s->start : -1);
    return rc;
}

/* One update (step from 0): c->grad_accum micro-batches, this rank's rows of each, the gradient averaged over
 * them and the ranks, one optimizer step. With skip_nonfinite a non-finite loss or gradient skips the update on
 * every rank (*loss NAN). */
static int train_step(pretrain_run *s, const leash_pretrain_config *c, int step, double *loss, double *gnorm, double *lr) {
    int rc = LEASH_OK, lo = s->lo, hi = s->hi, nranks = s->nranks;
    int bad = 0; // a non-finite loss with skip_nonfinite: this update is skipped on every rank
    leash_gpt *m = s->m;
    *loss = 0.0, *gnorm = 0.0, *lr = 0.0;
    leash_gpt_zero_grad(m);
    for (int k = 0; k < c->grad_accum && !rc; k++) {
        leash_rng rng;
        leash_rng_seed(&rng, c->seed, (uint64_t)step * c->grad_accum + k);
        draw_batch(&s->train, &rng, c->batch_size, c->seq_len, s->inputs, s->targets); // the whole batch, on every rank
        double l = 0.0;
        if (hi > lo) { // rows [lo, hi): every row has seq_len targets, so the batch mean is the rows' mean
            size_t off = (size_t)lo * c->seq_len;
            rc = leash_gpt_forward(m, s->inputs + off, NULL, hi - lo, c->seq_len);
            if (!rc) rc = leash_gpt_cross_entropy(m, s->targets + off, &l, NULL);
            if (rc == LEASH_ENUMERIC && c->skip_nonfinite) bad = 1, rc = LEASH_OK, l = NAN; // non-finite logits
            if (!rc && !isfinite(l)) {
                if (!c->skip_nonfinite)
                    rc = leash_fail(LEASH_ENUMERIC, "training loss is %g at step %d; the weights were not changed", l, step + 1);
                bad = 1;
            }
            if (!rc && !bad) rc = leash_gpt_backward(m);
        }
        *loss += (nranks > 1 ? l * (hi - lo) / c->batch_size : l) / c->grad_accum;
    }
    // the mean over micro-batches and over ranks: this rank's gradient weighs its share of the rows
    if (!rc && (c->grad_accum > 1 || nranks > 1)) {
        float *g = leash_gpt_grads(m), sc = (float)((double)(hi - lo) / c->batch_size / c->grad_accum);
        for (size_t i = 0; i < leash_gpt_num_trainable(m); i++) g[i] *= sc;
    }
    if (!rc && nranks > 1 && !(rc = leash_dist_sum_f32(leash_gpt_grads(m), leash_gpt_num_trainable(m), "gradients")))
        rc = leash_dist_sum_f64(loss, 1, "loss");
    if (!rc && c->skip_nonfinite && nranks > 1) rc = leash_dist_sum_i32(&bad, 1, "non-finite losses");
    if (!rc && !bad) rc = leash_adamw_step(&s->opt, m, gnorm, lr);
    if (rc == LEASH_ENUMERIC && c->skip_nonfinite) bad = 1, rc = LEASH_OK; // a non-finite gradient: nothing was changed
    if (!rc && bad) {
        s->skipped++;
        *loss = NAN;
    }
    if (!rc && nranks > 1)
        rc = leash_dist_check_same(leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float), "model weights", NULL);
    return rc;
}

/* After update p->step: validation (every val_every steps and at the last), the metrics line, the callback and
 * the stop requests (*stop, agreed by every rank), the checkpoint. */
static int finish_step(pretrain_run *s, const leash_pretrain_config *c, leash_pretrain_progress *p, leash_pretrain_fn fn,
                       void *ctx, int *stop) {
    int rc, last = p->step == c->steps;
    if (s->have_val && ((c->val_every && p->step % c->val_every == 0) || last))
        if ((rc = validate(s->m, c, &s->val, s->inputs, s->targets, &p->val_loss))) return rc;
    // one line per update, flushed whole: a killed run leaves at most a truncated last line
    pretrain_metrics(p, &s->table);
    p->metrics = &s->table;
    if (s->metrics.f && (rc = leash_log_metrics(&s->metrics, &s->table))) return rc;
    if (fn) *stop = fn(p, ctx);
    // a stop asked for on any rank (the callback, or SIGINT/SIGTERM) stops every rank after this step
    *stop = *stop || leash_stop_requested();
    if (s->nranks > 1 && (rc = leash_dist_sum_i32(stop, 1, "stop request"))) return rc;
    if (last && s->skipped == c->steps) // nothing trained: no model to write
        return leash_fail(LEASH_ENUMERIC, "every one of the %d updates was skipped for a non-finite loss or gradient "
                                          "(--skip-nonfinite): the model did not train and was not written; check --init "
                                          "and the data, or lower --lr",
                          c->steps);
    if (s->rank == 0 && (last || *stop || (c->save_every && p->step % c->save_every == 0)))
        return save_state(c, s->m, &s->opt, p->step, s->skipped, last);
    return LEASH_OK;
}

int leash_pretrain(const leash_pretrain_config *c, leash_pretrain_fn fn, void *ctx) {
    int rc = check_config(c);
    if (rc) return rc;
    // several MPI ranks: each computes its part of every batch; rank 0 alone writes files (a tokenizer
    // trained here is read back by the others from DIR, which must then be on a shared file system)
    pretrain_run s = {.rank = leash_dist_rank(), .nranks = leash_dist_size(), .BT = (size_t)c->batch_size * c->seq_len};
    if (s.rank == 0 && (rc = leash_mkdir(c->out_dir))) return rc;
    leash_dist_split(c->batch_size, s.rank, s.nranks, &s.lo, &s.hi);
    int eos = -1;
    rc = load_tokenizer(&s, c, &eos);
    if (!rc) rc = load_model(&s, c, eos);
    if (!rc) rc = load_data(&s, c, eos);

    s.tokens_seen = (long)s.start * c->grad_accum * (long)s.BT;
    int stop = 0;
    for (int step = s.start; step < c->steps && !rc && !stop; step++) {
        double t0 = leash_now_s(), loss, gnorm, lr;
        if ((rc = train_step(&s, c, step, &loss, &gnorm, &lr))) break;
        s.tokens_seen += (long)c->grad_accum * (long)s.BT;
        leash_pretrain_progress p = {.step = step + 1, .steps = c->steps, .loss = loss, .val_loss = NAN, .lr = lr,
                                     .grad_norm = gnorm, .tokens_per_s = c->grad_accum * s.BT / (leash_now_s() - t0),
                                     .tokens_seen = s.tokens_seen, .skipped = s.skipped};
        rc = finish_step(&s, c, &p, fn, ctx, &stop);
    }
    leash_log_close(&s.metrics);
    leash_adamw_free(&s.opt);
    leash_gpt_free(s.m);
    leash_tokenizer_free(s.tok);
    free(s.train.ids), free(s.val.ids), free(s.inputs), free(s.targets);
    return rc;
}
