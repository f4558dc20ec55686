/*
 * daemon.h -- the journeyd main loop: consumer group membership, shard
 * ownership, batching, signals and shutdown.
 */
#ifndef JD_DAEMON_H
#define JD_DAEMON_H

#include <signal.h>

#include "config.h"

/* Set by the signal handlers (main.c), read by the loop. */
extern volatile sig_atomic_t daemon_stop_requested;
extern volatile sig_atomic_t daemon_reload_requested;

/*
 * Run until a stop is requested. cfg is owned by the caller and must stay
 * valid; reloaded configurations are owned by the daemon. Returns the process
 * exit code (0 after a clean shutdown).
 */
int daemon_run(config_t *cfg);

#endif
