#include "worker.h"

#include <stdlib.h>
#include <time.h>

#include "troupe/log.h"
#include "atomic.h"
#include "runtime.h"

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    /* Nothing to do: the wake-up only makes ev_run return. */
    (void)loop;
    (void)w;
    (void)revents;
}

int tr__worker_init(tr__worker *w, tr_runtime *rt, unsigned index)
{
    w->rt = rt;
    w->index = index;
    /* EVFLAG_NOSIGMASK: libev must not touch the application's signal
     * mask from our threads. */
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (w->loop == NULL) {
        return TR_ENOMEM;
    }
    ev_async_init(&w->wake, on_wake);
    /* The wake-up watcher stays referenced: with no active watcher at all,
     * ev_run(EVRUN_ONCE) would return at once instead of blocking, and an
     * idle worker would spin. */
    ev_async_start(w->loop, &w->wake);
    return 0;
}

void tr__worker_fini(tr__worker *w)
{
    if (w->ext_free != NULL) {
        w->ext_free(w->ext);
        w->ext = NULL;
        w->ext_free = NULL;
    }
    if (w->loop != NULL) {
        ev_async_stop(w->loop, &w->wake);
        ev_loop_destroy(w->loop);
        w->loop = NULL;
    }
}

void tr__worker_wake(tr__worker *w)
{
    ev_async_send(w->loop, &w->wake);
}

void tr__worker_enqueue(tr__worker *w, tr_actor *a)
{
    a->run_next = NULL;
    if (tr__current_worker() == w) {
        if (w->run_tail != NULL) {
            w->run_tail->run_next = a;
        } else {
            w->run_head = a;
        }
        w->run_tail = a;
        return;
    }
    void *old = tr__loadp((void **)&w->incoming);
    do {
        a->run_next = old;
    } while (!tr__casp_value((void **)&w->incoming, old, a, &old));
    /* The CAS was a full barrier: our push is visible before we read the
     * flag, and the worker sets the flag before its last look. */
    if (tr__load32(&w->sleeping)) {
        tr__worker_wake(w);
    }
}

/* Moves the incoming stack (newest first) to the local queue, oldest first.
 * Returns 1 if it moved anything. */
static int take_incoming(tr__worker *w)
{
    if (tr__loadp((void **)&w->incoming) == NULL) {
        return 0;
    }
    tr_actor *a = tr__fasp((void **)&w->incoming, NULL);
    tr_actor *fifo = NULL, *last = a;
    while (a != NULL) {
        tr_actor *next = a->run_next;
        a->run_next = fifo;
        fifo = a;
        a = next;
    }
    if (fifo == NULL) {
        return 0;
    }
    if (w->run_tail != NULL) {
        w->run_tail->run_next = fifo;
    } else {
        w->run_head = fifo;
    }
    w->run_tail = last;
    return 1;
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
}

/* Empties the ready queues. Queued actors keep scheduled == 1, so nobody
 * can queue them again: the caller may then kill them without leaving a
 * dangling queue entry. Actors that never started are killed here (their
 * init and terminate run), since they are on no list yet. */
static void drain_queues(tr__worker *w)
{
    take_incoming(w);
    tr_actor *a;
    while ((a = pop_ready(w)) != NULL) {
        if (!(a->flags & TR__A_STARTED)) {
            tr__actor_force_exit(a, TR_EXIT_KILLED);
        }
        take_incoming(w);
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
    if (!w->shutdown_done && tr__load32(&rt->shutdown_req)) {
        w->shutdown_done = 1;
        broadcast_shutdown(w);
    }
    if (!w->force_done && tr__load32(&rt->force_req)) {
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

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int has_control(tr__worker *w)
{
    tr_runtime *rt = w->rt;
    return tr__load32(&w->stop) || (!w->shutdown_done && tr__load32(&rt->shutdown_req)) ||
           (!w->force_done && tr__load32(&rt->force_req));
}

/* How often an idle worker looks at its event loop while it polls for
 * actors. A look is an epoll_wait syscall (~1 us here); taking one every
 * time the worker runs out of actors made every cross-worker message pay
 * for it. I/O seen by an idle worker is late by at most this much. */
#define LOOP_POLL_NS 10000u

/* Runs the loop without blocking, unless it ran within LOOP_POLL_NS. */
static void poll_loop(tr__worker *w, uint64_t now)
{
    if (now - w->last_poll_ns >= LOOP_POLL_NS) {
        w->last_poll_ns = now;
        ev_run(w->loop, EVRUN_NOWAIT);
    }
}

/* Polls for work for up to spin_us, and the loop every LOOP_POLL_NS.
 * Returns 1 if some arrived. */
static int spin(tr__worker *w)
{
    unsigned spin_us = w->rt->cfg.spin_us;
    if (spin_us == 0) {
        return 0;
    }
    uint64_t deadline = now_ns() + (uint64_t)spin_us * 1000u;
    for (unsigned i = 1;; i++) {
        if (tr__loadp((void **)&w->incoming) != NULL || has_control(w)) {
            return 1;
        }
        tr__pause();
        if ((i & 63) == 0) {
            uint64_t now = now_ns();
            poll_loop(w, now);
            if (w->run_head != NULL) {
                return 1;
            }
            if (now >= deadline) {
                return 0;
            }
        }
    }
}

/* Actor turns between two looks at the event loop when busy. */
#define TURNS_PER_POLL 128

static void *worker_main(void *arg)
{
    tr__worker *w = arg;
    tr__set_current(w, NULL);
    /* Whether work came from other threads since we last slept. Only then
     * is spinning worth it: a worker fed by its own sockets is woken by
     * epoll anyway, and spinning would only add a poll syscall and burn
     * CPU after every request. */
    int cross = 0;
    while (!tr__load32(&w->stop)) {
        poll_control(w);
        cross |= take_incoming(w);
        tr_actor *a;
        unsigned turns = 0;
        while (turns < TURNS_PER_POLL && (a = pop_ready(w)) != NULL) {
            tr__actor_run(w, a);
            if ((++turns & 15) == 0) {
                cross |= take_incoming(w);
            }
        }
        if (w->run_head != NULL || tr__loadp((void **)&w->incoming) != NULL) {
            poll_loop(w, now_ns()); /* busy: I/O and timers still get served */
            continue;
        }
        if (cross) {
            /* Idle after cross-thread work: let I/O and timers in (unless
             * the loop was just polled), then poll the incoming stack for
             * a short spell before sleeping. */
            poll_loop(w, now_ns());
            if (w->run_head != NULL || spin(w)) {
                continue;
            }
            cross = 0;
        }
        tr__store32(&w->sleeping, 1);
        tr__fence();
        if (tr__loadp((void **)&w->incoming) == NULL && !has_control(w)) {
            ev_run(w->loop, EVRUN_ONCE);
        }
        tr__store32(&w->sleeping, 0);
    }
    tr__worker_kill_all(w);
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
    tr__store32(&w->stop, 1);
    tr__worker_wake(w);
    pthread_join(w->thread, NULL);
    w->started = 0;
}
