/* Design notes: mailbox. Owning worker only: no atomics (but see `depth`).
 *
 * Messages reach an actor's worker first (route.c: a queue per pair of
 * workers, and one for foreign threads); the worker appends each to its
 * target's mailbox with plain stores. Two FIFO lanes, each a singly
 * linked list through msg->next: the system lane (shutdown, kill,
 * monitor, down) is always drained before the user lane, so those
 * messages overtake queued user messages.
 *
 * Bounded mailboxes: senders reserve room in the actor's slot
 * (slot->queued, an atomic counter in type-stable memory, so a sender
 * needs no pin); a reserved message carries TR__MSGF_COUNTED and gives its
 * reservation back when it is popped, dropped or freed unread. Messages
 * sent past the capacity on purpose (TR__MSGF_OVER: a connection's events)
 * are not counted and never dropped.
 *
 * `depth` counts every queued user message, bounded or not: the runtime
 * uses it to mute senders of an overloaded actor, and any thread may read
 * it (tr_actor_mailbox_depth, holding a pin). So the owner writes it with
 * relaxed atomic stores; its own reads stay plain (it is the only writer).
 * No allocation happens here: the message is the node. */
#ifndef TROUPE_RUNTIME_MAILBOX_H
#define TROUPE_RUNTIME_MAILBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "troupe/actor.h"
#include "troupe/msg.h"
#include "msg_impl.h"
#include "slot.h"

/* Private message flags, above the public ones. */
enum {
    TR__MSGF_OVER = 1u << 8,    /* accepted past a bounded capacity; never dropped */
    TR__MSGF_COUNTED = 1u << 9  /* holds a reservation in its target's slot->queued */
};

typedef struct tr__mailbox {
    tr_msg *sys_head, *sys_tail;
    tr_msg *user_head, *user_tail;
    uint32_t depth;    /* queued user messages; owner writes (relaxed), any thread reads */
    uint32_t counted;  /* of which TR__MSGF_COUNTED */
    uint32_t capacity; /* 0 = unbounded */
    uint8_t overflow;  /* tr_overflow */
} tr__mailbox;

void tr__mailbox_init(tr__mailbox *mb, uint32_t capacity, tr_overflow overflow);

/* Frees every queued message, giving reservations back to slot s. A
 * MONITOR or ROOM_WAIT still queued (it wants an answer) is handed to
 * on_monitor (which takes it) instead.
 * Called once the actor is dead, by its reclaimer. */
void tr__mailbox_fini(tr__mailbox *mb, tr__slot *s, void (*on_monitor)(void *ctx, tr_msg *m),
                      void *ctx);

/* Appends m to the lane its flags name (TR_MSGF_SYSTEM: system). */
void tr__mailbox_put(tr__mailbox *mb, tr_msg *m);

/* Pops the oldest system message, or NULL. */
tr_msg *tr__mailbox_pop_sys(tr__mailbox *mb);

/* Pops the oldest user message, or NULL, giving its reservation back to
 * s. Under TR_OVERFLOW_DROP_OLDEST it first frees the oldest counted
 * messages beyond the capacity; *dropped (if not NULL) counts them. */
tr_msg *tr__mailbox_pop(tr__mailbox *mb, tr__slot *s, uint32_t *dropped);

/* True if a system message waits. */
bool tr__mailbox_has_sys(const tr__mailbox *mb);

/* True if any message waits. */
bool tr__mailbox_nonempty(const tr__mailbox *mb);

/* Gives a counted message's reservation back (on a pop, a drop, or when
 * it is freed unread). Any thread. */
void tr__mailbox_unreserve(tr__slot *s, tr_msg *m);

#endif
