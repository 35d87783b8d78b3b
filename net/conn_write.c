/* The connection actor, bytes out: the send queue, reservations and
 * watermarks, the flush (one writev per loop iteration). */
#include "conn_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/atomic.h"
#include "netw.h"
#include "troupe/log.h"

static void set_writing(tr_conn *c, bool on)
{
    if (c->nw == NULL) {
        return;
    }
    if (on && !(c->flags & F_WRITING)) {
        ev_io_start(c->nw->loop, &c->wio);
        c->flags |= F_WRITING;
        if (c->cfg->conn.write_timeout_ms) {
            tr__conn_rearm(c);
        }
    } else if (!on && (c->flags & F_WRITING)) {
        ev_io_stop(c->nw->loop, &c->wio);
        c->flags &= ~F_WRITING;
    }
}

static void check_low_watermark(tr_conn *c)
{
    if (!(c->flags & F_UNWRITABLE) || tr__load_acq_64(&c->queued) > c->cfg->conn.low_watermark) {
        return;
    }
    c->flags &= ~F_UNWRITABLE;
    if (tr__conn_has_handler_actor(c)) {
        tr__conn_post_event(c, TR_MSG_CONN_WRITABLE, 0);
    } else if (c->cfg->conn.handler->on_writable != NULL) {
        c->cfg->conn.handler->on_writable(c, true, c->cfg->conn.user);
    }
    tr__conn_update_reading(c);
}

static void enter_linger(tr_conn *c)
{
    /* An embedded connection has no clock to bound a linger: close now. */
    if ((c->flags & (F_EOF | F_RD_SHUT)) || c->nw == NULL) {
        /* (After a read shutdown no EOF can be seen: nothing to wait for.) */
        tr__conn_finish_close(c, c->close_reason, false);
        return;
    }
    c->flags |= F_LINGER;
    c->linger_until = tr__conn_now(c) + c->cfg->conn.linger_ms / 1000.0;
    tr__conn_update_reading(c);
    tr__conn_rearm(c);
}

void tr__conn_flush(tr_conn *c)
{
    if (c->flags & F_CLOSED) {
        return;
    }
    if (c->flags & F_ABORT_REQ) {
        tr__conn_finish_close(c, c->close_reason, true);
        return;
    }
    if (!(c->flags & F_CONNECTED)) {
        return;
    }
    tr__conn_ctx x = tr__conn_enter(c);
    while (c->out.bytes > 0) {
        struct iovec iov[MAX_IOV];
        int n = tr__outq_iov(&c->out, iov, MAX_IOV);
        size_t want = 0;
        for (int i = 0; i < n; i++) {
            want += iov[i].iov_len;
        }
        ssize_t r = c->tp->writev(c, iov, n);
        if (c->tp->retry_same) {
            /* What the transport was shown and did not take, it holds. */
            c->out.pinned = r >= 0 ? want - (size_t)r : r == -EAGAIN ? want : 0;
        }
        if (r > 0) {
            tr__outq_consume(&c->out, (size_t)r);
            tr__budget_out(c, -(int64_t)r);
            tr__conn_unreserve(c, (size_t)r);
            c->cs.bytes_out += (size_t)r;
            TR__STAT_ADD(c->st, bytes_out, (uint64_t)r);
            c->last_progress = c->last_io = tr__conn_now(c);
            if (c->cfg->observer != NULL && c->cfg->observer->on_write != NULL) {
                c->cfg->observer->on_write(c, (size_t)r, c->cfg->conn.user);
            }
            if ((size_t)r < want) {
                break; /* the kernel took what it could */
            }
            continue;
        }
        if (r == -EINTR) {
            continue;
        }
        if (r == -EAGAIN || r == -EWOULDBLOCK) {
            if (c->tp->want != NULL && c->tp->want(c) == TR__WANT_READ) {
                c->flags |= F_WR_WANTS_RD; /* TLS must read first */
                tr__conn_update_reading(c);
            }
            break;
        }
        tr_error_class cls = r == TR_ETLS                           ? TR_ERR_TLS
                             : (r == -ECONNRESET || r == -EPIPE) ? TR_ERR_PEER_RESET
                                                                 : TR_ERR_WRITE;
        tr__conn_error(c, cls, (int)r);
        tr__conn_finish_close(c, (int)r, true);
        tr__conn_leave(x);
        return;
    }
    check_low_watermark(c);
    bool more = c->out.bytes > 0 && !(c->flags & F_WR_WANTS_RD);
    if (c->out.bytes == 0 && !(c->flags & F_CLOSED)) {
        if ((c->flags & (F_CLOSING | F_SHUT_REQ)) && !(c->flags & F_WR_SHUT)) {
            if (c->tp->shutdown_wr(c) == -EAGAIN) {
                more = true; /* TLS's close_notify waits for room */
            } else {
                c->flags |= F_WR_SHUT;
            }
        }
        if ((c->flags & F_CLOSING) && !(c->flags & F_LINGER) && (c->flags & F_WR_SHUT)) {
            enter_linger(c);
        }
    }
    set_writing(c, !(c->flags & F_CLOSED) && (more || (c->flags & F_RD_WANTS_WR)));
    tr__conn_leave(x);
}

void tr__conn_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    tr_conn *c = (tr_conn *)((char *)w - offsetof(tr_conn, wio));
    if (c->flags & (F_HANDSHAKE | F_RD_WANTS_WR)) {
        tr__conn_ctx x = tr__conn_enter(c);
        if (c->flags & F_HANDSHAKE) {
            tr__conn_handshake(c);
        } else {
            c->flags &= ~F_RD_WANTS_WR; /* the read it held up goes on */
            if (tr__conn_wants_input(c)) {
                tr__conn_read_some(c);
            }
            tr__conn_flush(c);
        }
        tr__conn_leave(x);
        return;
    }
    if (!(c->flags & F_CONNECTED)) {
        /* A client's connect finished: the dialer decides. */
        if (c->cfg->connect_done != NULL) {
            tr__conn_ctx x = tr__conn_enter(c);
            c->cfg->connect_done(c);
            tr__conn_leave(x);
        }
        return;
    }
    tr__conn_flush(c);
}

/* Reserves n bytes of the send queue for a frame. */
int tr__conn_reserve(tr_conn *c, size_t n)
{
    if (tr__load_acq_32(&c->closing)) {
        return TR_ECLOSED;
    }
    if (tr__budget_out_refuse(c)) {
        tr__faa_rlx_64(&c->cs.sends_refused, 1);
        if (c->st != NULL) {
            tr__faa_rlx_64(&c->st->s.sends_refused, 1);
        }
        return TR__EOUTBUDGET;
    }
    size_t limit = c->cfg->conn.send_queue_bytes;
    uint64_t q = tr__faa_sc_64(&c->queued, n) + n;
    if (q <= limit) {
        return 0;
    }
    if (c->cfg->conn.send_overflow == TR_OVERFLOW_DROP_OLDEST && q <= 2 * (uint64_t)limit) {
        return 0; /* the owner drops the oldest unsent bytes to make room */
    }
    tr__conn_unreserve(c, n);
    /* Foreign senders count here too: atomic increments only. */
    tr__faa_rlx_64(&c->cs.sends_refused, 1);
    if (c->st != NULL) {
        tr__faa_rlx_64(&c->st->s.sends_refused, 1);
    }
    return TR_EBUFFULL;
}

int tr__conn_encode(tr_conn *c, size_t len, unsigned char *hdr, size_t *hl, unsigned char *trl,
                    size_t *tl)
{
    if (len > c->cfg->conn.max_frame_bytes) {
        return TR_EMSGSIZE;
    }
    *hl = *tl = 0;
    const tr_codec *codec = c->cfg->conn.codec;
    if (codec->ops->encode == NULL) {
        return 0;
    }
    return codec->ops->encode(codec, len, hdr, hl, trl, tl);
}

static void after_append(tr_conn *c, size_t n)
{
    c->cs.frames_out++;
    TR__STAT_ADD(c->st, frames_out, 1);
    if (c->out.bytes == n) {
        c->last_progress = tr__conn_now(c); /* the write clock starts now */
    }
    if (c->cfg->conn.send_overflow == TR_OVERFLOW_DROP_OLDEST) {
        uint64_t q = tr__load_acq_64(&c->queued);
        size_t limit = c->cfg->conn.send_queue_bytes;
        if (q > limit) {
            size_t inflight = (size_t)(q - c->out.bytes);
            size_t keep = limit > inflight ? limit - inflight : 0;
            size_t dropped = tr__outq_drop_oldest(&c->out, keep);
            tr__budget_out(c, -(int64_t)dropped);
            tr__conn_unreserve(c, dropped);
        }
    }
    if (!(c->flags & F_UNWRITABLE) && tr__load_acq_64(&c->queued) > c->cfg->conn.high_watermark) {
        c->flags |= F_UNWRITABLE;
        if (tr__conn_has_handler_actor(c)) {
            tr__conn_post_event(c, TR_MSG_CONN_UNWRITABLE, 0);
        } else if (c->cfg->conn.handler->on_writable != NULL) {
            c->cfg->conn.handler->on_writable(c, false, c->cfg->conn.user);
        }
        tr__conn_update_reading(c);
    }
    tr__conn_mark_dirty(c);
}

void tr__conn_overflow_exit(tr_conn *c)
{
    if (c->flags & (F_CLOSING | F_CLOSED)) {
        return; /* already on its way out: one overflow, one error */
    }
    if (c->cfg->conn.send_overflow == TR_OVERFLOW_EXIT &&
        tr__conn_error(c, TR_ERR_SEND_OVERFLOW, TR_EBUFFULL) == TR_DISCONNECT) {
        tr__conn_begin_close(c, TR_EBUFFULL);
    }
}

int tr__conn_write_owned(tr_conn *c, const void *data, size_t len, tr_buf *b, bool reserved,
                         size_t reserved_n)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl, tl;
    if (c->flags & (F_SHUT_REQ | F_WR_SHUT)) {
        /* The write side is shut or about to be: a byte queued now would
         * meet EPIPE and take the still-reading connection down. */
        if (reserved) {
            tr__conn_unreserve(c, reserved_n);
        }
        tr_buf_release(b);
        return TR_ECLOSED;
    }
    int rc = tr__conn_encode(c, len, hdr, &hl, trl, &tl);
    size_t n = hl + len + tl;
    if (rc == 0 && !reserved) {
        rc = tr__conn_reserve(c, n);
        if (rc == TR_EBUFFULL) {
            tr__conn_overflow_exit(c);
        } else if (rc == TR__EOUTBUDGET) {
            rc = TR_EBUFFULL; /* the budget's, not this queue's: no overflow policy */
        }
    } else if (rc == 0 && reserved_n != n) {
        rc = TR_EINVAL;
    }
    if (rc < 0) {
        if (reserved) {
            tr__conn_unreserve(c, reserved_n);
        }
        tr_buf_release(b);
        return rc;
    }
    if (b != NULL && tr__outq_copies(&c->out, len)) {
        rc = tr__outq_append(&c->out, hdr, hl, tr_buf_data(b), len, trl, tl);
        tr_buf_release(b);
    } else {
        rc = b != NULL ? tr__outq_append_buf(&c->out, hdr, hl, b, trl, tl)
                       : tr__outq_append(&c->out, hdr, hl, data, len, trl, tl);
    }
    if (rc < 0) {
        tr__conn_unreserve(c, n);
        return rc;
    }
    tr__budget_out(c, (int64_t)n);
    after_append(c, n);
    return 0;
}

int tr_conn_write(tr_conn *c, const void *data, size_t len)
{
    if (c->flags & F_CLOSED) {
        return TR_ECLOSED;
    }
    return tr__conn_write_owned(c, data, len, NULL, false, 0);
}

int tr_conn_write_buf(tr_conn *c, tr_buf *b)
{
    if (b == NULL) {
        return TR_EINVAL;
    }
    if (c->flags & F_CLOSED) {
        tr_buf_release(b);
        return TR_ECLOSED;
    }
    return tr__conn_write_owned(c, tr_buf_data(b), tr_buf_len(b), b, false, 0);
}
