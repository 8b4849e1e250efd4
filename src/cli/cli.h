/* Shared pieces of the leash command-line tool: subcommand entry points and input helpers. */
#ifndef LEASH_CLI_H
#define LEASH_CLI_H

#include <stddef.h>

/* Subcommands: argc/argv start at the subcommand name; return the process exit status. */
int cli_kl(int argc, char **argv);
int cli_pretrain(int argc, char **argv);
int cli_sample(int argc, char **argv);
int cli_tokenizer(int argc, char **argv);
int cli_world(int argc, char **argv);
int cli_rm(int argc, char **argv);
int cli_judge(int argc, char **argv);
int cli_ppo(int argc, char **argv);
int cli_grpo(int argc, char **argv);
int cli_rloo(int argc, char **argv); /* grpo --baseline loo --scale-rewards none */
int cli_report(int argc, char **argv);
int cli_plot(int argc, char **argv);
int cli_sweep(int argc, char **argv);
int cli_diff(int argc, char **argv);
int cli_lora(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_score(int argc, char **argv);
int cli_tensorboard(int argc, char **argv);
int cli_dpo(int argc, char **argv);

/* Reward-model training options shared by `rm train` and `judge train` (argv[1] is the subcommand):
 * 0 ok, 1 --help, -1 bad option (message printed). cli_rm_run trains and reports. */
#include "leash/reward.h"
int cli_rm_train_options(int argc, char **argv, const char *cmd, leash_rm_config *c, int *quiet);
int cli_rm_run(leash_rm_config *c, int quiet, const char *cmd);

/* `leash report`: the mean of column k of a metrics table over rows [from, to) (clipped; NAN values left out;
 * NAN when none), and the --html page (src/cli/report_html.c) of runs[0..n) whose metrics (t, loaded with
 * report.c's keys; labels name its columns, nk of them, the last the alarm) and samples (s: strings prompt,
 * response; numbers step, score, gold) report.c has read; window: the steps averaged at each end. */
#include "leash/data.h"
double cli_report_mean(const leash_table *t, int k, int from, int to);
/* Adds to keys[n..max) the reward commands' metrics in RUN/metrics.jsonl's first line that are not in keys yet:
 * gold/... (but gold/reward and gold/grammatical, which leash logs itself) and rewards/<label>/mean. Returns the
 * count. */
enum { CLI_KEY_MAX = 64 };
int cli_report_scorer_keys(const char *run, char (*keys)[CLI_KEY_MAX], int n, int max);
int cli_report_html(const char *out, const char *const *runs, int n, const leash_table *t, const leash_table *s,
                    const char *const *labels, int nk, int window);

/* Option values with their accepted range: plain decimal only (no hex, nan, inf, spaces, overflow or denormals);
 * on failure print "leash CMD: --opt 'x' <why>; it must be ... in [lo, hi]" and return -1. Every subcommand
 * parses its option numbers with these. */
int cli_int(const char *cmd, const char *opt, const char *arg, long lo, long hi, int *out);
int cli_float(const char *cmd, const char *opt, const char *arg, double lo, double hi, float *out);
int cli_double(const char *cmd, const char *opt, const char *arg, double lo, double hi, double *out);
/* The same check without a range or a message (for a list's items): 0 when arg is such a number. */
int cli_plain_number(const char *arg, double *v);

/* A progress line on stderr: on a terminal it is rewritten in place (\r); redirected to a file or a pipe it is
 * a plain line, at most one every 5 s (and always when `last`), so that a log holds readable lines.
 * cli_progress_end ends a terminal's \r-line (call it before any other message and at the end). */
void cli_progress(int last, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_progress_end(void);

/* --tensorboard in a trainer: closes its event file (NULL: none) and returns the run's status: rc when the
 * run failed, else write_rc (a write error during the run, which stopped it), else the close's. */
typedef struct leash_tb leash_tb;
int cli_tb_finish(leash_tb *tb, int write_rc, int rc);

/* SIGINT and SIGTERM ask the library to stop (leash_request_stop); a second one ends the process at once. For
 * the commands that stop cleanly: the trainers (a checkpoint) and judge label (the old output untouched). */
void cli_stop_on_signals(void);

/* A list of numbers read from a file. */
typedef struct {
    double *v;
    int n;
} cli_numbers;

/* "leash CMD" while a subcommand runs (main.c sets it), "leash" before: the prefix of input.c's messages. */
extern const char *cli_name;

/* Reads a whole file ("-" = stdin) into a NUL-terminated buffer; NULL and a message on stderr on
 * failure. */
char *cli_read_file(const char *path, size_t *len);

/* Parses the plain-text form: every non-empty line that is not a comment (#) is one list of numbers
 * separated by spaces, tabs or commas. Fills up to `max` lists; returns how many were found, or -1
 * after printing "path:line:column: ..." to stderr. */
int cli_parse_text_lists(const char *path, const char *text, cli_numbers *lists, int max);

/* Fills `out` from a JSON array of numbers; -1 after printing an error naming path and key. */
struct cJSON;
int cli_json_numbers(const char *path, const char *key, const struct cJSON *arr, cli_numbers *out);

void cli_numbers_free(cli_numbers *l);

#endif
