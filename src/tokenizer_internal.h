/* Between tokenizer.c and gguf_tokenizer.c: a GGUF file's tokenizer is turned into the tokenizer.json
 * document Hugging Face would write, which then goes through the one tokenizer.json reader. */
#ifndef LEASH_TOKENIZER_INTERNAL_H
#define LEASH_TOKENIZER_INTERNAL_H

#include <cjson/cJSON.h>

#include "leash/tokenizer.h"

/* A tokenizer from a parsed tokenizer.json document; path names it in messages. */
int leash_tokenizer_from_document(leash_tokenizer **out, const cJSON *root, const char *path);

/* From a GGUF file's tokenizer.* metadata: the equivalent tokenizer.json document and a
 * tokenizer_config.json document (chat template, bos/eos/pad tokens). Caller frees both (cJSON_Delete). */
int leash_gguf_tokenizer_documents(const char *path, cJSON **tokenizer_json, cJSON **tokenizer_config);

#endif
