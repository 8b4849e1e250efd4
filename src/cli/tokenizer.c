/* `leash tokenizer train|encode|decode`: the byte-level BPE from a shell (model directories and GGUF files). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/tokenizer.h"

static const char *usage =
    "usage: leash tokenizer train CORPUS --vocab-size N --out DIR [--min-frequency K]\n"
    "       leash tokenizer encode [--split-special-tokens] MODEL [FILE]   ids of FILE's text (stdin if none), one line\n"
    "       leash tokenizer decode MODEL [FILE]   text of whitespace-separated ids\n"
    "\n"
    "train: a GPT-2-style byte-level BPE (256 byte tokens, merges of the most frequent pair occurring at\n"
    "least K times (default 2), then <|endoftext|>); writes DIR/vocab.json and DIR/merges.txt in GPT-2's\n"
    "format.\n"
    "MODEL for encode/decode: a directory with tokenizer.json (Hugging Face's) or vocab.json + merges.txt,\n"
    "or a GGUF file with a byte-level BPE tokenizer (llama.cpp's tokenizer.ggml.model \"gpt2\").\n"
    "encode: as Hugging Face tokenizers' encode(text, add_special_tokens=False): special-token strings in\n"
    "the text (<|im_start|>, <|endoftext|>, ...) become their ids, no BOS or EOS is added.\n"
    "  --split-special-tokens   special-token strings are encoded as plain text (tokenizers'\n"
    "                           split_special_tokens, tiktoken's encode_ordinary)\n";

int cli_tokenizer(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "train")) {
        int vocab = 0, minf = 2, bad = 0, ch;
        const char *out = NULL;
        static const struct option opts[] = {{"vocab-size", 1, 0, 'v'}, {"out", 1, 0, 'o'}, {"min-frequency", 1, 0, 'm'},
                                             {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
        optind = 2;
        while (!bad && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
            if (ch == 'h') return fputs(usage, stdout), 0;
            if (ch == 'v') bad = cli_int("tokenizer train", "--vocab-size", optarg, 257, 1000000, &vocab);
            else if (ch == 'o') out = optarg;
            else if (ch == 'm') bad = cli_int("tokenizer train", "--min-frequency", optarg, 1, 1 << 30, &minf);
            else bad = 1;
        }
        if (bad || optind + 1 != argc || !vocab || !out) {
            if (!bad) fprintf(stderr, "leash tokenizer train: need CORPUS, --vocab-size and --out\n");
            fputs(usage, stderr);
            return 2;
        }
        char *text = NULL;
        size_t len;
        leash_tokenizer *tok = NULL;
        int rc = leash_read_file(argv[optind], (size_t)4 << 30, &text, &len);
        if (!rc && (rc = leash_tokenizer_train(text, len, vocab, minf, out))) rc = leash_fail_wrap(rc, "%s", argv[optind]);
        free(text);
        if (!rc) rc = leash_tokenizer_load_dir(&tok, out); // what was written reads back, and its size
        if (rc) {
            fprintf(stderr, "leash tokenizer train: %s\n", leash_errmsg());
            return 1;
        }
        int got = leash_tokenizer_vocab_size(tok);
        leash_tokenizer_free(tok);
        if (got < vocab)
            fprintf(stderr, "leash tokenizer train: the vocabulary reached %d of the %d asked (256 bytes, %d merges, "
                            "<|endoftext|>): no other pair occurs %d times (--min-frequency) in %s; a larger corpus or a "
                            "lower --min-frequency gives more\n", got, vocab, got - 257, minf, argv[optind]);
        fprintf(stderr, "leash tokenizer train: wrote %s/vocab.json and %s/merges.txt (%d tokens)\n", out, out, got);
        return 0;
    }
    if (strcmp(sub, "encode") && strcmp(sub, "decode")) {
        fprintf(stderr, "leash tokenizer: unknown subcommand '%s'\n%s", sub, usage);
        return 2;
    }
    int split = 0, bad = 0, ch;
    static const struct option opts[] = {{"split-special-tokens", 0, 0, 's'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    optind = 2;
    while (!bad && (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'h') return fputs(usage, stdout), 0;
        if (ch == 's' && !strcmp(sub, "encode")) split = 1;
        else bad = 1;
    }
    if (bad || argc - optind < 1 || argc - optind > 2) {
        if (!bad) fprintf(stderr, "leash tokenizer %s: need MODEL and at most one FILE\n", sub);
        fputs(usage, stderr);
        return 2;
    }
    leash_tokenizer *tok;
    char *text = cli_read_file(argc - optind == 2 ? argv[optind + 1] : "-", NULL);
    if (!text) return 1;
    if (leash_tokenizer_load_dir(&tok, argv[optind])) {
        fprintf(stderr, "leash tokenizer: %s\n", leash_errmsg());
        free(text);
        return 1;
    }
    int status = 0, *ids = NULL;
    size_t n = 0, cap = 0;
    if (!strcmp(sub, "encode")) {
        if (leash_tokenizer_encode(tok, text, strlen(text), !split, &ids, &n, &cap)) status = 1;
        for (size_t i = 0; i < n && !status; i++) printf("%s%d", i ? " " : "", ids[i]);
        if (!status) putchar('\n');
    } else {
        char *p = text, *end, *out = NULL;
        size_t len = 0, ocap = 0;
        for (long v; (v = strtol(p, &end, 10)), end != p; p = end) {
            if (n == cap && !(ids = realloc(ids, (cap = 2 * cap + 16) * sizeof *ids))) return 1;
            ids[n++] = (int)v;
        }
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (*p) {
            fprintf(stderr, "leash tokenizer decode: '%.20s' is not a token id\n", p);
            status = 1;
        } else if (leash_tokenizer_decode(tok, ids, n, &out, &len, &ocap)) status = 1;
        else fwrite(out ? out : "", 1, len, stdout);
        free(out);
    }
    if (status && *leash_errmsg()) fprintf(stderr, "leash tokenizer: %s\n", leash_errmsg());
    free(ids), free(text);
    leash_tokenizer_free(tok);
    return status;
}
