/* Internal: the actor record and the send path. */
#ifndef TROUPE_RUNTIME_ACTOR_H
#define TROUPE_RUNTIME_ACTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "troupe/actor.h"
#include "mailbox.h"
#include "slot.h"

struct tr__worker;
struct tr__timer;

enum {
    TR__A_STARTED = 1u << 0,      /* init has run (or was skipped) */
    TR__A_EXITING = 1u << 1,      /* tr_exit called; finish after the callback */
    TR__A_TRAP_SHUTDOWN = 1u << 2,
    TR__A_SUPERVISED = 1u << 3,   /* its supervisor stops it, not the broadcast */
    TR__A_LISTED = 1u << 4,       /* on its worker's actor list */
    TR__A_NO_TERMINATE = 1u << 5, /* init failed or never ran */
    TR__A_SHUTDOWN_SENT = 1u << 6,
    TR__A_CLAIMED = 1u << 7,      /* receive claimed the message it is handling */
    TR__A_SCHEDULED = 1u << 8,    /* queued, running, muted or dead: nobody queues it */
    TR__A_MUTED = 1u << 9,        /* on its worker's muted list */
    TR__A_MUTE_PENDING = 1u << 10 /* sent to an overloaded actor this turn */
};

/* Actor backpressure (route.c): a mailbox with this many user messages
 * mutes its senders until it drains under the low mark. */
#define TR__OVERLOAD_HIGH 1024u
#define TR__OVERLOAD_LOW 256u

/* Every field belongs to the owning worker (other threads reach the actor
 * only through its slot and its worker's queues), except where noted.
 * About 180 bytes; an idle actor costs this plus its slot (64 bytes). */
struct tr_actor {
    tr__mailbox mbox;
    struct tr_actor *run_next;  /* ready queue or muted list */
    struct tr__worker *worker;  /* immutable */
    tr__slot *slot;             /* immutable */
    tr_actor_id id;             /* immutable */
    const tr_behavior *beh;     /* immutable */
    void *state;                /* owning worker only */
    void *arg;                  /* init argument; owning worker only */
    struct tr_actor *list_prev; /* worker's actor list; owning worker only */
    struct tr_actor *list_next;
    tr_msg *monitors;           /* MONITOR messages kept as watcher records; owner only */
    tr_msg *room_waiters;       /* ROOM_WAIT messages kept until the mailbox has room */
    struct tr__timer *timers;   /* timers and pending requests; owner only */
    uint32_t flags;             /* TR__A_*; owner only */
    int exit_reason;            /* owner; read by the reclaimer after the slot CAS */
    tr_actor_id muted_by;       /* while muted: the overloaded receiver */
    void (*on_reclaim)(void *extra); /* runs when the record is freed (any thread) */
};

/* Thread-local context of the calling thread. */
struct tr__worker *tr__current_worker(void);
tr_actor *tr__current_actor(void);
void tr__set_current(struct tr__worker *w, tr_actor *a);

/* Sends m to `to` (m->from and flags already set). sys selects the priority
 * lane. Takes m in every case. Any thread. */
int tr__send(tr_actor_id to, tr_msg *m, bool sys);

/* Asks `target` (bounded mailbox) to send TR_MSG__ROOM to `waiter` once
 * a user message would be accepted again (at once if it would be now, or
 * if target is gone). Returns 0, TR_ENOMEM, or TR_ECLOSED (no answer will
 * come: target is gone). Any thread. */
int tr__actor_wait_room(tr_actor_id target, tr_actor_id waiter);

/* Turns a ROOM_WAIT message into its answer from `target` and sends it
 * back to its waiter. Any thread. */
void tr__actor_answer_room(tr_msg *wait, tr_actor_id target);

/* A muted actor may run again (route.c). Owning worker. */
void tr__actor_unmute(struct tr__worker *w, tr_actor *a);

/* Turns a MONITOR message of watcher mon->from into its DOWN for `target`
 * with `reason` and sends it. Any thread. */
void tr__actor_monitor_gone(tr_msg *mon, tr_actor_id target, int reason);

/* As tr_send, but a bounded mailbox accepts it past its capacity: for
 * control messages that must neither be lost nor overtake queued user
 * messages (a connection's CLOSED after its frames). Any thread. */
int tr__send_over(tr_actor_id to, tr_msg *msg);

/* Runs one turn of a (owning worker). Returns how many messages it took
 * from its mailbox (user and system). */
unsigned tr__actor_run(struct tr__worker *w, tr_actor *a);

/* Exits a now with reason, on its worker (used for forced exits). */
void tr__actor_force_exit(tr_actor *a, int reason);

/* Asks a to shut down (pushes TR_MSG_SHUTDOWN). Owning worker. */
void tr__actor_send_shutdown(tr_actor *a);

typedef struct tr__spawn_ex {
    bool supervised;
    /* Bytes allocated with the actor record, zeroed (tr__actor_extra). They
     * live until the actor is reclaimed, i.e. as long as anyone holding a
     * pin (tr__actor_pin) can look at them: the place for fields that
     * foreign threads read or update atomically. */
    size_t extra_size;
    /* Runs with the extra bytes when the actor record is freed: after the
     * actor exited and the last pin is gone, on whichever thread that is.
     * For what pin holders may still read (net/: a connection's settings). */
    void (*on_reclaim)(void *extra);
} tr__spawn_ex;

/* The extra bytes requested at spawn (16-byte aligned). */
void *tr__actor_extra(tr_actor *a);

/* Pins id's actor so its record (and extra bytes) cannot be reclaimed;
 * NULL if it has exited. Pair with tr__actor_unpin. Any thread. */
tr_actor *tr__actor_pin(tr_actor_id id, tr__slot **slot_out);
void tr__actor_unpin(tr__slot *slot, tr_actor *a);

/* The worker record of the actor (net/ hangs per-worker state on it). */
struct tr__worker *tr__actor_worker(tr_actor *a);

int tr__spawn(tr_runtime *rt, const tr_behavior *b, void *arg, const tr_spawn_opts *opts,
              const tr__spawn_ex *ex, tr_actor_id *out);

#endif
