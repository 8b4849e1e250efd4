/* libFuzzer: the safetensors reader (header, offsets, shapes, dtypes, then every tensor's data). */
#include <stdint.h>

#include "fuzz_common.h"
#include "leash/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = fuzz_file("x.safetensors", data, n);
    leash_st_file st;
    int rc = leash_st_open(&st, path);
    fuzz_check(rc, "x.safetensors");
    if (rc) return 0;
    for (int i = 0; i < st.n; i++) {
        const leash_st_entry *e = &st.entries[i];
        if (e->numel > ((size_t)1 << 20)) continue;
        float *dst = malloc((e->numel ? e->numel : 1) * sizeof *dst);
        fuzz_check(leash_st_read_f32(&st, e, dst), "x.safetensors");
        free(dst);
    }
    leash_st_close(&st);
    return 0;
}
