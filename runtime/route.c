/* Design notes: the message path.
 *
 * tr__route looks the target up in the slot table (type-stable memory, so
 * a stale id is safe to read) and, if it is alive, goes one of three ways:
 * 1. Same worker as the caller: a plain append to the mailbox and, if the
 *    actor was idle, to the ready queue. No atomics (unless the mailbox is
 *    bounded: one add on the slot's reservation counter).
 * 2. Another worker of the same runtime: the message (carrying its target
 *    id) is prepended to the caller's private chain for that worker; the
 *    worker loop publishes every chain at the end of the actor turn with
 *    one CAS onto the single-producer queue of that pair of workers, then
 *    reads the receiver's `sleeping` flag once.
 * 3. A foreign thread: one CAS onto the receiver's foreign queue, then the
 *    `sleeping` check.
 * The receiving worker takes a queue with one exchange, reverses it (per
 * sender order holds) and checks each target's generation itself: only an
 * actor's own worker ends it, so the check cannot go stale, and no pin or
 * reference count is taken per message. A message whose target died in
 * flight is freed there (a MONITOR is answered with a DOWN).
 *
 * A sender reads the slot's word, then the fields, then the word again:
 * if both words name the same live generation, the fields belong to it.
 *
 * Actor backpressure: when a mailbox passes TR__OVERLOAD_HIGH user
 * messages its owner sets the slot's `overloaded` flag; an actor that
 * sends a user message to an overloaded actor is muted at the end of its
 * turn (it is not run again, though its mailbox keeps filling) until the
 * receiver drains under TR__OVERLOAD_LOW, as Pony's runtime does. Nothing
 * is refused or lost. An overloaded actor is never muted (no deadlock
 * between two that flood each other), system messages unmute at once,
 * and foreign threads are never muted. */
#include "route.h"

#include <stdlib.h>

#include "actor.h"
#include "atomic.h"
#include "runtime.h"
#include "util.h"
#include "worker.h"

static void push_stack(tr_msg **head, tr_msg *newest, tr_msg *oldest)
{
    void *old = tr__load_acq_ptr((void **)head);
    do {
        oldest->next = old;
        /* The CAS is a full barrier: the messages are visible before the
         * head is, and the caller's later load of `sleeping` cannot move
         * above it. */
    } while (!tr__cas_sc_ptr_value((void **)head, old, newest, &old));
}

/* Returns whether w was asleep (and is now being woken). */
static bool wake_if_sleeping(tr__worker *w)
{
    /* seq_cst: ordered after the publishing CAS (the worker orders its
     * store of `sleeping` before its last look with a full fence). */
    if (tr__load_sc_32(&w->sleeping)) {
        tr__worker_wake(w);
        return true;
    }
    return false;
}

/* Puts m on the queue from the calling thread to tw (the caller's
 * pending chain, or tw's foreign queue). */
static void post(tr__worker *cw, tr__worker *tw, tr_msg *m)
{
    if (cw != NULL && cw->rt == tw->rt) {
        tr__pending *p = &cw->out[tw->index];
        m->next = p->newest;
        p->newest = m;
        if (p->oldest == NULL) {
            p->oldest = m;
            cw->dirty[cw->ndirty++] = tw->index;
        }
        return;
    }
    m->next = NULL;
    push_stack(&tw->inbox[tw->rt->nworkers].head, m, m);
    wake_if_sleeping(tw);
}

void tr__deliver(tr__worker *w, tr_actor *a, tr_msg *m)
{
    tr__mailbox_put(&a->mbox, m);
    bool overloaded_now = false;
    if (a->mbox.depth >= TR__OVERLOAD_HIGH && !a->slot->overloaded) {
        tr__store_rel_8(&a->slot->overloaded, 1);
        overloaded_now = true;
    }
    if (!(a->flags & TR__A_SCHEDULED)) {
        a->flags |= TR__A_SCHEDULED;
        tr__worker_enqueue(w, a);
    } else if ((a->flags & TR__A_MUTED) && ((m->flags & TR_MSGF_SYSTEM) || overloaded_now)) {
        /* A system message never waits; and an overloaded actor is never
         * muted (two muted on each other, each overloaded, would wait
         * forever). */
        tr__actor_unmute(w, a);
    }
}

static void lane_flags(tr_msg *m, enum tr__lane lane)
{
    m->flags &= ~(uint32_t)(TR_MSGF_SYSTEM | TR__MSGF_OVER | TR__MSGF_COUNTED);
    if (lane == TR__LANE_SYS) {
        m->flags |= TR_MSGF_SYSTEM;
    } else if (lane == TR__LANE_OVER) {
        m->flags |= TR__MSGF_OVER;
    }
}

static uint32_t limit_of(uint32_t capacity, uint8_t overflow)
{
    if (overflow == TR_OVERFLOW_DROP_OLDEST) {
        return capacity > UINT32_MAX / 2 ? UINT32_MAX : capacity * 2;
    }
    return capacity;
}

bool tr__route_has_room(tr__slot *s)
{
    uint32_t capacity = tr__load_acq_32(&s->capacity);
    return capacity == 0 ||
           tr__load_acq_32(&s->queued) < limit_of(capacity, tr__load_acq_8(&s->overflow));
}

/* Reserves room in a bounded mailbox. Returns 0 or TR_EBUFFULL. */
static int reserve(tr__slot *s, tr_actor_id to, uint32_t capacity, uint8_t overflow)
{
    uint32_t limit = limit_of(capacity, overflow);
    if (tr__faa_sc_32(&s->queued, 1) < limit) {
        return 0;
    }
    tr__faa_sc_32(&s->queued, UINT32_MAX);
    if (overflow == TR_OVERFLOW_EXIT) {
        tr_msg *k = tr_msg_new(TR_MSG__KILL, NULL, 0);
        if (k != NULL) {
            k->reason = TR_EBUFFULL;
            tr__route(to, k, TR__LANE_SYS);
        }
    }
    return TR_EBUFFULL;
}

/* A sender that meets an overloaded actor is muted after its turn. */
static void maybe_mute(tr__worker *cw, tr__slot *s, tr_actor_id to)
{
    tr_actor *self = tr__current_actor();
    /* Only an actor's own turn can be cut short: code that runs as an
     * actor outside its turn (a connection's read callback) is not muted. */
    if (self == NULL || self != cw->in_turn || tr_actor_id_eq(self->id, to) ||
        !tr__load_acq_8(&s->overloaded) || self->slot->overloaded) {
        return;
    }
    self->flags |= TR__A_MUTE_PENDING;
    self->muted_by = to;
}

int tr__route(tr_actor_id to, tr_msg *m, enum tr__lane lane)
{
    lane_flags(m, lane);
    tr__slot *s = tr__slot_get(to);
    if (s == NULL) {
        tr_msg_free(m);
        return TR_ECLOSED;
    }
    uint64_t word = tr__load_acq_64(&s->word);
    tr__worker *tw = tr__load_acq_ptr((void **)&s->worker);
    tr_actor *a = tr__load_acq_ptr((void **)&s->actor);
    uint32_t capacity = tr__load_acq_32(&s->capacity);
    uint8_t overflow = tr__load_acq_8(&s->overflow);
    uint64_t again = tr__load_acq_64(&s->word);
    if (!tr__slot_word_live(word, to) || !tr__slot_word_live(again, to)) {
        tr_msg_free(m);
        return TR_ECLOSED;
    }
    if (capacity != 0 && lane == TR__LANE_USER) {
        if (reserve(s, to, capacity, overflow) < 0) {
            tr_msg_free(m);
            return TR_EBUFFULL;
        }
        m->flags |= TR__MSGF_COUNTED;
    }
    tr__worker *cw = tr__current_worker();
    if (lane == TR__LANE_USER && cw != NULL) {
        maybe_mute(cw, s, to);
    }
    if (cw == tw) {
        /* Alive, and only this worker (busy running us) can end it. */
        tr__deliver(cw, a, m);
        return 0;
    }
    m->to_ = to;
    post(cw, tw, m);
    return 0;
}

static void run_task(tr__worker *w, tr_msg *m)
{
    const tr__task *t = (const tr__task *)tr_msg_data(m);
    t->run(w, m);
    tr_msg_free(m);
}

int tr__route_task(tr__worker *tw, tr_msg *m)
{
    m->type = TR_MSG__TASK;
    m->flags = TR_MSGF_SYSTEM;
    m->to_ = TR_ACTOR_NONE;
    tr__worker *cw = tr__current_worker();
    if (cw == tw) {
        run_task(tw, m);
        return 0;
    }
    post(cw, tw, m);
    return 0;
}

tr__worker *tr__route_worker_of(tr_actor_id id)
{
    tr__slot *s = tr__slot_get(id);
    if (s == NULL) {
        return NULL;
    }
    uint64_t word = tr__load_acq_64(&s->word);
    tr__worker *w = tr__load_acq_ptr((void **)&s->worker);
    uint64_t again = tr__load_acq_64(&s->word);
    return tr__slot_word_live(word, id) && tr__slot_word_live(again, id) ? w : NULL;
}

void tr__route_publish(tr__worker *w)
{
    tr__worker *all = w->rt->workers;
    for (uint32_t i = 0; i < w->ndirty; i++) {
        uint32_t d = w->dirty[i];
        tr__pending *p = &w->out[d];
        push_stack(&all[d].inbox[w->index].head, p->newest, p->oldest);
        p->newest = p->oldest = NULL;
        if (wake_if_sleeping(&all[d])) {
            w->woke_ns[d] = tr__now_ns(); /* it is coming: worth spinning for (worker.c) */
        }
    }
    w->ndirty = 0;
}

bool tr__route_has_inbound(tr__worker *w)
{
    for (unsigned i = 0; i <= w->rt->nworkers; i++) {
        if (tr__load_acq_ptr((void **)&w->inbox[i].head) != NULL) {
            return true;
        }
    }
    return false;
}

void tr__route_drop(tr_msg *m)
{
    if (m->type == TR_MSG__TASK) {
        ((const tr__task *)tr_msg_data(m))->drop(m);
        tr_msg_free(m);
        return;
    }
    tr__slot *s = tr__slot_get(m->to_);
    if (s != NULL) {
        tr__mailbox_unreserve(s, m);
    }
    if (m->type == TR_MSG__MONITOR) {
        tr__actor_monitor_gone(m, m->to_, TR_EXIT_NOPROC);
        return;
    }
    if (m->type == TR_MSG__ROOM_WAIT) {
        /* Answered at once: the waiter retries and learns it is gone. */
        tr__actor_answer_room(m, m->to_);
        return;
    }
    tr_msg_free(m);
}

static void dispatch(tr__worker *w, tr_msg *m)
{
    if (m->type == TR_MSG__TASK) {
        run_task(w, m);
        return;
    }
    tr__slot *s = tr__slot_get(m->to_);
    /* Only this worker clears ALIVE for its actors: the check holds. */
    if (s == NULL || !tr__slot_word_live(tr__load_acq_64(&s->word), m->to_)) {
        tr__route_drop(m);
        return;
    }
    tr_actor *a = s->actor;
    if (m->type == TR_MSG__START) {
        tr_msg_free(m);
        if (!(a->flags & TR__A_SCHEDULED)) {
            a->flags |= TR__A_SCHEDULED;
            tr__worker_enqueue(w, a);
        }
        return;
    }
    tr__deliver(w, a, m);
}

bool tr__route_take_inbound(tr__worker *w)
{
    bool took = false;
    for (unsigned i = 0; i <= w->rt->nworkers; i++) {
        tr_msg **head = &w->inbox[i].head;
        if (tr__load_acq_ptr((void **)head) == NULL) {
            continue;
        }
        tr_msg *m = tr__fas_sc_ptr((void **)head, NULL);
        tr_msg *fifo = NULL;
        while (m != NULL) {
            tr_msg *next = m->next;
            m->next = fifo;
            fifo = m;
            m = next;
        }
        while (fifo != NULL) {
            tr_msg *next = fifo->next;
            fifo->next = NULL;
            dispatch(w, fifo);
            fifo = next;
        }
        took = true;
    }
    return took;
}
