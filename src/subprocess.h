/* A command run as a line-by-line JSON peer: leash writes one request line to its stdin and reads one
 * answer line from its stdout, with a timeout. Used by the external judge (judge.c) and the reward commands
 * (src/scorer.c). Internal to the library. */
#ifndef LEASH_SUBPROCESS_H
#define LEASH_SUBPROCESS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int to, from;      // its stdin (we write), its stdout (we read)
    char buf[1 << 16]; // bytes read, not yet consumed
    size_t n;
    const char *cmd;
    const char *what;  // "judge command", "reward command": how messages name it
} leash_subprocess;

/* Starts cmd with /bin/sh -c, in a process group of its own. */
int subprocess_start(leash_subprocess *x, const char *cmd, const char *what);
/* Sends request (one line, no newline) as request number id, and reads the answer line into answer (cap
 * bytes) within timeout_s, which bounds the writing as well as the reading. A command that ended, does not
 * read, does not answer, or writes an over-long line is an error that says which; a stop request
 * (include/leash/stop.h: SIGINT, SIGTERM) ends the wait at once. A command that hangs or is interrupted is
 * stopped with its whole process group; a command that closed its input never kills us with SIGPIPE. */
int subprocess_request(leash_subprocess *x, double timeout_s, int id, const char *request, char *answer, size_t cap);
/* The one client of scorers and judges (JSON objects, one line each way): subprocess_request_object makes the
 * request {"id": id} (NULL when out of memory) for the caller to add its fields to; subprocess_call sends it
 * (consumed, even on an error; NULL is out of memory) and sets *answer to the answer line (malloc'd, at most
 * SUBPROCESS_ANSWER_MAX - 1 bytes; NULL on an error), to be checked by a subprocess_parse_* below. */
#define SUBPROCESS_ANSWER_MAX (1 << 16)
cJSON *subprocess_request_object(int id);
int subprocess_call(leash_subprocess *x, double timeout_s, int id, cJSON *req, char **answer);
/* Closes its input, gives it a moment to exit, then ends its whole process group (SIGTERM, SIGKILL). */
void subprocess_stop(leash_subprocess *x);

/* The answers, checked (fuzzed by fuzz/fuzz_answers.c): a JSON object carrying the request's "id", and
 * the reward command's finite "reward", or the judge's "preferred": "a" | "b" with an optional finite
 * "margin" >= 0 (NAN when absent). Errors quote the answer. */
int subprocess_parse_reward(const char *line, int id, double *reward);
/* The same for the command `what` names ("reward command cmd1"), and its optional "metrics": an object of named
 * finite numbers ({"gold/correct": 1, ...}), detached into *metrics (to cJSON_Delete; NULL when absent) when
 * metrics is not NULL. */
int subprocess_parse_scored(const char *line, int id, const char *what, double *reward, cJSON **metrics);
int subprocess_parse_judge(const char *line, int id, int *pref_a, double *margin);

#endif
