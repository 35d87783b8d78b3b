/* The in-memory connection: a tr_conn with no actor, no worker state and a
 * transport over two byte buffers. conn*.c skip watchers and timers when
 * c->nw is NULL, and mark output "dirty" with a flag we flush here. */
#include "troupe/embedded.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn_impl.h"

struct tr_embedded {
    tr__conn_cfg ccfg;
    tr_conn conn;
    /* The transport's state: where written bytes go. */
    unsigned char *out;
    size_t out_len, out_cap;
    bool wr_shut;
    bool closed;
    int reason;
};

static tr_embedded *owner_of(const tr_conn *c)
{
    return c->tp_state;
}

static ssize_t emb_read(tr_conn *c, void *buf, size_t len)
{
    (void)c;
    (void)buf;
    (void)len;
    return -EAGAIN; /* input arrives through tr_embedded_feed */
}

static ssize_t emb_writev(tr_conn *c, const struct iovec *iov, int n)
{
    tr_embedded *e = owner_of(c);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        total += iov[i].iov_len;
    }
    if (e->out_cap - e->out_len < total) {
        size_t cap = e->out_cap ? e->out_cap : 256;
        while (cap - e->out_len < total) {
            cap *= 2;
        }
        unsigned char *nb = realloc(e->out, cap);
        if (nb == NULL) {
            return -ENOMEM;
        }
        e->out = nb;
        e->out_cap = cap;
    }
    for (int i = 0; i < n; i++) {
        memcpy(e->out + e->out_len, iov[i].iov_base, iov[i].iov_len);
        e->out_len += iov[i].iov_len;
    }
    return (ssize_t)total;
}

static int emb_shutdown_wr(tr_conn *c)
{
    owner_of(c)->wr_shut = true;
    return 0;
}

static void emb_close(tr_conn *c, bool abort)
{
    (void)abort;
    owner_of(c)->wr_shut = true;
}

/* No pending bytes and no wants: input arrives through tr_embedded_feed. */
static const tr__transport emb_transport = {
    .read = emb_read, .writev = emb_writev, .shutdown_wr = emb_shutdown_wr, .close = emb_close};

static void emb_gone(tr_conn *c)
{
    tr_embedded *e = owner_of(c);
    e->closed = true;
    e->reason = c->close_reason;
}

tr_embedded *tr_embedded_new(const tr_server_config *cfg, int *err)
{
    if (cfg == NULL) {
        *err = TR_EINVAL;
        return NULL;
    }
    tr_embedded *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        *err = TR_ENOMEM;
        return NULL;
    }
    tr__conn_cfg *cc = &e->ccfg;
    /* Timeouts and socket options are copied but never act here: an
     * embedded connection has no loop (conn_timer.c does nothing when nw is NULL). */
    tr__conn_cfg_copy(cc, &cfg->conn);
    cc->on_gone = emb_gone;
    cc->tp = &emb_transport;
    int rc = tr__conn_cfg_check(cc);
    if (rc == 0 && cfg->conn.handler == NULL) {
        rc = TR_ENOHANDLER;
    }
    if (rc < 0) {
        free(e);
        *err = rc;
        return NULL;
    }
    e->conn.tp = &emb_transport;
    e->conn.tp_state = e;
    tr__conn_setup(&e->conn, cc, NULL, NULL);
    tr__conn_open(&e->conn);
    tr_embedded_flush(e);
    *err = 0;
    return e;
}

void tr_embedded_flush(tr_embedded *e)
{
    /* With no worker flush list, F_DIRTY is all there is. Flushing may mark
     * again (a close that shuts the write side), so loop until it stays
     * clear. */
    while (e->conn.flags & F_DIRTY) {
        e->conn.flags &= ~F_DIRTY;
        tr__conn_flush(&e->conn);
    }
}

int tr_embedded_feed(tr_embedded *e, const void *data, size_t len)
{
    if (e->closed) {
        return TR_ECLOSED;
    }
    e->conn.cs.bytes_in += len;
    if (!tr_conn_is_closed(&e->conn)) {
        tr__conn_input(&e->conn, data, len);
    }
    tr_embedded_flush(e);
    return e->closed ? TR_ECLOSED : 0;
}

int tr_embedded_feed_eof(tr_embedded *e)
{
    if (e->closed) {
        return TR_ECLOSED;
    }
    tr__conn_eof(&e->conn);
    tr_embedded_flush(e);
    return 0;
}

size_t tr_embedded_read(tr_embedded *e, void *buf, size_t cap)
{
    size_t n = e->out_len < cap ? e->out_len : cap;
    if (n > 0) {
        memcpy(buf, e->out, n);
        memmove(e->out, e->out + n, e->out_len - n);
        e->out_len -= n;
    }
    return n;
}

size_t tr_embedded_pending(const tr_embedded *e)
{
    return e->out_len;
}

bool tr_embedded_is_closed(const tr_embedded *e)
{
    return e->closed;
}

int tr_embedded_close_reason(const tr_embedded *e)
{
    return e->reason;
}

bool tr_embedded_write_shut(const tr_embedded *e)
{
    return e->wr_shut;
}

tr_conn *tr_embedded_conn(tr_embedded *e)
{
    return &e->conn;
}

void tr_embedded_free(tr_embedded *e)
{
    if (e == NULL) {
        return;
    }
    if (!e->closed) {
        tr__conn_finish_close(&e->conn, TR_ECLOSED, true);
    }
    free(e->out);
    free(e);
}
