/* libFuzzer: JSONL data files (preference pairs with an optional margin; the same reader serves prompts). */
#include <cjson/cJSON.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "leash/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const char *const keys[] = {"prompt", "chosen", "rejected"}, *const num[] = {"margin"};
    leash_table t = {0};
    fuzz_check(leash_jsonl_load(fuzz_file("prefs.jsonl", data, n), keys, 3, num, 1, 1, &t), "prefs.jsonl");
    leash_table_free(&t);
    // prompts with their other columns for a scorer: every kept row's columns are one JSON object's text
    static const char *const reserved[] = {"id", "response", "completion"};
    if (!leash_jsonl_load_rest(fuzz_file("prompts.jsonl", data, n), keys, 1, reserved, 3, &t)) {
        for (int r = 0; r < t.n; r++) {
            cJSON *o = cJSON_Parse(t.rest[r]);
            if (!cJSON_IsObject(o)) {
                fprintf(stderr, "fuzz: row %d's columns are not a JSON object: %s\n", r, t.rest[r]);
                abort();
            }
            cJSON_Delete(o);
        }
    } else fuzz_check(1, "prompts.jsonl");
    leash_table_free(&t);
    return 0;
}
