#include "worker.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "troupe/log.h"
#include "atomic.h"
#include "msg_alloc.h"
#include "route.h"
#include "runtime.h"
#include "util.h"

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    /* Nothing to do: the wake-up only makes ev_run return. */
    (void)loop;
    (void)w;
    (void)revents;
}

static void on_nowait(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* Counts the time since the last mark as busy. Owner only. */
static void count_busy(tr__worker *w, uint64_t now)
{
    tr__stat_add_64(&w->st_busy_ns, now - w->busy_mark_ns);
    w->busy_mark_ns = now;
}

/* libev calls these around its blocking syscall (epoll_wait), on the
 * worker's thread, in every ev_run. Only the ev_run(EVRUN_ONCE) that puts
 * the worker to sleep reads the clock: the non-blocking polls of a busy
 * worker cost nothing more. The worker comes from the thread, not from
 * ev_userdata, which an application holding tr_actor_loop could set. */
static void on_loop_release(struct ev_loop *loop)
{
    (void)loop;
    tr__worker *w = tr__current_worker();
    if (w != NULL && w->blocking) {
        count_busy(w, tr__now_ns());
        tr__stat_add_64(&w->st_sleeps, 1); /* counted now: an idle worker shows it */
    }
}

static void on_loop_acquire(struct ev_loop *loop)
{
    (void)loop;
    tr__worker *w = tr__current_worker();
    if (w != NULL && w->blocking) {
        w->busy_mark_ns = tr__now_ns(); /* the time asleep is not busy */
    }
}

/* Runs last among the prepare watchers, right before the loop would
 * block: net/'s flush (an ev_prepare too) may just have made actors ready
 * or queued messages for other workers. Publish those, and if work is
 * ready here, make this iteration poll without blocking. */
static void on_guard(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)revents;
    tr__worker *w = tr__container_of(p, tr__worker, guard);
    if (w->ndirty != 0) {
        tr__route_publish(w);
    }
    if (w->run_head != NULL) {
        ev_idle_start(loop, &w->nowait);
    }
}

int tr__worker_init(tr__worker *w, tr_runtime *rt, unsigned index, unsigned nworkers)
{
    w->rt = rt;
    w->index = index;
    w->out = calloc(nworkers, sizeof(*w->out));
    w->dirty = calloc(nworkers, sizeof(*w->dirty));
    w->woke_ns = calloc(nworkers, sizeof(*w->woke_ns));
    w->inbox = aligned_alloc(64, sizeof(*w->inbox) * (nworkers + 1));
    if (w->out == NULL || w->dirty == NULL || w->woke_ns == NULL || w->inbox == NULL) {
        goto fail;
    }
    memset(w->inbox, 0, sizeof(*w->inbox) * (nworkers + 1));
    /* EVFLAG_NOSIGMASK: libev must not touch the application's signal
     * mask from our threads. */
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (w->loop == NULL) {
        goto fail;
    }
    ev_async_init(&w->wake, on_wake);
    /* The wake-up watcher stays referenced: with no active watcher at all,
     * ev_run(EVRUN_ONCE) would return at once instead of blocking, and an
     * idle worker would spin. */
    ev_async_start(w->loop, &w->wake);
    ev_prepare_init(&w->guard, on_guard);
    ev_set_priority(&w->guard, EV_MINPRI);
    ev_prepare_start(w->loop, &w->guard);
    ev_unref(w->loop);
    ev_idle_init(&w->nowait, on_nowait);
    ev_timer_init(&w->tick, on_tick, 0., 0.);
    ev_set_loop_release_cb(w->loop, on_loop_release, on_loop_acquire);
    return 0;
fail:
    free(w->out);
    free(w->dirty);
    free(w->woke_ns);
    w->woke_ns = NULL;
    free(w->inbox);
    w->out = NULL;
    w->dirty = NULL;
    w->inbox = NULL;
    return TR_ENOMEM;
}

/* Frees every message still in w's queues or chains (the runtime is being
 * freed; no thread serves them any more). */
static void free_queued(tr__worker *w)
{
    for (unsigned i = 0; i < w->rt->nworkers; i++) {
        tr_msg *m = w->out[i].newest;
        w->out[i].newest = w->out[i].oldest = NULL;
        while (m != NULL) {
            tr_msg *next = m->next;
            tr__route_drop(m);
            m = next;
        }
    }
    w->ndirty = 0;
    for (unsigned i = 0; i <= w->rt->nworkers; i++) {
        tr_msg *m = tr__fas_sc_ptr((void **)&w->inbox[i].head, NULL);
        while (m != NULL) {
            tr_msg *next = m->next;
            tr__route_drop(m);
            m = next;
        }
    }
}

void tr__worker_fini(tr__worker *w)
{
    if (w->ext_free != NULL) {
        w->ext_free(w->ext);
        w->ext = NULL;
        w->ext_free = NULL;
    }
    if (w->inbox != NULL) {
        free_queued(w);
    }
    if (w->loop != NULL) {
        ev_ref(w->loop);
        ev_prepare_stop(w->loop, &w->guard);
        ev_idle_stop(w->loop, &w->nowait);
        ev_timer_stop(w->loop, &w->tick);
        ev_async_stop(w->loop, &w->wake);
        ev_loop_destroy(w->loop);
        w->loop = NULL;
    }
    free(w->out);
    free(w->dirty);
    free(w->woke_ns);
    free(w->inbox);
    w->out = NULL;
    w->dirty = NULL;
    w->woke_ns = NULL;
    w->inbox = NULL;
}

void tr__worker_wake(tr__worker *w)
{
    ev_async_send(w->loop, &w->wake);
}

void tr__worker_loop_use(tr__worker *w, bool use)
{
    if (use) {
        w->loop_users++;
    } else if (w->loop_users > 0) {
        w->loop_users--;
    }
}

void tr__worker_enqueue(tr__worker *w, tr_actor *a)
{
    a->run_next = NULL;
    if (w->run_tail != NULL) {
        w->run_tail->run_next = a;
    } else {
        w->run_head = a;
    }
    w->run_tail = a;
}

static tr_actor *pop_ready(tr__worker *w)
{
    tr_actor *a = w->run_head;
    if (a != NULL) {
        w->run_head = a->run_next;
        if (w->run_head == NULL) {
            w->run_tail = NULL;
        }
        a->run_next = NULL;
    }
    return a;
}

void tr__worker_list_add(tr__worker *w, tr_actor *a)
{
    a->list_prev = NULL;
    a->list_next = w->actors;
    if (w->actors != NULL) {
        w->actors->list_prev = a;
    }
    w->actors = a;
    a->flags |= TR__A_LISTED;
    tr__stat_add_64(&w->st_actors, 1);
}

void tr__worker_list_remove(tr__worker *w, tr_actor *a)
{
    if (a->list_prev != NULL) {
        a->list_prev->list_next = a->list_next;
    } else {
        w->actors = a->list_next;
    }
    if (a->list_next != NULL) {
        a->list_next->list_prev = a->list_prev;
    }
    a->flags &= ~TR__A_LISTED;
    tr__stat_add_64(&w->st_actors, UINT64_MAX);
}

/* Lets muted actors whose receiver drained (or died) run again. */
static void check_muted(tr__worker *w)
{
    tr_actor *a = w->muted;
    while (a != NULL) {
        tr_actor *next = a->run_next;
        tr__slot *s = tr__slot_get(a->muted_by);
        if (s == NULL || !tr__slot_is_alive(s, a->muted_by) || !tr__load_acq_8(&s->overloaded) ||
            a->slot->overloaded) {
            tr__actor_unmute(w, a);
        }
        a = next;
    }
}

/* Empties the ready queue and the muted list. Queued actors keep
 * TR__A_SCHEDULED, so nobody can queue them again: the caller may then
 * kill them without leaving a dangling queue entry. Actors that never
 * started are killed here (their init and terminate run), since they are
 * on no list yet. The queues from other threads are taken once: threads
 * that go on sending to live actors would otherwise keep this loop (and
 * the runtime's stop) going for ever; the caller calls again after each
 * kill. */
static void drain_queues(tr__worker *w)
{
    tr__route_take_inbound(w);
    while (w->muted != NULL) {
        tr__actor_unmute(w, w->muted);
    }
    tr_actor *a;
    while ((a = pop_ready(w)) != NULL) {
        if (!(a->flags & TR__A_STARTED)) {
            tr__actor_force_exit(a, TR_EXIT_KILLED);
        }
    }
}

void tr__worker_kill_all(tr__worker *w)
{
    for (;;) {
        drain_queues(w);
        if (w->actors == NULL) {
            break;
        }
        /* One at a time: a kill sends DOWNs that may queue other actors of
         * this worker, and those must leave the queue before they die. */
        tr__actor_force_exit(w->actors, TR_EXIT_KILLED);
    }
    tr__route_publish(w);
}

static void broadcast_shutdown(tr__worker *w)
{
    for (tr_actor *a = w->actors; a != NULL; a = a->list_next) {
        if (!(a->flags & TR__A_SUPERVISED)) {
            tr__actor_send_shutdown(a);
        }
    }
}

static void poll_control(tr__worker *w)
{
    tr_runtime *rt = w->rt;
    if (!w->shutdown_done && tr__load_acq_32(&rt->shutdown_req)) {
        w->shutdown_done = 1;
        broadcast_shutdown(w);
    }
    if (!w->force_done && tr__load_acq_32(&rt->force_req)) {
        w->force_done = 1;
        unsigned n = 0;
        for (tr_actor *a = w->actors; a != NULL; a = a->list_next) {
            n++;
        }
        if (n > 0) {
            tr_log(TR_LOG_WARN, "event=shutdown_forced worker=%u actors=%u", w->index, n);
        }
        tr__worker_kill_all(w);
    }
}

static int has_control(tr__worker *w)
{
    tr_runtime *rt = w->rt;
    return tr__load_acq_32(&w->stop) || (!w->shutdown_done && tr__load_acq_32(&rt->shutdown_req)) ||
           (!w->force_done && tr__load_acq_32(&rt->force_req));
}

/* Runs the loop without blocking, if something on it needs looking at and
 * it was not looked at within poll_us. */
static void poll_loop(tr__worker *w, uint64_t now)
{
    if (w->loop_users == 0) {
        return;
    }
    if (now - w->last_poll_ns >= (uint64_t)w->rt->cfg.poll_us * 1000u) {
        w->last_poll_ns = now;
        ev_run(w->loop, EVRUN_NOWAIT);
        tr__route_publish(w);
    }
}

/* How long a peer's beat may stand still before a spinner concludes it
 * is not on a CPU (a neighbour process took it) and stops spinning. */
#define STALL_NS 4000u

/* Whether some other worker is awake and was seen making progress within
 * STALL_NS, or was just woken by us (it is on its way, with our message):
 * only such a peer can send us work soon. `seen` holds the beats last
 * read and `moved_at` when one last changed. */
static bool peer_running(tr__worker *w, uint64_t *seen, uint64_t *moved_at, uint64_t now)
{
    tr_runtime *rt = w->rt;
    bool any = false;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        tr__worker *p = &rt->workers[i];
        if (p == w) {
            continue;
        }
        if (tr__load_acq_32(&p->sleeping)) {
            if (now - w->woke_ns[i] < (uint64_t)rt->cfg.spin_us * 1000u) {
                *moved_at = now;
                any = true;
            }
            continue;
        }
        uint64_t b = tr__load_rlx_64(&p->beat);
        if (b != seen[i]) {
            seen[i] = b;
            *moved_at = now;
        }
        any = true;
    }
    return any && now - *moved_at < STALL_NS;
}

/* Polls for work (and for muted actors that may run again) for up to
 * spin_us while a peer is running. Returns 1 if some arrived. */
static int spin(tr__worker *w)
{
    unsigned spin_us = w->rt->cfg.spin_us;
    if (spin_us == 0 || w->rt->nworkers < 2) {
        return 0;
    }
    uint64_t seen[64];
    unsigned n = w->rt->nworkers < 64 ? w->rt->nworkers : 64;
    memset(seen, 0xff, sizeof(seen[0]) * n);
    uint64_t start = tr__now_ns(), moved_at = start;
    uint64_t deadline = start + (uint64_t)spin_us * 1000u;
    for (unsigned i = 1;; i++) {
        if (tr__route_has_inbound(w) || has_control(w)) {
            return 1;
        }
        tr__pause();
        if ((i & 31) == 0) {
            tr__store_rlx_64(&w->beat, w->beat + 1);
            uint64_t now = tr__now_ns();
            poll_loop(w, now);
            if (w->muted != NULL) {
                check_muted(w); /* their receiver drains on another worker */
            }
            if (w->run_head != NULL) {
                return 1;
            }
            if (now >= deadline || (w->rt->nworkers <= 64 && !peer_running(w, seen, &moved_at, now))) {
                return 0;
            }
        }
    }
}

/* Actor turns between two looks at the queues and the loop when busy. */
#define TURNS_PER_POLL 128

/* How often muted actors are looked at while the worker is idle. */
#define MUTE_TICK_S 100e-6

static void *worker_main(void *arg)
{
    tr__worker *w = arg;
    tr__set_current(w, NULL);
    tr__msg_cache_attach();
    w->busy_mark_ns = tr__now_ns();
    /* Whether work came from other threads since we last slept. Only then
     * is spinning worth it: a worker fed by its own sockets is woken by
     * epoll anyway, and spinning would only add CPU after every request. */
    int cross = 0;
    while (!tr__load_acq_32(&w->stop)) {
        poll_control(w);
        cross |= tr__route_take_inbound(w);
        if (w->muted != NULL) {
            check_muted(w);
        }
        tr_actor *a;
        unsigned turns = 0, messages = 0;
        while (turns < TURNS_PER_POLL && (a = pop_ready(w)) != NULL) {
            messages += tr__actor_run(w, a);
            if (w->ndirty != 0) {
                tr__route_publish(w);
            }
            if ((++turns & 15) == 0) {
                tr__store_rlx_64(&w->beat, w->beat + 1);
                cross |= tr__route_take_inbound(w);
            }
        }
        if (turns != 0) {
            tr__stat_add_64(&w->st_turns, turns);
            tr__stat_add_64(&w->st_messages, messages);
        }
        tr__store_rlx_64(&w->beat, w->beat + 1);
        if (w->run_head != NULL || tr__route_has_inbound(w)) {
            uint64_t now = tr__now_ns();
            count_busy(w, now); /* a worker that never sleeps is still seen busy */
            poll_loop(w, now); /* busy: I/O and timers still get served */
            continue;
        }
        if (w->muted != NULL) {
            check_muted(w);
            if (w->run_head != NULL) {
                continue;
            }
        }
        if (w->ndirty != 0) {
            tr__route_publish(w); /* answers made while taking the queues */
        }
        if (cross) {
            /* Idle after cross-thread work: let I/O and timers in, then
             * poll the queues for a short spell before sleeping. */
            poll_loop(w, tr__now_ns());
            if (w->run_head != NULL || spin(w)) {
                continue;
            }
            cross = 0;
        }
        if (w->muted != NULL) {
            /* Muted actors wait for another worker's actor to drain: look
             * again soon even if nothing wakes us. */
            ev_timer_set(&w->tick, MUTE_TICK_S, 0.);
            ev_timer_start(w->loop, &w->tick);
        }
        tr__msg_cache_flush(); /* blocks freed here go home before we sleep */
        tr__store_rel_32(&w->sleeping, 1);
        tr__fence_sc();
        if (!tr__route_has_inbound(w) && !has_control(w)) {
            w->blocking = 1; /* see on_loop_release */
            ev_run(w->loop, EVRUN_ONCE);
            w->blocking = 0;
        }
        tr__store_rel_32(&w->sleeping, 0);
        ev_timer_stop(w->loop, &w->tick);
        tr__route_publish(w);
    }
    tr__worker_kill_all(w);
    count_busy(w, tr__now_ns());
    tr__msg_cache_detach();
    tr__set_current(NULL, NULL);
    return NULL;
}

int tr__worker_start(tr__worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        return -rc;
    }
    w->started = 1;
    return 0;
}

void tr__worker_join(tr__worker *w)
{
    if (!w->started) {
        return;
    }
    tr__store_rel_32(&w->stop, 1);
    tr__worker_wake(w);
    pthread_join(w->thread, NULL);
    w->started = 0;
}
