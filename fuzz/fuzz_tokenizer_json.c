/* libFuzzer: a Hugging Face tokenizer.json, then an encode and a decode when it loads. */
#include <stdint.h>

#include "fuzz_common.h"
#include "leash/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    leash_tokenizer *t = NULL;
    int rc = leash_tokenizer_load_json(&t, fuzz_file("tokenizer.json", data, n));
    fuzz_check(rc, "tokenizer.json");
    if (!rc) fuzz_use_tokenizer(t);
    leash_tokenizer_free(t);
    return 0;
}
