/* Design notes: the actor table.
 *
 * A tr_actor_id is (generation << 32 | index). The index names a slot in a
 * process-wide table of fixed-size chunks that are never freed while the
 * process runs (type-stable memory), so reading a slot through a stale id is
 * always safe; the generation tells whether the slot still holds the actor
 * the id was made for.
 *
 * slot->word = generation << 32 | pins << 1 | ALIVE.
 * - A sender pins the slot (CAS adds 2) only if the generation matches and
 *   ALIVE is set, uses slot->actor, then unpins. While pinned, the actor's
 *   memory cannot be reclaimed.
 * - The owning worker clears ALIVE when the actor exits. New pins fail from
 *   then on.
 * - Whoever leaves the word with no pins and ALIVE clear (the worker when it
 *   clears ALIVE with no pins, or the last sender to unpin) reclaims the
 *   actor: exactly one thread sees that transition.
 * - Reclaiming bumps the generation, so every old id goes stale, and puts
 *   the slot on a lock-free free list (a tagged head defeats ABA). */
#ifndef TROUPE_RUNTIME_SLOT_H
#define TROUPE_RUNTIME_SLOT_H

#include <stdbool.h>
#include <stdint.h>

#include "troupe/msg.h"

struct tr_actor;
struct tr__worker;

typedef struct tr__slot {
    uint64_t word;             /* any thread; atomics only */
    struct tr_actor *actor;    /* set before ALIVE is published */
    struct tr__worker *worker; /* likewise */
    uint32_t next_free;        /* free-list link: index + 1, 0 ends; atomics */
    uint32_t index;            /* fixed at creation */
} tr__slot;

#define TR__SLOT_ALIVE 1ull
#define TR__SLOT_PIN 2ull

/* Takes a free slot for actor a on worker w, marks it ALIVE and writes the
 * id. Returns 0 or TR_ENOMEM (table full or no memory). Any thread. */
int tr__slot_alloc(struct tr_actor *a, struct tr__worker *w, tr_actor_id *out);

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
