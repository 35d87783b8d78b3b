/* troupe-load echo: each connection keeps `pipeline` messages in flight;
 * every reply is checked byte by byte and timed from send to its last byte.
 * With --tls every connection completes its handshake before the run. */

#include "load.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct econn {
    int fd;
    struct ssl_st *ssl; /* NULL: plain */
    uint64_t id;
    uint64_t tx_seq; /* next message to send */
    struct rx rx;    /* next reply expected; in flight = tx_seq - rx.seq */
    uint64_t *sent;  /* send time of message seq at sent[seq % pipeline] */
    char *txq;       /* bytes the kernel did not take yet, or NULL */
    size_t txq_off;
    size_t txq_len;
    bool want_out; /* EPOLLOUT enabled */
    bool dead;
};

struct eworker {
    pthread_t thread;
    struct econn *conns;
    int n;
    int epfd;
    char *scratch; /* pipeline * wire bytes */
    unsigned char rbuf[RBUF];
    uint64_t t_start, t_end; /* measurement window */
    struct hist hist;
    uint64_t done;       /* replies completed inside the window */
    uint64_t done_total; /* all replies, warm-up and drain included */
    uint64_t errors;
    uint64_t lost;    /* messages never answered */
    uint64_t runq_ns; /* time this thread was runnable but not running */
};

static void econn_kill(struct eworker *w, struct econn *c)
{
    if (!c->dead) {
        c->dead = true;
        w->errors++;
        tls_close_notify(c->ssl);
        c->ssl = NULL;
        close(c->fd);
        c->fd = -1;
    }
}

static int econn_set_out(struct eworker *w, struct econn *c, bool on)
{
    if (c->want_out == on) {
        return 0;
    }
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    c->want_out = on;
    return epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends m new messages stamped with `now`: one write when nothing is
 * queued, and only the rest is kept. */
static void econn_send(struct eworker *w, struct econn *c, int m, uint64_t now)
{
    size_t wire = frame_wire();
    size_t cap = (size_t)opt.pipeline * wire;
    bool queued = c->txq != NULL && c->txq_len > c->txq_off;
    char *dst = w->scratch;
    if (queued) {
        if (c->txq_len + (size_t)m * wire > cap) {
            memmove(c->txq, c->txq + c->txq_off, c->txq_len - c->txq_off);
            c->txq_len -= c->txq_off;
            c->txq_off = 0;
        }
        dst = c->txq + c->txq_len;
    }
    size_t n = 0;
    for (int k = 0; k < m; k++) {
        c->sent[c->tx_seq % (uint64_t)opt.pipeline] = now;
        n += frame_build(dst + n, c->id, c->tx_seq);
        c->tx_seq++;
    }
    if (queued) {
        c->txq_len += n;
        return; /* EPOLLOUT is on and will drain it in order */
    }
    ssize_t wr = io_write(c->ssl, c->fd, dst, n);
    if (wr < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            report_error("write conn %" PRIu64 ": %s", c->id, strerror(errno));
            econn_kill(w, c);
            return;
        }
        wr = 0;
    }
    if ((size_t)wr == n) {
        return;
    }
    if (c->txq == NULL && (c->txq = malloc(cap)) == NULL) {
        econn_kill(w, c);
        return;
    }
    memcpy(c->txq, dst + wr, n - (size_t)wr);
    c->txq_off = 0;
    c->txq_len = n - (size_t)wr;
    if (econn_set_out(w, c, true) < 0) {
        econn_kill(w, c);
    }
}

static void econn_flush(struct eworker *w, struct econn *c)
{
    ssize_t wr = io_write(c->ssl, c->fd, c->txq + c->txq_off, c->txq_len - c->txq_off);
    if (wr < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            report_error("write conn %" PRIu64 ": %s", c->id, strerror(errno));
            econn_kill(w, c);
        }
        return;
    }
    c->txq_off += (size_t)wr;
    if (c->txq_off == c->txq_len) {
        c->txq_off = c->txq_len = 0;
        if (econn_set_out(w, c, false) < 0) {
            econn_kill(w, c);
        }
    }
}

/* Reads once (again only if the buffer filled), verifies, and sends as many
 * new messages as replies completed, unless the run is over. */
static void econn_read(struct eworker *w, struct econn *c, bool sending)
{
    size_t total = 0;
    for (;;) {
        ssize_t n = io_read(c->ssl, c->fd, w->rbuf, sizeof(w->rbuf));
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            }
            report_error("conn %" PRIu64 ": %s with %" PRIu64 " messages in flight", c->id,
                         n == 0 ? "closed by the server" : strerror(errno), c->tx_seq - c->rx.seq);
            econn_kill(w, c);
            return;
        }
        uint64_t now = now_ns();
        int completed = 0;
        size_t pos = 0;
        while (pos < (size_t)n) {
            if (c->rx.seq == c->tx_seq) {
                report_error("conn %" PRIu64 ": %zd unexpected bytes (nothing in flight)", c->id,
                             n - (ssize_t)pos);
                econn_kill(w, c);
                return;
            }
            uint64_t seq = c->rx.seq;
            ssize_t used = rx_feed(&c->rx, c->id, w->rbuf + pos, (size_t)n - pos);
            if (used < 0) {
                econn_kill(w, c);
                return;
            }
            pos += (size_t)used;
            if (c->rx.seq != seq) {
                completed++;
                w->done_total++;
                if (now >= w->t_start && now < w->t_end) {
                    w->done++;
                    hist_add(&w->hist, now - c->sent[seq % (uint64_t)opt.pipeline]);
                }
            }
        }
        if (completed > 0 && sending) {
            econn_send(w, c, completed, now);
            if (c->dead) {
                return;
            }
        }
        total += (size_t)n;
        /* TLS returns a record per read: go on while it holds more. */
        if (((size_t)n < sizeof(w->rbuf) && !io_pending(c->ssl)) || total >= READ_BUDGET) {
            return;
        }
    }
}

static uint64_t in_flight(const struct eworker *w)
{
    uint64_t sum = 0;
    for (int i = 0; i < w->n; i++) {
        if (!w->conns[i].dead) {
            sum += w->conns[i].tx_seq - w->conns[i].rx.seq;
        }
    }
    return sum;
}

static void *echo_worker(void *arg)
{
    struct eworker *w = arg;
    uint64_t runq0 = runq_wait_ns();
    uint64_t now = now_ns();
    for (int i = 0; i < w->n; i++) {
        struct econn *c = &w->conns[i];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            econn_kill(w, c);
            continue;
        }
        econn_send(w, c, opt.pipeline, now);
    }
    struct epoll_event evs[MAX_EVENTS];
    uint64_t drain_deadline = 0;
    for (;;) {
        now = now_ns();
        bool sending = now < w->t_end && !interrupted;
        int timeout_ms = 100;
        if (sending) {
            uint64_t left_ms = (w->t_end - now) / 1000000u + 1;
            timeout_ms = left_ms < 100 ? (int)left_ms : 100;
        } else {
            if (drain_deadline == 0) {
                drain_deadline = now + DRAIN_TIMEOUT_NS;
            }
            uint64_t left = in_flight(w);
            if (left == 0) {
                break;
            }
            if (now >= drain_deadline || interrupted) {
                w->lost = left;
                break;
            }
        }
        int m = epoll_wait(w->epfd, evs, MAX_EVENTS, timeout_ms);
        for (int k = 0; k < m; k++) {
            struct econn *c = evs[k].data.ptr;
            if (c->dead) {
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                econn_flush(w, c);
            }
            if (!c->dead && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                econn_read(w, c, sending);
            }
        }
    }
    w->runq_ns = runq_wait_ns() - runq0;
    return NULL;
}

int run_echo(void)
{
    if (ensure_fd_limit(opt.conns + 32, "echo") < 0) {
        return 2;
    }
    int *fds = calloc((size_t)opt.conns, sizeof(int));
    struct eworker *ws = calloc((size_t)opt.threads, sizeof(*ws));
    struct econn *conns = calloc((size_t)opt.conns, sizeof(*conns));
    struct ssl_st **ssls = calloc((size_t)opt.conns, sizeof(*ssls));
    uint64_t *sent = calloc((size_t)opt.conns * (size_t)opt.pipeline, sizeof(uint64_t));
    if (fds == NULL || ws == NULL || conns == NULL || sent == NULL || ssls == NULL) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    int connected = connect_many(fds, opt.conns, 0);
    if (opt.tls && connected > 0) {
        int done = tls_handshake_all(fds, ssls, opt.conns);
        if (done < connected) {
            fprintf(stderr, "troupe-load: %d of %d TLS handshakes failed\n", connected - done,
                    connected);
        }
        connected = done;
    }
    if (connected == 0) {
        return 1;
    }
    /* Connection i goes to worker i % threads; each worker's slice of
     * `conns` is contiguous. */
    int per[MAX_THREADS] = {0};
    for (int i = 0; i < opt.conns; i++) {
        if (fds[i] >= 0) {
            per[i % opt.threads]++;
        }
    }
    struct econn *slot = conns;
    for (int t = 0; t < opt.threads; t++) {
        ws[t].conns = slot;
        slot += per[t];
    }
    for (int i = 0; i < opt.conns; i++) {
        if (fds[i] < 0) {
            continue;
        }
        struct eworker *w = &ws[i % opt.threads];
        struct econn *c = &w->conns[w->n++];
        c->fd = fds[i];
        c->ssl = ssls[i];
        c->id = (uint64_t)i;
        c->sent = sent + (size_t)i * (size_t)opt.pipeline;
    }
    uint64_t t0 = now_ns();
    uint64_t t_start = t0 + (uint64_t)(opt.warmup_s * 1e9);
    uint64_t t_end = t_start + (uint64_t)(opt.duration_s * 1e9);
    double cpu0 = cpu_seconds();
    for (int t = 0; t < opt.threads; t++) {
        ws[t].epfd = epoll_create1(EPOLL_CLOEXEC);
        ws[t].scratch = malloc((size_t)opt.pipeline * frame_wire());
        ws[t].t_start = t_start;
        ws[t].t_end = t_end;
        if (ws[t].epfd < 0 || ws[t].scratch == NULL ||
            pthread_create(&ws[t].thread, NULL, echo_worker, &ws[t]) != 0) {
            fprintf(stderr, "troupe-load: cannot start worker %d\n", t);
            return 1;
        }
    }
    struct hist *h = calloc(1, sizeof(*h));
    uint64_t done = 0, done_total = 0, errors = 0, lost = 0, runq = 0;
    for (int t = 0; t < opt.threads; t++) {
        pthread_join(ws[t].thread, NULL);
        hist_merge(h, &ws[t].hist);
        done += ws[t].done;
        done_total += ws[t].done_total;
        errors += ws[t].errors;
        lost += ws[t].lost;
        runq += ws[t].runq_ns;
        close(ws[t].epfd);
        free(ws[t].scratch);
    }
    double wall = (double)(now_ns() - t0) / 1e9;
    double cpu = cpu_seconds() - cpu0;
    for (int i = 0; i < opt.conns; i++) {
        if (!conns[i].dead && conns[i].fd > 0) {
            tls_close_notify(conns[i].ssl);
            close(conns[i].fd);
        }
        free(conns[i].txq);
    }
    errors += (uint64_t)(opt.conns - connected) + lost;
    if (lost > 0) {
        fprintf(stderr, "troupe-load: %" PRIu64 " messages never answered (lost bytes)\n", lost);
    }
    double window = opt.duration_s;
    if (interrupted) {
        double got = (double)(now_ns() - t_start) / 1e9;
        window = got > 0 && got < window ? got : window;
    }
    double rps = (double)done / window;
    double mbps = rps * (double)frame_wire() / 1e6;
    printf("echo: %d %sconns, %zu-byte messages (%zu on the wire, codec %s), pipeline %d, "
           "%d thread(s), %.1f s\n",
           connected, opt.tls ? "TLS 1.3 " : "", opt.size, frame_wire(), codec_names[opt.codec],
           opt.pipeline, opt.threads, opt.duration_s);
    printf("  requests  %" PRIu64 " in the window (%" PRIu64 " in all), %.0f req/s, %.2f MB/s "
           "echoed\n",
           done, done_total, rps, mbps);
    printf("  latency   p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n",
           hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.99), hist_quantile_us(h, 0.999),
           (double)h->max / 1000.0);
    printf("  loader    %.0f%% CPU, %.1f%% of the time waiting for a CPU; errors %" PRIu64 "\n",
           100.0 * cpu / wall, 100.0 * (double)runq / 1e9 / wall, errors);
    printf(
        "RESULT mode=echo tls=%d conns=%d size=%zu pipeline=%d codec=%s threads=%d duration_s=%.1f "
        "requests=%" PRIu64 " total_requests=%" PRIu64 " req_per_s=%.0f mb_per_s=%.2f "
        "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f loader_cpu_pct=%.0f "
        "loader_cpu_s=%.2f loader_wait_pct=%.1f errors=%" PRIu64 "\n",
        opt.tls, connected, opt.size, opt.pipeline, codec_names[opt.codec], opt.threads, window,
        done, done_total, rps, mbps, hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.99),
        hist_quantile_us(h, 0.999), (double)h->max / 1000.0, 100.0 * cpu / wall, cpu_seconds(),
        100.0 * (double)runq / 1e9 / wall, errors);
    free(h);
    free(ssls);
    free(sent);
    free(conns);
    free(ws);
    free(fds);
    return errors == 0 && !interrupted ? 0 : 1;
}
