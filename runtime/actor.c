#include "actor.h"

#include <stdlib.h>

#include "troupe/log.h"
#include "atomic.h"
#include "runtime.h"
#include "timer.h"
#include "worker.h"

static _Thread_local tr__worker *cur_worker;
static _Thread_local tr_actor *cur_actor;

tr__worker *tr__current_worker(void)
{
    return cur_worker;
}

tr_actor *tr__current_actor(void)
{
    return cur_actor;
}

void tr__set_current(tr__worker *w, tr_actor *a)
{
    cur_worker = w;
    cur_actor = a;
}

void tr_spawn_opts_defaults(tr_spawn_opts *opts)
{
    opts->worker = -1;
    opts->local = false;
    opts->mailbox_capacity = 0;
    opts->overflow = TR_OVERFLOW_REFUSE;
    opts->monitor = false;
    opts->monitor_ref = NULL;
}

/* Marks a ready and queues it, unless it is already queued, running or
 * dead. The caller has just pushed a message: the push's full barrier
 * orders it before this load of `scheduled`. */
static void schedule(tr_actor *a)
{
    if (tr__load32(&a->scheduled) == 0 && tr__fas32(&a->scheduled, 1) == 0) {
        tr__worker_enqueue(a->worker, a);
    }
}

enum { LANE_USER = 0, LANE_SYS = 1, LANE_OVER = 2 };

static int deliver(tr_actor *a, tr_msg *m, int lane)
{
    if (lane == LANE_SYS) {
        tr__mailbox_push_sys(&a->mbox, m);
    } else if (lane == LANE_OVER) {
        tr__mailbox_push_over(&a->mbox, m);
    } else if (tr__mailbox_push(&a->mbox, m) < 0) {
        tr_msg_free(m);
        if (a->mbox.overflow != TR_OVERFLOW_EXIT) {
            return TR_EBUFFULL;
        }
        tr__store32(&a->overflow_exit, 1);
        schedule(a);
        return TR_EBUFFULL;
    }
    schedule(a);
    return 0;
}

static void reclaim(tr_actor *a);

static int send_lane(tr_actor_id to, tr_msg *m, int lane)
{
    tr__slot *s = tr__slot_get(to);
    if (s == NULL) {
        tr_msg_free(m);
        return TR_ECLOSED;
    }
    /* Fast path: the target lives on this thread's worker and is alive. It
     * can only die on this worker, which is busy running us, so no pin is
     * needed. Reading the word twice around `worker` proves the worker
     * field belongs to the generation we checked. */
    tr__worker *w = cur_worker;
    if (w != NULL && tr__slot_is_alive(s, to)) {
        tr__worker *sw = tr__loadp((void **)&s->worker);
        tr_actor *a = tr__loadp((void **)&s->actor);
        if (sw == w && tr__slot_is_alive(s, to)) {
            return deliver(a, m, lane);
        }
    }
    if (!tr__slot_pin(s, to)) {
        tr_msg_free(m);
        return TR_ECLOSED;
    }
    tr_actor *a = tr__loadp((void **)&s->actor);
    int rc = deliver(a, m, lane);
    if (tr__slot_unpin(s)) {
        reclaim(a);
    }
    return rc;
}

int tr__send(tr_actor_id to, tr_msg *m, bool sys)
{
    return send_lane(to, m, sys ? LANE_SYS : LANE_USER);
}

int tr__send_over(tr_actor_id to, tr_msg *msg)
{
    msg->flags = 0;
    msg->from = cur_actor != NULL ? cur_actor->id : TR_ACTOR_NONE;
    return send_lane(to, msg, LANE_OVER);
}

int tr_send(tr_actor_id to, tr_msg *msg)
{
    if (msg == NULL) {
        return TR_EINVAL;
    }
    msg->flags = 0;
    msg->from = cur_actor != NULL ? cur_actor->id : TR_ACTOR_NONE;
    return tr__send(to, msg, false);
}

int tr_send_copy(tr_actor_id to, uint32_t type, const void *data, size_t len)
{
    tr_msg *m = tr_msg_new(type, data, len);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    return tr_send(to, m);
}

static int send_sys(tr_actor_id to, uint32_t type, tr_actor_id from, uint64_t ref, int reason)
{
    tr_msg *m = tr_msg_new(type, NULL, 0);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    m->flags = TR_MSGF_SYSTEM;
    m->from = from;
    m->ref = ref;
    m->reason = reason;
    return tr__send(to, m, true);
}

int tr_kill(tr_actor_id to, int reason)
{
    tr_actor_id from = cur_actor != NULL ? cur_actor->id : TR_ACTOR_NONE;
    return send_sys(to, TR_MSG__KILL, from, 0, reason == 0 ? TR_EXIT_KILLED : reason);
}

int tr__spawn(tr_runtime *rt, const tr_behavior *b, void *arg, const tr_spawn_opts *opts,
              const tr__spawn_ex *ex, tr_actor_id *out)
{
    tr_spawn_opts defaults;
    if (opts == NULL) {
        tr_spawn_opts_defaults(&defaults);
        opts = &defaults;
    }
    if (rt == NULL || b == NULL || b->receive == NULL || out == NULL ||
        (opts->worker >= 0 && (unsigned)opts->worker >= rt->nworkers) ||
        (opts->monitor && cur_actor == NULL)) {
        return TR_EINVAL;
    }
    uint32_t state = tr__load32(&rt->state);
    if (state != TR__RT_CREATED && state != TR__RT_RUNNING) {
        return TR_ECLOSED;
    }
    tr__worker *w;
    if (opts->worker >= 0) {
        w = &rt->workers[opts->worker];
    } else if (opts->local && cur_worker != NULL && cur_worker->rt == rt) {
        w = cur_worker;
    } else {
        w = &rt->workers[tr__faa32(&rt->rr, 1) % rt->nworkers];
    }
    size_t extra = ex != NULL ? ex->extra_size : 0;
    if (extra > ((size_t)1 << 30)) {
        return TR_EINVAL;
    }
    size_t head = (sizeof(tr_actor) + 15) & ~(size_t)15;
    tr_actor *a = calloc(1, head + extra);
    if (a == NULL) {
        return TR_ENOMEM;
    }
    tr__mailbox_init(&a->mbox, opts->mailbox_capacity, opts->overflow);
    a->worker = w;
    a->beh = b;
    a->arg = arg;
    a->scheduled = 1; /* queued below */
    if (ex != NULL && ex->supervised) {
        a->flags |= TR__A_SUPERVISED;
    }
    if (opts->monitor) {
        tr_msg *mon = tr_msg_new(TR_MSG__MONITOR, NULL, 0);
        if (mon == NULL) {
            free(a);
            return TR_ENOMEM;
        }
        mon->from = cur_actor->id;
        mon->ref = ++cur_worker->next_ref;
        a->monitors = mon;
        if (opts->monitor_ref != NULL) {
            *opts->monitor_ref = mon->ref;
        }
    }
    int rc = tr__slot_alloc(a, w, &a->id);
    if (rc < 0) {
        tr_msg_free(a->monitors);
        free(a);
        return rc;
    }
    a->slot = tr__slot_get(a->id);
    tr__faa64(&rt->live, 1);
    *out = a->id;
    tr__worker_enqueue(w, a);
    return 0;
}

void *tr__actor_extra(tr_actor *a)
{
    return (char *)a + ((sizeof(tr_actor) + 15) & ~(size_t)15);
}

tr__worker *tr__actor_worker(tr_actor *a)
{
    return a->worker;
}

tr_actor *tr__actor_pin(tr_actor_id id, tr__slot **slot_out)
{
    tr__slot *s = tr__slot_get(id);
    if (s == NULL || !tr__slot_pin(s, id)) {
        return NULL;
    }
    *slot_out = s;
    return tr__loadp((void **)&s->actor);
}

void tr__actor_unpin(tr__slot *slot, tr_actor *a)
{
    if (tr__slot_unpin(slot)) {
        reclaim(a);
    }
}

int tr_spawn(tr_runtime *rt, const tr_behavior *b, void *arg, const tr_spawn_opts *opts,
             tr_actor_id *out)
{
    return tr__spawn(rt, b, arg, opts, NULL, out);
}

tr_actor_id tr_self(const tr_actor *self)
{
    return self->id;
}

void *tr_actor_state(const tr_actor *self)
{
    return self->state;
}

void tr_actor_set_state(tr_actor *self, void *state)
{
    self->state = state;
}

tr_runtime *tr_actor_runtime(const tr_actor *self)
{
    return self->worker->rt;
}

struct ev_loop *tr_actor_loop(const tr_actor *self)
{
    return self->worker->loop;
}

unsigned tr_actor_worker(const tr_actor *self)
{
    return self->worker->index;
}

void tr_exit(tr_actor *self, int reason)
{
    if ((self->flags & TR__A_EXITING) == 0) {
        self->flags |= TR__A_EXITING;
        self->exit_reason = reason;
    }
}

void tr_actor_trap_shutdown(tr_actor *self, bool on)
{
    if (on) {
        self->flags |= TR__A_TRAP_SHUTDOWN;
    } else {
        self->flags &= ~TR__A_TRAP_SHUTDOWN;
    }
}

tr_msg *tr_msg_claim(tr_actor *self, tr_msg *msg)
{
    /* The mark goes on the actor, not the message: a claimed message may be
     * sent on (tr_send resets its flags) and even freed by its next owner
     * before receive returns, so the runtime must not look at it again. */
    self->flags |= TR__A_CLAIMED;
    return msg;
}

int tr_monitor(tr_actor *self, tr_actor_id target, uint64_t *ref_out)
{
    uint64_t ref = ++self->worker->next_ref;
    if (ref_out != NULL) {
        *ref_out = ref;
    }
    int rc = send_sys(target, TR_MSG__MONITOR, self->id, ref, 0);
    if (rc == TR_ECLOSED) {
        /* Already gone: the DOWN comes at once, as from the target. */
        tr_msg *down = tr_msg_new(TR_MSG_DOWN, NULL, 0);
        if (down == NULL) {
            return TR_ENOMEM;
        }
        down->flags = TR_MSGF_SYSTEM;
        down->from = target;
        down->ref = ref;
        down->reason = TR_EXIT_NOPROC;
        deliver(self, down, LANE_SYS);
        return 0;
    }
    return rc;
}

int tr_demonitor(tr_actor *self, tr_actor_id target, uint64_t ref)
{
    return send_sys(target, TR_MSG__DEMONITOR, self->id, ref, 0);
}

int tr_request(tr_actor *self, tr_actor_id to, tr_msg *msg, uint32_t timeout_ms,
               uint64_t *req_out)
{
    if (msg == NULL) {
        return TR_EINVAL;
    }
    uint64_t id = ++self->worker->next_ref;
    msg->flags = TR_MSGF_REQUEST;
    msg->from = self->id;
    msg->ref = id;
    int rc = tr__send(to, msg, false);
    if (rc < 0) {
        return rc;
    }
    /* Started after the send so a refused request leaves nothing behind; the
     * reply cannot overtake it, since it comes to this same worker and we
     * are still running. */
    rc = tr__request_start(self, to, id, timeout_ms);
    if (rc < 0) {
        return rc;
    }
    if (req_out != NULL) {
        *req_out = id;
    }
    return 0;
}

int tr_reply(tr_actor *self, const tr_msg *request, tr_msg *reply)
{
    if (reply == NULL) {
        return TR_EINVAL;
    }
    if ((request->flags & TR_MSGF_REQUEST) == 0) {
        tr_msg_free(reply);
        return TR_EINVAL;
    }
    reply->flags = TR_MSGF_REPLY;
    reply->from = self->id;
    reply->ref = request->ref;
    return tr__send(request->from, reply, false);
}

/* ---- the turn ---- */

static void turn_down(tr_actor *a, tr_msg *mon, int reason)
{
    tr_actor_id watcher = mon->from;
    mon->type = TR_MSG_DOWN;
    mon->flags = TR_MSGF_SYSTEM;
    mon->from = a->id;
    mon->reason = reason;
    mon->next = NULL;
    tr__send(watcher, mon, true);
}

/* Runs after the slot says nobody can reach a any more: on its worker, or
 * on the thread of the last sender to unpin it. */
static void reclaim(tr_actor *a)
{
    tr_runtime *rt = a->worker->rt;
    /* A MONITOR that arrived after the exit still gets its DOWN. */
    tr_msg *m;
    while ((m = tr__mailbox_pop_sys(&a->mbox)) != NULL) {
        if (m->type == TR_MSG__MONITOR) {
            turn_down(a, m, a->exit_reason);
        } else {
            tr_msg_free(m);
        }
    }
    tr__mailbox_fini(&a->mbox);
    tr__slot_release(a->slot);
    free(a);
    /* A foreign thread reclaiming (the last sender to unpin) may still be
     * inside actor_gone when the application frees the runtime: count it,
     * and tr_runtime_free waits for the count to drop. Workers are joined
     * before the free, so they need no count. */
    bool foreign = cur_worker == NULL;
    if (foreign) {
        tr__faa32(&rt->foreign_reclaims, 1);
    }
    tr__runtime_actor_gone(rt);
    if (foreign) {
        tr__faa32(&rt->foreign_reclaims, UINT32_MAX);
    }
}

static void finish_exit(tr_actor *a)
{
    int reason = a->exit_reason;
    tr__timers_cancel_all(a);
    if ((a->flags & (TR__A_STARTED | TR__A_NO_TERMINATE)) == TR__A_STARTED &&
        a->beh->terminate != NULL) {
        tr_actor *prev = cur_actor;
        cur_actor = a;
        a->beh->terminate(a, reason);
        cur_actor = prev;
        tr__timers_cancel_all(a); /* terminate may have started some */
    }
    while (a->monitors != NULL) {
        tr_msg *mon = a->monitors;
        a->monitors = mon->next;
        turn_down(a, mon, reason);
    }
    if (a->flags & TR__A_LISTED) {
        tr__worker_list_remove(a->worker, a);
    }
    tr_log(TR_LOG_DEBUG, "event=actor_exit actor=%llu behavior=%s reason=%d",
           (unsigned long long)a->id.bits, a->beh->name ? a->beh->name : "-", reason);
    if (tr__slot_kill(a->slot)) {
        reclaim(a);
    }
}

static void start(tr__worker *w, tr_actor *a);

void tr__actor_force_exit(tr_actor *a, int reason)
{
    if (!(a->flags & TR__A_STARTED)) {
        /* init runs exactly once for every spawned actor, so it may own its
         * argument; terminate then releases what init built. */
        tr_actor *prev = cur_actor;
        cur_actor = a;
        start(a->worker, a);
        cur_actor = prev;
    }
    a->flags &= ~TR__A_EXITING;
    tr_exit(a, reason);
    finish_exit(a);
}

void tr__actor_send_shutdown(tr_actor *a)
{
    if (a->flags & (TR__A_SHUTDOWN_SENT | TR__A_EXITING)) {
        return;
    }
    tr_msg *m = tr_msg_new(TR_MSG_SHUTDOWN, NULL, 0);
    if (m == NULL) {
        /* Cannot even say it: make it exit at its next turn rather than hang
         * the shutdown. Not at once: it may sit in a ready queue, and the
         * broadcast calling us is walking the actor list. */
        tr_log(TR_LOG_ERROR, "event=shutdown_alloc_failed actor=%llu",
               (unsigned long long)a->id.bits);
        tr_exit(a, TR_EXIT_SHUTDOWN);
        if (tr__load32(&a->scheduled) == 0 && tr__cas32(&a->scheduled, 0, 1)) {
            tr__worker_enqueue(a->worker, a);
        }
        return;
    }
    a->flags |= TR__A_SHUTDOWN_SENT;
    m->flags = TR_MSGF_SYSTEM;
    deliver(a, m, LANE_SYS);
}

static void start(tr__worker *w, tr_actor *a)
{
    a->flags |= TR__A_STARTED;
    tr__worker_list_add(w, a);
    tr_runtime *rt = w->rt;
    if (a->beh->init != NULL) {
        int rc = a->beh->init(a, a->arg);
        if (rc < 0) {
            a->flags |= TR__A_NO_TERMINATE;
            a->flags &= ~TR__A_EXITING;
            tr_exit(a, rc);
            return;
        }
    }
    if (tr__load32(&rt->force_req)) {
        tr_exit(a, TR_EXIT_KILLED);
    } else if (tr__load32(&rt->shutdown_req) && !(a->flags & TR__A_SUPERVISED)) {
        tr__actor_send_shutdown(a);
    }
}

static void receive(tr_actor *a, tr_msg *m)
{
    a->flags &= ~TR__A_CLAIMED;
    a->beh->receive(a, m);
    if (a->flags & TR__A_CLAIMED) {
        a->flags &= ~TR__A_CLAIMED;
        return;
    }
    tr_msg_free(m);
}

static void handle_sys(tr_actor *a, tr_msg *m)
{
    switch (m->type) {
    case TR_MSG__KILL:
        a->flags &= ~TR__A_EXITING;
        tr_exit(a, (int)m->reason);
        tr_msg_free(m);
        return;
    case TR_MSG__MONITOR:
        m->next = a->monitors;
        a->monitors = m;
        return;
    case TR_MSG__DEMONITOR:
        for (tr_msg **p = &a->monitors; *p != NULL; p = &(*p)->next) {
            if ((*p)->ref == m->ref && tr_actor_id_eq((*p)->from, m->from)) {
                tr_msg *mon = *p;
                *p = mon->next;
                tr_msg_free(mon);
                break;
            }
        }
        tr_msg_free(m);
        return;
    case TR_MSG_SHUTDOWN:
        receive(a, m);
        if (!(a->flags & TR__A_TRAP_SHUTDOWN)) {
            tr_exit(a, TR_EXIT_SHUTDOWN);
        }
        return;
    default:
        receive(a, m);
        return;
    }
}

static void handle_user(tr_actor *a, tr_msg *m)
{
    if ((m->flags & TR_MSGF_REPLY) && !tr__request_complete(a, m->ref)) {
        tr_msg_free(m); /* late reply: its request already timed out */
        return;
    }
    receive(a, m);
}

void tr__actor_run(tr__worker *w, tr_actor *a)
{
    cur_actor = a;
    if (!(a->flags & TR__A_STARTED)) {
        start(w, a);
    }
    unsigned batch = w->rt->cfg.batch;
    unsigned n = 0;
    while (!(a->flags & TR__A_EXITING)) {
        if (tr__load32(&a->overflow_exit)) {
            tr_exit(a, TR_EBUFFULL);
            break;
        }
        tr_msg *m = tr__mailbox_pop_sys(&a->mbox);
        if (m != NULL) {
            handle_sys(a, m);
            continue;
        }
        if (n == batch) {
            break;
        }
        m = tr__mailbox_pop(&a->mbox, NULL);
        if (m == NULL) {
            break;
        }
        handle_user(a, m);
        n++;
    }
    cur_actor = NULL;
    if (a->flags & TR__A_EXITING) {
        finish_exit(a);
        return;
    }
    if (tr__mailbox_nonempty(&a->mbox)) {
        tr__worker_enqueue(w, a);
        return;
    }
    /* Going idle. A producer pushes, then reads `scheduled`; we clear
     * `scheduled`, fence, then look at the mailbox. One of us sees the
     * other, so a message is never left behind. */
    tr__store32(&a->scheduled, 0);
    tr__fence();
    if (tr__mailbox_nonempty(&a->mbox) && tr__cas32(&a->scheduled, 0, 1)) {
        tr__worker_enqueue(w, a);
    }
}
