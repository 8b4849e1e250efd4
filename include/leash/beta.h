/* Controllers for beta, the weight of the KL penalty.
 *
 * Fixed: beta never changes (beta = 0 allowed: no leash).
 * Adaptive (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"): a proportional
 * controller that steers the measured KL towards a target,
 *     e    = clip(KL / target - 1, -0.2, 0.2)
 *     beta = beta * (1 + e * n_steps / horizon)
 * where KL is the batch mean of the per-sequence KL (nats per sequence, not per token) and n_steps
 * is the number of samples (sequences) in the batch that measured it. Defaults are the paper's and
 * TRL's: beta 0.2 to start, target 6 nats per sequence, horizon 10000.
 *
 * Units. The target and the KL fed to leash_beta_update() are in nats per sequence (the sum over a
 * response's tokens; Ziegler et al.) unless units is LEASH_KL_PER_TOKEN, where both are the mean per
 * response token: a 6 nats/seq target over 24-token responses is 0.25 nats/token. Some frameworks feed a
 * per-token mean to a per-sequence target, which drives beta down until the KL is ~length times the
 * target; the trainers log the units next to beta ("kl_target_units").
 */
#ifndef LEASH_BETA_H
#define LEASH_BETA_H

#define LEASH_BETA_DEFAULT_INIT 0.2
#define LEASH_BETA_DEFAULT_TARGET 6.0     /* nats per sequence */
#define LEASH_BETA_DEFAULT_HORIZON 10000.0 /* samples */
#define LEASH_BETA_ERROR_CLIP 0.2

typedef enum { LEASH_BETA_FIXED = 0, LEASH_BETA_ADAPTIVE = 1 } leash_beta_kind;
typedef enum { LEASH_KL_PER_SEQUENCE = 0, LEASH_KL_PER_TOKEN = 1 } leash_kl_units;

/* "nats/seq" or "nats/token". */
const char *leash_kl_units_name(leash_kl_units units);

typedef struct {
    leash_beta_kind kind;
    double beta;    /* the current coefficient, >= 0 */
    double target;  /* adaptive: the KL to steer to, in `units` (> 0) */
    leash_kl_units units; /* adaptive: of target and of the measured KL (default per sequence) */
    double horizon; /* adaptive: samples over which a full error is corrected (> 0) */
    double error;   /* adaptive: the clipped error e of the last update (0 before any) */
} leash_beta_ctl;

/* beta >= 0 and finite. */
int leash_beta_fixed(leash_beta_ctl *ctl, double beta);

/* beta > 0, target > 0, horizon > 0, all finite. */
int leash_beta_adaptive(leash_beta_ctl *ctl, double beta, double target, double horizon);

/* One update from the measured batch-mean KL (in ctl->units) over n_steps samples. Fixed: no-op
 * (the KL is still checked). Fails on a non-finite KL, on n_steps < 1, and on n_steps > horizon (the
 * multiplier 1 + e * n_steps / horizon must stay in [0.8, 1.2] so that beta stays positive and moves
 * smoothly). A negative KL (possible from the k1 estimator) is accepted and gives e = -0.2. */
int leash_beta_update(leash_beta_ctl *ctl, double kl, long n_steps);

#endif
