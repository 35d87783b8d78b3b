/* troupe-load: load generator for echo servers (troupe-echo, ref-echo).
 *
 *   troupe-load echo  --connect HOST:PORT -c CONNS -s SIZE -p PIPELINE -d SECONDS
 *                     [--codec raw|line|length] [--threads N] [--warmup SECONDS]
 *   troupe-load hold  --connect HOST:PORT -c CONNS -d SECONDS [--verify] [-s SIZE] [--codec C]
 *   troupe-load churn --connect HOST:PORT -c WORKERS -d SECONDS [-s SIZE] [--codec C]
 *                     [--threads N]
 *
 * A message is SIZE payload bytes, framed by the codec: raw sends the payload
 * as is, line appends '\n' (the payload never contains one), length prepends
 * a 4-byte big-endian length. Payload bytes come from a fixed pseudo-random
 * table at an offset that depends on the connection and the sequence number,
 * so every echoed byte is checked against what that request sent; a reply
 * swapped between requests or connections is a mismatch.
 *
 * Only loopback targets are accepted (a policy of the workplace).
 * The last line of output is machine-readable: RESULT mode=... key=value ...
 * Exit status: 0 when every check passed, 1 on any error, 2 on bad usage. */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_ECHO, MODE_HOLD, MODE_CHURN };
enum codec { CODEC_RAW, CODEC_LINE, CODEC_LENGTH };

static const char *const codec_names[] = {"raw", "line", "length"};
static const char *const mode_names[] = {"echo", "hold", "churn"};

#define PAT_LEN 65521u /* prime: consecutive sequence numbers get distinct offsets */
#define RBUF (64 * 1024)
#define READ_BUDGET (256 * 1024)
#define MAX_EVENTS 256
#define CONNECT_WINDOW 256 /* connects in flight while opening many (listen backlogs) */
#define DRAIN_TIMEOUT_NS (5 * 1000000000ull)
#define MAX_THREADS 64
#define MAX_REPORTED_ERRORS 5

struct opts {
    enum mode mode;
    const char *connect;
    int conns;
    size_t size;
    int pipeline;
    double duration_s;
    double warmup_s;
    enum codec codec;
    int threads;
    bool verify;
    double connect_timeout_s;
};

static struct opts opt = {
    .conns = 100,
    .size = 64,
    .pipeline = 1,
    .duration_s = 5.0,
    .codec = CODEC_RAW,
    .threads = 1,
    .connect_timeout_s = 10.0,
};
static struct sockaddr_storage target;
static socklen_t target_len;
static unsigned char *pattern; /* PAT_LEN + size bytes, printable, no '\n' */
static volatile sig_atomic_t interrupted;
static int reported_errors; /* rough cap on stderr noise; races are harmless */

/* ---- small helpers ---------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void report_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void report_error(const char *fmt, ...)
{
    if (reported_errors++ >= MAX_REPORTED_ERRORS) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fputs("troupe-load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- latency histogram ------------------------------------------------ */

/* Log-linear buckets over nanoseconds: values below 128 exactly, above that
 * 128 sub-buckets per power of two, so a reported percentile is within 1%.
 * 40 powers of two reach past 18 minutes. */
#define HIST_SUB 128
#define HIST_BUCKETS (HIST_SUB * 36)

struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
};

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB) {
        return (unsigned)v;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
    unsigned shift = e - 7;
    unsigned idx = HIST_SUB * (shift + 1) + (unsigned)((v >> shift) - HIST_SUB);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The middle of bucket idx. */
static double hist_value(unsigned idx)
{
    if (idx < HIST_SUB) {
        return idx;
    }
    unsigned shift = idx / HIST_SUB - 1;
    uint64_t lo = (uint64_t)(HIST_SUB + idx % HIST_SUB) << shift;
    return (double)lo + (double)((1ull << shift) - 1) / 2.0;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->total++;
    if (v > h->max) {
        h->max = v;
    }
}

static void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        into->count[i] += from->count[i];
    }
    into->total += from->total;
    if (from->max > into->max) {
        into->max = from->max;
    }
}

/* Returns the q-quantile in microseconds (0 if empty). */
static double hist_quantile_us(const struct hist *h, double q)
{
    if (h->total == 0) {
        return 0.0;
    }
    uint64_t rank = (uint64_t)(q * (double)h->total);
    if (rank >= h->total) {
        rank = h->total - 1;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > rank) {
            double v = hist_value(i);
            return (v > (double)h->max ? (double)h->max : v) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

/* ---- frames: build and verify ----------------------------------------- */

static size_t frame_prefix(void)
{
    return opt.codec == CODEC_LENGTH ? 4 : 0;
}

static size_t frame_wire(void)
{
    return frame_prefix() + opt.size + (opt.codec == CODEC_LINE ? 1 : 0);
}

static size_t pattern_offset(uint64_t id, uint64_t seq)
{
    return (size_t)((id * 7919u + seq * 4099u) % PAT_LEN);
}

static int pattern_init(size_t size)
{
    pattern = malloc(PAT_LEN + size);
    if (pattern == NULL) {
        return -1;
    }
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < PAT_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (unsigned char)(0x21 + (x >> 33) % 94); /* '!'..'~' */
    }
    for (size_t i = 0; i < size; i++) {
        pattern[PAT_LEN + i] = pattern[i % PAT_LEN];
    }
    return 0;
}

/* Writes the wire bytes of message (id, seq) at dst; returns their count. */
static size_t frame_build(char *dst, uint64_t id, uint64_t seq)
{
    size_t n = 0;
    if (opt.codec == CODEC_LENGTH) {
        uint32_t len = (uint32_t)opt.size;
        dst[0] = (char)(len >> 24);
        dst[1] = (char)(len >> 16);
        dst[2] = (char)(len >> 8);
        dst[3] = (char)len;
        n = 4;
    }
    memcpy(dst + n, pattern + pattern_offset(id, seq), opt.size);
    n += opt.size;
    if (opt.codec == CODEC_LINE) {
        dst[n++] = '\n';
    }
    return n;
}

/* Expected reply stream position of one connection. */
struct rx {
    uint64_t seq; /* message whose reply is arriving */
    size_t off;   /* wire bytes of it received so far */
};

/* Checks data against the reply to (id, rx->seq), up to the end of that
 * frame. Returns the bytes consumed (and advances rx, bumping seq when the
 * frame completes), or -1 on a mismatch. */
static ssize_t rx_feed(struct rx *rx, uint64_t id, const unsigned char *p, size_t n)
{
    size_t pre = frame_prefix();
    size_t wire = frame_wire();
    size_t take = wire - rx->off < n ? wire - rx->off : n;
    size_t off = rx->off;
    size_t i = 0;
    while (i < take) {
        if (off < pre) {
            unsigned char want = (unsigned char)(opt.size >> (8 * (3 - off)));
            if (p[i] != want) {
                goto mismatch;
            }
            i++;
            off++;
        } else if (off < pre + opt.size) {
            size_t k = pre + opt.size - off;
            if (k > take - i) {
                k = take - i;
            }
            const unsigned char *want = pattern + pattern_offset(id, rx->seq) + (off - pre);
            if (memcmp(p + i, want, k) != 0) {
                while (p[i] == *want) {
                    i++;
                    off++;
                    want++;
                }
                goto mismatch;
            }
            i += k;
            off += k;
        } else {
            if (p[i] != '\n') {
                goto mismatch;
            }
            i++;
            off++;
        }
    }
    rx->off = off;
    if (off == wire) {
        rx->off = 0;
        rx->seq++;
    }
    return (ssize_t)take;
mismatch:
    report_error("mismatch: conn %" PRIu64 " message %" PRIu64 " wire byte %zu: got 0x%02x",
                 id, rx->seq, off, p[i]);
    return -1;
}

/* ---- addresses -------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) {
            return true;
        }
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* Resolves HOST:PORT or [V6]:PORT; refuses anything but loopback. */
static int parse_target(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec || (size_t)(colon - spec) >= sizeof(host)) {
        fprintf(stderr, "troupe-load: --connect wants HOST:PORT, got '%s'\n", spec);
        return -1;
    }
    size_t hl = (size_t)(colon - spec);
    memcpy(host, spec, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || res == NULL) {
        fprintf(stderr, "troupe-load: cannot resolve '%s': %s\n", spec, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (!is_loopback(ai->ai_addr)) {
            fprintf(stderr,
                    "troupe-load: refusing to target '%s': not a loopback address "
                    "(workplace policy: load is sent to 127.0.0.0/8 or ::1 only)\n",
                    spec);
            freeaddrinfo(res);
            return -1;
        }
    }
    memcpy(&target, res->ai_addr, res->ai_addrlen);
    target_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* ---- connecting ------------------------------------------------------- */

/* Starts a non-blocking connect. For an IPv4 target the source address is
 * 127.0.0.(1 + src % 254), bound without a port (IP_BIND_ADDRESS_NO_PORT)
 * so the kernel picks the port per 4-tuple at connect time: that is what
 * lifts the ~28K ephemeral-port limit of a single source address.
 * Returns the fd (connected or in progress), or -errno. */
static int start_connect(unsigned src)
{
    int fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (target.ss_family == AF_INET) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in local = {.sin_family = AF_INET};
        local.sin_addr.s_addr = htonl(0x7f000001u + src % 254u);
        if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0) {
            int err = -errno;
            close(fd);
            return err;
        }
    }
    if (connect(fd, (struct sockaddr *)&target, target_len) < 0 && errno != EINPROGRESS) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Opens n connections, at most CONNECT_WINDOW in flight so listen backlogs
 * do not overflow (a dropped SYN costs a 1 s retransmit). fds[i] is the
 * connected fd or -1. Returns how many connected. */
static int connect_many(int *fds, int n, unsigned src_base)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("troupe-load: epoll_create1");
        return 0;
    }
    uint64_t deadline = now_ns() + (uint64_t)(opt.connect_timeout_s * 1e9);
    int next = 0, pending = 0, ok = 0, failed = 0;
    int first_err = 0;
    struct epoll_event evs[MAX_EVENTS];
    while ((next < n || pending > 0) && !interrupted) {
        while (next < n && pending < CONNECT_WINDOW) {
            int i = next++;
            int fd = start_connect(src_base + (unsigned)i);
            fds[i] = -1;
            if (fd < 0) {
                failed++;
                if (first_err == 0) {
                    first_err = fd;
                }
                continue;
            }
            fds[i] = fd;
            struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            pending++;
        }
        uint64_t now = now_ns();
        if (now >= deadline) {
            break;
        }
        int timeout_ms = (int)((deadline - now) / 1000000u) + 1;
        int m = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms > 100 ? 100 : timeout_ms);
        for (int k = 0; k < m; k++) {
            int i = (int)evs[k].data.u32;
            int err = 0;
            socklen_t len = sizeof(err);
            getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len);
            epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
            pending--;
            if (err != 0) {
                if (first_err == 0) {
                    first_err = -err;
                }
                close(fds[i]);
                fds[i] = -1;
                failed++;
            } else {
                ok++;
            }
        }
    }
    /* Whatever is still pending timed out. */
    for (int i = 0; i < next; i++) {
        if (fds[i] < 0) {
            continue;
        }
        int err = 0;
        socklen_t len = sizeof(err);
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        if (getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0 ||
            getpeername(fds[i], (struct sockaddr *)&peer, &plen) < 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
    ok = 0;
    for (int i = 0; i < n; i++) {
        ok += fds[i] >= 0;
    }
    for (int i = next; i < n; i++) {
        fds[i] = -1;
    }
    if (ok < n) {
        fprintf(stderr, "troupe-load: connected %d of %d (%d failed%s%s)\n", ok, n, n - ok,
                first_err ? ": " : "", first_err ? strerror(-first_err) : "");
    }
    close(ep);
    return ok;
}

/* Raises the soft fd limit to the hard one and checks that need fds fit. */
static int ensure_fd_limit(int need, const char *what)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return 0;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need > rl.rlim_cur) {
        fprintf(stderr,
                "troupe-load: %s needs about %d file descriptors, but RLIMIT_NOFILE is %llu "
                "(hard limit %llu, which this process cannot raise); use -c %llu or fewer\n",
                what, need, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                (unsigned long long)(rl.rlim_cur > 32 ? rl.rlim_cur - 32 : 0));
        return -1;
    }
    return 0;
}

/* ---- echo mode -------------------------------------------------------- */

struct econn {
    int fd;
    uint64_t id;
    uint64_t tx_seq;  /* next message to send */
    struct rx rx;     /* next reply expected; in flight = tx_seq - rx.seq */
    uint64_t *sent;   /* send time of message seq at sent[seq % pipeline] */
    char *txq;        /* bytes the kernel did not take yet, or NULL */
    size_t txq_off;
    size_t txq_len;
    bool want_out;    /* EPOLLOUT enabled */
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
    uint64_t lost;       /* messages never answered */
};

static void econn_kill(struct eworker *w, struct econn *c)
{
    if (!c->dead) {
        c->dead = true;
        w->errors++;
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
    ssize_t wr = write(c->fd, dst, n);
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
    ssize_t wr = write(c->fd, c->txq + c->txq_off, c->txq_len - c->txq_off);
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
        ssize_t n = read(c->fd, w->rbuf, sizeof(w->rbuf));
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            }
            report_error("conn %" PRIu64 ": %s with %" PRIu64 " messages in flight", c->id,
                         n == 0 ? "closed by the server" : strerror(errno),
                         c->tx_seq - c->rx.seq);
            econn_kill(w, c);
            return;
        }
        uint64_t now = now_ns();
        int completed = 0;
        size_t pos = 0;
        while (pos < (size_t)n) {
            if (c->rx.seq == c->tx_seq) {
                report_error("conn %" PRIu64 ": %zd unexpected bytes (nothing in flight)",
                             c->id, n - (ssize_t)pos);
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
        if ((size_t)n < sizeof(w->rbuf) || total >= READ_BUDGET) {
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
    return NULL;
}

static int run_echo(void)
{
    if (ensure_fd_limit(opt.conns + 32, "echo") < 0) {
        return 2;
    }
    int *fds = calloc((size_t)opt.conns, sizeof(int));
    struct eworker *ws = calloc((size_t)opt.threads, sizeof(*ws));
    struct econn *conns = calloc((size_t)opt.conns, sizeof(*conns));
    uint64_t *sent = calloc((size_t)opt.conns * (size_t)opt.pipeline, sizeof(uint64_t));
    if (fds == NULL || ws == NULL || conns == NULL || sent == NULL) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    int connected = connect_many(fds, opt.conns, 0);
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
    uint64_t done = 0, done_total = 0, errors = 0, lost = 0;
    for (int t = 0; t < opt.threads; t++) {
        pthread_join(ws[t].thread, NULL);
        hist_merge(h, &ws[t].hist);
        done += ws[t].done;
        done_total += ws[t].done_total;
        errors += ws[t].errors;
        lost += ws[t].lost;
        close(ws[t].epfd);
        free(ws[t].scratch);
    }
    double wall = (double)(now_ns() - t0) / 1e9;
    double cpu = cpu_seconds() - cpu0;
    for (int i = 0; i < opt.conns; i++) {
        if (!conns[i].dead && conns[i].fd > 0) {
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
    printf("echo: %d conns, %zu-byte messages (%zu on the wire, codec %s), pipeline %d, "
           "%d thread(s), %.1f s\n",
           connected, opt.size, frame_wire(), codec_names[opt.codec], opt.pipeline, opt.threads,
           opt.duration_s);
    printf("  requests  %" PRIu64 " in the window (%" PRIu64 " in all), %.0f req/s, %.2f MB/s "
           "echoed\n",
           done, done_total, rps, mbps);
    printf("  latency   p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n",
           hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.99), hist_quantile_us(h, 0.999),
           (double)h->max / 1000.0);
    printf("  loader    %.0f%% CPU; errors %" PRIu64 "\n", 100.0 * cpu / wall, errors);
    printf("RESULT mode=echo conns=%d size=%zu pipeline=%d codec=%s threads=%d duration_s=%.1f "
           "requests=%" PRIu64 " total_requests=%" PRIu64 " req_per_s=%.0f mb_per_s=%.2f "
           "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f loader_cpu_pct=%.0f "
           "loader_cpu_s=%.2f errors=%" PRIu64 "\n",
           connected, opt.size, opt.pipeline, codec_names[opt.codec], opt.threads, window, done,
           done_total, rps, mbps, hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.99),
           hist_quantile_us(h, 0.999), (double)h->max / 1000.0, 100.0 * cpu / wall,
           cpu_seconds(), errors);
    free(h);
    free(sent);
    free(conns);
    free(ws);
    free(fds);
    return errors == 0 && !interrupted ? 0 : 1;
}

/* ---- hold mode -------------------------------------------------------- */

static int run_hold(void)
{
    if (ensure_fd_limit(opt.conns + 32, "hold") < 0) {
        return 2;
    }
    if (target.ss_family != AF_INET && opt.conns > 28000) {
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

/* ---- churn mode ------------------------------------------------------- */

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
    /* A round trip cut off by the deadline is not counted; one that had been
     * waiting for over a second is a failure (a server that never answers). */
    uint64_t now = now_ns();
    for (int s = 0; s < w->n; s++) {
        if (w->slots[s].fd >= 0) {
            close(w->slots[s].fd);
            if (now - w->slots[s].started > 1000000000u) {
                w->stalled++;
            }
        }
    }
    close(ep);
    return NULL;
}

static int run_churn(void)
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

/* ---- main ------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage:\n"
            "  troupe-load echo  --connect HOST:PORT [-c CONNS] [-s SIZE] [-p PIPELINE]\n"
            "                    [-d SECONDS] [--warmup SECONDS] [--codec raw|line|length]\n"
            "                    [--threads N]\n"
            "  troupe-load hold  --connect HOST:PORT -c CONNS [-d SECONDS] [--verify]\n"
            "                    [-s SIZE] [--codec raw|line|length]\n"
            "  troupe-load churn --connect HOST:PORT [-c WORKERS] [-d SECONDS] [-s SIZE]\n"
            "                    [--codec raw|line|length] [--threads N]\n"
            "Defaults: -c 100 -s 64 -p 1 -d 5 --codec raw --threads 1 --warmup 0\n"
            "          (hold: -s 16, churn: -s 16). SIZE is payload bytes; line adds '\\n',\n"
            "          length adds a 4-byte big-endian prefix. Loopback targets only.\n"
            "          --connect-timeout SECONDS (default 10) bounds opening connections.\n"
            "The last line is 'RESULT mode=... key=value ...'.\n");
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    if (argc < 2) {
        return -1;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        exit(0);
    }
    int m = -1;
    for (int k = 0; k < 3; k++) {
        if (strcmp(argv[1], mode_names[k]) == 0) {
            m = k;
        }
    }
    if (m < 0) {
        fprintf(stderr, "troupe-load: unknown mode '%s'\n", argv[1]);
        return -1;
    }
    opt.mode = (enum mode)m;
    bool size_set = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d = 0;
        if (strcmp(a, "--verify") == 0) {
            opt.verify = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (v == NULL) {
            fprintf(stderr, "troupe-load: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--connect") == 0) {
            opt.connect = v;
        } else if (strcmp(a, "-c") == 0 && parse_num(v, 1, 10000000, &d) == 0) {
            opt.conns = (int)d;
        } else if (strcmp(a, "-s") == 0 && parse_num(v, 1, 64 * 1024 * 1024, &d) == 0) {
            opt.size = (size_t)d;
            size_set = true;
        } else if (strcmp(a, "-p") == 0 && parse_num(v, 1, 100000, &d) == 0) {
            opt.pipeline = (int)d;
        } else if (strcmp(a, "-d") == 0 && parse_num(v, 0, 86400, &d) == 0) {
            opt.duration_s = d;
        } else if (strcmp(a, "--warmup") == 0 && parse_num(v, 0, 3600, &d) == 0) {
            opt.warmup_s = d;
        } else if (strcmp(a, "--threads") == 0 && parse_num(v, 1, MAX_THREADS, &d) == 0) {
            opt.threads = (int)d;
        } else if (strcmp(a, "--connect-timeout") == 0 && parse_num(v, 0.1, 600, &d) == 0) {
            opt.connect_timeout_s = d;
        } else if (strcmp(a, "--codec") == 0) {
            int c = -1;
            for (int k = 0; k < 3; k++) {
                if (strcmp(v, codec_names[k]) == 0) {
                    c = k;
                }
            }
            if (c < 0) {
                fprintf(stderr, "troupe-load: unknown codec '%s'\n", v);
                return -1;
            }
            opt.codec = (enum codec)c;
        } else {
            fprintf(stderr, "troupe-load: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    if (opt.connect == NULL) {
        fprintf(stderr, "troupe-load: --connect HOST:PORT is required\n");
        return -1;
    }
    if (!size_set && opt.mode != MODE_ECHO) {
        opt.size = 16;
    }
    if (opt.threads > opt.conns) {
        opt.threads = opt.conns;
    }
    if (opt.mode == MODE_ECHO && opt.duration_s <= 0) {
        fprintf(stderr, "troupe-load: echo needs -d > 0\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0) {
        usage(stderr);
        return 2;
    }
    if (parse_target(opt.connect) < 0) {
        return 2;
    }
    if (pattern_init(opt.size) < 0) {
        fprintf(stderr, "troupe-load: out of memory\n");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc;
    switch (opt.mode) {
    case MODE_ECHO:
        rc = run_echo();
        break;
    case MODE_HOLD:
        rc = run_hold();
        break;
    case MODE_CHURN:
        rc = run_churn();
        break;
    default:
        rc = 2;
        break;
    }
    free(pattern);
    return rc;
}
