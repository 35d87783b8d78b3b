/* troupe-load churn: connect, one checked round trip, close, and again, as
 * fast as possible from -c concurrent slots. */

#include "load.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct cslot {
    int fd;
    uint64_t id;
    uint64_t started;
    struct rx rx;
    bool connected;
};

struct cworker {
    pthread_t thread;
    int index;
    int n;
    struct cslot *slots;
    uint64_t t_end;
    struct hist hist;
    uint64_t ok;
    uint64_t failures;
    uint64_t stalled; /* unanswered for over 1 s at the deadline */
    uint64_t next_id;
    unsigned char rbuf[4096];
    char *frame;
};

static void churn_start(struct cworker *w, int ep, int s)
{
    struct cslot *sl = &w->slots[s];
    for (;;) {
        /* Unique across workers; sources rotate over all 254 addresses. */
        unsigned src = (unsigned)(w->next_id * (uint64_t)opt.threads + (uint64_t)w->index);
        sl->id = w->next_id++ * MAX_THREADS + (uint64_t)w->index;
        sl->started = now_ns();
        sl->rx = (struct rx){0};
        sl->connected = false;
        int fd = start_connect(src);
        if (fd < 0) {
            w->failures++;
            report_error("churn: connect: %s", strerror(-fd));
            if (sl->started >= w->t_end || interrupted) {
                sl->fd = -1;
                return;
            }
            usleep(1000); /* do not spin on a refusing server */
            continue;
        }
        sl->fd = fd;
        /* Edge-triggered: EPOLLOUT fires once when connected; after that
         * every arrival of data is a new edge. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)s};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        return;
    }
}

static void churn_finish(struct cworker *w, int ep, int s, bool ok)
{
    struct cslot *sl = &w->slots[s];
    close(sl->fd);
    sl->fd = -1;
    uint64_t now = now_ns();
    if (ok) {
        w->ok++;
        hist_add(&w->hist, now - sl->started);
    } else {
        w->failures++;
    }
    if (now < w->t_end && !interrupted) {
        churn_start(w, ep, s);
    }
}

static void *churn_worker(void *arg)
{
    struct cworker *w = arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int s = 0; s < w->n; s++) {
        churn_start(w, ep, s);
    }
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= w->t_end || interrupted) {
            break;
        }
        uint64_t left_ms = (w->t_end - now) / 1000000u + 1;
        int m = epoll_wait(ep, evs, MAX_EVENTS, left_ms < 100 ? (int)left_ms : 100);
        for (int k = 0; k < m; k++) {
            int s = (int)evs[k].data.u32;
            struct cslot *sl = &w->slots[s];
            uint32_t e = evs[k].events;
            if (sl->fd < 0) {
                continue;
            }
            if (e & EPOLLERR) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(sl->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                report_error("churn: %s", strerror(err ? err : EIO));
                churn_finish(w, ep, s, false);
                continue;
            }
            if (!sl->connected && (e & EPOLLOUT)) {
                sl->connected = true;
                size_t n = frame_build(w->frame, sl->id, 0);
                if (write(sl->fd, w->frame, n) != (ssize_t)n) {
                    report_error("churn: write: %s", strerror(errno));
                    churn_finish(w, ep, s, false);
                    continue;
                }
            }
            if (!(e & (EPOLLIN | EPOLLHUP))) {
                continue;
            }
            /* Read until the reply is complete or the socket is drained:
             * with edge triggering a partial reply must not strand data. */
            for (;;) {
                ssize_t n = read(sl->fd, w->rbuf, sizeof(w->rbuf));
                if (n < 0 && errno == EAGAIN) {
                    break;
                }
                if (n <= 0) {
                    report_error("churn: %s before the reply",
                                 n == 0 ? "closed by the server" : strerror(errno));
                    churn_finish(w, ep, s, false);
                    break;
                }
                size_t pos = 0;
                bool ok = true;
                while (ok && pos < (size_t)n && sl->rx.seq == 0) {
                    ssize_t used = rx_feed(&sl->rx, sl->id, w->rbuf + pos, (size_t)n - pos);
                    ok = used >= 0;
                    pos += used >= 0 ? (size_t)used : 0;
                }
                if (!ok || pos < (size_t)n) {
                    churn_finish(w, ep, s, false);
                    break;
                }
                if (sl->rx.seq == 1) {
                    churn_finish(w, ep, s, true);
                    break;
                }
            }
        }
    }
    uint64_t now = now_ns();
    for (int s = 0; s < w->n; s++) {
        w->stalled += (uint64_t)close_at_deadline(w->slots[s].fd, w->slots[s].started, now);
    }
    close(ep);
    return NULL;
}

int run_churn(void)
{
    if (ensure_fd_limit(opt.conns + 32, "churn") < 0) {
        return 2;
    }
    struct cworker *ws = calloc((size_t)opt.threads, sizeof(*ws));
    struct cslot *slots = calloc((size_t)opt.conns, sizeof(*slots));
    if (ws == NULL || slots == NULL) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    uint64_t t0 = now_ns();
    double cpu0 = cpu_seconds();
    struct cslot *next = slots;
    for (int t = 0; t < opt.threads; t++) {
        struct cworker *w = &ws[t];
        w->index = t;
        w->n = opt.conns / opt.threads + (t < opt.conns % opt.threads);
        w->slots = next;
        next += w->n;
        w->t_end = t0 + (uint64_t)(opt.duration_s * 1e9);
        w->frame = malloc(frame_wire());
        if (w->frame == NULL || pthread_create(&w->thread, NULL, churn_worker, w) != 0) {
            fprintf(stderr, "troupe-load: cannot start worker %d\n", t);
            return 1;
        }
    }
    struct hist *h = calloc(1, sizeof(*h));
    uint64_t ok = 0, failures = 0;
    for (int t = 0; t < opt.threads; t++) {
        pthread_join(ws[t].thread, NULL);
        hist_merge(h, &ws[t].hist);
        ok += ws[t].ok;
        failures += ws[t].failures + ws[t].stalled;
        if (ws[t].stalled > 0) {
            fprintf(stderr, "troupe-load: %" PRIu64 " connections got no reply for over 1 s\n",
                    ws[t].stalled);
        }
        free(ws[t].frame);
    }
    double wall = (double)(now_ns() - t0) / 1e9;
    double cpu = cpu_seconds() - cpu0;
    double cps = (double)ok / wall;
    printf("churn: %d workers, %d thread(s), %.1f s: %" PRIu64 " connections with one %s round "
           "trip, %.0f conn/s, %" PRIu64 " failures\n",
           opt.conns, opt.threads, wall, ok, codec_names[opt.codec], cps, failures);
    printf("  connect+round trip+close  p50 %.1f us  p99 %.1f us  p99.9 %.1f us; loader %.0f%% "
           "CPU\n",
           hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.99), hist_quantile_us(h, 0.999),
           100.0 * cpu / wall);
    printf("RESULT mode=churn conns=%d threads=%d duration_s=%.1f connections=%" PRIu64
           " conn_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f loader_cpu_pct=%.0f "
           "failures=%" PRIu64 " errors=%" PRIu64 "\n",
           opt.conns, opt.threads, wall, ok, cps, hist_quantile_us(h, 0.50),
           hist_quantile_us(h, 0.99), hist_quantile_us(h, 0.999), 100.0 * cpu / wall, failures,
           failures);
    free(h);
    free(slots);
    free(ws);
    return failures == 0 && ok > 0 && !interrupted ? 0 : 1;
}
