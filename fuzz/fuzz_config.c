/* libFuzzer: config.json of a model directory. */
#include <stdint.h>

#include "fuzz_common.h"
#include "leash/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    leash_gpt_config cfg;
    leash_score_stats score;
    fuzz_check(leash_config_load(fuzz_file("config.json", data, n), &cfg, &score), "config.json");
    return 0;
}
