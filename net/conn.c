#include "conn_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/actor.h"
#include "../runtime/atomic.h"
#include "../runtime/msg_impl.h"
#include "../runtime/util.h"
#include "../runtime/worker.h"
#include "addr.h"
#include "netw.h"
#include "tls.h"
#include "troupe/log.h"

static const char *class_names[TR_ERR__COUNT] = {
    "peer_reset", "read",         "write",         "frame_too_large", "malformed",
    "handler",    "idle_timeout", "write_timeout", "send_overflow",   "tls",
    "budget",     "frame_timeout"};

const char *tr_error_class_name(tr_error_class cls)
{
    if ((unsigned)cls >= TR_ERR__COUNT) {
        return "unknown";
    }
    return class_names[cls];
}

/* ---- small helpers ---- */

ev_tstamp tr__conn_now(tr_conn *c)
{
    if (c->nw != NULL) {
        return ev_now(c->nw->loop);
    }
    return (ev_tstamp)tr__now_ns() * 1e-9;
}

void tr__conn_mark_dirty(tr_conn *c)
{
    if (c->nw != NULL) {
        tr__netw_mark_dirty(c->nw, c);
    } else {
        c->flags |= F_DIRTY;
    }
}

void tr__conn_unreserve(tr_conn *c, size_t n)
{
    tr__faa_sc_64(&c->queued, (uint64_t)0 - n);
    tr__conn_room(c); /* every shrink may let a tr_conn_send_wait go on */
}

tr__conn_ctx tr__conn_enter(tr_conn *c)
{
    tr__conn_ctx x = {tr__current_worker(), tr__current_actor()};
    if (c->actor != NULL) {
        tr__set_current(x.w, c->actor);
    }
    return x;
}

void tr__conn_leave(tr__conn_ctx x)
{
    tr__set_current(x.w, x.prev);
}

bool tr__conn_has_handler_actor(const tr_conn *c)
{
    return !tr_actor_id_is_none(c->cfg->handler_actor);
}

void tr__conn_post_event(tr_conn *c, uint32_t type, int reason)
{
    tr_msg *m = tr_msg_new(type, NULL, 0);
    if (m == NULL) {
        return;
    }
    m->ref = c->id.bits;
    m->reason = reason;
    /* Past the handler's capacity if need be: a lost CLOSED or WRITABLE
     * would tr__conn_leave the handler wrong about the connection for good. */
    tr__send_over(c->cfg->handler_actor, m);
}

/* ---- reading side ---- */

bool tr__conn_wants_input(const tr_conn *c)
{
    uint32_t f = c->flags;
    return (f & F_CONNECTED) && !(f & (F_CLOSED | F_EOF | F_RD_SHUT)) &&
           ((f & F_CLOSING) || !(f & (F_UNWRITABLE | F_HPAUSE | F_BPAUSE)));
}

void tr__conn_update_reading(tr_conn *c)
{
    if (c->nw == NULL) {
        return;
    }
    uint32_t f = c->flags;
    /* A transport write waiting for readability (TLS) watches too. */
    bool want = tr__conn_wants_input(c) || ((f & F_WR_WANTS_RD) && !(f & F_CLOSED));
    if (want && !(f & F_READING)) {
        ev_io_start(c->nw->loop, &c->rio);
        c->flags |= F_READING;
        if (c->tp->pending != NULL && c->tp->pending(c) > 0) {
            /* Bytes the transport already read (TLS) make no event of
             * their own: the loop runs the reader as if they did. */
            ev_feed_event(c->nw->loop, &c->rio, EV_READ);
        }
    } else if (!want && (f & F_READING)) {
        ev_io_stop(c->nw->loop, &c->rio);
        c->flags &= ~F_READING;
    }
}

/* Counts the error, asks the policy, and says what to do. */
tr_error_action tr__conn_error(tr_conn *c, tr_error_class cls, int err)
{
    tr_error_action act = c->cfg->conn.policy[cls];
    if (c->cfg->conn.handler != NULL && c->cfg->conn.handler->on_error != NULL) {
        act = c->cfg->conn.handler->on_error(c, cls, err, c->cfg->conn.user);
    }
    if (cls == TR_ERR_PEER_RESET || cls == TR_ERR_READ || cls == TR_ERR_WRITE || cls == TR_ERR_TLS) {
        act = TR_DISCONNECT; /* the socket is unusable */
    }
    TR__STAT_ADD(c->st, errors[cls], 1);
    if (act == TR_CONTINUE) {
        TR__STAT_ADD(c->st, continues, 1);
    } else {
        TR__STAT_ADD(c->st, disconnects, 1);
    }
    if (c->cfg->observer != NULL && c->cfg->observer->on_error != NULL) {
        c->cfg->observer->on_error(c, cls, err, act, c->cfg->conn.user);
    }
    tr_log(TR_LOG_DEBUG, "event=tr__conn_error conn=%llu class=%s err=%d action=%s",
           (unsigned long long)c->id.bits, tr_error_class_name(cls), err,
           act == TR_CONTINUE ? "continue" : "disconnect");
    return act;
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
    tr__budget_unpause(c);
    tr__conn_keep_tail(c, NULL, 0);
    tr__conn_update_reading(c);
    tr__conn_rearm(c);
    tr__conn_mark_dirty(c);
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
    if (tr__conn_has_handler_actor(c)) {
        /* The handler actor sends its goodbye, then tr_conn_close_id; the
         * server's deadline covers one that never does. */
        tr_msg *m = tr_msg_new(TR_MSG_CONN_SHUTDOWN, NULL, 0);
        if (m != NULL) {
            m->ref = c->id.bits;
            if (tr_send(c->cfg->handler_actor, m) == 0) {
                return;
            }
        }
    } else if (c->cfg->conn.handler->on_shutdown != NULL) {
        c->cfg->conn.handler->on_shutdown(c, c->cfg->conn.user);
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
    tr__conn_ctx x = tr__conn_enter(c);
    c->flags |= F_CLOSED | F_CLOSING;
    c->close_reason = reason;
    tr__store_rel_32(&c->closing, 1);
    if (c->nw != NULL) {
        ev_io_stop(c->nw->loop, &c->rio);
        ev_io_stop(c->nw->loop, &c->wio);
        ev_timer_stop(c->nw->loop, &c->tmo);
        tr__netw_unmark(c->nw, c);
        c->flags &= ~(F_READING | F_WRITING);
    }
    c->tp->close(c, abort);
    tr__budget_unpause(c);
    tr__conn_keep_tail(c, NULL, 0);
    /* Give back only what the queue held: sends still in the mailbox keep
     * their reservations until handled (a client may reopen meanwhile). */
    tr__conn_unreserve(c, c->out.bytes); /* waiters also see the close */
    tr__budget_out(c, -(int64_t)c->out.bytes);
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
        if (tr__conn_has_handler_actor(c)) {
            tr__conn_post_event(c, TR_MSG_CONN_CLOSED, reason);
        } else if (c->cfg->conn.handler->on_close != NULL) {
            c->cfg->conn.handler->on_close(c, reason, c->cfg->conn.user);
        }
        if (c->cfg->observer != NULL && c->cfg->observer->on_close != NULL) {
            c->cfg->observer->on_close(c, reason, c->cfg->conn.user);
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
    tr__conn_leave(x);
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
    tr__store_rel_32(&c->closing, 1);
    tr__conn_mark_dirty(c);
    return 0;
}

int tr_conn_shutdown_write(tr_conn *c)
{
    if (c->flags & (F_CLOSED | F_CLOSING)) {
        return TR_ECLOSED;
    }
    c->flags |= F_SHUT_REQ;
    tr__fas_sc_32(&c->closing, 1); /* sends from now on are refused */
    tr__conn_room(c);              /* and waiters learn it */
    tr__conn_mark_dirty(c);
    return 0;
}

int tr_conn_shutdown_read(tr_conn *c)
{
    if (c->flags & (F_CLOSED | F_CLOSING)) {
        return TR_ECLOSED;
    }
    c->flags |= F_RD_SHUT;
    c->flags &= ~F_HPAUSE;
    tr__conn_keep_tail(c, NULL, 0); /* a partial frame will never complete */
    if (c->tp->shutdown_rd != NULL) {
        c->tp->shutdown_rd(c);
    }
    tr__conn_update_reading(c);
    return 0;
}

/* ---- the transport's handshake (TLS) ---- */

void tr__conn_handshake_failed(tr_conn *c, int err)
{
    tr__conn_error(c, TR_ERR_TLS, err);
    c->flags &= ~F_HANDSHAKE;
    if (c->cfg->handshake_done == NULL) {
        tr__conn_finish_close(c, err, true);
        return;
    }
    /* A client redials or gives up: it gets a bare, closed connection. */
    ev_io_stop(c->nw->loop, &c->rio);
    ev_io_stop(c->nw->loop, &c->wio);
    ev_timer_stop(c->nw->loop, &c->tmo);
    c->tp->close(c, true);
    c->cfg->handshake_done(c, err);
}

void tr__conn_handshake(tr_conn *c)
{
    int r = c->tp->handshake(c);
    if (r == 0) {
        c->flags &= ~F_HANDSHAKE;
        TR__STAT_ADD(c->st, tls_handshakes, 1);
        if (c->cfg->handshake_done != NULL) {
            c->cfg->handshake_done(c, 0);
        }
        tr__conn_open(c);
        return;
    }
    if (r != -EAGAIN) {
        tr__conn_handshake_failed(c, r);
        return;
    }
    /* Watch only the direction the handshake waits for. */
    bool wr = c->tp->want != NULL && c->tp->want(c) == TR__WANT_WRITE;
    ev_io *on = wr ? &c->wio : &c->rio, *off = wr ? &c->rio : &c->wio;
    ev_io_stop(c->nw->loop, off);
    ev_io_start(c->nw->loop, on);
}

static void bind_watchers(tr_conn *c)
{
    ev_io_stop(c->nw->loop, &c->wio);
    ev_io_stop(c->nw->loop, &c->rio);
    c->flags &= ~(F_READING | F_WRITING);
    ev_io_set(&c->rio, c->fd, EV_READ);
    ev_io_set(&c->wio, c->fd, EV_WRITE);
}

void tr__conn_start(tr_conn *c)
{
    if (c->cfg->conn.tls == NULL || c->nw == NULL) {
        tr__conn_open(c);
        return;
    }
    tr__conn_ctx x = tr__conn_enter(c);
    int rc = tr__tls_attach(c, c->cfg->conn.tls, c->cfg->server_name);
    if (rc < 0) {
        tr__conn_handshake_failed(c, rc);
        tr__conn_leave(x);
        return;
    }
    bind_watchers(c);
    c->flags |= F_HANDSHAKE;
    c->last_io = tr__conn_now(c); /* the handshake's clock starts */
    tr__conn_rearm(c);
    tr__conn_handshake(c);
    tr__conn_leave(x);
}

/* ---- setup and open ---- */

void tr__conn_setup(tr_conn *c, const tr__conn_cfg *cfg, tr_actor *actor, tr__netw *nw)
{
    c->actor = actor;
    c->nw = nw;
    c->fd = -1;
    if (c->tp == NULL) {
        c->tp = cfg->tp; /* the default; a transport may have been set already */
    }
    if (actor != NULL) {
        c->id.bits = tr_self(actor).bits;
    }
    ev_init(&c->rio, tr__conn_on_readable);
    ev_init(&c->wio, tr__conn_on_writable);
    ev_init(&c->tmo, tr__conn_on_timer);
    /* Dropping the oldest frames needs frame-sized segments: a shared
     * block would drop the newest frame along with the old ones. */
    c->out.whole_frames = cfg->conn.send_overflow == TR_OVERFLOW_DROP_OLDEST;
    /* Last, and published: a foreign sender (send_any) that sees cfg also
     * sees st and the rest set before it; before it, the actor has not
     * started (a client's id is handed out at once). */
    tr__store_rel_ptr((void **)&c->cfg, (void *)cfg);
}

void tr__conn_open(tr_conn *c)
{
    c->flags |= F_CONNECTED;
    if (c->nw != NULL) {
        bind_watchers(c);
    }
    c->last_io = c->last_progress = tr__conn_now(c);
    tr__conn_ctx x = tr__conn_enter(c);
    c->flags |= F_OPEN;
    int rc = 0;
    if (c->cfg->observer != NULL && c->cfg->observer->on_new != NULL) {
        c->cfg->observer->on_new(c, c->cfg->conn.user);
    }
    if (tr__conn_has_handler_actor(c)) {
        tr__conn_post_event(c, TR_MSG_CONN_OPEN, 0);
    } else if (c->cfg->conn.handler->on_open != NULL) {
        rc = c->cfg->conn.handler->on_open(c, c->cfg->conn.user);
    }
    if (rc < 0) {
        TR__STAT_ADD(c->st, refused, 1);
        tr__conn_begin_close(c, rc);
    }
    tr__conn_update_reading(c);
    tr__conn_rearm(c);
    if (c->out.bytes > 0) {
        tr__conn_mark_dirty(c);
    }
    tr__conn_leave(x);
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
    if (a.force_flag != NULL && tr__load_acq_32((uint32_t *)a.force_flag)) {
        c->flags |= F_CONNECTED;
        tr__conn_finish_close(c, TR_ETIMEDOUT, true);
        return 0;
    }
    tr__conn_start(c);
    if (a.drain_flag != NULL && tr__load_acq_32((uint32_t *)a.drain_flag)) {
        tr__conn_ctx x = tr__conn_enter(c);
        tr__conn_drain(c);
        tr__conn_leave(x);
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
                tr__conn_unreserve(c, (size_t)m->reason);
            }
            break;
        }
        if (m->buf != NULL) {
            tr__conn_write_owned(c, NULL, m->len, tr_buf_retain(m->buf), m->reason >= 0,
                                 (size_t)m->reason);
        } else {
            tr__conn_write_owned(c, tr_msg_data(m), m->len, NULL, m->reason >= 0,
                                 (size_t)m->reason);
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
            tr__conn_overflow_exit(c);
        }
        break;
    case TR_MSG_SHUTDOWN:
        tr__conn_drain(c);
        break;
    case TR_MSG__ROOM:
        /* The handler actor has room again (or is gone: the retry then
         * reports it through the error policy). */
        if ((c->flags & F_HPAUSE) && !(c->flags & F_CLOSED)) {
            c->flags &= ~F_HPAUSE;
            tr__conn_input(c, NULL, 0);
            tr__conn_update_reading(c);
            tr__conn_rearm(c);
        }
        break;
    default:
        /* An application message to the connection as an actor. */
        if (m->type >= TR_MSG_USER && !(c->flags & F_CLOSED) && c->cfg->conn.handler != NULL &&
            c->cfg->conn.handler->on_message != NULL) {
            tr__conn_ctx x = tr__conn_enter(c);
            c->cfg->conn.handler->on_message(c, m, c->cfg->conn.user);
            tr__conn_leave(x);
        }
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

void tr__conn_reset(tr_conn *c)
{
    c->flags = 0;
    c->close_reason = 0;
    memset(&c->cst, 0, sizeof(c->cst));
    /* queued keeps the reservations of sends still in the mailbox. */
    tr__store_rel_32(&c->closing, 0);
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

/* The actor record is being freed: no pin holder is left to read the
 * settings (conn_init took over the spawner's reference). */
static void conn_reclaim(void *extra)
{
    tr_conn *c = extra;
    if (c->cfg != NULL) {
        tr__conn_cfg_release(c->cfg);
    }
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
    tr__spawn_ex ex = {
        .supervised = false, .extra_size = sizeof(tr_conn), .on_reclaim = conn_reclaim};
    /* The connection's own reference to the settings: conn_init hands it
     * to the connection, which drops it at reclaim. */
    tr__conn_cfg_retain(arg->cfg);
    tr_actor_id id;
    int rc = tr__spawn(rt, &conn_behavior, copy, &opts, &ex, &id);
    if (rc < 0) {
        tr__conn_cfg_release(arg->cfg);
        free(copy);
        return rc;
    }
    out->bits = id.bits;
    return 0;
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
    out->sends_refused = tr__load_rlx_64(&c->cs.sends_refused);
    out->queued_bytes = tr__load_acq_64((uint64_t *)&c->queued);
}

int tr_conn_peer(const tr_conn *c, char *buf, size_t len)
{
    return tr__addr_format((const struct sockaddr *)&c->peer, c->peer_len, buf, len);
}

int tr_conn_local(const tr_conn *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (c->fd < 0 || getsockname(c->fd, (struct sockaddr *)&ss, &sl) < 0) {
        ss.ss_family = AF_UNSPEC;
    }
    return tr__addr_format((const struct sockaddr *)&ss, sl, buf, len);
}
