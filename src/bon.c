/* Best-of-n sampling with a reward model: see include/leash/bon.h. Dimensions: P prompts, N = max(n)
 * samples per prompt, M new tokens. */
#include "leash/bon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/data.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/optimum.h"
#include "leash/reward.h"
#include "leash/rng.h"
#include "leash/sample.h"
#include "leash/tokenizer.h"
#include "leash/world.h"

double leash_bon_kl_beirami(long n, double eps) {
    if (n < 1 || !(eps >= 0.0 && eps <= 1.0)) return NAN;
    if (eps == 1.0 || n == 1) return 0.0;
    double l1 = log1p(-eps), low = exp((double)n * l1), top = -expm1((double)n * l1); // (1 - eps)^n, 1 - (1 - eps)^n
    double cont = low * (log((double)n) + (double)(n - 1) * l1 - (double)(n - 1) / (double)n);
    return cont + (eps > 0.0 ? top * (log(top) - log(eps)) : 0.0); // top log(top / eps) -> 0 as eps -> 0
}

int leash_best_of_n(const char *policy_dir, const char *reward_dir, const char *prompts_path, const int *ns, int n_ns,
                    int P, int M, float temperature, uint64_t seed, leash_bon_result *out) {
    int N = 0;
    for (int i = 0; i < n_ns; i++) {
        if (ns[i] < 1) return leash_fail(LEASH_EINVAL, "best-of-n: n = %d; it must be >= 1", ns[i]);
        if (ns[i] > N) N = ns[i];
    }
    if (P < 1 || n_ns < 1) return leash_fail(LEASH_EINVAL, "best-of-n: need >= 1 prompt and >= 1 value of n");
    leash_gpt *policy = NULL, *rm = NULL;
    leash_tokenizer *tok = NULL, *rtok = NULL;
    leash_table pr = {0};
    static const char *const keys[] = {"prompt"};
    int rc = leash_gpt_load(&policy, policy_dir);
    if (!rc) rc = leash_tokenizer_load_dir(&tok, policy_dir);
    if (!rc) rc = leash_gpt_load(&rm, reward_dir);
    if (!rc) rc = leash_tokenizer_load_dir(&rtok, reward_dir);
    if (!rc) leash_gpt_freeze(policy), leash_gpt_freeze(rm); // both only score
    if (!rc) rc = leash_jsonl_load(prompts_path, keys, 1, NULL, 0, 0, &pr);
    int R = P * N, *pidx = malloc(P * sizeof *pidx), *gen = malloc((size_t)N * M * sizeof *gen), *glen = malloc(N * sizeof *glen);
    float *lp = malloc((size_t)N * M * sizeof *lp), *score = malloc(R * sizeof *score);
    double *gold = malloc(R * sizeof *gold), *seq_lp = malloc(R * sizeof *seq_lp); // (R) log pi_ref(response)
    int *gram = malloc(R * sizeof *gram);
    char **texts = calloc(R, sizeof *texts);
    if (!rc && (!pidx || !gen || !glen || !lp || !score || !gold || !seq_lp || !gram || !texts)) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    leash_sample_config sc = leash_sample_defaults();
    sc.temperature = temperature, sc.max_new_tokens = M, sc.seed = seed;
    sc.eos_id = tok ? leash_tokenizer_special_id(tok, "<|endoftext|>") : -1;
    leash_rng rng;
    leash_rng_seed(&rng, seed, UINT64_C(0xb0e));
    for (int p = 0; p < P && !rc; p++) {
        pidx[p] = (int)(leash_rng_uniform(&rng) * pr.n);
        const char *prompt = pr.str[0][pidx[p]];
        int *ids = NULL, *packed = NULL, *lens = malloc(N * sizeof *lens);
        size_t n = 0, cap = 0;
        uint64_t *streams = malloc(N * sizeof *streams);
        rc = leash_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n, &cap);
        if (!rc && !(packed = malloc((size_t)N * n * sizeof *packed))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
        for (int k = 0; k < N && !rc; k++) {
            memcpy(packed + (size_t)k * n, ids, n * sizeof *ids);
            lens[k] = (int)n;
            streams[k] = (uint64_t)p * N + k;
        }
        if (!rc) rc = leash_generate(policy, &sc, packed, lens, N, streams, gen, lp, glen);
        for (int k = 0; k < N && !rc; k++) {
            seq_lp[p * N + k] = 0.0; // the EOS's log-prob included; 0 past the end
            for (int t = 0; t < M; t++) seq_lp[p * N + k] += lp[k * M + t];
            int L = glen[k] - (glen[k] && gen[k * M + glen[k] - 1] == sc.eos_id);
            char *raw = NULL, *valid;
            size_t len = 0, rcap = 0;
            if ((rc = leash_tokenizer_decode(tok, gen + k * M, L, &raw, &len, &rcap))) break;
            valid = leash_utf8_sanitize(raw ? raw : "", len);
            free(raw);
            char *t = valid ? malloc(strlen(prompt) + strlen(valid) + 1) : NULL;
            if (!t) rc = leash_fail(LEASH_ENOMEM, "out of memory");
            else strcat(strcpy(t, prompt), valid), texts[p * N + k] = t;
            free(valid);
        }
        free(ids), free(packed), free(lens), free(streams);
    }
    if (!rc) rc = leash_rm_score_texts(rm, rtok, (const char *const *)texts, R, 32, score);
    for (int i = 0; i < R && !rc; i++) {
        leash_world_gold g = leash_world_score(texts[i], strlen(texts[i]));
        gold[i] = g.reward, gram[i] = g.grammatical;
    }
    for (int j = 0; j < n_ns && !rc; j++) {
        leash_bon_result *o = &out[j];
        *o = (leash_bon_result){.n = ns[j], .prompts = P, .kl_bound = leash_bon_kl_formula(ns[j])};
        for (int p = 0; p < P; p++) {
            int best = p * N;
            for (int k = 1; k < ns[j]; k++) // ties keep the earlier sample
                if (score[p * N + k] > score[best]) best = p * N + k;
            o->proxy += score[best] / P, o->gold += gold[best] / P, o->grammatical += (double)gram[best] / P;
            double eps = fmin(exp(seq_lp[best]), 1.0);
            o->kl_beirami += leash_bon_kl_beirami(ns[j], eps) / P, o->eps_mean += eps / P;
        }
    }
    for (int i = 0; texts && i < R; i++) free(texts[i]);
    free(texts), free(pidx), free(gen), free(glen), free(lp), free(score), free(gold), free(seq_lp), free(gram);
    leash_gpt_free(policy), leash_gpt_free(rm);
    leash_tokenizer_free(tok), leash_tokenizer_free(rtok);
    leash_table_free(&pr);
    return rc;
}
