/* Shared by the libFuzzer harnesses (make fuzz): the input is written to a file, because every leash loader
 * reads a path, and each harness then calls one loader. A harness fails (the fuzzer stops and keeps the
 * input) on a crash, a sanitizer report, or a failure whose message does not name the file. */
#ifndef LEASH_FUZZ_COMMON_H
#define LEASH_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/tokenizer.h"

/* dir/name, written with the bytes; dir is one directory per process. */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t n) {
    static char dir[64], path[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/leash-fuzz-%d", (int)getpid());
        char cmd[96];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        if (system(cmd) != 0) abort();
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) abort();
    return path;
}


/* A failure must name the file it is about. */
static inline void fuzz_check(int rc, const char *name) {
    if (rc != LEASH_OK && !strstr(leash_errmsg(), name)) {
        fprintf(stderr, "fuzz: a failure that does not name %s: %s\n", name, leash_errmsg());
        abort();
    }
}

/* Encodes and decodes a fixed text with a tokenizer that loaded (errors are fine, crashes are not). */
static inline void fuzz_use_tokenizer(const leash_tokenizer *t) {
    const char *text = "Hello world, the soup was good! 123 <|endoftext|>";
    int *ids = NULL;
    size_t k = 0, cap = 0;
    if (!leash_tokenizer_encode(t, text, strlen(text), 1, &ids, &k, &cap)) {
        char *out = NULL;
        size_t len = 0, ocap = 0;
        leash_tokenizer_decode(t, ids, k, &out, &len, &ocap);
        free(out);
    }
    free(ids);
}

#endif
