/* One buffer to many connections: a broadcast costs one message per
 * worker, not one per connection.
 *
 * The sender sorts the targets by the worker that owns them and hands each
 * worker one task (runtime/route.h) holding the buffer and its targets.
 * The worker then queues the buffer on each of its connections directly,
 * between actor turns, as a connection's own handler would. As with
 * tr_conn_send, the sender reserves each frame's room in the target's
 * send queue first: a full queue refuses at once (and its overflow policy
 * applies), so however fast senders broadcast, what is in flight stays
 * within the queues' limits.
 *
 * Order: a connection sees one sender's frames in the order sent, whether
 * they came one by one (tr_conn_send, through its mailbox) or in a
 * broadcast. The task travels in the same queue as the sender's other
 * messages to that worker, so everything sent before it has reached the
 * connection's mailbox by the time it runs; a connection whose mailbox is
 * not empty gets the buffer as a message behind them instead of directly. */
#include "conn_impl.h"

#include <limits.h>
#include <stdlib.h>

#include "../runtime/msg_impl.h"
#include "../runtime/route.h"
#include "../runtime/runtime.h"
#include "../runtime/slot.h"

typedef struct target {
    tr_conn_id id;
    int64_t reason; /* the bytes reserved, or -1 (tr__conn_reserve_frame) */
} target;

typedef struct batch {
    tr__task task; /* first: the runtime finds run and drop here */
    tr_buf *b;
    size_t n, cap;
    target t[];
} batch;

static void queue_one(tr__worker *w, tr_actor *a, tr_buf *b, int64_t reason)
{
    tr_conn *c = tr__actor_extra(a);
    if (c->flags & F_CLOSED) {
        tr__conn_unreserve_reason(c, reason);
        return;
    }
    if (a->mbox.depth > 0) {
        /* Earlier messages wait for it: go behind them, as tr_conn_send's
         * message would. */
        tr_msg *m = tr_msg_new_buf(TR__MSG_CONN_SEND, tr_buf_retain(b));
        if (m == NULL) {
            tr__conn_unreserve_reason(c, reason);
            return;
        }
        m->reason = reason;
        m->from = TR_ACTOR_NONE;
        tr__deliver(w, a, m);
        return;
    }
    tr__conn_ctx x = tr__conn_enter(c);
    size_t len = tr_buf_len(b);
    /* A short line is copied (outq.h): then no reference is taken. */
    bool copy = tr__outq_copies(&c->out, len);
    (void)tr__conn_write_owned(c, copy ? tr_buf_data(b) : NULL, len, copy ? NULL : tr_buf_retain(b),
                               reason >= 0, reason >= 0 ? (size_t)reason : 0);
    tr__conn_leave(x);
}

static void run_batch(tr__worker *w, tr_msg *m)
{
    batch *bt = (batch *)tr_msg_data(m);
    for (size_t i = 0; i < bt->n; i++) {
        tr_actor_id id = {bt->t[i].id.bits};
        tr__slot *s = tr__slot_get(id);
        /* Only this worker ends its actors: a live word stays live here.
         * A connection that died in flight took its reservation along. */
        if (s != NULL && tr__slot_word_live(tr__load_acq_64(&s->word), id)) {
            queue_one(w, s->actor, bt->b, bt->t[i].reason);
        }
    }
    tr_buf_release(bt->b);
}

/* The runtime is freed with the task unrun: its connections are gone. */
static void drop_batch(tr_msg *m)
{
    tr_buf_release(((batch *)tr_msg_data(m))->b);
}

static tr_msg *new_batch(size_t count, tr_buf *b)
{
    tr_msg *m = tr_msg_new(TR_MSG__TASK, NULL, sizeof(batch) + count * sizeof(target));
    if (m != NULL) {
        batch *bt = (batch *)tr_msg_data(m);
        bt->task = (tr__task){.run = run_batch, .drop = drop_batch};
        bt->b = tr_buf_retain(b);
        bt->n = 0;
        bt->cap = count;
    }
    return m;
}

/* Reserves the frame's room on id's connection and adds it to the batch
 * of the worker that owns it. Returns whether it was added. */
static bool add_target(tr_runtime *rt, tr_msg **batches, tr_conn_id id, size_t len)
{
    tr__slot *slot;
    tr_actor *a = tr__actor_pin((tr_actor_id){id.bits}, &slot);
    if (a == NULL) {
        return false;
    }
    tr__worker *w = tr__actor_worker(a);
    tr_conn *c = tr__actor_extra(a);
    int64_t reason;
    bool added = false;
    /* (An id that was reused by another runtime's actor is skipped.) */
    batch *bt = w->rt == rt && batches[w->index] != NULL ? (batch *)tr_msg_data(batches[w->index])
                                                           : NULL;
    if (bt != NULL && bt->n < bt->cap && tr__conn_reserve_frame(c, a, len, &reason) == 0) {
        bt->t[bt->n++] = (target){id, reason};
        added = true;
    }
    tr__actor_unpin(slot, a);
    return added;
}

int tr_conn_send_buf_many(const tr_conn_id *ids, size_t n, tr_buf *b)
{
    if (b == NULL || (ids == NULL && n > 0) || n > INT_MAX) {
        tr_buf_release(b);
        return TR_EINVAL;
    }
    /* How many targets each worker owns (a snapshot: some may end before
     * they are reserved, none can move to another worker). */
    tr_runtime *rt = NULL;
    for (size_t i = 0; i < n && rt == NULL; i++) {
        tr__worker *w = tr__route_worker_of((tr_actor_id){ids[i].bits});
        rt = w != NULL ? w->rt : NULL;
    }
    unsigned nw = rt != NULL ? rt->nworkers : 0;
    size_t count_small[16];
    tr_msg *batch_small[16];
    size_t *count = nw <= 16 ? count_small : calloc(nw, sizeof(*count));
    tr_msg **batches = nw <= 16 ? batch_small : calloc(nw, sizeof(*batches));
    int rc = 0, sent = 0;
    if (count == NULL || batches == NULL) {
        rc = TR_ENOMEM;
        goto out;
    }
    for (unsigned w = 0; w < nw; w++) {
        count[w] = 0;
        batches[w] = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        tr__worker *w = tr__route_worker_of((tr_actor_id){ids[i].bits});
        if (w != NULL && w->rt == rt) { /* one runtime's connections */
            count[w->index]++;
        }
    }
    for (unsigned w = 0; w < nw; w++) {
        if (count[w] > 0 && (batches[w] = new_batch(count[w], b)) == NULL) {
            rc = TR_ENOMEM; /* that worker's targets are skipped */
        }
    }
    for (size_t i = 0; i < n; i++) {
        sent += add_target(rt, batches, ids[i], tr_buf_len(b));
    }
    for (unsigned w = 0; w < nw; w++) {
        if (batches[w] == NULL) {
            continue;
        }
        if (((batch *)tr_msg_data(batches[w]))->n == 0) {
            drop_batch(batches[w]); /* every target ended or was refused */
            tr_msg_free(batches[w]);
        } else {
            tr__route_task(&rt->workers[w], batches[w]);
        }
    }
out:
    if (count != count_small) {
        free(count);
    }
    if (batches != batch_small) {
        free(batches);
    }
    tr_buf_release(b);
    return sent > 0 || rc == 0 ? sent : rc;
}
