/* troupe-fanout: chat fan-out load over IRC (or Redis pub/sub), measuring
 * deliveries per second and the delivery latency (sent -> received by
 * another member), every line checked for its sender and sequence.
 *
 *   troupe-fanout --connect 127.0.0.1:PORT [--proto irc|redis] [--channels R]
 *                 [--users U] [--rate L] [--duration S] [--warmup S] [--threads T]
 *
 * R channels x U users each; every user sends L lines a second to its
 * channel (spread evenly in time), each "<sender> <seq> <send time ns>"
 * plus padding to 64 bytes. Every other member must receive it: IRC
 * excludes the sender, so a channel's line is due to U - 1 users; with
 * Redis each user is a subscriber connection plus a publisher connection,
 * and the publisher's own subscriber receives it too (U). After the run
 * the loader waits for stragglers, then counts what never came as lost.
 * Prints "RESULT proto=... deliveries_per_s=... p50_us p99_us max_us
 * lost=... loader_cpu_pct=... loader_wait_pct=... errors=...", the last
 * two over the measured window (CPU: % of one core, all threads; wait: %
 * of the window per thread spent runnable but without a CPU). Says
 * "troupe-fanout: window open" and "... window closed" on stderr as the
 * measured window begins and ends. Loopback targets only; stops by itself. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
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

enum proto { IRC, REDIS };

typedef struct user {
    int rx, tx;        /* receiving and sending fds (the same for IRC) */
    int id, chan;
    uint64_t next_ns;  /* next send */
    uint64_t seq;
    char in[65536];
    size_t in_len;
} user;

typedef struct worker {
    pthread_t th;
    user *users;
    int n;
    int ep;
    uint64_t received, in_window, errors;
    uint64_t *lat;     /* latencies (ns) inside the window */
    size_t nlat, cap;
} worker;

static struct sockaddr_in target;
static enum proto proto = IRC;
static int channels = 1, users_per = 100, threads = 1;
static double rate = 1, duration = 10, warmup = 2;
static uint64_t t_start, t_from, t_to, t_stop;
static uint64_t sent_total, sent_in_window; /* atomics */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t r = send(fd, s, n, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                struct pollfd p = {fd, POLLOUT, 0};
                poll(&p, 1, 1000);
                continue;
            }
            return -1;
        }
        s += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Blocking until `want` appears in what fd sends (setup only). */
static int wait_for(int fd, const char *want)
{
    char buf[8192];
    size_t len = 0;
    uint64_t end = now_ns() + 10000000000ull;
    while (now_ns() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (r <= 0) {
            return -1;
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, want) != NULL) {
            return 0;
        }
        if (len > sizeof(buf) / 2) { /* keep the tail */
            memmove(buf, buf + len - 256, 256);
            len = 256;
        }
    }
    return -1;
}

static int setup_user(user *u)
{
    char line[256];
    u->rx = dial();
    if (u->rx < 0) {
        return -1;
    }
    if (proto == IRC) {
        u->tx = u->rx;
        int n = snprintf(line, sizeof(line), "NICK u%d\r\nUSER u%d 0 * :load\r\nJOIN #c%d\r\n",
                         u->id, u->id, u->chan);
        char want[32];
        snprintf(want, sizeof(want), " 366 u%d ", u->id);
        return send_all(u->rx, line, (size_t)n) == 0 ? wait_for(u->rx, want) : -1;
    }
    u->tx = dial();
    int n = snprintf(line, sizeof(line), "SUBSCRIBE c%d\r\n", u->chan);
    return u->tx >= 0 && send_all(u->rx, line, (size_t)n) == 0 ? wait_for(u->rx, "subscribe") : -1;
}

static void send_line(worker *w, user *u, uint64_t now)
{
    char body[96], line[256];
    int b = snprintf(body, sizeof(body), "%d %llu %llu", u->id, (unsigned long long)u->seq,
                     (unsigned long long)now);
    while (b < 64) {
        body[b++] = '.';
    }
    body[b] = '\0';
    int n = proto == IRC
                ? snprintf(line, sizeof(line), "PRIVMSG #c%d :%s\r\n", u->chan, body)
                : snprintf(line, sizeof(line), "*3\r\n$7\r\nPUBLISH\r\n$%d\r\nc%d\r\n$%d\r\n%s\r\n",
                           snprintf(NULL, 0, "c%d", u->chan), u->chan, b, body);
    if (send_all(u->tx, line, (size_t)n) < 0) {
        w->errors++;
        return;
    }
    u->seq++;
    __atomic_fetch_add(&sent_total, 1, __ATOMIC_RELAXED);
    if (now >= t_from && now < t_to) {
        __atomic_fetch_add(&sent_in_window, 1, __ATOMIC_RELAXED);
    }
}

/* One delivered line's payload "<id> <seq> <ns>..." */
static void delivered(worker *w, const char *p, uint64_t now)
{
    unsigned long long id, seq, ns;
    if (sscanf(p, "%llu %llu %llu", &id, &seq, &ns) != 3) {
        return; /* not ours (a notice, a subscribe answer) */
    }
    w->received++;
    if (ns >= t_from && ns < t_to) {
        w->in_window++;
        if (w->nlat == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 1 << 16;
            w->lat = realloc(w->lat, w->cap * sizeof(*w->lat));
        }
        w->lat[w->nlat++] = now - ns;
    }
}

static void on_input(worker *w, user *u)
{
    for (;;) {
        ssize_t r = recv(u->rx, u->in + u->in_len, sizeof(u->in) - u->in_len, MSG_DONTWAIT);
        if (r <= 0) {
            if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                w->errors++;
                epoll_ctl(w->ep, EPOLL_CTL_DEL, u->rx, NULL);
            }
            break;
        }
        u->in_len += (size_t)r;
        uint64_t now = now_ns();
        char *start = u->in, *end = u->in + u->in_len, *nl;
        while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
            *nl = '\0';
            if (proto == IRC) {
                if (strncmp(start, "PING", 4) == 0) {
                    start[1] = 'O';
                    send_all(u->rx, start, (size_t)(nl - start));
                    send_all(u->rx, "\n", 1);
                }
                char *text = strstr(start, " PRIVMSG #");
                text = text != NULL ? strstr(text, " :") : NULL;
                if (text != NULL) {
                    delivered(w, text + 2, now);
                }
            } else if (start[0] >= '0' && start[0] <= '9') {
                delivered(w, start, now); /* RESP bulk payload line */
            }
            start = nl + 1;
        }
        u->in_len = (size_t)(end - start);
        memmove(u->in, start, u->in_len);
    }
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= t_stop) {
            break;
        }
        for (int i = 0; i < w->n; i++) {
            user *u = &w->users[i];
            if (now < t_to && now >= u->next_ns) {
                send_line(w, u, now);
                u->next_ns += (uint64_t)(1e9 / rate);
            }
        }
        int k = epoll_wait(w->ep, evs, 256, 1);
        now = now_ns();
        for (int i = 0; i < k; i++) {
            on_input(w, evs[i].data.ptr);
        }
    }
    return NULL;
}

static void sleep_until(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* This process's CPU seconds (all threads, user + system), and how long
 * its threads have waited on a run queue (schedstat field 2, ns): time
 * they could have run but another task had the CPU. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static uint64_t runq_wait_ns(void)
{
    uint64_t sum = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[64];
        unsigned long long run, wait;
        snprintf(path, sizeof(path), "/proc/self/task/%.20s/schedstat", e->d_name);
        FILE *f = e->d_name[0] != '.' ? fopen(path, "r") : NULL;
        if (f != NULL) {
            if (fscanf(f, "%llu %llu", &run, &wait) == 2) {
                sum += wait;
            }
            fclose(f);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return sum;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *to = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--connect") == 0) {
            to = v;
        } else if (strcmp(a, "--proto") == 0) {
            proto = strcmp(v, "redis") == 0 ? REDIS : IRC;
        } else if (strcmp(a, "--channels") == 0) {
            channels = atoi(v);
        } else if (strcmp(a, "--users") == 0) {
            users_per = atoi(v);
        } else if (strcmp(a, "--rate") == 0) {
            rate = atof(v);
        } else if (strcmp(a, "--duration") == 0) {
            duration = atof(v);
        } else if (strcmp(a, "--warmup") == 0) {
            warmup = atof(v);
        } else if (strcmp(a, "--threads") == 0) {
            threads = atoi(v);
        }
    }
    char host[64];
    const char *colon = to != NULL ? strrchr(to, ':') : NULL;
    if (colon == NULL || (size_t)(colon - to) >= sizeof(host) || channels < 1 || users_per < 2 ||
        rate <= 0 || threads < 1) {
        fprintf(stderr, "usage: troupe-fanout --connect 127.0.0.1:PORT [--proto irc|redis] "
                        "[--channels R] [--users U] [--rate L] [--duration S] [--warmup S] "
                        "[--threads T]\n");
        return 2;
    }
    memcpy(host, to, (size_t)(colon - to));
    host[colon - to] = '\0';
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1 ||
        (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "troupe-fanout: loopback IPv4 targets only\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int total = channels * users_per;
    user *all = calloc((size_t)total, sizeof(*all));
    for (int i = 0; i < total; i++) {
        all[i].id = i;
        all[i].chan = i % channels;
        if (setup_user(&all[i]) < 0) {
            fprintf(stderr, "troupe-fanout: user %d could not join (%s)\n", i, strerror(errno));
            return 1;
        }
    }
    worker *ws = calloc((size_t)threads, sizeof(*ws));
    t_start = now_ns() + 100000000ull;
    t_from = t_start + (uint64_t)(warmup * 1e9);
    t_to = t_from + (uint64_t)(duration * 1e9);
    t_stop = t_to + 3000000000ull; /* stragglers */
    for (int t = 0; t < threads; t++) {
        worker *w = &ws[t];
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->users = all + (size_t)t * (size_t)total / (size_t)threads;
        w->n = (int)((size_t)(t + 1) * (size_t)total / (size_t)threads -
                     (size_t)t * (size_t)total / (size_t)threads);
        for (int i = 0; i < w->n; i++) {
            user *u = &w->users[i];
            fcntl(u->rx, F_SETFL, fcntl(u->rx, F_GETFL) | O_NONBLOCK);
            u->next_ns = t_start + (uint64_t)((double)u->id / total * 1e9 / rate);
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = u};
            epoll_ctl(w->ep, EPOLL_CTL_ADD, u->rx, &ev);
        }
    }
    for (int t = 0; t < threads; t++) {
        pthread_create(&ws[t].th, NULL, run_worker, &ws[t]);
    }
    /* The loader's own CPU over the measured window: near 100% per thread
     * means it is saturated, and its latencies are partly its own queue. */
    sleep_until(t_from);
    double cpu0 = cpu_seconds();
    uint64_t wait0 = runq_wait_ns();
    fprintf(stderr, "troupe-fanout: window open\n"); /* scripts sample the server here */
    sleep_until(t_to);
    fprintf(stderr, "troupe-fanout: window closed\n");
    double cpu_pct = 100 * (cpu_seconds() - cpu0) / duration;
    double wait_pct = 100 * (double)(runq_wait_ns() - wait0) / 1e9 / duration / threads;
    uint64_t received = 0, in_window = 0, errors = 0;
    size_t nlat = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ws[t].th, NULL);
        received += ws[t].received;
        in_window += ws[t].in_window;
        errors += ws[t].errors;
        nlat += ws[t].nlat;
    }
    uint64_t *lat = malloc((nlat + 1) * sizeof(*lat));
    size_t k = 0;
    for (int t = 0; t < threads; t++) {
        memcpy(lat + k, ws[t].lat, ws[t].nlat * sizeof(*lat));
        k += ws[t].nlat;
    }
    qsort(lat, nlat, sizeof(*lat), cmp_u64);
    uint64_t per_line = proto == IRC ? (uint64_t)users_per - 1 : (uint64_t)users_per;
    uint64_t due = sent_total * per_line;
    double p50 = nlat ? lat[nlat / 2] / 1e3 : 0, p99 = nlat ? lat[nlat * 99 / 100] / 1e3 : 0;
    double mx = nlat ? lat[nlat - 1] / 1e3 : 0;
    printf("RESULT proto=%s channels=%d users=%d rate=%.2f duration_s=%.1f deliveries_per_s=%.0f "
           "p50_us=%.0f p99_us=%.0f max_us=%.0f sent=%llu due=%llu received=%llu lost=%llu "
           "loader_cpu_pct=%.0f loader_wait_pct=%.1f errors=%llu\n",
           proto == IRC ? "irc" : "redis", channels, users_per, rate, duration,
           in_window / duration, p50, p99, mx, (unsigned long long)sent_total,
           (unsigned long long)due, (unsigned long long)received,
           (unsigned long long)(due > received ? due - received : 0), cpu_pct, wait_pct,
           (unsigned long long)errors);
    return errors == 0 && received >= due ? 0 : 1;
}
