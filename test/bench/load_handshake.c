/* troupe-load handshake: full TLS 1.3 handshakes as fast as -c concurrent
 * slots allow. Each slot connects, completes a handshake (no resumption),
 * does one checked round trip of one message, sends close_notify, closes,
 * and starts again. One thread: the loader is pinned to one CPU. */

#include "load.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum hstate { HS_CONNECTING, HS_HANDSHAKE, HS_SEND, HS_REPLY };

struct hslot {
    int fd;
    struct ssl_st *ssl;
    enum hstate state;
    uint32_t events; /* what epoll watches; 0: not added yet */
    uint64_t id;
    uint64_t started;
    struct rx rx;
};

struct hrun {
    int ep;
    int n;
    struct hslot *slots;
    struct run_clock clk;
    uint64_t next_id;
    uint64_t ok;       /* complete cycles inside the window */
    uint64_t ok_total; /* warm-up included */
    uint64_t failures;
    struct hist hs_hist;    /* connect to handshake done */
    struct hist cycle_hist; /* connect to reply checked */
    unsigned char rbuf[4096];
    char *frame;
};

static void slot_watch(struct hrun *r, int s, uint32_t events)
{
    struct hslot *sl = &r->slots[s];
    if (sl->events == events) {
        return;
    }
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)s};
    epoll_ctl(r->ep, sl->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, sl->fd, &ev);
    sl->events = events;
}

static void slot_start(struct hrun *r, int s)
{
    struct hslot *sl = &r->slots[s];
    for (;;) {
        sl->id = r->next_id++;
        sl->started = now_ns();
        sl->rx = (struct rx){0};
        sl->ssl = NULL;
        sl->state = HS_CONNECTING;
        sl->events = 0;
        int fd = start_connect((unsigned)sl->id);
        if (fd >= 0) {
            sl->fd = fd;
            slot_watch(r, s, EPOLLOUT);
            return;
        }
        r->failures++;
        report_error("handshake: connect: %s", strerror(-fd));
        sl->fd = -1;
        if (sl->started >= r->clk.t_end || interrupted) {
            return;
        }
        usleep(1000); /* do not spin on a refusing server */
    }
}

/* Ends a slot's cycle (close_notify, then close) and starts the next. */
static void slot_finish(struct hrun *r, int s, bool ok)
{
    struct hslot *sl = &r->slots[s];
    uint64_t now = now_ns();
    if (ok) {
        r->ok_total++;
        if (run_clock_in_window(&r->clk, now)) {
            r->ok++;
            hist_add(&r->cycle_hist, now - sl->started);
        }
    } else {
        r->failures++;
    }
    tls_close_notify(sl->ssl); /* after a failure BoringSSL sends nothing */
    sl->ssl = NULL;
    close(sl->fd);
    sl->fd = -1;
    if (now < r->clk.t_end && !interrupted) {
        slot_start(r, s);
    }
}

/* Reads the reply; true when the cycle ended (either way). */
static bool slot_read_reply(struct hrun *r, int s)
{
    struct hslot *sl = &r->slots[s];
    for (;;) {
        ssize_t n = io_read(sl->ssl, sl->fd, r->rbuf, sizeof(r->rbuf));
        if (n < 0 && errno == EAGAIN) {
            return false;
        }
        if (n <= 0) {
            report_error("handshake: %s before the reply",
                         n == 0 ? "closed by the server" : strerror(errno));
            slot_finish(r, s, false);
            return true;
        }
        ssize_t used = rx_feed(&sl->rx, sl->id, r->rbuf, (size_t)n);
        if (used < 0 || used < n) {
            if (used >= 0) {
                report_error("handshake: conn %" PRIu64 ": extra bytes after the reply", sl->id);
            }
            slot_finish(r, s, false);
            return true;
        }
        if (sl->rx.seq == 1) {
            slot_finish(r, s, true);
            return true;
        }
    }
}

/* Moves a slot on as far as the sockets allow. */
static void slot_step(struct hrun *r, int s, uint32_t e)
{
    struct hslot *sl = &r->slots[s];
    if (sl->state == HS_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(sl->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (e & EPOLLERR)) {
            report_error("handshake: connect: %s", strerror(err ? err : EIO));
            slot_finish(r, s, false);
            return;
        }
        if ((sl->ssl = tls_client_new(sl->fd)) == NULL) {
            slot_finish(r, s, false);
            return;
        }
        sl->state = HS_HANDSHAKE;
    }
    if (sl->state == HS_HANDSHAKE) {
        uint32_t want = 0;
        int rc = tls_handshake_step(sl->ssl, &want);
        if (rc <= 0) {
            if (rc < 0) {
                slot_finish(r, s, false);
            } else {
                slot_watch(r, s, want);
            }
            return;
        }
        uint64_t now = now_ns();
        if (run_clock_in_window(&r->clk, now)) {
            hist_add(&r->hs_hist, now - sl->started);
        }
        sl->state = HS_SEND;
    }
    if (sl->state == HS_SEND) {
        size_t n = frame_build(r->frame, sl->id, 0);
        ssize_t wr = io_write(sl->ssl, sl->fd, r->frame, n);
        if (wr < 0 && errno == EAGAIN) {
            slot_watch(r, s, EPOLLOUT); /* retried with the same bytes */
            return;
        }
        if (wr != (ssize_t)n) {
            report_error("handshake: write: %s", wr < 0 ? strerror(errno) : "short");
            slot_finish(r, s, false);
            return;
        }
        sl->state = HS_REPLY;
        slot_watch(r, s, EPOLLIN);
        return; /* the reply cannot be there yet */
    }
    slot_read_reply(r, s);
}

int run_handshake(void)
{
    if (ensure_fd_limit(opt.conns + 32, "handshake") < 0) {
        return 2;
    }
    struct hrun *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->slots = calloc((size_t)opt.conns, sizeof(*r->slots))) == NULL ||
        (r->frame = malloc(frame_wire())) == NULL) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    r->n = opt.conns;
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    run_clock_start(&r->clk);
    for (int s = 0; s < r->n; s++) {
        slot_start(r, s);
    }
    struct epoll_event evs[MAX_EVENTS];
    for (uint64_t now = now_ns(); now < r->clk.t_end && !interrupted; now = now_ns()) {
        uint64_t left_ms = (r->clk.t_end - now) / 1000000u + 1;
        int m = epoll_wait(r->ep, evs, MAX_EVENTS, left_ms < 100 ? (int)left_ms : 100);
        for (int k = 0; k < m; k++) {
            int s = (int)evs[k].data.u32;
            if (r->slots[s].fd >= 0) {
                slot_step(r, s, evs[k].events);
            }
        }
    }
    uint64_t stalled = 0, end = now_ns();
    for (int s = 0; s < r->n; s++) {
        tls_close_notify(r->slots[s].ssl);
        stalled += (uint64_t)close_at_deadline(r->slots[s].fd, r->slots[s].started, end);
    }
    double cpu_pct, wait_pct;
    run_clock_stop(&r->clk, &cpu_pct, &wait_pct);
    uint64_t failures = r->failures + stalled;
    double window = opt.duration_s;
    double hps = (double)r->ok / window;
    printf("handshake: %d slots, %.1f s (+%.1f s warm-up): %" PRIu64 " full TLS 1.3 handshakes "
           "with one %s round trip (%" PRIu64 " in all), %.0f/s, %" PRIu64 " failures\n",
           r->n, window, opt.warmup_s, r->ok, codec_names[opt.codec], r->ok_total, hps, failures);
    printf("  handshake p50 %.1f us p99 %.1f us; connect+handshake+round trip+close p50 %.1f us "
           "p99 %.1f us; loader %.0f%% CPU, %.1f%% waiting for a CPU\n",
           hist_quantile_us(&r->hs_hist, 0.5), hist_quantile_us(&r->hs_hist, 0.99),
           hist_quantile_us(&r->cycle_hist, 0.5), hist_quantile_us(&r->cycle_hist, 0.99), cpu_pct,
           wait_pct);
    printf("RESULT mode=handshake conns=%d duration_s=%.1f handshakes=%" PRIu64
           " total_handshakes=%" PRIu64 " hs_per_s=%.0f hs_p50_us=%.1f hs_p99_us=%.1f "
           "p50_us=%.1f p99_us=%.1f loader_cpu_pct=%.0f loader_wait_pct=%.1f failures=%" PRIu64
           " errors=%" PRIu64 "\n",
           r->n, window, r->ok, r->ok_total, hps, hist_quantile_us(&r->hs_hist, 0.5),
           hist_quantile_us(&r->hs_hist, 0.99), hist_quantile_us(&r->cycle_hist, 0.5),
           hist_quantile_us(&r->cycle_hist, 0.99), cpu_pct, wait_pct, failures, failures);
    int rc = failures == 0 && r->ok > 0 && !interrupted ? 0 : 1;
    close(r->ep);
    free(r->frame);
    free(r->slots);
    free(r);
    return rc;
}
