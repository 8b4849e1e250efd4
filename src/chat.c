/* Chat templates recognised and rendered without a Jinja engine: see include/leash/chat.h. */
#define _POSIX_C_SOURCE 200809L
#include "leash/chat.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/gguf.h"

/* The known templates, as their models publish them. "@SYSTEM@" stands for the default system message,
 * which differs between models of one family (SmolLM2: "You are a helpful AI assistant named SmolLM,
 * trained by Hugging Face"; Qwen2: "You are a helpful assistant."). */
#define SYSTEM_SLOT "@SYSTEM@"
static const struct {
    int family;
    int has_system;
    const char *text;
} known[] = {
    {LEASH_CHAT_CHATML, 1,
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
     "{{ '<|im_start|>system\\n" SYSTEM_SLOT "<|im_end|>\\n' }}{% endif %}"
     "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {LEASH_CHAT_CHATML, 0,
     "{% for message in messages %}"
     "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {LEASH_CHAT_LLAMA3, 0,
     "{% set loop_messages = messages %}{% for message in loop_messages %}"
     "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
     " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
};

/* ---- a growing string ----------------------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} strbuf;

static void put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p, b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void puts_(strbuf *b, const char *s) { put(b, s, strlen(s)); }

/* ---- canonical form: the template modulo whitespace inside tags and string-literal spelling ---------- */

static int ident_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

/* A string literal at s[*i] (its opening quote) decoded as Jinja (Python) reads it, written back as
 * '...' with \\, \' and \n escaped. Returns 0, or -1 when it is not terminated or uses an escape other
 * than \n \t \r \\ \' \". */
static int canon_literal(const char *s, size_t len, size_t *i, strbuf *b) {
    char q = s[(*i)++];
    put(b, "'", 1);
    while (*i < len && s[*i] != q) {
        char c = s[(*i)++];
        if (c == '\\' && *i < len) {
            char e = s[(*i)++];
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == '\\' || e == '\'' || e == '"' ? e : 0;
            if (!c) return -1; // \x41, \u00e9, ...: not in the known templates, so not recognised
        }
        if (c == '\\') put(b, "\\\\", 2);
        else if (c == '\'') put(b, "\\'", 2);
        else if (c == '\n') put(b, "\\n", 2);
        else put(b, &c, 1);
    }
    if (*i >= len) return -1;
    (*i)++;
    put(b, "'", 1);
    return 0;
}

/* Text outside tags is kept byte for byte; inside {{ }} and {% %} whitespace is dropped except one space
 * between two identifier characters, and every literal is respelled. NULL for an unterminated tag. */
static char *canonical(const char *s, size_t len) {
    strbuf b = {0};
    size_t i = 0;
    while (i < len) {
        if (s[i] == '{' && i + 1 < len && (s[i + 1] == '{' || s[i + 1] == '%')) {
            char close = s[i + 1] == '{' ? '}' : '%';
            put(&b, s + i, 2);
            i += 2;
            int space = 0, closed = 0;
            while (i < len && !closed) {
                char c = s[i];
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                    space = 1, i++;
                } else if (c == close && i + 1 < len && s[i + 1] == '}') {
                    put(&b, s + i, 2);
                    i += 2, closed = 1;
                } else {
                    if (space && b.n && ident_char(b.s[b.n - 1]) && ident_char(c)) put(&b, " ", 1);
                    space = 0;
                    if (c == '\'' || c == '"') {
                        if (canon_literal(s, len, &i, &b)) break;
                    } else {
                        put(&b, &c, 1), i++;
                    }
                }
            }
            if (!closed) {
                free(b.s);
                return NULL;
            }
        } else {
            put(&b, s + i, 1), i++;
        }
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s ? b.s : strdup("");
}

/* The content of a canonical literal's middle (no unescaped quote), decoded; NULL if it holds a quote. */
static char *decode_middle(const char *s, size_t len) {
    char *out = malloc(len + 1);
    size_t k = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\'') {
            free(out);
            return NULL;
        }
        if (s[i] == '\\' && i + 1 < len) {
            i++;
            out[k++] = s[i] == 'n' ? '\n' : s[i];
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

/* Whether canonical text c is known template k; fills *system for a template with a system slot. */
static int matches(const char *c, int k, char **system) {
    char *want = canonical(known[k].text, strlen(known[k].text));
    if (!want) return 0;
    int ok = 0;
    if (!known[k].has_system) {
        ok = strcmp(c, want) == 0;
    } else {
        char *slot = strstr(want, SYSTEM_SLOT);
        size_t pre = (size_t)(slot - want), post = strlen(slot + strlen(SYSTEM_SLOT)), n = strlen(c);
        if (n >= pre + post && memcmp(c, want, pre) == 0 && strcmp(c + n - post, slot + strlen(SYSTEM_SLOT)) == 0)
            ok = (*system = decode_middle(c + pre, n - pre - post)) != NULL;
    }
    free(want);
    return ok;
}

int leash_chat_template_parse(leash_chat_template *t, const char *text, size_t len, const char *source) {
    memset(t, 0, sizeof *t);
    const char *nul = memchr(text, 0, len); // the canonical form is compared as a C string: it would end there
    if (nul)
        return leash_fail(LEASH_EFORMAT, "%s: the chat template holds a NUL byte at byte %zu of %zu; a template is text",
                          source, (size_t)(nul - text), len);
    char *c = canonical(text, len);
    for (size_t k = 0; c && k < sizeof known / sizeof known[0]; k++) {
        char *system = NULL;
        if (matches(c, (int)k, &system)) {
            free(c);
            t->family = known[k].family;
            t->default_system = system;
            t->source = strdup(source);
            if (!t->source) {
                leash_chat_template_free(t);
                return leash_fail(LEASH_ENOMEM, "out of memory");
            }
            return LEASH_OK;
        }
    }
    free(c);
    return leash_fail(LEASH_EFORMAT,
                      "%s: the chat template is not one leash can render (it knows ChatML, as SmolLM2 and Qwen2 "
                      "ship it, and Llama 3's; leash has no Jinja engine); pass the formatted conversation with "
                      "--text instead (leash score; RL prompts: formatted, without --chat-template)",
                      source);
}

void leash_chat_template_free(leash_chat_template *t) {
    if (!t) return;
    free(t->default_system);
    free(t->source);
    memset(t, 0, sizeof *t);
}

const char *leash_chat_family_name(int family) {
    return family == LEASH_CHAT_CHATML ? "ChatML" : family == LEASH_CHAT_LLAMA3 ? "Llama 3" : "unknown";
}

/* ---- loading ------------------------------------------------------------------------------------ */

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* tokenizer_config.json's "chat_template": a string, or a list of {"name", "template"} ("default" used). */
static int template_from_config(leash_chat_template *t, const char *path, const char *dir) {
    char *text = NULL;
    int rc = leash_read_file(path, 64 << 20, &text, NULL);
    if (rc) return rc;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return leash_fail(LEASH_EFORMAT, "%s: malformed JSON", path);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template"), *pick = ct;
    if (cJSON_IsArray(ct)) {
        pick = NULL;
        const cJSON *e;
        cJSON_ArrayForEach(e, ct) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0)
                pick = cJSON_GetObjectItemCaseSensitive(e, "template");
        }
        if (!pick) rc = leash_fail(LEASH_EFORMAT, "%s: \"chat_template\" is a list without a \"default\" entry", path);
    }
    if (!rc && !ct)
        rc = leash_fail(LEASH_EINVAL,
                        "%s has no chat template (no chat_template.jinja, and %s has no \"chat_template\"); pass the "
                        "formatted conversation with --text instead (leash score; RL prompts: formatted, without "
                        "--chat-template)",
                        dir, path);
    else if (!rc && !cJSON_IsString(pick))
        rc = leash_fail(LEASH_EFORMAT, "%s: \"chat_template\" should be a string, found another JSON type", path);
    if (!rc) rc = leash_chat_template_parse(t, pick->valuestring, strlen(pick->valuestring), path);
    cJSON_Delete(j);
    return rc;
}

/* A GGUF file's tokenizer.chat_template (as llama.cpp's converter copies it from tokenizer_config.json). */
static int template_from_gguf(leash_chat_template *t, const char *path) {
    leash_gguf *g = NULL;
    const char *text = NULL;
    size_t len = 0;
    int rc = leash_gguf_open(&g, path);
    if (!rc) rc = leash_gguf_get_string(g, "tokenizer.chat_template", &text, &len);
    if (rc == 1)
        rc = leash_fail(LEASH_EINVAL, "%s has no chat template (no tokenizer.chat_template key); pass the formatted "
                                      "conversation with --text instead (leash score; RL prompts: formatted, without "
                                      "--chat-template)", path);
    if (!rc) rc = leash_chat_template_parse(t, text, len, path);
    leash_gguf_close(g);
    return rc;
}

int leash_chat_template_load(leash_chat_template *t, const char *model_dir) {
    memset(t, 0, sizeof *t);
    if (leash_gguf_is_file(model_dir)) return template_from_gguf(t, model_dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", model_dir);
    if (is_file(path)) {
        char *text = NULL;
        size_t len = 0;
        int rc = leash_read_file(path, 64 << 20, &text, &len);
        if (!rc) rc = leash_chat_template_parse(t, text, len, path);
        free(text);
        return rc;
    }
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    if (!is_file(path))
        return leash_fail(LEASH_EINVAL,
                          "%s has no chat template (neither chat_template.jinja nor tokenizer_config.json is there); "
                          "pass the formatted conversation with --text instead (leash score; RL prompts: formatted, without "
                          "--chat-template)",
                          model_dir);
    return template_from_config(t, path, model_dir);
}

/* ---- rendering ---------------------------------------------------------------------------------- */

/* The length of a Python whitespace character (str.isspace) at s, or 0. */
static size_t space_at(const unsigned char *s, size_t n) {
    if (n >= 1 && ((s[0] >= 0x09 && s[0] <= 0x0D) || (s[0] >= 0x1C && s[0] <= 0x20))) return 1;
    if (n >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (n < 3) return 0;
    unsigned cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    if ((s[0] & 0xF0) != 0xE0 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    int sp = cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
             cp == 0x205F || cp == 0x3000;
    return sp ? 3 : 0;
}

/* The start of the last trailing whitespace character in s[0, n), or n when s does not end with one. */
static size_t trailing_space(const unsigned char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++)
        if (space_at(s + n - k, k) == k) return n - k;
    return n;
}

/* Jinja's trim filter: Python's str.strip(). */
static void put_stripped(strbuf *b, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), a = 0, k, e;
    while ((k = space_at(u + a, n - a)) > 0) a += k;
    while (n > a && (e = trailing_space(u + a, n - a)) < n - a) n = a + e;
    put(b, s + a, n - a);
}

int leash_chat_render(const leash_chat_template *t, const leash_chat_message *msgs, int n, int add_generation_prompt,
                      const char *bos_token, char **out, size_t *len) {
    strbuf b = {0};
    if (t->family == LEASH_CHAT_LLAMA3 && n > 0 && !bos_token)
        return leash_fail(LEASH_EINVAL, "%s: the Llama 3 chat template starts with bos_token, and the model has none "
                                        "(config.json bos_token_id)", t->source);
    for (int i = 0; i < n; i++) {
        if (t->family == LEASH_CHAT_CHATML) {
            if (i == 0 && t->default_system && strcmp(msgs[0].role, "system") != 0) {
                puts_(&b, "<|im_start|>system\n");
                puts_(&b, t->default_system);
                puts_(&b, "<|im_end|>\n");
            }
            puts_(&b, "<|im_start|>");
            puts_(&b, msgs[i].role);
            puts_(&b, "\n");
            puts_(&b, msgs[i].content);
            puts_(&b, "<|im_end|>\n");
        } else {
            if (i == 0) puts_(&b, bos_token);
            puts_(&b, "<|start_header_id|>");
            puts_(&b, msgs[i].role);
            puts_(&b, "<|end_header_id|>\n\n");
            put_stripped(&b, msgs[i].content);
            puts_(&b, "<|eot_id|>");
        }
    }
    if (add_generation_prompt)
        puts_(&b, t->family == LEASH_CHAT_CHATML ? "<|im_start|>assistant\n"
                                                 : "<|start_header_id|>assistant<|end_header_id|>\n\n");
    if (!b.s && !b.oom) b.s = strdup(""), b.oom = !b.s;
    if (b.oom) {
        free(b.s);
        return leash_fail(LEASH_ENOMEM, "out of memory rendering a chat template");
    }
    *out = b.s;
    if (len) *len = b.n;
    return LEASH_OK;
}
