/* Watching the running KL: the warnings a trainer gives while the leash is on.
 *
 * The running KL is the mean of the last LEASH_KLWATCH_WINDOW steps' batch KLs (in the unit the caller
 * feeds: the trainers feed nats per sequence). Two signals:
 *   HIGH      the running mean is above `high` (default 10 nats/seq): the policy is straying; raise beta
 *             or lower the learning rate.
 *   NEGATIVE  the running mean stays below `low` (default -0.1 nats/seq) over at least
 *             LEASH_KLWATCH_MIN_STEPS steps, and below 0 by more than twice its standard error (from the
 *             batches' standard errors: a small batch is noisy). The true KL(pi || pi_ref) is never
 *             negative, and k1 is an unbiased estimate of it, so a batch can dip below 0 by chance but a
 *             run cannot stay there.
 *             The usual cause: the tokens were sampled from another distribution than the one scored
 *             (a temperature, top-k or top-p at sampling that scoring did not apply; a stale or different
 *             policy copy generating the rollouts; a reference that is really the policy).
 * A single negative batch is reported as is (objective/kl), never clamped to 0.
 */
#ifndef LEASH_KLWATCH_H
#define LEASH_KLWATCH_H

#define LEASH_KLWATCH_WINDOW 5
#define LEASH_KLWATCH_MIN_STEPS 3
#define LEASH_KLWATCH_DEFAULT_LOW (-0.1)
#define LEASH_KLWATCH_DEFAULT_HIGH 10.0

enum { LEASH_KLWATCH_HIGH = 1, LEASH_KLWATCH_NEGATIVE = 2 };

typedef struct {
    double low, high;                   /* the band */
    double last[LEASH_KLWATCH_WINDOW]; /* ring of the latest batch KLs */
    double var[LEASH_KLWATCH_WINDOW];  /* and the squares of their standard errors */
    long steps;                         /* KLs seen */
    double running;                     /* mean of the latest min(steps, window) */
} leash_klwatch;

/* low < high, both finite. */
int leash_klwatch_init(leash_klwatch *w, double low, double high);
/* Adds one step's batch KL (a mean over its sequences) with its standard error (sd / sqrt(sequences); 0
 * if unknown) and returns the signals now on (0, HIGH, NEGATIVE), or -1 with an error for a non-finite
 * KL. */
int leash_klwatch_update(leash_klwatch *w, double kl, double stderr_kl);
/* One sentence of advice for a set of signals ("" for none). */
const char *leash_klwatch_advice(int signals);

#endif
