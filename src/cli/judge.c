/* `leash judge train | label`: the default world's AI judge, and RLAIF preference labelling. */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/judge.h"

static const char *usage =
    "usage: leash judge train --data JUDGE.jsonl --tokenizer DIR --out DIR [options]\n"
    "       leash judge label --policy DIR --prompts PROMPTS.jsonl (--judge DIR | --judge-cmd CMD) --out PREFS.jsonl\n"
    "                         [--overwrite]\n"
    "\n"
    "train: a sentiment judge, a small transformer with a scalar head trained by regression on labelled\n"
    "  texts {\"text\", \"sentiment\"} (the default world's judge.jsonl). Options as `leash rm train` (but\n"
    "  --epochs 3, --lr 1e-3, --warmup 50 by default), plus the\n"
    "  new model's shape: --n-layer (2) --n-embd (128) --n-head (4) --n-positions (128).\n"
    "label: samples two responses per prompt from the policy and writes {\"prompt\", \"chosen\", \"rejected\",\n"
    "  \"margin\"} lines as the judge decides. A judge model prefers the higher score. An external judge\n"
    "  command gets {\"id\", \"prompt\", \"a\", \"b\"} lines on stdin and answers {\"id\", \"preferred\": \"a\"|\"b\",\n"
    "  \"margin\"} lines on stdout, in order (docs/world.md). PREFS.jsonl is written whole at the end; an existing\n"
    "  one needs --overwrite and stays untouched if the labelling fails or is stopped (SIGINT, SIGTERM); a new\n"
    "  one keeps the pairs labelled before a failure.\n"
    "  --max-new N (48)  -t, --temperature T (1)  --seed S (0)  --batch N (32 prompts)  --max-prompts N (all)\n"
    "  --judge-timeout SECONDS (30 per answer)  -q, --quiet\n";

static int label_progress(const leash_label_progress *p, void *ctx) {
    if (!*(int *)ctx)
        cli_progress(p->prompts_done == p->prompts, "labelled %d/%d prompts: %d pairs, %d skipped (judge could not separate)   ",
                     p->prompts_done, p->prompts, p->written, p->skipped);
    return 0;
}

/* A file with something in it (an empty one has nothing to lose). */
static int has_content(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_size > 0);
}

static int label(int argc, char **argv) {
    leash_label_config c = leash_label_defaults();
    int bad = 0, ch, seed = 0, quiet = 0, overwrite = 0;
    float timeout = 30.0f;
    const char *cmd = "judge label";
    enum { O_POLICY = 256, O_PROMPTS, O_JUDGE, O_CMD, O_OUT, O_MAX, O_SEED, O_BATCH, O_MAXP, O_TIMEOUT, O_OVERWRITE };
    static const struct option opts[] = {
        {"policy", 1, 0, O_POLICY}, {"prompts", 1, 0, O_PROMPTS}, {"judge", 1, 0, O_JUDGE}, {"judge-cmd", 1, 0, O_CMD},
        {"out", 1, 0, O_OUT}, {"max-new", 1, 0, O_MAX}, {"temperature", 1, 0, 't'}, {"seed", 1, 0, O_SEED},
        {"batch", 1, 0, O_BATCH}, {"max-prompts", 1, 0, O_MAXP}, {"judge-timeout", 1, 0, O_TIMEOUT}, {"overwrite", 0, 0, O_OVERWRITE},
        {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    optind = 2;
    while (!bad && (ch = getopt_long(argc, argv, "t:qh", opts, NULL)) != -1) {
        switch (ch) {
        case O_POLICY: c.policy_dir = optarg; break;
        case O_PROMPTS: c.prompts_path = optarg; break;
        case O_JUDGE: c.judge_dir = optarg; break;
        case O_CMD: c.judge_cmd = optarg; break;
        case O_OUT: c.out_path = optarg; break;
        case O_MAX: bad = cli_int(cmd, "--max-new", optarg, 1, 1 << 20, &c.sample.max_new_tokens); break;
        case 't': bad = cli_float(cmd, "--temperature", optarg, 1e-6, 1e6, &c.sample.temperature); break;
        case O_SEED: bad = cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed); break;
        case O_BATCH: bad = cli_int(cmd, "--batch", optarg, 1, 4096, &c.batch); break;
        case O_MAXP: bad = cli_int(cmd, "--max-prompts", optarg, 0, 1 << 30, &c.max_prompts); break;
        case O_TIMEOUT: bad = cli_float(cmd, "--judge-timeout", optarg, 1e-3, 1e6, &timeout); break;
        case O_OVERWRITE: overwrite = 1; break;
        case 'q': quiet = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (bad) return 2;
    int existed = c.out_path && has_content(c.out_path);
    if (existed && !overwrite) {
        fprintf(stderr, "leash judge label: %s exists: --overwrite replaces it (it stays untouched until the new "
                        "labelling is complete), or choose another --out\n",
                c.out_path);
        return 2;
    }
    cli_stop_on_signals(); // the labelling (and a wait for the judge command) stops; the old output stays
    c.sample.seed = (uint64_t)seed;
    c.timeout_s = timeout;
    leash_label_progress fin;
    int rc = leash_judge_label(&c, label_progress, &quiet, &fin);
    if (!quiet) cli_progress_end();
    if (rc) {
        fprintf(stderr, "leash judge label: %s\n", leash_errmsg());
        if (c.out_path && existed) fprintf(stderr, "leash judge label: %s is unchanged (the %d pairs labelled before the error were not kept)\n", c.out_path, fin.written);
        else if (c.out_path && has_content(c.out_path))
            fprintf(stderr, "leash judge label: the %d pairs labelled before the error are in %s\n", fin.written, c.out_path);
        return 1;
    }
    return 0;
}

int cli_judge(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "label")) return label(argc, argv);
    if (strcmp(argv[1], "train")) {
        fprintf(stderr, "leash judge: unknown subcommand '%s'\n%s", argv[1], usage);
        return 2;
    }
    leash_rm_config c = leash_rm_defaults();
    c.loss = LEASH_RM_REGRESSION;
    c.epochs = 3;
    c.optim.lr = 1e-3f;
    c.optim.warmup_steps = 50;
    int quiet = 0, r = cli_rm_train_options(argc, argv, "judge train", &c, &quiet);
    if (r) {
        fputs(usage, r > 0 ? stdout : stderr);
        return r > 0 ? 0 : 2;
    }
    if (!c.tokenizer_dir && !c.init_dir) {
        fprintf(stderr, "leash judge train: --tokenizer DIR is required (the world's tokenizer)\n");
        return 2;
    }
    return cli_rm_run(&c, quiet, "judge train");
}
