#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "troupe/log.h"
#include "../runtime/actor.h"
#include "../runtime/atomic.h"
#include "../runtime/worker.h"
#include "addr.h"
#include "netw.h"

enum {
    F_DIRTY = 1u << 0, /* on the flush list (netw.c uses the same bit) */
    F_OPEN = 1u << 1,
    F_READING = 1u << 2,
    F_WRITING = 1u << 3,
    F_UNWRITABLE = 1u << 4,
    F_HPAUSE = 1u << 5, /* handler actor's mailbox was full */
    F_CLOSING = 1u << 6,
    F_SHUT_REQ = 1u << 7,
    F_WR_SHUT = 1u << 8,
    F_LINGER = 1u << 9,
    F_CLOSED = 1u << 10,
    F_EOF = 1u << 11,
    F_DRAINING = 1u << 12,
    F_ABORT_REQ = 1u << 13,
    F_CONNECTED = 1u << 14,
    F_RESYNC = 1u << 15,    /* a CONTINUE resync dropped all input: keep dropping */
    F_USER_CLOSE = 1u << 16 /* tr_conn_close/abort: a client must not redial */
};

#define HANDLER_RETRY_S 0.005
#define READ_BUDGET (4 * TR__RBUF_BYTES)
#define MAX_IOV 64

static const char *class_names[TR_ERR__COUNT] = {
    "peer_reset", "read", "write", "frame_too_large", "malformed",
    "handler", "idle_timeout", "write_timeout", "send_overflow"};

const char *tr_error_class_name(tr_error_class cls)
{
    if ((unsigned)cls >= TR_ERR__COUNT) {
        return "unknown";
    }
    return class_names[cls];
}

/* ---- small helpers ---- */

static ev_tstamp now_of(tr_conn *c)
{
    if (c->nw != NULL) {
        return ev_now(c->nw->loop);
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ev_tstamp)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void mark_dirty(tr_conn *c)
{
    if (c->nw != NULL) {
        tr__netw_mark_dirty(c->nw, c);
    } else {
        c->flags |= F_DIRTY;
    }
}

static void unreserve(tr_conn *c, size_t n)
{
    tr__faa64(&c->queued, (uint64_t)0 - n);
}

/* Runs handler code as the connection actor, so tr_send inside a callback
 * carries the connection as sender. */
typedef struct ctx {
    tr__worker *w;
    tr_actor *prev;
} ctx;

static ctx enter(tr_conn *c)
{
    ctx x = {tr__current_worker(), tr__current_actor()};
    if (c->actor != NULL) {
        tr__set_current(x.w, c->actor);
    }
    return x;
}

static void leave(ctx x)
{
    tr__set_current(x.w, x.prev);
}

static bool has_handler_actor(const tr_conn *c)
{
    return !tr_actor_id_is_none(c->cfg->handler_actor);
}

static void post_event(tr_conn *c, uint32_t type, int reason)
{
    tr_msg *m = tr_msg_new(type, NULL, 0);
    if (m == NULL) {
        return;
    }
    m->ref = c->id.bits;
    m->reason = reason;
    /* Past the handler's capacity if need be: a lost CLOSED or WRITABLE
     * would leave the handler wrong about the connection for good. */
    tr__send_over(c->cfg->handler_actor, m);
}

/* ---- reading side ---- */

static void update_reading(tr_conn *c)
{
    if (c->nw == NULL) {
        return;
    }
    uint32_t f = c->flags;
    bool want = (f & F_CONNECTED) && !(f & (F_CLOSED | F_EOF)) &&
                ((f & F_CLOSING) || !(f & (F_UNWRITABLE | F_HPAUSE)));
    if (want && !(f & F_READING)) {
        ev_io_start(c->nw->loop, &c->rio);
        c->flags |= F_READING;
    } else if (!want && (f & F_READING)) {
        ev_io_stop(c->nw->loop, &c->rio);
        c->flags &= ~F_READING;
    }
}

static void rearm(tr_conn *c)
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
    if (c->flags & F_LINGER) {
        CONSIDER(c->linger_until);
    } else if ((c->flags & F_CLOSING) && c->out.bytes > 0) {
        CONSIDER(c->last_progress + c->cfg->linger_ms / 1000.0); /* see on_timer */
    }
    if (c->flags & F_HPAUSE) {
        CONSIDER(c->retry_at);
    }
    if (c->cfg->idle_timeout_ms && !(c->flags & F_CLOSING) && (c->flags & F_CONNECTED)) {
        CONSIDER(c->last_io + c->cfg->idle_timeout_ms / 1000.0);
    }
    if (c->cfg->write_timeout_ms && c->out.bytes > 0) {
        CONSIDER(c->last_progress + c->cfg->write_timeout_ms / 1000.0);
    }
#undef CONSIDER
    ev_timer_stop(c->nw->loop, &c->tmo);
    if (next != 0) {
        ev_tstamp after = next - ev_now(c->nw->loop);
        ev_timer_set(&c->tmo, after > 0 ? after : 0.0001, 0);
        ev_timer_start(c->nw->loop, &c->tmo);
    }
}

/* Counts the error, asks the policy, and says what to do. */
static tr_error_action conn_error(tr_conn *c, tr_error_class cls, int err)
{
    tr_error_action act = c->cfg->policy[cls];
    if (c->cfg->handler != NULL && c->cfg->handler->on_error != NULL) {
        act = c->cfg->handler->on_error(c, cls, err, c->cfg->user);
    }
    if (cls == TR_ERR_PEER_RESET || cls == TR_ERR_READ || cls == TR_ERR_WRITE) {
        act = TR_DISCONNECT; /* the socket is unusable */
    }
    TR__STAT_ADD(c->st, errors[cls], 1);
    if (act == TR_CONTINUE) {
        TR__STAT_ADD(c->st, continues, 1);
    } else {
        TR__STAT_ADD(c->st, disconnects, 1);
    }
    if (c->cfg->observer != NULL && c->cfg->observer->on_error != NULL) {
        c->cfg->observer->on_error(c, cls, err, act, c->cfg->user);
    }
    tr_log(TR_LOG_DEBUG, "event=conn_error conn=%llu class=%s err=%d action=%s",
           (unsigned long long)c->id.bits, tr_error_class_name(cls), err,
           act == TR_CONTINUE ? "continue" : "disconnect");
    return act;
}

enum { DELIVERED = 0, RETRY = 1 };

static int deliver(tr_conn *c, const unsigned char *data, size_t len)
{
    c->cs.frames_in++;
    TR__STAT_ADD(c->st, frames_in, 1);
    if (has_handler_actor(c)) {
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
        if (rc < 0 && conn_error(c, TR_ERR_HANDLER, rc) == TR_DISCONNECT) {
            tr__conn_begin_close(c, rc);
        }
        return DELIVERED;
    }
    int rc = c->cfg->handler->on_frame(c, data, len, c->cfg->user);
    if (rc < 0 && conn_error(c, TR_ERR_HANDLER, rc) == TR_DISCONNECT) {
        tr__conn_begin_close(c, rc);
    }
    return DELIVERED;
}

static int keep_tail(tr_conn *c, const unsigned char *p, size_t n)
{
    if (n == 0) {
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
    if (c->pend_len > 0) {
        /* An incomplete frame waits: append and decode from the copy. */
        if (c->pend_cap - c->pend_len < len) {
            size_t cap = c->pend_len + len;
            if (cap < c->pend_cap * 2) {
                cap = c->pend_cap * 2;
            }
            unsigned char *np = realloc(c->pend, cap);
            if (np == NULL) {
                tr__conn_finish_close(c, TR_ENOMEM, true);
                return;
            }
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
    const tr_codec *codec = c->cfg->codec;
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
        ssize_t r = codec->ops->decode(codec, &c->cst, p + off, n - off, c->cfg->max_frame, &f);
        if (r == 0) {
            break;
        }
        if (r > 0) {
            if (deliver(c, f.data, f.len) == RETRY) {
                c->flags |= F_HPAUSE;
                c->retry_at = now_of(c) + HANDLER_RETRY_S;
                rearm(c);
                break;
            }
            off += (size_t)r;
            continue;
        }
        tr_error_class cls = r == TR_EMSGSIZE ? TR_ERR_FRAME_TOO_LARGE : TR_ERR_MALFORMED;
        if (conn_error(c, cls, (int)r) == TR_CONTINUE && codec->ops->resync != NULL) {
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
        keep_tail(c, NULL, 0);
        return;
    }
    if (keep_tail(c, p + off, n - off) < 0) {
        tr__conn_finish_close(c, TR_ENOMEM, true);
        return;
    }
    update_reading(c);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    tr_conn *c = (tr_conn *)((char *)w - offsetof(tr_conn, rio));
    ctx x = enter(c);
    size_t budget = READ_BUDGET;
    for (;;) {
        ssize_t r = c->cfg->tp->read(c, c->nw->rbuf, TR__RBUF_BYTES);
        if (r > 0) {
            c->cs.bytes_in += (size_t)r;
            TR__STAT_ADD(c->st, bytes_in, (uint64_t)r);
            c->last_io = ev_now(c->nw->loop);
            if (c->cfg->observer != NULL && c->cfg->observer->on_read != NULL) {
                c->cfg->observer->on_read(c, (size_t)r, c->cfg->user);
            }
            if (!(c->flags & F_CLOSING)) {
                tr__conn_input(c, c->nw->rbuf, (size_t)r);
            }
            /* A short read drained the socket: don't pay a read just to see
             * EAGAIN. Also stop at the budget (fairness) or a pause. */
            if ((size_t)r < TR__RBUF_BYTES || budget <= (size_t)r ||
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
            break;
        }
        tr_error_class cls = r == -ECONNRESET ? TR_ERR_PEER_RESET : TR_ERR_READ;
        conn_error(c, cls, (int)r);
        tr__conn_finish_close(c, (int)r, true);
        break;
    }
    leave(x);
}

void tr__conn_eof(tr_conn *c)
{
    c->flags |= F_EOF;
    if ((c->flags & F_LINGER) || ((c->flags & F_CLOSING) && (c->flags & F_WR_SHUT))) {
        tr__conn_finish_close(c, c->close_reason, false);
        return;
    }
    update_reading(c);
    /* The peer is done sending: flush what we owe it, then close. */
    tr__conn_begin_close(c, 0);
}

/* ---- writing side ---- */

static void set_writing(tr_conn *c, bool on)
{
    if (c->nw == NULL) {
        return;
    }
    if (on && !(c->flags & F_WRITING)) {
        ev_io_start(c->nw->loop, &c->wio);
        c->flags |= F_WRITING;
        if (c->cfg->write_timeout_ms) {
            rearm(c);
        }
    } else if (!on && (c->flags & F_WRITING)) {
        ev_io_stop(c->nw->loop, &c->wio);
        c->flags &= ~F_WRITING;
    }
}

static void check_low_watermark(tr_conn *c)
{
    if (!(c->flags & F_UNWRITABLE) || tr__load64(&c->queued) > c->cfg->low_wm) {
        return;
    }
    c->flags &= ~F_UNWRITABLE;
    if (has_handler_actor(c)) {
        post_event(c, TR_MSG_CONN_WRITABLE, 0);
    } else if (c->cfg->handler->on_writable != NULL) {
        c->cfg->handler->on_writable(c, true, c->cfg->user);
    }
    update_reading(c);
}

static void enter_linger(tr_conn *c)
{
    /* An embedded connection has no clock to bound a linger: close now. */
    if ((c->flags & F_EOF) || c->nw == NULL) {
        tr__conn_finish_close(c, c->close_reason, false);
        return;
    }
    c->flags |= F_LINGER;
    c->linger_until = now_of(c) + c->cfg->linger_ms / 1000.0;
    update_reading(c);
    rearm(c);
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
    ctx x = enter(c);
    while (c->out.bytes > 0) {
        struct iovec iov[MAX_IOV];
        int n = tr__outq_iov(&c->out, iov, MAX_IOV);
        size_t want = 0;
        for (int i = 0; i < n; i++) {
            want += iov[i].iov_len;
        }
        ssize_t r = c->cfg->tp->writev(c, iov, n);
        if (r > 0) {
            tr__outq_consume(&c->out, (size_t)r);
            unreserve(c, (size_t)r);
            c->cs.bytes_out += (size_t)r;
            TR__STAT_ADD(c->st, bytes_out, (uint64_t)r);
            c->last_progress = c->last_io = now_of(c);
            if (c->cfg->observer != NULL && c->cfg->observer->on_write != NULL) {
                c->cfg->observer->on_write(c, (size_t)r, c->cfg->user);
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
            break;
        }
        tr_error_class cls = (r == -ECONNRESET || r == -EPIPE) ? TR_ERR_PEER_RESET : TR_ERR_WRITE;
        conn_error(c, cls, (int)r);
        tr__conn_finish_close(c, (int)r, true);
        leave(x);
        return;
    }
    check_low_watermark(c);
    set_writing(c, c->out.bytes > 0);
    if (c->out.bytes == 0 && !(c->flags & F_CLOSED)) {
        if ((c->flags & (F_CLOSING | F_SHUT_REQ)) && !(c->flags & F_WR_SHUT)) {
            c->cfg->tp->shutdown_wr(c);
            c->flags |= F_WR_SHUT;
        }
        if ((c->flags & F_CLOSING) && !(c->flags & F_LINGER)) {
            enter_linger(c);
        }
    }
    leave(x);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    tr_conn *c = (tr_conn *)((char *)w - offsetof(tr_conn, wio));
    if (!(c->flags & F_CONNECTED)) {
        /* A client's connect finished: the dialer decides. */
        if (c->cfg->connect_done != NULL) {
            ctx x = enter(c);
            c->cfg->connect_done(c);
            leave(x);
        }
        return;
    }
    tr__conn_flush(c);
}

/* Reserves n bytes of the send queue for a frame. */
static int reserve(tr_conn *c, size_t n)
{
    if (tr__load32(&c->closing)) {
        return TR_ECLOSED;
    }
    size_t limit = c->cfg->queue_limit;
    uint64_t q = tr__faa64(&c->queued, n) + n;
    if (q <= limit) {
        return 0;
    }
    if (c->cfg->overflow == TR_OVERFLOW_DROP_OLDEST && q <= 2 * (uint64_t)limit) {
        return 0; /* the owner drops the oldest unsent bytes to make room */
    }
    unreserve(c, n);
    /* Foreign senders count here too: atomic increments only. */
    __atomic_fetch_add(&c->cs.sends_refused, 1, __ATOMIC_RELAXED);
    if (c->st != NULL) {
        __atomic_fetch_add(&c->st->s.sends_refused, 1, __ATOMIC_RELAXED);
    }
    return TR_EBUFFULL;
}

static int encode(tr_conn *c, size_t len, unsigned char *hdr, size_t *hl, unsigned char *trl,
                  size_t *tl)
{
    if (len > c->cfg->max_frame) {
        return TR_EMSGSIZE;
    }
    *hl = *tl = 0;
    const tr_codec *codec = c->cfg->codec;
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
        c->last_progress = now_of(c); /* the write clock starts now */
    }
    if (c->cfg->overflow == TR_OVERFLOW_DROP_OLDEST) {
        uint64_t q = tr__load64(&c->queued);
        if (q > c->cfg->queue_limit) {
            size_t inflight = (size_t)(q - c->out.bytes);
            size_t keep = c->cfg->queue_limit > inflight ? c->cfg->queue_limit - inflight : 0;
            size_t dropped = tr__outq_drop_oldest(&c->out, keep);
            unreserve(c, dropped);
        }
    }
    if (!(c->flags & F_UNWRITABLE) && tr__load64(&c->queued) > c->cfg->high_wm) {
        c->flags |= F_UNWRITABLE;
        if (has_handler_actor(c)) {
            post_event(c, TR_MSG_CONN_UNWRITABLE, 0);
        } else if (c->cfg->handler->on_writable != NULL) {
            c->cfg->handler->on_writable(c, false, c->cfg->user);
        }
        update_reading(c);
    }
    mark_dirty(c);
}

static void overflow_exit(tr_conn *c)
{
    if (c->flags & (F_CLOSING | F_CLOSED)) {
        return; /* already on its way out: one overflow, one error */
    }
    if (c->cfg->overflow == TR_OVERFLOW_EXIT &&
        conn_error(c, TR_ERR_SEND_OVERFLOW, TR_EBUFFULL) == TR_DISCONNECT) {
        tr__conn_begin_close(c, TR_EBUFFULL);
    }
}

static int write_owned(tr_conn *c, const void *data, size_t len, tr_buf *b, bool reserved,
                       size_t reserved_n)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl, tl;
    if (c->flags & (F_SHUT_REQ | F_WR_SHUT)) {
        /* The write side is shut or about to be: a byte queued now would
         * meet EPIPE and take the still-reading connection down. */
        if (reserved) {
            unreserve(c, reserved_n);
        }
        tr_buf_release(b);
        return TR_ECLOSED;
    }
    int rc = encode(c, len, hdr, &hl, trl, &tl);
    size_t n = hl + len + tl;
    if (rc == 0 && !reserved) {
        rc = reserve(c, n);
        if (rc == TR_EBUFFULL) {
            overflow_exit(c);
        }
    } else if (rc == 0 && reserved_n != n) {
        rc = TR_EINVAL;
    }
    if (rc < 0) {
        if (reserved) {
            unreserve(c, reserved_n);
        }
        tr_buf_release(b);
        return rc;
    }
    rc = b != NULL ? tr__outq_append_buf(&c->out, hdr, hl, b, trl, tl)
                   : tr__outq_append(&c->out, hdr, hl, data, len, trl, tl);
    if (rc < 0) {
        unreserve(c, n);
        return rc;
    }
    after_append(c, n);
    return 0;
}

int tr_conn_write(tr_conn *c, const void *data, size_t len)
{
    if (c->flags & F_CLOSED) {
        return TR_ECLOSED;
    }
    return write_owned(c, data, len, NULL, false, 0);
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
    return write_owned(c, tr_buf_data(b), tr_buf_len(b), b, false, 0);
}

/* ---- closing ---- */

void tr__conn_begin_close(tr_conn *c, int reason)
{
    if (c->flags & (F_CLOSING | F_CLOSED)) {
        return;
    }
    c->flags |= F_CLOSING;
    c->close_reason = reason;
    c->flags &= ~F_HPAUSE;
    keep_tail(c, NULL, 0);
    update_reading(c);
    rearm(c);
    mark_dirty(c);
}

void tr__conn_drain(tr_conn *c)
{
    if (c->flags & (F_DRAINING | F_CLOSING | F_CLOSED)) {
        return;
    }
    c->flags |= F_DRAINING;
    if (!(c->flags & F_CONNECTED)) {
        tr__conn_finish_close(c, 0, true); /* a client between dials */
        return;
    }
    if (has_handler_actor(c)) {
        /* The handler actor sends its goodbye, then tr_conn_close_id; the
         * server's deadline covers one that never does. */
        tr_msg *m = tr_msg_new(TR_MSG_CONN_SHUTDOWN, NULL, 0);
        if (m != NULL) {
            m->ref = c->id.bits;
            if (tr_send(c->cfg->handler_actor, m) == 0) {
                return;
            }
        }
    } else if (c->cfg->handler->on_shutdown != NULL) {
        c->cfg->handler->on_shutdown(c, c->cfg->user);
    }
    tr__conn_begin_close(c, 0);
}

static void exit_actor(tr_conn *c)
{
    tr_msg *m = tr_msg_new(TR_MSG__KILL, NULL, 0);
    if (m == NULL) {
        return;
    }
    m->flags = TR_MSGF_SYSTEM;
    m->reason = TR_EXIT_NORMAL;
    tr__send(tr_self(c->actor), m, true);
}

void tr__conn_finish_close(tr_conn *c, int reason, bool abort)
{
    if (c->flags & F_CLOSED) {
        return;
    }
    ctx x = enter(c);
    c->flags |= F_CLOSED | F_CLOSING;
    c->close_reason = reason;
    tr__store32(&c->closing, 1);
    if (c->nw != NULL) {
        ev_io_stop(c->nw->loop, &c->rio);
        ev_io_stop(c->nw->loop, &c->wio);
        ev_timer_stop(c->nw->loop, &c->tmo);
        tr__netw_unmark(c->nw, c);
        c->flags &= ~(F_READING | F_WRITING);
    }
    c->cfg->tp->close(c, abort);
    keep_tail(c, NULL, 0);
    /* Give back only what the queue held: sends still in the mailbox keep
     * their reservations until handled (a client may reopen meanwhile). */
    unreserve(c, c->out.bytes);
    tr__outq_clear(&c->out);
    if (c->list != NULL) {
        if (c->list_prev != NULL) {
            c->list_prev->list_next = c->list_next;
        } else {
            c->list->head = c->list_next;
        }
        if (c->list_next != NULL) {
            c->list_next->list_prev = c->list_prev;
        }
        c->list->n--;
        c->list = NULL;
    }
    if (c->flags & F_OPEN) {
        if (has_handler_actor(c)) {
            post_event(c, TR_MSG_CONN_CLOSED, reason);
        } else if (c->cfg->handler->on_close != NULL) {
            c->cfg->handler->on_close(c, reason, c->cfg->user);
        }
        if (c->cfg->observer != NULL && c->cfg->observer->on_close != NULL) {
            c->cfg->observer->on_close(c, reason, c->cfg->user);
        }
    }
    TR__STAT_ADD(c->st, closed, 1);
    tr_log(TR_LOG_DEBUG, "event=conn_close conn=%llu reason=%d abort=%d",
           (unsigned long long)c->id.bits, reason, abort);
    bool keep = false;
    if (c->cfg->on_gone != NULL) {
        c->cfg->on_gone(c);
        keep = !(c->flags & F_CLOSED); /* a client may have reopened it */
    }
    if (!keep && c->actor != NULL) {
        exit_actor(c);
    }
    leave(x);
}

int tr_conn_close(tr_conn *c)
{
    if (c->flags & F_CLOSED) {
        return TR_ECLOSED;
    }
    c->flags |= F_USER_CLOSE;
    if (!(c->flags & F_CONNECTED)) {
        /* A client still dialling or between dials: nothing to flush, and
         * no connect may complete later. */
        tr__conn_finish_close(c, 0, true);
        return 0;
    }
    tr__conn_begin_close(c, 0);
    return 0;
}

int tr_conn_abort(tr_conn *c)
{
    if (c->flags & F_CLOSED) {
        return TR_ECLOSED;
    }
    c->flags |= F_ABORT_REQ | F_CLOSING | F_USER_CLOSE;
    tr__store32(&c->closing, 1);
    mark_dirty(c);
    return 0;
}

int tr_conn_shutdown_write(tr_conn *c)
{
    if (c->flags & (F_CLOSED | F_CLOSING)) {
        return TR_ECLOSED;
    }
    c->flags |= F_SHUT_REQ;
    tr__store32(&c->closing, 1); /* sends from now on are refused */
    mark_dirty(c);
    return 0;
}

/* ---- timer ---- */

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    tr_conn *c = (tr_conn *)((char *)w - offsetof(tr_conn, tmo));
    ctx x = enter(c);
    ev_tstamp now = ev_now(loop);
    if ((c->flags & F_LINGER) && now >= c->linger_until) {
        tr__conn_finish_close(c, c->close_reason, false);
        leave(x);
        return;
    }
    if ((c->flags & F_CLOSING) && !(c->flags & F_LINGER) && c->out.bytes > 0 &&
        now - c->last_progress >= c->cfg->linger_ms / 1000.0) {
        /* A graceful close whose flush made no progress for linger_ms: the
         * peer does not read, so the queue would never drain. Abort. */
        tr__conn_finish_close(c, c->close_reason ? c->close_reason : TR_ETIMEDOUT, true);
        leave(x);
        return;
    }
    if ((c->flags & F_HPAUSE) && now >= c->retry_at) {
        c->flags &= ~F_HPAUSE;
        tr__conn_input(c, NULL, 0);
    }
    if (c->cfg->idle_timeout_ms && (c->flags & F_CONNECTED) &&
        !(c->flags & (F_CLOSING | F_CLOSED)) &&
        now - c->last_io >= c->cfg->idle_timeout_ms / 1000.0) {
        TR__STAT_ADD(c->st, idle_timeouts, 1);
        if (conn_error(c, TR_ERR_IDLE_TIMEOUT, TR_ETIMEDOUT) == TR_CONTINUE) {
            c->last_io = now;
        } else {
            tr__conn_begin_close(c, TR_ETIMEDOUT);
        }
    }
    if (c->cfg->write_timeout_ms && c->out.bytes > 0 && !(c->flags & F_CLOSED) &&
        now - c->last_progress >= c->cfg->write_timeout_ms / 1000.0) {
        if (conn_error(c, TR_ERR_WRITE_TIMEOUT, TR_ETIMEDOUT) == TR_CONTINUE) {
            c->last_progress = now;
        } else {
            tr__conn_finish_close(c, TR_ETIMEDOUT, true);
        }
    }
    rearm(c);
    leave(x);
}

/* ---- setup and open ---- */

void tr__conn_setup(tr_conn *c, const tr__conn_cfg *cfg, tr_actor *actor, tr__netw *nw)
{
    c->actor = actor;
    c->nw = nw;
    c->fd = -1;
    if (actor != NULL) {
        c->id.bits = tr_self(actor).bits;
    }
    ev_init(&c->rio, on_readable);
    ev_init(&c->wio, on_writable);
    ev_init(&c->tmo, on_timer);
    /* Dropping the oldest frames needs frame-sized segments: a shared
     * block would drop the newest frame along with the old ones. */
    c->out.whole_frames = cfg->overflow == TR_OVERFLOW_DROP_OLDEST;
    /* Last, and published: a foreign sender (send_any) that sees cfg also
     * sees st and the rest set before it; before it, the actor has not
     * started (a client's id is handed out at once). */
    __atomic_store_n(&c->cfg, cfg, __ATOMIC_RELEASE);
}

void tr__conn_open(tr_conn *c)
{
    c->flags |= F_CONNECTED;
    if (c->nw != NULL) {
        ev_io_stop(c->nw->loop, &c->wio);
        ev_io_stop(c->nw->loop, &c->rio);
        c->flags &= ~(F_READING | F_WRITING);
        ev_io_set(&c->rio, c->fd, EV_READ);
        ev_io_set(&c->wio, c->fd, EV_WRITE);
    }
    c->last_io = c->last_progress = now_of(c);
    ctx x = enter(c);
    c->flags |= F_OPEN;
    int rc = 0;
    if (c->cfg->observer != NULL && c->cfg->observer->on_new != NULL) {
        c->cfg->observer->on_new(c, c->cfg->user);
    }
    if (has_handler_actor(c)) {
        post_event(c, TR_MSG_CONN_OPEN, 0);
    } else if (c->cfg->handler->on_open != NULL) {
        rc = c->cfg->handler->on_open(c, c->cfg->user);
    }
    if (rc < 0) {
        TR__STAT_ADD(c->st, refused, 1);
        tr__conn_begin_close(c, rc);
    }
    update_reading(c);
    rearm(c);
    if (c->out.bytes > 0) {
        mark_dirty(c);
    }
    leave(x);
}

/* ---- the actor ---- */

static int conn_init(tr_actor *self, void *arg)
{
    tr__conn_arg *ca = arg;
    tr_conn *c = tr__actor_extra(self);
    tr__netw *nw = tr__netw_get(tr__actor_worker(self));
    c->st = ca->st; /* before setup publishes cfg: send_any may read it */
    tr__conn_setup(c, ca->cfg, self, nw);
    c->fd = ca->fd;
    c->peer = ca->peer;
    c->peer_len = ca->peer_len;
    c->owner = ca->owner;
    c->st = ca->st;
    tr_actor_trap_shutdown(self, true);
    if (ca->list != NULL) {
        c->list = ca->list;
        c->list_prev = NULL;
        c->list_next = ca->list->head;
        if (ca->list->head != NULL) {
            ca->list->head->list_prev = c;
        }
        ca->list->head = c;
        ca->list->n++;
    }
    tr__conn_arg a = *ca;
    free(ca);
    if (nw == NULL) {
        tr__conn_finish_close(c, TR_ENOMEM, true);
        return 0;
    }
    if (a.dial != NULL) {
        a.dial(c);
        return 0;
    }
    if (a.force_flag != NULL && tr__load32((uint32_t *)a.force_flag)) {
        c->flags |= F_CONNECTED;
        tr__conn_finish_close(c, TR_ETIMEDOUT, true);
        return 0;
    }
    tr__conn_open(c);
    if (a.drain_flag != NULL && tr__load32((uint32_t *)a.drain_flag)) {
        ctx x = enter(c);
        tr__conn_drain(c);
        leave(x);
    }
    return 0;
}

static void conn_receive(tr_actor *self, tr_msg *m)
{
    tr_conn *c = tr__actor_extra(self);
    switch (m->type) {
    case TR__MSG_CONN_SEND:
        if (c->flags & F_CLOSED) {
            if (m->reason > 0) {
                unreserve(c, (size_t)m->reason);
            }
            break;
        }
        if (m->buf != NULL) {
            write_owned(c, NULL, m->len, tr_buf_retain(m->buf), m->reason >= 0, (size_t)m->reason);
        } else {
            write_owned(c, tr_msg_data(m), m->len, NULL, m->reason >= 0, (size_t)m->reason);
        }
        break;
    case TR__MSG_CONN_CLOSE:
        tr_conn_close(c);
        break;
    case TR__MSG_CONN_ABORT:
        tr_conn_abort(c);
        break;
    case TR__MSG_CONN_OVERFLOW:
        if (!(c->flags & F_CLOSED)) {
            overflow_exit(c);
        }
        break;
    case TR_MSG_SHUTDOWN:
        tr__conn_drain(c);
        break;
    default:
        break;
    }
}

static void conn_terminate(tr_actor *self, int reason)
{
    tr_conn *c = tr__actor_extra(self);
    if (!(c->flags & F_CLOSED)) {
        /* Forced: a shutdown deadline, or the runtime stopping. */
        TR__STAT_ADD(c->st, forced_closes, 1);
        tr__conn_finish_close(c, reason < 0 ? reason : TR_ETIMEDOUT, true);
    }
    if (c->nw != NULL) {
        ev_timer_stop(c->nw->loop, &c->tmo);
        ev_io_stop(c->nw->loop, &c->wio);
    }
    if (c->cfg->on_free != NULL) {
        c->cfg->on_free(c);
    }
}

void tr__conn_watch_connect(tr_conn *c, int fd)
{
    c->fd = fd;
    ev_io_set(&c->wio, fd, EV_WRITE);
    ev_io_start(c->nw->loop, &c->wio);
}

void tr__conn_unwatch_connect(tr_conn *c)
{
    ev_io_stop(c->nw->loop, &c->wio);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

void tr__conn_reset(tr_conn *c)
{
    c->flags = 0;
    c->close_reason = 0;
    memset(&c->cst, 0, sizeof(c->cst));
    /* queued keeps the reservations of sends still in the mailbox. */
    tr__store32(&c->closing, 0);
}

bool tr__conn_was_opened(const tr_conn *c)
{
    return (c->flags & F_OPEN) != 0;
}

bool tr__conn_is_draining(const tr_conn *c)
{
    return (c->flags & F_DRAINING) != 0;
}

bool tr__conn_closed_by_user(const tr_conn *c)
{
    return (c->flags & F_USER_CLOSE) != 0;
}

static const tr_behavior conn_behavior = {
    .name = "conn", .init = conn_init, .receive = conn_receive, .terminate = conn_terminate};

int tr__conn_spawn(tr_runtime *rt, int worker, const tr__conn_arg *arg, tr_conn_id *out)
{
    tr__conn_arg *copy = malloc(sizeof(*copy));
    if (copy == NULL) {
        return TR_ENOMEM;
    }
    *copy = *arg;
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.worker = worker;
    tr__spawn_ex ex = {.supervised = false, .extra_size = sizeof(tr_conn)};
    tr_actor_id id;
    int rc = tr__spawn(rt, &conn_behavior, copy, &opts, &ex, &id);
    if (rc < 0) {
        free(copy);
        return rc;
    }
    out->bits = id.bits;
    return 0;
}

/* ---- any-thread API ---- */

static tr_conn *pin(tr_conn_id id, tr__slot **slot, tr_actor **a)
{
    tr_actor_id aid = {id.bits};
    *a = tr__actor_pin(aid, slot);
    if (*a == NULL) {
        return NULL;
    }
    return tr__actor_extra(*a);
}

static int send_any(tr_conn_id id, const void *data, size_t len, tr_buf *b)
{
    tr__slot *slot;
    tr_actor *a;
    tr_conn *c = pin(id, &slot, &a);
    if (c == NULL) {
        tr_buf_release(b);
        return TR_ECLOSED;
    }
    int rc;
    if (tr__current_actor() == a && !(c->flags & F_CLOSED)) {
        /* The connection's own handler: no message needed. */
        rc = write_owned(c, data, len, b, false, 0);
        tr__actor_unpin(slot, a);
        return rc;
    }
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 0, tl = 0;
    /* NULL until the actor's init ran (a client's id is handed out at
     * once): nothing to size the frame with yet, so the connection reserves
     * the room itself when it takes the message (reason -1). */
    const tr__conn_cfg *cfg = __atomic_load_n(&c->cfg, __ATOMIC_ACQUIRE);
    rc = cfg != NULL ? encode(c, len, hdr, &hl, trl, &tl) : 0;
    size_t n = cfg != NULL ? hl + len + tl : 0;
    if (rc == 0 && cfg != NULL) {
        rc = reserve(c, n);
        if (rc == TR_EBUFFULL && c->cfg->overflow == TR_OVERFLOW_EXIT) {
            tr_msg *om = tr_msg_new(TR__MSG_CONN_OVERFLOW, NULL, 0);
            if (om != NULL) {
                tr__send(tr_self(a), om, false);
            }
        }
    }
    if (rc < 0) {
        tr_buf_release(b);
        tr__actor_unpin(slot, a);
        return rc;
    }
    tr_msg *m = b != NULL ? tr_msg_new_buf(TR__MSG_CONN_SEND, b)
                          : tr_msg_new(TR__MSG_CONN_SEND, data, len);
    if (m == NULL) {
        unreserve(c, n);
        tr__actor_unpin(slot, a);
        return TR_ENOMEM;
    }
    m->reason = cfg != NULL ? (int64_t)n : -1;
    rc = tr__send(tr_self(a), m, false);
    if (rc < 0 && n > 0) {
        unreserve(c, n);
    }
    tr__actor_unpin(slot, a);
    return rc;
}

int tr_conn_send(tr_conn_id id, const void *data, size_t len)
{
    if (data == NULL && len > 0) {
        return TR_EINVAL;
    }
    return send_any(id, data, len, NULL);
}

int tr_conn_send_buf(tr_conn_id id, tr_buf *b)
{
    if (b == NULL) {
        return TR_EINVAL;
    }
    return send_any(id, tr_buf_data(b), tr_buf_len(b), b);
}

int tr_conn_send_wait(tr_conn_id id, const void *data, size_t len, uint32_t timeout_ms)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int rc = tr_conn_send(id, data, len);
        if (rc != TR_EBUFFULL) {
            return rc;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        /* In ns first: a negative nsec difference divided on its own
         * rounds towards zero and would end the wait up to 1 ms early. */
        int64_t ns = (int64_t)(now.tv_sec - start.tv_sec) * 1000000000 +
                     (int64_t)(now.tv_nsec - start.tv_nsec);
        uint64_t ms = (uint64_t)(ns / 1000000);
        if (ms >= timeout_ms) {
            return TR_ETIMEDOUT;
        }
        /* The queue drains at network speed; poll it at a modest rate. */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static int post_ctl(tr_conn_id id, uint32_t type)
{
    tr_msg *m = tr_msg_new(type, NULL, 0);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    tr_actor_id aid = {id.bits};
    return tr__send(aid, m, false);
}

int tr_conn_close_id(tr_conn_id id)
{
    return post_ctl(id, TR__MSG_CONN_CLOSE);
}

int tr_conn_abort_id(tr_conn_id id)
{
    return post_ctl(id, TR__MSG_CONN_ABORT);
}

bool tr_conn_id_is_closed(tr_conn_id id)
{
    tr__slot *slot;
    tr_actor *a;
    tr_conn *c = pin(id, &slot, &a);
    if (c == NULL) {
        return true;
    }
    bool closed = tr__load32(&c->closing) != 0;
    tr__actor_unpin(slot, a);
    return closed;
}

/* ---- accessors ---- */

bool tr_conn_is_closed(const tr_conn *c)
{
    return (c->flags & (F_CLOSING | F_CLOSED)) != 0;
}

tr_conn_id tr_conn_get_id(const tr_conn *c)
{
    return c->id;
}

void *tr_conn_user(const tr_conn *c)
{
    return c->user;
}

void tr_conn_set_user(tr_conn *c, void *user)
{
    c->user = user;
}

void tr_conn_stats_get(const tr_conn *c, tr_conn_stats *out)
{
    out->bytes_in = c->cs.bytes_in;
    out->bytes_out = c->cs.bytes_out;
    out->frames_in = c->cs.frames_in;
    out->frames_out = c->cs.frames_out;
    out->sends_refused = __atomic_load_n(&c->cs.sends_refused, __ATOMIC_RELAXED);
    out->queued_bytes = tr__load64((uint64_t *)&c->queued);
}

int tr_conn_peer(const tr_conn *c, char *buf, size_t len)
{
    return tr__addr_format((const struct sockaddr *)&c->peer, buf, len);
}

int tr_conn_local(const tr_conn *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (c->fd < 0 || getsockname(c->fd, (struct sockaddr *)&ss, &sl) < 0) {
        ss.ss_family = AF_UNSPEC;
    }
    return tr__addr_format((const struct sockaddr *)&ss, buf, len);
}

/* ---- TCP transport and socket options ---- */

static ssize_t tcp_read(tr_conn *c, void *buf, size_t len)
{
    ssize_t r = read(c->fd, buf, len);
    return r < 0 ? -errno : r;
}

static ssize_t tcp_writev(tr_conn *c, const struct iovec *iov, int n)
{
    /* sendmsg, not writev: a peer that reset must be an EPIPE return, not
     * a SIGPIPE that kills the application. */
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = (struct iovec *)iov;
    mh.msg_iovlen = (size_t)n;
    ssize_t r = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    return r < 0 ? -errno : r;
}

static int tcp_shutdown_wr(tr_conn *c)
{
    return shutdown(c->fd, SHUT_WR) < 0 ? -errno : 0;
}

static void tcp_close(tr_conn *c, bool abort)
{
    if (c->fd < 0) {
        return;
    }
    if (abort) {
        /* Discard unsent data and reset, rather than linger in the kernel. */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    c->fd = -1;
}

const tr__transport tr__tcp_transport = {
    .read = tcp_read, .writev = tcp_writev, .shutdown_wr = tcp_shutdown_wr, .close = tcp_close};

void tr__sock_tune(int fd, const tr__conn_cfg *cfg, int keepalive_idle_s)
{
    int one = 1;
    if (cfg->nodelay) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (cfg->keepalive) {
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (keepalive_idle_s > 0) {
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_idle_s, sizeof(keepalive_idle_s));
        }
    }
}

int tr__conn_cfg_check(const tr__conn_cfg *cfg)
{
    if (cfg->codec == NULL || cfg->codec->ops == NULL || cfg->codec->ops->decode == NULL) {
        return TR_ENOCODEC;
    }
    if (cfg->handler == NULL && tr_actor_id_is_none(cfg->handler_actor)) {
        return TR_ENOHANDLER;
    }
    if (cfg->handler != NULL && cfg->handler->on_frame == NULL &&
        tr_actor_id_is_none(cfg->handler_actor)) {
        return TR_ENOHANDLER;
    }
    if (cfg->max_frame == 0 || cfg->queue_limit == 0 || cfg->low_wm > cfg->high_wm ||
        cfg->high_wm > cfg->queue_limit) {
        return TR_EINVAL;
    }
    for (int i = 0; i < TR_ERR__COUNT; i++) {
        if (cfg->policy[i] != TR_DISCONNECT && cfg->policy[i] != TR_CONTINUE) {
            return TR_EINVAL;
        }
    }
    return 0;
}
