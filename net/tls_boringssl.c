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

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conn_impl.h"
#include "tls_impl.h"
#include "troupe/log.h"

#define CHUNK 16384      /* one full TLS record of plaintext */
#define RAW_BYTES 65536  /* one read(2) of ciphertext */

typedef struct tls_conn {
    SSL *ssl;
    tr__tls_gen *gen;
    const tr__transport *under; /* the fd transport, back after close */
    int fd;
    /* Ciphertext for BoringSSL: `in` points into this thread's read
     * buffer during one call; `held` keeps what was left over. */
    const unsigned char *in;
    size_t in_len;
    unsigned char *held;
    size_t held_len, held_off;
    bool in_full;  /* the last read(2) filled the buffer: more may wait */
    bool eof;      /* read(2) saw the end */
    int sock_err;  /* read(2) failed with this errno */
    bool shut_sent;
    char err[160]; /* the last failure's reason */
} tls_conn;

static tls_conn *T(const tr_conn *c)
{
    return c->tp_state;
}

/* ---- the BIO: ciphertext from memory in, send(2) out ---- */

static int bio_read(BIO *b, char *out, int len)
{
    tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    const unsigned char *src = NULL;
    size_t avail = 0;
    if (t->held_len > t->held_off) {
        src = t->held + t->held_off;
        avail = t->held_len - t->held_off;
    } else if (t->in_len > 0) {
        src = t->in;
        avail = t->in_len;
    } else if (t->sock_err != 0) {
        errno = t->sock_err;
        return -1;
    } else if (t->eof) {
        return 0;
    } else {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = avail < (size_t)len ? avail : (size_t)len;
    memcpy(out, src, n);
    if (src != t->in) {
        t->held_off += n;
        if (t->held_off == t->held_len) {
            free(t->held);
            t->held = NULL;
            t->held_len = t->held_off = 0;
        }
    } else {
        t->in += n;
        t->in_len -= n;
    }
    return (int)n;
}

static int bio_write(BIO *b, const char *in, int len)
{
    tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = send(t->fd, in, (size_t)len, MSG_NOSIGNAL);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        BIO_set_retry_write(b);
    }
    return r < 0 ? -1 : (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "troupe");
    if (m != NULL && BIO_meth_set_read(m, bio_read) && BIO_meth_set_write(m, bio_write) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create)) {
        bio_method = m; /* for the life of the process */
    }
}

/* One read(2) into this thread's buffer, for BoringSSL to take from.
 * Returns false when there was nothing to read (EAGAIN). */
static bool fill(tls_conn *t)
{
    static _Thread_local unsigned char raw[RAW_BYTES];
    ssize_t r = read(t->fd, raw, sizeof(raw));
    t->in_full = false;
    if (r > 0) {
        t->in = raw;
        t->in_len = (size_t)r;
        t->in_full = (size_t)r == sizeof(raw);
        return true;
    }
    if (r == 0) {
        t->eof = true;
        return true;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return false;
    }
    t->sock_err = errno;
    return true;
}

/* Keeps what BoringSSL did not take of this call's read: the buffer
 * belongs to the thread, not to the connection. */
static void stash(tls_conn *t)
{
    if (t->in_len == 0) {
        return;
    }
    size_t keep = t->held_len - t->held_off;
    unsigned char *h = malloc(keep + t->in_len);
    if (h == NULL) {
        t->sock_err = ENOMEM; /* the stream cannot go on without these bytes */
    } else {
        if (keep > 0) {
            memcpy(h, t->held + t->held_off, keep);
        }
        memcpy(h + keep, t->in, t->in_len);
        free(t->held);
        t->held = h;
        t->held_len = keep + t->in_len;
        t->held_off = 0;
    }
    t->in = NULL;
    t->in_len = 0;
}

/* Whether an SSL call that wants to read may have more after a read(2):
 * once per call, and again while reads fill the buffer. */
static bool refill(tls_conn *t, int ret, bool *filled)
{
    if (SSL_get_error(t->ssl, ret) != SSL_ERROR_WANT_READ || t->eof || t->sock_err != 0 ||
        t->in_len > 0 || (*filled && !t->in_full)) {
        return false;
    }
    *filled = true;
    return fill(t);
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
    bool filled = false;
    while (got < len) {
        size_t want = len - got > INT_MAX ? INT_MAX : len - got;
        int r = SSL_read(t->ssl, (unsigned char *)buf + got, (int)want);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (refill(t, r, &filled)) {
            continue;
        }
        if (got > 0) {
            break; /* the next call sees the same state again */
        }
        stash(t);
        return ssl_fail(c, r, "read");
    }
    stash(t);
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
    const tls_conn *t = T(c);
    return (t->held_len - t->held_off) + (SSL_has_pending(t->ssl) ? 1 : 0);
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
    free(t->held);
    free(t);
    c->tp_state = NULL;
    c->tp = under;
    under->close(c, abort);
}

static int tls_handshake(tr_conn *c)
{
    tls_conn *t = T(c);
    bool filled = false;
    int r;
    while ((r = SSL_do_handshake(t->ssl)) != 1 && refill(t, r, &filled)) {
    }
    stash(t);
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
    t->fd = c->fd;
    pthread_once(&bio_once, bio_method_init);
    BIO *rb = bio_method != NULL ? BIO_new(bio_method) : NULL;
    BIO *wb = bio_method != NULL ? BIO_new(bio_method) : NULL;
    if (t->ssl == NULL || rb == NULL || wb == NULL) {
        BIO_free(rb);
        BIO_free(wb);
        goto fail;
    }
    BIO_set_data(rb, t);
    BIO_set_data(wb, t);
    SSL_set_bio(t->ssl, rb, wb); /* the SSL owns them now */
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
