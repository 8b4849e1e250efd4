/* A command run as a line-by-line JSON peer: leash writes one request line to its stdin and reads one
 * answer line from its stdout, with a timeout. Used by the external judge (judge.c) and the reward command
 * (rl.c). Internal to the library. */
#ifndef LEASH_SUBPROCESS_H
#define LEASH_SUBPROCESS_H

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
/* Closes its input, gives it a moment to exit, then ends its whole process group (SIGTERM, SIGKILL). */
void subprocess_stop(leash_subprocess *x);

/* The answers, checked (fuzzed by fuzz/fuzz_answers.c): a JSON object carrying the request's "id", and
 * the reward command's finite "reward", or the judge's "preferred": "a" | "b" with an optional finite
 * "margin" >= 0 (NAN when absent). Errors quote the answer. */
int subprocess_parse_reward(const char *line, int id, double *reward);
int subprocess_parse_judge(const char *line, int id, int *pref_a, double *margin);

#endif
