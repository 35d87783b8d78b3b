/* The TLS transport (BoringSSL), stacked on a connection's fd transport
 * (TCP or Unix stream): BoringSSL reads and writes the socket itself; the
 * connection sees plaintext.
 *
 * Reads: SSL_read returns one record at a time, so a read gathers every
 * record BoringSSL already holds before returning (no system call for
 * those), and `pending` tells the reader to go on while BoringSSL holds
 * bytes epoll will never report.
 * Writes: one record per SSL_write (partial-write mode), looping while
 * the socket takes them; small queued frames are gathered into one
 * record. A write that found the socket full must be retried with the
 * same bytes first: the send queue keeps them (`retry_same`). */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conn_impl.h"
#include "tls_impl.h"
#include "troupe/log.h"

#define CHUNK 16384 /* one full TLS record of plaintext */

typedef struct tls_conn {
    SSL *ssl;
    tr__tls_gen *gen;
    const tr__transport *under; /* the fd transport, back after close */
    bool shut_sent;
    char err[160];              /* the last failure's reason */
} tls_conn;

static tls_conn *T(const tr_conn *c)
{
    return c->tp_state;
}

/* Maps a failed SSL call. Keeps the reason, logs it and clears the error
 * queue on a failure; -EAGAIN when BoringSSL waits for the socket. */
static int ssl_fail(tr_conn *c, int ret, const char *stage)
{
    tls_conn *t = T(c);
    int e = SSL_get_error(t->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return -EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0; /* close_notify: a clean end */
    }
    int saved = errno;
    int rc = TR_ETLS;
    uint32_t code = ERR_peek_last_error();
    if (e == SSL_ERROR_SYSCALL && code == 0) {
        if (ret == 0 || saved == 0) {
            snprintf(t->err, sizeof(t->err), "peer closed without close_notify");
            rc = TR_ETLSTRUNC;
        } else {
            snprintf(t->err, sizeof(t->err), "%s", strerror(saved));
            rc = -saved;
        }
    } else {
        const char *why = code != 0 ? ERR_reason_error_string(code) : NULL;
        long vr = SSL_get_verify_result(t->ssl);
        snprintf(t->err, sizeof(t->err), "%s%s%s", why != NULL ? why : "TLS failure",
                 vr != X509_V_OK ? ": " : "", vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
    }
    ERR_clear_error();
    tr_log(TR_LOG_INFO, "event=tls_error conn=%llu stage=%s err=%d reason=\"%s\"",
           (unsigned long long)c->id.bits, stage, rc, t->err);
    return rc;
}

static ssize_t tls_read(tr_conn *c, void *buf, size_t len)
{
    tls_conn *t = T(c);
    size_t got = 0;
    do {
        size_t want = len - got > INT_MAX ? INT_MAX : len - got;
        int r = SSL_read(t->ssl, (unsigned char *)buf + got, (int)want);
        if (r <= 0) {
            if (got > 0) {
                break; /* the next call sees the same state again */
            }
            return ssl_fail(c, r, "read");
        }
        got += (size_t)r;
    } while (got < len && SSL_has_pending(t->ssl));
    return (ssize_t)got;
}

/* Presents the bytes at (i, off) of iov: the segment itself when it is a
 * record's worth or the last one, else up to CHUNK gathered into buf. */
static size_t present(const struct iovec *iov, int n, int i, size_t off, unsigned char *buf,
                      const unsigned char **p)
{
    size_t first = iov[i].iov_len - off;
    if (first >= CHUNK || i == n - 1) {
        *p = (const unsigned char *)iov[i].iov_base + off;
        return first > INT_MAX ? INT_MAX : first;
    }
    size_t len = 0;
    for (; i < n && len < CHUNK; i++, off = 0) {
        size_t k = iov[i].iov_len - off;
        if (k > CHUNK - len) {
            k = CHUNK - len;
        }
        memcpy(buf + len, (const unsigned char *)iov[i].iov_base + off, k);
        len += k;
    }
    *p = buf;
    return len;
}

static ssize_t tls_writev(tr_conn *c, const struct iovec *iov, int n)
{
    static _Thread_local unsigned char gather[CHUNK];
    tls_conn *t = T(c);
    size_t done = 0, off = 0;
    int i = 0;
    for (;;) {
        while (i < n && off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            i++;
        }
        if (i == n) {
            return (ssize_t)done;
        }
        const unsigned char *p;
        size_t len = present(iov, n, i, off, gather, &p);
        int r = SSL_write(t->ssl, p, (int)len);
        if (r <= 0) {
            int rc = ssl_fail(c, r, "write");
            return done > 0 && rc == -EAGAIN ? (ssize_t)done : (rc == 0 ? -EPIPE : rc);
        }
        done += (size_t)r;
        off += (size_t)r;
    }
}

static size_t tls_pending(const tr_conn *c)
{
    return SSL_has_pending(T(c)->ssl) ? 1 : 0;
}

static int tls_shutdown_wr(tr_conn *c)
{
    tls_conn *t = T(c);
    if (!t->shut_sent) {
        int r = SSL_shutdown(t->ssl);
        if (r < 0 && SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_WRITE) {
            return -EAGAIN; /* close_notify waits for room */
        }
        ERR_clear_error(); /* a session that failed already sends nothing */
        t->shut_sent = true;
    }
    return t->under->shutdown_wr(c);
}

static void tls_close(tr_conn *c, bool abort)
{
    tls_conn *t = T(c);
    const tr__transport *under = t->under;
    SSL_free(t->ssl);
    tr__tls_gen_release(t->gen);
    free(t);
    c->tp_state = NULL;
    c->tp = under;
    under->close(c, abort);
}

static int tls_handshake(tr_conn *c)
{
    int r = SSL_do_handshake(T(c)->ssl);
    if (r == 1) {
        return 0;
    }
    int rc = ssl_fail(c, r, "handshake");
    if (rc == 0 || rc == TR_ETLSTRUNC) {
        snprintf(T(c)->err, sizeof(T(c)->err), "peer closed during the handshake");
        rc = TR_ETLS;
    }
    return rc;
}

static int tls_want(const tr_conn *c)
{
    return SSL_want(T(c)->ssl) == SSL_WRITING ? TR__WANT_WRITE : TR__WANT_READ;
}

static const tr__transport tls_transport = {.read = tls_read,
                                            .writev = tls_writev,
                                            .pending = tls_pending,
                                            .shutdown_wr = tls_shutdown_wr,
                                            .close = tls_close,
                                            .handshake = tls_handshake,
                                            .want = tls_want,
                                            .retry_same = true};

static bool is_ip(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

int tr__tls_attach(tr_conn *c, tr_tls *tls, const char *server_name)
{
    tls_conn *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return TR_ENOMEM;
    }
    t->gen = tr__tls_gen_acquire(tls);
    t->ssl = SSL_new(t->gen->ctx[0]);
    if (t->ssl == NULL || !SSL_set_fd(t->ssl, c->fd)) {
        goto fail;
    }
    if (tr__tls_is_server(tls)) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        bool named = server_name != NULL && server_name[0] != '\0';
        bool ip = named && is_ip(server_name);
        if (named && !ip && !SSL_set_tlsext_host_name(t->ssl, server_name)) {
            goto fail;
        }
        if (named && SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
            int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, server_name)
                        : X509_VERIFY_PARAM_set1_host(vp, server_name, strlen(server_name));
            if (!ok) {
                goto fail;
            }
        }
    }
    t->under = c->tp;
    c->tp_state = t;
    c->tp = &tls_transport;
    return 0;
fail:
    ERR_clear_error();
    SSL_free(t->ssl);
    tr__tls_gen_release(t->gen);
    free(t);
    return TR_ETLS;
}

int tr_conn_tls_info(const tr_conn *c, tr_tls_info *out)
{
    if (c == NULL || out == NULL || c->tp != &tls_transport) {
        return TR_ENOTSUP;
    }
    tls_conn *t = T(c);
    memset(out, 0, sizeof(*out));
    bool done = SSL_is_init_finished(t->ssl);
    const SSL_CIPHER *ci = SSL_get_current_cipher(t->ssl);
    const char *sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    out->version = done ? SSL_get_version(t->ssl) : "";
    out->cipher = ci != NULL ? SSL_CIPHER_standard_name(ci) : "";
    out->server_name = sni != NULL ? sni : "";
    out->error = t->err;
    out->resumed = done && SSL_session_reused(t->ssl);
    const uint8_t *proto;
    unsigned plen;
    SSL_get0_alpn_selected(t->ssl, &proto, &plen);
    if (plen > 0) { /* proto is NULL without ALPN */
        memcpy(out->alpn, proto, plen < sizeof(out->alpn) ? plen : sizeof(out->alpn) - 1);
    }
    X509 *peer = SSL_get_peer_certificate(t->ssl);
    out->verify_error = "";
    if (peer != NULL) {
        out->peer_cert = true;
        X509_NAME_oneline(X509_get_subject_name(peer), out->peer_subject,
                          sizeof(out->peer_subject));
        long vr = SSL_get_verify_result(t->ssl);
        out->peer_verified = vr == X509_V_OK;
        out->verify_error = vr == X509_V_OK ? "" : X509_verify_cert_error_string(vr);
        X509_free(peer);
    }
    return 0;
}
