/* troupe-load: what the modes share. Options, the latency histogram, the
 * payload pattern and its checks, loopback-only addresses, opening many
 * connections. */

#include "load.h"

#include "hostport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

const char *const codec_names[] = {"raw", "line", "length"};

struct opts opt = {
    .conns = 100,
    .size = 64,
    .pipeline = 1,
    .duration_s = 5.0,
    .codec = CODEC_RAW,
    .threads = 1,
    .connect_timeout_s = 10.0,
    .dgram_timeout_ms = 200.0,
};
volatile sig_atomic_t interrupted;

static struct sockaddr_storage target;
static socklen_t target_len;
static unsigned char *pattern; /* PAT_LEN + size bytes, printable, no '\n' */
static int reported_errors;    /* rough cap on stderr noise; races are harmless */

/* ---- small helpers ---------------------------------------------------- */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void run_clock_start(struct run_clock *c)
{
    c->t0 = now_ns();
    c->t_start = c->t0 + (uint64_t)(opt.warmup_s * 1e9);
    c->t_end = c->t_start + (uint64_t)(opt.duration_s * 1e9);
    c->cpu0 = cpu_seconds();
    c->runq0 = runq_wait_ns();
}

double run_clock_stop(const struct run_clock *c, double *cpu_pct, double *wait_pct)
{
    double wall = (double)(now_ns() - c->t0) / 1e9;
    *cpu_pct = 100.0 * (cpu_seconds() - c->cpu0) / wall;
    *wait_pct = 100.0 * (double)(runq_wait_ns() - c->runq0) / 1e9 / wall;
    return wall;
}

bool run_clock_in_window(const struct run_clock *c, uint64_t now)
{
    return now >= c->t_start && now < c->t_end;
}

double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Nanoseconds this thread has waited on a run queue (schedstat field 2):
 * time it could have run but another task had its CPU. */
uint64_t runq_wait_ns(void)
{
    unsigned long long run = 0, wait = 0;
    FILE *f = fopen("/proc/thread-self/schedstat", "r");
    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%llu %llu", &run, &wait) != 2) {
        wait = 0;
    }
    fclose(f);
    return wait;
}

void report_error(const char *fmt, ...)
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

void hist_add(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->total++;
    if (v > h->max) {
        h->max = v;
    }
}

void hist_merge(struct hist *into, const struct hist *from)
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
double hist_quantile_us(const struct hist *h, double q)
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

size_t frame_wire(void)
{
    return frame_prefix() + opt.size + (opt.codec == CODEC_LINE ? 1 : 0);
}

static size_t pattern_offset(uint64_t id, uint64_t seq)
{
    return (size_t)((id * 7919u + seq * 4099u) % PAT_LEN);
}

const unsigned char *pattern_at(uint64_t id, uint64_t seq)
{
    return pattern + pattern_offset(id, seq);
}

int pattern_init(size_t size)
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

void pattern_free(void)
{
    free(pattern);
    pattern = NULL;
}

/* Writes the wire bytes of message (id, seq) at dst; returns their count. */
size_t frame_build(char *dst, uint64_t id, uint64_t seq)
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

/* Checks data against the reply to (id, rx->seq), up to the end of that
 * frame. Returns the bytes consumed (and advances rx, bumping seq when the
 * frame completes), or -1 on a mismatch. */
ssize_t rx_feed(struct rx *rx, uint64_t id, const unsigned char *p, size_t n)
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
    report_error("mismatch: conn %" PRIu64 " message %" PRIu64 " wire byte %zu: got 0x%02x", id,
                 rx->seq, off, p[i]);
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

/* unix:/PATH or unix:@NAME (abstract: a leading NUL). */
static int parse_unix_target(const char *path)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&target;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(un->sun_path)) {
        fprintf(stderr, "troupe-load: bad Unix socket path '%s'\n", path);
        return -1;
    }
    memset(un, 0, sizeof(*un));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') {
        un->sun_path[0] = '\0';
        target_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        target_len = (socklen_t)sizeof(*un);
    }
    return 0;
}

/* Resolves HOST:PORT or [V6]:PORT; refuses anything but loopback. */
int parse_target(const char *spec)
{
    if (strncmp(spec, "unix:", 5) == 0) {
        return parse_unix_target(spec + 5);
    }
    char host[256];
    const char *port = hostport_split(spec, host, sizeof(host));
    if (port == NULL) {
        fprintf(stderr, "troupe-load: --connect wants HOST:PORT, got '%s'\n", spec);
        return -1;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
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

int target_family(void)
{
    return target.ss_family;
}

/* ---- connecting ------------------------------------------------------- */

/* Starts a non-blocking connect. For an IPv4 target the source address is
 * 127.0.0.(1 + src % 254), bound without a port (IP_BIND_ADDRESS_NO_PORT)
 * so the kernel picks the port per 4-tuple at connect time: that is what
 * lifts the ~28K ephemeral-port limit of a single source address.
 * Returns the fd (connected or in progress), or -errno. */
int target_socket(int type)
{
    int fd = socket(target.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    if (type == SOCK_STREAM && target.ss_family != AF_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (type == SOCK_DGRAM && target.ss_family == AF_UNIX) {
        /* Autobind: an abstract name the kernel picks, for the replies. */
        struct sockaddr_un self = {.sun_family = AF_UNIX};
        if (bind(fd, (struct sockaddr *)&self, sizeof(sa_family_t)) < 0) {
            int err = -errno;
            close(fd);
            return err;
        }
    }
    return fd;
}

int target_connect(int fd)
{
    if (connect(fd, (struct sockaddr *)&target, target_len) < 0 && errno != EINPROGRESS) {
        return -errno;
    }
    return 0;
}

int start_connect(unsigned src)
{
    int fd = target_socket(SOCK_STREAM);
    if (fd < 0) {
        return fd;
    }
    int one = 1;
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
    int err = target_connect(fd);
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

/* Opens n connections, at most CONNECT_WINDOW in flight so listen backlogs
 * do not overflow (a dropped SYN costs a 1 s retransmit). fds[i] is the
 * connected fd or -1. Returns how many connected. */
int connect_many(int *fds, int n, unsigned src_base)
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

int close_at_deadline(int fd, uint64_t started, uint64_t now)
{
    if (fd < 0) {
        return 0;
    }
    close(fd);
    return now - started > 1000000000u;
}

/* Raises the soft fd limit to the hard one and checks that need fds fit. */
int ensure_fd_limit(int need, const char *what)
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
