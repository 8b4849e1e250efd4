/* `leash ppo` and `leash grpo`: RL fine-tuning with the KL leash. Options, validation, the progress line
 * and the warnings; the work is in src/rl.c, src/ppo.c, src/grpo.c. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/dist.h"
#include "leash/error.h"
#include "leash/frontier.h"
#include "leash/klwatch.h"
#include "leash/metrics.h"
#include "leash/rl.h"
#include "leash/rundir.h"

static const char *usage_head_ppo =
    "usage: leash ppo  --policy SFT_DIR REWARD --prompts PROMPTS.jsonl --out DIR [options]\n"
    "PPO: per-token rewards -beta * KL (plus the shaped score at the last token), a value model, GAE, clipped\n"
    "policy and value losses, several epochs over minibatches. (leash grpo --help: GRPO's options.)\n";
static const char *usage_head_grpo =
    "usage: leash grpo --policy SFT_DIR REWARD --prompts PROMPTS.jsonl --out DIR [options]\n"
    "GRPO: --group responses per prompt, advantages relative to the group, the KL inside the loss with a fixed\n"
    "beta (or adaptive: --kl-target), no value model. (leash ppo --help: PPO's options.)\n";
static const char *usage_common =
    "REWARD is one of: --reward RM_DIR (a reward model), --gold-reward (the default world's truth), or\n"
    "--reward-cmd CMD: a verifiable scorer that reads {\"id\", \"prompt\", \"response\", and the prompt line's\n"
    "other columns} lines on stdin and answers {\"id\", \"reward\"} lines on stdout, in order, each flushed; an\n"
    "answer may add \"metrics\": {\"gold/correct\": 1, ...}, whose batch means are logged (gold/reward is the run's\n"
    "gold reward). Give --reward-cmd several times for a weighted sum (docs/rl.md, \"Scorer commands\"):\n"
    "  --reward-timeout S   seconds per answer (default 30)\n"
    "  --reward-weights W   one weight per --reward-cmd, e.g. 1,0.5 (default all 1)\n"
    "  --reward-names L     one label per --reward-cmd for rewards/<label>/mean, e.g. correct,format\n"
    "                       (default cmd0,cmd1,...; logged with two or more commands)\n"
    "--chat-template: the prompts are plain questions, each wrapped as a user message in the policy's own chat\n"
    "template (ChatML, Llama 3) with the assistant's turn begun; scorers and samples get the plain question.\n"
    "\n"
    "RL fine-tuning with a KL leash to the frozen SFT model. The policy samples at --temperature and every\n"
    "log-prob (ratios, KL) is computed at that same temperature. DIR gets metrics.jsonl (one line per step,\n"
    "TRL's metric names), samples.jsonl, and the final policy in DIR/policy.\n"
    "\n";
static const char *usage_ppo =
    "the leash:\n"
    "  --beta B             KL coefficient: the adaptive controller's start (default 0.2); 0 turns the leash off\n"
    "  --fixed-beta         keep beta fixed (default: adaptive, Ziegler et al.)\n"
    "  --kl-target X        adaptive: target KL in nats per sequence (default 6; the sum over a response)\n"
    "  --kl-per-token       adaptive: the target and the measured KL are per response token instead\n"
    "  --kl-horizon N       adaptive: horizon in samples (default 10000; smaller adapts faster)\n"
    "  --kl-estimator E     k1 (default), k3, or exact (full-vocabulary KL per token) in the reward. k3 beyond\n"
    "                       log r = 20 runs on its tangent line (counted: kl/clamped_tokens). See docs/kl-pitfalls.md\n"
    "rewards:\n"
    "  --no-normalize       do not normalise scores with the reward model's stored mean and std\n"
    "  --score-clip X       clip the score to [-X, X] (0 = off)   --no-eos-penalty X (added, e.g. -1; 0 = off)\n"
    "  --length-penalty X   per response token (0)                --whiten-rewards\n"
    "  --gold-metrics       also report the default world's gold reward and grammaticality\n"
    "sampling and updates:\n"
    "  --steps N (100)  --batch N (64 sequences)  --max-new N (24)  -t, --temperature T (1)  --seed S (0)\n"
    "  --epochs N (4)  --minibatch N (whole batch)  --lr X (3e-5)  --value-lr X (1e-4)  --clip X (0.2)\n"
    "  --grad-accum K (1)   each minibatch in K micro-batches, gradients summed before its one optimiser\n"
    "                       step (TRL's gradient_accumulation_steps): the same step, less memory\n"
    "  --value-clip X (0.2)  --vf-coef X (0.1)  --gamma X (1)  --lambda X (0.95)\n"
    "  --grad-clip X (1; 0 = off)  --weight-decay X (0)  --warmup N (0 updates): policy and value optimisers\n"
    "  --sample-every N (10)  -q, --quiet\n"
    "  --tensorboard DIR    also write every step's numeric metrics to a TensorBoard event file in DIR\n";
static const char *usage_grpo =
    "the leash:\n"
    "  --beta B             the KL coefficient (default 0.04, fixed); 0 turns the leash off\n"
    "  --kl-target X        adapt beta (from --beta) to this KL, measured by the --kl-estimator in the loss, in\n"
    "                       nats per sequence (--kl-per-token: per response token); --kl-horizon N (10000)\n"
    "  --kl-estimator E     k3 (default, the paper; its gradient is that of the reverse KL), k2 (its gradient\n"
    "                       is that of KL(pi || pi_ref), whose optimum is pi*), k3+ (k3's value, k2's\n"
    "                       gradient) or exact (the full-vocabulary KL at every response token and its exact\n"
    "                       gradient; one more reference forward per update) inside the loss. k3 beyond\n"
    "                       log r = 20 runs on its tangent line (counted: kl/clamped_tokens). See docs/rl.md\n"
    "rewards:\n"
    "  --no-normalize       do not normalise scores with the reward model's stored mean and std\n"
    "  --score-clip X       clip the score to [-X, X] (0 = off)   --no-eos-penalty X (added, e.g. -1; 0 = off)\n"
    "  --length-penalty X   per response token (0)\n"
    "  --gold-metrics       also report the default world's gold reward and grammaticality\n"
    "sampling and updates:\n"
    "  --steps N (100)  --batch N (8 prompts)  --group G (8 responses each)  --max-new N (24)\n"
    "  -t, --temperature T (1)  --seed S (0)  --epochs N (1)  --minibatch N (whole batch)  --lr X (3e-5)\n"
    "  --grad-accum K (1)   each minibatch in K micro-batches, gradients summed before its one optimiser\n"
    "                       step (TRL's gradient_accumulation_steps): the same step, less memory\n"
    "  --clip X (0.2)  --no-std-scaling (= --scale-rewards none)  --token-level-loss (= --loss bnpo)\n"
    "the GRPO family (TRL's names; docs/rl.md):\n"
    "  --baseline M         group (the group mean, default) or loo (RLOO: the mean of the other G-1;\n"
    "                       leash rloo is grpo with --baseline loo --scale-rewards none)\n"
    "  --scale-rewards M    group (divide by the group's std, default), batch (the batch's) or none\n"
    "  --loss L             grpo (each sequence's token mean, default), bnpo or dapo (one token mean), or\n"
    "                       dr_grpo (token sums / (sequences x --max-new): Dr. GRPO, no length bias)\n"
    "  --epsilon-high X     DAPO's clip-higher: the ratio's upper clip is 1 + X (default: --clip)\n"
    "  --mask-truncated-completions   a response that never emitted EOS adds no loss\n"
    "  --importance-sampling-level L  token (default) or sequence (GSPO: exp of the mean log-ratio)\n"
    "  --entropy-coef X     an entropy bonus: - X x the policy's entropy per token in the loss (0)\n"
    "  --grad-clip X (1; 0 = off)  --weight-decay X (0)  --warmup N (0 updates)\n"
    "  --sample-every N (10)  -q, --quiet\n"
    "  --tensorboard DIR    also write every step's numeric metrics to a TensorBoard event file in DIR\n";
static const char *usage_tail =
    "truncated sampling (docs/rl.md: the ratios, entropy and KL are then those of the truncated distribution):\n"
    "  --top-k K (0 = off)  --top-p P (1 = off)   the KL penalised is KL(truncated policy || whole reference)\n"
    "off-policy correction (policy/is_ratio_{mean,min,max}, pi_theta / pi_sample in the updates, always logged):\n"
    "  --tis-cap C          truncated importance sampling (TRL's): each response token's clipped surrogate\n"
    "                       times pi_old / pi_sample, the policy scored for training over the distribution the\n"
    "                       sampler drew from, capped at C (default 0: off; TRL uses 2 to 5)\n"
    "  --tis-mode M         token_truncate (default), token_mask (0 above C), sequence_truncate or sequence_mask\n"
    "                       (one weight per response: the product over its tokens)\n"
    "  --separate-scoring   score the batch in its own forward before the updates even where the update's\n"
    "                       forward serves (one epoch, one minibatch): the same results, one forward slower\n"
    "checkpoints and resuming:\n"
    "  --save-every N       write DIR/checkpoint every N steps (default 0: at the end, and when stopped);\n"
    "                       SIGINT or SIGTERM finishes the current step, writes it, and exits 0\n"
    "  --resume             continue DIR's run from DIR/checkpoint, bit-identical to an uninterrupted run\n"
    "                       (same options; --steps may grow)\n"
    "  --overwrite          replace the run DIR already holds (without --resume or --overwrite a DIR with a\n"
    "                       checkpoint or metrics.jsonl is refused; one run at a time holds DIR/.lock)\n"
    "  --skip-nonfinite     a non-finite reward, KL or gradient skips that batch or update (counted in\n"
    "                       skipped/nonfinite, reported) instead of stopping the run with an error\n"
    "  --ref DIR            a different frozen reference (same tokenizer; default: the --policy model)\n"
    "  --ref-sync-every N   refresh the reference after every N steps (TR-DPO, TRL's sync_ref_model; 0: never):\n"
    "  --ref-sync-alpha A   ref <- A policy + (1 - A) ref (default 0.6, TRL's); LoRA: A must be 1, the adapters\n"
    "                       are merged into the base (the reference) and start again from B = 0 (ref/syncs)\n"
    "  --stop-at-peak       stop once the gold reward has passed the peak of Gao et al.'s d (alpha - beta log d)\n"
    "                       fitted to this run's gold gain against d = sqrt(exact KL), 3 steps running (fits\n"
    "                       from step 10; gold: a scorer's gold/reward, else the world's with --gold-metrics)\n"
    "LoRA (low-rank adapters; the base model stays frozen and, with its adapters off, is the reference):\n"
    "  --lora-r N           adapter rank (default 0: full fine-tuning)\n"
    "  --lora-alpha X       scale alpha / r (default 2r)   --lora-dropout X (0; kept in adapter_config.json,\n"
    "                       PPO/GRPO forwards run without dropout so ratios and KL match the rollout)\n"
    "  --lora-targets LIST  PEFT target_modules (default q_proj,v_proj; GPT-2: c_attn; or all-linear)\n"
    "                       DIR/policy is then a PEFT adapter directory (leash lora merge makes a full model);\n"
    "                       a --policy that is an adapter directory continues training its adapters\n"
    "  --frozen-bf16        keep frozen weights (reference, reward model, a LoRA base) in BF16: half their\n"
    "                       memory; exact for BF16 checkpoints, else the reference is the policy rounded\n"
    "  --checkpoint-activations  keep only each layer's input for the backward (policy and value model) and\n"
    "                       recompute the rest: less memory, about one more forward, the same numbers\n";

static void print_usage(FILE *f, leash_rl_algo algo, int rloo) {
    if (rloo) fputs("usage: leash rloo --policy SFT_DIR REWARD --prompts PROMPTS.jsonl --out DIR [options]\n"
                    "RLOO: leash grpo with --baseline loo (each response's advantage is its reward minus the mean of\n"
                    "the other G-1 of its group) and --scale-rewards none; every grpo option below applies.\n", f);
    else fputs(algo == LEASH_PPO ? usage_head_ppo : usage_head_grpo, f);
    fputs(usage_common, f);
    fputs(algo == LEASH_PPO ? usage_ppo : usage_grpo, f);
    fputs(usage_tail, f);
}

/* An option of the other algorithm: refused, naming it, instead of silently ignored. */
static int only_for(leash_rl_algo algo, leash_rl_algo owner, const char *cmd, const char *opt, const char *why) {
    if (algo == owner) return 0;
    fprintf(stderr, "leash %s: %s is a%s option (%s); leash %s does not take it (see leash %s --help)\n", cmd, opt,
            owner == LEASH_PPO ? " PPO" : " GRPO", why, cmd, cmd);
    return 1;
}
/* The reward source, chosen once: --reward, --gold-reward and --reward-cmd exclude each other. */
static int set_reward(const char *cmd, leash_reward_source *w, leash_reward_kind kind) {
    if (w->kind != LEASH_REWARD_NONE && w->kind != kind) {
        fprintf(stderr, "leash %s: give exactly one reward: --reward DIR, --reward-cmd CMD or --gold-reward\n", cmd);
        return 1;
    }
    w->kind = kind;
    return 0;
}
#define PPO_ONLY(opt, why) only_for(algo, LEASH_PPO, cmd, opt, why)
#define GRPO_ONLY(opt, why) only_for(algo, LEASH_GRPO, cmd, opt, why)

typedef struct {
    int quiet, warned_alarm, warned_band;
    long skipped; // skipped batches and updates already reported
    leash_tb *tb; // --tensorboard: the event file every step's metrics go to (rank 0)
    int tb_rc;    // its write error, which stops the run
    int stop_at_peak, warned_no_gold; // --stop-at-peak
    leash_frontier_watch peak;        // its (sqrt exact KL, gold gain) history and fit
} rl_ctx;

/* The library counts what --skip-nonfinite skipped; the CLI says so. */
static void report_skips(rl_ctx *ctx, const leash_rl_progress *p) {
    if (p->skipped <= ctx->skipped) return;
    cli_progress_end();
    fprintf(stderr, "leash: %s (--skip-nonfinite; %ld batch(es) or update(s) skipped so far)\n", p->skip_reason, p->skipped);
    ctx->skipped = p->skipped;
}

enum { O_STOP_AT_PEAK = 1024 }; // --stop-at-peak's getopt code, above run()'s

/* --stop-at-peak: 1 once the run's gold has passed the peak fitted to its own history (leash/frontier.h), said
 * on stderr with the fit. The gold is the step's gold/reward metric (a scorer's, or the world's). */
static int peak_passed(rl_ctx *ctx, const leash_rl_progress *p) {
    double gold = p->metrics ? leash_metrics_value(p->metrics, "gold/reward") : NAN;
    if (isnan(gold)) gold = p->gold_reward;
    if (isnan(gold)) {
        if (!ctx->warned_no_gold) {
            ctx->warned_no_gold = 1;
            cli_progress_end();
            fprintf(stderr, "leash: --stop-at-peak: step %d has no gold reward (gold/reward), so the run cannot stop at "
                            "its peak; add --gold-metrics (the default world's) or a scorer that reports gold/reward\n", p->step);
        }
        return 0;
    }
    int past = leash_frontier_watch_add(&ctx->peak, p->kl_exact, gold);
    if (past < 0) {
        cli_progress_end();
        fprintf(stderr, "leash: --stop-at-peak: %s; stopping\n", leash_errmsg());
        return 1;
    }
    if (!past) return 0;
    char why[512];
    leash_frontier_watch_reason(&ctx->peak, p->step, p->kl_exact, why, sizeof why);
    cli_progress_end();
    fprintf(stderr, "leash: --stop-at-peak: %s\n", why);
    return 1;
}

static int progress(const leash_rl_progress *p, void *vctx) {
    rl_ctx *ctx = vctx;
    if (leash_dist_rank() != 0) return 0; // rank 0 speaks for an MPI job
    report_skips(ctx, p);
    if (ctx->tb && p->metrics && (ctx->tb_rc = leash_metrics_write_tb(ctx->tb, p->metrics))) return 1;
    if (p->hacking_alarm && !ctx->warned_alarm) {
        ctx->warned_alarm = 1;
        cli_progress_end();
        fprintf(stderr, "leash: REWARD HACKING ALARM at step %d: the proxy reward climbs while %s falls. The policy is "
                        "exploiting the reward model; raise --beta (or use the adaptive controller) to keep it near "
                        "the reference.\n",
                p->step, isnan(p->gold_reward) ? "fluency (reference NLL)" : "the gold reward or grammaticality");
    }
    if (p->kl_band_warning && !ctx->warned_band) {
        ctx->warned_band = 1;
        cli_progress_end();
        fprintf(stderr, "leash: warning at step %d: the running KL is outside %g..%g nats per sequence (this batch: %.2f). %s\n",
                p->step, LEASH_KLWATCH_DEFAULT_LOW, LEASH_KLWATCH_DEFAULT_HIGH, p->kl,
                leash_klwatch_advice(p->kl_negative_warning ? LEASH_KLWATCH_NEGATIVE : LEASH_KLWATCH_HIGH));
    }
    if (ctx->quiet) return ctx->stop_at_peak && peak_passed(ctx, p);
    char line[320], gold[64] = "";
    if (!isnan(p->gold_reward) && isnan(p->grammatical)) snprintf(gold, sizeof gold, "  gold %+.3f", p->gold_reward); // a scorer's
    else if (!isnan(p->gold_reward)) snprintf(gold, sizeof gold, "  gold %+.3f  gram %3.0f%%", p->gold_reward, 100 * p->grammatical);
    snprintf(line, sizeof line, "step %4d/%d  score %+.3f  KL %6.3f nats/seq (exact %6.3f)  beta %.4f  ent %.3f%s  %.2fs ",
             p->step, p->steps, p->scores, p->kl, p->kl_exact, p->beta, p->entropy, gold, p->seconds);
    cli_progress(p->step == p->steps || p->sample, "%s", line);
    if (p->sample) { // the sample's control characters (a \r, a newline) as spaces: one line in a log
        char text[101];
        snprintf(text, sizeof text, "%s", p->sample);
        for (char *q = text; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) *q = ' ';
        cli_progress_end();
        fprintf(stderr, "    sample: %s\n", text);
    }
    return ctx->stop_at_peak && peak_passed(ctx, p);
}

static int run(int argc, char **argv, leash_rl_algo algo, int rloo) {
    leash_rl_config c = leash_rl_defaults(algo);
    const char *cmd = rloo ? "rloo" : algo == LEASH_PPO ? "ppo" : "grpo";
    if (rloo) c.grpo.baseline = LEASH_BASELINE_LOO, c.grpo.scale_rewards = LEASH_SCALE_NONE; // TRL's RLOO: no std
    float beta = (float)c.beta.beta, target = LEASH_BETA_DEFAULT_TARGET, horizon = LEASH_BETA_DEFAULT_HORIZON;
    const char *tb_dir = NULL, *rcmds[8], *rweights = NULL, *rnames = NULL; // --reward-cmd (up to 8), its weights, labels
    int n_rcmd = 0;
    int fixed = algo == LEASH_GRPO, seed = 0, bad = 0, ch, per_token = 0, overwrite = 0, lock = -1, horizon_set = 0;
    rl_ctx ctx = {0};
    enum { O_POLICY = 256, O_REWARD, O_GOLDR, O_GOLDM, O_PROMPTS, O_OUT, O_BETA, O_FIXED, O_TARGET, O_HORIZON, O_EST,
           O_NONORM, O_SCLIP, O_EOSP, O_LENP, O_WHITEN, O_STEPS, O_BATCH, O_GROUP, O_MAXNEW, O_SEED, O_EPOCHS, O_MB,
           O_LR, O_VLR, O_CLIP, O_VCLIP, O_VF, O_GAMMA, O_LAMBDA, O_NOSTD, O_TOKLOSS, O_SAMPLE, O_RCMD, O_RTIMEOUT, O_REF, O_PERTOK, O_SAVE, O_RESUME, O_OVERWRITE, O_SKIPNF,
           O_LORA_R, O_LORA_ALPHA, O_LORA_DROP, O_LORA_TGT, O_BF16, O_GCLIP, O_WD, O_WARM, O_TB, O_BASELINE, O_LOSS,
           O_SCALE, O_ISLEVEL, O_EPSHIGH, O_MASKTRUNC, O_ENTCOEF, O_RWEIGHTS, O_RNAMES,
           O_CHAT, O_CKPT };
    enum { O_TISCAP = 0x500, O_TISMODE, O_TOPK, O_TOPP, O_REFSYNC, O_REFALPHA, // off-policy, top-k/p, reference refresh
           O_ACCUM, O_SEPSCORE }; // gradient accumulation, the scoring pass
    static const struct option opts[] = {
        {"tis-cap", 1, 0, O_TISCAP}, {"tis-mode", 1, 0, O_TISMODE}, {"top-k", 1, 0, O_TOPK}, {"top-p", 1, 0, O_TOPP},
        {"ref-sync-every", 1, 0, O_REFSYNC}, {"ref-sync-alpha", 1, 0, O_REFALPHA},
        {"grad-accum", 1, 0, O_ACCUM}, {"separate-scoring", 0, 0, O_SEPSCORE},
        {"policy", 1, 0, O_POLICY}, {"reward", 1, 0, O_REWARD}, {"gold-reward", 0, 0, O_GOLDR},
        {"gold-metrics", 0, 0, O_GOLDM}, {"prompts", 1, 0, O_PROMPTS}, {"out", 1, 0, O_OUT}, {"beta", 1, 0, O_BETA},
        {"fixed-beta", 0, 0, O_FIXED}, {"kl-target", 1, 0, O_TARGET}, {"kl-horizon", 1, 0, O_HORIZON},
        {"kl-estimator", 1, 0, O_EST}, {"no-normalize", 0, 0, O_NONORM}, {"score-clip", 1, 0, O_SCLIP},
        {"no-eos-penalty", 1, 0, O_EOSP}, {"length-penalty", 1, 0, O_LENP}, {"whiten-rewards", 0, 0, O_WHITEN},
        {"steps", 1, 0, O_STEPS}, {"batch", 1, 0, O_BATCH}, {"group", 1, 0, O_GROUP}, {"max-new", 1, 0, O_MAXNEW},
        {"temperature", 1, 0, 't'}, {"seed", 1, 0, O_SEED}, {"epochs", 1, 0, O_EPOCHS}, {"minibatch", 1, 0, O_MB},
        {"lr", 1, 0, O_LR}, {"value-lr", 1, 0, O_VLR}, {"clip", 1, 0, O_CLIP}, {"value-clip", 1, 0, O_VCLIP},
        {"vf-coef", 1, 0, O_VF}, {"gamma", 1, 0, O_GAMMA}, {"lambda", 1, 0, O_LAMBDA}, {"no-std-scaling", 0, 0, O_NOSTD},
        {"token-level-loss", 0, 0, O_TOKLOSS}, {"sample-every", 1, 0, O_SAMPLE}, {"reward-cmd", 1, 0, O_RCMD},
        {"reward-timeout", 1, 0, O_RTIMEOUT}, {"ref", 1, 0, O_REF}, {"kl-per-token", 0, 0, O_PERTOK}, {"save-every", 1, 0, O_SAVE}, {"resume", 0, 0, O_RESUME}, {"overwrite", 0, 0, O_OVERWRITE}, {"skip-nonfinite", 0, 0, O_SKIPNF}, {"quiet", 0, 0, 'q'},
        {"lora-r", 1, 0, O_LORA_R}, {"lora-alpha", 1, 0, O_LORA_ALPHA}, {"lora-dropout", 1, 0, O_LORA_DROP},
        {"lora-targets", 1, 0, O_LORA_TGT}, {"frozen-bf16", 0, 0, O_BF16}, {"checkpoint-activations", 0, 0, O_CKPT}, {"grad-clip", 1, 0, O_GCLIP},
        {"weight-decay", 1, 0, O_WD}, {"warmup", 1, 0, O_WARM}, {"tensorboard", 1, 0, O_TB}, {"stop-at-peak", 0, 0, O_STOP_AT_PEAK},
        {"reward-weights", 1, 0, O_RWEIGHTS}, {"reward-names", 1, 0, O_RNAMES}, {"chat-template", 0, 0, O_CHAT},
        {"baseline", 1, 0, O_BASELINE}, {"loss", 1, 0, O_LOSS}, {"scale-rewards", 1, 0, O_SCALE},
        {"importance-sampling-level", 1, 0, O_ISLEVEL}, {"epsilon-high", 1, 0, O_EPSHIGH},
        {"mask-truncated-completions", 0, 0, O_MASKTRUNC}, {"entropy-coef", 1, 0, O_ENTCOEF},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "t:qh", opts, NULL)) != -1) {
        switch (ch) {
        case O_POLICY: c.policy_dir = optarg; break;
        case O_REWARD: bad = set_reward(cmd, &c.reward, LEASH_REWARD_MODEL), c.reward.dir = optarg; break;
        case O_GOLDR: bad = set_reward(cmd, &c.reward, LEASH_REWARD_GOLD); break;
        case O_GOLDM: c.gold_metrics = 1; break;
        case O_PROMPTS: c.prompts = optarg; break;
        case O_OUT: c.out_dir = optarg; break;
        case O_BETA: bad = cli_float(cmd, "--beta", optarg, 0, 1e6, &beta); break;
        case O_FIXED: bad = PPO_ONLY("--fixed-beta", "GRPO's beta is always fixed"), fixed = 1; break;
        case O_TARGET: bad = cli_float(cmd, "--kl-target", optarg, 1e-6, 1e6, &target), fixed = fixed && algo == LEASH_PPO; break; // GRPO: adaptive
        case O_HORIZON: bad = cli_float(cmd, "--kl-horizon", optarg, 1, 1e12, &horizon), horizon_set = 1; break;
        case O_EST:
            if (!strcmp(optarg, "exact")) c.kl_estimator = LEASH_KL_EXACT;
            else if (leash_kl_estimator_parse(optarg, &c.kl_estimator)) {
                fprintf(stderr, "leash %s: --kl-estimator: %s, or exact\n", cmd, leash_errmsg());
                bad = 1;
            }
            break;
        case O_NONORM: c.normalize_scores = 0; break;
        case O_SCLIP: bad = cli_float(cmd, "--score-clip", optarg, 0, 1e6, &c.score_clip); break;
        case O_EOSP: bad = cli_float(cmd, "--no-eos-penalty", optarg, -1e6, 1e6, &c.no_eos_penalty); break;
        case O_LENP: bad = cli_float(cmd, "--length-penalty", optarg, 0, 1e6, &c.length_penalty); break;
        case O_WHITEN: bad = PPO_ONLY("--whiten-rewards", "per-token rewards"), c.ppo.whiten_rewards = 1; break;
        case O_STEPS: bad = cli_int(cmd, "--steps", optarg, 1, 1 << 30, &c.steps); break;
        case O_BATCH: bad = cli_int(cmd, "--batch", optarg, 1, 1 << 16, &c.batch); break;
        case O_GROUP: bad = GRPO_ONLY("--group", "responses per prompt; PPO samples one") || cli_int(cmd, "--group", optarg, 2, 1 << 12, &c.grpo.group); break;
        case O_MAXNEW: bad = cli_int(cmd, "--max-new", optarg, 1, 1 << 20, &c.max_new); break;
        case 't': bad = cli_float(cmd, "--temperature", optarg, 1e-3, 100, &c.temperature); break;
        case O_SEED: bad = cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed); break;
        case O_EPOCHS: bad = cli_int(cmd, "--epochs", optarg, 1, 1000, &c.epochs); break;
        case O_MB: bad = cli_int(cmd, "--minibatch", optarg, 1, 1 << 16, &c.minibatch); break;
        case O_ACCUM: bad = cli_int(cmd, "--grad-accum", optarg, 1, 1 << 16, &c.grad_accum); break;
        case O_SEPSCORE: c.separate_scoring = 1; break;
        case O_LR: bad = cli_float(cmd, "--lr", optarg, 1e-12, 1, &c.optim.lr); break;
        case O_VLR: bad = PPO_ONLY("--value-lr", "the value model; GRPO has none") || cli_float(cmd, "--value-lr", optarg, 1e-12, 1, &c.ppo.value_optim.lr); break;
        case O_CLIP: bad = cli_float(cmd, "--clip", optarg, 1e-6, 0.999, &c.clip_eps); break;
        case O_VCLIP: bad = PPO_ONLY("--value-clip", "the value model; GRPO has none") || cli_float(cmd, "--value-clip", optarg, 1e-6, 1e6, &c.ppo.value_clip); break;
        case O_VF: bad = PPO_ONLY("--vf-coef", "the value model; GRPO has none") || cli_float(cmd, "--vf-coef", optarg, 0, 1e6, &c.ppo.vf_coef); break;
        case O_GAMMA: bad = PPO_ONLY("--gamma", "GAE; GRPO's advantages are group-relative") || cli_float(cmd, "--gamma", optarg, 0, 1, &c.ppo.gamma); break;
        case O_LAMBDA: bad = PPO_ONLY("--lambda", "GAE; GRPO's advantages are group-relative") || cli_float(cmd, "--lambda", optarg, 0, 1, &c.ppo.lam); break;
        case O_NOSTD: bad = GRPO_ONLY("--no-std-scaling", "group advantages"), c.grpo.scale_rewards = LEASH_SCALE_NONE; break;
        case O_TOKLOSS: bad = GRPO_ONLY("--token-level-loss", "the loss inside the group"), c.grpo.loss = LEASH_LOSS_BNPO; break;
        case O_BASELINE: case O_LOSS: case O_SCALE: case O_ISLEVEL: {
            const char *name = ch == O_BASELINE ? "baseline" : ch == O_LOSS ? "loss" : ch == O_SCALE ? "scale-rewards" : "importance-sampling-level";
            if (!(bad = only_for(algo, LEASH_GRPO, cmd, name, "the GRPO family's loss")) && (bad = leash_grpo_choice(&c.grpo, name, optarg) != 0))
                fprintf(stderr, "leash %s: %s\n", cmd, leash_errmsg());
            break;
        }
        case O_EPSHIGH: bad = GRPO_ONLY("--epsilon-high", "DAPO's clip-higher") || cli_float(cmd, "--epsilon-high", optarg, 0, 100, &c.grpo.epsilon_high); break;
        case O_MASKTRUNC: bad = GRPO_ONLY("--mask-truncated-completions", "the GRPO loss"), c.grpo.mask_truncated = 1; break;
        case O_ENTCOEF: bad = GRPO_ONLY("--entropy-coef", "the GRPO loss") || cli_float(cmd, "--entropy-coef", optarg, 0, 1e6, &c.grpo.entropy_coef); break;
        case O_SAMPLE: bad = cli_int(cmd, "--sample-every", optarg, 0, 1 << 30, &c.sample_every); break;
        case O_RCMD:
            if (!(bad = set_reward(cmd, &c.reward, LEASH_REWARD_COMMAND)) && n_rcmd == 8)
                bad = fprintf(stderr, "leash %s: at most 8 --reward-cmd\n", cmd) > 0;
            if (!bad) rcmds[n_rcmd++] = optarg, c.reward.cmd = rcmds[0];
            break;
        case O_RWEIGHTS: rweights = optarg; break;
        case O_RNAMES: rnames = optarg; break;
        case O_CHAT: c.chat_template = 1; break;
        case O_REF: c.ref_dir = optarg; break;
        case O_LORA_R: bad = cli_int(cmd, "--lora-r", optarg, 0, 4096, &c.lora_rank); break;
        case O_LORA_ALPHA: bad = cli_float(cmd, "--lora-alpha", optarg, 0, 1e6, &c.lora_alpha); break;
        case O_LORA_DROP: bad = cli_float(cmd, "--lora-dropout", optarg, 0, 0.999, &c.lora_dropout); break;
        case O_LORA_TGT: c.lora_targets = optarg; break;
        case O_BF16: c.frozen_bf16 = 1; break;
        case O_CKPT: c.checkpoint_activations = 1; break;
        case O_PERTOK: per_token = 1; break;
        case O_SAVE: bad = cli_int(cmd, "--save-every", optarg, 0, 1 << 30, &c.save_every); break;
        case O_RESUME: c.resume = 1; break;
        case O_OVERWRITE: overwrite = 1; break;
        case O_SKIPNF: c.skip_nonfinite = 1; break;
        case O_RTIMEOUT: {
            float x;
            bad = cli_float(cmd, "--reward-timeout", optarg, 1e-3, 1e6, &x);
            c.reward.timeout_s = x;
            break;
        }
        case 'q': ctx.quiet = 1; break;
        case O_TB: tb_dir = optarg; break;
        case O_REFSYNC: bad = cli_int(cmd, "--ref-sync-every", optarg, 0, 1 << 30, &c.ref_sync_every); break;
        case O_REFALPHA: bad = cli_float(cmd, "--ref-sync-alpha", optarg, 1e-6, 1.0, &c.ref_sync_alpha); break;
        case O_TOPK: bad = cli_int(cmd, "--top-k", optarg, 0, 1 << 30, &c.top_k); break;
        case O_TOPP: bad = cli_float(cmd, "--top-p", optarg, 1e-9, 1.0, &c.top_p); break;
        case O_TISCAP: bad = cli_float(cmd, "--tis-cap", optarg, 0, 1e6, &c.tis_cap); break;
        case O_TISMODE:
            if ((bad = leash_tis_mode_parse(optarg, &c.tis_mode) != 0)) fprintf(stderr, "leash %s: %s\n", cmd, leash_errmsg());
            break;
        case O_STOP_AT_PEAK: ctx.stop_at_peak = 1, leash_frontier_watch_init(&ctx.peak, 10, 3); break;
        case O_GCLIP: bad = cli_float(cmd, "--grad-clip", optarg, 0, 1e30, &c.optim.grad_clip), c.ppo.value_optim.grad_clip = c.optim.grad_clip; break;
        case O_WD: bad = cli_float(cmd, "--weight-decay", optarg, 0, 10, &c.optim.weight_decay), c.ppo.value_optim.weight_decay = c.optim.weight_decay; break;
        case O_WARM: bad = cli_int(cmd, "--warmup", optarg, 0, 1 << 30, &c.optim.warmup_steps), c.ppo.value_optim.warmup_steps = c.optim.warmup_steps; break;
        case 'h': print_usage(stdout, algo, rloo); return 0;
        default: print_usage(stderr, algo, rloo); return 2;
        }
    }
    if (bad) return 2;
    if (optind < argc) {
        fprintf(stderr, "leash %s: unexpected argument '%s'\n", cmd, argv[optind]);
        return 2;
    }
    c.seed = (uint64_t)seed;
    const char *rlabels[8];
    double rw[8];
    char rlist[256]; // the labels' storage
    if ((rweights || rnames) && !n_rcmd) {
        fprintf(stderr, "leash %s: --reward-weights and --reward-names go with --reward-cmd\n", cmd);
        return 2;
    }
    if (n_rcmd && leash_reward_lists(n_rcmd, rweights, rnames, rw, rlabels, rlist, sizeof rlist)) {
        fprintf(stderr, "leash %s: %s\n", cmd, leash_errmsg());
        return 2;
    }
    c.reward.cmds = rcmds, c.reward.n_cmds = n_rcmd, c.reward.weights = rw, c.reward.cmd_names = rlabels;
    if (leash_dist_rank() != 0) ctx.quiet = 1;
    int rcb = fixed || beta == 0.0f ? leash_beta_fixed(&c.beta, beta) : leash_beta_adaptive(&c.beta, beta, target, horizon);
    if (rcb) {
        fprintf(stderr, "leash %s: %s\n", cmd, leash_errmsg());
        return 2;
    }
    if (horizon_set && c.beta.kind != LEASH_BETA_ADAPTIVE) {
        fprintf(stderr, "leash %s: --kl-horizon is the adaptive controller's; beta is fixed here (GRPO: give --kl-target)\n", cmd);
        return 2;
    }
    if (per_token && c.beta.kind != LEASH_BETA_ADAPTIVE) {
        fprintf(stderr, "leash %s: --kl-per-token sets the adaptive controller's units; beta is fixed here\n", cmd);
        return 2;
    }
    c.beta.units = per_token ? LEASH_KL_PER_TOKEN : LEASH_KL_PER_SEQUENCE;
    int rc = leash_dist_rank() == 0 && c.out_dir ? leash_rundir_open(c.out_dir, c.resume, overwrite, &lock) : 0;
    if (rc) {
        fprintf(stderr, "leash %s: %s\n", cmd, leash_errmsg());
        return rc == LEASH_EINVAL ? 2 : 1;
    }
    // a resume opens a new event file: TensorBoard reads a directory's files as one run
    if (tb_dir && leash_dist_rank() == 0 && (rc = leash_tb_open(&ctx.tb, tb_dir))) {
        fprintf(stderr, "leash %s: --tensorboard: %s\n", cmd, leash_errmsg());
        leash_rundir_unlock(lock);
        return 1;
    }
    leash_rl_progress fin = {0};
    rc = leash_rl_train(&c, progress, &ctx, &fin);
    leash_frontier_watch_free(&ctx.peak);
    leash_rundir_unlock(lock);
    if (!ctx.quiet) cli_progress_end();
    if (leash_dist_rank() == 0) report_skips(&ctx, &fin);
    rc = cli_tb_finish(ctx.tb, ctx.tb_rc, rc);
    if (rc) {
        fprintf(stderr, "leash %s: %s\n", cmd, leash_errmsg());
        return 1;
    }
    if (leash_dist_rank() == 0 && fin.step < c.steps)
        fprintf(stderr, "leash %s: stopped after step %d of %d; checkpoint in %s/checkpoint (continue with the same options "
                        "and --resume)\n",
                cmd, fin.step, c.steps, c.out_dir);
    else if (!ctx.quiet) fprintf(stderr, "leash %s: policy written to %s/policy, metrics in %s/metrics.jsonl\n", cmd, c.out_dir, c.out_dir);
    return 0;
}

int cli_ppo(int argc, char **argv) { return run(argc, argv, LEASH_PPO, 0); }
int cli_grpo(int argc, char **argv) { return run(argc, argv, LEASH_GRPO, 0); }
int cli_rloo(int argc, char **argv) { return run(argc, argv, LEASH_GRPO, 1); }
