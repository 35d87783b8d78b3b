#include "netw.h"

#include <stdlib.h>

#include "../runtime/util.h"
#include "../runtime/worker.h"
#include "resolve.h"

/* conn.c's flag for "on the flush list"; kept in one place. */
#define F_DIRTY (1u << 0)

static void flush_all(tr__netw *nw)
{
    while (nw->dirty != NULL) {
        tr_conn *c = nw->dirty;
        nw->dirty = c->dirty_next;
        c->dirty_next = NULL;
        c->flags &= ~F_DIRTY;
        tr__conn_flush(c);
    }
}

static void on_check(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)revents;
    flush_all(tr__container_of(w, tr__netw, flush_after_io));
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    flush_all(tr__container_of(w, tr__netw, flush_before_poll));
}

static void netw_free(void *p)
{
    tr__netw *nw = p;
    tr__resolver_free(nw->resolver);
    ev_ref(nw->loop);
    ev_ref(nw->loop);
    ev_timer_stop(nw->loop, &nw->sweep);
    ev_check_stop(nw->loop, &nw->flush_after_io);
    ev_prepare_stop(nw->loop, &nw->flush_before_poll);
    free(nw);
}

tr__netw *tr__netw_get(tr__worker *w)
{
    if (w->ext != NULL) {
        return w->ext;
    }
    tr__netw *nw = calloc(1, sizeof(*nw));
    if (nw == NULL) {
        return NULL;
    }
    nw->loop = w->loop;
    nw->rt = tr__netrt_get(w->rt);
    if (nw->rt == NULL) {
        free(nw);
        return NULL;
    }
    ev_init(&nw->sweep, tr__budget_sweep);
    ev_check_init(&nw->flush_after_io, on_check);
    ev_set_priority(&nw->flush_after_io, EV_MINPRI);
    ev_check_start(nw->loop, &nw->flush_after_io);
    ev_prepare_init(&nw->flush_before_poll, on_prepare);
    ev_prepare_start(nw->loop, &nw->flush_before_poll);
    /* Neither watcher alone should keep the loop alive. */
    ev_unref(nw->loop);
    ev_unref(nw->loop);
    tr__worker_loop_use(w, true); /* sockets: a busy worker must look at its loop */
    w->ext = nw;
    w->ext_free = netw_free;
    return nw;
}

void tr__netw_mark_dirty(tr__netw *nw, tr_conn *c)
{
    if (c->flags & F_DIRTY) {
        return;
    }
    c->flags |= F_DIRTY;
    c->dirty_next = nw->dirty;
    nw->dirty = c;
}

void tr__netw_unmark(tr__netw *nw, tr_conn *c)
{
    if (!(c->flags & F_DIRTY)) {
        return;
    }
    for (tr_conn **p = &nw->dirty; *p != NULL; p = &(*p)->dirty_next) {
        if (*p == c) {
            *p = c->dirty_next;
            break;
        }
    }
    c->dirty_next = NULL;
    c->flags &= ~F_DIRTY;
}
