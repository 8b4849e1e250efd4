/* `leash world`: writes the default world's files. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/world.h"

static const char *usage =
    "usage: leash world --out DIR [--seed S] [--corpus N] [--prompts N] [--judge N] [--heldout N]\n"
    "\n"
    "Writes the default world, a seeded grammar of short English reviews with a gold truth (docs/world.md):\n"
    "  corpus.txt     N reviews, one per line, for pre-training / SFT       (default 200000)\n"
    "  prompts.jsonl  N review openings {\"prompt\"} for RL and labelling     (default 10000)\n"
    "  judge.jsonl    N labelled reviews {\"text\", \"sentiment\"} for the judge  (default 50000)\n"
    "  heldout.jsonl  N labelled reviews for evaluation                    (default 5000)\n"
    "  leash world score [--] TEXT   prints the gold verdict on a text (grammatical, sentiment, reward)\n";

int cli_world(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "score") == 0) {
        if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) return fputs(usage, stdout), 0;
        if (argc == 4 && !strcmp(argv[2], "--")) argv[2] = argv[3], argc = 3; // a text that starts with '-'
        else if (argc == 3 && argv[2][0] == '-') {
            fprintf(stderr, "leash world score: unknown option '%s'; put -- before a text that starts with '-'\n", argv[2]);
            return 2;
        }
        if (argc != 3) {
            fprintf(stderr, "leash world score: need one TEXT (quote it)\n");
            fputs(usage, stderr);
            return 2;
        }
        leash_world_gold g = leash_world_score(argv[2], strlen(argv[2]));
        printf("{\"grammatical\": %s, \"sentiment\": %.6f, \"reward\": %.6f, \"sentences\": %d, \"error_at\": %d}\n",
               g.grammatical ? "true" : "false", g.sentiment, g.reward, g.sentences, g.error_at);
        return 0;
    }
    const char *out = NULL, *cmd = "world";
    int seed = 0, corpus = 200000, prompts = 10000, judge = 50000, heldout = 5000, bad = 0, ch;
    static const struct option opts[] = {{"out", 1, 0, 'o'},     {"seed", 1, 0, 's'},    {"corpus", 1, 0, 'c'},
                                         {"prompts", 1, 0, 'p'}, {"judge", 1, 0, 'j'},   {"heldout", 1, 0, 'H'},
                                         {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    optind = 1;
    while (!bad && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': out = optarg; break;
        case 's': bad = cli_int(cmd, "--seed", optarg, 0, 2147483647, &seed); break;
        case 'c': bad = cli_int(cmd, "--corpus", optarg, 1, 100000000, &corpus); break;
        case 'p': bad = cli_int(cmd, "--prompts", optarg, 1, 100000000, &prompts); break;
        case 'j': bad = cli_int(cmd, "--judge", optarg, 0, 100000000, &judge); break;
        case 'H': bad = cli_int(cmd, "--heldout", optarg, 0, 100000000, &heldout); break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (bad) return 2;
    if (!out || optind < argc) {
        fprintf(stderr, "leash world: need --out DIR\n%s", usage);
        return 2;
    }
    if (leash_world_write(out, (uint64_t)seed, corpus, prompts, judge, heldout)) {
        fprintf(stderr, "leash world: %s\n", leash_errmsg());
        return 1;
    }
    fprintf(stderr, "leash world: wrote %s/{corpus.txt,prompts.jsonl,judge.jsonl,heldout.jsonl} (%d distinct words)\n",
            out, leash_world_vocabulary_size());
    return 0;
}
