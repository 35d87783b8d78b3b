/* troupe-load udp: -c sockets, each connected to the target (UDP, or a
 * Unix datagram socket) with `pipeline` datagrams in flight. A datagram is
 * SIZE bytes: its sequence number (8 bytes, little-endian), then pattern
 * bytes that depend on socket and sequence number; every reply is checked
 * whole. Datagrams may be dropped: one unanswered after --dgram-timeout-ms
 * is counted lost and replaced, and a reply that comes after that is
 * counted late. Lost and late datagrams are reported, not errors; a
 * mismatch, a reply to nothing sent, or a socket error is. One thread. */

#include "load.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define UDP_MAX_PIPELINE 64
#define TIMEOUT_SCAN_NS 5000000u /* look for lost datagrams every 5 ms */

struct uslot {
    uint64_t seq;
    uint64_t sent_ns;
    bool busy;
};

struct usock {
    int fd;
    uint64_t id;
    uint64_t tx_seq; /* next sequence number */
    int busy;        /* slots in flight */
    struct uslot slots[UDP_MAX_PIPELINE];
};

struct urun {
    struct usock *socks;
    int n;
    struct run_clock clk;
    size_t cap; /* receive buffer per datagram: room to see an oversized one */
    unsigned char *txbuf, *rxbuf;
    struct mmsghdr msgs[UDP_MAX_PIPELINE];
    struct iovec iov[UDP_MAX_PIPELINE];
    struct hist hist;
    uint64_t done, done_total, lost, late, errors, refused;
};

static void dgram_build(unsigned char *dst, uint64_t id, uint64_t seq)
{
    for (int i = 0; i < 8; i++) {
        dst[i] = (unsigned char)(seq >> (8 * i));
    }
    memcpy(dst + 8, pattern_at(id, seq), opt.size - 8);
}

static void sock_fail(struct urun *r, struct usock *u, const char *what, int err)
{
    report_error("udp socket %" PRIu64 ": %s: %s", u->id, what, strerror(err));
    r->errors++;
    close(u->fd);
    u->fd = -1;
}

/* Fills every free slot of u with a new datagram: one sendmmsg. A
 * datagram the kernel refuses (a full Unix receiver) is retried later. */
static void sock_refill(struct urun *r, struct usock *u, uint64_t now)
{
    int m = 0;
    int idx[UDP_MAX_PIPELINE];
    for (int k = 0; k < opt.pipeline && u->busy + m < opt.pipeline; k++) {
        if (u->slots[k].busy) {
            continue;
        }
        unsigned char *d = r->txbuf + (size_t)m * opt.size;
        dgram_build(d, u->id, u->tx_seq + (uint64_t)m);
        r->iov[m] = (struct iovec){.iov_base = d, .iov_len = opt.size};
        r->msgs[m] = (struct mmsghdr){.msg_hdr = {.msg_iov = &r->iov[m], .msg_iovlen = 1}};
        idx[m++] = k;
    }
    if (m == 0) {
        return;
    }
    int sent = sendmmsg(u->fd, r->msgs, (unsigned)m, MSG_DONTWAIT);
    if (sent < 0) {
        if (errno == EAGAIN || errno == ENOBUFS) {
            r->refused++;
            return;
        }
        sock_fail(r, u, "send", errno);
        return;
    }
    for (int i = 0; i < sent; i++) {
        u->slots[idx[i]] = (struct uslot){.seq = u->tx_seq++, .sent_ns = now, .busy = true};
    }
    u->busy += sent;
}

/* Checks one reply; returns false on a mismatch (reported). */
static bool sock_take(struct urun *r, struct usock *u, const unsigned char *d, size_t len,
                      uint64_t now)
{
    uint64_t seq = 0;
    for (int i = 0; len >= 8 && i < 8; i++) {
        seq |= (uint64_t)d[i] << (8 * i);
    }
    if (len != opt.size || seq >= u->tx_seq ||
        memcmp(d + 8, pattern_at(u->id, seq), opt.size - 8) != 0) {
        report_error("udp socket %" PRIu64 ": bad reply (%zu bytes, sequence %" PRIu64 ", %" PRIu64
                     " sent)",
                     u->id, len, seq, u->tx_seq);
        return false;
    }
    for (int k = 0; k < opt.pipeline; k++) {
        struct uslot *sl = &u->slots[k];
        if (sl->busy && sl->seq == seq) {
            sl->busy = false;
            u->busy--;
            r->done_total++;
            if (run_clock_in_window(&r->clk, now)) {
                r->done++;
                hist_add(&r->hist, now - sl->sent_ns);
            }
            return true;
        }
    }
    r->late++; /* answered after it was counted lost, or a duplicate */
    return true;
}

static void sock_readable(struct urun *r, struct usock *u, bool sending)
{
    for (int i = 0; i < opt.pipeline; i++) {
        r->iov[i] = (struct iovec){.iov_base = r->rxbuf + (size_t)i * r->cap, .iov_len = r->cap};
        r->msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &r->iov[i], .msg_iovlen = 1}};
    }
    int got = recvmmsg(u->fd, r->msgs, (unsigned)opt.pipeline, MSG_DONTWAIT, NULL);
    if (got < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            sock_fail(r, u, "receive", errno);
        }
        return;
    }
    uint64_t now = now_ns();
    for (int i = 0; i < got; i++) {
        if (!sock_take(r, u, r->iov[i].iov_base, r->msgs[i].msg_len, now)) {
            r->errors++;
        }
    }
    if (sending) {
        sock_refill(r, u, now);
    }
}

/* Counts datagrams unanswered past the timeout as lost and frees their
 * slots. Returns the datagrams still in flight. */
static uint64_t scan_timeouts(struct urun *r, uint64_t now, bool sending)
{
    uint64_t timeout = (uint64_t)(opt.dgram_timeout_ms * 1e6);
    uint64_t busy = 0;
    for (int i = 0; i < r->n; i++) {
        struct usock *u = &r->socks[i];
        if (u->fd < 0) {
            continue;
        }
        for (int k = 0; k < opt.pipeline; k++) {
            if (u->slots[k].busy && now - u->slots[k].sent_ns > timeout) {
                u->slots[k].busy = false;
                u->busy--;
                r->lost++;
            }
        }
        if (sending && u->busy < opt.pipeline) {
            sock_refill(r, u, now);
        }
        busy += (uint64_t)u->busy;
    }
    return busy;
}

int run_udp(void)
{
    if (opt.size < 8 || opt.pipeline > UDP_MAX_PIPELINE) {
        fprintf(stderr, "troupe-load: udp needs -s 8 or more and -p %d or less\n",
                UDP_MAX_PIPELINE);
        return 2;
    }
    if (ensure_fd_limit(opt.conns + 32, "udp") < 0) {
        return 2;
    }
    struct urun *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    r->n = opt.conns;
    r->cap = opt.size + 64;
    r->socks = calloc((size_t)r->n, sizeof(*r->socks));
    r->txbuf = malloc((size_t)opt.pipeline * opt.size);
    r->rxbuf = malloc((size_t)opt.pipeline * r->cap);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->socks == NULL || r->txbuf == NULL || r->rxbuf == NULL || ep < 0) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    int opened = 0;
    for (int i = 0; i < r->n; i++) {
        struct usock *u = &r->socks[i];
        u->id = (uint64_t)i;
        u->fd = target_socket(SOCK_DGRAM);
        int err = u->fd < 0 ? u->fd : target_connect(u->fd);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = u};
        if (err == 0 && epoll_ctl(ep, EPOLL_CTL_ADD, u->fd, &ev) < 0) {
            err = -errno;
        }
        if (err < 0) {
            report_error("udp socket %d: %s", i, strerror(-err));
            if (u->fd >= 0) {
                close(u->fd);
            }
            u->fd = -1;
            continue;
        }
        opened++;
    }
    run_clock_start(&r->clk);
    uint64_t t0 = r->clk.t0;
    for (int i = 0; i < r->n; i++) {
        if (r->socks[i].fd >= 0) {
            sock_refill(r, &r->socks[i], t0);
        }
    }
    struct epoll_event evs[MAX_EVENTS];
    uint64_t last_scan = t0;
    for (;;) {
        uint64_t now = now_ns();
        bool sending = now < r->clk.t_end && !interrupted;
        if (now - last_scan >= TIMEOUT_SCAN_NS || !sending) {
            last_scan = now;
            /* After the run, wait for the rest until each one's timeout. */
            if (scan_timeouts(r, now, sending) == 0 && !sending) {
                break;
            }
        }
        int m = epoll_wait(ep, evs, MAX_EVENTS, 5);
        for (int k = 0; k < m; k++) {
            struct usock *u = evs[k].data.ptr;
            if (u->fd >= 0) {
                sock_readable(r, u, sending);
            }
        }
    }
    double cpu_pct, wait_pct;
    run_clock_stop(&r->clk, &cpu_pct, &wait_pct);
    for (int i = 0; i < r->n; i++) {
        if (r->socks[i].fd >= 0) {
            close(r->socks[i].fd);
        }
    }
    close(ep);
    uint64_t errors = r->errors + (uint64_t)(r->n - opened);
    uint64_t sent = r->done_total + r->lost;
    double loss_pct = sent > 0 ? 100.0 * (double)r->lost / (double)sent : 0.0;
    double dps = (double)r->done / opt.duration_s;
    printf("udp: %d sockets, %zu-byte datagrams, pipeline %d, %.1f s: %" PRIu64
           " answered in the window (%" PRIu64 " in all), %.0f/s\n",
           opened, opt.size, opt.pipeline, opt.duration_s, r->done, r->done_total, dps);
    printf("  latency   p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n",
           hist_quantile_us(&r->hist, 0.50), hist_quantile_us(&r->hist, 0.99),
           hist_quantile_us(&r->hist, 0.999), (double)r->hist.max / 1000.0);
    printf("  lost %" PRIu64 " (%.3f%%, unanswered after %.0f ms), late %" PRIu64
           ", sends refused %" PRIu64 "; loader %.0f%% CPU, %.1f%% waiting; errors %" PRIu64 "\n",
           r->lost, loss_pct, opt.dgram_timeout_ms, r->late, r->refused, cpu_pct, wait_pct, errors);
    printf("RESULT mode=udp sockets=%d size=%zu pipeline=%d duration_s=%.1f datagrams=%" PRIu64
           " total_datagrams=%" PRIu64 " dgram_per_s=%.0f req_per_s=%.0f p50_us=%.1f "
           "p99_us=%.1f p999_us=%.1f lost=%" PRIu64 " loss_pct=%.3f late=%" PRIu64
           " refused=%" PRIu64 " loader_cpu_pct=%.0f loader_wait_pct=%.1f errors=%" PRIu64 "\n",
           opened, opt.size, opt.pipeline, opt.duration_s, r->done, r->done_total, dps, dps,
           hist_quantile_us(&r->hist, 0.50), hist_quantile_us(&r->hist, 0.99),
           hist_quantile_us(&r->hist, 0.999), r->lost, loss_pct, r->late, r->refused, cpu_pct,
           wait_pct, errors);
    free(r->txbuf);
    free(r->rxbuf);
    free(r->socks);
    free(r);
    return errors == 0 && !interrupted ? 0 : 1;
}
