/* The reward phase's token ids (issue 20, part 3): would reusing the policy's sampled ids for a reward model that
 * shares its tokenizer give the same ids as today's decode and re-encode? SmolLM2-135M-Instruct (the real GGUF:
 * LEASH_SMOLLM2_GGUF, else /opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf; skipped with the reason when absent)
 * answers plain questions through its chat template, as `leash grpo --chat-template` samples them (temperature 1,
 * up to 32 new tokens, stopping at its eos ids). For each response, as src/rollout.c and src/reward.c do: the
 * sampled ids but the EOS are decoded and made valid UTF-8; the reward model then encodes prompt + response text.
 * Counted: responses whose re-encoded ids differ from the sampled ones (the response alone), and whose
 * encode(prompt + response) differs from encode(prompt) followed by the sampled ids (what reuse would feed the
 * reward model). Timed: decode + sanitise + encode of prompt + response, per response and per step of 64.
 * Prints the counts, three differing responses and the times; asserts nothing.
 *   bench_reward_ids [--quick] [--n N] [--temperature T] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/chat.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/sample.h"
#include "leash/tokenizer.h"

#include "bench.h"

enum { M = 32, BATCH = 32 };

static void die(const char *what) {
    fprintf(stderr, "bench_reward_ids: %s: %s\n", what, leash_errmsg());
    exit(1);
}

static const char *const questions[] = {
    "What is the capital of France?",        "Name three colours of the rainbow.",
    "Write a short poem about the sea.",     "How many legs does a spider have?",
    "Explain photosynthesis in one sentence.", "What is 17 times 23?",
    "Give me a tip for learning to cook.",   "Translate 'good morning' into Spanish.",
};
enum { NQ = sizeof questions / sizeof questions[0] };

/* The ids as token strings, "|"-separated, into out (cap bytes). */
static void show(const leash_tokenizer *tok, const int *ids, size_t n, char *out, size_t cap) {
    size_t at = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && at + 32 < cap; i++) {
        int len;
        const char *s = leash_tokenizer_token(tok, ids[i], &len);
        if (i) out[at++] = '|';
        for (int k = 0; k < (s ? len : 0) && k < 12; k++) at += (size_t)snprintf(out + at, cap - at, s[k] == '\n' ? "\\n" : "%c", s[k]);
    }
}

int main(int argc, char **argv) {
    int n_resp = 256;
    float temperature = 1.0f;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) n_resp = 32;
        else if (i + 1 < argc && !strcmp(argv[i], "--n")) n_resp = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--temperature")) temperature = (float)atof(argv[++i]);
        else return fprintf(stderr, "usage: bench_reward_ids [--quick] [--n N] [--temperature T]\n"), 2;
    }
    const char *path = getenv("LEASH_SMOLLM2_GGUF");
    if (!path || !*path) path = "/opt/leash-ref/SmolLM2-135M-Instruct.Q4_1.gguf";
    FILE *f = fopen(path, "rb");
    if (!f) return printf("bench_reward_ids skipped: %s is absent (scripts/deps.sh --ref fetches it)\n", path), 0;
    fclose(f);
    leash_gpt *m;
    leash_tokenizer *tok;
    leash_chat_template ct = {0};
    if (leash_gpt_load(&m, path) || leash_tokenizer_load_dir(&tok, path) || leash_chat_template_load(&ct, path))
        die(path);
    const leash_gpt_config *cfg = leash_gpt_cfg(m);
    leash_sample_config sc = leash_sample_defaults();
    sc.temperature = temperature, sc.max_new_tokens = M, sc.seed = 1;
    leash_sample_set_eos(&sc, cfg, leash_tokenizer_eos(tok, cfg->eos_token_id));
    // the chat-wrapped prompts the policy samples from; the reward model reads the plain question
    int *pids[NQ], plen[NQ];
    for (int q = 0; q < NQ; q++) {
        char *wrapped = NULL;
        size_t n = 0, cap = 0;
        pids[q] = NULL;
        if (leash_chat_render(&ct, &(leash_chat_message){"user", questions[q]}, 1, 1, NULL, &wrapped, NULL) ||
            leash_tokenizer_encode(tok, wrapped, strlen(wrapped), 1, &pids[q], &n, &cap))
            die("prompt");
        free(wrapped);
        plen[q] = (int)n;
    }
    int *gen = malloc((size_t)n_resp * M * sizeof(int)), *glen = malloc((size_t)n_resp * sizeof(int));
    float *glp = malloc((size_t)n_resp * M * sizeof(float));
    if (!gen || !glen || !glp) die("buffers");
    double t0 = bench_now();
    for (int i0 = 0; i0 < n_resp; i0 += BATCH) {
        int B = n_resp - i0 < BATCH ? n_resp - i0 : BATCH, packed[BATCH * 64], lens[BATCH], at = 0;
        uint64_t streams[BATCH];
        for (int b = 0; b < B; b++) {
            int q = (i0 + b) % NQ;
            memcpy(packed + at, pids[q], (size_t)plen[q] * sizeof(int));
            at += plen[q], lens[b] = plen[q], streams[b] = (uint64_t)(i0 + b);
        }
        if (leash_generate(m, &sc, packed, lens, B, streams, gen + (size_t)i0 * M, glp + (size_t)i0 * M, glen + i0))
            die("generate");
    }
    double t_gen = bench_now() - t0;
    int differ_resp = 0, differ_joined = 0, shown = 0, tokens = 0;
    double t_text = 0.0;
    for (int r = 0; r < n_resp; r++) {
        const int *ids = gen + (size_t)r * M;
        int L = glen[r], q = r % NQ;
        if (L > 0 && leash_sample_is_eos(&sc, ids[L - 1])) L--; // as rollout.c: the EOS is not text
        tokens += L;
        // today's path, timed: decode, sanitise, prompt + response encoded by the reward model's tokenizer
        double a = bench_now();
        char *raw = NULL, *text, *joined;
        size_t len = 0, cap = 0, n_re = 0, cap_re = 0, n_j = 0, cap_j = 0, n_p = 0, cap_p = 0;
        int *re = NULL, *jn = NULL, *pp = NULL;
        if (leash_tokenizer_decode(tok, ids, (size_t)L, &raw, &len, &cap)) die("decode");
        text = leash_utf8_sanitize(raw ? raw : "", len);
        joined = malloc(strlen(questions[q]) + strlen(text) + 1);
        strcat(strcpy(joined, questions[q]), text);
        if (leash_tokenizer_encode(tok, joined, strlen(joined), 0, &jn, &n_j, &cap_j)) die("encode");
        t_text += bench_now() - a;
        // what reuse would give instead
        if (leash_tokenizer_encode(tok, text, strlen(text), 0, &re, &n_re, &cap_re) ||
            leash_tokenizer_encode(tok, questions[q], strlen(questions[q]), 0, &pp, &n_p, &cap_p))
            die("encode");
        int d_resp = n_re != (size_t)L || memcmp(re, ids, (size_t)L * sizeof(int));
        int d_join = n_j != n_p + (size_t)L || memcmp(jn, pp, n_p * sizeof(int)) ||
                     memcmp(jn + n_p, ids, (size_t)L * sizeof(int));
        differ_resp += d_resp, differ_joined += d_join;
        if (d_resp && shown < 3) {
            char s1[400], s2[400];
            show(tok, ids, (size_t)L, s1, sizeof s1), show(tok, re, n_re, s2, sizeof s2);
            printf("  response %d, sampled    %s\n               re-encoded %s\n", r, s1, s2);
            shown++;
        }
        free(raw), free(text), free(joined), free(re), free(jn), free(pp);
    }
    printf("SmolLM2-135M-Instruct, %d responses (%d tokens, EOS excluded) of up to %d tokens at temperature %g through "
           "its chat template, sampled in %.1f s\n",
           n_resp, tokens, M, (double)temperature, t_gen);
    printf("  re-encoded response ids differ from the sampled ids: %d of %d responses (%.1f%%)\n", differ_resp, n_resp,
           100.0 * differ_resp / n_resp);
    printf("  encode(prompt + response) differs from encode(prompt) + sampled ids: %d of %d (%.1f%%)\n", differ_joined,
           n_resp, 100.0 * differ_joined / n_resp);
    printf("  decode + sanitise + encode(prompt + response): %.1f us a response, %.2f ms a step of 64 responses "
           "(generation: %.0f ms a step of 64)\n",
           1e6 * t_text / n_resp, 64e3 * t_text / n_resp, 64e3 * t_gen / n_resp);
    for (int q = 0; q < NQ; q++) free(pids[q]);
    free(gen), free(glen), free(glp);
    leash_chat_template_free(&ct);
    leash_tokenizer_free(tok);
    leash_gpt_free(m);
    return 0;
}
