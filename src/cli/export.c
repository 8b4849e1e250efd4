/* `leash export gguf MODEL OUT.gguf --type T`: a model directory as one GGUF file that llama.cpp (and ollama,
 * LM Studio, ...) load, written as llama.cpp's convert_hf_to_gguf.py would convert it. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "leash/error.h"
#include "leash/gguf.h"
#include "leash/gpt.h"

static const char *usage =
    "usage: leash export gguf MODEL OUT.gguf [--type f32|f16|bf16|q8_0] [--name NAME]\n"
    "\n"
    "Writes MODEL (a leash or Hugging Face model directory: GPT-2, Llama, Qwen2, Mistral, SmolLM2) as the GGUF\n"
    "file llama.cpp's convert_hf_to_gguf.py would make of it: llama.cpp's tensor names and layouts, its\n"
    "hyperparameter keys, and the tokenizer of MODEL (tokenizer.json or vocab.json + merges.txt, with\n"
    "tokenizer_config.json's special tokens and chat template). A PEFT LoRA directory is merged into its base\n"
    "first (as leash lora merge does). OUT.gguf is replaced whole or not at all.\n"
    "\n"
    "  --type T     the 2-D weights' type (default f16): f32, f16, bf16, or q8_0 (8-bit blocks of 32; a weight\n"
    "               whose rows are not whole blocks is written f16). Norms and biases are always f32.\n"
    "  --name NAME  general.name (default: MODEL's directory name)\n";

static int parse_type(const char *s, int *type) {
    const char *names[] = {"f32", "f16", "bf16", "q8_0"};
    const int types[] = {LEASH_GGML_F32, LEASH_GGML_F16, LEASH_GGML_BF16, LEASH_GGML_Q8_0};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) return *type = types[i], 0;
    fprintf(stderr, "leash export: --type '%s' is not one of f32, f16, bf16, q8_0\n", s);
    return -1;
}

/* The directory whose tokenizer goes into the file: MODEL's, or (an adapter without one) its base's. */
static const char *tokenizer_dir(const char *dir, const leash_gpt *m) {
    const char *names[] = {"tokenizer.json", "vocab.json"};
    for (int i = 0; i < 2; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        if (f) return fclose(f), dir;
    }
    return leash_gpt_source_dir(m) ? leash_gpt_source_dir(m) : dir;
}

int cli_export(int argc, char **argv) {
    const char *name = NULL, *type_name = "f16";
    int type = LEASH_GGML_F16, ch;
    enum { O_TYPE = 256, O_NAME };
    static const struct option opts[] = {{"type", 1, 0, O_TYPE}, {"name", 1, 0, O_NAME}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case O_TYPE:
            if (parse_type(optarg, &type)) return 2;
            type_name = optarg;
            break;
        case O_NAME: name = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (argc - optind != 3 || strcmp(argv[optind], "gguf")) {
        fprintf(stderr, "leash export: need 'gguf MODEL OUT.gguf'\n%s", usage);
        return 2;
    }
    const char *dir = argv[optind + 1], *out = argv[optind + 2];
    leash_gpt *m = NULL, *merged = NULL;
    int rc = leash_gpt_load(&m, dir);
    if (!rc && leash_gpt_lora(m) && (rc = leash_gpt_merge_lora(&merged, m))) rc = leash_fail_wrap(rc, "%s", dir);
    if (!rc) rc = leash_gguf_save(merged ? merged : m, tokenizer_dir(dir, m), out, type, name);
    if (rc) fprintf(stderr, "leash export: %s\n", leash_errmsg());
    else printf("wrote %s (%s%s)\n", out, type_name, merged ? ", LoRA adapters merged" : "");
    leash_gpt_free(merged);
    leash_gpt_free(m);
    return rc ? 1 : 0;
}
