/* LoRA's settings, leash_lora_config (what PEFT's adapter_config.json holds: r, lora_alpha, lora_dropout,
 * target_modules), their check, and the PEFT names of the adapted projections. They are not the
 * architecture (leash/config.h): a model gets them when its adapters are made (leash_gpt_add_lora,
 * leash_gpt_load_lora, or a PEFT directory through leash_gpt_load) and holds them, leash_gpt_lora(); adding
 * or merging adapters leaves its leash_gpt_config as it was. The model functions are in leash/gpt.h. */
#ifndef LEASH_LORA_H
#define LEASH_LORA_H

/* LoRA target projections (PEFT's target_modules). Llama family: q_proj k_proj v_proj o_proj gate_proj
 * up_proj down_proj. GPT-2: c_attn (LEASH_LORA_Q: the fused q/k/v), attn.c_proj (O), mlp.c_fc (GATE) and
 * mlp.c_proj (DOWN). */
enum {
    LEASH_LORA_Q = 1, LEASH_LORA_K = 2, LEASH_LORA_V = 4, LEASH_LORA_O = 8,
    LEASH_LORA_GATE = 16, LEASH_LORA_UP = 32, LEASH_LORA_DOWN = 64
};
#define LEASH_LORA_SLOTS 7

/* Low-rank adapters on every layer's targeted projections, W x + (alpha / rank) B A x; the base weights are
 * frozen under them. */
typedef struct {
    int rank;         /* r >= 1: A is (r, in), B is (out, r) */
    float alpha;      /* > 0: the adapters' output is scaled by alpha / r */
    float dropout;    /* 0 <= dropout < 1, kept for adapter_config.json; leash's forwards apply no dropout
                       * (docs/models.md) */
    unsigned targets; /* LEASH_LORA_* bits, not empty, projections of the model's architecture */
} leash_lora_config;

/* Checks the settings for an architecture (LEASH_ARCH_*); a message names the field and its range. */
int leash_lora_config_check(const leash_lora_config *lora, int arch);
/* Parses PEFT target_modules ("q_proj,v_proj", "all-linear") for an architecture into LEASH_LORA_* bits;
 * an unknown name is an error naming it and the choices. */
int leash_lora_parse_targets(const char *list, int arch, unsigned *targets);
/* adapter_config.json's target_modules: short names ("q_proj") or the full module paths PEFT 0.21 writes for
 * all-linear ("model.layers.3.self_attn.q_proj", "transformer.h.0.attn.c_attn"). leash adapts a projection in
 * every layer, so full paths must name it in all n_layer layers; anything else is an error naming it. */
int leash_lora_parse_modules(const char *const *names, int n, int arch, int n_layer, unsigned *targets);
/* The PEFT target_modules names of targets' bits into names (at most max); returns how many. */
int leash_lora_target_names(int arch, unsigned targets, const char **names, int max);

#endif
