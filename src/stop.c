/* The stop flag of include/leash/stop.h. */
#include "leash/stop.h"

#include <signal.h>

static volatile sig_atomic_t g_stop = 0;

void leash_request_stop(void) { g_stop = 1; }
int leash_stop_requested(void) { return g_stop != 0; }
void leash_stop_reset(void) { g_stop = 0; }
