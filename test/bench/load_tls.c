/* troupe-load: the TLS client (BoringSSL) and the byte I/O every stream
 * mode uses, plain or through TLS.
 *
 * The client offers TLS 1.3 only, verifies nothing (the benches' server
 * certificates are self-signed; BoringSSL still checks the server's
 * CertificateVerify signature, which is most of a client's handshake CPU)
 * and keeps no sessions, so every handshake is a full one.
 *
 * Reads go through a memory BIO filled by one read(2) of whatever the
 * socket holds: BoringSSL over a socket BIO reads a record's 5-byte header
 * and its body with two system calls, which would make the loader, the
 * bottleneck of these benches, pay a third more per request than the
 * server it measures. Writes go straight to the socket. */

#include "load.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define READ_AHEAD (64 * 1024)

static SSL_CTX *client_ctx;
static __thread unsigned char ahead[READ_AHEAD];

/* Reports BoringSSL's reason for a failed call and clears its queue. */
static void report_ssl(const char *what, SSL *ssl, int ret)
{
    int e = SSL_get_error(ssl, ret);
    uint32_t code = ERR_peek_last_error();
    int saved = errno;
    if (e == SSL_ERROR_SYSCALL && code == 0) {
        report_error("tls %s: %s", what,
                     ret == 0 || saved == 0 ? "peer closed without close_notify" : strerror(saved));
    } else {
        report_error("tls %s: %s", what, code != 0 ? ERR_reason_error_string(code) : "TLS failure");
    }
    ERR_clear_error();
}

int tls_client_init(void)
{
    client_ctx = SSL_CTX_new(TLS_method());
    if (client_ctx == NULL || !SSL_CTX_set_min_proto_version(client_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(client_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set1_curves_list(client_ctx, "X25519:P-256:P-384")) {
        fprintf(stderr, "troupe-load: cannot make the TLS client context\n");
        return -1;
    }
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(client_ctx, SSL_SESS_CACHE_OFF);
    /* Same write semantics as the loader's plain path: a refused write is
     * retried later with the same bytes, possibly from another buffer. */
    SSL_CTX_set_mode(client_ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

void tls_client_free(void)
{
    SSL_CTX_free(client_ctx);
    client_ctx = NULL;
}

SSL *tls_client_new(int fd)
{
    SSL *ssl = SSL_new(client_ctx);
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new_socket(fd, BIO_NOCLOSE);
    if (ssl == NULL || rbio == NULL || wbio == NULL) {
        report_error("tls: cannot make a client session");
        ERR_clear_error();
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_bio(ssl, rbio, wbio); /* ssl owns both */
    SSL_set_connect_state(ssl);
    return ssl;
}

/* After a WANT_READ: one read(2) of what the socket has into the memory
 * BIO. Returns 1 (something to retry with: data, or the end of stream),
 * 0 (nothing yet: errno EAGAIN) or -1 (errno set). */
static int read_ahead(SSL *ssl)
{
    int fd = SSL_get_wfd(ssl);
    ssize_t n = read(fd, ahead, sizeof(ahead));
    if (n > 0) {
        return BIO_write(SSL_get_rbio(ssl), ahead, (int)n) == (int)n ? 1 : -1;
    }
    if (n == 0) {
        BIO_set_mem_eof_return(SSL_get_rbio(ssl), 0); /* empty now means the end */
        return 1;
    }
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

int tls_handshake_step(SSL *ssl, uint32_t *want)
{
    int r;
    while ((r = SSL_do_handshake(ssl)) != 1 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ) {
        int f = read_ahead(ssl);
        if (f == 0) {
            *want = EPOLLIN;
            return 0;
        }
        if (f < 0) {
            report_error("tls handshake: read: %s", strerror(errno));
            return -1;
        }
    }
    if (r == 1) {
        if (SSL_session_reused(ssl)) {
            report_error("tls: a session was resumed; this client asks for full handshakes");
            return -1;
        }
        return 1;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        return 0;
    }
    report_ssl("handshake", ssl, r);
    return -1;
}

int tls_handshake_all(int *fds, SSL **ssls, int n)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int pending = 0, done = 0;
    for (int i = 0; i < n; i++) {
        ssls[i] = NULL;
        if (fds[i] < 0) {
            continue;
        }
        uint32_t want = EPOLLOUT;
        int rc = -1;
        if (ep >= 0 && (ssls[i] = tls_client_new(fds[i])) != NULL) {
            rc = tls_handshake_step(ssls[i], &want);
        }
        struct epoll_event ev = {.events = want, .data.u32 = (uint32_t)i};
        if (rc == 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) == 0) {
            pending++;
        } else if (rc != 1) {
            SSL_free(ssls[i]);
            ssls[i] = NULL;
            close(fds[i]);
            fds[i] = -1;
        }
    }
    uint64_t deadline = now_ns() + (uint64_t)(opt.connect_timeout_s * 1e9);
    struct epoll_event evs[MAX_EVENTS];
    while (pending > 0 && now_ns() < deadline && !interrupted) {
        int m = epoll_wait(ep, evs, MAX_EVENTS, 100);
        for (int k = 0; k < m; k++) {
            int i = (int)evs[k].data.u32;
            uint32_t want = 0;
            int rc = tls_handshake_step(ssls[i], &want);
            if (rc == 0) {
                struct epoll_event ev = {.events = want, .data.u32 = (uint32_t)i};
                epoll_ctl(ep, EPOLL_CTL_MOD, fds[i], &ev);
                continue;
            }
            epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
            pending--;
            if (rc < 0) {
                SSL_free(ssls[i]);
                ssls[i] = NULL;
                close(fds[i]);
                fds[i] = -1;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0 && ssls[i] != NULL && !SSL_is_init_finished(ssls[i])) {
            SSL_free(ssls[i]); /* timed out */
            ssls[i] = NULL;
            close(fds[i]);
            fds[i] = -1;
        }
        done += fds[i] >= 0;
    }
    if (ep >= 0) {
        close(ep);
    }
    return done;
}

void tls_close_notify(SSL *ssl)
{
    if (ssl != NULL) {
        SSL_shutdown(ssl); /* sends close_notify; the peer's is not awaited */
        ERR_clear_error();
        SSL_free(ssl);
    }
}

/* Maps a failed SSL_read or SSL_write to the read(2)/write(2) contract. */
static ssize_t ssl_result(SSL *ssl, int r, const char *what)
{
    int e = SSL_get_error(ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        report_ssl(what, ssl, r);
        errno = EPROTO;
        return -1;
    }
}

ssize_t io_read(SSL *ssl, int fd, void *buf, size_t n)
{
    if (ssl == NULL) {
        return read(fd, buf, n);
    }
    int r;
    while ((r = SSL_read(ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n)) <= 0 &&
           SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ) {
        int f = read_ahead(ssl);
        if (f <= 0) {
            if (f == 0) {
                errno = EAGAIN;
            }
            return -1;
        }
    }
    return r > 0 ? r : ssl_result(ssl, r, "read");
}

ssize_t io_write(SSL *ssl, int fd, const void *buf, size_t n)
{
    if (ssl == NULL) {
        return write(fd, buf, n);
    }
    int r = SSL_write(ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    return r > 0 ? r : ssl_result(ssl, r, "write");
}

bool io_pending(SSL *ssl)
{
    return ssl != NULL && (SSL_has_pending(ssl) || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0);
}
