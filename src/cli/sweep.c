/* `leash sweep`: the reward-vs-KL frontier. PPO at several fixed betas and best-of-n sampling, on the same
 * axes (proxy and gold reward against sqrt(KL), as in Gao et al. 2022): a table, frontier.jsonl, Gao's two
 * functional forms fitted to the gold (leash/frontier.h: alpha, beta and the KL where the fitted gold peaks,
 * in frontier_fit.json) and a PNG with the fits drawn. Best-of-n's KL is given as the bound log n - (n-1)/n
 * and as Beirami et al. 2024's estimate (leash/bon.h). */
#define _DEFAULT_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/bon.h"
#include "leash/data.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/frontier.h"
#include "leash/rl.h"

static const char *usage =
    "usage: leash sweep --policy SFT_DIR --reward RM_DIR --prompts PROMPTS.jsonl --out DIR [options]\n"
    "\n"
    "Runs PPO once per beta (fixed, KL k1 in the reward) and best-of-n sampling from the SFT model, and puts\n"
    "both on the same axes: proxy reward and gold reward (the default world's) against sqrt(KL to the\n"
    "reference, nats per sequence; PPO: the exact KL measured over its last 5 steps; best-of-n: the bound\n"
    "log n - (n-1)/n, and Beirami et al. 2024's estimate from the kept responses' probabilities). Fits Gao et al.\n"
    "2022's forms to the gold gained over best-of-1 (the SFT policy, always sampled) against d = sqrt(KL):\n"
    "PPO d(alpha - beta log d), best-of-n d(alpha - beta d), and prints alpha, beta and the KL where each fitted\n"
    "gold peaks. Writes DIR/frontier.jsonl, DIR/frontier_fit.json, DIR/frontier.png (gnuplot, the fits drawn),\n"
    "and each PPO run in DIR/ppo-beta-B (leash report --html OUT.html DIR/ppo-beta-* shows the frontier too).\n"
    "\n"
    "  --beta LIST       (0,0.01,0.03,0.1,0.3,1)     --best-of LIST (1,2,4,8,16,32)\n"
    "  --steps N (60, at least 5)  --batch N (64)  --lr X (1e-4)  --max-new N (24)  --seed S (0)  --bon-prompts N (128)\n"
    "  -q, --quiet\n";

typedef struct {
    double sum[4]; // proxy, gold, grammatical, exact KL over the last 5 steps
    int n, steps, quiet;
} acc;

static int collect(const leash_rl_progress *p, void *vctx) {
    acc *a = vctx;
    if (p->step > p->steps - 5) {
        a->sum[0] += p->scores, a->sum[1] += p->gold_reward, a->sum[2] += p->grammatical, a->sum[3] += p->kl_exact;
        a->n++;
    }
    if (!a->quiet) cli_progress(p->step == p->steps, "  step %d/%d  score %+.3f  KL %.3f  gold %+.3f   ", p->step, p->steps, p->scores, p->kl_exact, p->gold_reward);
    return 0;
}

static int parse_list(const char *s, double *out, int max) {
    int n = 0;
    for (char *end; *s && n < max; s = *end ? end + 1 : end) {
        char piece[64]; // each number as strict as an option's (cli_plain_number)
        size_t k = strcspn(s, ",");
        end = (char *)s + k;
        if (k >= sizeof piece) return -1;
        memcpy(piece, s, k), piece[k] = '\0';
        if (cli_plain_number(piece, &out[n]) || !(out[n] >= 0)) return -1;
        n++;
    }
    return n;
}

/* The three fits of the gold gained over best-of-1 (gold0): PPO's points with the RL form, best-of-n's with
 * its form at the bound's KL (as Gao et al. plot it) and at Beirami's estimate. ok[k]: fit k succeeded. */
static const char *const FIT_NAMES[3] = {"ppo", "best_of_n", "best_of_n_beirami"};
static const char *const FIT_LABELS[3] = {"PPO, d(alpha - beta log d)", "best-of-n, d(alpha - beta d), KL bound",
                                          "best-of-n, same form, KL Beirami"};

static void fit_all(const double *ppo_kl, const double *ppo_gold, int nb, const leash_bon_result *res, int nn, double gold0,
                    leash_frontier_fit *fits, int *ok) {
    double d[33], g[33];
    printf("\nfrontier fits (Gao et al. 2022) of the gold gained over best-of-1 (%+.4f) against d = sqrt(KL):\n", gold0);
    for (int k = 0; k < 3; k++) {
        int n = k ? nn : nb;
        for (int i = 0; i < n; i++) {
            double kl = k == 0 ? ppo_kl[i] : k == 1 ? res[i].kl_bound : res[i].kl_beirami;
            d[i] = sqrt(fmax(kl, 0.0)), g[i] = (k ? res[i].gold : ppo_gold[i]) - gold0;
        }
        ok[k] = !leash_frontier_fit_points(k ? LEASH_FRONTIER_BON : LEASH_FRONTIER_RL, d, g, n, &fits[k]);
        if (!ok[k]) {
            printf("  %-40s no fit: %s\n", FIT_LABELS[k], leash_errmsg());
            continue;
        }
        const leash_frontier_fit *f = &fits[k];
        if (f->has_peak)
            printf("  %-40s alpha %+.4f  beta %+.4f  peak at KL %.3f (d %.3f), gold %+.4f  rmse %.4f\n", FIT_LABELS[k],
                   f->alpha, f->beta, f->kl_peak, f->d_peak, gold0 + f->gain_peak, f->rmse);
        else
            printf("  %-40s alpha %+.4f  beta %+.4f  no peak (beta <= 0: the gold still rises)  rmse %.4f\n", FIT_LABELS[k],
                   f->alpha, f->beta, f->rmse);
    }
    fflush(stdout);
}

/* DIR/frontier_fit.json: {"gold0": g, "ppo": {...} or null, "best_of_n": ..., "best_of_n_beirami": ...}. */
static int write_fits(const char *path, double gold0, const leash_frontier_fit *fits, const int *ok) {
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "{\"gold0\": %.9g", gold0);
    for (int k = 0; k < 3; k++) {
        const leash_frontier_fit *x = &fits[k];
        if (!ok[k]) {
            fprintf(f, ", \"%s\": null", FIT_NAMES[k]);
            continue;
        }
        fprintf(f, ", \"%s\": {\"form\": \"%s\", \"points\": %d, \"alpha\": %.9g, \"beta\": %.9g, \"rmse\": %.9g, \"has_peak\": %s",
                FIT_NAMES[k], leash_frontier_form_name(x->form), x->points, x->alpha, x->beta, x->rmse, x->has_peak ? "true" : "false");
        if (x->has_peak) fprintf(f, ", \"d_peak\": %.9g, \"kl_peak\": %.9g, \"gold_peak\": %.9g", x->d_peak, x->kl_peak, gold0 + x->gain_peak);
        fputc('}', f);
    }
    fputs("}\n", f);
    return fclose(f) != 0;
}

/* The fit as a gnuplot function of x = sqrt(KL), on the gold axis; "NaN" when it failed. */
static void gp_fit(FILE *g, const leash_frontier_fit *f, int ok, double gold0) {
    if (!ok) fputs("NaN", g);
    else if (f->form == LEASH_FRONTIER_RL) fprintf(g, "(%.9g + x*(%.9g - %.9g*log(x)))", gold0, f->alpha, f->beta);
    else fprintf(g, "(%.9g + x*(%.9g - %.9g*x))", gold0, f->alpha, f->beta);
}

/* DIR/frontier.png: proxy and gold against sqrt(KL); on the gold panel the fitted curves and their peaks. */
static int plot(const char *out, const double *ppo_kl, const double *ppo_proxy, const double *ppo_gold, int nb, const leash_bon_result *res, int nn,
                double gold0, const leash_frontier_fit *fits, const int *ok) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "leash sweep: gnuplot not installed, no PNG (apt-get install gnuplot-nox)\n");
        return 0;
    }
    char dat[4200], gp[4200], png[4200];
    snprintf(dat, sizeof dat, "%s/frontier.dat", out);
    snprintf(gp, sizeof gp, "%s/frontier.gp", out);
    snprintf(png, sizeof png, "%s/frontier.png", out);
    FILE *d = fopen(dat, "w"), *g = fopen(gp, "w");
    if (!d || !g) {
        if (d) fclose(d);
        if (g) fclose(g);
        fprintf(stderr, "leash sweep: cannot write the plot files in %s\n", out);
        return 1;
    }
    // three data blocks (sqrt KL, proxy, gold): PPO, best-of-n at the bound, best-of-n at Beirami's estimate
    double xmax = 0.1;
    for (int i = 0; i < nb; i++) {
        fprintf(d, "%.6f %.6f %.6f\n", sqrt(fmax(ppo_kl[i], 0)), ppo_proxy[i], ppo_gold[i]);
        xmax = fmax(xmax, sqrt(fmax(ppo_kl[i], 0)));
    }
    fputs("\n\n", d);
    for (int i = 0; i < nn; i++) {
        fprintf(d, "%.6f %.6f %.6f\n", sqrt(res[i].kl_bound), res[i].proxy, res[i].gold);
        xmax = fmax(xmax, sqrt(res[i].kl_bound));
    }
    fputs("\n\n", d);
    for (int i = 0; i < nn; i++) fprintf(d, "%.6f %.6f %.6f\n", sqrt(fmax(res[i].kl_beirami, 0)), res[i].proxy, res[i].gold);
    fclose(d);
    fprintf(g, "set terminal pngcairo size 1400,560 noenhanced\nset output '%s'\nset multiplot layout 1,2\nset grid\n"
               "set xlabel 'sqrt(KL to the reference), sqrt(nats per sequence)'\nset key bottom right font ',9'\nset xrange [0:%g]\n"
               "set title 'proxy reward (reward model)'\nplot '%s' index 0 using 1:2 with linespoints lw 2 pt 7 title 'PPO (beta)', "
               "'' index 1 using 1:2 with linespoints lw 2 pt 5 title 'best-of-n (KL bound)', '' index 2 using 1:2 with points pt 4 "
               "title 'best-of-n (KL Beirami)'\n", png, 1.15 * xmax, dat);
    fputs("set title 'gold reward (the truth), with Gao et al. fits'\nset samples 400\n", g);
    for (int k = 0; k < 2; k++)
        if (ok[k] && fits[k].has_peak && fits[k].d_peak < 1.15 * xmax)
            fprintf(g, "set arrow from %.6f, graph 0 to %.6f, graph 1 nohead dt 3 lc %d\n", fits[k].d_peak, fits[k].d_peak, k + 1);
    fprintf(g, "plot '%s' index 0 using 1:3 with points pt 7 ps 1.3 lc 1 title 'PPO (beta)', '' index 1 using 1:3 with points "
               "pt 5 ps 1.3 lc 2 title 'best-of-n (KL bound)', '' index 2 using 1:3 with points pt 4 lc 2 title 'best-of-n "
               "(KL Beirami)'", dat);
    for (int k = 0; k < 2; k++) {
        fputs(", x <= 0 ? NaN : ", g);
        gp_fit(g, &fits[k], ok[k], gold0);
        if (ok[k] && fits[k].has_peak)
            fprintf(g, " with lines lw 2 lc %d title 'fit %s: alpha %.3g, beta %.3g, peak KL %.3g'", k + 1, k ? "best-of-n" : "PPO",
                    fits[k].alpha, fits[k].beta, fits[k].kl_peak);
        else if (ok[k])
            fprintf(g, " with lines lw 2 lc %d title 'fit %s: alpha %.3g, beta %.3g, no peak'", k + 1, k ? "best-of-n" : "PPO",
                    fits[k].alpha, fits[k].beta);
        else fprintf(g, " notitle");
    }
    fputs("\nunset multiplot\n", g);
    fclose(g);
    char run[8600];
    snprintf(run, sizeof run, "gnuplot '%s' && test -s '%s'", gp, png);
    if (system(run) != 0) {
        fprintf(stderr, "leash sweep: gnuplot did not write %s\n", png);
        return 1;
    }
    fprintf(stderr, "leash sweep: wrote %s/frontier.jsonl, %s/frontier_fit.json and %s\n", out, out, png);
    return 0;
}

int cli_sweep(int argc, char **argv) {
    const char *policy = NULL, *reward = NULL, *prompts = NULL, *out = NULL, *cmd = "sweep";
    double betas[32] = {0, 0.01, 0.03, 0.1, 0.3, 1}, bon_d[32] = {1, 2, 4, 8, 16, 32};
    int nb = 6, nn = 6, steps = 60, batch = 64, max_new = 24, seed = 0, bon_prompts = 128, quiet = 0, bad = 0, ch;
    float lr = 1e-4f;
    enum { O_POLICY = 256, O_REWARD, O_PROMPTS, O_OUT, O_BETA, O_BON, O_STEPS, O_BATCH, O_LR, O_MAXNEW, O_SEED, O_BONP };
    static const struct option opts[] = {
        {"policy", 1, 0, O_POLICY}, {"reward", 1, 0, O_REWARD}, {"prompts", 1, 0, O_PROMPTS}, {"out", 1, 0, O_OUT},
        {"beta", 1, 0, O_BETA}, {"best-of", 1, 0, O_BON}, {"steps", 1, 0, O_STEPS}, {"batch", 1, 0, O_BATCH},
        {"lr", 1, 0, O_LR}, {"max-new", 1, 0, O_MAXNEW}, {"seed", 1, 0, O_SEED}, {"bon-prompts", 1, 0, O_BONP},
        {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (ch) {
        case O_POLICY: policy = optarg; break;
        case O_REWARD: reward = optarg; break;
        case O_PROMPTS: prompts = optarg; break;
        case O_OUT: out = optarg; break;
        case O_BETA:
            if ((nb = parse_list(optarg, betas, 32)) < 1) fprintf(stderr, "leash sweep: --beta '%s' must be a comma list of numbers >= 0\n", optarg), bad = 1;
            break;
        case O_BON:
            if ((nn = parse_list(optarg, bon_d, 32)) < 1) fprintf(stderr, "leash sweep: --best-of '%s' must be a comma list of n >= 1\n", optarg), bad = 1;
            for (int i = 0; !bad && i < nn; i++)
                if (bon_d[i] < 1 || bon_d[i] != floor(bon_d[i])) fprintf(stderr, "leash sweep: best-of n = %g is not a whole number >= 1\n", bon_d[i]), bad = 1;
            break;
        case O_STEPS: bad = cli_int(cmd, "--steps", optarg, 5, 1 << 30, &steps); break;
        case O_BATCH: bad = cli_int(cmd, "--batch", optarg, 1, 1 << 16, &batch); break;
        case O_LR: bad = cli_float(cmd, "--lr", optarg, 1e-12, 1, &lr); break;
        case O_MAXNEW: bad = cli_int(cmd, "--max-new", optarg, 1, 1 << 20, &max_new); break;
        case O_SEED: bad = cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed); break;
        case O_BONP: bad = cli_int(cmd, "--bon-prompts", optarg, 1, 1 << 20, &bon_prompts); break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (bad) return 2;
    if (!policy || !reward || !prompts || !out || optind < argc) {
        fprintf(stderr, "leash sweep: need --policy, --reward, --prompts and --out\n%s", usage);
        return 2;
    }
    if (leash_mkdir(out)) {
        fprintf(stderr, "leash sweep: %s\n", leash_errmsg());
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/frontier.jsonl", out);
    FILE *fj = fopen(path, "w");
    if (!fj) {
        fprintf(stderr, "leash sweep: cannot write %s\n", path);
        return 1;
    }
    printf("%-14s %10s %10s %10s %10s %12s %12s\n", "method", "KL", "sqrt(KL)", "proxy", "gold", "grammatical", "KL Beirami");
    double ppo_kl[32], ppo_proxy[32], ppo_gold[32];
    for (int i = 0; i < nb; i++) {
        leash_rl_config c = leash_rl_defaults(LEASH_PPO);
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/ppo-beta-%g", out, betas[i]);
        c.policy_dir = policy, c.reward.kind = LEASH_REWARD_MODEL, c.reward.dir = reward, c.prompts = prompts, c.out_dir = dir, c.gold_metrics = 1;
        c.steps = steps, c.batch = batch, c.max_new = max_new, c.seed = (uint64_t)seed, c.optim.lr = lr, c.sample_every = 0;
        leash_beta_fixed(&c.beta, betas[i]);
        acc a = {.steps = steps, .quiet = quiet};
        if (!quiet) fprintf(stderr, "PPO, beta %g\n", betas[i]);
        if (leash_rl_train(&c, collect, &a, NULL)) {
            cli_progress_end();
            fprintf(stderr, "leash sweep: beta %g: %s\n", betas[i], leash_errmsg());
            fclose(fj);
            return 1;
        }
        if (!quiet) cli_progress_end();
        double kl = a.sum[3] / a.n;
        char name[32];
        snprintf(name, sizeof name, "ppo beta=%g", betas[i]);
        printf("%-14s %10.3f %10.3f %+10.3f %+10.3f %12.3f %12s\n", name, kl, sqrt(fmax(kl, 0)), a.sum[0] / a.n, a.sum[1] / a.n, a.sum[2] / a.n, "-");
        ppo_kl[i] = kl, ppo_proxy[i] = a.sum[0] / a.n, ppo_gold[i] = a.sum[1] / a.n;
        fprintf(fj, "{\"method\": \"ppo\", \"beta\": %g, \"kl\": %.6f, \"proxy\": %.6f, \"gold\": %.6f, \"grammatical\": %.4f}\n",
                betas[i], kl, a.sum[0] / a.n, a.sum[1] / a.n, a.sum[2] / a.n);
        fflush(stdout);
    }
    // best-of-1 (the SFT policy itself, KL 0) is always sampled: the fits measure the gold gained over it
    int ns[33], nn_all = 0, has_one = 0;
    leash_bon_result res[33];
    for (int i = 0; i < nn; i++) has_one |= bon_d[i] == 1;
    if (!has_one) ns[nn_all++] = 1;
    for (int i = 0; i < nn; i++) ns[nn_all++] = (int)bon_d[i];
    if (!quiet) fprintf(stderr, "best-of-n on %d prompts\n", bon_prompts);
    if (leash_best_of_n(policy, reward, prompts, ns, nn_all, bon_prompts, max_new, 1.0f, (uint64_t)seed, res)) {
        fprintf(stderr, "leash sweep: best-of-n: %s\n", leash_errmsg());
        fclose(fj);
        return 1;
    }
    double gold0 = NAN;
    for (int i = 0; i < nn_all; i++) {
        char name[32];
        snprintf(name, sizeof name, "best-of-%d", res[i].n);
        if (res[i].n == 1) gold0 = res[i].gold;
        printf("%-14s %10.3f %10.3f %+10.3f %+10.3f %12.3f %12.3f\n", name, res[i].kl_bound, sqrt(res[i].kl_bound), res[i].proxy,
               res[i].gold, res[i].grammatical, res[i].kl_beirami);
        fprintf(fj, "{\"method\": \"best-of-n\", \"n\": %d, \"kl\": %.6f, \"proxy\": %.6f, \"gold\": %.6f, \"grammatical\": %.4f, "
                    "\"kl_bound\": %.6f, \"kl_beirami\": %.6f, \"eps_mean\": %.6g}\n",
                res[i].n, res[i].kl_bound, res[i].proxy, res[i].gold, res[i].grammatical, res[i].kl_bound, res[i].kl_beirami,
                res[i].eps_mean);
    }
    fclose(fj);
    leash_frontier_fit fits[3];
    int ok[3];
    fit_all(ppo_kl, ppo_gold, nb, res, nn_all, gold0, fits, ok);
    snprintf(path, sizeof path, "%s/frontier_fit.json", out);
    if (write_fits(path, gold0, fits, ok)) {
        fprintf(stderr, "leash sweep: cannot write %s\n", path);
        return 1;
    }
    return plot(out, ppo_kl, ppo_proxy, ppo_gold, nb, res, nn_all, gold0, fits, ok);
}
