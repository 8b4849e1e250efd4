/* Asking a long run to stop cleanly: the trainers (pretrain, rm train, ppo, grpo) look at this flag after
 * every step; when it is set they finish the step, write a checkpoint, and return success, so that the run
 * can be resumed exactly. The CLI sets it from SIGINT and SIGTERM. leash_request_stop() is
 * async-signal-safe (it only sets a sig_atomic_t). */
#ifndef LEASH_STOP_H
#define LEASH_STOP_H

void leash_request_stop(void);
int leash_stop_requested(void);
void leash_stop_reset(void);

#endif
