/* troupe-load hold: N idle connections for a while, then (with --verify)
 * one checked round trip on each. */

#include "load.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int run_hold(void)
{
    if (ensure_fd_limit(opt.conns + 32, "hold") < 0) {
        return 2;
    }
    if (target_family() != AF_INET && opt.conns > 28000) {
        fprintf(stderr, "troupe-load: warning: an IPv6 target has one source address; "
                        "more than ~28K connections may run out of ephemeral ports\n");
    }
    int *fds = calloc((size_t)opt.conns, sizeof(int));
    struct rx *rx = calloc((size_t)opt.conns, sizeof(*rx));
    char *frame = malloc(frame_wire());
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (fds == NULL || rx == NULL || frame == NULL || ep < 0) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    uint64_t t0 = now_ns();
    int connected = connect_many(fds, opt.conns, 0);
    double connect_s = (double)(now_ns() - t0) / 1e9;
    printf("holding %d connections (connected in %.2f s)\n", connected, connect_s);
    fflush(stdout);

    int alive = connected;
    for (int i = 0; i < opt.conns; i++) {
        if (fds[i] >= 0) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
        }
    }
    /* Hold: any event on an idle connection means the server closed it or
     * sent something unasked; either way it no longer counts as alive. */
    struct epoll_event evs[MAX_EVENTS];
    uint64_t end = now_ns() + (uint64_t)(opt.duration_s * 1e9);
    for (uint64_t now = now_ns(); now < end && !interrupted; now = now_ns()) {
        uint64_t left_ms = (end - now) / 1000000u + 1;
        int m = epoll_wait(ep, evs, MAX_EVENTS, left_ms < 1000 ? (int)left_ms : 1000);
        for (int k = 0; k < m; k++) {
            int i = (int)evs[k].data.u32;
            report_error("hold: connection %d closed or written to by the server", i);
            close(fds[i]);
            fds[i] = -1;
            alive--;
        }
    }
    int verified = 0;
    if (opt.verify && !interrupted) {
        for (int i = 0; i < opt.conns; i++) {
            if (fds[i] < 0) {
                continue;
            }
            size_t n = frame_build(frame, (uint64_t)i, 0);
            if (write(fds[i], frame, n) != (ssize_t)n) {
                report_error("hold: verify write on connection %d failed", i);
                close(fds[i]);
                fds[i] = -1;
            }
        }
        uint64_t deadline = now_ns() + DRAIN_TIMEOUT_NS;
        int waiting = 0;
        for (int i = 0; i < opt.conns; i++) {
            waiting += fds[i] >= 0;
        }
        unsigned char buf[4096];
        while (waiting > 0 && now_ns() < deadline && !interrupted) {
            int m = epoll_wait(ep, evs, MAX_EVENTS, 100);
            for (int k = 0; k < m; k++) {
                int i = (int)evs[k].data.u32;
                if (fds[i] < 0) {
                    continue;
                }
                ssize_t n = read(fds[i], buf, sizeof(buf));
                if (n < 0 && errno == EAGAIN) {
                    continue;
                }
                bool ok = n > 0;
                size_t pos = 0;
                while (ok && pos < (size_t)n && rx[i].seq == 0) {
                    ssize_t used = rx_feed(&rx[i], (uint64_t)i, buf + pos, (size_t)n - pos);
                    ok = used >= 0;
                    pos += used >= 0 ? (size_t)used : 0;
                }
                if (ok && pos < (size_t)n) {
                    report_error("hold: connection %d: unexpected extra bytes", i);
                    ok = false;
                }
                if (ok && rx[i].seq == 0) {
                    continue; /* partial reply */
                }
                if (!ok && n <= 0) {
                    report_error("hold: connection %d: %s before the reply", i,
                                 n == 0 ? "closed" : strerror(errno));
                }
                verified += ok;
                waiting--;
                close(fds[i]);
                fds[i] = -1;
            }
        }
    }
    for (int i = 0; i < opt.conns; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    int errors = opt.verify ? opt.conns - verified : opt.conns - alive;
    printf("hold: %d of %d connected in %.2f s, %d alive after %.1f s", connected, opt.conns,
           connect_s, alive, opt.duration_s);
    if (opt.verify) {
        printf(", %d verified with one %s round trip", verified, codec_names[opt.codec]);
    }
    printf("\nRESULT mode=hold conns=%d connected=%d alive=%d verified=%d connect_s=%.2f "
           "errors=%d\n",
           opt.conns, connected, alive, opt.verify ? verified : -1, connect_s, errors);
    close(ep);
    free(frame);
    free(rx);
    free(fds);
    return errors == 0 && !interrupted ? 0 : 1;
}
