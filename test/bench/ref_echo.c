/* ref-echo: a minimal single-thread epoll echo server, the local speed limit
 * that troupe-echo is measured against (DESIGN.md, "The hot path").
 *
 * Usage: ref-echo [--listen HOST:PORT] [--codec raw|line|length]
 *
 * What it does per readiness event, and why:
 * - Level-triggered epoll. A readable socket is read once into one shared
 *   buffer; a read that returns less than the buffer means the socket is
 *   drained, so it never calls read just to see EAGAIN. Only a read that
 *   filled the buffer is followed by another, up to READ_BUDGET bytes per
 *   event, so one fast sender cannot starve the others.
 * - The complete frames of that read are echoed with one write at once.
 *   Only what the kernel did not take is queued; then, and only then,
 *   EPOLLOUT is enabled, and it is disabled again when the queue drains.
 * - Nothing is kept per idle connection but a small struct: a partial frame
 *   is copied into a right-sized allocation and freed when it completes.
 * - raw echoes bytes as read; line echoes complete lines (terminator
 *   included); length echoes complete frames (4-byte big-endian length
 *   prefix that does not count itself). A frame over MAX_FRAME closes the
 *   connection.
 * SIGINT and SIGTERM end the loop; every connection is closed and freed. */

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ref_common.h"

enum codec { CODEC_RAW, CODEC_LINE, CODEC_LENGTH };

#define READ_BUF (64 * 1024)
#define READ_BUDGET (256 * 1024)
#define MAX_FRAME (1024 * 1024)
/* Past this many queued output bytes the connection stops reading until the
 * queue drains: a peer that never reads cannot grow our memory. */
#define OUT_HIGH (4 * 1024 * 1024)
#define MAX_EVENTS 256
#define ACCEPT_BATCH 64

struct conn {
    int fd;
    uint32_t events;   /* what epoll watches now */
    char *in;          /* partial frame waiting for more bytes, or NULL */
    size_t in_len;     /* bytes in `in` */
    size_t in_cap;     /* capacity of `in` */
    char *out;         /* bytes the kernel did not take yet, or NULL */
    size_t out_off;    /* first unsent byte in `out` */
    size_t out_len;    /* end of queued bytes in `out` */
    size_t out_cap;    /* capacity of `out` */
    struct conn *prev; /* list of all connections, for the clean exit */
    struct conn *next;
};

static volatile sig_atomic_t stop_requested;
static enum codec codec = CODEC_RAW;
static int epfd = -1;
static struct conn *conns;
static char rbuf[READ_BUF];

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ref-echo [--listen HOST:PORT] [--codec raw|line|length]\n"
               "  default --listen 127.0.0.1:0 --codec raw; prints 'listening on HOST:PORT'\n");
}

static void conn_free(struct conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    free(c->in);
    free(c->out);
    free(c);
}

static int set_events(struct conn *c, uint32_t events)
{
    return ref_set_events(epfd, c->fd, c, &c->events, events);
}

/* Returns how many leading bytes of data[0..n) are complete frames (all of
 * them for raw), or -1 on a frame over MAX_FRAME. */
static ssize_t complete_prefix(const char *data, size_t n)
{
    size_t pos = 0;
    switch (codec) {
    case CODEC_RAW:
        return (ssize_t)n;
    case CODEC_LINE:
        for (;;) {
            const char *nl = memchr(data + pos, '\n', n - pos);
            if (nl == NULL) {
                break;
            }
            pos = (size_t)(nl - data) + 1;
        }
        /* A line is a frame whose length we know only once it ends. */
        if (n - pos > MAX_FRAME) {
            return -1;
        }
        return (ssize_t)pos;
    case CODEC_LENGTH:
        while (n - pos >= 4) {
            const unsigned char *h = (const unsigned char *)data + pos;
            uint32_t len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
            if (len > MAX_FRAME) {
                return -1;
            }
            if (n - pos - 4 < len) {
                break;
            }
            pos += 4 + (size_t)len;
        }
        return (ssize_t)pos;
    default:
        return -1;
    }
}

static int queue_out(struct conn *c, const char *data, size_t n)
{
    if (c->out_off > 0 && c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    }
    if (c->out_len + n > c->out_cap) {
        /* Compact first; grow only if that is not enough. */
        size_t live = c->out_len - c->out_off;
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, live);
            c->out_off = 0;
            c->out_len = live;
        }
        if (live + n > c->out_cap) {
            size_t cap = c->out_cap ? c->out_cap : 4096;
            while (cap < live + n) {
                cap *= 2;
            }
            char *p = realloc(c->out, cap);
            if (p == NULL) {
                return -1;
            }
            c->out = p;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
    return 0;
}

static uint32_t wanted_events(const struct conn *c)
{
    size_t queued = c->out_len - c->out_off;
    if (queued == 0) {
        return EPOLLIN;
    }
    return queued > OUT_HIGH ? EPOLLOUT : (EPOLLIN | EPOLLOUT);
}

/* Echoes data[0..n): writes at once when nothing is queued, else appends so
 * the byte order holds. Returns -1 if the connection must close. */
static int send_reply(struct conn *c, const char *data, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (c->out_len == c->out_off) {
        ssize_t w = write(c->fd, data, n);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                return -1;
            }
            w = 0;
        }
        data += w;
        n -= (size_t)w;
        if (n == 0) {
            return 0;
        }
    }
    if (queue_out(c, data, n) < 0) {
        return -1;
    }
    return set_events(c, wanted_events(c));
}

/* Takes the bytes just read (in rbuf): echoes their complete frames and
 * keeps the partial tail. */
static int handle_input(struct conn *c, size_t n)
{
    const char *data = rbuf;
    size_t len = n;
    if (c->in_len > 0) {
        /* A partial frame waits: append to it (rare for small frames). */
        if (c->in_len + n > c->in_cap) {
            /* Geometric growth: a large frame arriving in many reads is not
             * copied over and over. */
            size_t cap = c->in_cap * 2 > c->in_len + n ? c->in_cap * 2 : c->in_len + n;
            char *p = realloc(c->in, cap);
            if (p == NULL) {
                return -1;
            }
            c->in = p;
            c->in_cap = cap;
        }
        memcpy(c->in + c->in_len, rbuf, n);
        c->in_len += n;
        data = c->in;
        len = c->in_len;
    }
    ssize_t done = complete_prefix(data, len);
    if (done < 0 || send_reply(c, data, (size_t)done) < 0) {
        return -1;
    }
    size_t rest = len - (size_t)done;
    if (data == rbuf) {
        if (rest > 0) {
            /* Right-sized: a length frame's size is known from its header. */
            size_t cap = rest;
            if (codec == CODEC_LENGTH && rest >= 4) {
                const unsigned char *h = (const unsigned char *)data + done;
                cap = 4 + ((size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3]);
            }
            char *p = malloc(cap);
            if (p == NULL) {
                return -1;
            }
            memcpy(p, data + done, rest);
            c->in = p;
            c->in_len = rest;
            c->in_cap = cap;
        }
        return 0;
    }
    if (rest == 0) {
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
    } else if (done > 0) {
        memmove(c->in, c->in + done, rest);
        c->in_len = rest;
    }
    return 0;
}

static int on_readable(struct conn *c)
{
    size_t total = 0;
    for (;;) {
        ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
        if (n == 0) {
            return -1;
        }
        if (n < 0) {
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        }
        if (handle_input(c, (size_t)n) < 0) {
            return -1;
        }
        total += (size_t)n;
        /* A short read means drained; a reply queued past OUT_HIGH means
         * stop reading. Level triggering brings us back for the rest. */
        if ((size_t)n < sizeof(rbuf) || total >= READ_BUDGET || !(c->events & EPOLLIN)) {
            return 0;
        }
    }
}

static int on_writable(struct conn *c)
{
    size_t queued = c->out_len - c->out_off;
    ssize_t w = write(c->fd, c->out + c->out_off, queued);
    if (w < 0) {
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    }
    c->out_off += (size_t)w;
    if (c->out_off == c->out_len) {
        /* Drained: give the memory back, an idle connection keeps nothing. */
        free(c->out);
        c->out = NULL;
        c->out_off = c->out_len = c->out_cap = 0;
    }
    return set_events(c, wanted_events(c));
}

static void on_accept(int lfd)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* Level-triggered: we come back here while the backlog is
                 * non-empty. A pause keeps that from being a hot spin. */
                usleep(1000);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = conns;
        if (conns != NULL) {
            conns->prev = c;
        }
        conns = c;
    }
}

int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_spec = argv[++i];
        } else if (strcmp(argv[i], "--codec") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "raw") == 0) {
                codec = CODEC_RAW;
            } else if (strcmp(v, "line") == 0) {
                codec = CODEC_LINE;
            } else if (strcmp(v, "length") == 0) {
                codec = CODEC_LENGTH;
            } else {
                fprintf(stderr, "ref-echo: unknown codec '%s'\n", v);
                return 2;
            }
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    ref_on_signals(on_signal);

    int lfd = ref_open("ref-echo", listen_spec, SOCK_STREAM);
    if (lfd < 0) {
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        perror("ref-echo: epoll");
        return 1;
    }
    ref_print_bound(lfd, "listening on");

    struct epoll_event evs[MAX_EVENTS];
    while (!stop_requested) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("ref-echo: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                on_accept(lfd);
                continue;
            }
            uint32_t e = evs[i].events;
            int rc = 0;
            if (e & EPOLLOUT) {
                rc = on_writable(c);
            }
            /* EPOLLHUP/EPOLLERR: the read reports what happened. */
            if (rc == 0 && (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && (c->events & EPOLLIN)) {
                rc = on_readable(c);
            } else if (rc == 0 && (e & (EPOLLHUP | EPOLLERR)) && !(c->events & EPOLLIN)) {
                rc = -1;
            }
            if (rc < 0) {
                conn_free(c);
            }
        }
    }

    while (conns != NULL) {
        conn_free(conns);
    }
    close(lfd);
    close(epfd);
    return 0;
}
