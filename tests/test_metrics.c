/* The metrics table (src/metrics.c): the JSONL line it writes (an expected line written out by hand), look-up
 * by name, a resumed log cut back to its step, and the text metrics against a brute-force reference (every
 * bigram compared with every earlier one of the batch). */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/metrics.h"

Test(metrics, line_and_lookup) {
    leash_metrics t = {0};
    leash_metrics_int(&t, "step", 12);
    leash_metrics_real(&t, "objective/kl", "%.6f", 0.125);
    leash_metrics_text(&t, "kl_estimator", "k3+");
    leash_metrics_real(&t, "gold/reward", "%.6f", NAN);
    leash_metrics_real(&t, "beta", "%.6g", 0.2);
    leash_metrics_int(&t, "skipped/nonfinite", 123456789012L);
    char dir[] = "/tmp/leash-metrics-XXXXXX", buf[512] = {0};
    cr_assert(mkdtemp(dir));
    leash_log log;
    cr_assert_eq(leash_log_open(&log, dir, "m.jsonl", -1), LEASH_OK, "%s", leash_errmsg());
    cr_assert_eq(leash_log_metrics(&log, &t), LEASH_OK);
    leash_log_close(&log);
    FILE *f = fopen(log.path, "r");
    cr_assert(f && fgets(buf, sizeof buf, f));
    fclose(f);
    const char *want = "{\"step\": 12, \"objective/kl\": 0.125000, \"kl_estimator\": \"k3+\", \"gold/reward\": null, "
                       "\"beta\": 0.2, \"skipped/nonfinite\": 123456789012}\n";
    cr_assert_str_eq(buf, want);
    cr_assert_eq(leash_metrics_value(&t, "beta"), 0.2);
    cr_assert(isnan(leash_metrics_value(&t, "nope")));
    cr_assert_str_eq(leash_metrics_find(&t, "kl_estimator")->text, "k3+");
    // a resumed log keeps the lines up to the checkpoint's step
    cr_assert_eq(leash_log_open(&log, dir, "m.jsonl", 11), LEASH_OK);
    leash_log_close(&log);
    f = fopen(log.path, "r");
    cr_assert(f);
    cr_assert_eq(fgetc(f), EOF, "step 12's line was kept after resuming from step 11");
    fclose(f);
    remove(log.path), remove(dir);
}

Test(metrics, full_table_is_an_error) {
    leash_metrics t = {0};
    for (int i = 0; i < LEASH_METRICS_MAX + 1; i++) leash_metrics_int(&t, "x", i);
    leash_log log = {.f = fopen("/dev/null", "w"), .path = "/dev/null"};
    cr_assert_eq(leash_log_metrics(&log, &t), LEASH_EINVAL);
    leash_log_close(&log);
}

Test(metrics, text_metrics_vs_brute_force) {
    srand(7);
    enum { R = 9, M = 12 };
    int ids[R * M], len[R], worst = 0;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < R * M; i++) ids[i] = rand() % 4;
        for (int b = 0; b < R; b++) len[b] = rand() % (M + 1);
        // brute force: every bigram of the batch against every earlier one; every token against its row's earlier ones
        long nbig = 0, uniq = 0;
        double rep = 0;
        for (int b = 0; b < R; b++) {
            int dup = 0;
            for (int j = 0; j < len[b]; j++) {
                int seen = 0;
                for (int q = 0; q < j; q++) seen |= ids[b * M + q] == ids[b * M + j];
                dup += j > 0 && seen;
                if (j + 1 >= len[b]) continue;
                int again = 0;
                for (int b2 = 0; b2 <= b; b2++)
                    for (int j2 = 0; j2 + 1 < len[b2] && (b2 < b || j2 < j); j2++)
                        again |= ids[b2 * M + j2] == ids[b * M + j] && ids[b2 * M + j2 + 1] == ids[b * M + j + 1];
                nbig++, uniq += !again;
            }
            rep += len[b] > 1 ? (double)dup / (len[b] - 1) : 0.0;
        }
        double d2;
        cr_assert_eq(leash_distinct2(ids, len, R, M, &d2), LEASH_OK);
        double want = nbig ? (double)uniq / nbig : 0.0, r = leash_repetition(ids, len, R, M);
        if (fabs(d2 - want) > 1e-15 || fabs(r - rep / R) > 1e-15) worst++;
        cr_assert(fabs(d2 - want) <= 1e-15, "trial %d: distinct2 %.17g, brute force %.17g", trial, d2, want);
        cr_assert(fabs(r - rep / R) <= 1e-15, "trial %d: repetition %.17g, brute force %.17g", trial, r, rep / R);
    }
    cr_log_info("200 random batches: %d differ from the brute force", worst);
}
