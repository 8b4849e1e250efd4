/* Direct preference optimisation (sigmoid DPO and IPO) on preference pairs. See include/leash/dpo.h.
 * Dimensions: n pairs, R = 2 n rows, T tokens, V vocabulary. */
#define _XOPEN_SOURCE 700
#include "leash/dpo.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/checkpoint.h"
#include "leash/data.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/rng.h"
#include "leash/stop.h"
#include "leash/tokenizer.h"

double leash_dpo_pair_loss(leash_dpo_loss kind, double beta, double h, double *dh) {
    if (kind == LEASH_DPO_IPO) { // (h - 1/(2 beta))^2
        double d = h - 1.0 / (2.0 * beta);
        if (dh) *dh = 2.0 * d;
        return d * d;
    }
    double z = beta * h; // -log sigmoid(z) = log1p(exp(-z)), finite for any z
    if (dh) *dh = -beta / (1.0 + exp(z));
    return z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z));
}

/* Right-padded batch of R rows: tokens, mask and targets (R, T); targets[r, t] = ids[t + 1] where t + 1 is
 * a response token, else -1. */
static int batch_rows(const leash_dpo_seq *rows, int R, int **tokens, uint8_t **mask, int **targets, int *T_out) {
    if (R < 1) return leash_fail(LEASH_EINVAL, "a batch of %d rows; it needs at least one", R);
    size_t T = 1;
    for (int r = 0; r < R; r++) {
        if (rows[r].prompt_len < 1 || rows[r].n <= rows[r].prompt_len)
            return leash_fail(LEASH_EINVAL, "row %d: prompt of %d tokens and %d in all; the prompt needs at least one token "
                                            "and the response at least one", r, rows[r].prompt_len, rows[r].n);
        T = (size_t)rows[r].n > T ? (size_t)rows[r].n : T;
    }
    size_t N = (size_t)R * T;
    *tokens = malloc(N * sizeof **tokens);
    *targets = malloc(N * sizeof **targets);
    *mask = malloc(N);
    if (!*tokens || !*targets || !*mask) return leash_fail(LEASH_ENOMEM, "out of memory");
    for (int r = 0; r < R; r++)
        for (int t = 0; t < (int)T; t++) {
            int real = t < rows[r].n;
            (*tokens)[r * T + t] = real ? rows[r].ids[t] : rows[r].ids[0];
            (*mask)[r * T + t] = (uint8_t)real;
            (*targets)[r * T + t] = t + 1 >= rows[r].prompt_len && t + 1 < rows[r].n ? rows[r].ids[t + 1] : -1;
        }
    *T_out = (int)T;
    return LEASH_OK;
}

/* Forward of R rows and their summed response log-probs into logp (R); tokens' targets kept for a backward. */
static int forward_logps(leash_gpt *m, const leash_dpo_seq *rows, int R, double *logp, int **targets, int *T_out) {
    int *tokens = NULL, T = 0;
    uint8_t *mask = NULL;
    float *lp = NULL;
    int rc = batch_rows(rows, R, &tokens, &mask, targets, &T);
    if (!rc && !(lp = malloc((size_t)R * T * sizeof *lp))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc) rc = leash_gpt_forward(m, tokens, mask, R, T);
    if (!rc) rc = leash_gpt_token_logprobs(m, *targets, 1.0f, lp, NULL);
    for (int r = 0; r < R && !rc; r++) {
        double s = 0.0;
        for (int t = 0; t < T; t++) s += (*targets)[r * T + t] >= 0 ? lp[r * T + t] : 0.0;
        logp[r] = s;
    }
    free(tokens), free(mask), free(lp);
    *T_out = T;
    return rc;
}

int leash_dpo_seq_logps(leash_gpt *m, const leash_dpo_seq *rows, int R, double *logp) {
    int *targets = NULL, T;
    int rc = forward_logps(m, rows, R, logp, &targets, &T);
    free(targets);
    return rc;
}

int leash_dpo_accumulate(leash_gpt *m, leash_dpo_loss kind, double beta, const leash_dpo_seq *chosen,
                         const leash_dpo_seq *rejected, const double *ref_w, const double *ref_l, const double *weight,
                         int n, double scale, leash_dpo_metrics *mt) {
    if (n < 1) return leash_fail(LEASH_EINVAL, "a DPO batch of %d pairs; it needs at least one", n);
    if (!(beta > 0.0 && isfinite(beta))) return leash_fail(LEASH_EINVAL, "beta %g; it must be > 0", beta);
    int R = 2 * n, T = 0, *targets = NULL, rc = LEASH_OK;
    leash_dpo_seq *rows = malloc((size_t)R * sizeof *rows);
    double *logp = malloc((size_t)R * sizeof *logp), *dseq = malloc((size_t)R * sizeof *dseq);
    float *dlogp = NULL;
    if (!rows || !logp || !dseq) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc) {
        memcpy(rows, chosen, (size_t)n * sizeof *rows);
        memcpy(rows + n, rejected, (size_t)n * sizeof *rows);
        rc = forward_logps(m, rows, R, logp, &targets, &T);
    }
    leash_dpo_metrics s = {0};
    double W = 0.0;
    for (int i = 0; i < n && !rc; i++) {
        double w = weight ? weight[i] : 1.0, dh;
        double uw = logp[i] - ref_w[i], ul = logp[n + i] - ref_l[i], h = uw - ul;
        double l = leash_dpo_pair_loss(kind, beta, h, &dh);
        W += w;
        s.loss += w * l;
        s.reward_chosen += w * beta * uw, s.reward_rejected += w * beta * ul;
        s.accuracy += w * (uw > ul), s.margin += w * beta * h;
        s.logp_chosen += w * logp[i], s.logp_rejected += w * logp[n + i];
        dseq[i] = w * dh, dseq[n + i] = -w * dh; // d loss / d log pi(w) = dh, d / d log pi(l) = -dh
    }
    if (!rc && !(W > 0.0)) rc = leash_fail(LEASH_EINVAL, "the pairs' weights sum to %g; it must be > 0", W);
    if (!rc) {
        s.loss /= W, s.reward_chosen /= W, s.reward_rejected /= W, s.accuracy /= W, s.margin /= W;
        s.logp_chosen /= W, s.logp_rejected /= W;
        if (mt) *mt = s;
    }
    if (!rc && scale != 0.0) { // every response token of a row gets its sequence's gradient
        if (!(dlogp = malloc((size_t)R * T * sizeof *dlogp))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
        for (int r = 0; r < R && !rc; r++)
            for (int t = 0; t < T; t++) dlogp[r * T + t] = targets[r * T + t] >= 0 ? (float)(scale * dseq[r] / W) : 0.0f;
        if (!rc) rc = leash_gpt_token_logprobs_backward(m, targets, 1.0f, dlogp);
        if (!rc) rc = leash_gpt_backward(m);
    }
    free(rows), free(logp), free(dseq), free(dlogp), free(targets);
    return rc;
}

/* ---- the trainer ------------------------------------------------------------------------------------ */

leash_dpo_config leash_dpo_defaults(void) {
    leash_dpo_config c = {0};
    c.beta = 0.1;
    c.loss = LEASH_DPO_SIGMOID;
    c.epochs = 1;
    c.batch_size = 8;
    c.optim = leash_adamw_defaults();
    c.optim.lr = 1e-5f; // TRL's DPOConfig default (full fine-tuning); LoRA usually wants ~1e-4
    c.optim.weight_decay = 0.0f;
    c.seed = 1;
    return c;
}

/* prompt ids ++ response ids ++ eos, one row; an error names the pair when it is too long or the prompt empty. */
static int encode_pair_row(const leash_tokenizer *tok, int eos, int P, const char *prompt, const char *resp, int index,
                           const char *which, int **ids, leash_dpo_seq *s) {
    int *a = NULL, *b = NULL;
    size_t na = 0, ca = 0, nb = 0, cb = 0;
    int rc = leash_tokenizer_encode(tok, prompt, strlen(prompt), 0, &a, &na, &ca);
    if (!rc) rc = leash_tokenizer_encode(tok, resp, strlen(resp), 0, &b, &nb, &cb);
    if (!rc && na < 1) rc = leash_fail(LEASH_EINVAL, "pair %d: the prompt is empty; DPO scores the response given a prompt of at least one token", index);
    size_t n = na + nb + 1;
    if (!rc && n > (size_t)P)
        rc = leash_fail(LEASH_EINVAL, "pair %d: prompt + %s is %zu tokens with the end token; the model holds %d positions", index, which, n, P);
    if (!rc && !(*ids = malloc(n * sizeof **ids))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc) {
        memcpy(*ids, a, na * sizeof *a);
        if (nb) memcpy(*ids + na, b, nb * sizeof *b);
        (*ids)[n - 1] = eos;
        *s = (leash_dpo_seq){*ids, (int)n, (int)na};
    }
    free(a), free(b);
    return rc;
}

static void add_path(cJSON *o, const char *key, const char *path) {
    char real[PATH_MAX];
    cJSON_AddStringToObject(o, key, realpath(path, real) ? real : path);
}

/* The settings a resume must match, and their options. */
static cJSON *settings(const leash_dpo_config *c) {
    cJSON *o = cJSON_CreateObject();
    add_path(o, "--policy", c->policy);
    add_path(o, "--data", c->data);
    cJSON_AddNumberToObject(o, "--beta", c->beta);
    cJSON_AddStringToObject(o, "--loss", c->loss == LEASH_DPO_IPO ? "ipo" : "sigmoid");
    cJSON_AddNumberToObject(o, "--lr", c->optim.lr);
    cJSON_AddNumberToObject(o, "--batch", c->batch_size);
    cJSON_AddNumberToObject(o, "--seed", (double)c->seed);
    cJSON_AddNumberToObject(o, "--lora-r", c->lora_rank);
    cJSON_AddNumberToObject(o, "--lora-alpha", c->lora_alpha);
    cJSON_AddStringToObject(o, "--lora-targets", c->lora_targets ? c->lora_targets : "");
    return o;
}

/* OUT/checkpoint as one set (include/leash/checkpoint.h): weights (adapters with LoRA), AdamW, state.json. */
static int save_checkpoint(const leash_dpo_config *c, leash_gpt *m, const leash_adamw *opt, int step) {
    char dir[4096], path[4200];
    int rc = leash_checkpoint_begin(c->out_dir, dir, sizeof dir);
    if (!rc) rc = leash_gpt_save(m, dir);
    snprintf(path, sizeof path, "%s/adamw.safetensors", dir);
    if (!rc) rc = leash_adamw_save(opt, path);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddItemToObject(o, "settings", settings(c));
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    snprintf(path, sizeof path, "%s/state.json", dir);
    if (!rc) rc = text ? leash_write_file_atomic(path, text, strlen(text)) : leash_fail(LEASH_ENOMEM, "out of memory");
    free(text);
    return rc ? rc : leash_checkpoint_commit(c->out_dir);
}

/* Reads OUT/checkpoint: checks its settings against c's (a mismatch names the option), copies its trainable
 * weights into m and its optimiser state into opt; *step receives the steps done. */
static int load_checkpoint(const leash_dpo_config *c, leash_gpt *m, leash_adamw *opt, int *step) {
    char dir[4096], path[4200], *text = NULL;
    size_t len;
    if (leash_checkpoint_find(c->out_dir, dir, sizeof dir))
        return leash_fail(LEASH_EINVAL, "--resume: %s has no checkpoint; start it afresh with --overwrite", c->out_dir);
    snprintf(path, sizeof path, "%s/state.json", dir);
    if (leash_read_file(path, 1 << 20, &text, &len))
        return leash_fail(LEASH_EINVAL, "--resume: %s is not a DPO checkpoint (no %s); start afresh with --overwrite", dir, path);
    cJSON *o = cJSON_ParseWithOpts(text, NULL, 1), *want = settings(c);
    free(text);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step"), *have = cJSON_GetObjectItemCaseSensitive(o, "settings");
    int rc = cJSON_IsNumber(st) && cJSON_IsObject(have) ? LEASH_OK : leash_fail(LEASH_EFORMAT, "%s: no step or settings", path);
    for (const cJSON *w = want->child; w && !rc; w = w->next) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(have, w->string);
        if (h && !cJSON_Compare(h, w, 1)) {
            char *hs = cJSON_PrintUnformatted(h), *ws = cJSON_PrintUnformatted(w);
            rc = leash_fail(LEASH_EINVAL, "--resume: %s was written with %s %s, this run asks for %s; give the same %s, or "
                                          "start afresh with --overwrite", c->out_dir, w->string, hs ? hs : "?", ws ? ws : "?", w->string);
            free(hs), free(ws);
        }
    }
    if (!rc) *step = st->valueint;
    cJSON_Delete(o), cJSON_Delete(want);
    leash_gpt *ck = NULL;
    if (!rc) rc = leash_gpt_load(&ck, dir);
    if (!rc && leash_gpt_num_trainable(ck) != leash_gpt_num_trainable(m))
        rc = leash_fail(LEASH_EFORMAT, "%s: %zu trainable weights, the policy has %zu", dir, leash_gpt_num_trainable(ck),
                        leash_gpt_num_trainable(m));
    if (!rc) memcpy(leash_gpt_trainable(m), leash_gpt_trainable(ck), leash_gpt_num_trainable(m) * sizeof(float));
    leash_gpt_free(ck);
    snprintf(path, sizeof path, "%s/adamw.safetensors", dir);
    if (!rc) rc = leash_adamw_load(opt, path);
    return rc;
}

static int check_config(const leash_dpo_config *c) {
    if (!c->policy || !c->data || !c->out_dir) return leash_fail(LEASH_EINVAL, "--policy, --data and --out are required");
    if (!(c->beta > 0.0 && isfinite(c->beta))) return leash_fail(LEASH_EINVAL, "--beta %g; it must be > 0", c->beta);
    if (c->batch_size < 1 || c->batch_size > 4096) return leash_fail(LEASH_EINVAL, "--batch %d; it must be in [1, 4096]", c->batch_size);
    if (c->steps < 0 || c->epochs < 1) return leash_fail(LEASH_EINVAL, "--steps %d, --epochs %d; steps >= 0, epochs >= 1", c->steps, c->epochs);
    return leash_adamw_config_check(&c->optim);
}

static void shuffle(int *order, int n, uint64_t seed, int epoch) {
    leash_rng rng;
    leash_rng_seed(&rng, seed, (uint64_t)epoch);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) { // Fisher-Yates
        int j = (int)(leash_rng_uniform(&rng) * (i + 1)), x = order[i];
        order[i] = order[j], order[j] = x;
    }
}

/* metrics.jsonl's line of a step: the table every writer reads (leash/metrics.h), TRL's names. */
static void dpo_metrics(const leash_dpo_progress *p, double beta, double lr, double gn, leash_metrics *t) {
    const leash_dpo_metrics *m = &p->m;
    t->n = 0;
    leash_metrics_int(t, "step", p->step);
    leash_metrics_int(t, "epoch", p->epoch);
    leash_metrics_real(t, "loss", "%.9g", m->loss);
    leash_metrics_real(t, "beta", "%.9g", beta);
    leash_metrics_real(t, "rewards/chosen", "%.9g", m->reward_chosen);
    leash_metrics_real(t, "rewards/rejected", "%.9g", m->reward_rejected);
    leash_metrics_real(t, "rewards/accuracies", "%.9g", m->accuracy);
    leash_metrics_real(t, "rewards/margins", "%.9g", m->margin);
    leash_metrics_real(t, "logps/chosen", "%.9g", m->logp_chosen);
    leash_metrics_real(t, "logps/rejected", "%.9g", m->logp_rejected);
    leash_metrics_real(t, "lr", "%.9g", lr);
    leash_metrics_real(t, "grad_norm", "%.9g", gn);
}

/* The policy (with LoRA adapters when asked), its tokenizer and the end token. */
static int load_policy(const leash_dpo_config *c, leash_gpt **m, leash_tokenizer **tok, int *eos) {
    int rc = leash_tokenizer_load_dir(tok, c->policy);
    if (!rc)
        rc = c->lora_rank > 0 ? leash_gpt_load_lora(m, c->policy, c->lora_rank,
                                                    c->lora_alpha > 0.0f ? c->lora_alpha : 2.0f * c->lora_rank, 0.0f,
                                                    c->lora_targets, c->seed)
                              : leash_gpt_load(m, c->policy);
    if (!rc) leash_gpt_set_checkpoint_activations(*m, c->checkpoint_activations);
    if (!rc) *eos = leash_tokenizer_eos(*tok, leash_gpt_cfg(*m)->eos_token_id);
    if (!rc && *eos < 0) rc = leash_fail(LEASH_EFORMAT, "%s: no eos_token_id and the tokenizer has no <|endoftext|>", c->policy);
    return rc;
}

/* The reference's log-probs of every pair's chosen and rejected response, with m as it is now. */
static int reference_logps(leash_gpt *m, const leash_dpo_seq *w, const leash_dpo_seq *l, int n, int batch, double *ref_w,
                           double *ref_l) {
    int rc = LEASH_OK;
    for (int i0 = 0; i0 < n && !rc; i0 += batch) {
        int nb = n - i0 < batch ? n - i0 : batch;
        rc = leash_dpo_seq_logps(m, w + i0, nb, ref_w + i0);
        if (!rc) rc = leash_dpo_seq_logps(m, l + i0, nb, ref_l + i0);
    }
    return rc;
}

int leash_dpo_train(const leash_dpo_config *c, leash_dpo_fn fn, void *ctx, leash_dpo_progress *final) {
    int rc = check_config(c);
    if (rc) return rc;
    static const char *const keys[] = {"prompt", "chosen", "rejected"};
    leash_table t = {0};
    if ((rc = leash_jsonl_load(c->data, keys, 3, NULL, 0, 0, &t))) return rc;
    leash_gpt *m = NULL;
    leash_tokenizer *tok = NULL;
    leash_adamw opt = {0};
    FILE *mf = NULL;
    int n = t.n, eos = -1, **ids = calloc(2 * (size_t)(n ? n : 1), sizeof *ids), *order = malloc((n ? n : 1) * sizeof *order);
    leash_dpo_seq *w = calloc(n ? n : 1, sizeof *w), *l = calloc(n ? n : 1, sizeof *l), *bw = NULL, *bl = NULL;
    double *ref_w = malloc((n ? n : 1) * sizeof *ref_w), *ref_l = malloc((n ? n : 1) * sizeof *ref_l), *brw = NULL, *brl = NULL;
    if (!ids || !order || !w || !l || !ref_w || !ref_l) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc && n < 1) rc = leash_fail(LEASH_EINVAL, "%s: no preference pairs", c->data);
    if (!rc) rc = load_policy(c, &m, &tok, &eos);
    for (int i = 0; i < n && !rc; i++) {
        int P = leash_gpt_cfg(m)->n_positions;
        rc = encode_pair_row(tok, eos, P, t.str[0][i], t.str[1][i], i + 1, "chosen", &ids[2 * i], &w[i]);
        if (!rc) rc = encode_pair_row(tok, eos, P, t.str[0][i], t.str[2][i], i + 1, "rejected", &ids[2 * i + 1], &l[i]);
        if (rc) rc = leash_fail_wrap(rc, "%s", c->data);
    }
    int B = c->batch_size < n ? c->batch_size : n, per_epoch = (n + B - 1) / (B ? B : 1);
    int total = c->steps > 0 ? c->steps : c->epochs * per_epoch, step = 0;
    // the reference: the initial policy (adapters still zero with LoRA), scored once before any update
    if (!rc) rc = reference_logps(m, w, l, n, B, ref_w, ref_l);
    // the rate is constant after the warmup (optim.total_steps 0), so that a resumed run with a grown --steps
    // takes the same updates as one run to the end
    if (!rc) rc = leash_adamw_create(&opt, &c->optim, leash_gpt_num_trainable(m));
    if (!rc && c->resume) rc = load_checkpoint(c, m, &opt, &step);
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->out_dir);
    if (!rc && step > 0) rc = leash_log_trim(path, step); // a run killed after its checkpoint logged more
    if (!rc && !(mf = fopen(path, step > 0 ? "a" : "w"))) rc = leash_fail(LEASH_EIO, "cannot write %s", path);
    bw = malloc(B * sizeof *bw), bl = malloc(B * sizeof *bl), brw = malloc(B * sizeof *brw), brl = malloc(B * sizeof *brl);
    if (!rc && (!bw || !bl || !brw || !brl)) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    leash_dpo_progress p = {.step = step, .steps = total};
    leash_metrics table;
    int shuffled = -1, stop = 0;
    for (; step < total && !rc && !stop; step++) {
        int epoch = step / per_epoch, k = step % per_epoch, i0 = k * B, nb = n - i0 < B ? n - i0 : B;
        if (epoch != shuffled) shuffle(order, n, c->seed, epoch), shuffled = epoch;
        for (int j = 0; j < nb; j++) {
            int i = order[i0 + j];
            bw[j] = w[i], bl[j] = l[i], brw[j] = ref_w[i], brl[j] = ref_l[i];
        }
        double gn = 0.0, lr = 0.0;
        leash_gpt_zero_grad(m);
        rc = leash_dpo_accumulate(m, c->loss, c->beta, bw, bl, brw, brl, NULL, nb, 1.0, &p.m);
        if (!rc && !isfinite(p.m.loss)) rc = leash_fail(LEASH_ENUMERIC, "DPO loss is %g at step %d; the weights were not changed", p.m.loss, step + 1);
        if (!rc) rc = leash_adamw_step(&opt, m, &gn, &lr);
        if (rc) break;
        p.step = step + 1, p.epoch = epoch + 1;
        dpo_metrics(&p, c->beta, lr, gn, &table);
        p.metrics = &table;
        leash_log log = {.f = mf};
        snprintf(log.path, sizeof log.path, "%.4000s", path);
        if ((rc = leash_log_metrics(&log, &table))) break;
        if (fn && fn(&p, ctx)) stop = 1;
        if (leash_stop_requested()) stop = 1; // SIGINT / SIGTERM: finish with a checkpoint, resumable
        if (!stop && c->save_every > 0 && p.step % c->save_every == 0 && p.step < total) rc = save_checkpoint(c, m, &opt, p.step);
    }
    if (mf && fclose(mf) && !rc) rc = leash_fail(LEASH_EIO, "cannot write %s (disk full?)", path);
    if (!rc) rc = save_checkpoint(c, m, &opt, p.step);
    snprintf(path, sizeof path, "%s/policy", c->out_dir);
    if (!rc) rc = leash_gpt_save(m, path);
    if (!rc) rc = leash_tokenizer_copy(c->policy, path); // the tokenizer travels with the model
    if (final) *final = p;
    for (int i = 0; ids && i < 2 * n; i++) free(ids[i]);
    free(ids), free(order), free(w), free(l), free(ref_w), free(ref_l), free(bw), free(bl), free(brw), free(brl);
    leash_adamw_free(&opt);
    leash_gpt_free(m);
    leash_tokenizer_free(tok);
    leash_table_free(&t);
    return rc;
}
