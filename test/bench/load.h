/* troupe-load internals shared by its mode files (load_echo.c, load_hold.c,
 * load_churn.c). One process, plain globals: main sets the options before
 * any mode runs; after that they are only read. */
#ifndef TROUPE_BENCH_LOAD_H
#define TROUPE_BENCH_LOAD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum mode { MODE_ECHO, MODE_HOLD, MODE_CHURN };
enum codec { CODEC_RAW, CODEC_LINE, CODEC_LENGTH };

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

extern struct opts opt;                   /* set by main, read-only afterwards */
extern const char *const codec_names[];   /* indexed by enum codec */
extern volatile sig_atomic_t interrupted; /* SIGINT or SIGTERM seen */

uint64_t now_ns(void);
double cpu_seconds(void);    /* user + system time of the whole process */
uint64_t runq_wait_ns(void); /* this thread's run-queue wait so far */
/* Prints to stderr, at most MAX_REPORTED_ERRORS times per process. */
void report_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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

void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *from);
double hist_quantile_us(const struct hist *h, double q); /* 0 if empty */

/* Messages: SIZE payload bytes from the pattern, framed by opt.codec. */
int pattern_init(size_t size);
void pattern_free(void);
size_t frame_wire(void); /* wire bytes of one message */
size_t frame_build(char *dst, uint64_t id, uint64_t seq);

/* Expected reply stream position of one connection. */
struct rx {
    uint64_t seq; /* message whose reply is arriving */
    size_t off;   /* wire bytes of it received so far */
};

/* Checks data against the reply to (id, rx->seq), up to the end of that
 * frame. Returns the bytes consumed (advancing rx; seq goes up when the
 * frame completes), or -1 on a mismatch, which it reports. */
ssize_t rx_feed(struct rx *rx, uint64_t id, const unsigned char *p, size_t n);

/* Resolves HOST:PORT or [V6]:PORT as the target; refuses non-loopback. */
int parse_target(const char *spec);
int target_family(void);
/* Starts a non-blocking connect to the target from 127.0.0.(1 + src % 254)
 * for an IPv4 target. Returns the fd (connected or in progress) or -errno. */
int start_connect(unsigned src);
/* Opens n connections; fds[i] is the fd or -1. Returns how many connected. */
int connect_many(int *fds, int n, unsigned src_base);
/* Raises the soft fd limit to the hard one; -1 (reported) if need won't fit. */
int ensure_fd_limit(int need, const char *what);

int run_echo(void);
int run_hold(void);
int run_churn(void);

#endif
