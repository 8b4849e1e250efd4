/* leash_rm_train reports the score statistics' pass after the last epoch (it takes 10-60 s on a real model and
 * was silent): one report a batch, stats_done rising to stats_total = 2 x the training pairs, after every
 * training step; the final report (what `final` receives) is the last validation, without them. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "leash/error.h"
#include "leash/reward.h"
#include "testutil.h"

typedef struct {
    int updates, stats, last_done, last_total, bad_order;
} seen;

static int record(const leash_rm_progress *p, void *ctx) {
    seen *s = ctx;
    if (p->stats_total) {
        s->bad_order |= p->step != p->steps || p->stats_done <= s->last_done || p->stats_done > p->stats_total;
        s->stats++, s->last_done = p->stats_done, s->last_total = p->stats_total;
    } else if (!p->validation) {
        s->bad_order |= s->stats > 0; // a training step after the statistics began
        s->updates++;
    }
    return 0;
}

Test(rm_progress, score_statistics_pass_is_reported, .timeout = 60) {
    char dir[] = "/tmp/leash-rmp-XXXXXX", path[320], out[256], cmd[300], text[4096];
    cr_assert(mkdtemp(dir));
    size_t n = 0;
    for (int i = 0; n < sizeof text - 100; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "the soup was %s.\n", i % 2 ? "good" : "bad");
    tiny_model_dir(dir, text, n, 300, 32);
    snprintf(path, sizeof path, "%s/prefs.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < 100; i++) fputs("{\"prompt\": \"the soup was\", \"chosen\": \" good.\", \"rejected\": \" bad.\"}\n", f);
    fclose(f);
    snprintf(out, sizeof out, "%s/rm", dir);
    leash_rm_config c = leash_rm_defaults();
    c.data = path, c.out_dir = out, c.init_dir = dir, c.epochs = 1, c.batch_size = 16, c.val_fraction = 0.1f;
    seen s = {0};
    leash_rm_progress fin;
    cr_assert_eq(leash_rm_train(&c, record, &s, &fin), 0, "%s", leash_errmsg());
    // 90 training pairs (100 less the 10 held out): 6 batches of 16, 180 texts
    cr_assert_eq(s.updates, 6, "training updates: %d, expected 6", s.updates);
    cr_assert_eq(s.stats, 6, "score-statistics reports: %d, expected one a batch (6)", s.stats);
    cr_assert(s.last_done == 180 && s.last_total == 180, "the last one: %d/%d texts, expected 180/180", s.last_done, s.last_total);
    cr_assert(!s.bad_order, "a statistics report before the last step, or not rising");
    cr_assert_eq(fin.stats_total, 0, "final is the last validation, not a statistics report");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
