/* JSONL datasets: see include/leash/data.h. */
#define _POSIX_C_SOURCE 200809L
#include "leash/data.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "leash/error.h"
#include "leash/fileio.h"
#include "leash/tokenizer.h"

/* Whether line (n bytes, NUL-terminated at n) holds a NUL: a raw 0 byte, or the escape \u0000 in a string
 * (an escaped backslash before "u0000" is text, not an escape). */
static int has_nul(const char *line, size_t n) {
    if (strlen(line) != n) return 1;
    for (size_t i = 0; i + 1 < n; i++)
        if (line[i] == '\\') {
            if (line[i + 1] == 'u' && i + 6 <= n && !memcmp(line + i + 2, "0000", 4)) return 1;
            i++; // the escaped character
        }
    return 0;
}

/* A copy of a string of the file, invalid UTF-8 bytes replaced by U+FFFD (each adds 2 bytes: counted). */
static char *copy_valid(const char *s, long *invalid) {
    size_t n = strlen(s);
    char *v = leash_utf8_sanitize(s, n);
    if (v) *invalid += (long)(strlen(v) - n) / 2;
    return v;
}

void leash_table_free(leash_table *t) {
    for (int c = 0; t->str && c < t->n_str; c++) {
        for (int r = 0; t->str[c] && r < t->n; r++) free(t->str[c][r]);
        free(t->str[c]);
    }
    for (int c = 0; t->num && c < t->n_num; c++) free(t->num[c]);
    for (int r = 0; t->rest && r < t->n; r++) free(t->rest[r]);
    free(t->str);
    free(t->num);
    free(t->rest);
    memset(t, 0, sizeof *t);
}

/* The line's fields other than the string keys, as one JSON object's text (valid UTF-8) into *rest; a field
 * named in reserved is an error naming the line and the field. */
static int rest_of(cJSON *o, const char *path, int line, const char *const *str_keys, int n_str, const char *const *reserved,
                   int n_reserved, char **rest, long *invalid) {
    cJSON *keep = cJSON_CreateObject();
    if (!keep) return leash_fail(LEASH_ENOMEM, "out of memory");
    for (cJSON *v = o->child, *next; v; v = next) {
        next = v->next;
        int key = 0;
        for (int c = 0; c < n_str && !key; c++) key = !strcmp(v->string, str_keys[c]);
        for (int c = 0; c < n_reserved && !key; c++)
            if (!strcmp(v->string, reserved[c])) {
                cJSON_Delete(keep);
                return leash_fail(LEASH_EFORMAT, "%s:%d: the column \"%s\" is reserved: the scorer's request carries its own \"%s\"; "
                                                 "rename the column", path, line, v->string, v->string);
            }
        if (!key) cJSON_AddItemToObject(keep, v->string, cJSON_DetachItemViaPointer(o, v));
    }
    char *text = cJSON_PrintUnformatted(keep);
    cJSON_Delete(keep);
    *rest = text ? copy_valid(text, invalid) : NULL;
    free(text);
    return *rest ? LEASH_OK : leash_fail(LEASH_ENOMEM, "out of memory");
}

static int load(const char *path, const char *const *str_keys, int n_str, const char *const *num_keys, int n_num,
                int num_optional, int keep_rest, const char *const *reserved, int n_reserved, leash_table *t) {
    char *text;
    size_t len;
    memset(t, 0, sizeof *t);
    int rc = leash_read_file(path, (size_t)4 << 30, &text, &len);
    if (rc) return rc;
    int lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    t->n_str = n_str, t->n_num = n_num;
    t->str = calloc(n_str ? n_str : 1, sizeof *t->str);
    t->num = calloc(n_num ? n_num : 1, sizeof *t->num);
    if (keep_rest) t->rest = calloc(lines, sizeof *t->rest);
    if (!t->str || !t->num || (keep_rest && !t->rest)) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int c = 0; c < n_str && !rc; c++)
        if (!(t->str[c] = calloc(lines, sizeof(char *)))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    for (int c = 0; c < n_num && !rc; c++)
        if (!(t->num[c] = calloc(lines, sizeof(double)))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
    int line = 0;
    for (char *p = text, *next; !rc && p < text + len; p = next) {
        char *eol = memchr(p, '\n', (size_t)(text + len - p));
        next = eol ? eol + 1 : text + len;
        if (eol) *eol = '\0';
        line++;
        char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (!*q) continue;
        if (has_nul(p, (size_t)((eol ? eol : text + len) - p))) {
            rc = leash_fail(LEASH_EFORMAT, "%s:%d: the line holds a NUL character (\\u0000 or a 0 byte), which would cut its text short; "
                                           "remove it from the line", path, line);
            break;
        }
        cJSON *o = cJSON_Parse(p);
        if (!cJSON_IsObject(o)) {
            rc = leash_fail(LEASH_EFORMAT, "%s:%d: not a JSON object%s", path, line,
                            eol ? "" : " (the last line is cut short: was the file truncated?)");
            cJSON_Delete(o);
            break;
        }
        for (int c = 0; c < n_str && !rc; c++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, str_keys[c]);
            if (!cJSON_IsString(v)) rc = leash_fail(LEASH_EFORMAT, "%s:%d: missing string \"%s\"", path, line, str_keys[c]);
            else if (!(t->str[c][t->n] = copy_valid(v->valuestring, &t->invalid_utf8))) rc = leash_fail(LEASH_ENOMEM, "out of memory");
        }
        for (int c = 0; c < n_num && !rc; c++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, num_keys[c]);
            if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) t->num[c][t->n] = v->valuedouble;
            else if ((!v || cJSON_IsNull(v)) && num_optional) t->num[c][t->n] = NAN; // null: not measured
            else rc = leash_fail(LEASH_EFORMAT, "%s:%d: \"%s\" must be a finite number", path, line, num_keys[c]);
        }
        if (!rc && keep_rest) rc = rest_of(o, path, line, str_keys, n_str, reserved, n_reserved, &t->rest[t->n], &t->invalid_utf8);
        cJSON_Delete(o);
        if (!rc) t->n++;
        else for (int c = 0; c < n_str; c++) free(t->str[c][t->n]), t->str[c][t->n] = NULL;
    }
    free(text);
    if (!rc && t->n == 0) rc = leash_fail(LEASH_EFORMAT, "%s: no records", path);
    if (rc) leash_table_free(t);
    return rc;
}

int leash_jsonl_load(const char *path, const char *const *str_keys, int n_str, const char *const *num_keys, int n_num,
                     int num_optional, leash_table *t) {
    return load(path, str_keys, n_str, num_keys, n_num, num_optional, 0, NULL, 0, t);
}

int leash_jsonl_load_rest(const char *path, const char *const *str_keys, int n_str, const char *const *reserved, int n_reserved,
                          leash_table *t) {
    return load(path, str_keys, n_str, NULL, 0, 0, 1, reserved, n_reserved, t);
}
