/* The connection API for any thread: sends through the connection's
 * mailbox after reserving queue space under a pin, and control messages. */
#include "conn_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/atomic.h"
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
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 0, tl = 0;
    /* NULL until the actor's init ran (a client's id is handed out at
     * once): nothing to size the frame with yet, so the connection reserves
     * the room itself when it takes the message (reason -1). */
    const tr__conn_cfg *cfg = tr__load_acq_ptr((void **)&c->cfg);
    rc = cfg != NULL ? tr__conn_encode(c, len, hdr, &hl, trl, &tl) : 0;
    size_t n = cfg != NULL ? hl + len + tl : 0;
    if (rc == 0 && cfg != NULL) {
        rc = tr__conn_reserve(c, n);
        if (rc == TR_EBUFFULL && cfg->overflow == TR_OVERFLOW_EXIT) {
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
    tr_msg *m =
        b != NULL ? tr_msg_new_buf(TR__MSG_CONN_SEND, b) : tr_msg_new(TR__MSG_CONN_SEND, data, len);
    if (m == NULL) {
        tr__conn_unreserve(c, n);
        tr__actor_unpin(slot, a);
        return TR_ENOMEM;
    }
    m->reason = cfg != NULL ? (int64_t)n : -1;
    rc = tr__send(tr_self(a), m, false);
    if (rc < 0 && n > 0) {
        tr__conn_unreserve(c, n);
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
    bool closed = tr__load_acq_32(&c->closing) != 0;
    tr__actor_unpin(slot, a);
    return closed;
}
