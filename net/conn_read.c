/* The connection actor, bytes in: read, decode in place, hand frames to
 * the handler, keep only the tail of an incomplete frame. */
#include "conn_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/atomic.h"
#include "../runtime/msg_impl.h"
#include "netw.h"
#include "troupe/log.h"

enum { DELIVERED = 0, RETRY = 1 };

static int deliver(tr_conn *c, const unsigned char *data, size_t len)
{
    c->cs.frames_in++;
    TR__STAT_ADD(c->st, frames_in, 1);
    if (tr__conn_has_handler_actor(c)) {
        tr_msg *m = tr_msg_new(TR_MSG_CONN_FRAME, data, len);
        if (m == NULL) {
            return RETRY;
        }
        m->ref = c->id.bits;
        int rc = tr_send(c->cfg->handler_actor, m);
        if (rc == TR_EBUFFULL) {
            c->cs.frames_in--;
            TR__STAT_ADD(c->st, frames_in, (uint64_t)-1);
            return RETRY;
        }
        if (rc < 0 && tr__conn_error(c, TR_ERR_HANDLER, rc) == TR_DISCONNECT) {
            tr__conn_begin_close(c, rc);
        }
        return DELIVERED;
    }
    int rc = c->cfg->conn.handler->on_frame(c, data, len, c->cfg->conn.user);
    if (rc < 0 && tr__conn_error(c, TR_ERR_HANDLER, rc) == TR_DISCONNECT) {
        tr__conn_begin_close(c, rc);
    }
    return DELIVERED;
}

int tr__conn_keep_tail(tr_conn *c, const unsigned char *p, size_t n)
{
    if (n == 0) {
        tr__budget_pend(c, c->pend_cap, 0);
        free(c->pend);
        c->pend = NULL;
        c->pend_len = c->pend_cap = 0;
        return 0;
    }
    if (p >= c->pend && c->pend != NULL && p < c->pend + c->pend_cap) {
        memmove(c->pend, p, n);
        c->pend_len = n;
        return 0;
    }
    if (c->pend_cap < n) {
        unsigned char *np = realloc(c->pend, n);
        if (np == NULL) {
            return TR_ENOMEM;
        }
        tr__budget_pend(c, c->pend_cap, n);
        c->pend = np;
        c->pend_cap = n;
    }
    memcpy(c->pend, p, n);
    c->pend_len = n;
    return 0;
}

void tr__conn_input(tr_conn *c, const unsigned char *data, size_t len)
{
    const unsigned char *p = data;
    size_t n = len;
    size_t held = c->pend_len;
    bool completed = false; /* a frame ended: a tail left now is a new frame */
    if (c->pend_len > 0) {
        /* An incomplete frame waits: append and decode from the copy. */
        if (c->pend_cap - c->pend_len < len) {
            /* Doubling keeps appends cheap, but near an input budget a
             * doubling could overshoot it by the whole buffer: grow by
             * what this read needs then (budget.h). */
            size_t cap = c->pend_len + len;
            if (cap < c->pend_cap * 2 && !tr__budget_in_would_spend(c, c->pend_cap)) {
                cap = c->pend_cap * 2;
            }
            unsigned char *np = realloc(c->pend, cap);
            if (np == NULL) {
                tr__conn_finish_close(c, TR_ENOMEM, true);
                return;
            }
            tr__budget_pend(c, c->pend_cap, cap);
            c->pend = np;
            c->pend_cap = cap;
        }
        if (len > 0) {
            memcpy(c->pend + c->pend_len, data, len);
        }
        c->pend_len += len;
        p = c->pend;
        n = c->pend_len;
    }
    const tr_codec *codec = c->cfg->conn.codec;
    size_t off = 0;
    while (off < n && !(c->flags & (F_CLOSING | F_CLOSED | F_HPAUSE))) {
        if (c->flags & F_RESYNC) {
            /* Still inside the frame a CONTINUE is skipping: one error per
             * bad frame, however many reads its bytes take. */
            ssize_t k = codec->ops->resync(codec, &c->cst, p + off, n - off);
            if (k < 0) {
                tr__conn_begin_close(c, (int)k);
                break;
            }
            off += (size_t)k;
            if (off < n) {
                c->flags &= ~F_RESYNC; /* the boundary is behind us */
            }
            continue;
        }
        tr_frame f;
        ssize_t r = codec->ops->decode(codec, &c->cst, p + off, n - off,
                                       c->cfg->conn.max_frame_bytes, &f);
        if (r == 0) {
            break;
        }
        if (r > 0) {
            if (deliver(c, f.data, f.len) == RETRY) {
                /* The handler actor tells us when it has room (or that it
                 * is gone); only if we cannot even ask (out of memory) do
                 * we look again after a while. */
                c->flags |= F_HPAUSE;
                c->retry_at = 0;
                if (tr__actor_wait_room(c->cfg->handler_actor, tr_self(c->actor)) < 0) {
                    c->retry_at = tr__conn_now(c) + HANDLER_RETRY_S;
                }
                tr__conn_rearm(c);
                break;
            }
            off += (size_t)r;
            completed = true;
            continue;
        }
        tr_error_class cls = r == TR_EMSGSIZE ? TR_ERR_FRAME_TOO_LARGE : TR_ERR_MALFORMED;
        if (tr__conn_error(c, cls, (int)r) == TR_CONTINUE && codec->ops->resync != NULL) {
            ssize_t k = codec->ops->resync(codec, &c->cst, p + off, n - off);
            if (k >= 0) {
                off += (size_t)k;
                if (off == n) {
                    c->flags |= F_RESYNC;
                }
                continue;
            }
        }
        tr__conn_begin_close(c, (int)r);
    }
    if (c->flags & (F_CLOSING | F_CLOSED)) {
        tr__conn_keep_tail(c, NULL, 0);
        return;
    }
    if (tr__conn_keep_tail(c, p + off, n - off) < 0) {
        tr__conn_finish_close(c, TR_ENOMEM, true);
        return;
    }
    if (c->pend_len > 0 && (held == 0 || completed)) {
        tr__conn_frame_started(c);
    }
    if (c->pend_len > held) {
        tr__budget_maybe_pause(c);
    }
    tr__conn_update_reading(c);
}

/* Reads while the transport has bytes, up to the budget. */
void tr__conn_read_some(tr_conn *c)
{
    size_t budget = READ_BUDGET;
    /* While an input budget is spent, read in small steps: a peer whose
     * frames complete within a read is served as before, one that starts a
     * frame adds little before it is paused. */
    size_t cap = tr__budget_in_spent(c) ? TIGHT_READ : TR__RBUF_BYTES;
    for (;;) {
        ssize_t r = c->tp->read(c, c->nw->rbuf, cap);
        if (r > 0) {
            c->cs.bytes_in += (size_t)r;
            TR__STAT_ADD(c->st, bytes_in, (uint64_t)r);
            c->last_io = ev_now(c->nw->loop);
            if (c->cfg->observer != NULL && c->cfg->observer->on_read != NULL) {
                c->cfg->observer->on_read(c, (size_t)r, c->cfg->conn.user);
            }
            if (!(c->flags & F_CLOSING)) {
                tr__conn_input(c, c->nw->rbuf, (size_t)r);
            }
            /* A short read drained the socket: don't pay a read just to see
             * EAGAIN, unless the transport holds bytes the socket will
             * never report (TLS). Also stop at the budget (fairness) or a
             * pause. */
            bool held = c->tp->pending != NULL && c->tp->pending(c) > 0;
            if (((size_t)r < cap && !held) || budget <= (size_t)r ||
                !(c->flags & F_READING) || (c->flags & F_CLOSED)) {
                break;
            }
            budget -= (size_t)r;
            continue;
        }
        if (r == 0) {
            tr__conn_eof(c);
            break;
        }
        if (r == -EINTR) {
            continue;
        }
        if (r == -EAGAIN || r == -EWOULDBLOCK) {
            if (c->tp->want != NULL && c->tp->want(c) == TR__WANT_WRITE) {
                /* TLS must write before it can read on: the write watcher
                 * brings us back here (conn_write.c). */
                c->flags |= F_RD_WANTS_WR;
                tr__conn_mark_dirty(c);
            }
            break;
        }
        tr_error_class cls = r == TR_ETLS ? TR_ERR_TLS
                             : r == -ECONNRESET ? TR_ERR_PEER_RESET
                                                : TR_ERR_READ;
        tr__conn_error(c, cls, (int)r);
        tr__conn_finish_close(c, (int)r, true);
        break;
    }
    if ((c->flags & (F_READING | F_CLOSED)) == F_READING && c->tp->pending != NULL &&
        c->tp->pending(c) > 0) {
        /* Stopped at the budget with bytes the transport holds (TLS): no
         * event will come for them, so the loop makes one, after the
         * other connections' turns. */
        ev_feed_event(c->nw->loop, &c->rio, EV_READ);
    }
}

void tr__conn_on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    tr_conn *c = (tr_conn *)((char *)w - offsetof(tr_conn, rio));
    tr__conn_ctx x = tr__conn_enter(c);
    if (c->flags & F_HANDSHAKE) {
        tr__conn_handshake(c);
        tr__conn_leave(x);
        return;
    }
    if (c->flags & F_WR_WANTS_RD) {
        c->flags &= ~F_WR_WANTS_RD; /* the write it held up goes first */
        tr__conn_flush(c);
        tr__conn_update_reading(c);
    }
    if (tr__conn_wants_input(c)) {
        tr__conn_read_some(c);
    }
    /* What the handler wrote in answer to this read leaves now, before the
     * next connection's callback: a reply's send-queue block returns to the
     * cache at once (with 100 readable connections per poll, deferring all
     * replies to the end of the iteration kept 100 blocks alive and the
     * allocator busy), and the reply's latency drops. Writes to other
     * connections are still gathered until the iteration ends. */
    if ((c->flags & (F_DIRTY | F_CLOSED)) == F_DIRTY) {
        tr__netw_unmark(c->nw, c);
        tr__conn_flush(c);
    }
    tr__conn_leave(x);
}

void tr__conn_eof(tr_conn *c)
{
    c->flags |= F_EOF;
    if ((c->flags & F_LINGER) || ((c->flags & F_CLOSING) && (c->flags & F_WR_SHUT))) {
        tr__conn_finish_close(c, c->close_reason, false);
        return;
    }
    tr__conn_update_reading(c);
    /* The peer is done sending: flush what we owe it, then close. */
    tr__conn_begin_close(c, 0);
}
