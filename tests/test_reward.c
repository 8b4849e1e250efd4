/* Reward models and RLAIF labelling: the Bradley-Terry loss and its gradient, a reward model that
 * learns a preference, and the external judge protocol with judges that answer, crash, hang and babble. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gpt.h"
#include "leash/judge.h"
#include "leash/reward.h"
#include "leash/tokenizer.h"
#include "testutil.h"

Test(bt_loss, values_and_gradient) {
    float rc[5] = {2.0f, -1.0f, 0.0f, 40.0f, -40.0f}, rr[5] = {1.0f, 1.0f, 0.0f, 0.0f, 0.0f}, dc[5], dr[5];
    double loss = leash_bt_loss(rc, rr, 5, dc, dr);
    double want = 0.0;
    for (int i = 0; i < 5; i++) want += log1p(exp(-(double)(rc[i] - rr[i])));
    cr_assert(fabs(loss - want / 5) < 1e-12, "loss %.15g, want %.15g", loss, want / 5);
    cr_assert(isfinite(loss), "large margins stay finite");
    for (int i = 0; i < 5; i++) {
        float a = rc[i], up = a + 1e-3f, down = a - 1e-3f;
        rc[i] = up;
        double lp = leash_bt_loss(rc, rr, 5, NULL, NULL);
        rc[i] = down;
        double lm = leash_bt_loss(rc, rr, 5, NULL, NULL);
        rc[i] = a;
        double fd = (lp - lm) / ((double)up - (double)down);
        cr_assert(fabs(dc[i] - fd) < 1e-6, "pair %d: d/d r_chosen %g, finite difference %g", i, dc[i], fd);
        cr_assert_eq(dr[i], -dc[i]);
    }
}

/* A tiny world for the trainers: a tokenizer trained on a few texts, a small model as "SFT". */
static void tiny_setup(const char *dir) {
    char text[8192];
    size_t n = 0;
    for (int i = 0; n < sizeof text - 200; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "the soup was %s. the bread was %s.\n", i % 2 ? "good" : "bad",
                              i % 3 ? "fresh" : "stale");
    tiny_model_dir(dir, text, n, 300, 32);
}

static void learns_a_preference(int lora) {
    char dir[] = "/tmp/leash-rm-XXXXXX", path[320], out[256], cmd[300];
    cr_assert(mkdtemp(dir));
    tiny_setup(dir);
    // "good" is always chosen over "bad"
    snprintf(path, sizeof path, "%s/prefs.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 400; i++)
        fprintf(f, "{\"prompt\": \"the soup was\", \"chosen\": \" %s.\", \"rejected\": \" %s.\"}\n", i % 2 ? "good" : "fine",
                i % 3 ? "bad" : "stale");
    fclose(f);
    snprintf(out, sizeof out, "%s/rm", dir);
    leash_rm_config c = leash_rm_defaults();
    c.data = path, c.out_dir = out, c.init_dir = dir, c.epochs = 3, c.batch_size = 16, c.optim.lr = 3e-3f;
    if (lora) c.lora_rank = 8, c.lora_targets = "c_attn,c_fc", c.optim.lr = 1e-2f; // adapters and the head only
    leash_rm_progress fin;
    cr_assert_eq(leash_rm_train(&c, NULL, NULL, &fin), 0, "%s", leash_errmsg());
    cr_assert(fin.val_accuracy >= 0.95, "held-out accuracy %g", fin.val_accuracy);
    leash_gpt *rm;
    leash_tokenizer *tok;
    cr_assert_eq(leash_gpt_load(&rm, out), 0, "%s", leash_errmsg());
    cr_assert_eq(leash_tokenizer_load_dir(&tok, out), 0, "the tokenizer travels with the model");
    const leash_gpt_config *cfg = leash_gpt_cfg(rm);
    cr_assert(cfg->scalar_head && leash_gpt_score_stats(rm).std > 0, "score statistics were stored (std %g)",
              (double)leash_gpt_score_stats(rm).std);
    const char *texts[2] = {"the soup was good.", "the soup was bad."};
    float s[2];
    cr_assert_eq(leash_rm_score_texts(rm, tok, texts, 2, 2, s), 0);
    cr_assert(s[0] > s[1], "good %g should beat bad %g", s[0], s[1]);
    if (lora) { // a PEFT directory whose base is the untouched SFT model
        cr_assert(leash_gpt_lora(rm) && leash_gpt_lora(rm)->rank == 8 && leash_gpt_first_trainable(rm) > 0);
        snprintf(path, sizeof path, "%s/adapter_config.json", out);
        cr_assert_eq(access(path, F_OK), 0);
        leash_gpt *sft;
        cr_assert_eq(leash_gpt_load(&sft, dir), 0);
        cr_assert_eq(memcmp(leash_gpt_params(rm), leash_gpt_params(sft), leash_gpt_num_params(sft) * sizeof(float)), 0);
        leash_gpt_free(sft);
    }
    leash_gpt_free(rm);
    leash_tokenizer_free(tok);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(reward_model, learns_a_preference, .timeout = 60) { learns_a_preference(0); }
// with LoRA: only the adapters and the head train, and the result is a PEFT directory on the SFT base
Test(reward_model, learns_a_preference_with_lora, .timeout = 60) { learns_a_preference(1); }

/* Labels with an external judge script; returns leash_judge_label's status, and the pairs written. */
static int label_with(const char *dir, const char *script, double timeout, int *written) {
    char prompts[256], out[256], judge[256];
    snprintf(prompts, sizeof prompts, "%s/prompts.jsonl", dir);
    snprintf(out, sizeof out, "%s/pairs.jsonl", dir);
    snprintf(judge, sizeof judge, "%s/judge.sh", dir);
    FILE *f = fopen(prompts, "w");
    for (int i = 0; i < 12; i++) fprintf(f, "{\"prompt\": \"the bread was\"}\n");
    fclose(f);
    cr_assert_eq(leash_write_file_atomic(judge, script, strlen(script)), 0);
    chmod(judge, 0755);
    leash_label_config c = leash_label_defaults();
    c.policy_dir = dir, c.prompts_path = prompts, c.out_path = out, c.judge_cmd = judge, c.timeout_s = timeout;
    c.sample.max_new_tokens = 6, c.batch = 4;
    leash_label_progress fin = {0};
    unlink(out); // a new file keeps the pairs labelled before a failure (an existing one stays as it was)
    int rc = leash_judge_label(&c, NULL, NULL, &fin);
    // whatever happened, the file holds exactly the pairs reported (none: no file), each a whole line
    char *text = NULL;
    size_t n = 0;
    if (access(out, F_OK) == 0) cr_assert_eq(leash_read_file(out, 1 << 20, &text, &n), 0);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    cr_assert(n == 0 || text[n - 1] == '\n', "the last line is cut");
    cr_assert_eq(lines, fin.written, "%d lines in the file, %d pairs reported", lines, fin.written);
    free(text);
    *written = fin.written;
    return rc;
}

Test(judge_protocol, external_judges_good_and_bad, .timeout = 60) {
    char dir[] = "/tmp/leash-judge-XXXXXX", cmd[300];
    cr_assert(mkdtemp(dir));
    tiny_setup(dir);
    int written;
    // a judge that prefers the longer response (a real script around any labeller looks like this)
    const char *good = "#!/bin/sh\nwhile IFS= read -r line; do\n"
                       "  id=$(printf '%s\\n' \"$line\" | LC_ALL=C sed 's/.*\"id\":\\([0-9]*\\).*/\\1/')\n"
                       "  echo \"{\\\"id\\\": $id, \\\"preferred\\\": \\\"a\\\", \\\"margin\\\": 1}\"\ndone\n";
    cr_assert_eq(label_with(dir, good, 10.0, &written), 0, "%s", leash_errmsg());
    cr_assert(written >= 8, "only %d pairs labelled", written);
    const char *crash = "#!/bin/sh\nread -r line; echo '{\"id\": 0, \"preferred\": \"b\"}'; exit 3\n";
    cr_assert_eq(label_with(dir, crash, 10.0, &written), LEASH_EIO);
    cr_assert(strstr(leash_errmsg(), "exit status 3") && strstr(leash_errmsg(), "request"), "%s", leash_errmsg());
    cr_assert(written <= 1);
    const char *hang = "#!/bin/sh\nsleep 30\n";
    cr_assert_eq(label_with(dir, hang, 0.3, &written), LEASH_EIO);
    cr_assert(strstr(leash_errmsg(), "did not answer") && strstr(leash_errmsg(), "0.3 s"), "%s", leash_errmsg());
    const char *babble = "#!/bin/sh\nwhile read -r line; do echo 'I prefer the first one'; done\n";
    cr_assert_eq(label_with(dir, babble, 10.0, &written), LEASH_EFORMAT);
    cr_assert(strstr(leash_errmsg(), "not a JSON object"), "%s", leash_errmsg());
    const char *wrong = "#!/bin/sh\nwhile read -r line; do echo '{\"id\": 0, \"preferred\": \"c\"}'; done\n";
    cr_assert_eq(label_with(dir, wrong, 10.0, &written), LEASH_EFORMAT);
    cr_assert(strstr(leash_errmsg(), "\"a\" or \"b\""), "%s", leash_errmsg());
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
