/* The connection API for any thread: sends through the connection's
 * mailbox after reserving queue space under a pin, and control messages. */
#include "conn_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#include "../runtime/atomic.h"
#include "../runtime/msg_impl.h"
#include "../runtime/util.h"
#include "netw.h"
#include "troupe/log.h"

static tr_conn *pin(tr_conn_id id, tr__slot **slot, tr_actor **a)
{
    tr_actor_id aid = {id.bits};
    *a = tr__actor_pin(aid, slot);
    if (*a == NULL) {
        return NULL;
    }
    return tr__actor_extra(*a);
}

int tr__conn_reserve_frame(tr_conn *c, tr_actor *a, size_t len, int64_t *reason)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 0, tl = 0;
    /* NULL until the actor's init ran (a client's id is handed out at
     * once): nothing to size the frame with yet, so the connection reserves
     * the room itself when it takes the message (reason -1). */
    const tr__conn_cfg *cfg = tr__load_acq_ptr((void **)&c->cfg);
    if (cfg == NULL) {
        *reason = -1;
        return 0;
    }
    int rc = tr__conn_encode(c, len, hdr, &hl, trl, &tl);
    size_t n = hl + len + tl;
    if (rc == 0) {
        rc = tr__conn_reserve(c, n);
        if (rc == TR__EOUTBUDGET) {
            rc = TR_EBUFFULL;
        } else if (rc == TR_EBUFFULL && cfg->conn.send_overflow == TR_OVERFLOW_EXIT) {
            tr_msg *om = tr_msg_new(TR__MSG_CONN_OVERFLOW, NULL, 0);
            if (om != NULL) {
                tr__send(tr_self(a), om, false);
            }
        }
    }
    *reason = (int64_t)n;
    return rc;
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
        rc = tr__conn_write_owned(c, data, len, b, false, 0);
        tr__actor_unpin(slot, a);
        return rc;
    }
    int64_t reason;
    rc = tr__conn_reserve_frame(c, a, len, &reason);
    if (rc < 0) {
        tr_buf_release(b);
        tr__actor_unpin(slot, a);
        return rc;
    }
    tr_msg *m =
        b != NULL ? tr_msg_new_buf(TR__MSG_CONN_SEND, b) : tr_msg_new(TR__MSG_CONN_SEND, data, len);
    if (m == NULL) {
        tr__conn_unreserve_reason(c, reason);
        tr__actor_unpin(slot, a);
        return TR_ENOMEM;
    }
    m->reason = reason;
    rc = tr__send(tr_self(a), m, false);
    if (rc < 0) {
        tr__conn_unreserve_reason(c, reason);
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

/* Sleeps until *addr is no longer `seen` (or a spurious wake-up), at most
 * ns nanoseconds. */
static void futex_wait(uint32_t *addr, uint32_t seen, int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
}

void tr__conn_room(tr_conn *c)
{
    /* The caller just shrank `queued` or set `closing`, both with a locked
     * read-modify-write (a full barrier); a waiter registers (a full
     * barrier) before it tries to send. One of the two sees the other. */
    if (tr__load_sc_32(&c->room_waiters) != 0) {
        tr__faa_sc_32(&c->room_seq, 1);
        syscall(SYS_futex, &c->room_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
}

int tr_conn_send_wait(tr_conn_id id, const void *data, size_t len, uint32_t timeout_ms)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    if (data == NULL && len > 0) {
        return TR_EINVAL;
    }
    /* The pin keeps the connection's record (and the futex word in it)
     * alive while we sleep on it. */
    tr__slot *slot;
    tr_actor *a;
    tr_conn *c = pin(id, &slot, &a);
    if (c == NULL) {
        return TR_ECLOSED;
    }
    uint64_t deadline = tr__now_ns() + (uint64_t)timeout_ms * 1000000u;
    int rc;
    for (;;) {
        uint32_t seq = tr__load_acq_32(&c->room_seq);
        tr__faa_sc_32(&c->room_waiters, 1);
        rc = send_any(id, data, len, NULL);
        if (rc != TR_EBUFFULL) {
            tr__faa_sc_32(&c->room_waiters, UINT32_MAX);
            break;
        }
        uint64_t now = tr__now_ns();
        if (now >= deadline) {
            tr__faa_sc_32(&c->room_waiters, UINT32_MAX);
            rc = TR_ETIMEDOUT;
            break;
        }
        /* Told when the queue shrinks; the owner bumps room_seq only while
         * room_waiters says someone sleeps. */
        futex_wait(&c->room_seq, seq, (int64_t)(deadline - now));
        tr__faa_sc_32(&c->room_waiters, UINT32_MAX);
    }
    tr__actor_unpin(slot, a);
    return rc;
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
    bool closed = tr__load_acq_32(&c->closing) != 0;
    tr__actor_unpin(slot, a);
    return closed;
}
