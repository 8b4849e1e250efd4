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

int leash_judge_label(const leash_label_config *c, leash_label_fn fn, void *ctx, leash_label_progress *final) {
    if (!c->policy_dir || !c->prompts_path || !c->out_path)
        return leash_fail(LEASH_EINVAL, "--policy, --prompts and --out are required");
    if (!c->judge_dir == !c->judge_cmd) return leash_fail(LEASH_EINVAL, "give exactly one of --judge DIR and --judge-cmd CMD");
    if (!(c->timeout_s > 0)) return leash_fail(LEASH_EINVAL, "--judge-timeout %g; it must be > 0 seconds", c->timeout_s);
    if (c->batch < 1) return leash_fail(LEASH_EINVAL, "--batch %d; it must be >= 1", c->batch);
    static const char *const keys[] = {"prompt"};
    leash_table pr;
    int rc = leash_jsonl_load(c->prompts_path, keys, 1, NULL, 0, 0, &pr);
    if (rc) return rc;
    leash_gpt *policy = NULL, *judge = NULL;
    leash_tokenizer *tok = NULL, *jtok = NULL;
    leash_subprocess ext = {.to = -1, .from = -1};
    leash_atomic_file af = {0};
    int existed = access(c->out_path, F_OK) == 0;
    int n_prompts = c->max_prompts > 0 && c->max_prompts < pr.n ? c->max_prompts : pr.n, B = c->batch, M = c->sample.max_new_tokens;
    leash_label_progress p = {.prompts = n_prompts};
    int *ids = NULL, *lens = calloc(2 * B, sizeof *lens), *gen = malloc((size_t)2 * B * M * sizeof *gen);
    int *glens = malloc(2 * B * sizeof *glens);
    float *lps = malloc((size_t)2 * B * M * sizeof *lps), *scores = malloc(4 * B * sizeof *scores);
    char **resp = calloc(2 * B, sizeof *resp), **texts = calloc(2 * B, sizeof *texts);
    size_t n_ids = 0, cap = 0;
    if (!lens || !gen || !glens || !lps || !scores || !resp || !texts) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    if (!rc) rc = leash_gpt_load(&policy, c->policy_dir);
    if (!rc) rc = leash_tokenizer_load_dir(&tok, c->policy_dir);
    if (!rc && c->judge_dir) {
        if (!(rc = leash_gpt_load(&judge, c->judge_dir)) && !(rc = leash_tokenizer_load_dir(&jtok, c->judge_dir)) &&
            !leash_gpt_cfg(judge)->scalar_head)
            rc = leash_fail(LEASH_EINVAL, "%s has no scalar head: not a judge or reward model", c->judge_dir);
    }
    if (!rc) { // both only generate or score
        leash_gpt_freeze(policy);
        if (judge) leash_gpt_freeze(judge);
    }
    if (!rc && c->judge_cmd) rc = subprocess_start(&ext, c->judge_cmd, "judge command");
    if (!rc) rc = leash_atomic_open(&af, c->out_path);
    leash_sample_config sc = c->sample;
    // where a response ends, as in RL
    leash_sample_set_eos(&sc, policy ? leash_gpt_cfg(policy) : NULL,
                         leash_tokenizer_eos(tok, policy ? leash_gpt_cfg(policy)->eos_token_id : -1));
    uint64_t *streams = malloc(2 * B * sizeof *streams);
    if (!rc && !streams) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int i0 = 0; i0 < n_prompts && !rc; i0 += B) {
        int nb = n_prompts - i0 < B ? n_prompts - i0 : B;
        if (leash_stop_requested()) {
            rc = leash_fail(LEASH_EIO, "stopped by a signal after %d of %d prompts", i0, n_prompts);
            break;
        }
        n_ids = 0;
        for (int k = 0; k < 2 * nb && !rc; k++) { // two samples of each prompt: rows 2k and 2k + 1
            size_t before = n_ids;
            const char *prompt = pr.str[0][i0 + k / 2];
            rc = leash_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n_ids, &cap);
            lens[k] = (int)(n_ids - before);
            int np = leash_gpt_cfg(policy)->n_positions, at = i0 + k / 2 + 1;
            if (!rc && (lens[k] == 0 || lens[k] + M > np)) // named here: the sampler knows only its batch row
                rc = lens[k] == 0 ? leash_fail(LEASH_EINVAL, "%s: prompt %d (blank lines not counted) is empty", c->prompts_path, at)
                                  : leash_fail(LEASH_EINVAL,
                                               "%s: prompt %d (blank lines not counted) has %d tokens and --max-new is %d: more "
                                               "than the policy's %d positions; shorten the prompt or lower --max-new",
                                               c->prompts_path, at, lens[k], M, np);
            streams[k] = 2 * (uint64_t)(i0 + k / 2) + (k & 1); // a pair's samples do not depend on the batching
        }
        if (!rc) rc = leash_generate(policy, &sc, ids, lens, 2 * nb, streams, gen, lps, glens);
        for (int k = 0; k < 2 * nb && !rc; k++) {
            size_t len = 0, rcap = 0;
            int n = glens[k] - (glens[k] && leash_sample_is_eos(&sc, gen[k * M + glens[k] - 1])); // the EOS is not text
            char *raw = NULL;
            free(resp[k]);
            resp[k] = NULL;
            rc = leash_tokenizer_decode(tok, gen + k * M, n, &raw, &len, &rcap);
            // judges and JSONL files get valid UTF-8: bytes that are not become U+FFFD
            if (!rc && !(resp[k] = leash_utf8_sanitize(raw ? raw : "", len))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
            free(raw);
        }
        if (!rc && judge) {
            for (int k = 0; k < 2 * nb && !rc; k++) {
                const char *prompt = pr.str[0][i0 + k / 2];
                free(texts[k]);
                texts[k] = malloc(strlen(prompt) + strlen(resp[k]) + 1);
                if (!texts[k]) rc = leash_fail(LEASH_ENOMEM, "out of memory");
                else strcat(strcpy(texts[k], prompt), resp[k]);
            }
            if (!rc) rc = leash_rm_score_texts(judge, jtok, (const char *const *)texts, 2 * nb, 2 * nb, scores);
        }
        for (int j = 0; j < nb && !rc; j++) {
            const char *prompt = pr.str[0][i0 + j], *a = resp[2 * j], *b = resp[2 * j + 1];
            int pref_a = 0;
            double margin = NAN;
            if (judge) {
                margin = fabs((double)scores[2 * j] - scores[2 * j + 1]);
                pref_a = scores[2 * j] > scores[2 * j + 1];
                if (margin == 0.0 || strcmp(a, b) == 0) {
                    p.skipped++;
                    continue;
                }
            } else {
                if (strcmp(a, b) == 0) {
                    p.skipped++;
                    continue;
                }
                rc = ext_judge(&ext, c->timeout_s, i0 + j, prompt, a, b, &pref_a, &margin);
                if (rc) break;
            }
            rc = write_pair(af.f, prompt, pref_a ? a : b, pref_a ? b : a, margin);
            if (!rc) p.written++;
        }
        p.prompts_done = i0 + nb;
        if (!rc && fn && fn(&p, ctx)) break;
    }
    if (final) *final = p;
    if (c->judge_cmd) subprocess_stop(&ext);
    rc = finish_output(&af, rc, existed, p.written);
    for (int k = 0; k < 2 * B; k++) free(resp ? resp[k] : NULL), free(texts ? texts[k] : NULL);
    free(resp), free(texts), free(ids), free(lens), free(gen), free(glens), free(lps), free(scores), free(streams);
    leash_gpt_free(policy), leash_gpt_free(judge);
    leash_tokenizer_free(tok), leash_tokenizer_free(jtok);
    leash_table_free(&pr);
    return rc;
}
