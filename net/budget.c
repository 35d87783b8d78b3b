/* Memory budgets: the runtime's (per-runtime net state), the public calls,
 * counting a connection's holdings, and the per-worker sweep that resumes
 * or closes connections paused at an input budget (design: budget.h). */
#include "budget.h"

#include <stdlib.h>
#include <string.h>

#include "../runtime/runtime.h"
#include "conn_impl.h"
#include "conn_settings.h"
#include "netw.h"
#include "troupe/log.h"

#define SWEEP_S 0.1
#define LOG_EVERY_S 1.0
/* A connection resumed may read this much before it is paused again. */
#define RESUME_GRANT 65536
/* At the budget, the holders at or above the worker's average pause; past
 * limit * HARD_NUM / 8, every growing holder does. */
#define HARD_NUM 10
#define RESUME_NUM 7

void tr_budget_defaults(tr_budget *b)
{
    b->input_bytes = (size_t)128 << 20;
    b->output_bytes = (size_t)512 << 20;
    b->grace_ms = 5000;
}

void tr__budget_init(tr__budget *b, const tr_budget *set)
{
    tr__store_rlx_64(&b->limit[TR__BIN], set->input_bytes);
    tr__store_rlx_64(&b->limit[TR__BOUT], set->output_bytes);
    tr__store_rlx_32(&b->grace_ms, set->grace_ms);
}

static void netrt_free(void *p)
{
    free(p);
}

tr__netrt *tr__netrt_get(tr_runtime *rt)
{
    tr__netrt *n = tr__load_acq_ptr(&rt->net);
    if (n != NULL) {
        return n;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return NULL;
    }
    tr_budget def;
    tr_budget_defaults(&def);
    tr__budget_init(&n->budget, &def);
    void *seen;
    if (!tr__cas_sc_ptr_value(&rt->net, NULL, n, &seen)) {
        free(n);
        return seen;
    }
    /* Only the winner writes it; tr_runtime_free reads it after joining
     * every worker. */
    rt->net_free = netrt_free;
    return n;
}

int tr_net_budget_set(tr_runtime *rt, const tr_budget *b)
{
    if (rt == NULL || b == NULL) {
        return TR_EINVAL;
    }
    tr__netrt *n = tr__netrt_get(rt);
    if (n == NULL) {
        return TR_ENOMEM;
    }
    tr__budget_init(&n->budget, b);
    return 0;
}

int tr_net_budget_get(tr_runtime *rt, tr_budget *out)
{
    if (rt == NULL || out == NULL) {
        return TR_EINVAL;
    }
    tr__netrt *n = tr__netrt_get(rt);
    if (n == NULL) {
        return TR_ENOMEM;
    }
    out->input_bytes = (size_t)tr__load_rlx_64(&n->budget.limit[TR__BIN]);
    out->output_bytes = (size_t)tr__load_rlx_64(&n->budget.limit[TR__BOUT]);
    out->grace_ms = tr__load_rlx_32(&n->budget.grace_ms);
    return 0;
}

static uint64_t clamp_total(const tr__budget *b, int dir)
{
    int64_t t = (int64_t)tr__load_rlx_64(&b->total[dir]);
    return t > 0 ? (uint64_t)t : 0;
}

int tr_net_budget_stats(tr_runtime *rt, tr_budget_stats *out)
{
    if (rt == NULL || out == NULL) {
        return TR_EINVAL;
    }
    tr__netrt *n = tr__netrt_get(rt);
    if (n == NULL) {
        return TR_ENOMEM;
    }
    out->input_bytes = clamp_total(&n->budget, TR__BIN);
    out->output_bytes = clamp_total(&n->budget, TR__BOUT);
    out->pauses = tr__load_rlx_64(&n->budget.pauses);
    out->closes = tr__load_rlx_64(&n->budget.closes);
    out->refused = tr__load_rlx_64(&n->budget.refused);
    return 0;
}

/* ---- counting ---- */

static tr__budget *srv_budget(const tr_conn *c)
{
    return c->st != NULL ? (tr__budget *)&c->cfg->budget : NULL;
}

void tr__budget_pend(tr_conn *c, size_t old_cap, size_t new_cap)
{
    if (c->nw == NULL || old_cap == new_cap) {
        return;
    }
    int64_t d = (int64_t)new_cap - (int64_t)old_cap;
    tr__netw *nw = c->nw;
    nw->held_in += (uint64_t)d;
    nw->holders += (old_cap == 0) - (new_cap == 0);
    tr__budget_add(&nw->rt->budget, &nw->slice, TR__BIN, d);
    if (c->st != NULL) {
        tr__budget_add(srv_budget(c), &c->st->slice, TR__BIN, d);
    }
}

void tr__budget_out(tr_conn *c, int64_t n)
{
    if (c->nw == NULL || n == 0) {
        return;
    }
    tr__budget_add(&c->nw->rt->budget, &c->nw->slice, TR__BOUT, n);
    if (c->st != NULL) {
        tr__budget_add(srv_budget(c), &c->st->slice, TR__BOUT, n);
    }
}

/* Whether an input budget of c, plus extra, is over limit * num / 8. Owner. */
static bool in_over_by(const tr_conn *c, unsigned num, uint64_t extra)
{
    return tr__budget_over(&c->nw->rt->budget, &c->nw->slice, TR__BIN, num, extra) ||
           (c->st != NULL &&
            tr__budget_over(srv_budget(c), &c->st->slice, TR__BIN, num, extra));
}

static bool in_over(const tr_conn *c, unsigned num)
{
    return in_over_by(c, num, 0);
}

bool tr__budget_in_spent(const tr_conn *c)
{
    return c->nw != NULL && in_over(c, 8);
}

bool tr__budget_in_would_spend(const tr_conn *c, size_t extra)
{
    return c->nw != NULL && in_over_by(c, 8, extra);
}

bool tr__budget_out_refuse(tr_conn *c)
{
    if (c->nw == NULL) {
        return false;
    }
    tr__budget *rb = &c->nw->rt->budget, *sb = srv_budget(c);
    if (!tr__budget_over(rb, NULL, TR__BOUT, 8, 0) &&
        (sb == NULL || !tr__budget_over(sb, NULL, TR__BOUT, 8, 0))) {
        return false;
    }
    tr__faa_rlx_64(&rb->refused, 1);
    if (c->st != NULL) {
        tr__faa_rlx_64(&c->st->s.budget_refused, 1);
    }
    return true;
}

/* ---- pausing ---- */

static void link_paused(tr_conn *c)
{
    tr__netw *nw = c->nw;
    c->bp_prev = NULL;
    c->bp_next = nw->paused;
    if (nw->paused != NULL) {
        nw->paused->bp_prev = c;
    }
    nw->paused = c;
    nw->npaused++;
    if (!ev_is_active(&nw->sweep)) {
        ev_timer_set(&nw->sweep, SWEEP_S, SWEEP_S);
        ev_timer_start(nw->loop, &nw->sweep);
    }
}

void tr__budget_unpause(tr_conn *c)
{
    if (!(c->flags & F_BPAUSE)) {
        return;
    }
    tr__netw *nw = c->nw;
    c->flags &= ~F_BPAUSE;
    if (c->bp_prev != NULL) {
        c->bp_prev->bp_next = c->bp_next;
    } else {
        nw->paused = c->bp_next;
    }
    if (c->bp_next != NULL) {
        c->bp_next->bp_prev = c->bp_prev;
    }
    c->bp_prev = c->bp_next = NULL;
    if (--nw->npaused == 0 && nw->log_closed == 0) {
        ev_timer_stop(nw->loop, &nw->sweep); /* the sweep stops itself otherwise */
    }
}

void tr__budget_maybe_pause(tr_conn *c)
{
    if (c->nw == NULL || (c->flags & (F_BPAUSE | F_CLOSING | F_CLOSED)) || !in_over(c, 8)) {
        return;
    }
    /* Heaviest first: a holder under this worker's average keeps reading
     * (its frame may well complete) unless the budget is far over. */
    tr__netw *nw = c->nw;
    if ((uint64_t)c->pend_cap * nw->holders < nw->held_in && !in_over(c, HARD_NUM)) {
        return;
    }
    c->flags |= F_BPAUSE;
    c->bp_since = ev_now(nw->loop);
    link_paused(c);
    tr__faa_rlx_64(&nw->rt->budget.pauses, 1);
    TR__STAT_ADD(c->st, budget_pauses, 1);
    tr__conn_update_reading(c);
}

/* ---- the sweep ---- */

static int heavier_first(const void *a, const void *b)
{
    size_t x = (*(tr_conn *const *)a)->pend_cap, y = (*(tr_conn *const *)b)->pend_cap;
    return x < y ? 1 : x > y ? -1 : 0;
}

static uint32_t grace_ms(const tr_conn *c)
{
    uint32_t g = tr__load_rlx_32(&c->nw->rt->budget.grace_ms);
    const tr__budget *sb = srv_budget(c);
    if (sb != NULL && tr__load_rlx_64(&sb->limit[TR__BIN]) != 0) {
        uint32_t sg = tr__load_rlx_32(&sb->grace_ms);
        g = sg < g ? sg : g;
    }
    return g;
}

/* Closes paused connections whose grace is over, heaviest first, while
 * their budget is still spent. Returns how many it closed. */
static unsigned close_heaviest(tr__netw *nw, tr_conn **v, size_t n, ev_tstamp now)
{
    unsigned closed = 0;
    qsort(v, n, sizeof(*v), heavier_first);
    for (size_t i = 0; i < n; i++) {
        tr_conn *c = v[i];
        if (now - c->bp_since < grace_ms(c) / 1000.0 || !in_over(c, 8)) {
            continue;
        }
        size_t held = c->pend_cap;
        tr__conn_ctx x = tr__conn_enter(c);
        if (tr__conn_error(c, TR_ERR_BUDGET, TR_ENOBUFS) == TR_CONTINUE) {
            c->bp_since = now; /* another grace period */
        } else {
            tr__faa_rlx_64(&nw->rt->budget.closes, 1);
            TR__STAT_ADD(c->st, budget_closes, 1);
            tr__conn_finish_close(c, TR_ENOBUFS, true);
            v[i] = NULL;
            closed++;
            nw->log_freed += held;
        }
        tr__conn_leave(x);
    }
    return closed;
}

/* Resumes paused connections, lightest first, while there is room for a
 * read each. */
static void resume_lightest(tr_conn **v, size_t n)
{
    uint64_t granted = 0;
    for (size_t i = n; i-- > 0;) {
        tr_conn *c = v[i];
        /* Each resumed holder may read one buffer before it pauses again:
         * at least one resumes per sweep once under the mark, more while
         * their reads would stay under it. */
        if (c == NULL || in_over_by(c, RESUME_NUM, granted)) {
            continue;
        }
        granted += RESUME_GRANT;
        tr__conn_ctx x = tr__conn_enter(c);
        tr__budget_unpause(c);
        tr__conn_update_reading(c);
        tr__conn_leave(x);
    }
}

void tr__budget_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    tr__netw *nw = (tr__netw *)((char *)w - offsetof(tr__netw, sweep));
    ev_tstamp now = ev_now(loop);
    size_t n = 0;
    tr_conn **v = malloc(sizeof(*v) * (size_t)nw->npaused);
    if (v != NULL) {
        for (tr_conn *c = nw->paused; c != NULL; c = c->bp_next) {
            v[n++] = c;
        }
        nw->log_closed += close_heaviest(nw, v, n, now);
        resume_lightest(v, n);
        free(v);
    }
    if (nw->log_closed > 0 && now - nw->last_log >= LOG_EVERY_S) {
        tr__budget *b = &nw->rt->budget;
        tr_log(TR_LOG_WARN,
               "event=budget_close closed=%llu freed_bytes=%llu input_held=%llu "
               "input_limit=%llu paused=%llu",
               (unsigned long long)nw->log_closed, (unsigned long long)nw->log_freed,
               (unsigned long long)clamp_total(b, TR__BIN),
               (unsigned long long)tr__load_rlx_64(&b->limit[TR__BIN]),
               (unsigned long long)nw->npaused);
        nw->last_log = now;
        nw->log_closed = nw->log_freed = 0;
    }
    if (nw->npaused == 0 && nw->log_closed == 0) {
        ev_timer_stop(loop, &nw->sweep);
    }
}
