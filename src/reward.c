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

/* A training run's state, from the records to the saved model. */
typedef struct {
    int bt;                  // Bradley-Terry pairs; else texts with a number to regress on
    leash_table t;           // the records
    const char *tok_dir;     // the tokenizer's directory: --init's or --tokenizer
    leash_tokenizer *tok;
    leash_gpt *m, *base;     // the reward model; base: --init's model it copies (with LoRA the frozen base)
    leash_adamw opt;
    seq *a, *b;              // (t.n) each record's text, or its prompt + chosen and prompt + rejected
    int *order;              // (n_train) this epoch's order of the training records
    int eos, n_train, n_val; // the text's end token; the first n_train records train, the rest validate
    int *tokens, *last;      // (R, P), (R) with R = 2B for pairs, else B; P the model's positions
    uint8_t *mask;           // (R, P)
    float *dv_rows, *values; // (R)
    size_t score_bias;       // the scalar head's bias: the last parameter
    const leash_tensor_info *lnf_bias; // the final LayerNorm's bias (NULL for an RMSNorm model)
} rm_run;

static int check_config(const leash_rm_config *c) {
    if (!c->data || !c->out_dir) return leash_fail(LEASH_EINVAL, "--data and --out are required");
    if (c->batch_size < 1 || c->batch_size > 256) return leash_fail(LEASH_EINVAL, "--batch %d; it must be in [1, 256]", c->batch_size);
    if (c->epochs < 1) return leash_fail(LEASH_EINVAL, "--epochs %d; it must be >= 1", c->epochs);
    if (!(c->val_fraction >= 0.0f && c->val_fraction < 1.0f))
        return leash_fail(LEASH_EINVAL, "--val-fraction %g; it must be in [0, 1)", (double)c->val_fraction);
    return LEASH_OK;
}

/* The tokenizer and the model: --init's copied with a fresh scalar head (with LoRA: adapters on the frozen
 * base, the head trained), or a new one of c->model's shape; s->eos: the token that ends every text. */
static int load_model(rm_run *s, const leash_rm_config *c) {
    int rc = LEASH_OK;
    s->tok_dir = c->init_dir ? c->init_dir : c->tokenizer_dir;
    if (c->lora_rank > 0 && !c->init_dir) rc = leash_fail(LEASH_EINVAL, "LoRA needs a base model: give --init");
    if (!rc && !s->tok_dir) rc = leash_fail(LEASH_EINVAL, "give --init (the SFT model) or --tokenizer for a new model");
    if (!rc) rc = leash_tokenizer_load_dir(&s->tok, s->tok_dir);
    if (!rc && c->init_dir) // with LoRA: the base frozen, adapters and the head trained
        rc = c->lora_rank > 0 ? leash_gpt_load_lora(&s->base, c->init_dir, c->lora_rank,
                                                    c->lora_alpha > 0.0f ? c->lora_alpha : 2.0f * c->lora_rank, 0.0f,
                                                    c->lora_targets, c->seed)
                              : leash_gpt_load(&s->base, c->init_dir);
    // the end of a text: the model's eos_token_id (Llama 3's <|end_of_text|>), else <|endoftext|>
    s->eos = leash_tokenizer_eos(s->tok, s->base ? leash_gpt_cfg(s->base)->eos_token_id : -1);
    if (!rc && s->eos < 0) rc = leash_fail(LEASH_EFORMAT, "%s: no eos_token_id and the tokenizer has no <|endoftext|>", s->tok_dir);
    if (!rc && c->init_dir) {
        rc = leash_gpt_copy_with_head(&s->m, s->base, 1, c->seed);
    } else if (!rc) {
        leash_gpt_config mc = c->model;
        mc.vocab_size = leash_tokenizer_vocab_size(s->tok);
        mc.eos_token_id = mc.bos_token_id = s->eos;
        mc.scalar_head = 1;
        if (!(rc = leash_gpt_create(&s->m, &mc))) leash_gpt_init(s->m, c->seed);
    }
    if (!rc) leash_gpt_set_checkpoint_activations(s->m, c->checkpoint_activations);
    return rc;
}

/* Tokenises every record (a pair's two texts: prompt + chosen, prompt + rejected) into s->a and s->b. */
static int encode_records(rm_run *s, const leash_rm_config *c) {
    int rc = LEASH_OK, bt = s->bt;
    const char *prefix = bt ? "pair" : "text";
    int P = leash_gpt_cfg(s->m)->n_positions;
    for (int i = 0; i < s->t.n && !rc; i++) {
        rc = bt ? encode(s->tok, s->eos, P, s->t.str[0][i], s->t.str[1][i], &s->a[i], prefix, i + 1, 0)
                : encode(s->tok, s->eos, P, s->t.str[0][i], NULL, &s->a[i], prefix, i + 1, 0);
        if (!rc && bt) rc = encode(s->tok, s->eos, P, s->t.str[0][i], s->t.str[2][i], &s->b[i], prefix, i + 1, 0);
    }
    if (rc) rc = leash_fail_wrap(rc, "%s", c->data);
    return rc;
}

/* The batch buffers, the optimizer (its schedule over all steps unless set) and the bias tensors whose gradient
 * Bradley-Terry zeroes. */
static int prepare_training(rm_run *s, const leash_rm_config *c, int steps) {
    int rc = LEASH_OK, R = s->bt ? 2 * c->batch_size : c->batch_size, P = leash_gpt_cfg(s->m)->n_positions;
    leash_gpt *m = s->m;
    s->tokens = malloc((size_t)R * P * sizeof *s->tokens);
    s->last = malloc(R * sizeof *s->last);
    s->mask = malloc((size_t)R * P);
    s->dv_rows = malloc(R * sizeof *s->dv_rows);
    s->values = malloc(R * sizeof *s->values);
    if (!s->tokens || !s->last || !s->mask || !s->dv_rows || !s->values) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    leash_adamw_config oc = c->optim;
    if (oc.total_steps == 0) oc.total_steps = steps;
    if (!rc) rc = leash_adamw_create(&s->opt, &oc, leash_gpt_num_trainable(m));
    for (int i = 0; !rc && i < leash_gpt_num_tensors(m); i++)
        if (!strcmp(leash_gpt_tensor(m, i)->name, "ln_f.bias")) s->lnf_bias = leash_gpt_tensor(m, i);
    if (!rc) s->score_bias = leash_gpt_num_trainable(m) - 1;
    // (an RMSNorm model has no final-norm bias)
    if (!rc && ((!s->lnf_bias && leash_gpt_cfg(m)->arch == LEASH_ARCH_GPT2) ||
                strcmp(leash_gpt_tensor(m, leash_gpt_num_tensors(m) - 1)->name, "score.bias") != 0))
        rc = leash_fail(LEASH_EINVAL, "internal: the reward model has no ln_f.bias, or its last tensor is not score.bias");
    return rc;
}

/* One update on the batch of training records order[i0..): this rank's records [lo, hi) of it (its loss weighed
 * by its share, so that the summed gradient is the batch's), the gradient summed over the ranks, one AdamW step.
 * With skip_nonfinite a non-finite loss or gradient skips it (p->skipped, p->skip_reason). *loss: the batch's. */
static int train_batch(rm_run *s, const leash_rm_config *c, int i0, leash_rm_progress *p, double *loss) {
    int rc, bt = s->bt, *last = s->last;
    leash_gpt *m = s->m;
    const seq *rows[512];
    int nb = s->n_train - i0 < c->batch_size ? s->n_train - i0 : c->batch_size, lo, hi, T;
    leash_dist_split(nb, leash_dist_rank(), leash_dist_size(), &lo, &hi);
    int nl = hi - lo, RB = bt ? 2 * nl : nl;
    double share = (double)nl / nb;
    *loss = 0.0;
    leash_gpt_zero_grad(m);
    if (nl) {
        for (int k = 0; k < nl; k++) rows[k] = &s->a[s->order[i0 + lo + k]], rows[nl + k] = bt ? &s->b[s->order[i0 + lo + k]] : NULL;
        fill_batch(rows, RB, s->eos, s->tokens, s->mask, last, &T);
        if ((rc = leash_gpt_forward(m, s->tokens, s->mask, RB, T))) return rc;
        const float *v = leash_gpt_values(m);
        float *values = s->values, *dv_rows = s->dv_rows;
        for (int r = 0; r < RB; r++) values[r] = v[r * T + last[r]];
        if (bt) {
            *loss = leash_bt_loss(values, values + nl, nl, dv_rows, dv_rows + nl);
            if (share != 1.0) {
                *loss *= share;
                for (int r = 0; r < RB; r++) dv_rows[r] = (float)(dv_rows[r] * share);
            }
        } else {
            for (int k = 0; k < nl; k++) {
                double d = values[k] - s->t.num[0][s->order[i0 + lo + k]];
                *loss += d * d / nb;
                dv_rows[k] = (float)(2.0 * d / nb);
            }
        }
        if (!isfinite(*loss) && !c->skip_nonfinite)
            return leash_fail(LEASH_ENUMERIC, "reward-model loss is %g at step %d; the weights were not changed", *loss, p->step + 1);
        float *dv = leash_gpt_dvalues(m);
        for (int r = 0; r < RB; r++) dv[r * T + last[r]] = dv_rows[r]; // the score lands on the last token only
        // no LM loss: dlogits stays zero, so only the value path carries gradient
        if ((rc = leash_gpt_backward(m))) return rc;
        // Bradley-Terry sees only score differences, so a shift of every score changes nothing: the head's
        // bias and the final LayerNorm's bias (which reaches the score only as w . b, the same for every
        // text) get no gradient in exact arithmetic, only rounding noise, which AdamW would turn into
        // steps of the learning rate's size. Zero them.
        if (bt) {
            float *g = leash_gpt_grads(m);
            g[s->score_bias] = 0.0f;
            if (s->lnf_bias && leash_gpt_first_trainable(m) == 0) memset(g + s->lnf_bias->offset, 0, s->lnf_bias->numel * sizeof(float));
        }
    }
    if ((rc = leash_dist_sum_f32(leash_gpt_grads(m), leash_gpt_num_trainable(m), "gradients")) ||
        (rc = leash_dist_sum_f64(loss, 1, "loss")))
        return rc;
    // a non-finite loss (the sum carries it to every rank) or gradient: AdamW refuses before changing anything
    rc = isfinite(*loss) ? leash_adamw_step(&s->opt, m, NULL, NULL) : leash_fail(LEASH_ENUMERIC, "reward-model loss is %g", *loss);
    if (rc == LEASH_ENUMERIC && c->skip_nonfinite) {
        p->skipped++, rc = LEASH_OK;
        snprintf(p->skip_reason, sizeof p->skip_reason, "update %d skipped: %s", p->step + 1, leash_errmsg());
    }
    if (!rc && leash_dist_size() > 1)
        rc = leash_dist_check_same(leash_gpt_params(m), leash_gpt_num_params(m) * sizeof(float), "model weights", NULL);
    return rc;
}

/* Epoch e (from 0): the training records in an order drawn from (seed, e), a batch at a time (a callback that
 * returns non-zero ends the epoch), then the accuracy on the validation records. */
static int train_epoch(rm_run *s, const leash_rm_config *c, int e, leash_rm_progress *p, leash_rm_fn fn, void *ctx) {
    int rc = LEASH_OK, n_train = s->n_train, *order = s->order;
    leash_rng rng;
    leash_rng_seed(&rng, c->seed, (uint64_t)e);
    for (int i = 0; i < n_train; i++) order[i] = i;
    for (int i = n_train - 1; i > 0; i--) { // Fisher-Yates
        int j = (int)(leash_rng_uniform(&rng) * (i + 1)), x = order[i];
        order[i] = order[j], order[j] = x;
    }
    for (int i0 = 0; i0 < n_train && !rc; i0 += c->batch_size) {
        double loss;
        if ((rc = train_batch(s, c, i0, p, &loss))) break;
        p->step++, p->epoch = e + 1, p->loss = loss;
        if (fn && fn(p, ctx)) break;
    }
    if (!rc && s->n_val > 0) {
        rc = validate(s->m, c, s->a, s->b, s->bt ? NULL : s->t.num[0], &s->t, n_train, s->t.n, s->eos, s->tokens, s->mask,
                      s->last, p);
        p->validation = 1;
        if (!rc && fn) fn(p, ctx);
        p->validation = 0;
    }
    return rc;
}

/* The mean and standard deviation of the trained model's scores over the training texts, stored with the model
 * for normalising rewards later; p->stats_done counts them for the callback. */
static int score_stats(rm_run *s, const leash_rm_config *c, leash_rm_progress *p, leash_rm_fn fn, void *ctx) {
    int rc = LEASH_OK, bt = s->bt, n_train = s->n_train, cnt = 0;
    const seq *rows[512];
    double sum = 0.0, sum2 = 0.0;
    p->stats_total = bt ? 2 * n_train : n_train;
    for (int i0 = 0; i0 < n_train && !rc; i0 += c->batch_size) {
        int nb = n_train - i0 < c->batch_size ? n_train - i0 : c->batch_size, RB = bt ? 2 * nb : nb, T;
        for (int k = 0; k < nb; k++) rows[k] = &s->a[i0 + k], rows[nb + k] = bt ? &s->b[i0 + k] : NULL;
        fill_batch(rows, RB, s->eos, s->tokens, s->mask, s->last, &T);
        if ((rc = leash_gpt_forward(s->m, s->tokens, s->mask, RB, T))) break;
        for (int r = 0; r < RB; r++) {
            double x = leash_gpt_values(s->m)[r * T + s->last[r]];
            sum += x, sum2 += x * x, cnt++;
        }
        p->stats_done = cnt;
        if (fn) fn(p, ctx);
    }
    p->stats_done = p->stats_total = 0; // final receives the last validation, as before
    double mean = sum / cnt, var = sum2 / cnt - mean * mean;
    leash_gpt_set_score_stats(s->m, (leash_score_stats){(float)mean, (float)sqrt(var > 0 ? var : 0)});
    return rc;
}

static void free_run(rm_run *s) {
    for (int i = 0; i < s->t.n; i++) free(s->a ? s->a[i].ids : NULL), free(s->b ? s->b[i].ids : NULL);
    free(s->a), free(s->b), free(s->order), free(s->tokens), free(s->last), free(s->mask), free(s->dv_rows), free(s->values);
    leash_adamw_free(&s->opt);
    leash_gpt_free(s->m), leash_gpt_free(s->base);
    leash_tokenizer_free(s->tok);
    leash_table_free(&s->t);
}

int leash_rm_train(const leash_rm_config *c, leash_rm_fn fn, void *ctx, leash_rm_progress *final) {
    int rc = check_config(c);
    if (rc) return rc;
    rm_run s = {.bt = c->loss == LEASH_RM_BRADLEY_TERRY};
    static const char *const pair_keys[] = {"prompt", "chosen", "rejected"}, *const text_keys[] = {"text"};
    static const char *const label_keys[] = {"sentiment"};
    if ((rc = s.bt ? leash_jsonl_load(c->data, pair_keys, 3, NULL, 0, 0, &s.t)
                   : leash_jsonl_load(c->data, text_keys, 1, label_keys, 1, 0, &s.t)))
        return rc;
    if ((rc = leash_mkdir(c->out_dir))) {
        leash_table_free(&s.t);
        return rc;
    }
    s.a = calloc(s.t.n, sizeof *s.a), s.b = s.bt ? calloc(s.t.n, sizeof *s.b) : NULL;
    s.order = malloc(s.t.n * sizeof *s.order);
    if (!s.a || (s.bt && !s.b) || !s.order) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    s.n_val = (int)floor(s.t.n * (double)c->val_fraction), s.n_train = s.t.n - s.n_val;
    int per_epoch = (s.n_train + c->batch_size - 1) / c->batch_size, steps = per_epoch * c->epochs;
    leash_rm_progress p = {.steps = steps, .val_accuracy = NAN, .val_gold_accuracy = NAN};

    if (!rc) rc = load_model(&s, c);
    if (!rc) rc = encode_records(&s, c);
    if (!rc && s.n_train < 1) rc = leash_fail(LEASH_EINVAL, "%s: %d records leave none to train on", c->data, s.t.n);
    if (!rc) rc = prepare_training(&s, c, steps);
    for (int e = 0; e < c->epochs && !rc; e++) rc = train_epoch(&s, c, e, &p, fn, ctx);
    if (!rc && p.step > 0 && p.skipped == p.step) // nothing trained: no model to write
        rc = leash_fail(LEASH_ENUMERIC, "every one of the %d updates was skipped for a non-finite loss or gradient "
                                        "(--skip-nonfinite): the model did not train and was not written; check --init "
                                        "and the data (%s), or lower --lr",
                        p.step, c->data);
    if (!rc) rc = score_stats(&s, c, &p, fn, ctx);
    if (!rc && leash_dist_rank() == 0) rc = leash_gpt_save(s.m, c->out_dir);
    if (!rc && leash_dist_rank() == 0) rc = leash_tokenizer_copy(s.tok_dir, c->out_dir); // the tokenizer travels with the model
    if (final) *final = p;
    free_run(&s);
    return rc;
}
