/* TLS over real loopback sockets, with certificates made at test time:
 * the server against a BoringSSL client written here and against
 * Debian's `openssl s_client` (TLS 1.3 and 1.2, mutual TLS accepted and
 * refused, SNI, ALPN, resumption), the troupe client against the troupe
 * server and against `openssl s_server`; wrong, expired and unknown-CA
 * certificates; a stalled handshake, garbage instead of a ClientHello, a
 * truncated stream, close_notify on drain, reload, TLS over Unix. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "certs.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"

TestSuite(tls, .timeout = 90.0);

static tr_test_certs pki;

/* ---- the server: a line echo that records what TLS told it ---- */

static uint64_t opens, closes, clean_closes, tls_errors, trunc_errors; /* atomics */
static char seen_version[32], seen_sni[64], seen_alpn[256], seen_subject[256];
static uint64_t seen_verified, seen_resumed; /* atomics */
static char seen_error[160];
/* The strings are written on workers, read by the test thread: a lock
 * (TSan cannot see the ordering the sockets give). */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;

/* A copy of one of the seen_* strings, taken under the lock. */
static const char *seen(const char *field)
{
    static char copy[256];
    pthread_mutex_lock(&seen_mu);
    snprintf(copy, sizeof(copy), "%s", field);
    pthread_mutex_unlock(&seen_mu);
    return copy;
}

static int on_open(tr_conn *c, void *user)
{
    (void)user;
    tr_tls_info ti;
    pthread_mutex_lock(&seen_mu);
    if (tr_conn_tls_info(c, &ti) == 0) {
        snprintf(seen_version, sizeof(seen_version), "%.31s", ti.version);
        snprintf(seen_sni, sizeof(seen_sni), "%.63s", ti.server_name);
        snprintf(seen_alpn, sizeof(seen_alpn), "%s", ti.alpn);
        snprintf(seen_subject, sizeof(seen_subject), "%s", ti.peer_subject);
        tr_test_store(&seen_verified, ti.peer_verified);
        tr_test_store(&seen_resumed, ti.resumed);
    }
    pthread_mutex_unlock(&seen_mu);
    tr_test_add(&opens, 1); /* last: the test reads the strings after it */
    return 0;
}

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    if (len == 4 && memcmp(data, "quit", 4) == 0) { /* the codec strips the newline */
        return tr_conn_close(c);
    }
    return tr_conn_write(c, data, len);
}

static void on_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    if (reason == 0) {
        tr_test_add(&clean_closes, 1);
    }
    tr_test_add(&closes, 1);
}

static tr_error_action on_error(tr_conn *c, tr_error_class cls, int err, void *user)
{
    (void)user;
    if (cls == TR_ERR_TLS) {
        tr_tls_info ti;
        pthread_mutex_lock(&seen_mu);
        if (tr_conn_tls_info(c, &ti) == 0) {
            snprintf(seen_error, sizeof(seen_error), "%s", ti.error);
        }
        pthread_mutex_unlock(&seen_mu);
        tr_test_add(&tls_errors, 1);
    }
    if (err == TR_ETLSTRUNC) {
        tr_test_add(&trunc_errors, 1);
    }
    return TR_DISCONNECT;
}

static const tr_handler echo = {
    .on_open = on_open, .on_frame = on_frame, .on_close = on_close, .on_error = on_error};

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_tls *tls;
    tr_server *srv;
    char addr[160];
    int port;
} fixture;

static void reset_counters(void)
{
    uint64_t *all[] = {&opens, &closes, &clean_closes, &tls_errors, &trunc_errors,
                       &seen_verified, &seen_resumed};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        tr_test_store(all[i], 0);
    }
    pthread_mutex_lock(&seen_mu);
    seen_version[0] = seen_sni[0] = seen_alpn[0] = seen_subject[0] = seen_error[0] = '\0';
    pthread_mutex_unlock(&seen_mu);
}

static tr_tls *server_tls(const tr_tls_config *tc)
{
    char why[256];
    int err = 1;
    tr_tls *t = tr_tls_new(tc, why, sizeof(why), &err);
    cr_assert_not_null(t, "tr_tls_new: %s (%s)", tr_strerror(err), why);
    return t;
}

static void tls_defaults(tr_tls_config *tc, const tr_tls_keypair *kp, size_t n)
{
    tr_tls_config_defaults(tc);
    tc->server = true;
    tc->certs = kp;
    tc->ncerts = n;
}

static void start_with(fixture *f, const tr_tls_config *tc, const char *listen,
                       uint32_t handshake_ms)
{
    reset_counters();
    f->rt = tr_test_runtime(2);
    f->codec = tr_test_codec_line(1u << 20);
    f->tls = server_tls(tc);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = listen;
    cfg.conn.codec = f->codec;
    cfg.conn.handler = &echo;
    cfg.conn.tls = f->tls;
    cfg.conn.linger_ms = 300; /* a drain waits this long for the peer's EOF */
    if (handshake_ms) {
        cfg.conn.tls_handshake_timeout_ms = handshake_ms;
    }
    f->srv = tr_test_server(f->rt, &cfg, f->addr, sizeof(f->addr));
    f->port = tr_server_port(f->srv);
}

/* The server certificate; client certificates checked as `verify` says
 * (against the test CA). */
static void start_opts(fixture *f, tr_tls_verify verify, const char *listen, uint32_t handshake_ms)
{
    tr_tls_keypair kp = {.cert_file = pki.server.cert, .key_file = pki.server.key};
    tr_tls_config tc;
    tls_defaults(&tc, &kp, 1);
    tc.verify = verify;
    tc.ca_file = verify != TR_TLS_VERIFY_DEFAULT ? pki.ca : NULL;
    start_with(f, &tc, listen, handshake_ms);
}

static void start(fixture *f)
{
    start_opts(f, TR_TLS_VERIFY_DEFAULT, "127.0.0.1:0", 0);
}

static void finish(fixture *f)
{
    if (f->srv != NULL) {
        cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
        cr_assert_eq(tr_server_free(f->srv), 0);
    }
    tr_tls_free(f->tls);
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
}

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("TR_TEST_DEBUG") != NULL) {
        tr_log_set_level(TR_LOG_DEBUG);
    }
    cr_assert_eq(tr_test_certs_make(&pki), 0, "making the test certificates");
}

static void suite_fini(void)
{
    tr_test_certs_remove(&pki);
}

/* ---- a blocking BoringSSL client, the peer the test controls ---- */

typedef struct peer {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} peer;

typedef struct peer_opts {
    const char *ca;            /* verify against it; NULL: no verification */
    const char *name;          /* SNI and hostname check */
    const tr_test_pem *cert;   /* client certificate */
    uint16_t max_version;
    SSL_SESSION *session;      /* to resume */
} peer_opts;

/* Connects and handshakes; returns 1, or the SSL error with p->ssl kept
 * for inspection. */
static int peer_open(peer *p, const char *addr, const peer_opts *o)
{
    memset(p, 0, sizeof(*p));
    p->fd = tr_test_client(addr);
    p->ctx = SSL_CTX_new(TLS_method());
    cr_assert_not_null(p->ctx);
    SSL_CTX_set_session_cache_mode(p->ctx, SSL_SESS_CACHE_CLIENT);
    if (o->max_version) {
        SSL_CTX_set_max_proto_version(p->ctx, o->max_version);
    }
    if (o->ca != NULL) {
        cr_assert(SSL_CTX_load_verify_locations(p->ctx, o->ca, NULL));
        SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->cert != NULL) {
        cr_assert(SSL_CTX_use_certificate_chain_file(p->ctx, o->cert->cert));
        cr_assert(SSL_CTX_use_PrivateKey_file(p->ctx, o->cert->key, SSL_FILETYPE_PEM));
    }
    p->ssl = SSL_new(p->ctx);
    SSL_set_fd(p->ssl, p->fd);
    if (o->name != NULL) {
        SSL_set_tlsext_host_name(p->ssl, o->name);
        if (o->ca != NULL) {
            X509_VERIFY_PARAM_set1_host(SSL_get0_param(p->ssl), o->name, strlen(o->name));
        }
    }
    if (o->session != NULL) {
        SSL_set_session(p->ssl, o->session);
    }
    int r = SSL_connect(p->ssl);
    ERR_clear_error();
    return r == 1 ? 1 : SSL_get_error(p->ssl, r);
}

static void peer_close(peer *p, bool notify)
{
    if (notify && p->ssl != NULL) {
        SSL_shutdown(p->ssl);
    }
    SSL_free(p->ssl);
    SSL_CTX_free(p->ctx);
    close(p->fd);
    ERR_clear_error();
}

static void peer_roundtrip(peer *p, const char *line)
{
    size_t n = strlen(line);
    cr_assert_eq(SSL_write(p->ssl, line, (int)n), (int)n);
    char buf[256];
    size_t got = 0;
    while (got < n) {
        int r = SSL_read(p->ssl, buf + got, (int)(sizeof(buf) - got));
        cr_assert_gt(r, 0, "SSL_read: %d", SSL_get_error(p->ssl, r));
        got += (size_t)r;
    }
    cr_assert_eq(got, n);
    cr_assert_arr_eq(buf, line, n);
}

static void connect_ok(fixture *f, peer *p, const peer_opts *o)
{
    int r = peer_open(p, f->addr, o);
    cr_assert_eq(r, 1, "handshake: SSL error %d", r);
    peer_roundtrip(p, "hello over tls\n");
    cr_assert(tr_test_wait_ge(&opens, 1, 5000));
}

/* ---- a command's output (openssl, nobody here wrote it) ---- */

static void run(const char *cmd, char *out, size_t cap, int *status)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "%s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    *status = pclose(p);
}

static void s_client(fixture *f, const char *extra, const char *input, char *out, size_t cap,
                     int *status)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "printf '%s' | timeout 20 openssl s_client -connect 127.0.0.1:%d -CAfile %s "
             "-verify_return_error -ign_eof %s 2>&1",
             input, f->port, pki.ca, extra);
    run(cmd, out, cap, status);
}

/* ---- tests ---- */

Test(tls, echo_over_tls_1_3_and_1_2_with_a_verified_server, .init = suite_init,
     .fini = suite_fini)
{
    fixture f;
    start(&f);
    peer p;
    peer_opts o = {.ca = pki.ca, .name = "localhost"};
    connect_ok(&f, &p, &o);
    cr_assert_str_eq(seen(seen_version), "TLSv1.3");
    cr_assert_str_eq(seen(seen_sni), "localhost");
    peer_roundtrip(&p, "second line\n");
    peer_close(&p, true);
    cr_assert(tr_test_wait_ge(&clean_closes, 1, 5000), "close_notify then EOF: a clean close");
    cr_assert_eq(tr_test_load(&trunc_errors), 0);

    o.max_version = TLS1_2_VERSION;
    connect_ok(&f, &p, &o);
    cr_assert(tr_test_wait_ge(&opens, 2, 5000));
    cr_assert_str_eq(seen(seen_version), "TLSv1.2");
    peer_close(&p, true);
    cr_assert(tr_test_wait_ge(&closes, 2, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.tls_handshakes, 2);
    cr_assert_eq(st.errors[TR_ERR_TLS], 0);
    finish(&f);
}

Test(tls, large_frames_cross_many_records_both_ways, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start(&f);
    peer p;
    peer_opts o = {.ca = pki.ca, .name = "localhost"};
    connect_ok(&f, &p, &o);
    /* 300 KB lines: many records each way, partial writes on both sides. */
    size_t n = 300 * 1024;
    char *line = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n - 1; i++) {
        line[i] = (char)('a' + i % 26);
    }
    line[n - 1] = '\n';
    for (int round = 0; round < 3; round++) {
        size_t sent = 0, got = 0;
        while (sent < n) {
            int r = SSL_write(p.ssl, line + sent, (int)(n - sent));
            cr_assert_gt(r, 0);
            sent += (size_t)r;
        }
        while (got < n) {
            int r = SSL_read(p.ssl, back + got, (int)(n - got));
            cr_assert_gt(r, 0);
            got += (size_t)r;
        }
        cr_assert_eq(memcmp(line, back, n), 0, "round %d: bytes differ", round);
    }
    free(line);
    free(back);
    peer_close(&p, true);
    finish(&f);
}

Test(tls, unknown_ca_expired_and_wrong_name_are_refused_by_the_client_side,
     .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start(&f);
    peer p;
    peer_opts o = {.ca = pki.rogue_ca, .name = "localhost"};
    cr_assert_neq(peer_open(&p, f.addr, &o), 1, "a server from a CA we do not trust");
    cr_assert_eq(SSL_get_verify_result(p.ssl), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    peer_close(&p, false);
    o.ca = pki.ca;
    o.name = "not-localhost.test";
    cr_assert_neq(peer_open(&p, f.addr, &o), 1, "a certificate for another name");
    cr_assert_eq(SSL_get_verify_result(p.ssl), X509_V_ERR_HOSTNAME_MISMATCH);
    peer_close(&p, false);
    cr_assert(tr_test_wait_ge(&tls_errors, 2, 5000), "the server saw both handshakes fail");
    cr_assert_eq(tr_test_load(&opens), 0, "on_open never ran for them");
    finish(&f);

    tr_tls_keypair kp = {.cert_file = pki.expired.cert, .key_file = pki.expired.key};
    tr_tls_config tc;
    tls_defaults(&tc, &kp, 1);
    start_with(&f, &tc, "127.0.0.1:0", 0);
    o.name = "localhost";
    cr_assert_neq(peer_open(&p, f.addr, &o), 1, "an expired certificate");
    cr_assert_eq(SSL_get_verify_result(p.ssl), X509_V_ERR_CERT_HAS_EXPIRED);
    peer_close(&p, false);
    finish(&f);
}

Test(tls, a_stalled_handshake_is_dropped_at_the_timeout, .init = suite_init,
     .fini = suite_fini)
{
    fixture f;
    start_opts(&f, TR_TLS_VERIFY_DEFAULT, "127.0.0.1:0", 300);
    int fd = tr_test_client(f.addr);
    uint64_t t0 = tr_test_now_ms();
    cr_assert_eq(tr_test_sock_send(fd, "\x16\x03\x01", 3), 0, "half a record header, then nothing");
    char buf[16];
    ssize_t r = tr_test_sock_recv_to_eof(fd, buf, sizeof(buf), NULL);
    uint64_t took = tr_test_now_ms() - t0;
    cr_assert(r == 0 || r == -ECONNRESET, "closed: %zd", r);
    cr_assert_geq(took, 250, "not before the timeout (%llu ms)", (unsigned long long)took);
    cr_assert_lt(took, 4000, "soon after it (%llu ms)", (unsigned long long)took);
    close(fd);
    cr_assert(tr_test_wait_ge(&tls_errors, 1, 5000));
    cr_assert_eq(tr_test_load(&opens), 0);
    finish(&f);
}

Test(tls, garbage_instead_of_a_client_hello_closes_without_harm, .init = suite_init,
     .fini = suite_fini)
{
    fixture f;
    start(&f);
    for (int i = 0; i < 20; i++) {
        int fd = tr_test_client(f.addr);
        const char *junk = i % 2 ? "GET / HTTP/1.1\r\nHost: x\r\n\r\n" : "\x16\x03\x03\xff\xff garbage";
        cr_assert_eq(tr_test_sock_send(fd, junk, strlen(junk)), 0);
        ssize_t r = tr_test_sock_recv_to_eof(fd, NULL, 0, NULL);
        cr_assert(r >= 0 || r == -ECONNRESET, "closed: %zd", r);
        close(fd);
    }
    cr_assert(tr_test_wait_ge(&tls_errors, 20, 5000));
    cr_assert_neq(seen(seen_error)[0], '\0', "the reason reached on_error");
    /* And the server still serves. */
    peer p;
    peer_opts o = {.ca = pki.ca, .name = "localhost"};
    connect_ok(&f, &p, &o);
    peer_close(&p, true);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_geq(st.errors[TR_ERR_TLS], 20);
    finish(&f);
}

Test(tls, eof_without_close_notify_is_a_truncation, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start(&f);
    peer p;
    peer_opts o = {.ca = pki.ca, .name = "localhost"};
    connect_ok(&f, &p, &o);
    peer_close(&p, false); /* TCP FIN, no close_notify */
    cr_assert(tr_test_wait_ge(&trunc_errors, 1, 5000), "reported as TR_ETLSTRUNC");
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(tr_test_load(&clean_closes), 0, "never as a clean close");
    finish(&f);
}

Test(tls, drain_sends_close_notify, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start(&f);
    peer p;
    peer_opts o = {.ca = pki.ca, .name = "localhost"};
    connect_ok(&f, &p, &o);
    cr_assert_eq(tr_server_shutdown(f.srv, 5000), 0);
    char buf[16];
    int r = SSL_read(p.ssl, buf, sizeof(buf));
    cr_assert_eq(r, 0);
    cr_assert_eq(SSL_get_error(p.ssl, r), SSL_ERROR_ZERO_RETURN, "a close_notify, not a bare EOF");
    peer_close(&p, true);
    cr_assert_eq(tr_server_free(f.srv), 0);
    f.srv = NULL;
    finish(&f);
}

Test(tls, mutual_tls_required_optional_and_refused, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start_opts(&f, TR_TLS_VERIFY_REQUIRED, "127.0.0.1:0", 0);
    peer p;
    peer_opts o = {.ca = pki.ca, .name = "localhost", .cert = &pki.client};
    connect_ok(&f, &p, &o);
    cr_assert_str_eq(seen(seen_subject), "/CN=client");
    cr_assert_eq(tr_test_load(&seen_verified), 1);
    peer_close(&p, true);

    /* No certificate, and one from a CA the server does not trust. TLS
     * 1.3 clients learn of the refusal on their first read. */
    peer_opts none = {.ca = pki.ca, .name = "localhost"};
    peer_opts rogue = {.ca = pki.ca, .name = "localhost", .cert = &pki.rogue};
    const peer_opts *bad[] = {&none, &rogue};
    for (int i = 0; i < 2; i++) {
        int r = peer_open(&p, f.addr, bad[i]);
        if (r == 1) {
            char buf[8];
            SSL_write(p.ssl, "x\n", 2);
            cr_assert_leq(SSL_read(p.ssl, buf, sizeof(buf)), 0, "refused");
        }
        peer_close(&p, false);
    }
    cr_assert(tr_test_wait_ge(&tls_errors, 2, 5000));
    cr_assert_eq(tr_test_load(&opens), 1, "only the good client was opened");
    finish(&f);

    start_opts(&f, TR_TLS_VERIFY_OPTIONAL, "127.0.0.1:0", 0);
    connect_ok(&f, &p, &rogue);
    cr_assert_str_eq(seen(seen_subject), "/CN=localhost");
    cr_assert_eq(tr_test_load(&seen_verified), 0, "presented, not verified, yet admitted");
    peer_close(&p, true);
    finish(&f);
}

Test(tls, sni_picks_the_certificate_and_reload_swaps_them, .init = suite_init,
     .fini = suite_fini)
{
    fixture f;
    tr_tls_keypair kps[2] = {{.cert_file = pki.server.cert, .key_file = pki.server.key},
                             {.cert_file = pki.other.cert, .key_file = pki.other.key}};
    tr_tls_config tc;
    tls_defaults(&tc, kps, 2);
    start_with(&f, &tc, "127.0.0.1:0", 0);
    const char *names[] = {"other.test", "a.wild.test", "localhost"};
    for (int i = 0; i < 3; i++) {
        peer p;
        peer_opts o = {.ca = pki.ca, .name = names[i]};
        cr_assert_eq(peer_open(&p, f.addr, &o), 1, "%s: verified against its certificate",
                     names[i]);
        peer_close(&p, true);
    }
    /* Reload with only `other`: new handshakes for localhost now fail the
     * name check, while an open connection keeps working. */
    peer keep;
    peer_opts lo = {.ca = pki.ca, .name = "localhost"};
    cr_assert_eq(peer_open(&keep, f.addr, &lo), 1);
    tr_tls_config only_other;
    tls_defaults(&only_other, &kps[1], 1);
    char why[256];
    cr_assert_eq(tr_tls_reload(f.tls, &only_other, why, sizeof(why)), 0, "%s", why);
    peer p;
    cr_assert_neq(peer_open(&p, f.addr, &lo), 1);
    cr_assert_eq(SSL_get_verify_result(p.ssl), X509_V_ERR_HOSTNAME_MISMATCH);
    peer_close(&p, false);
    peer_roundtrip(&keep, "still served\n");
    peer_close(&keep, true);
    /* A reload that fails changes nothing. */
    tr_tls_keypair broken = {.cert_file = pki.server.cert, .key_file = pki.other.key};
    tr_tls_config bad;
    tls_defaults(&bad, &broken, 1);
    cr_assert_eq(tr_tls_reload(f.tls, &bad, why, sizeof(why)), TR_ETLS);
    cr_assert_not_null(strstr(why, "does not match"), "%s", why);
    peer_opts oo = {.ca = pki.ca, .name = "other.test"};
    cr_assert_eq(peer_open(&p, f.addr, &oo), 1);
    peer_close(&p, true);
    finish(&f);
}

Test(tls, session_resumption_with_tickets, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start(&f);
    peer p;
    peer_opts o = {.ca = pki.ca, .name = "localhost", .max_version = TLS1_2_VERSION};
    connect_ok(&f, &p, &o);
    SSL_SESSION *sess = SSL_get1_session(p.ssl);
    cr_assert_not_null(sess);
    peer_close(&p, true);
    o.session = sess;
    connect_ok(&f, &p, &o);
    cr_assert(SSL_session_reused(p.ssl), "the client resumed");
    cr_assert(tr_test_wait_ge(&opens, 2, 5000));
    cr_assert_eq(tr_test_load(&seen_resumed), 1, "and the server says so");
    peer_close(&p, true);
    SSL_SESSION_free(sess);
    finish(&f);
}

Test(tls, bad_configs_say_what_is_wrong, .init = suite_init, .fini = suite_fini)
{
    tr_tls_config tc;
    char why[256];
    int err = 0;
    tr_tls_config_defaults(&tc);
    tc.server = true;
    cr_assert_null(tr_tls_new(&tc, why, sizeof(why), &err));
    cr_assert_eq(err, TR_EINVAL, "a server needs a certificate");

    tr_tls_keypair kp = {.cert_file = "/nonexistent/cert.pem", .key_file = pki.server.key};
    tc.certs = &kp;
    tc.ncerts = 1;
    cr_assert_null(tr_tls_new(&tc, why, sizeof(why), &err));
    cr_assert_eq(err, TR_ETLS);
    cr_assert_not_null(strstr(why, "/nonexistent/cert.pem"), "%s", why);
    cr_assert_not_null(strstr(why, "No such file"), "%s", why);

    kp.cert_file = pki.server.cert;
    kp.key_file = pki.client.key;
    cr_assert_null(tr_tls_new(&tc, why, sizeof(why), &err));
    cr_assert_eq(err, TR_ETLS);
    cr_assert_not_null(strstr(why, "does not match"), "%s", why);

    kp.key_file = pki.server.key;
    tc.ciphers = "NOT-A-CIPHER";
    cr_assert_null(tr_tls_new(&tc, why, sizeof(why), &err));
    cr_assert_eq(err, TR_ETLS);
    tc.ciphers = NULL;
    tc.min_version = TR_TLS_1_3;
    tc.max_version = TR_TLS_1_2;
    cr_assert_null(tr_tls_new(&tc, why, sizeof(why), &err));
    cr_assert_eq(err, TR_EINVAL);

    /* A client context cannot serve. */
    tr_tls_config cc;
    tr_tls_config_defaults(&cc);
    cc.ca_file = pki.ca;
    tr_tls *client = tr_tls_new(&cc, why, sizeof(why), &err);
    cr_assert_not_null(client, "%s", why);
    tr_runtime *rt = tr_test_runtime(1);
    tr_codec *codec = tr_test_codec_line(0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &echo;
    cfg.conn.tls = client;
    cr_assert_null(tr_server_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_EINVAL);
    tr_tls_free(client);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

/* ---- openssl s_client against the server ---- */

Test(tls, openssl_s_client_1_3_and_1_2_alpn_and_sni, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    tr_tls_keypair kps[2] = {{.cert_file = pki.server.cert, .key_file = pki.server.key},
                             {.cert_file = pki.other.cert, .key_file = pki.other.key}};
    tr_tls_config tc;
    tls_defaults(&tc, kps, 2);
    tc.alpn = "h2,http/1.1";
    start_with(&f, &tc, "127.0.0.1:0", 0);
    char out[16384];
    int status;
    s_client(&f, "-tls1_3 -servername localhost -verify_hostname localhost -alpn http/1.1",
             "hello from openssl\\nquit\\n", out, sizeof(out), &status);
    cr_assert_eq(status, 0, "s_client failed:\n%s", out);
    cr_assert_not_null(strstr(out, "hello from openssl"), "%s", out);
    cr_assert_not_null(strstr(out, "TLSv1.3"), "%s", out);
    cr_assert_not_null(strstr(out, "ALPN protocol: http/1.1"), "%s", out);
    cr_assert(tr_test_wait_ge(&opens, 1, 5000));
    cr_assert_str_eq(seen(seen_alpn), "http/1.1");

    s_client(&f, "-tls1_2 -servername other.test -verify_hostname other.test",
             "second\\nquit\\n", out, sizeof(out), &status);
    cr_assert_eq(status, 0, "s_client failed:\n%s", out);
    cr_assert_not_null(strstr(out, "second"), "%s", out);
    cr_assert_not_null(strstr(out, "CN = other.test"), "SNI chose the other certificate:\n%s", out);
    cr_assert_not_null(strstr(out, "TLSv1.2"), "%s", out);
    cr_assert(tr_test_wait_ge(&opens, 2, 5000));
    cr_assert_str_eq(seen(seen_sni), "other.test");
    finish(&f);
}

Test(tls, openssl_s_client_mutual_tls, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start_opts(&f, TR_TLS_VERIFY_REQUIRED, "127.0.0.1:0", 0);
    char out[16384], extra[1024];
    int status;
    snprintf(extra, sizeof(extra), "-cert %s -key %s", pki.client.cert, pki.client.key);
    s_client(&f, extra, "mutual\\nquit\\n", out, sizeof(out), &status);
    cr_assert_eq(status, 0, "s_client failed:\n%s", out);
    cr_assert_not_null(strstr(out, "mutual"), "%s", out);
    cr_assert(tr_test_wait_ge(&opens, 1, 5000));
    cr_assert_str_eq(seen(seen_subject), "/CN=client");

    s_client(&f, "", "refused\\nquit\\n", out, sizeof(out), &status);
    cr_assert_null(strstr(out, "refused\n"), "no echo without a client certificate:\n%s", out);
    cr_assert(tr_test_wait_ge(&tls_errors, 1, 5000));
    cr_assert_eq(tr_test_load(&opens), 1);
    finish(&f);
}

/* ---- the troupe client ---- */

static uint64_t dial_ok, dial_tls_fail, client_frames; /* atomics */
static char client_got[64];

static void on_dial(tr_conn_id id, int err, void *user)
{
    (void)id;
    (void)user;
    tr_test_add(err == 0 ? &dial_ok : &dial_tls_fail, err == TR_ETLS || err == 0 ? 1 : 0);
}

static int client_open(tr_conn *c, void *user)
{
    (void)user;
    return tr_conn_write(c, "ping", 4); /* the codec adds the newline */
}

static int client_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)user;
    snprintf(client_got, sizeof(client_got), "%.*s", (int)len, (const char *)data);
    tr_test_add(&client_frames, 1);
    return 0;
}

static const tr_handler client_handler = {.on_open = client_open, .on_frame = client_frame};

static tr_conn_id dial(tr_runtime *rt, tr_codec *codec, const char *addr, tr_tls *tls,
                       const char *name)
{
    tr_client_config cc;
    tr_client_config_defaults(&cc);
    cc.connect = addr;
    cc.conn.codec = codec;
    cc.conn.handler = &client_handler;
    cc.on_dial = on_dial;
    cc.conn.tls = tls;
    cc.tls_server_name = name;
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cc, &id), 0);
    return id;
}

static tr_tls *client_tls(const char *ca)
{
    tr_tls_config tc;
    tr_tls_config_defaults(&tc);
    tc.ca_file = ca;
    return server_tls(&tc);
}

Test(tls, troupe_client_verifies_the_server, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start(&f);
    tr_test_store(&dial_ok, 0);
    tr_test_store(&dial_tls_fail, 0);
    tr_test_store(&client_frames, 0);
    tr_tls *good = client_tls(pki.ca), *rogue = client_tls(pki.rogue_ca);
    tr_conn_id id = dial(f.rt, f.codec, f.addr, good, NULL); /* name: 127.0.0.1, an IP SAN */
    cr_assert(tr_test_wait_ge(&client_frames, 1, 5000));
    cr_assert_str_eq(client_got, "ping");
    cr_assert_eq(tr_test_load(&dial_ok), 1);
    tr_conn_close_id(id);

    dial(f.rt, f.codec, f.addr, rogue, NULL);
    dial(f.rt, f.codec, f.addr, good, "wrong.test");
    cr_assert(tr_test_wait_ge(&dial_tls_fail, 2, 5000), "unknown CA and wrong name: TR_ETLS");
    cr_assert_eq(tr_test_load(&client_frames), 1);
    tr_tls_free(good);
    tr_tls_free(rogue);
    finish(&f);
}

Test(tls, troupe_client_against_openssl_s_server, .init = suite_init, .fini = suite_fini)
{
    int lfd, port;
    lfd = tr_test_sock_bound("127.0.0.1", &port); /* reserve a port, then free it for s_server */
    cr_assert_geq(lfd, 0);
    close(lfd);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "exec timeout 30 openssl s_server -accept 127.0.0.1:%d -cert %s -key %s -rev -quiet "
             ">/dev/null 2>&1",
             port, pki.server.cert, pki.server.key);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    char addr[64];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    /* Wait until s_server listens. */
    for (int i = 0; i < 500; i++) {
        int fd = tr_test_sock_connect(addr, NULL, 1000);
        if (fd >= 0) {
            close(fd);
            break;
        }
        poll(NULL, 0, 10);
    }
    tr_test_store(&client_frames, 0);
    tr_test_store(&dial_ok, 0);
    tr_runtime *rt = tr_test_runtime(1);
    tr_codec *codec = tr_test_codec_line(0);
    tr_tls *good = client_tls(pki.ca);
    dial(rt, codec, addr, good, "localhost");
    cr_assert(tr_test_wait_ge(&client_frames, 1, 10000), "s_server answered");
    cr_assert_str_eq(client_got, "gnip", "s_server -rev reverses the line: %s", client_got);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    tr_tls_free(good);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

Test(tls, tls_over_a_unix_socket, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    char listen[400];
    snprintf(listen, sizeof(listen), "unix:%s/tls.sock", pki.dir);
    start_opts(&f, TR_TLS_VERIFY_DEFAULT, listen, 0);
    tr_test_store(&client_frames, 0);
    tr_tls *good = client_tls(pki.ca);
    dial(f.rt, f.codec, f.addr, good, "localhost");
    cr_assert(tr_test_wait_ge(&client_frames, 1, 5000));
    cr_assert_str_eq(client_got, "ping");
    tr_tls_free(good);
    finish(&f);
}

/* ---- lifetimes under stress ---- */

typedef struct storm {
    fixture *f;
    unsigned seed;
    uint64_t *ok;
} storm;

static void *storm_client(void *arg)
{
    storm *s = arg;
    for (int round = 0; round < 60; round++) {
        unsigned r = (unsigned)rand_r(&s->seed) % 4;
        if (r == 0) { /* a whole exchange */
            peer p;
            peer_opts o = {.ca = pki.ca};
            if (peer_open(&p, s->f->addr, &o) == 1 && SSL_write(p.ssl, "x\n", 2) == 2) {
                char buf[4];
                if (SSL_read(p.ssl, buf, sizeof(buf)) == 2) {
                    tr_test_add(s->ok, 1);
                }
            }
            peer_close(&p, round % 2 == 0);
            continue;
        }
        int fd = tr_test_sock_connect(s->f->addr, NULL, 2000);
        if (fd < 0) {
            continue;
        }
        if (r == 1) { /* half a ClientHello, then a reset */
            tr_test_sock_send(fd, "\x16\x03\x01\x02\x00\x01", 6);
            tr_test_sock_reset(fd);
        } else if (r == 2) { /* gone at once */
            tr_test_sock_reset(fd);
        } else { /* garbage, then a FIN */
            tr_test_sock_send(fd, "garbage!", 8);
            close(fd);
        }
    }
    return NULL;
}

Test(tls, handshakes_resets_and_reloads_racing, .init = suite_init, .fini = suite_fini)
{
    fixture f;
    start_opts(&f, TR_TLS_VERIFY_DEFAULT, "127.0.0.1:0", 2000);
    uint64_t ok = 0;
    storm s[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (storm){.f = &f, .seed = 7u + (unsigned)i, .ok = &ok};
        cr_assert_eq(pthread_create(&th[i], NULL, storm_client, &s[i]), 0);
    }
    /* Certificates swapped under the handshakes, many times. */
    tr_tls_keypair kp = {.cert_file = pki.server.cert, .key_file = pki.server.key};
    tr_tls_config tc;
    tls_defaults(&tc, &kp, 1);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(tr_tls_reload(f.tls, i % 2 ? &tc : NULL, NULL, 0), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    cr_assert_gt(tr_test_load(&ok), 0, "whole exchanges went through");
    /* A shutdown with handshakes still in flight ends them. */
    int held[20];
    for (int i = 0; i < 20; i++) {
        held[i] = tr_test_client(f.addr);
        tr_test_sock_send(held[i], "\x16\x03\x01", 3);
    }
    cr_assert_eq(tr_server_shutdown(f.srv, 3000), 0, "unopened connections do not hold a drain");
    for (int i = 0; i < 20; i++) {
        int r = tr_test_sock_peek(held[i], 3000);
        cr_assert(r == 0 || r == -ECONNRESET, "closed: %d", r);
        close(held[i]);
    }
    cr_assert_eq(tr_server_free(f.srv), 0);
    f.srv = NULL;
    finish(&f);
}

static char client_alpn[64];
static uint64_t client_infos; /* atomics */

static int client_open_info(tr_conn *c, void *user)
{
    tr_tls_info ti;
    if (tr_conn_tls_info(c, &ti) == 0) {
        snprintf(client_alpn, sizeof(client_alpn), "%.63s", ti.alpn);
        tr_test_add(&client_infos, ti.peer_verified ? 1 : 0);
    }
    return client_open(c, user);
}

Test(tls, troupe_client_with_a_certificate_and_alpn_against_mutual_tls, .init = suite_init,
     .fini = suite_fini)
{
    fixture f;
    tr_tls_keypair kp = {.cert_file = pki.server.cert, .key_file = pki.server.key};
    tr_tls_config tc;
    tls_defaults(&tc, &kp, 1);
    tc.verify = TR_TLS_VERIFY_REQUIRED;
    tc.ca_file = pki.ca;
    tc.alpn = "chat/1,echo/1";
    start_with(&f, &tc, "127.0.0.1:0", 0);
    tr_test_store(&client_frames, 0);
    tr_test_store(&client_infos, 0);
    tr_tls_keypair mine = {.cert_file = pki.client.cert, .key_file = pki.client.key};
    tr_tls_config cc;
    tr_tls_config_defaults(&cc);
    cc.ca_file = pki.ca;
    cc.certs = &mine;
    cc.ncerts = 1;
    cc.alpn = "echo/1";
    tr_tls *ctls = server_tls(&cc);
    static const tr_handler h = {.on_open = client_open_info, .on_frame = client_frame};
    tr_client_config ccfg;
    tr_client_config_defaults(&ccfg);
    ccfg.connect = f.addr;
    ccfg.conn.codec = f.codec;
    ccfg.conn.handler = &h;
    ccfg.conn.tls = ctls;
    ccfg.tls_server_name = "localhost";
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(f.rt, &ccfg, &id), 0);
    cr_assert(tr_test_wait_ge(&client_frames, 1, 5000));
    cr_assert_eq(tr_test_load(&client_infos), 1, "the client verified the server");
    cr_assert_str_eq(client_alpn, "echo/1");
    cr_assert(tr_test_wait_ge(&opens, 1, 5000));
    cr_assert_str_eq(seen(seen_subject), "/CN=client", "the server saw our certificate");
    cr_assert_str_eq(seen(seen_alpn), "echo/1");
    tr_tls_free(ctls);
    finish(&f);
}
