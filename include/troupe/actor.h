/* troupe: actors.
 *
 * An actor is a behaviour (init, receive, terminate callbacks) plus a state
 * pointer, owned by one worker thread for its whole life: its callbacks
 * never run on two threads at once, so its state needs no lock. Others
 * reach it only through its tr_actor_id, by sending messages.
 *
 * Inside a callback the runtime hands the actor a `tr_actor *self`; it is
 * valid only during that callback and only on that worker. */
#ifndef TROUPE_ACTOR_H
#define TROUPE_ACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "troupe/error.h"
#include "troupe/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_actor tr_actor;
typedef struct tr_runtime tr_runtime;
struct ev_loop;

/* Exit reasons. 0 is a normal exit; the runtime's reasons are small
 * positive numbers; a negative reason is a TR_E* code (an error); choose
 * application reasons from TR_EXIT_USER up. */
enum tr_exit_reason {
    TR_EXIT_NORMAL = 0,
    TR_EXIT_SHUTDOWN = 1,     /* asked to stop by the runtime or its supervisor */
    TR_EXIT_KILLED = 2,       /* forced: tr_kill, or a shutdown deadline passed */
    TR_EXIT_NOPROC = 3,       /* DOWN for a monitor whose target was already gone */
    TR_EXIT_MAX_RESTARTS = 4, /* a supervisor exceeded its restart intensity */
    TR_EXIT_USER = 100
};

/* What an actor does. Every callback runs on the actor's worker.
 * receive is required; init and terminate may be NULL. */
typedef struct tr_behavior {
    const char *name; /* for logs; may be NULL */
    /* Runs once, before any message. It runs exactly once for every
     * successful spawn, even when the runtime is stopping (the actor then
     * exits right after), so it may take ownership of `arg`. Return 0, or a
     * negative code: the actor then exits with that reason (terminate is
     * not called). */
    int (*init)(tr_actor *self, void *arg);
    /* Handles one message. The message is borrowed: it is freed when receive
     * returns unless receive calls tr_msg_claim. */
    void (*receive)(tr_actor *self, tr_msg *msg);
    /* Runs once when the actor exits for any reason after a successful init
     * (including forced exits at a shutdown deadline): release the state
     * here. Messages may still be sent; the actor receives nothing more. */
    void (*terminate)(tr_actor *self, int reason);
} tr_behavior;

/* What a bounded mailbox does when full. */
typedef enum tr_overflow {
    TR_OVERFLOW_REFUSE = 0, /* tr_send returns TR_EBUFFULL and frees the message */
    /* Accepted; when the actor next runs, the oldest queued messages beyond
     * the capacity are dropped unread. Senders are refused with TR_EBUFFULL
     * only past twice the capacity, which bounds memory while it is busy. */
    TR_OVERFLOW_DROP_OLDEST = 1,
    TR_OVERFLOW_EXIT = 2    /* the message is refused and the actor exits with TR_EBUFFULL */
} tr_overflow;

typedef struct tr_spawn_opts {
    /* Worker index, or -1 (default): called on a worker of the runtime
     * (from an actor, say), that worker, as Erlang and CAF place a new
     * process next to its parent; from any other thread, round-robin. */
    int worker;
    /* 0 (default): unbounded. Otherwise the most user messages queued. */
    uint32_t mailbox_capacity;
    tr_overflow overflow;
    /* From inside an actor only: monitor the new actor atomically with its
     * creation (no window where it could exit unobserved). The reference is
     * written to *monitor_ref if that is not NULL. */
    bool monitor;
    uint64_t *monitor_ref;
} tr_spawn_opts;

/* Fills opts with the defaults above. Threads: any thread. */
TR_API void tr_spawn_opts_defaults(tr_spawn_opts *opts);

/* Creates an actor running `b` (which must outlive the actor) with `arg` for
 * its init. opts may be NULL for defaults. The actor's init runs later, on
 * its worker, before any message; messages sent to *out meanwhile queue.
 * Returns 0, TR_EINVAL, TR_ENOMEM, or TR_ECLOSED once the runtime is
 * shutting down or stopped.
 * Threads: any thread. */
TR_API int tr_spawn(tr_runtime *rt, const tr_behavior *b, void *arg, const tr_spawn_opts *opts,
                    tr_actor_id *out);

/* Sends msg to the actor behind `to`. Never blocks.
 * Takes msg in every case: on success the receiver owns it, on failure it
 * has already been freed. Its sender (tr_msg_from) is set to the calling
 * actor (or TR_ACTOR_NONE outside actors).
 * Returns 0, TR_ECLOSED if the actor has exited (or `to` is stale or none),
 * TR_EBUFFULL if its mailbox is bounded and full, TR_EINVAL if msg is NULL.
 * An actor that exits while the message is on its way (another worker's
 * queue) never sees it: the message is freed, as in Erlang.
 * Backpressure: an actor that sends to an actor with thousands of queued
 * messages is not run again until that mailbox drains (nothing is
 * refused or lost; foreign threads are never held back).
 * Threads: any thread. */
TR_API int tr_send(tr_actor_id to, tr_msg *msg);

/* Convenience: tr_send(to, tr_msg_new(type, data, len)). Returns as
 * tr_send, or TR_ENOMEM if the message cannot be allocated.
 * Threads: any thread. */
TR_API int tr_send_copy(tr_actor_id to, uint32_t type, const void *data, size_t len);

/* Asks the actor to exit now with `reason` (TR_EXIT_KILLED if 0): it
 * handles no further message, its terminate runs, monitors see the reason.
 * Travels on the priority lane. Returns 0 or TR_ECLOSED.
 * Threads: any thread. */
TR_API int tr_kill(tr_actor_id to, int reason);

/* Writes to *depth how many user messages wait in the actor's mailbox: a
 * snapshot, for metrics and debugging (the number may change before the
 * call returns). System messages are not counted, nor messages still on
 * their way from another thread: those count once the actor's worker
 * takes them from its queues, which it does between actor turns. The
 * message being received, if any, is no longer counted.
 * Returns 0, TR_ECLOSED if the actor has exited (or `id` is stale or
 * none), or TR_EINVAL if depth is NULL.
 * Threads: any thread (it never blocks; the actor cannot be freed while
 * it is read). */
TR_API int tr_actor_mailbox_depth(tr_actor_id id, uint32_t *depth);

/* ---- inside an actor ----
 * Threads: the actor's own worker, during one of its callbacks (self is
 * valid only then). Nothing here blocks. Calls without a return code
 * cannot fail. */

/* The actor's own handle. Threads: the actor's own worker, in its
 * callbacks. */
TR_API tr_actor_id tr_self(const tr_actor *self);

/* The state pointer (NULL until set). Threads: the actor's own worker,
 * in its callbacks. */
TR_API void *tr_actor_state(const tr_actor *self);
TR_API void tr_actor_set_state(tr_actor *self, void *state);

/* The runtime, the worker loop the actor runs on (for libev watchers of
 * the actor's own; start and stop them only from this actor's callbacks;
 * the loop itself is the runtime's: never run, break or destroy it, nor
 * set its release/acquire callbacks, which measure the worker's busy
 * time) and that worker's index. Threads: the actor's own worker, in its
 * callbacks. */
TR_API tr_runtime *tr_actor_runtime(const tr_actor *self);
TR_API struct ev_loop *tr_actor_loop(const tr_actor *self);
TR_API unsigned tr_actor_worker(const tr_actor *self);

/* Exits with `reason` once the current callback returns. Threads: the
 * actor's own worker, in its callbacks. */
TR_API void tr_exit(tr_actor *self, int reason);

/* With on = true, TR_MSG_SHUTDOWN is only a message: the actor decides when
 * to exit (but a shutdown deadline still forces it). Default: off.
 * Threads: the actor's own worker, in its callbacks. */
TR_API void tr_actor_trap_shutdown(tr_actor *self, bool on);

/* Keeps the message being received: the runtime will not free it when
 * receive returns; the actor must send or free it. Returns msg (never
 * NULL). Threads: the actor's own worker, in its receive. */
TR_API tr_msg *tr_msg_claim(tr_actor *self, tr_msg *msg);

/* Watches `target`: when it exits, self receives TR_MSG_DOWN with the
 * reason and `ref` = *ref_out. If target is already gone, or exits before
 * the monitor request reaches it (it travels like a message), the DOWN
 * carries TR_EXIT_NOPROC instead, as in Erlang. Returns 0 or TR_ENOMEM.
 * Threads: the actor's own worker, in its callbacks. */
TR_API int tr_monitor(tr_actor *self, tr_actor_id target, uint64_t *ref_out);

/* Stops watching. A DOWN already on its way may still arrive (as in
 * Erlang without the flush option). Returns 0, TR_ECLOSED (target gone) or
 * TR_ENOMEM. Threads: the actor's own worker, in its callbacks. */
TR_API int tr_demonitor(tr_actor *self, tr_actor_id target, uint64_t ref);

/* Sends msg to `to` as a request. The reply (sent with tr_reply) arrives as
 * an ordinary message with TR_MSGF_REPLY and ref = *req_out; if none arrives
 * within timeout_ms, a TR_MSG_TIMEOUT with ref = *req_out arrives instead,
 * and a late reply is dropped. Nobody blocks. Takes msg in every case.
 * Returns 0, TR_ENOMEM (nothing was sent), or the tr_send error (no
 * TIMEOUT follows then). Threads: the actor's own worker, in its
 * callbacks. */
TR_API int tr_request(tr_actor *self, tr_actor_id to, tr_msg *msg, uint32_t timeout_ms,
                      uint64_t *req_out);

/* Answers `request` (a message with TR_MSGF_REQUEST being received) with
 * `reply`. Takes reply in every case. Returns the tr_send result, or
 * TR_EINVAL if `request` is not a request. Threads: the actor's own
 * worker, in its receive. */
TR_API int tr_reply(tr_actor *self, const tr_msg *request, tr_msg *reply);

#ifdef __cplusplus
}
#endif

#endif
