/* libFuzzer: JSONL data files (preference pairs with an optional margin; the same reader serves prompts). */
#include <stdint.h>

#include "fuzz_common.h"
#include "leash/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const char *const keys[] = {"prompt", "chosen", "rejected"}, *const num[] = {"margin"};
    leash_table t = {0};
    fuzz_check(leash_jsonl_load(fuzz_file("prefs.jsonl", data, n), keys, 3, num, 1, 1, &t), "prefs.jsonl");
    leash_table_free(&t);
    return 0;
}
