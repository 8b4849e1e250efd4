/* `leash dpo`: direct preference optimisation of a policy on preference pairs (src/dpo.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/dist.h"
#include "leash/dpo.h"
#include "leash/error.h"
#include "leash/rundir.h"

static const char *usage =
    "usage: leash dpo --policy DIR|FILE.gguf --data PREFS.jsonl --out DIR [options]\n"
    "\n"
    "Direct preference optimisation: the offline twin of RL with the KL leash, with the same beta. On pairs\n"
    "{\"prompt\", \"chosen\", \"rejected\"} (what `leash judge label` writes) it minimises\n"
    "  sigmoid: -log sigmoid(beta h)   or   ipo: (h - 1/(2 beta))^2,\n"
    "  h = (log pi(chosen) - log pi_ref(chosen)) - (log pi(rejected) - log pi_ref(rejected)),\n"
    "log-probs summed over the response's tokens (prompt masked; the response ends with the end token). The\n"
    "reference is the initial policy (with --lora-r: the adapters off), scored once before training and cached.\n"
    "With Bradley-Terry preferences of a reward r, the optimum is pi_ref exp(r / beta) / Z (docs/rl.md, DPO).\n"
    "\n"
    "Writes DIR/policy (a model directory with its tokenizer; with --lora-r a PEFT adapter directory),\n"
    "DIR/checkpoint and DIR/metrics.jsonl with TRL's names, per step: loss, beta, rewards/chosen and\n"
    "rewards/rejected (the implicit reward beta (log pi - log pi_ref), nats per sequence), rewards/margins,\n"
    "rewards/accuracies (fraction with chosen's reward above rejected's), logps/chosen, logps/rejected (nats per\n"
    "sequence), lr, grad_norm.\n"
    "\n"
    "options:\n"
    "  --beta X (0.1)  --loss sigmoid|ipo (sigmoid)  --lr X (1e-5, constant after the warmup)\n"
    "  --warmup N (0)  --grad-clip X (1)  --weight-decay X (0)  --batch B (8 pairs)  --epochs N (1)\n"
    "  --steps N (default: the epochs' batches)  --seed S (1)\n"
    "  --lora-r N  train LoRA adapters of rank N, the policy frozen  --lora-alpha X (2r)\n"
    "  --lora-targets LIST  PEFT target_modules (default q_proj,v_proj; GPT-2: c_attn; or all-linear)\n"
    "  --resume    continue DIR's run (its settings must match; --steps may grow)   --overwrite  replace it\n"
    "  --save-every N  a checkpoint every N steps too (always one at the end, and on SIGINT/SIGTERM)\n"
    "  --tensorboard DIR  also write every step's metrics to a TensorBoard event file in DIR\n"
    "  --checkpoint-activations  keep only each layer's input for the backward and recompute the rest:\n"
    "              less memory, about one more forward per step, the same numbers\n"
    "  -q, --quiet\n";

typedef struct {
    int quiet;
    leash_tb *tb; // --tensorboard: the event file every step's metrics go to
    int tb_rc;    // its write error, which stops the run
} dpo_ctx;

static int progress(const leash_dpo_progress *p, void *vctx) {
    dpo_ctx *ctx = vctx;
    if (ctx->tb && p->metrics && (ctx->tb_rc = leash_metrics_write_tb(ctx->tb, p->metrics))) return 1;
    if (!ctx->quiet)
        cli_progress(p->step == p->steps, "dpo step %d/%d  loss %.4f  margin %.3f  accuracy %.2f   ", p->step, p->steps,
                     p->m.loss, p->m.margin, p->m.accuracy);
    return 0;
}

int cli_dpo(int argc, char **argv) {
    enum { O_POLICY = 256, O_DATA, O_OUT, O_BETA, O_LOSS, O_LR, O_WARM, O_CLIP, O_WD, O_BATCH, O_EPOCHS, O_STEPS, O_SEED,
           O_LORA_R, O_LORA_ALPHA, O_LORA_TGT, O_RESUME, O_OVERWRITE, O_SAVE, O_TB, O_CKPT };
    static const struct option opts[] = {
        {"policy", 1, 0, O_POLICY}, {"data", 1, 0, O_DATA}, {"out", 1, 0, O_OUT}, {"beta", 1, 0, O_BETA},
        {"loss", 1, 0, O_LOSS}, {"lr", 1, 0, O_LR}, {"warmup", 1, 0, O_WARM}, {"grad-clip", 1, 0, O_CLIP},
        {"weight-decay", 1, 0, O_WD}, {"batch", 1, 0, O_BATCH}, {"epochs", 1, 0, O_EPOCHS}, {"steps", 1, 0, O_STEPS},
        {"seed", 1, 0, O_SEED}, {"lora-r", 1, 0, O_LORA_R}, {"lora-alpha", 1, 0, O_LORA_ALPHA},
        {"lora-targets", 1, 0, O_LORA_TGT}, {"resume", 0, 0, O_RESUME}, {"overwrite", 0, 0, O_OVERWRITE}, {"save-every", 1, 0, O_SAVE},
        {"tensorboard", 1, 0, O_TB}, {"checkpoint-activations", 0, 0, O_CKPT}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    const char *cmd = "dpo", *tb_dir = NULL;
    leash_dpo_config c = leash_dpo_defaults();
    dpo_ctx ctx = {0};
    int bad = 0, ch, seed = 1, overwrite = 0;
    double beta = c.beta;
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (ch) {
        case O_POLICY: c.policy = optarg; break;
        case O_DATA: c.data = optarg; break;
        case O_OUT: c.out_dir = optarg; break;
        case O_BETA: bad = cli_double(cmd, "--beta", optarg, 1e-6, 1e6, &beta); break;
        case O_LOSS:
            if (!strcmp(optarg, "sigmoid")) c.loss = LEASH_DPO_SIGMOID;
            else if (!strcmp(optarg, "ipo")) c.loss = LEASH_DPO_IPO;
            else fprintf(stderr, "leash dpo: --loss '%s'; it must be sigmoid or ipo\n", optarg), bad = -1;
            break;
        case O_LR: bad = cli_float(cmd, "--lr", optarg, 0, 10, &c.optim.lr); break;
        case O_WARM: bad = cli_int(cmd, "--warmup", optarg, 0, 1 << 30, &c.optim.warmup_steps); break;
        case O_CLIP: bad = cli_float(cmd, "--grad-clip", optarg, 0, 1e9, &c.optim.grad_clip); break;
        case O_WD: bad = cli_float(cmd, "--weight-decay", optarg, 0, 10, &c.optim.weight_decay); break;
        case O_BATCH: bad = cli_int(cmd, "--batch", optarg, 1, 4096, &c.batch_size); break;
        case O_EPOCHS: bad = cli_int(cmd, "--epochs", optarg, 1, 1 << 20, &c.epochs); break;
        case O_STEPS: bad = cli_int(cmd, "--steps", optarg, 1, 1 << 30, &c.steps); break;
        case O_SEED: bad = cli_int(cmd, "--seed", optarg, 0, 1 << 30, &seed); break;
        case O_LORA_R: bad = cli_int(cmd, "--lora-r", optarg, 0, 4096, &c.lora_rank); break;
        case O_LORA_ALPHA: bad = cli_float(cmd, "--lora-alpha", optarg, 0, 1e6, &c.lora_alpha); break;
        case O_LORA_TGT: c.lora_targets = optarg; break;
        case O_RESUME: c.resume = 1; break;
        case O_CKPT: c.checkpoint_activations = 1; break;
        case O_OVERWRITE: overwrite = 1; break;
        case O_SAVE: bad = cli_int(cmd, "--save-every", optarg, 0, 1 << 30, &c.save_every); break;
        case 'q': ctx.quiet = 1; break;
        case O_TB: tb_dir = optarg; break;
        case 'h': return fputs(usage, stdout), 0;
        default: return 2;
        }
    }
    if (bad) return 2;
    if (optind < argc) return fprintf(stderr, "leash dpo: unexpected argument '%s'\n", argv[optind]), 2;
    if (!c.policy || !c.data || !c.out_dir) return fprintf(stderr, "leash dpo: --policy, --data and --out are required\n%s", usage), 2;
    c.beta = beta, c.seed = (uint64_t)seed;
    if (leash_dist_size() > 1) // every rank would train the same copy and write the same files
        return fprintf(stderr, "leash dpo: runs in one process; data-parallel DPO under mpirun is not implemented yet\n"), 2;
    int lock = -1, rc = leash_rundir_open(c.out_dir, c.resume, overwrite, &lock);
    if (rc) {
        fprintf(stderr, "leash dpo: %s\n", leash_errmsg());
        return rc == LEASH_EINVAL ? 2 : 1;
    }
    if (tb_dir && (rc = leash_tb_open(&ctx.tb, tb_dir))) { // a resume adds a new event file
        fprintf(stderr, "leash dpo: --tensorboard: %s\n", leash_errmsg());
        leash_rundir_unlock(lock);
        return 1;
    }
    leash_dpo_progress fin;
    rc = leash_dpo_train(&c, progress, &ctx, &fin);
    leash_rundir_unlock(lock);
    cli_progress_end();
    rc = cli_tb_finish(ctx.tb, ctx.tb_rc, rc);
    if (rc) {
        fprintf(stderr, "leash dpo: %s\n", leash_errmsg());
        return rc == LEASH_EINVAL ? 2 : 1;
    }
    if (!ctx.quiet)
        fprintf(stderr, "leash dpo: %d steps; last batch: loss %.4f, reward margin %.3f nats, accuracy %.2f; policy written to %s/policy\n",
                fin.step, fin.m.loss, fin.m.margin, fin.m.accuracy, c.out_dir);
    return 0;
}
