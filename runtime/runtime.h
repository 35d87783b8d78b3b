/* Internal: the runtime record. */
#ifndef TROUPE_RUNTIME_RUNTIME_H
#define TROUPE_RUNTIME_RUNTIME_H

#include <pthread.h>
#include <stdint.h>

#include "troupe/runtime.h"
#include "worker.h"

enum tr__rt_state {
    TR__RT_CREATED = 0,
    TR__RT_RUNNING = 1,
    TR__RT_DRAINING = 2,
    TR__RT_STOPPED = 3
};

struct tr_runtime {
    tr_runtime_config cfg;
    /* Per-runtime state of net/ (its memory budget), opaque here: made on
     * first use by net/ (any thread; CAS), freed by net_free at
     * tr_runtime_free once every worker is gone. */
    void *net;              /* any thread; atomics */
    void (*net_free)(void *net);
    tr__worker *workers;
    unsigned nworkers;
    uint32_t state;         /* any thread; atomics */
    uint32_t shutdown_req;  /* any thread; atomics: broadcast TR_MSG_SHUTDOWN */
    uint32_t force_req;     /* any thread; atomics: deadline passed, kill all */
    pthread_mutex_t lock;   /* guards the wait for live == 0 */
    pthread_cond_t idle;
    /* Written by every spawn and reclaim: a line of their own. */
    _Alignas(64) uint64_t live; /* actors spawned and not reclaimed; atomics */
    uint32_t foreign_reclaims; /* foreign threads inside actor_gone; atomics */
    _Alignas(64) uint32_t rr; /* round-robin cursor for foreign spawns; atomics */
    char pad_[60];
};

/* An actor was reclaimed: drops the live count, wakes a shutdown waiter. */
void tr__runtime_actor_gone(tr_runtime *rt);

#endif
