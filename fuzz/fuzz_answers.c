/* libFuzzer: the answer lines of a reward command and an external judge (src/subprocess.h): any bytes give
 * a parsed answer or an error that names the command, never a crash. The first byte picks the request id. */
#include <math.h>
#include <stdint.h>

#include "../src/subprocess.h"
#include "fuzz_common.h"

static void check_named(int rc, const char *what) {
    if (rc != LEASH_OK && !strstr(leash_errmsg(), what)) {
        fprintf(stderr, "fuzz: a failure that does not name the %s: %s\n", what, leash_errmsg());
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    int id = n ? data[0] % 4 : 0;
    char *line = malloc(n + 1); // an answer line as subprocess_request gives it: NUL-terminated, no newline
    if (!line) return 0;
    if (n > 1) memcpy(line, data + 1, n - 1);
    line[n > 1 ? n - 1 : 0] = '\0';
    double reward = 0, margin = 0;
    int pref_a = 0;
    check_named(subprocess_parse_reward(line, id, &reward), "reward command");
    cJSON *metrics = NULL; // a scorer's answer with named metrics: checked numbers, detached for the caller
    int rc = subprocess_parse_scored(line, id, "reward command cmd1", &reward, &metrics);
    check_named(rc, "reward command cmd1");
    for (const cJSON *v = metrics ? metrics->child : NULL; v; v = v->next)
        if (rc || !cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            fprintf(stderr, "fuzz: a metric that is not a finite number was accepted: %s\n", v->string);
            abort();
        }
    cJSON_Delete(metrics);
    check_named(subprocess_parse_judge(line, id, &pref_a, &margin), "judge command");
    free(line);
    return 0;
}
