/* Design notes: the actor table.
 *
 * A tr_actor_id is (generation << 24 | index): a 40-bit generation and a
 * 24-bit index. The index names a slot in a process-wide table of
 * fixed-size chunks that are never freed while the process runs
 * (type-stable memory), so reading a slot through a stale id is always
 * safe; the generation tells whether the slot still holds the actor the id
 * was made for. A slot is reused only after its generation moves on, and a
 * 40-bit generation does not wrap in practice: a single slot reused a
 * million times a second would take 12 days to come back to a value.
 *
 * slot->word = generation << 24 | pins << 1 | ALIVE.
 * - Senders do not pin: a message travels with its target id and the
 *   target's own worker checks the generation when it takes the message
 *   (only that worker ends the actor, so its check cannot go stale).
 * - A pin (CAS adding 2, only while the generation matches and ALIVE is
 *   set) keeps the actor record and its extra bytes from being reclaimed:
 *   net/ uses it to touch a connection's atomic fields from any thread.
 * - The owning worker clears ALIVE when the actor exits; new pins fail.
 * - Whoever leaves the word with no pins and ALIVE clear (the worker when
 *   it clears ALIVE with no pins, or the last pin holder to unpin)
 *   reclaims the actor: exactly one thread sees that transition.
 * - Reclaiming bumps the generation, so every old id goes stale, and puts
 *   the slot on a lock-free free list (a tagged head defeats ABA).
 *
 * Slots are one cache line each: the fields senders write (`queued`) and
 * read (`word`, `overloaded`) for one actor never share a line with
 * another actor's. */
#ifndef TROUPE_RUNTIME_SLOT_H
#define TROUPE_RUNTIME_SLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "troupe/msg.h"

struct tr_actor;
struct tr__worker;

#define TR__ID_INDEX_BITS 24
#define TR__ID_INDEX_MASK ((1u << TR__ID_INDEX_BITS) - 1)
#define TR__SLOT_ALIVE 1ull
#define TR__SLOT_PIN 2ull
#define TR__SLOT_GEN_SHIFT 24
#define TR__SLOT_PIN_MASK ((1ull << TR__SLOT_GEN_SHIFT) - 1 - TR__SLOT_ALIVE)

typedef struct tr__slot {
    _Alignas(64) uint64_t word; /* any thread; atomics only */
    /* Set before ALIVE is published; read by senders between two checks
     * of the word. */
    struct tr_actor *actor;
    struct tr__worker *worker;
    uint32_t capacity;  /* bounded mailbox capacity, 0 = unbounded */
    uint8_t overflow;   /* tr_overflow of a bounded mailbox */
    /* Set by the owner while the mailbox is overloaded; senders that see
     * it mute themselves (worker.c). Any thread reads; owner writes. */
    uint8_t overloaded;
    /* Bounded mailboxes: user messages reserved by senders and not yet
     * popped or dropped (in flight plus queued). Never reset: every
     * increment has exactly one decrement, even across generations. */
    uint32_t queued;
    uint32_t next_free; /* free-list link: index + 1, 0 ends; atomics */
    uint32_t index;     /* fixed at creation */
} tr__slot;

static inline uint32_t tr__id_index(tr_actor_id id)
{
    return (uint32_t)id.bits & TR__ID_INDEX_MASK;
}

static inline uint64_t tr__id_gen(tr_actor_id id)
{
    return id.bits >> TR__ID_INDEX_BITS;
}

/* Whether a slot word says id's actor is alive. */
static inline bool tr__slot_word_live(uint64_t word, tr_actor_id id)
{
    return (word >> TR__SLOT_GEN_SHIFT) == tr__id_gen(id) && (word & TR__SLOT_ALIVE) != 0;
}

/* Takes a free slot for actor a on worker w, records the mailbox bounds,
 * marks it ALIVE and writes the id. Returns 0 or TR_ENOMEM (table full or
 * no memory). Any thread. */
int tr__slot_alloc(struct tr_actor *a, struct tr__worker *w, uint32_t capacity, uint8_t overflow,
                   tr_actor_id *out);

/* The slot an id names, or NULL if the index was never allocated. */
tr__slot *tr__slot_get(tr_actor_id id);

/* Pins the slot if it still holds id's live actor. Any thread. */
bool tr__slot_pin(tr__slot *s, tr_actor_id id);

/* Drops a pin. Returns true if the caller must reclaim the actor. */
bool tr__slot_unpin(tr__slot *s);

/* True if the slot holds id's actor and it is alive (a snapshot). */
bool tr__slot_is_alive(tr__slot *s, tr_actor_id id);

/* Clears ALIVE. Returns true if no pins remain: the caller reclaims.
 * Owning worker only. */
bool tr__slot_kill(tr__slot *s);

/* Bumps the generation and frees the slot. Called by the reclaimer. */
void tr__slot_release(tr__slot *s);

#endif
