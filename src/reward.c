/* Reward models: Bradley-Terry and regression training of a scalar-head GPT, and scoring. See
 * include/leash/reward.h. Dimensions: B texts, T tokens, C channels. */
#define _POSIX_C_SOURCE 200809L
#include "leash/reward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/data.h"
#include "leash/dist.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/rng.h"


double leash_bt_loss(const float *rc, const float *rr, int n, float *drc, float *drr) {
    double loss = 0.0;
    for (int i = 0; i < n; i++) {
        double d = (double)rc[i] - rr[i];
        // -log sigmoid(d) = log1p(exp(-d)), written to stay finite for any d
        loss += d > 0 ? log1p(exp(-d)) : -d + log1p(exp(d));
        double g = -1.0 / (1.0 + exp(d)) / n; // d loss / d rc = -(1 - sigmoid(d)) / n
        if (drc) drc[i] = (float)g;
        if (drr) drr[i] = (float)-g;
    }
    return loss / n;
}

/* ---- token batches ------------------------------------------------------------------------------- */

typedef struct {
    int *ids; // tokens of the text, then EOS
    int n;
} seq;

/* tokenize(a [+ b]) + EOS; longer than max_len: an error naming the item, or with keep_end the last
 * max_len tokens (the end, where the score is read). */
static int encode(const leash_tokenizer *tok, int eos, int max_len, const char *a, const char *b, seq *s,
                  const char *what, int index, int keep_end) {
    size_t n = 0, cap = 0;
    s->ids = NULL;
    char *joined = NULL; // prompt + response, tokenised as one text
    if (b && !(joined = malloc(strlen(a) + strlen(b) + 1))) return leash_fail(LEASH_ENOMEM, "out of memory");
    if (joined) strcat(strcpy(joined, a), b);
    const char *text = joined ? joined : a;
    int rc = leash_tokenizer_encode(tok, text, strlen(text), 0, &s->ids, &n, &cap);
    free(joined);
    if (rc) return rc;
    int *g = realloc(s->ids, (n + 1) * sizeof *g);
    if (!g) return leash_fail(LEASH_ENOMEM, "out of memory");
    s->ids = g;
    s->ids[n++] = eos;
    s->n = (int)n;
    if (s->n > max_len && keep_end) {
        memmove(s->ids, s->ids + (s->n - max_len), (size_t)max_len * sizeof *s->ids);
        s->n = max_len;
    }
    if (s->n > max_len)
        return leash_fail(LEASH_EINVAL, "%s %d is %d tokens with <|endoftext|>; the model holds %d positions", what, index,
                          s->n, max_len);
    return LEASH_OK;
}

/* Right-padded batch of rows: tokens (B, T), mask (B, T), last (B) = index of each row's EOS. */
static int fill_batch(const seq *const *rows, int B, int eos, int *tokens, uint8_t *mask, int *last, int *T_out) {
    int T = 1;
    for (int b = 0; b < B; b++) T = rows[b]->n > T ? rows[b]->n : T;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            int real = t < rows[b]->n;
            tokens[b * T + t] = real ? rows[b]->ids[t] : eos;
            mask[b * T + t] = (uint8_t)real;
        }
        last[b] = rows[b]->n - 1;
    }
    *T_out = T;
    return LEASH_OK;
}

int leash_rm_score_texts(leash_gpt *m, const leash_tokenizer *tok, const char *const *texts, int n, int batch,
                         float *scores) {
    if (!leash_gpt_cfg(m)->scalar_head) return leash_fail(LEASH_EINVAL, "the model has no scalar head: not a reward model");
    // texts end as in training: at the model's eos_token_id, else <|endoftext|>
    int eos = leash_tokenizer_eos(tok, leash_gpt_cfg(m)->eos_token_id), P = leash_gpt_cfg(m)->n_positions, rc = LEASH_OK;
    if (eos < 0) return leash_fail(LEASH_EINVAL, "the model has no eos_token_id and the tokenizer no <|endoftext|>");
    if (batch < 1) batch = 1;
    seq *s = calloc(batch, sizeof *s);
    const seq **rows = calloc(batch, sizeof *rows);
    int *tokens = malloc((size_t)batch * P * sizeof *tokens), *last = malloc(batch * sizeof *last);
    uint8_t *mask = malloc((size_t)batch * P);
    if (!s || !rows || !tokens || !last || !mask) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int i0 = 0; i0 < n && !rc; i0 += batch) {
        int B = n - i0 < batch ? n - i0 : batch, T;
        for (int b = 0; b < B && !rc; b++) {
            rc = encode(tok, eos, P, texts[i0 + b], NULL, &s[b], "text", i0 + b, 1);
            rows[b] = &s[b];
        }
        if (!rc) fill_batch(rows, B, eos, tokens, mask, last, &T);
        if (!rc) rc = leash_gpt_forward_values(m, tokens, mask, B, T); // the scalar head only: no logits
        for (int b = 0; b < B && !rc; b++) scores[i0 + b] = leash_gpt_values(m)[b * T + last[b]];
        for (int b = 0; b < B; b++) free(s[b].ids), s[b].ids = NULL;
    }
    free(s), free(rows), free(tokens), free(last), free(mask);
    return rc;
}

/* ---- training ------------------------------------------------------------------------------------ */

leash_rm_config leash_rm_defaults(void) {
    leash_rm_config c = {0};
    c.model = (leash_gpt_config){.n_positions = 128, .n_embd = 128, .n_layer = 2, .n_head = 4, .bos_token_id = -1,
                                 .eos_token_id = -1, .layer_norm_epsilon = 1e-5f, .scalar_head = 1};
    c.loss = LEASH_RM_BRADLEY_TERRY;
    c.batch_size = 32;
    c.epochs = 2;
    c.optim = leash_adamw_defaults();
    c.optim.lr = 5e-4f;
    c.optim.weight_decay = 0.0f;
    c.val_fraction = 0.1f;
    return c;
}

/* Accuracy on items [lo, hi): pairs: r(a) > r(b); texts: sign(r) == sign(label). Gold agreement for pairs
 * whose gold rewards differ. */
static int validate(leash_gpt *m, const leash_rm_config *c, const seq *a, const seq *b, const double *label,
                    const leash_table *t, int lo, int hi, int eos, int *tokens, uint8_t *mask, int *last,
                    leash_rm_progress *p) {
    int bt = c->loss == LEASH_RM_BRADLEY_TERRY, right = 0, counted = 0, gold_right = 0, gold_counted = 0;
    const seq *rows[2 * 256];
    int B = c->batch_size > 256 ? 256 : c->batch_size;
    for (int i0 = lo; i0 < hi; i0 += B) {
        int nb = hi - i0 < B ? hi - i0 : B, R = bt ? 2 * nb : nb, T;
        for (int k = 0; k < nb; k++) rows[k] = &a[i0 + k], rows[nb + k] = bt ? &b[i0 + k] : NULL;
        fill_batch(rows, R, eos, tokens, mask, last, &T);
        int rc = leash_gpt_forward(m, tokens, mask, R, T);
        if (rc) return rc;
        const float *v = leash_gpt_values(m);
        for (int k = 0; k < nb; k++) {
            float ra = v[k * T + last[k]];
            if (bt) {
                float rb = v[(nb + k) * T + last[nb + k]];
                right += ra > rb;
                counted++;
                if (c->gold) {
                    const char *pr = t->str[0][i0 + k];
                    char *ta = malloc(strlen(pr) + strlen(t->str[1][i0 + k]) + 1);
                    char *tb = malloc(strlen(pr) + strlen(t->str[2][i0 + k]) + 1);
                    if (!ta || !tb) {
                        free(ta), free(tb);
                        return leash_fail(LEASH_ENOMEM, "out of memory");
                    }
                    strcat(strcpy(ta, pr), t->str[1][i0 + k]);
                    strcat(strcpy(tb, pr), t->str[2][i0 + k]);
                    double ga = c->gold(ta, c->gold_ctx), gb = c->gold(tb, c->gold_ctx);
                    if (ga != gb) gold_right += (ra > rb) == (ga > gb), gold_counted++;
                    free(ta), free(tb);
                }
            } else if (label[i0 + k] != 0.0) {
                right += (ra > 0) == (label[i0 + k] > 0);
                counted++;
            }
        }
    }
    p->val_accuracy = counted ? (double)right / counted : NAN;
    p->val_gold_accuracy = gold_counted ? (double)gold_right / gold_counted : NAN;
    p->val_n = counted;
    return LEASH_OK;
}

int leash_rm_train(const leash_rm_config *c, leash_rm_fn fn, void *ctx, leash_rm_progress *final) {
    if (!c->data || !c->out_dir) return leash_fail(LEASH_EINVAL, "--data and --out are required");
    if (c->batch_size < 1 || c->batch_size > 256) return leash_fail(LEASH_EINVAL, "--batch %d; it must be in [1, 256]", c->batch_size);
    if (c->epochs < 1) return leash_fail(LEASH_EINVAL, "--epochs %d; it must be >= 1", c->epochs);
    if (!(c->val_fraction >= 0.0f && c->val_fraction < 1.0f))
        return leash_fail(LEASH_EINVAL, "--val-fraction %g; it must be in [0, 1)", (double)c->val_fraction);
    int bt = c->loss == LEASH_RM_BRADLEY_TERRY, rc;
    static const char *const pair_keys[] = {"prompt", "chosen", "rejected"}, *const text_keys[] = {"text"};
    static const char *const label_keys[] = {"sentiment"};
    leash_table t;
    if ((rc = bt ? leash_jsonl_load(c->data, pair_keys, 3, NULL, 0, 0, &t) : leash_jsonl_load(c->data, text_keys, 1, label_keys, 1, 0, &t)))
        return rc;
    if ((rc = leash_mkdir(c->out_dir))) {
        leash_table_free(&t);
        return rc;
    }
    leash_tokenizer *tok = NULL;
    leash_gpt *m = NULL, *base = NULL;
    leash_adamw opt = {0};
    seq *a = calloc(t.n, sizeof *a), *b = bt ? calloc(t.n, sizeof *b) : NULL;
    int *order = malloc(t.n * sizeof *order), *tokens = NULL, *last = NULL;
    uint8_t *mask = NULL;
    float *dv_rows = NULL, *values = NULL;
    if (!a || (bt && !b) || !order) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    const char *tok_dir = c->init_dir ? c->init_dir : c->tokenizer_dir;
    if (!rc && c->lora_rank > 0 && !c->init_dir) rc = leash_fail(LEASH_EINVAL, "LoRA needs a base model: give --init");
    if (!rc && !tok_dir) rc = leash_fail(LEASH_EINVAL, "give --init (the SFT model) or --tokenizer for a new model");
    if (!rc) rc = leash_tokenizer_load_dir(&tok, tok_dir);
    if (!rc && c->init_dir) // with LoRA: the base frozen, adapters and the head trained
        rc = c->lora_rank > 0 ? leash_gpt_load_lora(&base, c->init_dir, c->lora_rank,
                                                    c->lora_alpha > 0.0f ? c->lora_alpha : 2.0f * c->lora_rank, 0.0f,
                                                    c->lora_targets, c->seed)
                              : leash_gpt_load(&base, c->init_dir);
    // the end of a text: the model's eos_token_id (Llama 3's <|end_of_text|>), else <|endoftext|>
    int eos = leash_tokenizer_eos(tok, base ? leash_gpt_cfg(base)->eos_token_id : -1);
    if (!rc && eos < 0) rc = leash_fail(LEASH_EFORMAT, "%s: no eos_token_id and the tokenizer has no <|endoftext|>", tok_dir);
    if (!rc && c->init_dir) {
        rc = leash_gpt_copy_with_head(&m, base, 1, c->seed);
    } else if (!rc) {
        leash_gpt_config mc = c->model;
        mc.vocab_size = leash_tokenizer_vocab_size(tok);
        mc.eos_token_id = mc.bos_token_id = eos;
        mc.scalar_head = 1;
        if (!(rc = leash_gpt_create(&m, &mc))) leash_gpt_init(m, c->seed);
    }
    if (!rc) leash_gpt_set_checkpoint_activations(m, c->checkpoint_activations);
    if (!rc) {
        const char *prefix = bt ? "pair" : "text";
        int P = leash_gpt_cfg(m)->n_positions;
        for (int i = 0; i < t.n && !rc; i++) {
            rc = bt ? encode(tok, eos, P, t.str[0][i], t.str[1][i], &a[i], prefix, i + 1, 0)
                    : encode(tok, eos, P, t.str[0][i], NULL, &a[i], prefix, i + 1, 0);
            if (!rc && bt) rc = encode(tok, eos, P, t.str[0][i], t.str[2][i], &b[i], prefix, i + 1, 0);
        }
        if (rc) rc = leash_fail_wrap(rc, "%s", c->data);
    }
    int n_val = (int)floor(t.n * (double)c->val_fraction), n_train = t.n - n_val;
    if (!rc && n_train < 1) rc = leash_fail(LEASH_EINVAL, "%s: %d records leave none to train on", c->data, t.n);
    int R = bt ? 2 * c->batch_size : c->batch_size, P = m ? leash_gpt_cfg(m)->n_positions : 1;
    if (!rc) {
        tokens = malloc((size_t)R * P * sizeof *tokens);
        last = malloc(R * sizeof *last);
        mask = malloc((size_t)R * P);
        dv_rows = malloc(R * sizeof *dv_rows);
        values = malloc(R * sizeof *values);
        if (!tokens || !last || !mask || !dv_rows || !values) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    }
    leash_adamw_config oc = c->optim;
    int per_epoch = (n_train + c->batch_size - 1) / c->batch_size, steps = per_epoch * c->epochs;
    if (oc.total_steps == 0) oc.total_steps = steps;
    if (!rc) rc = leash_adamw_create(&opt, &oc, leash_gpt_num_trainable(m));
    leash_rm_progress p = {.steps = steps, .val_accuracy = NAN, .val_gold_accuracy = NAN};
    const seq *rows[512];
    size_t score_bias = 0; // the scalar head's bias: the last parameter
    const leash_tensor_info *lnf_bias = NULL;
    for (int i = 0; !rc && i < leash_gpt_num_tensors(m); i++)
        if (!strcmp(leash_gpt_tensor(m, i)->name, "ln_f.bias")) lnf_bias = leash_gpt_tensor(m, i);
    if (!rc) score_bias = leash_gpt_num_trainable(m) - 1;
    // (an RMSNorm model has no final-norm bias)
    if (!rc && ((!lnf_bias && leash_gpt_cfg(m)->arch == LEASH_ARCH_GPT2) ||
                strcmp(leash_gpt_tensor(m, leash_gpt_num_tensors(m) - 1)->name, "score.bias") != 0))
        rc = leash_fail(LEASH_EINVAL, "internal: the reward model has no ln_f.bias, or its last tensor is not score.bias");
    for (int e = 0; e < c->epochs && !rc; e++) {
        leash_rng rng;
        leash_rng_seed(&rng, c->seed, (uint64_t)e);
        for (int i = 0; i < n_train; i++) order[i] = i;
        for (int i = n_train - 1; i > 0; i--) { // Fisher-Yates
            int j = (int)(leash_rng_uniform(&rng) * (i + 1)), x = order[i];
            order[i] = order[j], order[j] = x;
        }
        for (int i0 = 0; i0 < n_train && !rc; i0 += c->batch_size) {
            // several MPI ranks: each takes the records [lo, hi) of the batch and weighs its loss by its share, so
            // that the summed gradient is the batch's
            int nb = n_train - i0 < c->batch_size ? n_train - i0 : c->batch_size, lo, hi, T;
            leash_dist_split(nb, leash_dist_rank(), leash_dist_size(), &lo, &hi);
            int nl = hi - lo, RB = bt ? 2 * nl : nl;
            double loss = 0.0, share = (double)nl / nb;
            leash_gpt_zero_grad(m);
            if (nl) {
                for (int k = 0; k < nl; k++) rows[k] = &a[order[i0 + lo + k]], rows[nl + k] = bt ? &b[order[i0 + lo + k]] : NULL;
                fill_batch(rows, RB, eos, tokens, mask, last, &T);
                if ((rc = leash_gpt_forward(m, tokens, mask, RB, T))) break;
                const float *v = leash_gpt_values(m);
                for (int r = 0; r < RB; r++) values[r] = v[r * T + last[r]];
                if (bt) {
                    loss = leash_bt_loss(values, values + nl, nl, dv_rows, dv_rows + nl);
                    if (share != 1.0) {
                        loss *= share;
                        for (int r = 0; r < RB; r++) dv_rows[r] = (float)(dv_rows[r] * share);
                    }
                } else {
                    for (int k = 0; k < nl; k++) {
                        double d = values[k] - t.num[0][order[i0 + lo + k]];
                        loss += d * d / nb;
                        dv_rows[k] = (float)(2.0 * d / nb);
                    }
                }
                if (!isfinite(loss) && !c->skip_nonfinite) {
                    rc = leash_fail(LEASH_ENUMERIC, "reward-model loss is %g at step %d; the weights were not changed", loss, p.step + 1);
                    break;
                }
                float *dv = leash_gpt_dvalues(m);
                for (int r = 0; r < RB; r++) dv[r * T + last[r]] = dv_rows[r]; // the score lands on the last token only
                // no LM loss: dlogits stays zero, so only the value path carries gradient
                if ((rc = leash_gpt_backward(m))) break;
                // Bradley-Terry sees only score differences, so a shift of every score changes nothing: the head's
                // bias and the final LayerNorm's bias (which reaches the score only as w . b, the same for every
                // text) get no gradient in exact arithmetic, only rounding noise, which AdamW would turn into
                // steps of the learning rate's size. Zero them.
                if (bt) {
                    float *g = leash_gpt_grads(m);
                    g[score_bias] = 0.0f;
                    if (lnf_bias && leash_gpt_first_trainable(m) == 0) memset(g + lnf_bias->offset, 0, lnf_bias->numel * sizeof(float));
                }
            }
            if ((rc = leash_dist_sum_f32(leash_gpt_grads(m), leash_gpt_num_trainable(m), "gradients")) ||
                (rc = leash_dist_sum_f64(&loss, 1, "loss")))
                break;
            // a non-finite loss (the sum carries it to every rank) or gradient: AdamW refuses before changing anything
            rc = isfinite(loss) ? leash_adamw_step(&opt, m, NULL, NULL) : leash_fail(LEASH_ENUMERIC, "reward-model loss is %g", loss);
            if (rc == LEASH_ENUMERIC && c->skip_nonfinite) {
                p.skipped++, rc = LEASH_OK;
                snprintf(p.skip_reason, sizeof p.skip_reason, "update %d skipped: %s", p.step + 1, leash_errmsg());
            }
            if (rc) break;
            if (leash_dist_size() > 1 &&
                (rc = leash_dist_check_same(leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float), "model weights", NULL)))
                break;
            p.step++, p.epoch = e + 1, p.loss = loss;
            if (fn && fn(&p, ctx)) break;
        }
        if (!rc && n_val > 0) {
            rc = validate(m, c, a, b, bt ? NULL : t.num[0], &t, n_train, t.n, eos, tokens, mask, last, &p);
            p.validation = 1;
            if (!rc && fn) fn(&p, ctx);
            p.validation = 0;
        }
    }
    if (!rc && p.step > 0 && p.skipped == p.step) // nothing trained: no model to write
        rc = leash_fail(LEASH_ENUMERIC, "every one of the %d updates was skipped for a non-finite loss or gradient "
                                        "(--skip-nonfinite): the model did not train and was not written; check --init "
                                        "and the data (%s), or lower --lr",
                        p.step, c->data);
    // score statistics over the training texts, for normalising rewards later
    if (!rc) {
        double s = 0.0, s2 = 0.0;
        int cnt = 0;
        p.stats_total = bt ? 2 * n_train : n_train;
        for (int i0 = 0; i0 < n_train && !rc; i0 += c->batch_size) {
            int nb = n_train - i0 < c->batch_size ? n_train - i0 : c->batch_size, RB = bt ? 2 * nb : nb, T;
            for (int k = 0; k < nb; k++) rows[k] = &a[i0 + k], rows[nb + k] = bt ? &b[i0 + k] : NULL;
            fill_batch(rows, RB, eos, tokens, mask, last, &T);
            if ((rc = leash_gpt_forward(m, tokens, mask, RB, T))) break;
            for (int r = 0; r < RB; r++) {
                double x = leash_gpt_values(m)[r * T + last[r]];
                s += x, s2 += x * x, cnt++;
            }
            p.stats_done = cnt;
            if (fn) fn(&p, ctx);
        }
        p.stats_done = p.stats_total = 0; // final receives the last validation, as before
        double mean = s / cnt, var = s2 / cnt - mean * mean;
        leash_gpt_set_score_stats(m, (leash_score_stats){(float)mean, (float)sqrt(var > 0 ? var : 0)});
    }
    if (!rc && leash_dist_rank() == 0) rc = leash_gpt_save(m, c->out_dir);
    if (!rc && leash_dist_rank() == 0) rc = leash_tokenizer_copy(tok_dir, c->out_dir); // the tokenizer travels with the model
    if (final) *final = p;
    for (int i = 0; i < t.n; i++) free(a ? a[i].ids : NULL), free(b ? b[i].ids : NULL);
    free(a), free(b), free(order), free(tokens), free(last), free(mask), free(dv_rows), free(values);
    leash_adamw_free(&opt);
    leash_gpt_free(m), leash_gpt_free(base);
    leash_tokenizer_free(tok);
    leash_table_free(&t);
    return rc;
}
