/* libFuzzer: GGUF files (src/gguf.c, gguf_quant.c, gguf_model.c, gguf_tokenizer.c): the container, every
 * metadata accessor on every key, every tensor dequantised, the tokenizer (an encode and a decode when it
 * loads), then the whole file as a model (config and weights) when its sizes are small. */
#include <stdint.h>

#include "fuzz_common.h"
#include "leash/gguf.h"
#include "leash/gpt.h"

static void use_metadata(const leash_gguf *g) {
    for (int i = 0; i < leash_gguf_num_keys(g); i++) {
        const char *k = leash_gguf_key(g, i), *s;
        int64_t v;
        double f;
        int b, et;
        size_t len;
        uint64_t n;
        leash_gguf_get_int(g, k, &v), leash_gguf_get_float(g, k, &f), leash_gguf_get_bool(g, k, &b);
        leash_gguf_get_string(g, k, &s, &len);
        if (leash_gguf_get_array(g, k, &et, &n) == 0)
            for (uint64_t j = 0; j < n && j < 64; j++)
                leash_gguf_array_int(g, k, j, &v), leash_gguf_array_float(g, k, j, &f), leash_gguf_array_string(g, k, j, &s, &len);
    }
}

/* Parameters of a configuration, roughly: the model is built only when it is small. */
static double model_size(const leash_gpt_config *c) {
    double C = c->n_embd, I = leash_gpt_mlp_width(c), hs = leash_gpt_head_size(c);
    return C * c->vocab_size * 2 + C * c->n_positions + c->n_layer * (4.0 * C * hs * c->n_head + 3.0 * C * I);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = fuzz_file("x.gguf", data, n);
    leash_gguf *g;
    int rc = leash_gguf_open(&g, path);
    fuzz_check(rc, "x.gguf");
    if (rc) return 0;
    use_metadata(g);
    for (int i = 0; i < leash_gguf_num_tensors(g); i++) {
        const leash_gguf_tensor *t = leash_gguf_tensor_at(g, i);
        if (t->numel > (1 << 20) || leash_gguf_find_tensor(g, t->name) != t) continue;
        float *x = malloc((size_t)t->numel * sizeof *x);
        fuzz_check(leash_gguf_read_f32(g, t, x), "x.gguf");
        free(x);
    }
    leash_gguf_close(g);
    leash_tokenizer *tok = NULL; // the tokenizer, through the tokenizer.json document src/gguf_tokenizer.c builds
    rc = leash_tokenizer_load_dir(&tok, path);
    fuzz_check(rc, "x.gguf");
    if (!rc) fuzz_use_tokenizer(tok);
    leash_tokenizer_free(tok);
    leash_gpt_config cfg;
    rc = leash_gguf_load_config(path, &cfg);
    fuzz_check(rc, "x.gguf");
    if (rc || model_size(&cfg) > 4e6) return 0;
    leash_gpt *m = NULL;
    fuzz_check(leash_gpt_load(&m, path), "x.gguf");
    leash_gpt_free(m);
    return 0;
}
