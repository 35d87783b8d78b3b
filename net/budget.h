/* Internal: memory budgets (troupe/budget.h says what they do).
 *
 * Design notes. A budget (tr__budget) has limits and shared totals; each
 * worker counts into a slice of its own (tr__budget_slice: the runtime's
 * in tr__netw, a server's in its per-worker tr__netstats), touched only by
 * that worker with plain stores. A slice publishes into the shared total
 * with one atomic add once its unpublished delta reaches BATCH either
 * way, so the total is exact within BATCH per worker and a read costs no
 * atomic read-modify-write. A worker reading a total adds its own
 * unpublished delta; other threads (a sender deciding TR_EBUFFULL) read
 * the total alone.
 *
 * Only the owner worker changes a connection's holdings: pend (conn_read.c)
 * and out.bytes (conn_write.c, conn.c) go through tr__budget_in and
 * tr__budget_out, so every byte counted in is counted out.
 *
 * The runtime's budget lives in the per-runtime state of net/ (tr__netrt,
 * hung on the runtime's opaque net pointer, made on first use), so runtime/
 * knows nothing of it. Pausing and closing at the input budget is a
 * per-worker sweep (budget.c) over that worker's paused connections. */
#ifndef TROUPE_NET_BUDGET_H
#define TROUPE_NET_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/budget.h"
#include "troupe/runtime.h"
#include "../runtime/atomic.h"

/* Unpublished deltas reach the shared total once they are this large. */
#define TR__BUDGET_BATCH 16384

enum { TR__BIN = 0, TR__BOUT = 1 };

typedef struct tr__budget {
    uint64_t limit[2];        /* any thread; atomics (0: unlimited) */
    uint32_t grace_ms;        /* any thread; atomics */
    char pad_[64];            /* the totals change more often: a line apart */
    /* any thread; atomics: published holdings (two's complement: a
     * worker's negative delta may be published before another's positive) */
    uint64_t total[2];
    uint64_t pauses, closes, refused; /* any thread; atomics */
} tr__budget;

typedef struct tr__budget_slice {
    int64_t delta[2];         /* owning worker: not yet published */
} tr__budget_slice;

/* The per-runtime state of net/. */
typedef struct tr__netrt {
    tr__budget budget;
} tr__netrt;

/* rt's net state, made on first use (any thread), or NULL when out of
 * memory. */
tr__netrt *tr__netrt_get(tr_runtime *rt);

void tr__budget_init(tr__budget *b, const tr_budget *set);

/* Adds n (may be negative) to a holding. Owning worker of the slice. */
static inline void tr__budget_add(tr__budget *b, tr__budget_slice *s, int dir, int64_t n)
{
    s->delta[dir] += n;
    if (s->delta[dir] >= TR__BUDGET_BATCH || s->delta[dir] <= -TR__BUDGET_BATCH) {
        tr__faa_rlx_64(&b->total[dir], (uint64_t)s->delta[dir]);
        s->delta[dir] = 0;
    }
}

/* Whether the budget is spent in direction dir: its total, plus the
 * slice's unpublished delta (if s is not NULL), plus extra, at or over
 * limit * num / 8 (num 8: the limit; 7: the resume mark). */
static inline bool tr__budget_over(const tr__budget *b, const tr__budget_slice *s, int dir,
                                   unsigned num, uint64_t extra)
{
    uint64_t lim = tr__load_rlx_64(&b->limit[dir]);
    if (lim == 0) {
        return false;
    }
    int64_t t = (int64_t)tr__load_rlx_64(&b->total[dir]) + (s ? s->delta[dir] : 0);
    t += (int64_t)extra;
    return t > 0 && (uint64_t)t >= lim / 8 * num + lim % 8 * num / 8;
}

struct tr_conn;
struct ev_loop;
struct ev_timer;

/* A connection's pend capacity went from old_cap to new_cap. Owner. */
void tr__budget_pend(struct tr_conn *c, size_t old_cap, size_t new_cap);
/* A connection's send queue grew (n > 0) or shrank. Owner. */
void tr__budget_out(struct tr_conn *c, int64_t n);
/* Whether an input budget of c is spent (reads go in small steps). Owner. */
bool tr__budget_in_spent(const struct tr_conn *c);
/* Whether an input budget of c would be spent with extra bytes more held.
 * Owner. */
bool tr__budget_in_would_spend(const struct tr_conn *c, size_t extra);
/* Whether an output budget of c is spent; counts the refusal if so.
 * Any thread. */
bool tr__budget_out_refuse(struct tr_conn *c);
/* c's partial frame grew: pauses it if an input budget is spent and it is
 * among the heavy holders. Owner. */
void tr__budget_maybe_pause(struct tr_conn *c);
/* Takes c off the paused list (closing, reset). Owner. */
void tr__budget_unpause(struct tr_conn *c);
/* The worker's sweep timer (netw.c starts nothing; budget.c does). */
void tr__budget_sweep(struct ev_loop *loop, struct ev_timer *w, int revents);

#endif
