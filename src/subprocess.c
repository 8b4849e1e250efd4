/* A command as a line-by-line JSON peer: see src/subprocess.h. */
#define _GNU_SOURCE /* pipe2, sigtimedwait */
#include "subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "leash/error.h"

int subprocess_start(leash_subprocess *x, const char *cmd, const char *what) {
    int in[2], out[2];
    memset(x, 0, sizeof *x);
    x->to = x->from = -1;
    x->cmd = cmd, x->what = what;
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
        return leash_fail(LEASH_EIO, "cannot create pipes for the %s: %s", what, strerror(errno));
    x->pid = fork();
    if (x->pid < 0) return leash_fail(LEASH_EIO, "cannot start the %s: %s", what, strerror(errno));
    if (x->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    x->to = in[1], x->from = out[0];
    return LEASH_OK;
}

void subprocess_stop(leash_subprocess *x) {
    if (x->to >= 0) close(x->to);
    if (x->from >= 0) close(x->from);
    x->to = x->from = -1;
    if (x->pid > 0) {
        kill(x->pid, SIGTERM);
        waitpid(x->pid, NULL, 0);
        x->pid = 0;
    }
}

/* Reaps a command whose pipes closed (killing one that lingers) and describes how it ended. */
static const char *ended(leash_subprocess *x, char *buf, size_t cap) {
    int st = 0;
    struct timespec pause = {0, 50 * 1000 * 1000};
    if (x->pid > 0 && waitpid(x->pid, &st, WNOHANG) == 0) {
        nanosleep(&pause, NULL);
        if (waitpid(x->pid, &st, WNOHANG) == 0) kill(x->pid, SIGKILL), waitpid(x->pid, &st, 0);
    }
    x->pid = 0;
    snprintf(buf, cap, "%s %d", WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return buf;
}

static int ended_error(leash_subprocess *x, int id) {
    char how[64];
    return leash_fail(LEASH_EIO, "%s '%s' ended (%s) before answering request %d; run it by hand on the request line "
                                 "to see why",
                      x->what, x->cmd, ended(x, how, sizeof how), id);
}

/* Writes all of s; a command that closed its stdin gives EPIPE, never a SIGPIPE that kills us. */
static int write_all(leash_subprocess *x, const char *s, size_t n) {
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int err = 0;
    while (n && !err) {
        ssize_t k = write(x->to, s, n);
        if (k < 0 && errno != EINTR) err = errno;
        else if (k > 0) s += k, n -= (size_t)k;
    }
    if (err == EPIPE) { // consume the pending signal before unblocking it
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

int subprocess_request(leash_subprocess *x, double timeout_s, int id, const char *request, char *line, size_t cap) {
    int err = write_all(x, request, strlen(request));
    if (!err) err = write_all(x, "\n", 1);
    if (err == EPIPE) return ended_error(x, id);
    if (err) return leash_fail(LEASH_EIO, "cannot send request %d to %s '%s': %s", id, x->what, x->cmd, strerror(err));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        char *nl = memchr(x->buf, '\n', x->n);
        if (nl) {
            size_t k = (size_t)(nl - x->buf);
            if (k >= cap) return leash_fail(LEASH_EFORMAT, "%s: answer %d is longer than %zu bytes", x->what, id, cap);
            memcpy(line, x->buf, k);
            line[k] = '\0';
            memmove(x->buf, nl + 1, x->n - k - 1);
            x->n -= k + 1;
            return LEASH_OK;
        }
        if (x->n == sizeof x->buf) return leash_fail(LEASH_EFORMAT, "%s: answer %d has no newline", x->what, id);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = timeout_s - (now.tv_sec - t0.tv_sec) - 1e-9 * (now.tv_nsec - t0.tv_nsec);
        if (left <= 0) {
            subprocess_stop(x);
            return leash_fail(LEASH_EIO, "%s '%s' did not answer request %d within %g s; it was stopped (raise the "
                                         "timeout if it is just slow)",
                              x->what, x->cmd, id, timeout_s);
        }
        struct pollfd pfd = {x->from, POLLIN, 0};
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno != EINTR) return leash_fail(LEASH_EIO, "%s: poll: %s", x->what, strerror(errno));
        if (r <= 0) continue;
        ssize_t k = read(x->from, x->buf + x->n, sizeof x->buf - x->n);
        if (k == 0) return ended_error(x, id); // its output closed
        if (k < 0 && errno != EINTR) return leash_fail(LEASH_EIO, "%s: read: %s", x->what, strerror(errno));
        if (k > 0) x->n += (size_t)k;
    }
}
