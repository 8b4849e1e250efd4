/* `leash rm train | score`: Bradley-Terry reward models; also the option parsing `leash judge train`
 * shares (a judge is a reward model trained by regression on labelled texts). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/dist.h"
#include "leash/data.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/reward.h"
#include "leash/rundir.h"
#include "leash/tokenizer.h"
#include "leash/world.h"

static const char *usage =
    "usage: leash rm train --data PREFS.jsonl --init SFT_DIR --out DIR [options]\n"
    "       leash rm score DIR (--text TEXT | --file TEXTS.jsonl)\n"
    "\n"
    "train: a reward model (the SFT model plus a scalar head) with the Bradley-Terry loss\n"
    "  -log sigmoid(r(prompt + chosen) - r(prompt + rejected)) on JSONL pairs {\"prompt\", \"chosen\", \"rejected\"}.\n"
    "  Reports held-out pairwise accuracy; stores the mean and std of its scores in DIR/config.json.\n"
    "score: prints the score of each text (prompt + response), raw and normalised, one JSON line each;\n"
    "  --file takes JSONL {\"text\"}.\n"
    "\n"
    "options (train):\n"
    "  --epochs N (2)  --batch B (32)  --lr X (5e-4)  --warmup N (0)  --weight-decay X (0)  --grad-clip X (1)\n"
    "  --val-fraction X (0.1, from the end of the file)  --seed S (0)\n"
    "  --gold-world   also report agreement with the default world's gold reward\n"
    "  --skip-nonfinite  a non-finite loss or gradient skips that update (counted) instead of stopping\n"
    "  --lora-r N     train LoRA adapters of rank N and the head, the --init model frozen (default 0: every\n"
    "                 weight); DIR is then a PEFT adapter directory with the head   --lora-alpha X (2r)\n"
    "  --lora-targets LIST  PEFT target_modules (default q_proj,v_proj; GPT-2: c_attn; or all-linear)\n"
    "  --checkpoint-activations  keep only each layer's input for the backward and recompute the rest:\n"
    "                 less memory, about one more forward per batch, the same numbers\n"
    "  -q, --quiet\n";

static double world_gold(const char *text, void *ctx) {
    (void)ctx;
    return leash_world_score(text, strlen(text)).reward;
}

typedef struct {
    int quiet;
    const char *what;
    long skipped; // skipped updates already reported
} rm_ctx;

static int rm_progress(const leash_rm_progress *p, void *vctx) {
    rm_ctx *ctx = vctx;
    if (leash_dist_rank() != 0) return 0; // rank 0 speaks for an MPI job
    if (p->skipped > ctx->skipped) { // the library counts what --skip-nonfinite skipped; the CLI says so
        cli_progress_end();
        fprintf(stderr, "leash %s: %s (--skip-nonfinite)\n", ctx->what, p->skip_reason);
        ctx->skipped = p->skipped;
    }
    if (p->validation) { // validation results are printed even when quiet
        cli_progress_end();
        fprintf(stderr, "epoch %d: held-out accuracy %.2f%% on %d", p->epoch, 100 * p->val_accuracy, p->val_n);
        if (!isnan(p->val_gold_accuracy)) fprintf(stderr, ", agreement with gold %.2f%%", 100 * p->val_gold_accuracy);
        fputc('\n', stderr);
    } else if (p->stats_total) { // the score statistics' pass after the last epoch (10-60 s on a real model)
        if (!ctx->quiet)
            cli_progress(p->stats_done == p->stats_total, "%s score statistics %d/%d texts   ", ctx->what, p->stats_done,
                         p->stats_total);
    } else if (!ctx->quiet) {
        cli_progress(p->step == p->steps, "%s step %d/%d  loss %.4f   ", ctx->what, p->step, p->steps, p->loss);
    }
    return 0;
}

int cli_rm_train_options(int argc, char **argv, const char *cmd, leash_rm_config *c, int *quiet) {
    enum { O_DATA = 256, O_INIT, O_TOK, O_OUT, O_EPOCHS, O_BATCH, O_LR, O_WARM, O_WD, O_CLIP, O_VF, O_SEED, O_GOLD, O_NL,
           O_NE, O_NH, O_NP, O_SKIPNF, O_LORA_R, O_LORA_ALPHA, O_LORA_TGT, O_CKPT };
    static const struct option opts[] = {
        {"data", 1, 0, O_DATA}, {"init", 1, 0, O_INIT}, {"tokenizer", 1, 0, O_TOK}, {"out", 1, 0, O_OUT},
        {"epochs", 1, 0, O_EPOCHS}, {"batch", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR}, {"warmup", 1, 0, O_WARM},
        {"weight-decay", 1, 0, O_WD}, {"grad-clip", 1, 0, O_CLIP}, {"val-fraction", 1, 0, O_VF}, {"seed", 1, 0, O_SEED},
        {"gold-world", 0, 0, O_GOLD}, {"n-layer", 1, 0, O_NL}, {"n-embd", 1, 0, O_NE}, {"n-head", 1, 0, O_NH},
        {"n-positions", 1, 0, O_NP}, {"skip-nonfinite", 0, 0, O_SKIPNF}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},
        {"lora-r", 1, 0, O_LORA_R}, {"lora-alpha", 1, 0, O_LORA_ALPHA}, {"lora-targets", 1, 0, O_LORA_TGT},
        {"checkpoint-activations", 0, 0, O_CKPT}, {0, 0, 0, 0}};
    int bad = 0, ch, seed = 0;
    optind = 2;
    while (!bad && (ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (ch) {
        case O_DATA: c->data = optarg; break;
        case O_INIT: c->init_dir = optarg; break;
        case O_TOK: c->tokenizer_dir = optarg; break;
        case O_OUT: c->out_dir = optarg; break;
        case O_EPOCHS: bad = cli_int(cmd, "--epochs", optarg, 1, 100000, &c->epochs); break;
        case O_BATCH: bad = cli_int(cmd, "--batch", optarg, 1, 256, &c->batch_size); break;
        case O_LR: bad = cli_float(cmd, "--lr", optarg, 1e-12, 10, &c->optim.lr); break;
        case O_WARM: bad = cli_int(cmd, "--warmup", optarg, 0, 1 << 30, &c->optim.warmup_steps); break;
        case O_WD: bad = cli_float(cmd, "--weight-decay", optarg, 0, 10, &c->optim.weight_decay); break;
        case O_CLIP: bad = cli_float(cmd, "--grad-clip", optarg, 0, 1e30, &c->optim.grad_clip); break;
        case O_VF: bad = cli_float(cmd, "--val-fraction", optarg, 0, 0.99, &c->val_fraction); break;
        case O_SEED: bad = cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed); break;
        case O_GOLD: c->gold = world_gold; break;
        case O_NL: bad = cli_int(cmd, "--n-layer", optarg, 1, 1024, &c->model.n_layer); break;
        case O_NE: bad = cli_int(cmd, "--n-embd", optarg, 1, 65536, &c->model.n_embd); break;
        case O_NH: bad = cli_int(cmd, "--n-head", optarg, 1, 1024, &c->model.n_head); break;
        case O_NP: bad = cli_int(cmd, "--n-positions", optarg, 1, 1 << 20, &c->model.n_positions); break;
        case O_SKIPNF: c->skip_nonfinite = 1; break;
        case O_LORA_R: bad = cli_int(cmd, "--lora-r", optarg, 0, 4096, &c->lora_rank); break;
        case O_LORA_ALPHA: bad = cli_float(cmd, "--lora-alpha", optarg, 0, 1e6, &c->lora_alpha); break;
        case O_LORA_TGT: c->lora_targets = optarg; break;
        case O_CKPT: c->checkpoint_activations = 1; break;
        case 'q': *quiet = 1; break;
        case 'h': return 1;
        default: return -1;
        }
    }
    if (bad) return -1;
    if (optind < argc) {
        fprintf(stderr, "leash %s: unexpected argument '%s'\n", cmd, argv[optind]);
        return -1;
    }
    c->seed = (uint64_t)seed;
    return 0;
}

int cli_rm_run(leash_rm_config *c, int quiet, const char *cmd) {
    rm_ctx ctx = {quiet, cmd, 0};
    leash_rm_progress fin;
    int lock = -1, rc = leash_dist_rank() == 0 && c->out_dir ? leash_rundir_open(c->out_dir, 0, 0, &lock) : 0;
    if (rc) {
        fprintf(stderr, "leash %s: %s\n", cmd, leash_errmsg());
        return rc == LEASH_EINVAL ? 2 : 1;
    }
    rc = leash_rm_train(c, rm_progress, &ctx, &fin);
    leash_rundir_unlock(lock);
    cli_progress_end();
    if (rc) {
        fprintf(stderr, "leash %s: %s\n", cmd, leash_errmsg());
        return 1;
    }
    if (fin.skipped && leash_dist_rank() == 0)
        fprintf(stderr, "leash %s: %ld updates were skipped for a non-finite loss or gradient\n", cmd, fin.skipped);
    if (!quiet && leash_dist_rank() == 0) fprintf(stderr, "leash %s: model written to %s\n", cmd, c->out_dir);
    return 0;
}

static int score(int argc, char **argv) {
    const char *text = NULL, *file = NULL;
    if (argc == 5 && !strcmp(argv[3], "--text")) text = argv[4];
    else if (argc == 5 && !strcmp(argv[3], "--file")) file = argv[4];
    else if (argc >= 3 && (!strcmp(argv[argc - 1], "--help") || !strcmp(argv[argc - 1], "-h")))
        return fputs(usage, stdout), 0;
    else {
        for (int i = 2; i < argc; i++)
            if (argv[i][0] == '-' && strcmp(argv[i], "--text") && strcmp(argv[i], "--file"))
                return fprintf(stderr, "leash rm score: unknown option '%s'\n%s", argv[i], usage), 2;
        fprintf(stderr, "leash rm score: need MODEL_DIR and --text TEXT or --file TEXTS.jsonl\n%s", usage);
        return 2;
    }
    leash_gpt *m = NULL;
    leash_tokenizer *tok = NULL;
    leash_table t = {0};
    static const char *const keys[] = {"text"};
    int status = 1;
    if (leash_gpt_load(&m, argv[2]) || leash_tokenizer_load_dir(&tok, argv[2]) ||
        (file && leash_jsonl_load(file, keys, 1, NULL, 0, 0, &t))) {
        fprintf(stderr, "leash rm score: %s\n", leash_errmsg());
        goto done;
    }
    if (file && t.invalid_utf8)
        fprintf(stderr, "leash rm score: %s: %ld bytes of invalid UTF-8 replaced by U+FFFD\n", file, t.invalid_utf8);
    const char *one[1] = {text};
    const char *const *texts = file ? (const char *const *)t.str[0] : one;
    int n = file ? t.n : 1;
    float *s = malloc(n * sizeof *s);
    if (!s || leash_rm_score_texts(m, tok, texts, n, 32, s)) {
        fprintf(stderr, "leash rm score: %s\n", s ? leash_errmsg() : "out of memory");
        free(s);
        goto done;
    }
    leash_score_stats st = leash_gpt_score_stats(m);
    for (int i = 0; i < n; i++) {
        double z = st.std > 0 ? (s[i] - st.mean) / st.std : NAN;
        if (isnan(z)) printf("{\"score\": %.6f, \"normalized\": null}\n", s[i]);
        else printf("{\"score\": %.6f, \"normalized\": %.6f}\n", s[i], z);
    }
    free(s);
    status = 0;
done:
    leash_gpt_free(m);
    leash_tokenizer_free(tok);
    leash_table_free(&t);
    return status;
}

int cli_rm(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "score")) return score(argc, argv);
    if (strcmp(argv[1], "train")) {
        fprintf(stderr, "leash rm: unknown subcommand '%s'\n%s", argv[1], usage);
        return 2;
    }
    leash_rm_config c = leash_rm_defaults();
    int quiet = 0, r = cli_rm_train_options(argc, argv, "rm train", &c, &quiet);
    if (r) {
        fputs(usage, r > 0 ? stdout : stderr);
        return r > 0 ? 0 : 2;
    }
    if (!c.init_dir) {
        fprintf(stderr, "leash rm train: --init SFT_DIR is required (the reward model starts from the SFT model)\n");
        return 2;
    }
    return cli_rm_run(&c, quiet, "rm train");
}
