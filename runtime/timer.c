#include "timer.h"

#include <stdlib.h>

#include "msg_impl.h"
#include "worker.h"

static void unlink_timer(tr_actor *a, tr__timer *t)
{
    for (tr__timer **p = &a->timers; *p != NULL; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            return;
        }
    }
}

static void free_timer(tr_actor *a, tr__timer *t)
{
    ev_timer_stop(a->worker->loop, &t->w);
    tr__worker_loop_use(a->worker, false);
    tr_msg_free(t->msg);
    free(t);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tr__timer *t = (tr__timer *)w; /* w is the first member */
    tr_actor *owner = t->owner;
    if (t->kind == TR__TIMER_PERIODIC) {
        tr_msg *m = tr_msg_clone(t->msg);
        if (m != NULL) {
            m->from = owner->id;
            m->ref = t->id;
            tr__send(t->to, m, false);
        }
        return;
    }
    unlink_timer(owner, t);
    tr_msg *m = t->msg;
    t->msg = NULL;
    if (t->kind == TR__TIMER_REQUEST) {
        m = tr_msg_new(TR_MSG_TIMEOUT, NULL, 0);
        if (m != NULL) {
            m->from = t->to;
            m->ref = t->id;
        }
    }
    if (m != NULL) {
        if (t->kind == TR__TIMER_ONCE) {
            m->from = owner->id;
            m->ref = t->id;
        }
        tr__send(t->kind == TR__TIMER_REQUEST ? owner->id : t->to, m, false);
    }
    free_timer(owner, t);
}

static tr__timer *add_timer(tr_actor *self, uint8_t kind, tr_actor_id to, tr_msg *msg,
                            uint64_t id, uint32_t after_ms, uint32_t repeat_ms)
{
    tr__timer *t = malloc(sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->owner = self;
    t->id = id;
    t->to = to;
    t->msg = msg;
    t->kind = kind;
    struct ev_loop *loop = self->worker->loop;
    /* ev_now() is the time the loop iteration began; it can lag by the time
     * actors have run since. Refresh it so a timer never fires early. */
    ev_now_update(loop);
    ev_timer_init(&t->w, on_timer, after_ms / 1000.0, repeat_ms / 1000.0);
    ev_timer_start(loop, &t->w);
    tr__worker_loop_use(self->worker, true); /* a busy worker must look at its loop */
    t->next = self->timers;
    self->timers = t;
    return t;
}

int tr_send_after(tr_actor *self, tr_actor_id to, tr_msg *msg, uint32_t delay_ms,
                  uint64_t *timer_out)
{
    if (msg == NULL) {
        return TR_EINVAL;
    }
    uint64_t id = ++self->worker->next_ref;
    msg->flags = 0;
    if (add_timer(self, TR__TIMER_ONCE, to, msg, id, delay_ms, 0) == NULL) {
        tr_msg_free(msg);
        return TR_ENOMEM;
    }
    if (timer_out != NULL) {
        *timer_out = id;
    }
    return 0;
}

int tr_send_every(tr_actor *self, tr_actor_id to, tr_msg *msg, uint32_t interval_ms,
                  uint64_t *timer_out)
{
    if (msg == NULL) {
        return TR_EINVAL;
    }
    if (interval_ms == 0) {
        tr_msg_free(msg);
        return TR_EINVAL;
    }
    uint64_t id = ++self->worker->next_ref;
    msg->flags = 0;
    if (add_timer(self, TR__TIMER_PERIODIC, to, msg, id, interval_ms, interval_ms) == NULL) {
        tr_msg_free(msg);
        return TR_ENOMEM;
    }
    if (timer_out != NULL) {
        *timer_out = id;
    }
    return 0;
}

static tr__timer *find(tr_actor *a, uint64_t id, int requests)
{
    for (tr__timer *t = a->timers; t != NULL; t = t->next) {
        if (t->id == id && (t->kind == TR__TIMER_REQUEST) == (requests != 0)) {
            return t;
        }
    }
    return NULL;
}

int tr_timer_cancel(tr_actor *self, uint64_t timer)
{
    tr__timer *t = find(self, timer, 0);
    if (t == NULL) {
        return TR_ENOTFOUND;
    }
    unlink_timer(self, t);
    free_timer(self, t);
    return 0;
}

int tr__request_start(tr_actor *self, tr_actor_id target, uint64_t id, uint32_t timeout_ms)
{
    tr__timer *t = add_timer(self, TR__TIMER_REQUEST, target, NULL, id, timeout_ms, 0);
    return t == NULL ? TR_ENOMEM : 0;
}

int tr__request_complete(tr_actor *self, uint64_t id)
{
    tr__timer *t = find(self, id, 1);
    if (t == NULL) {
        return 0;
    }
    unlink_timer(self, t);
    free_timer(self, t);
    return 1;
}

void tr__timers_cancel_all(tr_actor *a)
{
    while (a->timers != NULL) {
        tr__timer *t = a->timers;
        a->timers = t->next;
        free_timer(a, t);
    }
}
