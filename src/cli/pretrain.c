/* `leash pretrain`: pre-training / supervised fine-tuning on text files. Parses and validates options,
 * prints a progress line; the work is in src/pretrain.c. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/dist.h"
#include "leash/stop.h"
#include "leash/error.h"
#include "leash/pretrain.h"
#include "leash/rundir.h"

static const char *usage =
    "usage: leash pretrain --data FILE [--data FILE ...] --out DIR [options]\n"
    "\n"
    "Trains a GPT-2 or Llama model on text (one document per line, or documents separated by <|endoftext|>) with\n"
    "next-token cross-entropy and AdamW. DIR receives a Hugging Face-style model (config.json,\n"
    "model.safetensors, vocab.json, merges.txt) at the end, checkpoint/ (weights, optimizer, trainer state;\n"
    "replaced as a whole, so a kill at any moment leaves the last complete one) and\n"
    "metrics.jsonl (one JSON line per update).\n"
    "\n"
    "model (a new one; ignored with --init):\n"
    "  --init DIR          start from this model and its tokenizer instead\n"
    "  --tokenizer DIR     use this tokenizer (vocab.json + merges.txt or tokenizer.json)\n"
    "  --vocab-size N      otherwise train a byte-level BPE of N tokens on the data (default 2048)\n"
    "  --n-layer N --n-embd N --n-head N --n-positions N   (defaults 6, 256, 8, 128)\n"
    "  --arch A            gpt2 (default: LayerNorm, learned positions, GELU) or llama (RMSNorm, rotary\n"
    "                      positions, SwiGLU, written as a Hugging Face LlamaForCausalLM)\n"
    "  --n-kv-head N       llama: key/value heads for grouped-query attention (default: --n-head)\n"
    "training:\n"
    "  --batch B (16)  --seq-len T (128)  --grad-accum K (1)  --steps N (1000)  --seed S (0)\n"
    "  --lr X (1e-3)  --warmup N (50)  --min-lr-ratio X (0.1; cosine decay to lr*X at the last step)\n"
    "  --weight-decay X (0.1)  --grad-clip X (1.0; 0 = off)  --beta1 X (0.9)  --beta2 X (0.95)\n"
    "  --val-fraction X (0.05 of documents held out)  --val-every N (100)  --val-batches N (8)\n"
    "  --save-every N (500; a checkpoint is always written at the end, and when SIGINT or SIGTERM stops the\n"
    "                      run after its current step)\n"
    "  --resume            continue DIR's run from its last checkpoint, exactly\n"
    "  --overwrite         replace the run DIR already holds (without --resume or --overwrite a DIR with a\n"
    "                      checkpoint or metrics.jsonl is refused; one run at a time holds DIR/.lock)\n"
    "  --skip-nonfinite    a non-finite loss or gradient skips that update (counted: \"skipped\" in the\n"
    "                      metrics) instead of stopping the run with an error\n"
    "  --checkpoint-activations  keep only each layer's input for the backward and recompute the rest:\n"
    "                      less memory, about one more forward per step, the same numbers\n"
    "  -q, --quiet         no progress line\n"
    "  --tensorboard DIR   also write every update's numeric metrics to a TensorBoard event file in DIR (a\n"
    "                      --resume adds a new file there)\n";

typedef struct {
    int quiet;
    double t0;
    long skipped; // skipped updates already reported
    leash_tb *tb; // --tensorboard: the event file every update's metrics go to (rank 0)
    int tb_rc;    // its write error, which stops the run
} progress_ctx;

static int progress(const leash_pretrain_progress *p, void *vctx) {
    progress_ctx *ctx = vctx;
    if (leash_dist_rank() != 0) return 0; // rank 0 speaks for an MPI job
    if (ctx->tb && p->metrics && (ctx->tb_rc = leash_metrics_write_tb(ctx->tb, p->metrics))) return 1;
    if (p->skipped > ctx->skipped) {
        cli_progress_end();
        fprintf(stderr, "leash: update %d skipped (--skip-nonfinite): a non-finite loss or gradient\n", p->step);
    }
    ctx->skipped = p->skipped;
    if (ctx->quiet) return 0;
    char val[32] = "";
    if (!isnan(p->val_loss)) snprintf(val, sizeof val, "  val %.4f", p->val_loss);
    cli_progress(!isnan(p->val_loss) || p->step == p->steps, "step %5d/%d  loss %.4f%s  lr %.2e  |g| %.3f  %.0f tok/s   ",
                 p->step, p->steps, p->loss, val, p->lr, p->grad_norm, p->tokens_per_s);
    if (!isnan(p->val_loss)) cli_progress_end(); // a validation's line stays on a terminal
    return 0;
}

int cli_pretrain(int argc, char **argv) {
    leash_pretrain_config c = leash_pretrain_defaults();
    const char *data[256];
    int n_data = 0, bad = 0, overwrite = 0, lock = -1;
    progress_ctx ctx = {0};
    enum { O_DATA = 256, O_OUT, O_INIT, O_TOK, O_VOCAB, O_NL, O_NE, O_NH, O_NP, O_BATCH, O_SEQ, O_ACC, O_STEPS, O_SEED,
           O_LR, O_WARM, O_MINLR, O_WD, O_CLIP, O_B1, O_B2, O_VF, O_VE, O_VB, O_SE, O_RESUME, O_OVERWRITE, O_SKIPNF, O_ARCH, O_NKV, O_TB, O_CKPT };
    static const struct option opts[] = {
        {"data", 1, 0, O_DATA}, {"out", 1, 0, O_OUT}, {"init", 1, 0, O_INIT}, {"tokenizer", 1, 0, O_TOK},
        {"vocab-size", 1, 0, O_VOCAB}, {"n-layer", 1, 0, O_NL}, {"n-embd", 1, 0, O_NE}, {"n-head", 1, 0, O_NH},
        {"n-positions", 1, 0, O_NP}, {"batch", 1, 0, O_BATCH}, {"seq-len", 1, 0, O_SEQ}, {"grad-accum", 1, 0, O_ACC},
        {"steps", 1, 0, O_STEPS}, {"seed", 1, 0, O_SEED}, {"lr", 1, 0, O_LR}, {"warmup", 1, 0, O_WARM},
        {"min-lr-ratio", 1, 0, O_MINLR}, {"weight-decay", 1, 0, O_WD}, {"grad-clip", 1, 0, O_CLIP},
        {"beta1", 1, 0, O_B1}, {"beta2", 1, 0, O_B2}, {"val-fraction", 1, 0, O_VF}, {"val-every", 1, 0, O_VE},
        {"val-batches", 1, 0, O_VB}, {"save-every", 1, 0, O_SE}, {"resume", 0, 0, O_RESUME}, {"overwrite", 0, 0, O_OVERWRITE}, {"skip-nonfinite", 0, 0, O_SKIPNF}, {"quiet", 0, 0, 'q'},
        {"arch", 1, 0, O_ARCH}, {"n-kv-head", 1, 0, O_NKV}, {"tensorboard", 1, 0, O_TB},
        {"checkpoint-activations", 0, 0, O_CKPT}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cmd = "pretrain", *tb_dir = NULL;
    int seed = 0, ch;
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (ch) {
        case O_DATA:
            if (n_data == 256) {
                fprintf(stderr, "leash pretrain: more than 256 --data files\n");
                return 2;
            }
            data[n_data++] = optarg;
            break;
        case O_OUT: c.out_dir = optarg; break;
        case O_INIT: c.init_dir = optarg; break;
        case O_TOK: c.tokenizer_dir = optarg; break;
        case O_VOCAB: bad = cli_int(cmd, "--vocab-size", optarg, 257, 1000000, &c.vocab_size); break;
        case O_NL: bad = cli_int(cmd, "--n-layer", optarg, 1, 1024, &c.model.n_layer); break;
        case O_NE: bad = cli_int(cmd, "--n-embd", optarg, 1, 65536, &c.model.n_embd); break;
        case O_NH: bad = cli_int(cmd, "--n-head", optarg, 1, 1024, &c.model.n_head); break;
        case O_NP: bad = cli_int(cmd, "--n-positions", optarg, 1, 1 << 20, &c.model.n_positions); break;
        case O_BATCH: bad = cli_int(cmd, "--batch", optarg, 1, 1 << 16, &c.batch_size); break;
        case O_SEQ: bad = cli_int(cmd, "--seq-len", optarg, 1, 1 << 20, &c.seq_len); break;
        case O_ACC: bad = cli_int(cmd, "--grad-accum", optarg, 1, 1 << 16, &c.grad_accum); break;
        case O_STEPS: bad = cli_int(cmd, "--steps", optarg, 1, 1 << 30, &c.steps); break;
        case O_SEED: bad = cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed); break;
        case O_LR: bad = cli_float(cmd, "--lr", optarg, 1e-12, 10, &c.optim.lr); break;
        case O_WARM: bad = cli_int(cmd, "--warmup", optarg, 0, 1 << 30, &c.optim.warmup_steps); break;
        case O_MINLR: bad = cli_float(cmd, "--min-lr-ratio", optarg, 0, 1, &c.optim.min_lr_ratio); break;
        case O_WD: bad = cli_float(cmd, "--weight-decay", optarg, 0, 10, &c.optim.weight_decay); break;
        case O_CLIP: bad = cli_float(cmd, "--grad-clip", optarg, 0, 1e30, &c.optim.grad_clip); break;
        case O_B1: bad = cli_float(cmd, "--beta1", optarg, 0, 0.999999, &c.optim.beta1); break;
        case O_B2: bad = cli_float(cmd, "--beta2", optarg, 0, 0.999999, &c.optim.beta2); break;
        case O_VF: bad = cli_float(cmd, "--val-fraction", optarg, 0, 0.99, &c.val_fraction); break;
        case O_VE: bad = cli_int(cmd, "--val-every", optarg, 0, 1 << 30, &c.val_every); break;
        case O_VB: bad = cli_int(cmd, "--val-batches", optarg, 1, 1 << 20, &c.val_batches); break;
        case O_SE: bad = cli_int(cmd, "--save-every", optarg, 0, 1 << 30, &c.save_every); break;
        case O_ARCH:
            if (!strcmp(optarg, "gpt2") || !strcmp(optarg, "llama")) {
                c.model.arch = !strcmp(optarg, "llama") ? LEASH_ARCH_LLAMA : LEASH_ARCH_GPT2;
            } else {
                fprintf(stderr, "leash pretrain: --arch '%s': choose gpt2 or llama\n", optarg);
                bad = 1;
            }
            break;
        case O_NKV: bad = cli_int(cmd, "--n-kv-head", optarg, 1, 1024, &c.model.n_kv_head); break;
        case O_RESUME: c.resume = 1; break;
        case O_OVERWRITE: overwrite = 1; break;
        case O_SKIPNF: c.skip_nonfinite = 1; break;
        case O_CKPT: c.checkpoint_activations = 1; break;
        case 'q': ctx.quiet = 1; break;
        case O_TB: tb_dir = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (bad) return 2;
    if (optind < argc) {
        fprintf(stderr, "leash pretrain: unexpected argument '%s' (data files go after --data)\n", argv[optind]);
        return 2;
    }
    c.data = data;
    c.n_data = n_data;
    c.seed = (uint64_t)seed;
    c.optim.total_steps = c.steps;
    if (c.seq_len > c.model.n_positions) c.model.n_positions = c.seq_len;
    if (c.model.arch == LEASH_ARCH_LLAMA) {
        snprintf(c.model.model_type, sizeof c.model.model_type, "llama");
        c.model.layer_norm_epsilon = 1e-6f;
    } else if (c.model.n_kv_head) {
        fprintf(stderr, "leash pretrain: --n-kv-head needs --arch llama (GPT-2 has no grouped-query attention)\n");
        return 2;
    }
    int rc = leash_dist_rank() == 0 && c.out_dir ? leash_rundir_open(c.out_dir, c.resume, overwrite, &lock) : 0;
    if (rc) {
        fprintf(stderr, "leash pretrain: %s\n", leash_errmsg());
        return rc == LEASH_EINVAL ? 2 : 1;
    }
    if (tb_dir && leash_dist_rank() == 0 && (rc = leash_tb_open(&ctx.tb, tb_dir))) {
        fprintf(stderr, "leash pretrain: --tensorboard: %s\n", leash_errmsg());
        leash_rundir_unlock(lock);
        return 1;
    }
    rc = leash_pretrain(&c, progress, &ctx);
    leash_rundir_unlock(lock);
    cli_progress_end();
    rc = cli_tb_finish(ctx.tb, ctx.tb_rc, rc);
    if (rc) {
        fprintf(stderr, "leash pretrain: %s\n", leash_errmsg());
        return 1;
    }
    if (leash_dist_rank() == 0 && leash_stop_requested())
        fprintf(stderr, "leash pretrain: stopped by a signal; checkpoint written to %s (continue with the same options and "
                        "--resume)\n",
                c.out_dir);
    else if (!ctx.quiet && leash_dist_rank() == 0) fprintf(stderr, "leash pretrain: model written to %s\n", c.out_dir);
    return 0;
}
