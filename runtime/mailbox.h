/* Design notes: mailbox. Many producers, one consumer (the owning worker).
 *
 * Two lanes, each an intrusive lock-free stack of tr_msg linked through
 * msg->next: producers push with one CAS; the consumer takes the whole
 * stack with one atomic exchange and reverses it into a private FIFO list,
 * so per-sender order is kept and a batch costs one atomic, not one per
 * message. The system lane (shutdown, kill, monitor) is always drained
 * before the user lane, so those messages overtake queued user messages.
 *
 * Bounded mailboxes count user messages in `count` (producers add before
 * pushing and back out on refusal; the consumer subtracts as it pops);
 * unbounded ones never touch it, so the unbounded send path is one CAS.
 * No allocation happens here: the message is the node. */
#ifndef TROUPE_RUNTIME_MAILBOX_H
#define TROUPE_RUNTIME_MAILBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "troupe/actor.h"
#include "troupe/msg.h"

typedef struct tr__mailbox {
    tr_msg *sys_head;   /* push: any thread (CAS); take: owner (exchange) */
    tr_msg *user_head;  /* push: any thread (CAS); take: owner (exchange) */
    tr_msg *sys_local;  /* owner only: FIFO taken from sys_head */
    tr_msg *user_local; /* owner only: FIFO taken from user_head */
    uint32_t count;     /* bounded only: queued user messages; ck_pr atomics */
    uint32_t capacity;  /* 0 = unbounded; set before the actor is published */
    uint8_t overflow;   /* tr_overflow; set before publication */
} tr__mailbox;

void tr__mailbox_init(tr__mailbox *mb, uint32_t capacity, tr_overflow overflow);

/* Frees every queued message. Owner only, once nothing else can push. */
void tr__mailbox_fini(tr__mailbox *mb);

/* Pushes a user message. Returns 0, or TR_EBUFFULL when bounded and full
 * (the message then stays the caller's). Any thread. */
int tr__mailbox_push(tr__mailbox *mb, tr_msg *m);

/* Pushes a user message past the capacity (still counted). For the few
 * control messages that must not be lost nor overtake queued messages.
 * Any thread. */
void tr__mailbox_push_over(tr__mailbox *mb, tr_msg *m);

/* Pushes onto the priority lane; never refuses. Any thread. */
void tr__mailbox_push_sys(tr__mailbox *mb, tr_msg *m);

/* Pops the oldest system message, or NULL. Owner only. */
tr_msg *tr__mailbox_pop_sys(tr__mailbox *mb);

/* Pops the oldest user message, or NULL. Under TR_OVERFLOW_DROP_OLDEST it
 * first frees the oldest messages beyond the capacity; *dropped counts
 * them. Owner only. */
tr_msg *tr__mailbox_pop(tr__mailbox *mb, uint32_t *dropped);

/* True if a system message waits. Owner only. */
bool tr__mailbox_has_sys(tr__mailbox *mb);

/* True if any message waits. Owner only; the answer can only go from false
 * to true behind the owner's back. */
bool tr__mailbox_nonempty(tr__mailbox *mb);

#endif
