/* `leash sweep`: the reward-vs-KL frontier. PPO at several fixed betas and best-of-n sampling, on the same
 * axes (proxy and gold reward against sqrt(KL), as in Gao et al. 2022): a table, frontier.jsonl, and a PNG. */
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
#include "leash/rl.h"

static const char *usage =
    "usage: leash sweep --policy SFT_DIR --reward RM_DIR --prompts PROMPTS.jsonl --out DIR [options]\n"
    "\n"
    "Runs PPO once per beta (fixed, KL k1 in the reward) and best-of-n sampling from the SFT model, and puts\n"
    "both on the same axes: proxy reward and gold reward (the default world's) against sqrt(KL to the\n"
    "reference, nats per sequence; PPO: the exact KL measured over its last 5 steps; best-of-n: the bound\n"
    "log n - (n-1)/n). Writes DIR/frontier.jsonl, DIR/frontier.png (gnuplot), and each PPO run in DIR/ppo-beta-B.\n"
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
    printf("%-14s %10s %10s %10s %10s %12s\n", "method", "KL", "sqrt(KL)", "proxy", "gold", "grammatical");
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
        printf("%-14s %10.3f %10.3f %+10.3f %+10.3f %12.3f\n", name, kl, sqrt(kl), a.sum[0] / a.n, a.sum[1] / a.n, a.sum[2] / a.n);
        fprintf(fj, "{\"method\": \"ppo\", \"beta\": %g, \"kl\": %.6f, \"proxy\": %.6f, \"gold\": %.6f, \"grammatical\": %.4f}\n",
                betas[i], kl, a.sum[0] / a.n, a.sum[1] / a.n, a.sum[2] / a.n);
        fflush(stdout);
    }
    int ns[32];
    leash_bon_result res[32];
    for (int i = 0; i < nn; i++) ns[i] = (int)bon_d[i];
    if (!quiet) fprintf(stderr, "best-of-n on %d prompts\n", bon_prompts);
    if (leash_best_of_n(policy, reward, prompts, ns, nn, bon_prompts, max_new, 1.0f, (uint64_t)seed, res)) {
        fprintf(stderr, "leash sweep: best-of-n: %s\n", leash_errmsg());
        fclose(fj);
        return 1;
    }
    for (int i = 0; i < nn; i++) {
        char name[32];
        snprintf(name, sizeof name, "best-of-%d", res[i].n);
        printf("%-14s %10.3f %10.3f %+10.3f %+10.3f %12.3f\n", name, res[i].kl_bound, sqrt(res[i].kl_bound), res[i].proxy,
               res[i].gold, res[i].grammatical);
        fprintf(fj, "{\"method\": \"best-of-n\", \"n\": %d, \"kl\": %.6f, \"proxy\": %.6f, \"gold\": %.6f, \"grammatical\": %.4f}\n",
                res[i].n, res[i].kl_bound, res[i].proxy, res[i].gold, res[i].grammatical);
    }
    fclose(fj);
    // the plot: two panels, proxy and gold against sqrt(KL)
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
    // two gnuplot data blocks: PPO points, then best-of-n points (sqrt KL, proxy, gold)
    leash_table t = {0};
    static const char *const num[] = {"kl", "proxy", "gold"};
    if (leash_jsonl_load(path, NULL, 0, num, 3, 0, &t) == 0) {
        for (int i = 0; i < t.n; i++) {
            if (i == nb) fprintf(d, "\n\n");
            fprintf(d, "%.6f %.6f %.6f\n", sqrt(t.num[0][i]), t.num[1][i], t.num[2][i]);
        }
        leash_table_free(&t);
    }
    fclose(d);
    fprintf(g, "set terminal pngcairo size 1200,500 noenhanced\nset output '%s'\nset multiplot layout 1,2\nset grid\n"
               "set xlabel 'sqrt(KL to the reference), sqrt(nats per sequence)'\nset key bottom right\n"
               "set title 'proxy reward (reward model)'\nplot '%s' index 0 using 1:2 with linespoints lw 2 pt 7 title 'PPO "
               "(beta)', '' index 1 using 1:2 with linespoints lw 2 pt 5 title 'best-of-n'\n"
               "set title 'gold reward (the truth)'\nplot '%s' index 0 using 1:3 with linespoints lw 2 pt 7 title 'PPO "
               "(beta)', '' index 1 using 1:3 with linespoints lw 2 pt 5 title 'best-of-n'\nunset multiplot\n",
            png, dat, dat);
    fclose(g);
    char run[8600];
    snprintf(run, sizeof run, "gnuplot '%s' && test -s '%s'", gp, png);
    if (system(run) != 0) {
        fprintf(stderr, "leash sweep: gnuplot did not write %s\n", png);
        return 1;
    }
    fprintf(stderr, "leash sweep: wrote %s and %s\n", path, png);
    return 0;
}
