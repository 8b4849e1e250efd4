/* Between tokenizer.c, tokenizer_train.c and gguf_tokenizer.c: a GGUF file's tokenizer is turned into the
 * tokenizer.json document Hugging Face would write, which then goes through the one tokenizer.json reader;
 * training uses the loader's byte alphabet, hashes and GPT-2 pattern. */
#ifndef LEASH_TOKENIZER_INTERNAL_H
#define LEASH_TOKENIZER_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "leash/tokenizer.h"

/* A tokenizer from a parsed tokenizer.json document; path names it in messages. */
int leash_tokenizer_from_document(leash_tokenizer **out, const cJSON *root, const char *path);

/* From a GGUF file's tokenizer.* metadata: the equivalent tokenizer.json document and a
 * tokenizer_config.json document (chat template, bos/eos/pad tokens). Caller frees both (cJSON_Delete). */
int leash_gguf_tokenizer_documents(const char *path, cJSON **tokenizer_json, cJSON **tokenizer_config);

/* GPT-2's pre-tokenisation pattern. */
#define LEASH_GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* GPT-2's id order for the 256 byte tokens: printable bytes first, in byte order, then the others. */
void leash_bpe_byte_order(int order[256]);
/* Raw bytes (n) -> the files' spelling in the byte-to-unicode alphabet (out holds >= 2 * n + 1 bytes). */
void leash_bpe_spell(const char *s, int n, char *out);
/* FNV-1a of n bytes; a 64-bit mixer for a merge pair (a << 32 | b); the power of 2 >= 16 above 2n, the size
 * of an open-addressing table for n entries. */
uint64_t leash_bpe_hash_bytes(const char *s, int n);
uint64_t leash_bpe_hash_pair(uint64_t x);
size_t leash_bpe_table_size(size_t n);
#ifdef PCRE2_CODE_UNIT_WIDTH /* files that include pcre2.h */
/* Compiles a pre-tokenisation pattern (a regex, or with literal a plain string) for UTF-8 text, JIT when it
 * can; where names it in messages. */
int leash_bpe_compile(const char *pattern, int literal, const char *where, pcre2_code **out);
#endif

#endif
