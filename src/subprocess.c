/* A command as a line-by-line JSON peer: see src/subprocess.h.
 *
 * The command runs in a process group of its own, so that it and every process it starts end together
 * when leash stops it (on a timeout, an error, a stop request or the end of the run). Both pipes are
 * non-blocking and one poll() loop writes the request and reads the answer, so that neither a command that
 * never reads its input nor one that never answers can hold leash past the deadline. */
#define _GNU_SOURCE /* pipe2, sigtimedwait */
#include "subprocess.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "leash/error.h"
#include "leash/stop.h"

#define SLICE_MS 100 /* how often a wait looks at the stop flag (a signal also interrupts it at once) */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int subprocess_start(leash_subprocess *x, const char *cmd, const char *what) {
    int in[2], out[2];
    memset(x, 0, sizeof *x);
    x->to = x->from = -1;
    x->cmd = cmd, x->what = what;
    if (pipe2(in, O_CLOEXEC)) return leash_fail(LEASH_EIO, "cannot create pipes for the %s: %s", what, strerror(errno));
    if (pipe2(out, O_CLOEXEC)) {
        close(in[0]), close(in[1]);
        return leash_fail(LEASH_EIO, "cannot create pipes for the %s: %s", what, strerror(errno));
    }
    x->pid = fork();
    if (x->pid < 0) {
        int err = errno;
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        x->pid = 0;
        return leash_fail(LEASH_EIO, "cannot start the %s: %s", what, strerror(err));
    }
    if (x->pid == 0) {
        setpgid(0, 0); // a group of its own: stopping it ends every process it started
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(x->pid, x->pid); // also here, so that the group exists before we could signal it
    close(in[0]), close(out[1]);
    x->to = in[1], x->from = out[0];
    fcntl(x->to, F_SETFL, fcntl(x->to, F_GETFL) | O_NONBLOCK);
    fcntl(x->from, F_SETFL, fcntl(x->from, F_GETFL) | O_NONBLOCK);
    return LEASH_OK;
}

/* Whether the group leader has exited within wait_s (not reaped, so its pid, the group's id, stays ours). */
static int exited_within(pid_t pid, double wait_s) {
    double end = now_s() + wait_s;
    struct timespec pause = {0, 5 * 1000 * 1000};
    for (;;) {
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) return 1;
        if (now_s() >= end) return 0;
        nanosleep(&pause, NULL);
    }
}

/* Ends the command and its whole process group: a moment (grace_s) to exit by itself (its input is
 * closed), then SIGTERM, then SIGKILL for whatever of the group is left; reaps it. Returns its wait status. */
static int finish(leash_subprocess *x, double grace_s) {
    if (x->to >= 0) close(x->to);
    if (x->from >= 0) close(x->from);
    x->to = x->from = -1;
    int st = 0;
    if (x->pid <= 0) return st;
    if (!exited_within(x->pid, grace_s)) {
        kill(-x->pid, SIGTERM);
        if (!exited_within(x->pid, 0.2)) kill(-x->pid, SIGKILL);
    }
    kill(-x->pid, SIGKILL); // the rest of its group (a script's children), before its id can be reused
    while (waitpid(x->pid, &st, 0) < 0 && errno == EINTR) {}
    x->pid = 0;
    return st;
}

void subprocess_stop(leash_subprocess *x) { finish(x, 0.2); }

/* The command's output closed: ends what is left of it and describes how it ended. */
static int ended_error(leash_subprocess *x, int id) {
    int st = finish(x, 0.05);
    return leash_fail(LEASH_EIO, "%s '%s' ended (%s %d) before answering request %d; run it by hand on the request line "
                                 "to see why",
                      x->what, x->cmd, WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                      id);
}

/* Takes one answer line out of the buffer into line (cap bytes): 1 when there was one, 0 when not yet,
 * or an error. */
static int take_line(leash_subprocess *x, int id, char *line, size_t cap) {
    char *nl = memchr(x->buf, '\n', x->n);
    if (!nl) {
        if (x->n < sizeof x->buf) return 0;
        return leash_fail(LEASH_EFORMAT, "%s: answer %d is too long: more than %zu bytes without a newline; an answer is "
                                         "one JSON line of at most %zu bytes (the id and the number, not the text)",
                          x->what, id, sizeof x->buf, cap - 1);
    }
    size_t k = (size_t)(nl - x->buf);
    if (k >= cap) return leash_fail(LEASH_EFORMAT, "%s: answer %d is %zu bytes long; at most %zu are accepted", x->what, id, k, cap - 1);
    memcpy(line, x->buf, k);
    line[k] = '\0';
    memmove(x->buf, nl + 1, x->n - k - 1);
    x->n -= k + 1;
    return 1;
}

/* One poll() loop: writes what is left of the request while it reads what the command answers.
 * A command that closed its input gives EPIPE, never a SIGPIPE that kills us. */
static int exchange(leash_subprocess *x, double timeout_s, int id, const char *request, char *line, size_t cap) {
    size_t len = strlen(request), sent = 0; // the request and its newline: len + 1 bytes
    double deadline = now_s() + timeout_s;
    for (;;) {
        if (sent == len + 1) {
            int got = take_line(x, id, line, cap);
            if (got) return got < 0 ? got : LEASH_OK;
        } else if (x->n == sizeof x->buf) {
            return leash_fail(LEASH_EFORMAT, "%s: wrote %zu bytes before reading request %d; answer each request with one line",
                              x->what, x->n, id);
        }
        double left = deadline - now_s();
        if (leash_stop_requested() || left <= 0) {
            int stop = leash_stop_requested();
            subprocess_stop(x);
            if (stop)
                return leash_fail(LEASH_EIO, "stopped by a signal while waiting for the %s '%s' (request %d); it was "
                                             "stopped with its child processes",
                                  x->what, x->cmd, id);
            if (sent < len + 1)
                return leash_fail(LEASH_EIO, "%s '%s' did not read request %d within %g s (%zu of %zu bytes taken); it was "
                                             "stopped with its child processes (it must read each request line as it comes)",
                                  x->what, x->cmd, id, timeout_s, sent, len + 1);
            return leash_fail(LEASH_EIO, "%s '%s' did not answer request %d within %g s; it was stopped with its child "
                                         "processes (raise the timeout if it is just slow; a command that buffers its "
                                         "output must flush each answer line)",
                              x->what, x->cmd, id, timeout_s);
        }
        struct pollfd pfd[2] = {{x->from, POLLIN, 0}, {x->to, POLLOUT, 0}};
        int ms = left * 1000 < SLICE_MS ? (int)(left * 1000) + 1 : SLICE_MS;
        int r = poll(pfd, sent < len + 1 ? 2 : 1, ms);
        if (r < 0 && errno != EINTR) return leash_fail(LEASH_EIO, "%s: poll: %s", x->what, strerror(errno));
        if (r <= 0) continue;
        if (pfd[0].revents) {
            ssize_t k = read(x->from, x->buf + x->n, sizeof x->buf - x->n);
            if (k == 0) return ended_error(x, id); // its output closed
            if (k < 0 && errno != EINTR && errno != EAGAIN) return leash_fail(LEASH_EIO, "%s: read: %s", x->what, strerror(errno));
            if (k > 0) x->n += (size_t)k;
        }
        if (sent < len + 1 && pfd[1].revents) {
            ssize_t k = sent < len ? write(x->to, request + sent, len - sent) : write(x->to, "\n", 1);
            if (k < 0 && errno == EPIPE) return ended_error(x, id);
            if (k < 0 && errno != EINTR && errno != EAGAIN)
                return leash_fail(LEASH_EIO, "cannot send request %d to %s '%s': %s", id, x->what, x->cmd, strerror(errno));
            if (k > 0) sent += (size_t)k;
        }
    }
}

int subprocess_request(leash_subprocess *x, double timeout_s, int id, const char *request, char *line, size_t cap) {
    if (x->pid <= 0 || x->to < 0)
        return leash_fail(LEASH_EIO, "%s '%s' has already ended; request %d cannot be sent", x->what, x->cmd, id);
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int rc = exchange(x, timeout_s, id, request, line, cap);
    struct timespec zero = {0, 0}; // consume a SIGPIPE a write raised before unblocking it
    sigset_t pending;
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) && !sigismember(&old, SIGPIPE))
        sigtimedwait(&pipe_set, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* ---- the one JSON-line client of scorers and judges ----------------------------------------------- */

cJSON *subprocess_request_object(int id) {
    cJSON *req = cJSON_CreateObject();
    if (req && !cJSON_AddNumberToObject(req, "id", id)) cJSON_Delete(req), req = NULL;
    return req;
}

int subprocess_call(leash_subprocess *x, double timeout_s, int id, cJSON *req, char **answer) {
    *answer = NULL;
    char *line = req ? cJSON_PrintUnformatted(req) : NULL;
    cJSON_Delete(req);
    if (!line || !(*answer = malloc(SUBPROCESS_ANSWER_MAX))) {
        free(line);
        return leash_fail(LEASH_ENOMEM, "out of memory");
    }
    int rc = subprocess_request(x, timeout_s, id, line, *answer, SUBPROCESS_ANSWER_MAX);
    free(line);
    if (rc) free(*answer), *answer = NULL;
    return rc;
}

/* ---- the answers --------------------------------------------------------------------------------- */

/* The largest |reward| (and judge margin) accepted: its square, in the advantages' variance, stays far inside
 * float32 (a reward of 1e300 used to surface as a NaN gradient of wte.weight). */
#define SUBPROCESS_REWARD_MAX 1e9

/* The answer line as a JSON object carrying "id": id; NULL (and the error) when it is not. */
static cJSON *answer_object(const char *what, int id, const char *line, int *rc) {
    cJSON *a = cJSON_Parse(line);
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(a, "id");
    *rc = LEASH_OK;
    if (!cJSON_IsObject(a)) *rc = leash_fail(LEASH_EFORMAT, "%s: answer to request %d is not a JSON object: '%.80s'", what, id, line);
    else if (!cJSON_IsNumber(jid) || jid->valuedouble != id)
        *rc = leash_fail(LEASH_EFORMAT, "%s: answer '%.80s' does not carry \"id\": %d (answers come in request order)", what,
                         line, id);
    if (*rc) cJSON_Delete(a);
    return *rc ? NULL : a;
}

int subprocess_parse_scored(const char *line, int id, const char *what, double *reward, cJSON **metrics) {
    int rc;
    if (metrics) *metrics = NULL;
    cJSON *a = answer_object(what, id, line, &rc);
    if (!a) return rc;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(a, "reward");
    cJSON *m = cJSON_GetObjectItemCaseSensitive(a, "metrics");
    if (!cJSON_IsNumber(r) || !isfinite(r->valuedouble))
        rc = leash_fail(LEASH_EFORMAT, "%s: answer to request %d needs a finite number \"reward\": '%.80s'", what, id, line);
    else if (fabs(r->valuedouble) > SUBPROCESS_REWARD_MAX) // its square, the advantages' variance, overflows float32
        rc = leash_fail(LEASH_EFORMAT, "%s: answer to request %d: \"reward\" %g is too large; |reward| <= %g is "
                                       "accepted (scale the rewards down): '%.80s'", what, id, r->valuedouble, SUBPROCESS_REWARD_MAX, line);
    else if (m && !cJSON_IsObject(m))
        rc = leash_fail(LEASH_EFORMAT, "%s: answer to request %d: \"metrics\" must be an object of names and numbers, "
                                       "e.g. {\"gold/correct\": 1}: '%.80s'", what, id, line);
    for (const cJSON *v = m && !rc ? m->child : NULL; v && !rc; v = v->next)
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !v->string[0])
            rc = leash_fail(LEASH_EFORMAT, "%s: answer to request %d: metrics key \"%s\" must be a named finite number: '%.80s'",
                            what, id, v->string, line);
    if (!rc) {
        *reward = r->valuedouble;
        if (metrics && m) *metrics = cJSON_DetachItemViaPointer(a, m);
    }
    cJSON_Delete(a);
    return rc;
}

int subprocess_parse_reward(const char *line, int id, double *reward) {
    return subprocess_parse_scored(line, id, "reward command", reward, NULL);
}

int subprocess_parse_judge(const char *line, int id, int *pref_a, double *margin) {
    int rc;
    cJSON *a = answer_object("judge command", id, line, &rc);
    if (!a) return rc;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(a, "preferred"), *m = cJSON_GetObjectItemCaseSensitive(a, "margin");
    if (!cJSON_IsString(p) || (strcmp(p->valuestring, "a") && strcmp(p->valuestring, "b")))
        rc = leash_fail(LEASH_EFORMAT, "judge command: answer to request %d: \"preferred\" must be \"a\" or \"b\": '%.80s'", id,
                        line);
    else if (m && (!cJSON_IsNumber(m) || !(m->valuedouble >= 0.0) || !(m->valuedouble <= SUBPROCESS_REWARD_MAX)))
        rc = leash_fail(LEASH_EFORMAT, "judge command: answer to request %d: \"margin\" must be a number in [0, %g]: '%.80s'",
                        id, SUBPROCESS_REWARD_MAX, line);
    else {
        *pref_a = p->valuestring[0] == 'a';
        *margin = m ? m->valuedouble : NAN;
    }
    cJSON_Delete(a);
    return rc;
}
