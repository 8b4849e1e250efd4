/* The default world: every generated review parses, corruptions are rejected at the documented rates,
 * gold sentiment follows the documented arithmetic, the vocabulary is large enough, files are
 * deterministic. */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leash/fileio.h"
#include "leash/world.h"

Test(world, recogniser_accepts_everything_the_grammar_generates) {
    leash_rng r;
    leash_rng_seed(&r, 1, 0);
    char buf[512];
    int pos = 0;
    for (int i = 0; i < 100000; i++) {
        int n = leash_world_review(&r, 2.0 * leash_rng_uniform(&r) - 1.0, buf, sizeof buf);
        leash_world_gold g = leash_world_score(buf, n);
        cr_assert(g.grammatical, "generated review rejected at byte %d: %s", g.error_at, buf);
        cr_assert(g.sentiment >= -1.0 && g.sentiment <= 1.0 && g.reward == g.sentiment);
        cr_assert(g.sentences >= 1 && g.sentences <= 3);
        pos += g.sentiment > 0;
    }
    cr_assert(pos > 40000 && pos < 60000, "%d positive reviews of 100000: the sentiment targets should balance", pos);
    cr_assert(leash_world_vocabulary_size() >= 500, "%d words", leash_world_vocabulary_size());
}

Test(world, openings_are_prefixes_of_reviews) {
    leash_rng r;
    leash_rng_seed(&r, 2, 0);
    char buf[512], full[600];
    for (int i = 0; i < 1000; i++) {
        leash_world_opening(&r, buf, sizeof buf);
        snprintf(full, sizeof full, "%s great.", buf);
        cr_assert(leash_world_score(full, strlen(full)).grammatical, "'%s' + ' great.' should be a review", buf);
        cr_assert(!leash_world_score(buf, strlen(buf)).grammatical, "an opening alone is not a review");
    }
}

Test(world, gold_sentiment_arithmetic) {
    struct {
        const char *text;
        double want;
    } cases[] = {
        {"The food was good.", tanh(1.5 * (1.0 / 3))},                 // +1/3
        {"The food was excellent.", tanh(1.5 * 1.0)},                  // +3/3
        {"The food was very terrible.", tanh(1.5 * -1.5)},             // -1 * 1.5
        {"The food was not good.", tanh(1.5 * (-0.6 / 3))},           // negation: -0.6x
        {"The food was good, but the staff was rude.", tanh(1.5 * (0.3 / 3 - 0.7 * 2 / 3))},
        {"The food was good. The staff was rude.", tanh(1.5 * (1.0 / 3 - 2.0 / 3) / 2)},
        {"  The food was good.\n", tanh(1.5 * (1.0 / 3))}, // outer whitespace is trimmed
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        leash_world_gold g = leash_world_score(cases[i].text, strlen(cases[i].text));
        cr_assert(g.grammatical, "'%s' rejected at %d", cases[i].text, g.error_at);
        cr_assert(fabs(g.sentiment - cases[i].want) < 1e-12, "'%s': %.15g, want %.15g", cases[i].text, g.sentiment,
                  cases[i].want);
    }
    const char *bad[] = {"the food was good.", "The food was good", "The food was great great.", "great great great",
                         "The food was good. The food was good. The food was good. The food was good.",
                         "The food was good,but the staff was rude.", "The food was good.  The staff was rude.",
                         "The tasty food was good.", "The food was not not good.", "The food was very very good.",
                         "The Food was good.", "", "The food was goodd."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        leash_world_gold g = leash_world_score(bad[i], strlen(bad[i]));
        cr_assert(!g.grammatical, "'%s' accepted", bad[i]);
        cr_assert_eq(g.reward, LEASH_WORLD_UNGRAMMATICAL_REWARD);
    }
}

static int split(char *s, char **w) {
    int n = 0;
    for (char *t = strtok(s, " "); t; t = strtok(NULL, " ")) w[n++] = t;
    return n;
}

Test(world, corruptions_are_rejected_at_the_documented_rates) {
    // docs/world.md: adjacent-word swaps and repeated words are always rejected; a truncation is rejected
    // unless the cut falls at a sentence boundary (then it is a shorter review).
    leash_rng r;
    leash_rng_seed(&r, 5, 0);
    char buf[512], tmp[512], out[600], *w[128];
    int tried[3] = {0}, rejected[3] = {0};
    for (int i = 0; i < 20000; i++) {
        int len = leash_world_review(&r, 0.0, buf, sizeof buf);
        for (int kind = 0; kind < 3; kind++) {
            strcpy(tmp, buf);
            int n = split(tmp, w), rep = -1;
            if (kind == 0) {
                int k = (int)(leash_rng_uniform(&r) * (n - 1));
                char *x = w[k];
                w[k] = w[k + 1], w[k + 1] = x;
            } else if (kind == 1) rep = (int)(leash_rng_uniform(&r) * n);
            out[0] = '\0';
            for (int j = 0; j < n; j++) {
                if (j) strcat(out, " ");
                strcat(out, w[j]);
                if (j == rep) strcat(strcat(out, " "), w[j]);
            }
            if (kind == 2) {
                int cut = 1 + (int)(leash_rng_uniform(&r) * (len - 1));
                memcpy(out, buf, cut), out[cut] = '\0';
            }
            if (!strcmp(out, buf)) continue;
            tried[kind]++;
            int ok = leash_world_score(out, strlen(out)).grammatical;
            rejected[kind] += !ok;
            if (ok) {
                size_t k = strlen(out);
                while (k && out[k - 1] == ' ') k--;
                cr_assert(kind == 2 && k && out[k - 1] == '.', "corruption %d accepted: '%s'", kind, out);
            }
        }
    }
    cr_assert_eq(rejected[0], tried[0], "swaps: %d of %d rejected", rejected[0], tried[0]);
    cr_assert_eq(rejected[1], tried[1], "repeats: %d of %d rejected", rejected[1], tried[1]);
    double rate = (double)rejected[2] / tried[2];
    cr_log_info("truncations rejected: %.4f", rate);
    cr_assert(rate > 0.97 && rate < 0.995, "truncations: %.4f rejected, docs say ~98%%", rate);
}

Test(world, files_are_deterministic) {
    char a[] = "/tmp/leash-world-a-XXXXXX", b[] = "/tmp/leash-world-b-XXXXXX", cmd[256];
    cr_assert(mkdtemp(a) && mkdtemp(b));
    cr_assert_eq(leash_world_write(a, 7, 300, 20, 50, 30), 0);
    cr_assert_eq(leash_world_write(b, 7, 300, 20, 50, 30), 0);
    snprintf(cmd, sizeof cmd, "diff -r %s %s >/dev/null", a, b);
    cr_assert_eq(system(cmd), 0, "two runs with seed 7 differ");
    char path[300], *text;
    size_t n;
    snprintf(path, sizeof path, "%s/corpus.txt", a);
    cr_assert_eq(leash_read_file(path, 1 << 20, &text, &n), 0);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    cr_assert_eq(lines, 300);
    free(text);
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", a, b);
    cr_assert_eq(system(cmd), 0);
}
