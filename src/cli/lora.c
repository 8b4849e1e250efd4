/* `leash lora merge ADAPTER_DIR OUT_DIR`: folds a PEFT LoRA adapter into its base, W + (alpha / r) B A,
 * and writes a full model directory (with the base's tokenizer) that any tool loads without PEFT. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/gpt.h"
#include "leash/tokenizer.h"

static const char *usage =
    "usage: leash lora merge ADAPTER_DIR OUT_DIR\n"
    "\n"
    "ADAPTER_DIR is a PEFT LoRA directory (adapter_config.json + adapter_model.safetensors), such as the\n"
    "DIR/policy that leash ppo/grpo --lora-r N writes; its base model is the directory its\n"
    "base_model_name_or_path names. OUT_DIR receives the merged model (config.json, model.safetensors) and\n"
    "the tokenizer files of ADAPTER_DIR (or, if it has none, of the base).\n";

int cli_lora(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) return fputs(usage, stdout), 0;
    if (argc != 4 || strcmp(argv[1], "merge")) return fputs(usage, stderr), 2;
    const char *in = argv[2], *out = argv[3];
    leash_gpt *m = NULL, *merged = NULL;
    int rc = leash_gpt_load(&m, in);
    if (!rc && (rc = leash_gpt_merge_lora(&merged, m))) rc = leash_fail_wrap(rc, "%s", in);
    if (!rc) rc = leash_gpt_save(merged, out);
    if (!rc && leash_tokenizer_copy(in, out)) rc = leash_tokenizer_copy(leash_gpt_source_dir(m), out);
    if (rc) fprintf(stderr, "leash lora: %s\n", leash_errmsg());
    else
        printf("merged %s (rank %d, alpha %g) into %s\n", in, leash_gpt_cfg(m)->lora_rank, (double)leash_gpt_cfg(m)->lora_alpha,
               out);
    leash_gpt_free(merged);
    leash_gpt_free(m);
    return rc ? 1 : 0;
}
