/* troupe-attack: hostile peers against a line-echo server on loopback, to
 * see what they cost it (docs/benchmarks.md, "Under attack").
 *
 *   troupe-attack --connect HOST:PORT --mode partial|slowloris|noread
 *                 [--conns N] [--bytes B] [--interval S] [--duration S]
 *                 [--server-pid PID]
 *
 * - partial: every connection sends B bytes (default 600,000) of a line
 *   that never ends, then holds the connection open.
 * - slowloris: every connection sends one byte every S seconds (default
 *   5), never completing a line.
 * - noread: every connection sends B-byte lines (default 4096) as fast as
 *   the server takes them and never reads a reply.
 * Once a second it prints how many attackers are still connected, the
 * server's resident memory (VmRSS of --server-pid) and a normal client's
 * round trip: a fresh connection sending one short line and timing its
 * echo (-1: no answer within 2 s). The last line is
 * "RESULT mode=... open=... rss_mb_max=... probe_ms_max=... probe_fail=...".
 * Loopback targets only; stops by itself after --duration (default 30). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { PARTIAL, SLOWLORIS, NOREAD };

static struct sockaddr_in target;
static char *payload; /* what each connection sends: `bytes` of 'x' (noread: a line) */
static size_t payload_len;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: troupe-attack --connect 127.0.0.1:PORT --mode partial|slowloris|noread "
                    "[--conns N] [--bytes B] [--interval S] [--duration S] [--server-pid PID]\n");
    exit(2);
}

static int parse_target(const char *s)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) {
        return -1;
    }
    /* 127.0.0.0/8 only: this tool floods what it points at. */
    return (ntohl(target.sin_addr.s_addr) >> 24) == 127 ? 0 : -1;
}

/* A blocking connect, then non-blocking. Returns the fd or -1. */
static int dial(bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (nonblock) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    return fd;
}

/* A normal client's round trip in ms, or -1. */
static double probe(void)
{
    double t0 = now_s();
    int fd = dial(false);
    if (fd < 0) {
        return -1;
    }
    const char line[] = "probe\n";
    char buf[16];
    size_t got = 0;
    if (send(fd, line, sizeof(line) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(line) - 1)) {
        while (got < sizeof(line) - 1) {
            ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);
            if (r <= 0) {
                break;
            }
            got += (size_t)r;
        }
    }
    close(fd);
    bool ok = got == sizeof(line) - 1 && memcmp(buf, line, got) == 0;
    return ok ? (now_s() - t0) * 1000 : -1;
}

static long rss_mb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = pid > 0 ? fopen(path, "r") : NULL;
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb < 0 ? -1 : kb / 1024;
}

/* Whether the server closed fd (EOF or reset); drains what it sent. */
static bool gone(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r > 0) {
            continue;
        }
        return r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
}

/* Sends the last *left bytes of the payload without blocking (one byte
 * at most when drip); false when the socket is dead. */
static bool push(int fd, size_t *left, bool drip)
{
    while (*left > 0) {
        size_t n = drip ? 1 : *left;
        ssize_t r = send(fd, payload + payload_len - *left, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r > 0) {
            *left -= (size_t)r;
            if (drip) {
                return true;
            }
            continue;
        }
        return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
    return true;
}

int main(int argc, char **argv)
{
    enum mode mode = PARTIAL;
    int conns = 1000, pid = 0;
    size_t bytes = 0;
    double interval = 5, duration = 30;
    const char *connect_to = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--connect") == 0) {
            connect_to = v;
        } else if (strcmp(a, "--mode") == 0) {
            mode = strcmp(v, "slowloris") == 0 ? SLOWLORIS : strcmp(v, "noread") == 0 ? NOREAD : PARTIAL;
        } else if (strcmp(a, "--conns") == 0) {
            conns = atoi(v);
        } else if (strcmp(a, "--bytes") == 0) {
            bytes = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--interval") == 0) {
            interval = atof(v);
        } else if (strcmp(a, "--duration") == 0) {
            duration = atof(v);
        } else if (strcmp(a, "--server-pid") == 0) {
            pid = atoi(v);
        } else {
            usage();
        }
    }
    if (connect_to == NULL || parse_target(connect_to) < 0 || conns <= 0) {
        usage();
    }
    if (bytes == 0) {
        bytes = mode == NOREAD ? 4096 : 600000;
    }
    payload_len = bytes;
    payload = malloc(payload_len);
    if (payload == NULL) {
        return 1;
    }
    memset(payload, 'x', payload_len);
    if (mode == NOREAD) {
        payload[payload_len - 1] = '\n';
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    int *fds = calloc((size_t)conns, sizeof(int));
    size_t *left = calloc((size_t)conns, sizeof(size_t));
    int open = 0;
    for (int i = 0; i < conns; i++) {
        fds[i] = dial(true);
        left[i] = bytes;
        open += fds[i] >= 0;
    }
    const char *names[] = {"partial", "slowloris", "noread"};
    printf("mode=%s conns=%d connected=%d bytes=%zu\n", names[mode], conns, open, bytes);
    double t0 = now_s(), next_tick = t0 + 1, next_drip = t0;
    long rss_max = 0;
    double probe_max = 0;
    int probe_fail = 0;
    while (now_s() - t0 < duration) {
        double t = now_s();
        bool drip = mode == SLOWLORIS && t >= next_drip;
        if (drip) {
            next_drip = t + interval;
        }
        for (int i = 0; i < conns; i++) {
            if (fds[i] < 0) {
                continue;
            }
            if (mode != PARTIAL && left[i] == 0) {
                left[i] = bytes; /* noread: one more line; slowloris: more drips */
            }
            bool alive = mode != SLOWLORIS || drip ? push(fds[i], &left[i], drip) : true;
            if (!alive || (mode != NOREAD && gone(fds[i]))) {
                close(fds[i]);
                fds[i] = -1;
                open--;
            }
        }
        if (t >= next_tick) {
            next_tick += 1;
            long rss = rss_mb(pid);
            double ms = probe();
            rss_max = rss > rss_max ? rss : rss_max;
            probe_fail += ms < 0;
            probe_max = ms > probe_max ? ms : probe_max;
            printf("t=%.0f open=%d rss_mb=%ld probe_ms=%.1f\n", t - t0, open, rss, ms);
            fflush(stdout);
        }
        poll(NULL, 0, 10); /* the pace of the attack, not a wait for a result */
    }
    printf("RESULT mode=%s conns=%d open=%d rss_mb_max=%ld probe_ms_max=%.1f probe_fail=%d\n",
           names[mode], conns, open, rss_max, probe_max, probe_fail);
    for (int i = 0; i < conns; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    free(fds);
    free(left);
    free(payload);
    return 0;
}
