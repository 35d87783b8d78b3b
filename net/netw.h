/* Internal: per-worker network state, created on first use by a
 * connection on that worker and hung on the worker record (tr__worker.ext).
 * Owning worker only. */
#ifndef TROUPE_NET_NETW_H
#define TROUPE_NET_NETW_H

#include <ev.h>

#include "budget.h"
#include "conn.h"

/* Read buffer shared by every connection of the worker: reads land here
 * and are decoded in place. */
#define TR__RBUF_BYTES 65536

typedef struct tr__netw {
    struct ev_loop *loop;
    ev_check flush_after_io;     /* lowest priority: after this iteration's I/O callbacks */
    ev_prepare flush_before_poll;
    tr_conn *dirty;              /* connections with output to write */
    struct tr__resolver *resolver; /* c-ares channel, made on first use (resolve.c) */
    /* Memory budget (budget.c): the runtime's budget, this worker's slice
     * of it, what this worker's connections hold in pend and how many hold
     * any, and the connections paused at an input budget, swept while
     * there are any. */
    tr__netrt *rt;
    tr__budget_slice slice;
    uint64_t held_in, holders;
    tr_conn *paused;
    uint64_t npaused;
    ev_timer sweep;
    ev_tstamp last_log;
    uint64_t log_closed, log_freed; /* closes since the last log line */
    unsigned char rbuf[TR__RBUF_BYTES];
} tr__netw;

struct tr__worker;

/* The worker's state, created if needed. NULL when out of memory. */
tr__netw *tr__netw_get(struct tr__worker *w);

/* Puts c on the flush list (once). */
void tr__netw_mark_dirty(tr__netw *nw, tr_conn *c);

/* Takes c off the flush list if it is on it. */
void tr__netw_unmark(tr__netw *nw, tr_conn *c);

#endif
