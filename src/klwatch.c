/* The running-KL warnings: see include/leash/klwatch.h. */
#include "leash/klwatch.h"

#include <math.h>

#include "leash/error.h"

int leash_klwatch_init(leash_klwatch *w, double low, double high) {
    if (!isfinite(low) || !isfinite(high) || !(low < high))
        return leash_fail(LEASH_EINVAL, "KL band [%g, %g]; it needs finite low < high", low, high);
    *w = (leash_klwatch){.low = low, .high = high};
    return LEASH_OK;
}

int leash_klwatch_update(leash_klwatch *w, double kl, double stderr_kl) {
    if (!isfinite(kl) || !(stderr_kl >= 0)) {
        leash_fail(LEASH_ENUMERIC, "the batch KL at step %ld is %g (standard error %g)", w->steps + 1, kl, stderr_kl);
        return -1;
    }
    w->var[w->steps % LEASH_KLWATCH_WINDOW] = stderr_kl * stderr_kl;
    w->last[w->steps++ % LEASH_KLWATCH_WINDOW] = kl;
    int n = w->steps < LEASH_KLWATCH_WINDOW ? (int)w->steps : LEASH_KLWATCH_WINDOW;
    double s = 0.0, v = 0.0;
    for (int i = 0; i < n; i++) s += w->last[i], v += w->var[i];
    w->running = s / n;
    double se = sqrt(v) / n; // standard error of the running mean of n independent batches
    int signals = 0;
    if (w->running > w->high) signals |= LEASH_KLWATCH_HIGH;
    if (w->running < w->low && w->running < -2.0 * se && w->steps >= LEASH_KLWATCH_MIN_STEPS) signals |= LEASH_KLWATCH_NEGATIVE;
    return signals;
}

const char *leash_klwatch_advice(int signals) {
    if (signals & LEASH_KLWATCH_NEGATIVE)
        return "The KL to the reference cannot be negative on average: the tokens were sampled from another "
               "distribution than the one scored (temperature, top-k or top-p at sampling only, a stale policy "
               "copy generating, or a reference that is the policy itself).";
    if (signals & LEASH_KLWATCH_HIGH) return "The policy is far from the reference: raise --beta or lower the learning rate.";
    return "";
}
