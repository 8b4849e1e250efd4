/* Controllers for the KL coefficient beta: see include/leash/beta.h. */
#include "leash/beta.h"

#include <math.h>

#include "leash/error.h"

const char *leash_kl_units_name(leash_kl_units units) { return units == LEASH_KL_PER_TOKEN ? "nats/token" : "nats/seq"; }

int leash_beta_fixed(leash_beta_ctl *ctl, double beta) {
    if (!(beta >= 0.0) || !isfinite(beta))
        return leash_fail(LEASH_EINVAL, "beta = %g; a fixed beta must be finite and >= 0 (0 turns the KL "
                                        "penalty off)",
                          beta);
    *ctl = (leash_beta_ctl){.kind = LEASH_BETA_FIXED, .beta = beta};
    return LEASH_OK;
}

int leash_beta_adaptive(leash_beta_ctl *ctl, double beta, double target, double horizon) {
    if (!(beta > 0.0) || !isfinite(beta))
        return leash_fail(LEASH_EINVAL, "beta = %g; the adaptive controller needs a finite starting beta > 0 "
                                        "(it scales beta, so 0 would stay 0; default %g)",
                          beta, LEASH_BETA_DEFAULT_INIT);
    if (!(target > 0.0) || !isfinite(target))
        return leash_fail(LEASH_EINVAL, "KL target = %g; it must be finite and > 0, in nats per sequence "
                                        "(default %g)",
                          target, LEASH_BETA_DEFAULT_TARGET);
    if (!(horizon > 0.0) || !isfinite(horizon))
        return leash_fail(LEASH_EINVAL, "KL horizon = %g; it must be finite and > 0, in samples (default %g)",
                          horizon, LEASH_BETA_DEFAULT_HORIZON);
    *ctl = (leash_beta_ctl){.kind = LEASH_BETA_ADAPTIVE, .beta = beta, .target = target, .horizon = horizon};
    return LEASH_OK;
}

int leash_beta_update(leash_beta_ctl *ctl, double kl, long n_steps) {
    if (!isfinite(kl))
        return leash_fail(LEASH_ENUMERIC, "measured KL = %g; beta cannot be updated from a non-finite KL "
                                          "(look for a NaN in the log-probs of this batch)",
                          kl);
    if (n_steps < 1) return leash_fail(LEASH_EINVAL, "n_steps = %ld; the batch must hold >= 1 sample", n_steps);
    if (ctl->kind == LEASH_BETA_FIXED) return LEASH_OK;
    if ((double)n_steps > ctl->horizon)
        return leash_fail(LEASH_EINVAL, "n_steps = %ld exceeds the KL horizon %g: one update would move "
                                        "beta by more than 20%%; raise the horizon to at least the batch size",
                          n_steps, ctl->horizon);
    double e = kl / ctl->target - 1.0;
    if (e > LEASH_BETA_ERROR_CLIP) e = LEASH_BETA_ERROR_CLIP;
    if (e < -LEASH_BETA_ERROR_CLIP) e = -LEASH_BETA_ERROR_CLIP;
    ctl->error = e;
    ctl->beta *= 1.0 + e * (double)n_steps / ctl->horizon;
    return LEASH_OK;
}
