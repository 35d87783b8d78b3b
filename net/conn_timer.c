/* A connection's timer: one ev_timer per connection for every deadline it
 * has (handshake, linger, a stuck graceful flush, the handler-retry pause,
 * idle, write and frame timeouts), re-armed for the nearest one only when it
 * fires or the set of deadlines changes (libev's cheap-timeout pattern),
 * never on every read or write: those only store a timestamp. */
#include "conn_impl.h"

#include "netw.h"

/* A frame is held and not waiting on the handler: its deadline runs. */
static bool frame_clock_runs(const tr_conn *c)
{
    return c->cfg->conn.frame_timeout_ms && c->pend_len > 0 &&
           !(c->flags & (F_HPAUSE | F_CLOSING | F_CLOSED));
}

static ev_tstamp frame_deadline(const tr_conn *c)
{
    return c->frame_start + c->cfg->conn.frame_timeout_ms / 1000.0;
}

void tr__conn_frame_started(tr_conn *c)
{
    if (c->nw == NULL) {
        return;
    }
    c->frame_start = ev_now(c->nw->loop);
    if (!frame_clock_runs(c)) {
        return;
    }
    /* Most of the time the timer already fires first (the idle timeout,
     * armed from an earlier read): it re-arms for this deadline then. */
    if (ev_is_active(&c->tmo) &&
        ev_now(c->nw->loop) + ev_timer_remaining(c->nw->loop, &c->tmo) <= frame_deadline(c)) {
        return;
    }
    tr__conn_rearm(c);
}

void tr__conn_rearm(tr_conn *c)
{
    if (c->nw == NULL) {
        return;
    }
    ev_tstamp next = 0;
#define CONSIDER(t)                                                                                \
    do {                                                                                           \
        ev_tstamp t_ = (t);                                                                        \
        if (next == 0 || t_ < next) {                                                              \
            next = t_;                                                                             \
        }                                                                                          \
    } while (0)
    if (c->flags & F_CLOSED) {
        ev_timer_stop(c->nw->loop, &c->tmo);
        return;
    }
    if (c->flags & F_HANDSHAKE) {
        CONSIDER(c->last_io + c->cfg->conn.tls_handshake_timeout_ms / 1000.0);
    }
    if (c->flags & F_LINGER) {
        CONSIDER(c->linger_until);
    } else if ((c->flags & F_CLOSING) && c->out.bytes > 0) {
        CONSIDER(c->last_progress + c->cfg->conn.linger_ms / 1000.0); /* see on_timer */
    }
    if ((c->flags & F_HPAUSE) && c->retry_at != 0) {
        CONSIDER(c->retry_at);
    }
    if (c->cfg->conn.idle_timeout_ms && !(c->flags & F_CLOSING) && (c->flags & F_CONNECTED)) {
        CONSIDER(c->last_io + c->cfg->conn.idle_timeout_ms / 1000.0);
    }
    if (c->cfg->conn.write_timeout_ms && c->out.bytes > 0) {
        CONSIDER(c->last_progress + c->cfg->conn.write_timeout_ms / 1000.0);
    }
    if (frame_clock_runs(c)) {
        CONSIDER(frame_deadline(c));
    }
#undef CONSIDER
    ev_timer_stop(c->nw->loop, &c->tmo);
    if (next != 0) {
        ev_tstamp after = next - ev_now(c->nw->loop);
        ev_timer_set(&c->tmo, after > 0 ? after : 0.0001, 0);
        ev_timer_start(c->nw->loop, &c->tmo);
    }
}

void tr__conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    tr_conn *c = (tr_conn *)((char *)w - offsetof(tr_conn, tmo));
    tr__conn_ctx x = tr__conn_enter(c);
    ev_tstamp now = ev_now(loop);
    if ((c->flags & F_HANDSHAKE) &&
        now >= c->last_io + c->cfg->conn.tls_handshake_timeout_ms / 1000.0) {
        tr__conn_handshake_failed(c, TR_ETIMEDOUT);
        tr__conn_leave(x);
        return;
    }
    if ((c->flags & F_LINGER) && now >= c->linger_until) {
        tr__conn_finish_close(c, c->close_reason, false);
        tr__conn_leave(x);
        return;
    }
    if ((c->flags & F_CLOSING) && !(c->flags & F_LINGER) && c->out.bytes > 0 &&
        now - c->last_progress >= c->cfg->conn.linger_ms / 1000.0) {
        /* A graceful close whose flush made no progress for linger_ms: the
         * peer does not read, so the queue would never drain. Abort. */
        tr__conn_finish_close(c, c->close_reason ? c->close_reason : TR_ETIMEDOUT, true);
        tr__conn_leave(x);
        return;
    }
    if ((c->flags & F_HPAUSE) && c->retry_at != 0 && now >= c->retry_at) {
        c->flags &= ~F_HPAUSE;
        tr__conn_input(c, NULL, 0);
    }
    if (c->cfg->conn.idle_timeout_ms && (c->flags & F_CONNECTED) &&
        !(c->flags & (F_CLOSING | F_CLOSED)) &&
        now - c->last_io >= c->cfg->conn.idle_timeout_ms / 1000.0) {
        TR__STAT_ADD(c->st, idle_timeouts, 1);
        if (tr__conn_error(c, TR_ERR_IDLE_TIMEOUT, TR_ETIMEDOUT) == TR_CONTINUE) {
            c->last_io = now;
        } else {
            tr__conn_begin_close(c, TR_ETIMEDOUT);
        }
    }
    if (frame_clock_runs(c) && now >= frame_deadline(c)) {
        /* Trickled bytes reset the idle clock, never this one. */
        TR__STAT_ADD(c->st, frame_timeouts, 1);
        if (tr__conn_error(c, TR_ERR_FRAME_TIMEOUT, TR_ETIMEDOUT) == TR_CONTINUE) {
            c->frame_start = now;
        } else {
            tr__conn_begin_close(c, TR_ETIMEDOUT);
        }
    }
    if (c->cfg->conn.write_timeout_ms && c->out.bytes > 0 && !(c->flags & F_CLOSED) &&
        now - c->last_progress >= c->cfg->conn.write_timeout_ms / 1000.0) {
        if (tr__conn_error(c, TR_ERR_WRITE_TIMEOUT, TR_ETIMEDOUT) == TR_CONTINUE) {
            c->last_progress = now;
        } else {
            tr__conn_finish_close(c, TR_ETIMEDOUT, true);
        }
    }
    tr__conn_rearm(c);
    tr__conn_leave(x);
}
