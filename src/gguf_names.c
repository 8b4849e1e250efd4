/* llama.cpp's names for leash's (Hugging Face's) tensors and the converter's layout changes: see
 * src/gguf_internal.h. One table serves the reader (gguf_model.c) and the writer (gguf_write.c). */
#include <stdio.h>
#include <string.h>

#include "gguf_internal.h"

typedef struct {
    const char *leash, *gguf; /* name stems after "model.layers.N." / "h.N." and "blk.N." */
    int how;                  /* LEASH_GGUF_* */
} name_map;

enum { AS_IS = LEASH_GGUF_AS_IS, PERMUTED = LEASH_GGUF_PERMUTED, TRANSPOSED = LEASH_GGUF_TRANSPOSED };

static const name_map llama_layer[] = {
    {"input_layernorm.weight", "attn_norm.weight", AS_IS},  {"self_attn.q_proj.weight", "attn_q.weight", PERMUTED},
    {"self_attn.q_proj.bias", "attn_q.bias", PERMUTED},     {"self_attn.k_proj.weight", "attn_k.weight", PERMUTED},
    {"self_attn.k_proj.bias", "attn_k.bias", PERMUTED},     {"self_attn.v_proj.weight", "attn_v.weight", AS_IS},
    {"self_attn.v_proj.bias", "attn_v.bias", AS_IS},        {"self_attn.o_proj.weight", "attn_output.weight", AS_IS},
    {"self_attn.o_proj.bias", "attn_output.bias", AS_IS},   {"post_attention_layernorm.weight", "ffn_norm.weight", AS_IS},
    {"mlp.gate_proj.weight", "ffn_gate.weight", AS_IS},     {"mlp.gate_proj.bias", "ffn_gate.bias", AS_IS},
    {"mlp.up_proj.weight", "ffn_up.weight", AS_IS},         {"mlp.up_proj.bias", "ffn_up.bias", AS_IS},
    {"mlp.down_proj.weight", "ffn_down.weight", AS_IS},     {"mlp.down_proj.bias", "ffn_down.bias", AS_IS}};
static const name_map llama_global[] = {{"model.embed_tokens.weight", "token_embd.weight", AS_IS},
                                        {"model.norm.weight", "output_norm.weight", AS_IS},
                                        {"lm_head.weight", "output.weight", AS_IS}};
static const name_map gpt2_layer[] = {
    {"ln_1.weight", "attn_norm.weight", AS_IS},          {"ln_1.bias", "attn_norm.bias", AS_IS},
    {"attn.c_attn.weight", "attn_qkv.weight", TRANSPOSED}, {"attn.c_attn.bias", "attn_qkv.bias", AS_IS},
    {"attn.c_proj.weight", "attn_output.weight", TRANSPOSED}, {"attn.c_proj.bias", "attn_output.bias", AS_IS},
    {"ln_2.weight", "ffn_norm.weight", AS_IS},           {"ln_2.bias", "ffn_norm.bias", AS_IS},
    {"mlp.c_fc.weight", "ffn_up.weight", TRANSPOSED},    {"mlp.c_fc.bias", "ffn_up.bias", AS_IS},
    {"mlp.c_proj.weight", "ffn_down.weight", TRANSPOSED}, {"mlp.c_proj.bias", "ffn_down.bias", AS_IS}};
static const name_map gpt2_global[] = {{"wte.weight", "token_embd.weight", AS_IS},
                                       {"wpe.weight", "position_embd.weight", AS_IS},
                                       {"ln_f.weight", "output_norm.weight", AS_IS},
                                       {"ln_f.bias", "output_norm.bias", AS_IS}};

#define COUNT(a) (sizeof a / sizeof a[0])

static const name_map *find(const name_map *map, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(map[i].leash, name)) return &map[i];
    return NULL;
}

int leash_gguf_tensor_name(const leash_gpt_config *cfg, const char *name, char *out, size_t size, int *how) {
    int gpt2 = cfg->arch == LEASH_ARCH_GPT2, layer = -1, at = 0;
    const name_map *m;
    if (sscanf(name, gpt2 ? "h.%d.%n" : "model.layers.%d.%n", &layer, &at) == 1 && at > 0)
        m = gpt2 ? find(gpt2_layer, COUNT(gpt2_layer), name + at) : find(llama_layer, COUNT(llama_layer), name + at);
    else
        m = gpt2 ? find(gpt2_global, COUNT(gpt2_global), name) : find(llama_global, COUNT(llama_global), name);
    if (!m) return 0;
    if (layer >= 0) snprintf(out, size, "blk.%d.%s", layer, m->gguf);
    else snprintf(out, size, "%s", m->gguf);
    // Qwen2's rotary is NEOX (rotate-half, as Hugging Face's): stored unpermuted
    *how = m->how == PERMUTED && !strcmp(cfg->model_type, "qwen2") ? AS_IS : m->how;
    return 1;
}

int64_t leash_gguf_permuted_row(int64_t r, int hs) {
    int64_t h = r / hs, w = r % hs;
    return h * hs + (w % 2) * (hs / 2) + w / 2;
}
