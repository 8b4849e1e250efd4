/* The leash command-line tool: dispatches to one file per subcommand in src/cli/. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "leash/dist.h"

static const char *usage =
    "usage: leash <command> [options]\n"
    "\n"
    "RL fine-tuning of language models with a KL leash to a frozen reference model.\n"
    "\n"
    "commands:\n"
    "  kl        exact KL, k1/k2/k3 estimators and the closed-form optimum, from a shell\n"
    "  pretrain  pre-train or fine-tune a GPT-2 or Llama model on text files (next-token cross-entropy, AdamW)\n"
    "  sample    generate from a model directory with the KV cache\n"
    "  tokenizer train a byte-level BPE, or encode / decode with one\n"
    "  world     write the default world: review corpus, prompts, judge data, held-out set; gold scores\n"
    "  judge     train the default world's AI judge, or label preference pairs with a judge (RLAIF)\n"
    "  rm        train a Bradley-Terry reward model on preference pairs, or score texts\n"
    "  ppo       RL fine-tuning with PPO and the KL leash (KL in the reward, adaptive beta)\n"
    "  grpo      RL fine-tuning with GRPO (group-relative advantages, k3 KL in the loss)\n"
    "  rloo      GRPO with RLOO's leave-one-out baseline and no std scaling (grpo --baseline loo)\n"
    "  dpo       direct preference optimisation on preference pairs (sigmoid or IPO; the same beta)\n"
    "  report    runs side by side: proxy and gold reward, grammaticality, KL, fluency, samples\n"
    "  plot      training curves of runs as a PNG (gnuplot)\n"
    "  sweep     the reward-vs-KL frontier: PPO at several betas and best-of-n, table and PNG\n"
    "  diff      how far apart two model directories are, tensor by tensor\n"
    "  lora      merge a LoRA adapter (PEFT layout) into its base model\n"
    "  export    write a model as a GGUF file for llama.cpp (f32, f16, bf16, q8_0)\n"
    "  score     per-token log-probs, sum, mean and perplexity of texts under a model (plain or chat)\n"
    "  tensorboard  a run's metrics.jsonl as a TensorBoard event file\n"
    "\n"
    "leash <command> --help shows a command's options.\n";

static int dispatch(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } commands[] = {{"kl", cli_kl},         {"pretrain", cli_pretrain}, {"sample", cli_sample},
                    {"tokenizer", cli_tokenizer}, {"world", cli_world}, {"judge", cli_judge},
                    {"rm", cli_rm},         {"ppo", cli_ppo},           {"grpo", cli_grpo}, {"rloo", cli_rloo},
                    {"report", cli_report}, {"plot", cli_plot},         {"sweep", cli_sweep},
                    {"diff", cli_diff},     {"lora", cli_lora},         {"export", cli_export},
                    {"score", cli_score},   {"tensorboard", cli_tensorboard},
                    {"dpo", cli_dpo}};
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            // getopt_long names argv[0] in its own messages ("unrecognized option"): make that "leash CMD"
            static char prog[32];
            snprintf(prog, sizeof prog, "leash %s", commands[i].name);
            argv[1] = prog;
            cli_name = prog;
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "leash: unknown command '%s'\n\n%s", argv[1], usage);
    return 2;
}

/* Programs other than this one running now: the fewest runnable tasks /proc/loadavg shows ("r/t", this
 * process included) over five samples 1 ms apart, less one, so that a passing blip does not count; -1 when
 * unknown. */
static int others_running(void) {
    int fewest = -1;
    for (int i = 0; i < 5; i++) {
        FILE *f = fopen("/proc/loadavg", "r");
        int r = -1;
        if (f && fscanf(f, "%*f %*f %*f %d/", &r) != 1) r = -1;
        if (f) fclose(f);
        if (r > 0 && (fewest < 0 || r - 1 < fewest)) fewest = r - 1;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return fewest;
}

/* OpenMP threads wait for the next parallel region by spinning for a while (libgomp: about 300000 turns)
 * before they sleep. On a machine whose cores other programs share, a spinning thread burns the time slice its
 * partner needs to finish: a GRPO run measured 2x to 31x slower than with passive waiting (bench/threads.sh,
 * docs/engine.md); on an idle machine spinning is about 1.4x faster. So when other programs already occupy
 * the cores leash's threads would use, its threads sleep at once (OMP_WAIT_POLICY=PASSIVE); on a free
 * machine libgomp's default stays. The user's OMP_WAIT_POLICY or GOMP_SPINCOUNT always wins. libgomp reads
 * its settings once, when it is loaded, before main runs: leash sets the variable and runs itself again (the
 * processes leash starts, such as a --reward-cmd scorer, inherit it). The choice is made at the start; if
 * leash cannot find or run its own binary, it goes on with libgomp's default. */
static void thread_wait_default(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return; // the user's choice wins
    long cpus = sysconf(_SC_NPROCESSORS_ONLN), threads = cpus;
    const char *nt = getenv("OMP_NUM_THREADS");
    if (nt && atol(nt) > 0) threads = atol(nt);
    int others = others_running();
    if (others >= 0 && cpus > 0 && others + threads <= cpus) return; // free cores: spinning costs nobody
    char self[4096]; // the binary's own path (not /proc/self/exe, which would name the process "exe")
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || (size_t)n >= sizeof self - 1 || setenv("OMP_WAIT_POLICY", "PASSIVE", 1)) return;
    self[n] = '\0';
    execv(self, argv);
    unsetenv("OMP_WAIT_POLICY");
}

/* Under mpirun (a build with make MPI=1) every rank runs the same command; a rank whose command fails stops
 * the whole job, so that no other rank waits for it. */
int main(int argc, char **argv) {
    thread_wait_default(argv);
    if (leash_dist_init(&argc, &argv)) {
        fprintf(stderr, "leash: cannot start MPI\n");
        return 1;
    }
    if (argc >= 2 && (!strcmp(argv[1], "pretrain") || !strcmp(argv[1], "ppo") || !strcmp(argv[1], "grpo") || !strcmp(argv[1], "rloo") ||
                      !strcmp(argv[1], "dpo")))
        cli_stop_on_signals(); // the trainers that checkpoint: finish the step, write a checkpoint, exit 0
    int rc = dispatch(argc, argv);
    if (rc && leash_dist_size() > 1) leash_dist_abort(rc, "the command failed (its message is above)");
    leash_dist_finalize();
    return rc;
}
