/* Byte-level BPE (GPT-2, and the Llama 3 / Qwen2 / SmolLM2 tokenizer.json files): load vocab.json +
 * merges.txt or a Hugging Face tokenizer.json, encode text to ids and decode ids to bytes. GPT-2's files
 * use GPT-2's pre-tokenisation regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (PCRE2, Unicode properties), the byte-to-unicode alphabet, and lowest-rank-first merges.
 * Any byte string round-trips (when the vocabulary has all 256 byte tokens): bytes that are not valid
 * UTF-8 are encoded byte by byte.
 * Also trains a tokenizer of the same kind from a corpus and writes the same two files. */
#ifndef LEASH_TOKENIZER_H
#define LEASH_TOKENIZER_H

#include <stddef.h>

typedef struct leash_tokenizer leash_tokenizer;

/* vocab.json + merges.txt, as GPT-2 ships them; "<|endoftext|>" is the special token when present. */
int leash_tokenizer_load(leash_tokenizer **out, const char *vocab_path, const char *merges_path);
/* tokenizer.json with model type "BPE", encoding as Hugging Face's tokenizers does with
 * add_special_tokens=False (how transformers encodes a chat template's output): the pre-tokenizer as the
 * file gives it (ByteLevel with or without its regex, Split with a regex or string and behavior Isolated,
 * Digits, or a Sequence of them ending in ByteLevel), the model's ignore_merges, and added tokens (matched
 * in the text first, leftmost-longest: those with normalized false, then those with normalized true in
 * what is left; "special" says which allow_special 0 leaves as text). A byte the vocabulary has no token
 * for is left out of encodings, as tokenizers does (SmolLM2's vocabulary lacks 21 bytes). A normalizer
 * must be absent or NFC, which is not applied: input is assumed to be NFC already. A post_processor may
 * only put special tokens before the text (Llama 3's <|begin_of_text|>; tokenizers adds it only with
 * add_special_tokens, and leash never: a prompt writes its BOS itself). Every other key, type or option
 * that could change an encoding (dropout, unk_token or byte_fallback with bytes missing,
 * continuing_subword_prefix, lstrip, truncation, ...) is an error naming it; keys that cannot (offsets
 * options, the decoder's options, "version") are listed in src/tokenizer.c. */
int leash_tokenizer_load_json(leash_tokenizer **out, const char *path);
/* A model directory: tokenizer.json if present, else vocab.json + merges.txt. Or a GGUF file (llama.cpp's
 * format) with a byte-level BPE ("gpt2") tokenizer: its tokens, merges, token types and pre-tokenizer name
 * ("gpt-2", "smollm", "llama-bpe", "qwen2") become the tokenizer.json document Hugging Face has for the
 * model, read as above (src/gguf_tokenizer.c). */
int leash_tokenizer_load_dir(leash_tokenizer **out, const char *dir);
void leash_tokenizer_free(leash_tokenizer *tok);
/* Copies a directory's tokenizer files (vocab.json, merges.txt, tokenizer.json) and what transformers reads
 * beside them (tokenizer_config.json with its chat template, chat_template.jinja, special_tokens_map.json,
 * generation_config.json): those present, byte for byte, atomically, so a model directory leash writes
 * carries its tokenizer and chat metadata. From a GGUF file it writes tokenizer.json (the document above)
 * and tokenizer_config.json (tokenizer.chat_template, bos/eos/pad/unk tokens). */
int leash_tokenizer_copy(const char *from_dir, const char *to_dir);

int leash_tokenizer_vocab_size(const leash_tokenizer *tok); /* max id + 1 */
/* The id of a special token such as "<|endoftext|>", or -1. */
int leash_tokenizer_special_id(const leash_tokenizer *tok, const char *text);
/* The token that ends a text for a model: its config's eos_token_id when it has one (model_eos >= 0:
 * Llama 3's <|end_of_text|>, an instruct model's <|im_end|>), else the tokenizer's <|endoftext|>, else -1. */
int leash_tokenizer_eos(const leash_tokenizer *tok, int model_eos);

/* Encodes len bytes of text. With allow_special, special-token strings in the text become their ids;
 * without, they are plain text (tokenizers' split_special_tokens, tiktoken's encode_ordinary; added tokens
 * that are not special still match, as in tokenizers). *ids is grown with realloc as needed (may start NULL, cap 0). */
int leash_tokenizer_encode(const leash_tokenizer *tok, const char *text, size_t len, int allow_special, int **ids,
                           size_t *n_ids, size_t *cap);
/* Appends the bytes of ids to *out (grown with realloc; NUL-terminated for convenience). */
int leash_tokenizer_decode(const leash_tokenizer *tok, const int *ids, size_t n_ids, char **out, size_t *len,
                           size_t *cap);
/* A copy of len bytes as valid UTF-8: each byte that does not start a valid sequence becomes U+FFFD
 * (as Python's errors="replace"), so decoded text can go into JSON. Caller frees. */
char *leash_utf8_sanitize(const char *s, size_t len);

/* The bytes of one id (not NUL-terminated), or NULL for an id outside the vocabulary. */
const char *leash_tokenizer_token(const leash_tokenizer *tok, int id, int *len);

/* Trains a byte-level BPE of at most vocab_size ids (256 bytes + merges + "<|endoftext|>", in GPT-2's id
 * order) on len bytes of text, merging the most frequent adjacent pair (ties: lowest ids) while one
 * occurs at least min_frequency times; writes dir/vocab.json and dir/merges.txt atomically. */
int leash_tokenizer_train(const char *text, size_t len, int vocab_size, int min_frequency, const char *dir);

#endif
