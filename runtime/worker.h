/* Design notes: workers and the scheduler.
 *
 * One thread per worker runs one libev loop and a ready queue of actors.
 * - Local queue (run_head/run_tail): owning worker only, no atomics. An
 *   actor made ready by code running on its own worker goes here.
 * - Incoming stack: actors made ready by other threads are pushed with one
 *   CAS; the worker takes the whole stack with one exchange.
 * - An actor is on at most one queue: whoever flips actor->scheduled from 0
 *   to 1 queues it; nobody else does.
 * - Sleeping: an idle worker first polls the incoming stack for spin_us,
 *   then sets `sleeping`, issues a full fence, checks the stack once more
 *   and only then blocks in ev_run. A sender pushes (a full barrier), then
 *   reads `sleeping` and calls ev_async_send only if it is set. One of the
 *   two always sees the other, so no wake-up is lost, and a worker that is
 *   awake costs its senders no syscall. */
#ifndef TROUPE_RUNTIME_WORKER_H
#define TROUPE_RUNTIME_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "actor.h"

typedef struct tr__worker {
    tr_runtime *rt;           /* immutable */
    unsigned index;           /* immutable */
    struct ev_loop *loop;     /* owning worker only (ev_async_send: any) */
    ev_async wake;
    pthread_t thread;
    int started;
    tr_actor *run_head;       /* owning worker only */
    tr_actor *run_tail;
    tr_actor *actors;         /* started actors; owning worker only */
    uint64_t next_ref;        /* monitor refs, timer and request ids; owner only */
    void *ext;                /* per-worker state of net/; owner only */
    void (*ext_free)(void *ext); /* called at tr__worker_fini */
    uint32_t shutdown_done;   /* owner only */
    uint32_t force_done;      /* owner only */
    uint64_t last_poll_ns;    /* owner only: last non-blocking look at the loop */
    _Alignas(64) tr_actor *incoming; /* any thread pushes; owner takes */
    uint32_t sleeping;        /* any thread; atomics */
    uint32_t stop;            /* any thread; atomics */
    char pad_[64];
} tr__worker;

int tr__worker_init(tr__worker *w, tr_runtime *rt, unsigned index);
void tr__worker_fini(tr__worker *w);
int tr__worker_start(tr__worker *w);
void tr__worker_join(tr__worker *w);

/* Wakes the worker if it sleeps (any thread). */
void tr__worker_wake(tr__worker *w);

/* Queues a ready actor on w. The caller flipped a->scheduled to 1. */
void tr__worker_enqueue(tr__worker *w, tr_actor *a);

/* Adds/removes a started actor to/from the worker's list. Owner only. */
void tr__worker_list_add(tr__worker *w, tr_actor *a);
void tr__worker_list_remove(tr__worker *w, tr_actor *a);

/* Forces every actor of w to exit, including ones not yet started.
 * Owner only (or single-threaded after join). */
void tr__worker_kill_all(tr__worker *w);

#endif
