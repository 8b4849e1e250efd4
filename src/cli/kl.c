/* `leash kl`: the KL math from a shell. Reads two logit rows, two lists of sampled-token log-probs, or
 * an enumerable outcome set, and prints the exact KL, the k1/k2/k3/abs estimators, or the closed-form
 * optimum of E[r] - beta KL. Thin: parsing and printing only, the math is in src/kl.c, src/optimum.c. */
#include <cjson/cJSON.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/kl.h"
#include "leash/optimum.h"

static const char *usage =
    "usage: leash kl [--sampled | --optimum] [-t T] [--beta B] [--json] [FILE]\n"
    "\n"
    "Exact KL and sampled estimators between a policy pi and a reference pi_ref. FILE is plain text or\n"
    "JSON; '-' or no FILE reads stdin.\n"
    "\n"
    "modes:\n"
    "  (default)    two rows of logits (or log-probs) over the same vocabulary, policy first. Prints\n"
    "               exact KL(pi||pi_ref) and KL(pi_ref||pi) in nats per token, the entropies, and each\n"
    "               estimator's mean and standard deviation over x ~ pi (by exact enumeration).\n"
    "               text: two lines of numbers; JSON: {\"logits\": [...], \"ref_logits\": [...],\n"
    "               \"temperature\": T} or [[...], [...]].\n"
    "  --sampled    two lists of per-token log-probs of one sampled response, log pi(x_t) then\n"
    "               log pi_ref(x_t). Prints k1, k2, k3, abs summed over the response (nats per sequence)\n"
    "               and averaged (nats per token). JSON: {\"logp\": [...], \"ref_logp\": [...]}.\n"
    "  --optimum    JSON {\"ref_probs\" or \"ref_logp\": [...], \"reward\": [...], \"beta\": B,\n"
    "               \"best_of_n\": [n, ...]} over enumerable outcomes. Prints pi* = pi_ref exp(r/beta)/Z,\n"
    "               log Z, the optimal E[r] - beta KL (= beta log Z), and the exact best-of-n KL next\n"
    "               to the formula log n - (n-1)/n.\n"
    "\n"
    "options:\n"
    "  -t, --temperature T  score both rows at temperature T (default 1, or the file's \"temperature\");\n"
    "                       use the temperature the rollout sampled with\n"
    "  --beta B             KL coefficient for --optimum (overrides the file's \"beta\")\n"
    "  --json               print one JSON object instead of a table\n"
    "  -h, --help           this text\n";

enum { MODE_ROWS, MODE_SAMPLED, MODE_OPTIMUM };

typedef struct {
    int mode, json;
    double temperature, beta; // NAN = not given on the command line
    const char *path;
} kl_args;

/* Two lists from a text or JSON file; `keys` name them in JSON. JSON values of `extra_key` go to
 * *extra (left untouched when absent). Returns 0 or -1 (after printing the error). */
static int read_two_lists(const char *path, const char *text, const char *keys[2], const char *extra_key,
                          double *extra, cli_numbers lists[2]) {
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p != '{' && *p != '[') {
        int n = cli_parse_text_lists(path, text, lists, 2);
        if (n < 0) return -1;
        if (n != 2) {
            fprintf(stderr, "leash kl: %s: found %d list(s) of numbers; expected 2 lines: %s, then %s\n", path, n,
                    keys[0], keys[1]);
            return -1;
        }
        return 0;
    }
    const char *err_at = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &err_at, 1);
    if (!root) {
        fprintf(stderr, "leash kl: %s: malformed JSON at byte %ld\n", path, err_at ? (long)(err_at - text) : -1L);
        return -1;
    }
    int rc = 0;
    if (cJSON_IsArray(root)) {
        if (cJSON_GetArraySize(root) != 2) {
            fprintf(stderr, "leash kl: %s: a JSON array must hold exactly 2 lists (%s, %s), found %d\n", path, keys[0],
                    keys[1], cJSON_GetArraySize(root));
            rc = -1;
        }
        for (int i = 0; i < 2 && !rc; i++) rc = cli_json_numbers(path, keys[i], cJSON_GetArrayItem(root, i), &lists[i]);
    } else {
        for (int i = 0; i < 2 && !rc; i++) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
            if (!a) {
                fprintf(stderr, "leash kl: %s: missing key \"%s\"\n", path, keys[i]);
                rc = -1;
            } else {
                rc = cli_json_numbers(path, keys[i], a, &lists[i]);
            }
        }
        const cJSON *x = extra_key ? cJSON_GetObjectItemCaseSensitive(root, extra_key) : NULL;
        if (!rc && x) {
            if (!cJSON_IsNumber(x)) {
                fprintf(stderr, "leash kl: %s: \"%s\" must be a number\n", path, extra_key);
                rc = -1;
            } else {
                *extra = x->valuedouble;
            }
        }
    }
    cJSON_Delete(root);
    return rc;
}

/* doubles -> floats, refusing values float32 cannot hold (a NaN or Inf passes through to the library,
 * which names it). */
static float *to_floats(const char *path, const char *what, const cli_numbers *l) {
    float *f = malloc((size_t)(l->n ? l->n : 1) * sizeof *f);
    if (!f) {
        fprintf(stderr, "leash kl: out of memory\n");
        return NULL;
    }
    for (int i = 0; i < l->n; i++) {
        if (isfinite(l->v[i]) && fabs(l->v[i]) > FLT_MAX) {
            fprintf(stderr, "leash kl: %s: %s[%d] = %g does not fit float32 (|x| <= %g)\n", path, what, i, l->v[i],
                    (double)FLT_MAX);
            free(f);
            return NULL;
        }
        f[i] = (float)l->v[i];
    }
    return f;
}

static void print_json(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    puts(s);
    free(s);
}

static int lib_error(const char *path) {
    fprintf(stderr, "leash kl: %s: %s\n", path, leash_errmsg());
    return 1;
}

static const leash_kl_estimator estimators[] = {LEASH_KL_K1, LEASH_KL_K2, LEASH_KL_K3, LEASH_KL_ABS};
#define N_EST 4 // k3+ has the value of k3 (it differs in its gradient only)

static int run_rows(const kl_args *a, const char *text) {
    const char *keys[2] = {"logits", "ref_logits"};
    cli_numbers l[2] = {{0}};
    double temperature = 1.0;
    int status = 1;
    float *z = NULL, *zr = NULL, *lp = NULL, *lq = NULL;
    if (read_two_lists(a->path, text, keys, "temperature", &temperature, l)) goto done;
    if (!isnan(a->temperature)) temperature = a->temperature;
    if (l[0].n != l[1].n) {
        fprintf(stderr, "leash kl: %s: the policy row has %d logits and the reference row %d; both must cover the "
                        "same vocabulary\n",
                a->path, l[0].n, l[1].n);
        goto done;
    }
    int V = l[0].n;
    if (!(z = to_floats(a->path, keys[0], &l[0])) || !(zr = to_floats(a->path, keys[1], &l[1]))) goto done;
    lp = malloc((size_t)(V ? V : 1) * sizeof *lp);
    lq = malloc((size_t)(V ? V : 1) * sizeof *lq);
    double kl, rkl, h, hr;
    if (!lp || !lq) {
        fprintf(stderr, "leash kl: out of memory\n");
        goto done;
    }
    if (leash_kl_exact(z, zr, V, (float)temperature, &kl, NULL) || leash_kl_exact(zr, z, V, (float)temperature, &rkl, NULL) ||
        leash_entropy(z, V, (float)temperature, &h) || leash_entropy(zr, V, (float)temperature, &hr) ||
        leash_log_softmax(z, V, (float)temperature, lp, NULL) || leash_log_softmax(zr, V, (float)temperature, lq, NULL)) {
        status = lib_error(a->path);
        goto done;
    }
    // each estimator's exact mean and standard deviation over x ~ pi
    double mean[N_EST], sd[N_EST];
    for (int e = 0; e < N_EST; e++) {
        double m = 0.0, m2 = 0.0;
        for (int v = 0; v < V; v++) {
            double k = leash_kl_estimate(estimators[e], lp[v], lq[v]), p = exp((double)lp[v]);
            m += p * k;
            m2 += p * k * k;
        }
        mean[e] = m;
        sd[e] = sqrt(fmax(m2 - m * m, 0.0));
    }
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "vocab_size", V);
        cJSON_AddNumberToObject(o, "temperature", temperature);
        cJSON_AddNumberToObject(o, "kl", kl);
        cJSON_AddNumberToObject(o, "kl_reverse", rkl);
        cJSON_AddNumberToObject(o, "entropy", h);
        cJSON_AddNumberToObject(o, "ref_entropy", hr);
        cJSON_AddStringToObject(o, "units", "nats per token");
        cJSON *est = cJSON_AddObjectToObject(o, "estimators");
        for (int e = 0; e < N_EST; e++) {
            cJSON *x = cJSON_AddObjectToObject(est, leash_kl_estimator_name(estimators[e]));
            cJSON_AddNumberToObject(x, "mean", mean[e]);
            cJSON_AddNumberToObject(x, "std", sd[e]);
            cJSON_AddNumberToObject(x, "bias", mean[e] - kl);
        }
        print_json(o);
        cJSON_Delete(o);
    } else {
        printf("vocabulary V = %d, temperature T = %g (both rows scored at T)\n", V, temperature);
        printf("  KL(pi || pi_ref)  %12.6f nats/token  exact, full vocabulary: the leash\n", kl);
        printf("  KL(pi_ref || pi)  %12.6f nats/token  reverse, for comparison\n", rkl);
        printf("  H(pi)             %12.6f nats        H(pi_ref) %.6f\n", h, hr);
        printf("one-sample estimators over x ~ pi (exact mean and std by enumeration):\n");
        printf("  %-4s %12s %12s %12s\n", "", "mean", "std", "bias");
        for (int e = 0; e < N_EST; e++)
            printf("  %-4s %12.6f %12.6f %12.6f\n", leash_kl_estimator_name(estimators[e]), mean[e], sd[e],
                   mean[e] - kl);
    }
    status = 0;
done:
    free(z), free(zr), free(lp), free(lq);
    cli_numbers_free(&l[0]);
    cli_numbers_free(&l[1]);
    return status;
}

static int run_sampled(const kl_args *a, const char *text) {
    const char *keys[2] = {"logp", "ref_logp"};
    cli_numbers l[2] = {{0}};
    int status = 1;
    float *lp = NULL, *lq = NULL, *k = NULL;
    if (read_two_lists(a->path, text, keys, NULL, NULL, l)) goto done;
    if (l[0].n != l[1].n || l[0].n == 0) {
        fprintf(stderr, "leash kl: %s: %d policy log-probs and %d reference log-probs; need the same number (>= 1), "
                        "one per response token\n",
                a->path, l[0].n, l[1].n);
        goto done;
    }
    int n = l[0].n;
    if (!(lp = to_floats(a->path, keys[0], &l[0])) || !(lq = to_floats(a->path, keys[1], &l[1]))) goto done;
    for (int i = 0; i < n; i++) {
        if (lp[i] > 0.0f || lq[i] > 0.0f) {
            fprintf(stderr, "leash kl: %s: token %d: log-prob %g > 0; log-probs of sampled tokens are <= 0 (did you "
                            "pass logits? use leash kl without --sampled for logit rows)\n",
                    a->path, i, (double)(lp[i] > 0.0f ? lp[i] : lq[i]));
            goto done;
        }
    }
    if (!(k = malloc((size_t)n * sizeof *k))) goto done;
    double sum[N_EST], mean[N_EST];
    for (int e = 0; e < N_EST; e++) {
        if (leash_kl_tokens(estimators[e], lp, lq, NULL, n, k, NULL) ||
            leash_masked_reduce(k, NULL, 1, n, LEASH_AGG_SEQ_SUM, &sum[e], NULL) ||
            leash_masked_reduce(k, NULL, 1, n, LEASH_AGG_TOKEN_MEAN, &mean[e], NULL)) {
            status = lib_error(a->path);
            goto done;
        }
    }
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "tokens", n);
        cJSON *est = cJSON_AddObjectToObject(o, "estimators");
        for (int e = 0; e < N_EST; e++) {
            cJSON *x = cJSON_AddObjectToObject(est, leash_kl_estimator_name(estimators[e]));
            cJSON_AddNumberToObject(x, "per_sequence", sum[e]);
            cJSON_AddNumberToObject(x, "per_token", mean[e]);
        }
        print_json(o);
        cJSON_Delete(o);
    } else {
        printf("one response of %d tokens; log r = log pi_ref(x_t) - log pi(x_t)\n", n);
        printf("  %-4s %16s %16s\n", "", "nats/sequence", "nats/token");
        for (int e = 0; e < N_EST; e++)
            printf("  %-4s %16.6f %16.6f\n", leash_kl_estimator_name(estimators[e]), sum[e], mean[e]);
        printf("the exact KL needs the full logit rows (leash kl without --sampled).\n");
        if (sum[0] < 0.0)
            printf("note: k1 is negative here. One sample can be; a running mean that stays negative usually "
                   "means sampling and scoring used different settings (temperature, top-k, top-p).\n");
    }
    status = 0;
done:
    free(lp), free(lq), free(k);
    cli_numbers_free(&l[0]);
    cli_numbers_free(&l[1]);
    return status;
}

static int run_optimum(const kl_args *a, const char *text) {
    const char *err_at = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &err_at, 1), *out = NULL;
    if (!root || !cJSON_IsObject(root)) {
        fprintf(stderr, "leash kl: %s: --optimum expects a JSON object (malformed at byte %ld)\n", a->path,
                err_at ? (long)(err_at - text) : 0L);
        cJSON_Delete(root);
        return 1;
    }
    cli_numbers ref = {0}, r = {0}, ns = {0};
    double *prob = NULL, *lpstar = NULL, *pbon = NULL;
    int status = 1;
    const cJSON *probs = cJSON_GetObjectItemCaseSensitive(root, "ref_probs");
    const cJSON *logp = cJSON_GetObjectItemCaseSensitive(root, "ref_logp");
    const cJSON *rew = cJSON_GetObjectItemCaseSensitive(root, "reward");
    const cJSON *jb = cJSON_GetObjectItemCaseSensitive(root, "beta");
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(root, "best_of_n");
    double beta = !isnan(a->beta) ? a->beta : cJSON_IsNumber(jb) ? jb->valuedouble : NAN;
    if (!probs == !logp) {
        fprintf(stderr, "leash kl: %s: give exactly one of \"ref_probs\" and \"ref_logp\"\n", a->path);
        goto done;
    }
    if (!rew) {
        fprintf(stderr, "leash kl: %s: missing key \"reward\"\n", a->path);
        goto done;
    }
    if (isnan(beta)) {
        fprintf(stderr, "leash kl: %s: no beta: add \"beta\": B to the file or pass --beta B\n", a->path);
        goto done;
    }
    if (cli_json_numbers(a->path, probs ? "ref_probs" : "ref_logp", probs ? probs : logp, &ref) ||
        cli_json_numbers(a->path, "reward", rew, &r) || (jn && cli_json_numbers(a->path, "best_of_n", jn, &ns)))
        goto done;
    if (ref.n != r.n) {
        fprintf(stderr, "leash kl: %s: %d reference entries and %d rewards; need one reward per outcome\n", a->path,
                ref.n, r.n);
        goto done;
    }
    int M = r.n;
    size_t bytes = (size_t)(M ? M : 1) * sizeof(double);
    if (!(prob = malloc(bytes)) || !(lpstar = malloc(bytes)) || !(pbon = malloc(bytes))) {
        fprintf(stderr, "leash kl: out of memory\n");
        goto done;
    }
    for (int i = 0; i < M; i++) {
        if (probs && !(ref.v[i] >= 0.0)) {
            fprintf(stderr, "leash kl: %s: ref_probs[%d] = %g; probabilities must be >= 0\n", a->path, i, ref.v[i]);
            goto done;
        }
        prob[i] = probs ? ref.v[i] : exp(ref.v[i]);
        if (probs) ref.v[i] = log(ref.v[i]); // ref.v holds log pi_ref from here on
    }
    double log_z, value, er, kl;
    if (leash_optimum(ref.v, r.v, M, beta, lpstar, &log_z) ||
        leash_kl_objective(lpstar, ref.v, r.v, M, beta, &value, &er, &kl)) {
        status = lib_error(a->path);
        goto done;
    }
    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "beta", beta);
    cJSON_AddNumberToObject(out, "log_z", log_z);
    cJSON_AddNumberToObject(out, "optimal_value", beta * log_z);
    cJSON_AddNumberToObject(out, "objective_at_pi_star", value);
    cJSON_AddNumberToObject(out, "expected_reward", er);
    cJSON_AddNumberToObject(out, "kl", kl);
    cJSON *ps = cJSON_AddArrayToObject(out, "pi_star");
    for (int i = 0; i < M; i++) cJSON_AddItemToArray(ps, cJSON_CreateNumber(exp(lpstar[i])));
    cJSON *bon = cJSON_AddArrayToObject(out, "best_of_n");
    for (int j = 0; j < ns.n; j++) {
        long n = (long)ns.v[j];
        double bkl, ber = 0.0;
        if (!((double)n == ns.v[j] && n >= 1)) {
            fprintf(stderr, "leash kl: %s: best_of_n[%d] = %g; n must be a whole number >= 1\n", a->path, j, ns.v[j]);
            goto done;
        }
        if (leash_bon(prob, r.v, M, n, pbon, &bkl)) {
            status = lib_error(a->path);
            goto done;
        }
        for (int i = 0; i < M; i++) ber += pbon[i] * r.v[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "n", (double)n);
        cJSON_AddNumberToObject(x, "kl", bkl);
        cJSON_AddNumberToObject(x, "kl_formula", leash_bon_kl_formula(n));
        cJSON_AddNumberToObject(x, "expected_reward", ber);
        cJSON_AddItemToArray(bon, x);
    }
    if (a->json) {
        print_json(out);
    } else {
        printf("%d outcomes, beta = %g\n", M, beta);
        printf("  pi*(y) = pi_ref(y) exp(r(y)/beta) / Z,  log Z = %.6f\n", log_z);
        printf("  optimal E[r] - beta KL = beta log Z = %.6f  (at pi*: E[r] = %.6f, KL(pi*||pi_ref) = %.6f nats)\n",
               beta * log_z, er, kl);
        printf("  %4s %10s %10s %10s\n", "y", "pi_ref", "reward", "pi*");
        for (int i = 0; i < M; i++) printf("  %4d %10.6f %10.4f %10.6f\n", i, prob[i], r.v[i], exp(lpstar[i]));
        if (ns.n) {
            printf("best-of-n from pi_ref (ties broken uniformly):\n");
            printf("  %6s %12s %14s %12s\n", "n", "KL exact", "log n-(n-1)/n", "E[r]");
            const cJSON *x;
            cJSON_ArrayForEach(x, bon) {
                printf("  %6.0f %12.6f %14.6f %12.6f\n", cJSON_GetObjectItem(x, "n")->valuedouble,
                       cJSON_GetObjectItem(x, "kl")->valuedouble, cJSON_GetObjectItem(x, "kl_formula")->valuedouble,
                       cJSON_GetObjectItem(x, "expected_reward")->valuedouble);
            }
        }
    }
    status = 0;
done:
    free(prob), free(lpstar), free(pbon);
    cli_numbers_free(&ref);
    cli_numbers_free(&r);
    cli_numbers_free(&ns);
    cJSON_Delete(out);
    cJSON_Delete(root);
    return status;
}

int cli_kl(int argc, char **argv) {
    kl_args a = {.mode = MODE_ROWS, .temperature = NAN, .beta = NAN, .path = "-"};
    static const struct option opts[] = {{"sampled", no_argument, 0, 's'}, {"optimum", no_argument, 0, 'o'},
                                         {"temperature", required_argument, 0, 't'}, {"beta", required_argument, 0, 'b'},
                                         {"json", no_argument, 0, 'j'},  {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': a.mode = MODE_SAMPLED; break;
        case 'o': a.mode = MODE_OPTIMUM; break;
        case 'j': a.json = 1; break;
        case 't':
        case 'b':
            // finite and >= 0 here; a 0 (which divides by it) is refused by the math with its reason
            if (cli_double("kl", c == 't' ? "--temperature" : "--beta", optarg, 0, 1e6,
                           c == 't' ? &a.temperature : &a.beta))
                return 2;
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) a.path = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "leash kl: one input file expected, got '%s' too\n%s", argv[optind], usage);
        return 2;
    }
    char *text = cli_read_file(a.path, NULL);
    if (!text) return 1;
    int rc = a.mode == MODE_ROWS ? run_rows(&a, text) : a.mode == MODE_SAMPLED ? run_sampled(&a, text) : run_optimum(&a, text);
    free(text);
    return rc;
}
