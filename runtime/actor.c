/* Actors: spawning, the turn, exit and reclaim. The message path is in
 * route.c, monitors in monitor.c, requests in request.c. */
#include "actor.h"

#include <stdlib.h>

#include "troupe/log.h"
#include "atomic.h"
#include "route.h"
#include "runtime.h"
#include "timer.h"
#include "worker.h"

/* initial-exec: the library is position independent, and the default
 * TLS model would call __tls_get_addr on every send. */
static _Thread_local __attribute__((tls_model("initial-exec"))) tr__worker *cur_worker;
static _Thread_local __attribute__((tls_model("initial-exec"))) tr_actor *cur_actor;

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
    opts->mailbox_capacity = 0;
    opts->overflow = TR_OVERFLOW_REFUSE;
    opts->monitor = false;
    opts->monitor_ref = NULL;
}

static tr_actor_id self_id(void)
{
    return cur_actor != NULL ? cur_actor->id : TR_ACTOR_NONE;
}

int tr__send(tr_actor_id to, tr_msg *m, bool sys)
{
    return tr__route(to, m, sys ? TR__LANE_SYS : TR__LANE_USER);
}

int tr__send_over(tr_actor_id to, tr_msg *msg)
{
    msg->flags = 0;
    msg->from = self_id();
    return tr__route(to, msg, TR__LANE_OVER);
}

int tr_send(tr_actor_id to, tr_msg *msg)
{
    if (msg == NULL) {
        return TR_EINVAL;
    }
    msg->flags = 0;
    msg->from = self_id();
    return tr__route(to, msg, TR__LANE_USER);
}

int tr_send_copy(tr_actor_id to, uint32_t type, const void *data, size_t len)
{
    tr_msg *m = tr_msg_new(type, data, len);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    return tr_send(to, m);
}

int tr_kill(tr_actor_id to, int reason)
{
    tr_msg *m = tr_msg_new(TR_MSG__KILL, NULL, 0);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    m->from = self_id();
    m->reason = reason == 0 ? TR_EXIT_KILLED : reason;
    return tr__route(to, m, TR__LANE_SYS);
}

/* The worker a new actor goes to: the one asked for; else, from a worker
 * of this runtime, that worker (as Erlang and CAF place a spawned
 * process next to its parent); else round-robin. */
static tr__worker *placement(tr_runtime *rt, const tr_spawn_opts *opts)
{
    if (opts->worker >= 0) {
        return &rt->workers[opts->worker];
    }
    if (cur_worker != NULL && cur_worker->rt == rt) {
        return cur_worker;
    }
    return &rt->workers[tr__faa_sc_32(&rt->rr, 1) % rt->nworkers];
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
        (unsigned)opts->overflow > TR_OVERFLOW_EXIT || (opts->monitor && cur_actor == NULL)) {
        return TR_EINVAL;
    }
    uint32_t state = tr__load_acq_32(&rt->state);
    if (state != TR__RT_CREATED && state != TR__RT_RUNNING) {
        return TR_ECLOSED;
    }
    tr__worker *w = placement(rt, opts);
    size_t extra = ex != NULL ? ex->extra_size : 0;
    if (extra > ((size_t)1 << 30)) {
        return TR_EINVAL;
    }
    size_t head = (sizeof(tr_actor) + 15) & ~(size_t)15;
    tr_actor *a = calloc(1, head + extra);
    if (a == NULL) {
        return TR_ENOMEM;
    }
    /* A worker other than ours learns of the actor through a message on
     * the same path as the sends that may follow. */
    tr_msg *start = NULL;
    if (cur_worker != w) {
        start = tr_msg_new(TR_MSG__START, NULL, 0);
        if (start == NULL) {
            free(a);
            return TR_ENOMEM;
        }
    }
    tr__mailbox_init(&a->mbox, opts->mailbox_capacity, opts->overflow);
    a->worker = w;
    a->beh = b;
    a->arg = arg;
    if (ex != NULL) {
        if (ex->supervised) {
            a->flags |= TR__A_SUPERVISED;
        }
        a->on_reclaim = ex->on_reclaim;
    }
    if (opts->monitor) {
        tr_msg *mon = tr_msg_new(TR_MSG__MONITOR, NULL, 0);
        if (mon == NULL) {
            tr_msg_free(start);
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
    int rc = tr__slot_alloc(a, w, opts->mailbox_capacity, (uint8_t)opts->overflow, &a->id);
    if (rc < 0) {
        tr_msg_free(a->monitors);
        tr_msg_free(start);
        free(a);
        return rc;
    }
    a->slot = tr__slot_get(a->id);
    tr__faa_sc_64(&rt->live, 1);
    *out = a->id;
    if (start == NULL) {
        a->flags |= TR__A_SCHEDULED;
        tr__worker_enqueue(w, a);
    } else {
        start->from = self_id();
        tr__route(a->id, start, TR__LANE_SYS);
    }
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

static void reclaim(tr_actor *a);

tr_actor *tr__actor_pin(tr_actor_id id, tr__slot **slot_out)
{
    tr__slot *s = tr__slot_get(id);
    if (s == NULL || !tr__slot_pin(s, id)) {
        return NULL;
    }
    *slot_out = s;
    return tr__load_acq_ptr((void **)&s->actor);
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
    /* The application may start watchers of its own on it: from now on
     * the busy worker must look at its loop. */
    tr__worker *w = self->worker;
    if (!w->loop_exposed) {
        w->loop_exposed = 1;
        tr__worker_loop_use(w, true);
    }
    return w->loop;
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

/* ---- exit and reclaim ---- */

static void notify_room(tr_actor *a, bool gone);

/* A MONITOR or ROOM_WAIT found in a dead actor's mailbox. */
static void answer_late(void *ctx, tr_msg *m)
{
    tr_actor *a = ctx;
    if (m->type == TR_MSG__MONITOR) {
        tr__actor_monitor_gone(m, a->id, a->exit_reason);
        return;
    }
    m->next = a->room_waiters;
    a->room_waiters = m;
    notify_room(a, true);
}

/* Runs after the slot says nobody can reach a any more: on its worker, or
 * on the thread of the last pin holder to unpin it. */
static void reclaim(tr_actor *a)
{
    tr_runtime *rt = a->worker->rt;
    /* A thread that is not one of rt's workers (the last pin holder) may
     * still be in here when the application frees the runtime: it counts
     * itself before it touches anything of rt's (the answers below route
     * through rt's workers), and tr_runtime_free waits first for the live
     * count to reach zero, then for this count. rt's own workers are
     * joined before the free. */
    bool foreign = cur_worker == NULL || cur_worker->rt != rt;
    if (foreign) {
        tr__faa_sc_32(&rt->foreign_reclaims, 1);
    }
    /* A MONITOR that arrived after the exit still gets its DOWN. */
    tr__mailbox_fini(&a->mbox, a->slot, answer_late, a);
    if (a->on_reclaim != NULL) {
        a->on_reclaim(tr__actor_extra(a));
    }
    tr__slot_release(a->slot);
    free(a);
    tr__runtime_actor_gone(rt);
    if (foreign) {
        tr__faa_sc_32(&rt->foreign_reclaims, UINT32_MAX);
    }
}

static void finish_exit(tr_actor *a)
{
    /* First: terminate may send to the actor itself (a connection closing
     * its socket sends itself a kill), and an idle actor would then be
     * queued on its worker just before it is freed. From here on it never
     * enters a queue again. */
    a->flags |= TR__A_SCHEDULED;
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
        tr__actor_monitor_gone(mon, a->id, reason);
    }
    notify_room(a, true);
    if (a->flags & TR__A_LISTED) {
        tr__worker_list_remove(a->worker, a);
    }
    if (a->slot->overloaded) {
        tr__store_rel_8(&a->slot->overloaded, 0); /* its senders go on */
    }
    tr_log(TR_LOG_DEBUG, "event=actor_exit actor=%llu behavior=%s reason=%d",
           (unsigned long long)a->id.bits, a->beh->name ? a->beh->name : "-", reason);
    if (tr__slot_kill(a->slot)) {
        reclaim(a);
    }
}

static void start(tr__worker *w, tr_actor *a);
static void mute_unlink(tr__worker *w, tr_actor *a);

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
    if (a->flags & TR__A_MUTED) {
        mute_unlink(a->worker, a); /* off the list, and not queued: it dies now */
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
        if (!(a->flags & TR__A_SCHEDULED)) {
            a->flags |= TR__A_SCHEDULED;
            tr__worker_enqueue(a->worker, a);
        } else if (a->flags & TR__A_MUTED) {
            tr__actor_unmute(a->worker, a);
        }
        return;
    }
    a->flags |= TR__A_SHUTDOWN_SENT;
    m->flags = TR_MSGF_SYSTEM;
    tr__deliver(a->worker, a, m);
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
    if (tr__load_acq_32(&rt->force_req)) {
        tr_exit(a, TR_EXIT_KILLED);
    } else if (tr__load_acq_32(&rt->shutdown_req) && !(a->flags & TR__A_SUPERVISED)) {
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
    case TR_MSG__START:
        tr_msg_free(m);
        return;
    case TR_MSG__ROOM_WAIT:
        m->next = a->room_waiters;
        a->room_waiters = m;
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

/* Answers every ROOM_WAIT if a user message would be accepted now (or,
 * with `gone`, in any case: the waiters then learn the actor exited). */
static void notify_room(tr_actor *a, bool gone)
{
    if (a->room_waiters == NULL || (!gone && !tr__route_has_room(a->slot))) {
        return;
    }
    while (a->room_waiters != NULL) {
        tr_msg *m = a->room_waiters;
        a->room_waiters = m->next;
        tr__actor_answer_room(m, a->id);
    }
}

void tr__actor_answer_room(tr_msg *wait, tr_actor_id target)
{
    tr_actor_id waiter = wait->from;
    wait->type = TR_MSG__ROOM;
    wait->from = target;
    wait->next = NULL;
    tr__route(waiter, wait, TR__LANE_SYS);
}

int tr__actor_wait_room(tr_actor_id target, tr_actor_id waiter)
{
    tr_msg *m = tr_msg_new(TR_MSG__ROOM_WAIT, NULL, 0);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    m->from = waiter;
    return tr__route(target, m, TR__LANE_SYS);
}

static void handle_user(tr_actor *a, tr_msg *m)
{
    if ((m->flags & TR_MSGF_REPLY) && !tr__request_complete(a, m->ref)) {
        tr_msg_free(m); /* late reply: its request already timed out */
        return;
    }
    receive(a, m);
}

static void mute_unlink(tr__worker *w, tr_actor *a)
{
    for (tr_actor **p = &w->muted; *p != NULL; p = &(*p)->run_next) {
        if (*p == a) {
            *p = a->run_next;
            break;
        }
    }
    a->flags &= ~TR__A_MUTED;
    a->run_next = NULL;
}

void tr__actor_unmute(tr__worker *w, tr_actor *a)
{
    mute_unlink(w, a);
    tr__worker_enqueue(w, a); /* still TR__A_SCHEDULED */
}

unsigned tr__actor_run(tr__worker *w, tr_actor *a)
{
    cur_actor = a;
    w->in_turn = a;
    if (!(a->flags & TR__A_STARTED)) {
        start(w, a);
    }
    unsigned batch = w->rt->cfg.batch;
    unsigned n = 0, sys = 0;
    while (!(a->flags & TR__A_EXITING)) {
        tr_msg *m = tr__mailbox_pop_sys(&a->mbox);
        if (m != NULL) {
            handle_sys(a, m);
            sys++;
            continue;
        }
        if (n == batch) {
            break;
        }
        m = tr__mailbox_pop(&a->mbox, a->slot, NULL);
        if (m == NULL) {
            break;
        }
        handle_user(a, m);
        n++;
        if (a->flags & TR__A_MUTE_PENDING) {
            break; /* it met an overloaded actor: no more sending this turn */
        }
    }
    cur_actor = NULL;
    w->in_turn = NULL;
    if (a->flags & TR__A_EXITING) {
        a->flags &= ~TR__A_MUTE_PENDING;
        finish_exit(a);
        return n + sys;
    }
    notify_room(a, false);
    if (a->slot->overloaded && a->mbox.depth < TR__OVERLOAD_LOW) {
        tr__store_rel_8(&a->slot->overloaded, 0);
    }
    if (a->flags & TR__A_MUTE_PENDING) {
        /* It sent to an overloaded actor: it waits (still marked
         * scheduled) until that one drains; a system message ends the
         * wait early. */
        a->flags &= ~TR__A_MUTE_PENDING;
        if (!tr__mailbox_has_sys(&a->mbox)) {
            a->flags |= TR__A_MUTED;
            a->run_next = w->muted;
            w->muted = a;
            return n + sys;
        }
    }
    if (tr__mailbox_nonempty(&a->mbox)) {
        tr__worker_enqueue(w, a);
        return n + sys;
    }
    a->flags &= ~TR__A_SCHEDULED;
    return n + sys;
}
