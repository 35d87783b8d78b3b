#include "slot.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"

#define CHUNK_BITS 12
#define CHUNK_SLOTS (1u << CHUNK_BITS)
#define MAX_CHUNKS (1u << (TR__ID_INDEX_BITS - CHUNK_BITS)) /* 16 M live actors */
#define GEN_MASK ((1ull << (64 - TR__SLOT_GEN_SHIFT)) - 1)

static tr__slot *chunks[MAX_CHUNKS]; /* published with a release store */
static uint32_t nchunks;             /* guarded by grow_lock */
static uint64_t free_head;           /* tag << 32 | (index + 1) */
static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;

static inline tr__slot *slot_at(uint32_t index)
{
    tr__slot *chunk = tr__load_acq_ptr((void **)&chunks[index >> CHUNK_BITS]);
    return &chunk[index & (CHUNK_SLOTS - 1)];
}

/* Pushes the chain first..last (already linked through next_free). */
static void push_free(uint32_t first, tr__slot *last)
{
    uint64_t head = tr__load_acq_64(&free_head);
    for (;;) {
        tr__store_rel_32(&last->next_free, (uint32_t)head);
        uint64_t next = ((head >> 32) + 1) << 32 | (first + 1);
        if (tr__cas_sc_64_value(&free_head, head, next, &head)) {
            return;
        }
    }
}

static int grow(void)
{
    int rc = 0;
    pthread_mutex_lock(&grow_lock);
    if ((uint32_t)tr__load_acq_64(&free_head) != 0) {
        goto out; /* another thread grew the table meanwhile */
    }
    if (nchunks == MAX_CHUNKS) {
        rc = TR_ENOMEM;
        goto out;
    }
    tr__slot *chunk = aligned_alloc(64, CHUNK_SLOTS * sizeof(*chunk));
    if (chunk == NULL) {
        rc = TR_ENOMEM;
        goto out;
    }
    memset(chunk, 0, CHUNK_SLOTS * sizeof(*chunk));
    uint32_t base = nchunks << CHUNK_BITS;
    for (uint32_t i = 0; i < CHUNK_SLOTS; i++) {
        chunk[i].word = 1ull << TR__SLOT_GEN_SHIFT; /* generation 1: no id is ever 0 */
        chunk[i].next_free = i + 1 < CHUNK_SLOTS ? base + i + 2 : 0;
        chunk[i].index = base + i;
    }
    tr__store_rel_ptr((void **)&chunks[nchunks], chunk);
    nchunks++;
    push_free(base, &chunk[CHUNK_SLOTS - 1]);
out:
    pthread_mutex_unlock(&grow_lock);
    return rc;
}

int tr__slot_alloc(struct tr_actor *a, struct tr__worker *w, uint32_t capacity, uint8_t overflow,
                   tr_actor_id *out)
{
    for (;;) {
        uint64_t head = tr__load_acq_64(&free_head);
        uint32_t first = (uint32_t)head;
        if (first == 0) {
            int rc = grow();
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        tr__slot *s = slot_at(first - 1);
        /* next_free may be stale if another thread pops s meanwhile; the
         * tag in the head makes our CAS fail in that case. */
        uint64_t next = ((head >> 32) + 1) << 32 | tr__load_acq_32(&s->next_free);
        if (!tr__cas_sc_64_value(&free_head, head, next, &head)) {
            continue;
        }
        /* Atomic stores: a sender may read these fields of a slot being
         * reused, between its two generation checks (it then discards what
         * it read), so a plain store here would race. */
        tr__store_rel_ptr((void **)&s->actor, a);
        tr__store_rel_ptr((void **)&s->worker, w);
        tr__store_rel_32(&s->capacity, capacity);
        tr__store_rel_8(&s->overflow, overflow);
        tr__store_rel_8(&s->overloaded, 0);
        uint64_t gen = tr__load_acq_64(&s->word) >> TR__SLOT_GEN_SHIFT;
        /* The store publishes the fields above with the generation. */
        tr__store_rel_64(&s->word, gen << TR__SLOT_GEN_SHIFT | TR__SLOT_ALIVE);
        out->bits = gen << TR__ID_INDEX_BITS | (first - 1);
        return 0;
    }
}

tr__slot *tr__slot_get(tr_actor_id id)
{
    uint32_t index = tr__id_index(id);
    if (id.bits == 0 || (index >> CHUNK_BITS) >= MAX_CHUNKS) {
        return NULL;
    }
    if (tr__load_acq_ptr((void **)&chunks[index >> CHUNK_BITS]) == NULL) {
        return NULL;
    }
    return slot_at(index);
}

bool tr__slot_pin(tr__slot *s, tr_actor_id id)
{
    uint64_t w = tr__load_acq_64(&s->word);
    for (;;) {
        if (!tr__slot_word_live(w, id)) {
            return false;
        }
        if (tr__cas_sc_64_value(&s->word, w, w + TR__SLOT_PIN, &w)) {
            return true;
        }
    }
}

bool tr__slot_unpin(tr__slot *s)
{
    uint64_t old = tr__faa_sc_64(&s->word, (uint64_t)0 - TR__SLOT_PIN);
    /* We held the last pin and the actor had already exited. */
    return (old & (TR__SLOT_PIN_MASK | TR__SLOT_ALIVE)) == TR__SLOT_PIN;
}

bool tr__slot_is_alive(tr__slot *s, tr_actor_id id)
{
    return tr__slot_word_live(tr__load_acq_64(&s->word), id);
}

bool tr__slot_kill(tr__slot *s)
{
    uint64_t old = tr__faa_sc_64(&s->word, (uint64_t)0 - TR__SLOT_ALIVE);
    return (old & (TR__SLOT_PIN_MASK | TR__SLOT_ALIVE)) == TR__SLOT_ALIVE;
}

void tr__slot_release(tr__slot *s)
{
    uint64_t gen = ((tr__load_acq_64(&s->word) >> TR__SLOT_GEN_SHIFT) + 1) & GEN_MASK;
    if (gen == 0) {
        gen = 1; /* no id is ever 0 */
    }
    tr__store_rel_64(&s->word, gen << TR__SLOT_GEN_SHIFT);
    push_free(s->index, s);
}
