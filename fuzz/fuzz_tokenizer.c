/* libFuzzer: vocab.json + merges.txt (the input split at its first NUL byte: vocabulary, then merges), then
 * an encode and a decode with the tokenizer when it loads. */
#include <stdint.h>

#include "fuzz_common.h"
#include "leash/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const uint8_t *nul = memchr(data, 0, n);
    size_t nv = nul ? (size_t)(nul - data) : n;
    char vocab[128], merges[128];
    snprintf(vocab, sizeof vocab, "%s", fuzz_file("vocab.json", data, nv));
    snprintf(merges, sizeof merges, "%s", fuzz_file("merges.txt", nul ? nul + 1 : data + n, nul ? n - nv - 1 : 0));
    leash_tokenizer *t = NULL;
    int rc = leash_tokenizer_load(&t, vocab, merges);
    if (rc != LEASH_OK && !strstr(leash_errmsg(), "vocab.json") && !strstr(leash_errmsg(), "merges.txt")) {
        fprintf(stderr, "fuzz: a failure that names neither file: %s\n", leash_errmsg());
        abort();
    }
    if (!rc) fuzz_use_tokenizer(t);
    leash_tokenizer_free(t);
    return 0;
}
