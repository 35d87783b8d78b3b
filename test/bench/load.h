/* troupe-load internals shared by its mode files (load_echo.c, load_hold.c,
 * load_churn.c, load_handshake.c, load_udp.c) and its TLS client (load_tls.c).
 * One process, plain globals: main sets the options before
 * any mode runs; after that they are only read. */
#ifndef TROUPE_BENCH_LOAD_H
#define TROUPE_BENCH_LOAD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum mode { MODE_ECHO, MODE_HOLD, MODE_CHURN, MODE_HANDSHAKE, MODE_UDP };
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
    bool tls;                /* echo: TLS 1.3 client (handshake mode: always) */
    double dgram_timeout_ms; /* udp: a datagram unanswered this long is lost */
};

extern struct opts opt;                   /* set by main, read-only afterwards */
extern const char *const codec_names[];   /* indexed by enum codec */
extern volatile sig_atomic_t interrupted; /* SIGINT or SIGTERM seen */

uint64_t now_ns(void);

/* A run's clock: the measurement window (after the warm-up, for the
 * duration) and the loader's own CPU use and CPU wait over the run. */
struct run_clock {
    uint64_t t0, t_start, t_end; /* start, window start, window end (ns) */
    uint64_t runq0;
    double cpu0;
};
void run_clock_start(struct run_clock *c);
/* Wall seconds since the start; loader CPU and CPU wait in % of them. */
double run_clock_stop(const struct run_clock *c, double *cpu_pct, double *wait_pct);
bool run_clock_in_window(const struct run_clock *c, uint64_t now);
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

/* Resolves HOST:PORT or [V6]:PORT as the target, or takes unix:/PATH (a
 * Unix socket; unix:@NAME is abstract); refuses non-loopback addresses. */
int parse_target(const char *spec);
int target_family(void);
/* A socket of `type` (SOCK_STREAM or SOCK_DGRAM) in the target's family,
 * non-blocking: TCP_NODELAY for TCP; a Unix datagram socket is autobound so
 * replies can reach it. Returns the fd or -errno. */
int target_socket(int type);
/* connect(2) to the target; 0 (done or in progress) or -errno. */
int target_connect(int fd);
/* Starts a non-blocking connect to the target from 127.0.0.(1 + src % 254)
 * for an IPv4 target. Returns the fd (connected or in progress) or -errno. */
int start_connect(unsigned src);
/* Opens n connections; fds[i] is the fd or -1. Returns how many connected. */
int connect_many(int *fds, int n, unsigned src_base);
/* Closes a connection still open at the run's deadline (fd < 0: none).
 * A round trip cut off there is not counted; one that had waited for over
 * a second is a failure (a server that never answers): returns 1 for it. */
int close_at_deadline(int fd, uint64_t started, uint64_t now);
/* Raises the soft fd limit to the hard one; -1 (reported) if need won't fit. */
int ensure_fd_limit(int need, const char *what);

/* Reads from or writes to a connection: plain read/write when ssl is
 * NULL, else through the TLS session. Returns bytes, 0 at the peer's end
 * of stream (close_notify or FIN), or -1 with errno (EAGAIN when the
 * socket or TLS needs more; EPROTO for a TLS failure, reported). */
struct ssl_st;
ssize_t io_read(struct ssl_st *ssl, int fd, void *buf, size_t n);
ssize_t io_write(struct ssl_st *ssl, int fd, const void *buf, size_t n);
/* True while TLS holds bytes already read that epoll will not report. */
bool io_pending(struct ssl_st *ssl);

/* The TLS client (load_tls.c): TLS 1.3 only, no certificate verification,
 * no session cache, so every handshake is a full one. */
int tls_client_init(void);
void tls_client_free(void);
/* A client session on a connected fd, or NULL (reported). */
struct ssl_st *tls_client_new(int fd);
/* Advances the handshake: 1 done, 0 waiting (*want is EPOLLIN or EPOLLOUT),
 * -1 failed (reported). */
int tls_handshake_step(struct ssl_st *ssl, uint32_t *want);
/* Handshakes on n connected fds at once; ssls[i] gets the session, or the
 * fd is closed and set to -1. Returns how many completed. */
int tls_handshake_all(int *fds, struct ssl_st **ssls, int n);
/* Sends close_notify (best effort) and frees the session; NULL is a no-op. */
void tls_close_notify(struct ssl_st *ssl);

/* The payload bytes of message (id, seq): opt.size of them. */
const unsigned char *pattern_at(uint64_t id, uint64_t seq);

int run_echo(void);
int run_hold(void);
int run_churn(void);
int run_handshake(void);
int run_udp(void);

#endif
