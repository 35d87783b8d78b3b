/* ref-tls: a minimal single-thread TLS echo server (BoringSSL over epoll),
 * the reference that troupe-echo --tls is measured against for handshakes
 * per second (docs/benchmarks.md, "Transports").
 *
 * Usage: ref-tls --cert CERT --key KEY [--listen HOST:PORT]
 *
 * The TLS settings are troupe's defaults (net/tls_ctx.c): TLS 1.2 to 1.3,
 * its TLS 1.2 cipher list, groups X25519:P-256:P-384, partial writes with
 * a moving write buffer, no client certificate, session tickets on (as
 * BoringSSL sends them), one session id context. What it does per
 * connection: a non-blocking accept, SSL_do_handshake whenever epoll says
 * the socket is ready for what BoringSSL waits for, then echo: every
 * SSL_read (and the records BoringSSL still holds) is written back with
 * SSL_write; only what the socket did not take is queued, and EPOLLOUT is
 * on only while something is. A close_notify is answered with one.
 * Level-triggered epoll; SIGINT and SIGTERM end the loop. */

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ref_common.h"

#define READ_BUF (64 * 1024)
#define READ_BUDGET (256 * 1024)
#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
/* troupe's defaults, net/tls_ctx.c DEFAULT_CIPHERS and DEFAULT_GROUPS. */
#define CIPHERS                                                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define GROUPS "X25519:P-256:P-384"

struct conn {
    int fd;
    SSL *ssl;
    bool ready;      /* handshake done */
    uint32_t events; /* what epoll watches now */
    char *out;       /* plaintext SSL_write has not taken yet, or NULL */
    size_t out_off, out_len;
};

static volatile sig_atomic_t stop_requested;
static int epfd = -1;
static unsigned char rbuf[READ_BUF];
static unsigned long long handshakes, failures;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static SSL_CTX *make_ctx(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    static const unsigned char sid_ctx[] = "troupe";
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_strict_cipher_list(ctx, CIPHERS) || !SSL_CTX_set1_curves_list(ctx, GROUPS) ||
        !SSL_CTX_use_certificate_chain_file(ctx, cert) ||
        !SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) ||
        !SSL_CTX_check_private_key(ctx) ||
        !SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1)) {
        uint32_t e = ERR_peek_last_error();
        fprintf(stderr, "ref-tls: TLS context: %s\n",
                e != 0 ? ERR_reason_error_string(e) : "out of memory");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

static void conn_free(struct conn *c)
{
    SSL_free(c->ssl);
    ERR_clear_error();
    close(c->fd); /* also removes it from the epoll set */
    free(c->out);
    free(c);
}

static int set_events(struct conn *c, uint32_t events)
{
    return ref_set_events(epfd, c->fd, c, &c->events, events);
}

/* 1: BoringSSL waits for the socket (events set); -1: a failure. */
static int wait_for(struct conn *c, int ret)
{
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ) {
        return set_events(c, EPOLLIN) < 0 ? -1 : 1;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        return set_events(c, EPOLLOUT) < 0 ? -1 : 1;
    }
    return -1;
}

/* Writes data[0..n) record by record; queues what the socket refused (a
 * retry must present the same bytes: the queue does). */
static int send_plain(struct conn *c, const unsigned char *data, size_t n)
{
    size_t done = 0;
    while (done < n) {
        int w = SSL_write(c->ssl, data + done, (int)(n - done));
        if (w <= 0) {
            if (SSL_get_error(c->ssl, w) != SSL_ERROR_WANT_WRITE) {
                return -1;
            }
            break;
        }
        done += (size_t)w;
    }
    if (done == n) {
        return 0;
    }
    c->out = malloc(n - done);
    if (c->out == NULL) {
        return -1;
    }
    memcpy(c->out, data + done, n - done);
    c->out_off = 0;
    c->out_len = n - done;
    return set_events(c, EPOLLOUT);
}

static int flush_out(struct conn *c)
{
    while (c->out_off < c->out_len) {
        int w = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
        if (w <= 0) {
            return SSL_get_error(c->ssl, w) == SSL_ERROR_WANT_WRITE ? 0 : -1;
        }
        c->out_off += (size_t)w;
    }
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = 0;
    return set_events(c, EPOLLIN);
}

/* Echoes what TLS has for us. Returns -1 when the connection must go. */
static int echo_input(struct conn *c)
{
    size_t total = 0;
    do {
        int n = SSL_read(c->ssl, rbuf, sizeof(rbuf));
        if (n <= 0) {
            if (SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN) {
                SSL_shutdown(c->ssl); /* answer close_notify with ours */
                return -1;
            }
            return wait_for(c, n) < 0 ? -1 : 0;
        }
        if (send_plain(c, rbuf, (size_t)n) < 0) {
            return -1;
        }
        total += (size_t)n;
    } while (c->out == NULL && SSL_has_pending(c->ssl) && total < READ_BUDGET);
    return 0;
}

static int on_ready(struct conn *c)
{
    if (!c->ready) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            if (wait_for(c, r) < 0) {
                failures++;
                return -1;
            }
            return 0;
        }
        c->ready = true;
        handshakes++;
        if (set_events(c, EPOLLIN) < 0) {
            return -1;
        }
    }
    if (c->out != NULL) {
        return flush_out(c); /* reading waits until the queue drained */
    }
    return echo_input(c);
}

static void on_accept(int lfd, SSL_CTX *ctx)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                usleep(1000); /* level-triggered: no hot spin on a full table */
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        SSL *ssl = c != NULL ? SSL_new(ctx) : NULL;
        if (ssl == NULL || !SSL_set_fd(ssl, fd)) {
            SSL_free(ssl);
            free(c);
            close(fd);
            continue;
        }
        SSL_set_accept_state(ssl);
        c->fd = fd;
        c->ssl = ssl;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            conn_free(c);
        }
    }
}

int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:0", *cert = NULL, *key = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0) {
            listen_spec = argv[i + 1];
        } else if (strcmp(argv[i], "--cert") == 0) {
            cert = argv[i + 1];
        } else if (strcmp(argv[i], "--key") == 0) {
            key = argv[i + 1];
        } else {
            break;
        }
    }
    if (cert == NULL || key == NULL || argc % 2 == 0) {
        fprintf(stderr, "usage: ref-tls --cert CERT --key KEY [--listen HOST:PORT]\n");
        return 2;
    }
    ref_on_signals(on_signal);

    SSL_CTX *ctx = make_ctx(cert, key);
    int lfd = ctx != NULL ? ref_open("ref-tls", listen_spec, SOCK_STREAM) : -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (lfd < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
        return 1;
    }
    ref_print_bound(lfd, "listening on");

    struct epoll_event evs[MAX_EVENTS];
    while (!stop_requested) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR) {
            perror("ref-tls: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                on_accept(lfd, ctx);
            } else if (on_ready(c) < 0) {
                conn_free(c);
            }
        }
    }
    printf("stopped: handshakes=%llu failed=%llu\n", handshakes, failures);
    close(lfd);
    close(epfd);
    SSL_CTX_free(ctx);
    return 0;
}
