/* Chat templates without a Jinja engine. A model's chat template (Hugging Face's tokenizer_config.json
 * "chat_template", a chat_template.jinja file, or a GGUF file's tokenizer.chat_template) is a Jinja
 * program; leash recognises the families that cover the models it loads and renders them in C, exactly
 * as transformers' apply_chat_template does:
 *   ChatML (SmolLM2, Qwen2): "<|im_start|>ROLE\nCONTENT<|im_end|>\n" per message, with or without a
 *     default system message that the template inserts when the first message is not a system one
 *     (extracted from the template text); generation prompt "<|im_start|>assistant\n".
 *   Llama 3: bos_token, then "<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>" per message,
 *     CONTENT stripped of leading and trailing whitespace as Python's str.strip() does; generation prompt
 *     "<|start_header_id|>assistant<|end_header_id|>\n\n".
 * A template is recognised by comparing it, modulo whitespace inside Jinja tags and the spelling of string
 * literals (quotes, escapes), with the known template texts; anything else is an error naming its file,
 * never an approximate rendering. */
#ifndef LEASH_CHAT_H
#define LEASH_CHAT_H

#include <stddef.h>

enum { LEASH_CHAT_CHATML = 1, LEASH_CHAT_LLAMA3 = 2 };

typedef struct {
    int family;           /* LEASH_CHAT_* */
    char *default_system; /* ChatML: the system message the template inserts when none is given; NULL: none */
    char *source;         /* the file the template came from, for messages */
} leash_chat_template;

typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} leash_chat_message;

/* Recognises len bytes of template text; source names where it came from in errors. */
int leash_chat_template_parse(leash_chat_template *t, const char *text, size_t len, const char *source);
/* A model directory's template: chat_template.jinja if present, else tokenizer_config.json's
 * "chat_template" (a string, or a list of {"name", "template"} of which "default" is used); or a GGUF
 * file's tokenizer.chat_template. A missing template or an unrecognised one is an error naming the file
 * and saying to pass formatted text instead. */
int leash_chat_template_load(leash_chat_template *t, const char *model_dir);
void leash_chat_template_free(leash_chat_template *t);
/* "ChatML", "Llama 3". */
const char *leash_chat_family_name(int family);

/* Renders n messages (and the generation prompt if add_generation_prompt) into *out, malloc'd and
 * NUL-terminated, as apply_chat_template(messages, tokenize=False) does. bos_token is the text of the
 * model's BOS token: needed by Llama 3 (its template starts with it), ignored by ChatML. */
int leash_chat_render(const leash_chat_template *t, const leash_chat_message *msgs, int n, int add_generation_prompt,
                      const char *bos_token, char **out, size_t *len);

#endif
