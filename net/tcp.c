/* The TCP transport (a backend is a whole file) and socket options. */
#include "tcp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/atomic.h"
#include "conn_impl.h"
#include "netw.h"
#include "troupe/log.h"

static ssize_t tcp_read(tr_conn *c, void *buf, size_t len)
{
    ssize_t r = read(c->fd, buf, len);
    return r < 0 ? -errno : r;
}

/* Pieces up to GATHER_PIECE bytes are copied together, up to GATHER_BUF
 * bytes a call. A broadcast leaves each line in a send queue as a
 * reference (the line, then its codec's trailer): thirty lines would be
 * sixty small iovecs, and the kernel's cost grows with each one it walks
 * and copies from; gathered, it copies one. Larger pieces go as they are. */
#define GATHER_PIECE 512
#define GATHER_BUF 16384

/* Writes iov[0..n) into out[], small pieces copied into buf. Returns the
 * count of out[] (at most n). */
static int gather(const struct iovec *iov, int n, struct iovec *out, unsigned char *buf)
{
    int m = 0;
    size_t used = 0;
    bool in_buf = false; /* out[m - 1] ends at buf + used */
    for (int i = 0; i < n; i++) {
        size_t len = iov[i].iov_len;
        if (len > GATHER_PIECE || used + len > GATHER_BUF) {
            out[m++] = iov[i];
            in_buf = false;
            continue;
        }
        memcpy(buf + used, iov[i].iov_base, len);
        if (in_buf) {
            out[m - 1].iov_len += len;
        } else {
            out[m++] = (struct iovec){buf + used, len};
            in_buf = true;
        }
        used += len;
    }
    return m;
}

static ssize_t tcp_writev(tr_conn *c, const struct iovec *iov, int n)
{
    static _Thread_local unsigned char buf[GATHER_BUF];
    struct iovec out[MAX_IOV];
    if (n > 1 && n <= MAX_IOV) {
        n = gather(iov, n, out, buf);
        iov = out;
    }
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

static int tcp_shutdown_rd(tr_conn *c)
{
    return shutdown(c->fd, SHUT_RD) < 0 ? -errno : 0;
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
    .read = tcp_read, .writev = tcp_writev, .shutdown_wr = tcp_shutdown_wr, .shutdown_rd = tcp_shutdown_rd, .close = tcp_close};

static void set_int(int fd, int level, int opt, uint32_t v)
{
    if (v > 0) {
        int i = v > 32767 ? 32767 : (int)v; /* the kernel's limit for these */
        setsockopt(fd, level, opt, &i, sizeof(i));
    }
}

void tr__sock_tune(int fd, const tr__conn_cfg *cfg)
{
    int one = 1;
    if (cfg->conn.nodelay) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (cfg->conn.keepalive) {
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, cfg->conn.keepalive_idle_s);
        set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, cfg->conn.keepalive_interval_s);
        set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, cfg->conn.keepalive_count);
    }
}
