/* troupe: supervisors.
 *
 * A supervisor is an actor that starts children from specs, watches them,
 * and restarts them by a strategy when they exit. If more than
 * max_restarts restarts happen within period_ms it gives up: it stops its
 * remaining children and exits with TR_EXIT_MAX_RESTARTS, which its own
 * parent (a supervisor, or any monitor) sees. On TR_MSG_SHUTDOWN it stops
 * its children one at a time in reverse start order, each with its own
 * deadline (then forced), and exits with TR_EXIT_SHUTDOWN. */
#ifndef TROUPE_SUPERVISOR_H
#define TROUPE_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>

#include "troupe/actor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tr_sup_strategy {
    TR_ONE_FOR_ONE = 0, /* restart only the child that exited */
    TR_ONE_FOR_ALL = 1  /* stop the others (reverse order), restart all in order */
} tr_sup_strategy;

typedef enum tr_restart {
    TR_PERMANENT = 0, /* always restarted */
    TR_TRANSIENT = 1, /* restarted unless it exited normally or on shutdown */
    TR_TEMPORARY = 2  /* never restarted */
} tr_restart;

typedef struct tr_child_spec {
    const char *name;
    const tr_behavior *behavior; /* must outlive the supervisor */
    void *arg;                   /* passed to init at every (re)start */
    tr_restart restart;
    uint32_t shutdown_ms;        /* grace before a stopping child is killed; default 5000 */
    uint32_t mailbox_capacity;   /* as in tr_spawn_opts */
    tr_overflow overflow;
} tr_child_spec;

typedef struct tr_supervisor_config {
    tr_sup_strategy strategy;
    uint32_t max_restarts; /* default 3 */
    uint32_t period_ms;    /* default 5000 */
    const tr_child_spec *children; /* copied at spawn */
    size_t nchildren;
} tr_supervisor_config;

/* Defaults: one-for-one, 3 restarts in 5 s, no children.
 * Threads: any thread. */
TR_API void tr_supervisor_config_defaults(tr_supervisor_config *cfg);

/* A child spec with the defaults (permanent, 5000 ms shutdown).
 * Threads: any thread. */
TR_API void tr_child_spec_defaults(tr_child_spec *spec);

/* Spawns a supervisor. cfg and its child array are copied. Children start
 * in array order when the supervisor's init runs; if spawning one fails (out
 * of memory, runtime stopping) the supervisor exits with that code.
 * Returns as tr_spawn. Threads: any thread. */
TR_API int tr_supervisor_spawn(tr_runtime *rt, const tr_supervisor_config *cfg,
                               const tr_spawn_opts *opts, tr_actor_id *out);

/* The supervisor behaviour itself, to nest a supervisor as a child: use it
 * as a child spec's behavior with a tr_supervisor_config * as arg (which
 * must then outlive the parent). Never NULL. Threads: any thread. */
TR_API const tr_behavior *tr_supervisor_behavior(void);

#ifdef __cplusplus
}
#endif

#endif
