/* The trainers' command lines (leash grpo, ppo, pretrain): --tensorboard and their messages (issue 19 item 2,
 * issue 16 leftovers).
 *  - --tensorboard DIR: every numeric metric of every step in an event file, the value metrics.jsonl holds
 *    (float32, as TensorBoard stores it), read back by TensorBoard's own EventAccumulator and checked CRC by
 *    CRC (tests/ref/tensorboard_check.py); skipped with the reason without tensorboard or python3-crc32c,
 *    failed under LEASH_REQUIRE_REF=1;
 *  - progress with stderr in a file: plain lines, no \r, and no blank first line.
 * The commands run as a user runs them (the CLI through /bin/sh). */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "leash/fileio.h"
#include "leash/metrics.h"
#include "leash/optim.h"
#include "leash/rl.h"
#include "testutil.h"

static int have_references(void) {
    return system("/usr/bin/python3 -c 'import crc32c; from tensorboard.backend.event_processing.event_accumulator "
                  "import EventAccumulator' >/dev/null 2>&1") == 0;
}

/* tests/ref/tensorboard_check.py: the event file in event_dir holds exactly metrics' numbers. */
static void tensorboard_check(const char *event_dir, const char *metrics) {
    char cmd[1024], out[4096] = "";
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/tensorboard_check.py' '%s' '%s' 2>&1", LEASH_SRCDIR,
             event_dir, metrics);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    cr_log_info("%s", out);
    fprintf(stderr, "%s", out);
    cr_assert_eq(st, 0, "TensorBoard's reader disagrees with metrics.jsonl:\n%s", out);
}

/* stderr of a run redirected to a file: no \r, no blank first line. */
static void plain_log(const char *path) {
    char *err = read_text(path);
    cr_assert(err, "cannot read %s", path);
    cr_assert(!strchr(err, '\r'), "a \\r in the redirected progress: %s", err);
    cr_assert(err[0] != '\n', "the first line of stderr is blank: %s", err);
    free(err);
}

static int count_event_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    cr_assert(d, "cannot open %s", dir);
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, "events.out.tfevents.") == e->d_name;
    closedir(d);
    return n;
}

Test(rl_messages, grpo_tensorboard_equals_metrics_jsonl, .timeout = 240) {
    rl_scratch w;
    char cmd[2048], events[160], metrics[160], err[160];
    rl_scratch_make(&w, "tbflag");
    snprintf(events, sizeof events, "%s/tb", w.dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", w.out);
    snprintf(err, sizeof err, "%s/err.txt", w.dir);
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --gold-reward --prompts %s --out %s --steps 3 --batch 2 --group 4 "
                              "--max-new 6 --sample-every 1 --tensorboard %s 2>%s",
             LEASH_BIN, w.dir, w.prompts, w.out, events, err);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    plain_log(err);
    cr_assert_eq(count_event_files(events), 1);
    if (have_references()) tensorboard_check(events, metrics);
    // --resume to 5 steps: a second event file beside the first
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --gold-reward --prompts %s --out %s --steps 5 --batch 2 --group 4 "
                              "--max-new 6 --sample-every 1 --resume --tensorboard %s 2>%s",
             LEASH_BIN, w.dir, w.prompts, w.out, events, err);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    plain_log(err);
    cr_assert_eq(count_event_files(events), 2);
    rl_scratch_drop(&w);
    if (!have_references())
        LEASH_SKIP_OR_FAIL("tensorboard or python3-crc32c is not installed (pip install --break-system-packages "
                           "tensorboard; apt-get install python3-crc32c): the event file was not read back");
}

Test(rl_messages, pretrain_tensorboard_equals_metrics_jsonl, .timeout = 240) {
    char dir[] = "/tmp/leash-tbpre-XXXXXX", cmd[2048], data[160], events[160], metrics[160], err[160];
    cr_assert(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/data.txt", dir);
    snprintf(events, sizeof events, "%s/tb", dir);
    snprintf(metrics, sizeof metrics, "%s/run/metrics.jsonl", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    FILE *f = fopen(data, "w");
    cr_assert(f);
    for (int i = 0; i < 200; i++) fprintf(f, "the cat %d sat on the mat and the dog %d ran far away\n", i, i * 7);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s pretrain --data %s --out %s/run --steps 4 --batch 2 --seq-len 16 --n-layer 1 --n-embd 16 "
                              "--n-head 2 --vocab-size 300 --val-every 2 --tensorboard %s 2>%s",
             LEASH_BIN, data, dir, events, err);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    plain_log(err);
    cr_assert_eq(count_event_files(events), 1);
    if (have_references()) tensorboard_check(events, metrics);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    if (!have_references())
        LEASH_SKIP_OR_FAIL("tensorboard or python3-crc32c is not installed (pip install --break-system-packages "
                           "tensorboard; apt-get install python3-crc32c): the event file was not read back");
}

/* Runs cmd (stderr into err, a file path) and returns its exit status; *text gets stderr (caller frees). */
static int run_err(const char *cmd, const char *err, char **text) {
    char full[4096];
    snprintf(full, sizeof full, "%s 2>%s", cmd, err);
    int st = system(full);
    *text = read_text(err);
    cr_assert(*text, "cannot read %s", err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A prompt too long for the model's positions was "the longest prompt (N tokens) + --max-new M exceed ...":
 * no file, no line, no prompt. Now the file's line (blank lines counted) and the prompt's start. */
Test(rl_messages, too_long_prompt_names_file_and_line, .timeout = 120) {
    rl_scratch w;
    char cmd[2048], err[160], *text;
    rl_scratch_make(&w, "longp");
    FILE *f = fopen(w.prompts, "w");
    cr_assert(f);
    fputs("{\"prompt\": \"the cat\"}\n\n{\"prompt\": \"a dog\"}\n{\"prompt\": \"LONGPROMPT", f);
    for (int i = 0; i < 40; i++) fputs(" the cat sat on the mat", f);
    fputs("\"}\n{\"prompt\": \"a bird\"}\n", f);
    fclose(f);
    snprintf(err, sizeof err, "%s/err.txt", w.dir);
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --gold-reward --prompts %s --out %s --steps 1 --batch 2 --group 2 --max-new 6",
             LEASH_BIN, w.dir, w.prompts, w.out);
    cr_assert_eq(run_err(cmd, err, &text), 1, "%s", text);
    char where[200];
    snprintf(where, sizeof where, "%s:4: the prompt \"LONGPROMPT the cat", w.prompts);
    cr_log_info("too long: %s", text);
    cr_assert(strstr(text, where), "the error does not name '%s': %s", where, text);
    cr_assert(strstr(text, "--max-new 6"), "%s", text);
    cr_assert(text[0] != '\n', "the first line of stderr is blank: %s", text);
    free(text);
    rl_scratch_drop(&w);
}

/* A checkpoint whose step is below 1 was "the checkpoint is at step -3; --steps 5 must be at least that": a
 * sentence that makes no sense. Such a checkpoint is damaged, and the error says so. */
Test(rl_messages, checkpoint_step_below_one_is_damaged, .timeout = 120) {
    rl_scratch w;
    char cmd[2048], err[160], *text;
    rl_scratch_make(&w, "negstep");
    snprintf(err, sizeof err, "%s/err.txt", w.dir);
    const char *args = "--gold-reward --steps 2 --batch 2 --group 2 --max-new 4 -q";
    snprintf(cmd, sizeof cmd, "%s grpo --policy %s --prompts %s --out %s %s", LEASH_BIN, w.dir, w.prompts, w.out, args);
    cr_assert_eq(run_err(cmd, err, &text), 0, "%s", text);
    free(text);
    const char *bad[] = {"-3", "0", "1.5"};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "sed -i -E 's/\"step\":[[:space:]]*[-0-9.]+/\"step\": %s/' %s/checkpoint/state.json && "
                                  "grep -q '\"step\": %s' %s/checkpoint/state.json",
                 bad[i], w.out, bad[i], w.out);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        snprintf(cmd, sizeof cmd, "%s grpo --policy %s --prompts %s --out %s %s --resume --steps 5", LEASH_BIN, w.dir, w.prompts,
                 w.out, args);
        cr_assert_eq(run_err(cmd, err, &text), 1, "step %s: %s", bad[i], text);
        cr_log_info("step %s: %s", bad[i], text);
        cr_assert(strstr(text, "damaged") && strstr(text, "state.json"), "step %s: %s", bad[i], text);
        cr_assert(!strstr(text, "must be at least"), "step %s: %s", bad[i], text);
        cr_assert(text[0] != '\n', "the first line of stderr is blank: %s", text);
        free(text);
    }
    rl_scratch_drop(&w);
}

/* ---- TRL's GRPO metric names beside leash's (issue 19) --------------------------------------------- */

typedef struct {
    double worst, num_tokens, loss_gap;
    int steps, zero_groups;
    const leash_rl_config *c;
} trl_check;

static double metric(const leash_rl_progress *p, const char *name) {
    const leash_metric *m = leash_metrics_find(p->metrics, name);
    cr_assert(m, "step %d: no metric '%s'", p->step, name);
    return m->value;
}

static void near(trl_check *k, const leash_rl_progress *p, const char *name, double want, double tol) {
    double got = metric(p, name), d = fabs(got - want);
    if (d > k->worst) k->worst = d;
    cr_assert(d <= tol, "step %d: %s = %.9g, by hand %.9g (|difference| %.3g > %.3g)", p->step, name, got, want, d, tol);
}

/* Every value by hand from the step's batch (include/leash/rl.h's leash_rl_batch), as TRL's GRPOTrainer
 * computes it: rewards over the batch (std with n - 1), groups whose std is 0, lengths (end token included),
 * the share without an end token, cumulative prompt + response tokens. One update per step on the batch the
 * rollout scored, so TRL's entropy and kl (the policy in the update) equal the rollout's token means. */
static int trl_by_hand(const leash_rl_progress *p, void *ctx) {
    trl_check *k = ctx;
    const leash_rl_batch *b = p->batch;
    int R = b->rows, G = k->c->grpo.group, lmin = 1 << 30, lmax = 0, tmin = 1 << 30, tmax = 0;
    double mean = 0, ss = 0, zero = 0, len = 0, term = 0, tlen = 0, kl = 0, ntok = 0;
    for (int r = 0; r < R; r++) mean += b->shaped[r] / R;
    for (int r = 0; r < R; r++) ss += (b->shaped[r] - mean) * (b->shaped[r] - mean);
    for (int g = 0; g < R; g += G) {
        int same = 1;
        for (int j = 1; j < G; j++) same &= b->shaped[g + j] == b->shaped[g];
        zero += same;
    }
    for (int r = 0; r < R; r++) {
        int L = b->resp_len[r];
        len += L, lmin = L < lmin ? L : lmin, lmax = L > lmax ? L : lmax;
        if (b->has_eos[r]) term++, tlen += L, tmin = L < tmin ? L : tmin, tmax = L > tmax ? L : tmax;
        for (int t = 0; t < b->T; t++) {
            k->num_tokens += b->mask[(long)r * b->T + t];
            if (b->targets[(long)r * b->T + t] >= 0) kl += b->kl[(long)r * b->T + t], ntok++;
        }
    }
    k->zero_groups += (int)zero;
    near(k, p, "reward", mean, 1e-7);
    near(k, p, "reward_std", sqrt(ss / (R - 1)), 1e-7);
    near(k, p, "frac_reward_zero_std", zero / (R / G), 1e-12);
    near(k, p, "completions/mean_length", len / R, 1e-7);
    near(k, p, "completions/min_length", lmin, 0);
    near(k, p, "completions/max_length", lmax, 0);
    near(k, p, "completions/clipped_ratio", 1 - term / R, 1e-7);
    near(k, p, "completions/mean_terminated_length", term ? tlen / term : 0, 1e-7);
    near(k, p, "completions/min_terminated_length", term ? tmin : 0, 0);
    near(k, p, "completions/max_terminated_length", term ? tmax : 0, 0);
    near(k, p, "num_tokens", k->num_tokens, 0);
    near(k, p, "kl", kl / ntok, 1e-6);
    // loss/policy_avg is the loss optimised: per sequence, the mean over sequences of each one's token mean of
    // -A + beta k3 (ratio 1: the surrogate is -A); the token mean over the batch would differ
    double seq = 0, tok = 0;
    int nseq = 0;
    for (int r = 0; r < R; r++) {
        double s = 0;
        int L = 0;
        for (int t = 0; t < b->T; t++) {
            long i = (long)r * b->T + t;
            if (b->targets[i] < 0) continue;
            s += -b->advantages[i] + p->beta * b->kl[i], L++;
        }
        if (L) seq += s / L, nseq++;
        tok += s;
    }
    near(k, p, "loss/policy_avg", seq / nseq, 5e-7); // printed with 6 decimals
    if (fabs(tok / ntok - seq / nseq) > k->loss_gap) k->loss_gap = fabs(tok / ntok - seq / nseq);
    near(k, p, "entropy", p->entropy, 1e-6);
    // one update per step, on the log-probs the rollout scored: the ratio is 1, nothing is clipped
    near(k, p, "clip_ratio/region_mean", 0, 0);
    near(k, p, "learning_rate", leash_lr_at(&k->c->optim, p->step - 1), 1e-7 * k->c->optim.lr);
    cr_assert(metric(p, "grad_norm") > 0 && isfinite(metric(p, "grad_norm")), "grad_norm %g", metric(p, "grad_norm"));
    k->steps++;
    return 0;
}

/* A reward that varies within a group (a tiny untrained policy scores -1 on every gold reward): the length. */
static double length_mod3(const char *prompt, const char *response, const int *tokens, int n, void *ctx) {
    (void)prompt, (void)response, (void)tokens, (void)ctx;
    return n % 3;
}

Test(rl_messages, grpo_trl_metrics_equal_a_computation_by_hand, .timeout = 240) {
    rl_scratch w;
    rl_scratch_make(&w, "trlnames");
    leash_rl_config c = leash_rl_defaults(LEASH_GRPO);
    c.policy_dir = w.dir, c.prompts = w.prompts, c.out_dir = w.out, c.steps = 4;
    c.reward.kind = LEASH_REWARD_FUNCTION, c.reward.fn = length_mod3;
    c.batch = 3, c.grpo.group = 4, c.max_new = 6, c.sample_every = 1, c.optim.warmup_steps = 3, c.seed = 2;
    trl_check k = {.c = &c};
    cr_assert_eq(leash_rl_train(&c, trl_by_hand, &k, NULL), 0, "%s", leash_errmsg());
    cr_assert_eq(k.steps, 4);
    cr_log_info("loss/policy_avg: the per-sequence loss; the token mean would be up to %.4f off", k.loss_gap);
    cr_assert(k.loss_gap > 1e-5, "the token mean equals the per-sequence loss here: the check cannot tell them apart");
    cr_log_info("TRL's GRPO metrics: 4 steps equal the computation by hand, worst |difference| %.3g; %d groups of "
                "equal rewards; num_tokens %.0f",
                k.worst, k.zero_groups, k.num_tokens);
    // several updates per step (3 epochs, minibatches of 4): the clip shares are shares, low + high = region
    leash_rl_config c2 = c;
    c2.epochs = 3, c2.minibatch = 4, c2.optim.lr = 3e-2f, c2.resume = 0;
    char out2[160];
    snprintf(out2, sizeof out2, "%s/run2", w.dir);
    c2.out_dir = out2;
    leash_rl_progress fin;
    cr_assert_eq(leash_rl_train(&c2, NULL, NULL, &fin), 0, "%s", leash_errmsg());
    double lo = leash_metrics_value(fin.metrics, "clip_ratio/low_mean"), hi = leash_metrics_value(fin.metrics, "clip_ratio/high_mean");
    double re = leash_metrics_value(fin.metrics, "clip_ratio/region_mean");
    cr_log_info("3 epochs at lr 3e-2, last step: clip_ratio low %.4f high %.4f region %.4f", lo, hi, re);
    cr_assert(lo >= 0 && hi >= 0 && re <= 1 && fabs(lo + hi - re) < 1e-12 && re > 0, "low %g high %g region %g", lo, hi, re);
    rl_scratch_drop(&w);
}

/* leash dpo --tensorboard: every step's metrics, as metrics.jsonl holds them (which the metrics table writes
 * byte for byte as the hand-written line did: tests/test_dpo.c's resume check compares its lines). */
Test(rl_messages, dpo_tensorboard_equals_metrics_jsonl, .timeout = 240) {
    rl_scratch w;
    char cmd[2048], data[160], events[160], metrics[160], err[160];
    rl_scratch_make(&w, "tbdpo");
    snprintf(data, sizeof data, "%s/pairs.jsonl", w.dir);
    snprintf(events, sizeof events, "%s/tb", w.dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", w.out);
    snprintf(err, sizeof err, "%s/err.txt", w.dir);
    FILE *f = fopen(data, "w");
    cr_assert(f);
    for (int i = 0; i < 6; i++)
        fprintf(f, "{\"prompt\": \"the cat %d\", \"chosen\": \" sat on the mat\", \"rejected\": \" mat the on sat\"}\n", i);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s dpo --policy %s --data %s --out %s --steps 3 --batch 2 --lr 1e-2 --tensorboard %s 2>%s",
             LEASH_BIN, w.dir, data, w.out, events, err);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    plain_log(err);
    cr_assert_eq(count_event_files(events), 1);
    int have = have_references();
    if (have) tensorboard_check(events, metrics);
    rl_scratch_drop(&w);
    if (!have)
        LEASH_SKIP_OR_FAIL("tensorboard or python3-crc32c is not installed (pip install --break-system-packages "
                           "tensorboard; apt-get install python3-crc32c): the event file was not read back");
}
