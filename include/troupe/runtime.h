/* troupe: the runtime.
 *
 * A runtime owns W worker threads, each running one libev loop and a ready
 * queue of actors. Lifecycle: tr_runtime_new -> tr_runtime_start ->
 * (actors run) -> tr_runtime_shutdown (graceful, bounded by a deadline) ->
 * tr_runtime_stop (joins the workers) -> tr_runtime_free. */
#ifndef TROUPE_RUNTIME_H
#define TROUPE_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "troupe/actor.h"
#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_runtime_config {
    /* Worker threads; 0 (default) means one per online CPU. */
    unsigned workers;
    /* Most messages an actor handles per turn before others get a go
     * (fairness). Default 64. */
    unsigned batch;
    /* How long an idle worker polls for work before it sleeps, in
     * microseconds. Waking a sleeping thread costs several microseconds, so
     * a short spell keeps cross-worker messaging fast; it is bounded, so an
     * idle runtime still uses ~0% CPU. A worker spins only while another
     * worker is awake and making progress (one pushed off its CPU by a
     * neighbour process cannot answer). Default 50; 0 sleeps at once. */
    unsigned spin_us;
    /* While busy with actors, how often a worker looks at its event loop
     * (an epoll_wait) for sockets and timers, in microseconds: I/O waits
     * at most this long behind a stream of actor turns. A worker whose
     * loop has nothing to watch never looks. Default 100. */
    unsigned poll_us;
} tr_runtime_config;

/* Fills cfg with the defaults above. Threads: any thread. */
TR_API void tr_runtime_config_defaults(tr_runtime_config *cfg);

/* Creates a runtime (threads not started yet). cfg may be NULL for the
 * defaults. Returns NULL with the code in *err (TR_EINVAL, TR_ENOMEM).
 * Threads: any thread. */
TR_API tr_runtime *tr_runtime_new(const tr_runtime_config *cfg, int *err);

/* Starts the worker threads. Actors may be spawned before start; they run
 * once it is called. Returns 0, TR_ESTATE if already started, or a negated
 * errno from thread creation.
 * Threads: not on a worker of this runtime. */
TR_API int tr_runtime_start(tr_runtime *rt);

/* Graceful shutdown: refuses new spawns, sends TR_MSG_SHUTDOWN to every
 * actor (supervised children are stopped by their supervisors, in reverse
 * start order), and waits up to timeout_ms for all of them to exit. At the
 * deadline every actor still alive is forced to exit (terminate still runs,
 * on its worker) and the call returns TR_ETIMEDOUT. It never waits past the
 * deadline, whatever the actors do; a worker stuck inside a callback that
 * never returns is reported in the log and cannot be joined.
 * Returns 0, TR_ETIMEDOUT, or TR_ESTATE if not running.
 * Threads: not on a worker (blocks); returns TR_EDEADLK on one. */
TR_API int tr_runtime_shutdown(tr_runtime *rt, uint32_t timeout_ms);

/* Stops the workers and joins them. Actors still alive are forced to exit
 * first (terminate runs). Idempotent. Returns 0 or TR_EDEADLK on a worker.
 * Threads: not on a worker (blocks). */
TR_API int tr_runtime_stop(tr_runtime *rt);

/* Stops the runtime if needed and frees it. NULL is a no-op. Handles of its
 * actors stay safe to use: sends return TR_ECLOSED.
 * Threads: not on a worker. */
TR_API void tr_runtime_free(tr_runtime *rt);

/* Number of workers. Threads: any thread. */
TR_API unsigned tr_runtime_workers(const tr_runtime *rt);

/* Actors spawned and not yet fully reclaimed (exact once quiescent).
 * Threads: any thread. */
TR_API uint64_t tr_runtime_actor_count(const tr_runtime *rt);

/* Nonzero while the runtime is started and not shutting down or stopped.
 * Threads: any thread. */
TR_API int tr_runtime_is_running(const tr_runtime *rt);

/* Nonzero when called on one of rt's workers. Threads: any thread. */
TR_API int tr_runtime_on_worker(const tr_runtime *rt);

/* What one worker has done since it started (counters only grow, except
 * `actors`). Each field is kept by the worker itself and read without a
 * lock, so a snapshot is not taken at one instant: fields may be a batch
 * of actor turns apart. */
typedef struct tr_worker_stats {
    uint64_t actors;   /* started actors living on the worker now (a gauge) */
    uint64_t turns;    /* actor turns run (a turn handles up to `batch` messages) */
    uint64_t messages; /* messages its actors took from their mailboxes (user
                        * and system, sent from any thread) */
    /* Time the worker thread was awake, in nanoseconds: running actors,
     * socket and timer callbacks, spinning for work; everything but the
     * time it slept in its event loop waiting for something to do.
     * Brought up to date at least once per batch of up to 128 actor turns
     * and whenever the worker goes to sleep; one turn that never returns
     * is not seen. busy_ns / elapsed time is the worker's load. */
    uint64_t busy_ns;
    uint64_t sleeps;   /* times it went to sleep in its event loop */
} tr_worker_stats;

/* Fills *out with worker `worker`'s counters (0 <= worker <
 * tr_runtime_workers(rt)). Works at any point between tr_runtime_new and
 * tr_runtime_free: all zeros before start, frozen after stop. Cheap (a
 * few loads, no lock): fit for a metrics endpoint scraped often.
 * Returns 0, or TR_EINVAL if rt or out is NULL or worker is out of range.
 * Threads: any thread. */
TR_API int tr_runtime_worker_stats(const tr_runtime *rt, unsigned worker, tr_worker_stats *out);

#ifdef __cplusplus
}
#endif

#endif
