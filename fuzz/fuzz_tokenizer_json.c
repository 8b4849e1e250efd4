/* libFuzzer: a Hugging Face tokenizer.json, then an encode and a decode when it loads. */
#include <stdint.h>

#include "fuzz_common.h"
#include "leash/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    leash_tokenizer *t = NULL;
    int rc = leash_tokenizer_load_json(&t, fuzz_file("tokenizer.json", data, n));
    fuzz_check(rc, "tokenizer.json");
    if (!rc) {
        const char *text = "Hello world, the soup was good! 123";
        int *ids = NULL;
        size_t k = 0, cap = 0;
        if (!leash_tokenizer_encode(t, text, strlen(text), 0, &ids, &k, &cap)) {
            char *out = NULL;
            size_t len = 0, ocap = 0;
            leash_tokenizer_decode(t, ids, k, &out, &len, &ocap);
            free(out);
        }
        free(ids);
    }
    leash_tokenizer_free(t);
    return 0;
}
