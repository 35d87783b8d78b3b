/* Design notes: workers and the scheduler.
 *
 * One thread per worker runs one libev loop and a ready queue of actors.
 * Everything about an actor (its mailbox, its `scheduled` mark, its place
 * in the ready queue) is touched only by its own worker, with plain loads
 * and stores. Other threads reach it through queues (route.c):
 * - one per ordered pair of workers: the sender links messages into a
 *   private chain and publishes the chain with one CAS at the end of the
 *   actor turn (or loop iteration) that sent them;
 * - one per worker for foreign threads (the application's own), a
 *   lock-free stack pushed with one CAS per message.
 * The receiving worker takes each queue with one exchange, checks every
 * message's target generation itself and appends it to the mailbox.
 *
 * Sleeping: an idle worker may first spin for spin_us, but only while a
 * peer worker is awake and making progress (its `beat` moves): a peer
 * that a busy neighbour process has pushed off the CPU cannot answer, and
 * spinning would only keep it off longer. Then it sets `sleeping`, issues
 * a full fence, looks at its queues once more and only then blocks in
 * ev_run. A sender publishes (a full barrier), then reads `sleeping` and
 * calls ev_async_send only if it is set. One of the two always sees the
 * other, so no wake-up is lost, and an awake worker costs its senders no
 * syscall.
 *
 * Polling the loop while busy: an epoll_wait costs a syscall, so a busy
 * worker looks at its loop only if something there needs it
 * (`loop_users`: net/'s sockets, actor timers, an application watcher),
 * at most every poll_us. Work made ready inside the loop just before it
 * would block (net/'s flush in an ev_prepare) stops it from blocking (the
 * `guard` prepare watcher runs last).
 *
 * Statistics (tr_runtime_worker_stats): single-writer counters. Only the
 * owner writes them, each with a relaxed load-add-store (no locked
 * instruction); any thread reads them with relaxed loads. Turns and
 * messages are added once per batch of turns. Busy time costs no clock
 * read of its own: the busy loop already reads the clock once per batch,
 * and the loop's release/acquire callbacks read it around the one
 * syscall that blocks (epoll_wait inside ev_run(EVRUN_ONCE); the I/O
 * callbacks that follow it are work, so they count as busy). */
#ifndef TROUPE_RUNTIME_WORKER_H
#define TROUPE_RUNTIME_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "actor.h"

/* A chain of messages for one worker, not yet published: newest first,
 * linked through msg->next. Owner only. */
typedef struct tr__pending {
    tr_msg *newest;
    tr_msg *oldest;
} tr__pending;

/* A queue from one thread (or from all foreign threads) to a worker: a
 * stack of messages, newest first. One cache line each. */
typedef struct tr__inbox {
    _Alignas(64) tr_msg *head; /* producer pushes (CAS); owner takes (exchange) */
    char pad_[56];
} tr__inbox;

/* Laid out by who touches what: other threads read the first line (set
 * once) and `sleeping`; the owner writes the rest all the time, so none of
 * that may share a line with what senders read. */
typedef struct tr__worker {
    /* Immutable once started; read by senders. */
    _Alignas(64) tr_runtime *rt;
    unsigned index;
    struct ev_loop *loop;     /* owning worker only (ev_async_send: any) */
    tr__inbox *inbox;         /* [nworkers] from worker i; [nworkers]: foreign threads */
    pthread_t thread;
    int started;
    /* Owning worker only. */
    _Alignas(64) tr_actor *run_head;
    tr_actor *run_tail;
    tr_actor *actors;         /* started actors */
    tr_actor *muted;          /* muted senders (actor.c) */
    tr_actor *in_turn;        /* the actor whose turn is running, or NULL */
    uint64_t next_ref;        /* monitor refs, timer and request ids */
    void *ext;                /* per-worker state of net/ */
    void (*ext_free)(void *ext); /* called at tr__worker_fini */
    uint32_t shutdown_done;
    uint32_t force_done;
    uint32_t loop_users;      /* see "Polling the loop" above */
    uint32_t loop_exposed;    /* tr_actor_loop was called */
    uint64_t last_poll_ns;    /* last non-blocking look at the loop */
    tr__pending *out;         /* [nworkers] chains to publish */
    uint32_t *dirty;          /* [nworkers] indexes of non-empty chains */
    uint32_t ndirty;
    uint64_t *woke_ns;        /* [nworkers] when we last woke worker i */
    ev_async wake;
    ev_prepare guard;         /* keeps ev_run from blocking with work ready */
    ev_idle nowait;
    ev_timer tick;            /* re-checks muted actors while idle */
    /* Any thread reads; the owner writes when it goes to sleep or wakes. */
    _Alignas(64) uint32_t sleeping;
    uint32_t stop;            /* any thread; atomics */
    _Alignas(64) uint64_t beat; /* owner bumps while awake; spinning peers read */
    /* Statistics: owner writes (tr__stat_add_64), any thread reads
     * (relaxed). Apart from `beat`, which spinning peers read all the time. */
    _Alignas(64) uint64_t st_actors; /* started, not yet exited */
    uint64_t st_turns;
    uint64_t st_messages;            /* taken from mailboxes by actors */
    uint64_t st_busy_ns;
    uint64_t st_sleeps;
    /* Owning worker only. */
    uint64_t busy_mark_ns;           /* st_busy_ns counts up to here */
    uint32_t blocking;               /* in the ev_run(EVRUN_ONCE) that may block */
} tr__worker;

int tr__worker_init(tr__worker *w, tr_runtime *rt, unsigned index, unsigned nworkers);
void tr__worker_fini(tr__worker *w);
int tr__worker_start(tr__worker *w);
void tr__worker_join(tr__worker *w);

/* Wakes the worker if it sleeps (any thread). */
void tr__worker_wake(tr__worker *w);

/* Queues a ready actor on its worker. The caller set TR__A_SCHEDULED.
 * Owning worker only. */
void tr__worker_enqueue(tr__worker *w, tr_actor *a);

/* Adds/removes a started actor to/from the worker's list. Owner only. */
void tr__worker_list_add(tr__worker *w, tr_actor *a);
void tr__worker_list_remove(tr__worker *w, tr_actor *a);

/* Forces every actor of w to exit, including ones not yet started.
 * Owner only (or single-threaded after join). */
void tr__worker_kill_all(tr__worker *w);

/* Something on w's loop needs it polled while the worker is busy (a
 * socket, a timer, an application watcher); `use` false drops one.
 * Owner only. */
void tr__worker_loop_use(tr__worker *w, bool use);

#endif
