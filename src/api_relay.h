/* The step relay the flat entry points share (src/api.c for ppo and grpo, src/api_trainers.c for dpo, rm_train
 * and pretrain): each step's metrics go into the run's TensorBoard file, if it has one, then to the binding's
 * callback. Internal to the library. */
#ifndef LEASH_API_RELAY_H
#define LEASH_API_RELAY_H

#include "leash/api.h"
#include "leash/metrics.h"
#include "leash/tensorboard.h"

typedef struct {
    leash_api_step_fn fn; /* the binding's callback, or NULL */
    void *ctx;
    leash_tb *tb;         /* --tensorboard: the event file, or NULL */
    int tb_rc;            /* its write error, which stops the run */
    int step, steps;      /* the last step relayed (dpo, rm_train, pretrain) */
} api_relay;

/* The step's metrics (m may be NULL) into the TensorBoard file: non-zero stops the run (r->tb_rc says why). */
int api_relay_tb(api_relay *r, const leash_metrics *m);
/* The callback's answer for this step (non-zero: stop); 0 without a callback. */
int api_relay_call(const api_relay *r, const leash_metrics *m, int step, int steps);
/* After the run: the run's error, else the TensorBoard file's write error, else its close's; the file closed. */
int api_relay_finish(api_relay *r, int rc);

#endif
