#include "slot.h"

#include <pthread.h>
#include <stdlib.h>

#include "atomic.h"

#define CHUNK_BITS 12
#define CHUNK_SLOTS (1u << CHUNK_BITS)
#define MAX_CHUNKS 4096u /* 16 M live actors */

static tr__slot *chunks[MAX_CHUNKS]; /* published with a release store */
static uint32_t nchunks;             /* guarded by grow_lock */
static uint64_t free_head;           /* tag << 32 | (index + 1) */
static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;

static inline uint32_t id_index(tr_actor_id id)
{
    return (uint32_t)id.bits;
}

static inline uint32_t id_gen(tr_actor_id id)
{
    return (uint32_t)(id.bits >> 32);
}

static inline tr__slot *slot_at(uint32_t index)
{
    tr__slot *chunk = tr__loadp((void **)&chunks[index >> CHUNK_BITS]);
    return &chunk[index & (CHUNK_SLOTS - 1)];
}

/* Pushes the chain first..last (already linked through next_free). */
static void push_free(uint32_t first, tr__slot *last)
{
    uint64_t head = tr__load64(&free_head);
    for (;;) {
        tr__store32(&last->next_free, (uint32_t)head);
        uint64_t next = ((head >> 32) + 1) << 32 | (first + 1);
        if (tr__cas64_value(&free_head, head, next, &head)) {
            return;
        }
    }
}

static int grow(void)
{
    int rc = 0;
    pthread_mutex_lock(&grow_lock);
    if ((uint32_t)tr__load64(&free_head) != 0) {
        goto out; /* another thread grew the table meanwhile */
    }
    if (nchunks == MAX_CHUNKS) {
        rc = TR_ENOMEM;
        goto out;
    }
    tr__slot *chunk = calloc(CHUNK_SLOTS, sizeof(*chunk));
    if (chunk == NULL) {
        rc = TR_ENOMEM;
        goto out;
    }
    uint32_t base = nchunks << CHUNK_BITS;
    for (uint32_t i = 0; i < CHUNK_SLOTS; i++) {
        chunk[i].word = 1ull << 32; /* generation 1: no id is ever 0 */
        chunk[i].next_free = i + 1 < CHUNK_SLOTS ? base + i + 2 : 0;
        chunk[i].index = base + i;
    }
    tr__storep((void **)&chunks[nchunks], chunk);
    nchunks++;
    push_free(base, &chunk[CHUNK_SLOTS - 1]);
out:
    pthread_mutex_unlock(&grow_lock);
    return rc;
}

int tr__slot_alloc(struct tr_actor *a, struct tr__worker *w, tr_actor_id *out)
{
    for (;;) {
        uint64_t head = tr__load64(&free_head);
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
        uint64_t next = ((head >> 32) + 1) << 32 | tr__load32(&s->next_free);
        if (!tr__cas64_value(&free_head, head, next, &head)) {
            continue;
        }
        /* Atomic stores: tr__send's fast path may read these fields of a
         * slot being reused, between its two generation checks (it then
         * discards what it read), so a plain store here would race. */
        tr__storep((void **)&s->actor, a);
        tr__storep((void **)&s->worker, w);
        uint64_t gen = tr__load64(&s->word) >> 32;
        /* The store publishes actor and worker with the generation. */
        tr__store64(&s->word, gen << 32 | TR__SLOT_ALIVE);
        out->bits = gen << 32 | (first - 1);
        return 0;
    }
}

tr__slot *tr__slot_get(tr_actor_id id)
{
    uint32_t index = id_index(id);
    if (id.bits == 0 || (index >> CHUNK_BITS) >= MAX_CHUNKS) {
        return NULL;
    }
    if (tr__loadp((void **)&chunks[index >> CHUNK_BITS]) == NULL) {
        return NULL;
    }
    return slot_at(index);
}

bool tr__slot_pin(tr__slot *s, tr_actor_id id)
{
    uint64_t w = tr__load64(&s->word);
    for (;;) {
        if ((uint32_t)(w >> 32) != id_gen(id) || (w & TR__SLOT_ALIVE) == 0) {
            return false;
        }
        if (tr__cas64_value(&s->word, w, w + TR__SLOT_PIN, &w)) {
            return true;
        }
    }
}

bool tr__slot_unpin(tr__slot *s)
{
    uint64_t old = tr__faa64(&s->word, (uint64_t)0 - TR__SLOT_PIN);
    /* We held the last pin and the actor had already exited. */
    return (old & 0xffffffffull) == TR__SLOT_PIN;
}

bool tr__slot_is_alive(tr__slot *s, tr_actor_id id)
{
    uint64_t w = tr__load64(&s->word);
    return (uint32_t)(w >> 32) == id_gen(id) && (w & TR__SLOT_ALIVE) != 0;
}

bool tr__slot_kill(tr__slot *s)
{
    uint64_t old = tr__faa64(&s->word, (uint64_t)0 - TR__SLOT_ALIVE);
    return (old & 0xffffffffull) == TR__SLOT_ALIVE;
}

void tr__slot_release(tr__slot *s)
{
    uint32_t gen = (uint32_t)(tr__load64(&s->word) >> 32) + 1;
    if (gen == 0) {
        gen = 1;
    }
    tr__store64(&s->word, (uint64_t)gen << 32);
    push_free(s->index, s);
}
