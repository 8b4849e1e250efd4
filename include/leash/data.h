/* JSONL datasets: one JSON object per line, read into columns by key. Prompts ({"prompt"}), preference
 * pairs ({"prompt", "chosen", "rejected", "margin"}), labelled texts ({"text", "sentiment"}) and any user
 * file of those shapes. Every bad line is an error naming file, line and key. */
#ifndef LEASH_DATA_H
#define LEASH_DATA_H

typedef struct {
    int n;        /* rows */
    int n_str, n_num;
    char ***str;  /* [column][row] strings */
    double **num; /* [column][row] numbers (NAN where an optional number is absent) */
    long invalid_utf8; /* bytes of invalid UTF-8 in the strings, each replaced by U+FFFD */
    char **rest;  /* [row] leash_jsonl_load_rest: the line's other fields as one JSON object's text, in the
                   * line's order ("{}" when none); NULL otherwise */
} leash_table;

/* Reads path; every line must hold the string keys; numeric keys are required unless num_optional (then an
 * absent or null number is NAN).
 * Blank lines are skipped. A NUL character (\u0000 or a raw 0 byte) in a line is an error naming it (it would
 * cut the text short); invalid UTF-8 in a string is replaced by U+FFFD and counted, so that every file written
 * from the strings is valid JSON. */
int leash_jsonl_load(const char *path, const char *const *str_keys, int n_str, const char *const *num_keys, int n_num,
                     int num_optional, leash_table *t);
/* The string keys as leash_jsonl_load reads them, and every other field of a line kept in t->rest with its JSON
 * value as written (numbers stay numbers), for passing on (a prompt's columns to a scorer). A field named in
 * reserved is an error naming the file, line and field. */
int leash_jsonl_load_rest(const char *path, const char *const *str_keys, int n_str, const char *const *reserved, int n_reserved,
                          leash_table *t);
void leash_table_free(leash_table *t);

#endif
