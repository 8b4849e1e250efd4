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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "leash/fileio.h"
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

static char *read_text(const char *path) {
    char *text = NULL;
    return leash_read_file(path, 1 << 26, &text, NULL) ? NULL : text;
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
