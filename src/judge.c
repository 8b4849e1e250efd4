/* RLAIF labelling with a built-in or an external judge: see include/leash/judge.h. */
#include "leash/judge.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/data.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/reward.h"
#include "leash/stop.h"
#include "leash/tokenizer.h"
#include "subprocess.h"


leash_label_config leash_label_defaults(void) {
    leash_label_config c = {0};
    c.timeout_s = 30.0;
    c.sample = leash_sample_defaults();
    c.sample.max_new_tokens = 48;
    c.batch = 32;
    return c;
}

/* ---- an external judge --------------------------------------------------------------------------- */

/* One pair through the external judge: *pref_a = 1 when it prefers a; margin (NAN when not given). */
static int ext_judge(leash_subprocess *x, double timeout_s, int id, const char *prompt, const char *a, const char *b,
                     int *pref_a, double *margin) {
    cJSON *req = subprocess_request_object(id);
    if (!req || !cJSON_AddStringToObject(req, "prompt", prompt) || !cJSON_AddStringToObject(req, "a", a) ||
        !cJSON_AddStringToObject(req, "b", b)) {
        cJSON_Delete(req);
        return leash_fail(LEASH_ENOMEM, "out of memory");
    }
    char *line;
    int rc = subprocess_call(x, timeout_s, id, req, &line);
    if (!rc) rc = subprocess_parse_judge(line, id, pref_a, margin);
    free(line);
    return rc;
}

/* ---- labelling ----------------------------------------------------------------------------------- */

static int write_pair(FILE *f, const char *prompt, const char *chosen, const char *rejected, double margin) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", prompt);
    cJSON_AddStringToObject(o, "chosen", chosen);
    cJSON_AddStringToObject(o, "rejected", rejected);
    if (isnan(margin)) cJSON_AddNullToObject(o, "margin");
    else cJSON_AddNumberToObject(o, "margin", margin);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return leash_fail(LEASH_ENOMEM, "out of memory");
    int ok = fprintf(f, "%s\n", s) > 0; // checked again, with the flush and the fsync, when the file is committed
    free(s);
    return ok ? LEASH_OK : leash_fail(LEASH_EIO, "cannot write the preference file: %s", strerror(errno));
}

/* The output is written whole (a temporary renamed over it): a labelling that fails or is interrupted
 * leaves a file that was there untouched. Into a new file, the pairs labelled before a failure are kept
 * (whole lines). */
static int finish_output(leash_atomic_file *af, int rc, int existed, int written) {
    if (!af->f) return rc;
    if (rc && (existed || written == 0)) {
        leash_atomic_abort(af);
        return rc;
    }
    if (!rc) return leash_atomic_commit(af);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", leash_errmsg());
    if (leash_atomic_commit(af)) return rc; // the first error is the one to report; nothing was written
    return leash_fail(rc, "%s", msg);
}

/* A labelling's models and its batch buffers (B prompts, two samples each: rows 2k and 2k + 1; M new tokens). */
typedef struct {
    leash_gpt *policy, *judge;    // judge: the built-in one, NULL with an external judge
    leash_tokenizer *tok, *jtok;  // the policy's and the judge's
    leash_subprocess ext;         // the external judge
    leash_sample_config sc;
    int *ids;                     // (n_ids) the batch's prompt tokens, row after row
    size_t n_ids, cap;
    int *lens, *glens;            // (2B) prompt lengths, generated lengths
    int *gen;                     // (2B, M) generated tokens
    float *lps, *scores;          // (2B, M) their log-probs; (4B) the built-in judge's scores
    uint64_t *streams;            // (2B) each row's sampling stream
    char **resp, **texts;         // (2B) the responses; prompt + response, as the built-in judge reads them
} label_run;

static int check_config(const leash_label_config *c) {
    if (!c->policy_dir || !c->prompts_path || !c->out_path)
        return leash_fail(LEASH_EINVAL, "--policy, --prompts and --out are required");
    if (!c->judge_dir == !c->judge_cmd) return leash_fail(LEASH_EINVAL, "give exactly one of --judge DIR and --judge-cmd CMD");
    if (!(c->timeout_s > 0)) return leash_fail(LEASH_EINVAL, "--judge-timeout %g; it must be > 0 seconds", c->timeout_s);
    if (c->batch < 1) return leash_fail(LEASH_EINVAL, "--batch %d; it must be >= 1", c->batch);
    return LEASH_OK;
}

/* The batch buffers for c->batch prompts. */
static int alloc_buffers(label_run *s, const leash_label_config *c) {
    int B = c->batch, M = c->sample.max_new_tokens;
    s->lens = calloc(2 * B, sizeof *s->lens), s->gen = malloc((size_t)2 * B * M * sizeof *s->gen);
    s->glens = malloc(2 * B * sizeof *s->glens);
    s->lps = malloc((size_t)2 * B * M * sizeof *s->lps), s->scores = malloc(4 * B * sizeof *s->scores);
    s->resp = calloc(2 * B, sizeof *s->resp), s->texts = calloc(2 * B, sizeof *s->texts);
    s->streams = malloc(2 * B * sizeof *s->streams);
    if (!s->lens || !s->gen || !s->glens || !s->lps || !s->scores || !s->resp || !s->texts || !s->streams)
        return leash_fail(LEASH_ENOMEM, "out of memory");
    return LEASH_OK;
}

/* The policy and its tokenizer, and the built-in judge (a scalar-head model) and its tokenizer; both frozen. */
static int load_models(label_run *s, const leash_label_config *c) {
    int rc = leash_gpt_load(&s->policy, c->policy_dir);
    if (!rc) rc = leash_tokenizer_load_dir(&s->tok, c->policy_dir);
    if (!rc && c->judge_dir) {
        if (!(rc = leash_gpt_load(&s->judge, c->judge_dir)) && !(rc = leash_tokenizer_load_dir(&s->jtok, c->judge_dir)) &&
            !leash_gpt_cfg(s->judge)->scalar_head)
            rc = leash_fail(LEASH_EINVAL, "%s has no scalar head: not a judge or reward model", c->judge_dir);
    }
    if (!rc) { // both only generate or score
        leash_gpt_freeze(s->policy);
        if (s->judge) leash_gpt_freeze(s->judge);
    }
    return rc;
}

/* Two responses to each of the prompts [i0, i0 + nb) into s->resp (valid UTF-8, without the EOS); a pair's
 * samples do not depend on the batching. */
static int sample_pairs(label_run *s, const leash_label_config *c, const leash_table *pr, int i0, int nb) {
    int rc = LEASH_OK, M = c->sample.max_new_tokens;
    s->n_ids = 0;
    for (int k = 0; k < 2 * nb && !rc; k++) { // two samples of each prompt: rows 2k and 2k + 1
        size_t before = s->n_ids;
        const char *prompt = pr->str[0][i0 + k / 2];
        rc = leash_tokenizer_encode(s->tok, prompt, strlen(prompt), 0, &s->ids, &s->n_ids, &s->cap);
        s->lens[k] = (int)(s->n_ids - before);
        int np = leash_gpt_cfg(s->policy)->n_positions, at = i0 + k / 2 + 1;
        if (!rc && (s->lens[k] == 0 || s->lens[k] + M > np)) // named here: the sampler knows only its batch row
            rc = s->lens[k] == 0 ? leash_fail(LEASH_EINVAL, "%s: prompt %d (blank lines not counted) is empty", c->prompts_path, at)
                                 : leash_fail(LEASH_EINVAL,
                                              "%s: prompt %d (blank lines not counted) has %d tokens and --max-new is %d: more "
                                              "than the policy's %d positions; shorten the prompt or lower --max-new",
                                              c->prompts_path, at, s->lens[k], M, np);
        s->streams[k] = 2 * (uint64_t)(i0 + k / 2) + (k & 1); // a pair's samples do not depend on the batching
    }
    if (!rc) rc = leash_generate(s->policy, &s->sc, s->ids, s->lens, 2 * nb, s->streams, s->gen, s->lps, s->glens);
    for (int k = 0; k < 2 * nb && !rc; k++) {
        size_t len = 0, rcap = 0;
        int n = s->glens[k] - (s->glens[k] && leash_sample_is_eos(&s->sc, s->gen[k * M + s->glens[k] - 1])); // the EOS is not text
        char *raw = NULL;
        free(s->resp[k]);
        s->resp[k] = NULL;
        rc = leash_tokenizer_decode(s->tok, s->gen + k * M, n, &raw, &len, &rcap);
        // judges and JSONL files get valid UTF-8: bytes that are not become U+FFFD
        if (!rc && !(s->resp[k] = leash_utf8_sanitize(raw ? raw : "", len))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
        free(raw);
    }
    return rc;
}

/* The built-in judge's scores of prompt + response for the 2 nb rows of the prompts [i0, i0 + nb). */
static int judge_scores(label_run *s, const leash_table *pr, int i0, int nb) {
    int rc = LEASH_OK;
    for (int k = 0; k < 2 * nb && !rc; k++) {
        const char *prompt = pr->str[0][i0 + k / 2];
        free(s->texts[k]);
        s->texts[k] = malloc(strlen(prompt) + strlen(s->resp[k]) + 1);
        if (!s->texts[k]) rc = leash_fail(LEASH_ENOMEM, "out of memory");
        else strcat(strcpy(s->texts[k], prompt), s->resp[k]);
    }
    if (!rc) rc = leash_rm_score_texts(s->judge, s->jtok, (const char *const *)s->texts, 2 * nb, 2 * nb, s->scores);
    return rc;
}

/* Each pair of the prompts [i0, i0 + nb) judged (the built-in judge's scores, or the external judge asked now)
 * and written to f as chosen / rejected; identical responses and tied scores are skipped (p->skipped). */
static int write_pairs(label_run *s, const leash_label_config *c, const leash_table *pr, int i0, int nb, FILE *f,
                       leash_label_progress *p) {
    int rc = LEASH_OK;
    for (int j = 0; j < nb && !rc; j++) {
        const char *prompt = pr->str[0][i0 + j], *a = s->resp[2 * j], *b = s->resp[2 * j + 1];
        int pref_a = 0;
        double margin = NAN;
        if (s->judge) {
            margin = fabs((double)s->scores[2 * j] - s->scores[2 * j + 1]);
            pref_a = s->scores[2 * j] > s->scores[2 * j + 1];
            if (margin == 0.0 || strcmp(a, b) == 0) {
                p->skipped++;
                continue;
            }
        } else {
            if (strcmp(a, b) == 0) {
                p->skipped++;
                continue;
            }
            rc = ext_judge(&s->ext, c->timeout_s, i0 + j, prompt, a, b, &pref_a, &margin);
            if (rc) break;
        }
        rc = write_pair(f, prompt, pref_a ? a : b, pref_a ? b : a, margin);
        if (!rc) p->written++;
    }
    return rc;
}

int leash_judge_label(const leash_label_config *c, leash_label_fn fn, void *ctx, leash_label_progress *final) {
    int rc = check_config(c);
    if (rc) return rc;
    static const char *const keys[] = {"prompt"};
    leash_table pr;
    if ((rc = leash_jsonl_load(c->prompts_path, keys, 1, NULL, 0, 0, &pr))) return rc;
    label_run s = {.ext = {.to = -1, .from = -1}, .sc = c->sample};
    leash_atomic_file af = {0};
    int existed = access(c->out_path, F_OK) == 0, B = c->batch;
    int n_prompts = c->max_prompts > 0 && c->max_prompts < pr.n ? c->max_prompts : pr.n;
    leash_label_progress p = {.prompts = n_prompts};
    rc = alloc_buffers(&s, c);
    if (!rc) rc = load_models(&s, c);
    if (!rc && c->judge_cmd) rc = subprocess_start(&s.ext, c->judge_cmd, "judge command");
    if (!rc) rc = leash_atomic_open(&af, c->out_path);
    // where a response ends, as in RL
    leash_sample_set_eos(&s.sc, s.policy ? leash_gpt_cfg(s.policy) : NULL,
                         leash_tokenizer_eos(s.tok, s.policy ? leash_gpt_cfg(s.policy)->eos_token_id : -1));

    for (int i0 = 0; i0 < n_prompts && !rc; i0 += B) {
        int nb = n_prompts - i0 < B ? n_prompts - i0 : B;
        if (leash_stop_requested()) {
            rc = leash_fail(LEASH_EIO, "stopped by a signal after %d of %d prompts", i0, n_prompts);
            break;
        }
        rc = sample_pairs(&s, c, &pr, i0, nb);
        if (!rc && s.judge) rc = judge_scores(&s, &pr, i0, nb);
        if (!rc) rc = write_pairs(&s, c, &pr, i0, nb, af.f, &p);
        p.prompts_done = i0 + nb;
        if (!rc && fn && fn(&p, ctx)) break;
    }
    if (final) *final = p;
    if (c->judge_cmd) subprocess_stop(&s.ext);
    rc = finish_output(&af, rc, existed, p.written);
    for (int k = 0; k < 2 * B; k++) free(s.resp ? s.resp[k] : NULL), free(s.texts ? s.texts[k] : NULL);
    free(s.resp), free(s.texts), free(s.ids), free(s.lens), free(s.gen), free(s.glens), free(s.lps), free(s.scores), free(s.streams);
    leash_gpt_free(s.policy), leash_gpt_free(s.judge);
    leash_tokenizer_free(s.tok), leash_tokenizer_free(s.jtok);
    leash_table_free(&pr);
    return rc;
}
