/* The reward commands of an RL run (--reward-cmd, one or several): their processes, the requests (with the
 * prompt's dataset columns), the weighted reward, and the named metrics the scorers report. Internal to the
 * library; the protocol is in docs/rl.md ("Scorer commands").
 *
 *   leash -> scorer: {"id": 7, "prompt": "...", "response": "...", "answer": "12"}   (the prompt line's other
 *                    columns after "response", their JSON values as written)
 *   scorer -> leash: {"id": 7, "reward": 1, "metrics": {"gold/correct": 0, "gold/fluency_nll": 2.3}}
 *
 * A scorer's first answer fixes the names of its metrics; every later answer must carry the same names. Each
 * name's batch mean is logged under that name; "gold/reward" is the run's gold reward instead (the report's
 * gold column, samples.jsonl's "gold", the reward-hacking alarm). Several scorers: the reward is the weighted
 * sum of theirs, each logged as rewards/<label>/mean. With several ranks each scores its own rows and the
 * per-row values are summed over the ranks, so the means are over the whole batch. */
#ifndef LEASH_SCORER_H
#define LEASH_SCORER_H

#include "leash/metrics.h"
#include "leash/rl.h"
#include "subprocess.h"

#define SCORER_MAX 8          /* --reward-cmd options */
#define SCORER_METRICS_MAX 32 /* named metrics of all scorers together */
#define SCORER_NAME_MAX 64    /* bytes of a metric's name, its NUL included */

typedef struct {
    int n;                          // scorers
    leash_subprocess *proc;         // (n)
    char label[SCORER_MAX][32];     // cmd0, cmd1, ... or the reward's names
    char what[SCORER_MAX][48];      // "reward command", "reward command cmd1": how messages name it
    char reward_key[SCORER_MAX][48]; // "rewards/<label>/mean" (several scorers)
    double weight[SCORER_MAX];
    int world_gold;                 // the default world's gold reward is measured: a scorer's gold/reward is refused
    int R;                          // rows of a step
    double *own;                    // (n, R) each scorer's reward of the rows (several scorers), 0 where not ours
    double rmean[SCORER_MAX];       // their batch means
    // the named metrics, in the order of the scorers and of their first answers
    int n_metrics;
    int known;                      // the names are known here (from an answer, or agreed with another rank)
    int agreed;                     // ... and the same on every rank
    int seen[SCORER_MAX];           // scorer i has answered here (its names are fixed)
    char name[SCORER_METRICS_MAX][SCORER_NAME_MAX];
    int of[SCORER_METRICS_MAX];     // the scorer that reports it
    double *rows;                   // (SCORER_METRICS_MAX, R) per-row values, 0 where not ours
    double mean[SCORER_METRICS_MAX];
    int gold;                       // index of "gold/reward", or -1
} rl_scorers;

/* Starts w's commands (kind LEASH_REWARD_COMMAND); world_gold: the run also measures the world's gold reward. */
int scorers_start(rl_scorers *s, const leash_reward_source *w, int world_gold);
void scorers_stop(rl_scorers *s);
/* A step's rows start: R rows, every kept value zero. */
int scorers_begin(rl_scorers *s, int R);
/* Row b through every scorer: request id, the prompt, its other columns (a JSON object's text, or NULL) and the
 * response; *reward the weighted sum; *gold the row's gold/reward (NAN when the scorers report none). */
int scorers_score(rl_scorers *s, double timeout_s, int id, int b, const char *prompt, const char *columns,
                  const char *response, double *reward, double *gold);
/* After a step's rows (every rank): the names agreed between the ranks, the values summed over them, the means. */
int scorers_end(rl_scorers *s);
/* The step's scorer metrics appended to t: each name (gold/reward excepted: the run's gold reward, which t holds
 * already), then rewards/<label>/mean with several scorers; a name leash logs itself is an error. */
int scorers_metrics(const rl_scorers *s, leash_metrics *t);
/* The reward commands as a checkpoint records them: the command itself for one plain scorer (as before several
 * were possible), else "label x weight: cmd; ..." for each. */
void scorers_describe(const leash_reward_source *w, char *out, size_t cap);

#endif
