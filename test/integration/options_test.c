/* Server and client options that other suites do not exercise: socket
 * options on accepted and dialed sockets, server-level info lines, CONTINUE
 * after an idle timeout, tr_server_close cutting a running shutdown short,
 * and a client's on_error. Real sockets on loopback. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(options, .timeout = 60.0);

static int echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static const tr_handler echo = {.on_frame = echo_frame};

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[80];
} fixture;

static void start(fixture *f, tr_server_config *cfg)
{
    f->rt = tr_test_runtime(2);
    f->codec = tr_test_codec_line(0);
    cfg->listen = "127.0.0.1:0";
    cfg->conn.codec = f->codec;
    if (cfg->conn.handler == NULL) {
        cfg->conn.handler = &echo;
    }
    f->srv = tr_test_server(f->rt, cfg, f->addr, sizeof(f->addr));
}

static void finish(fixture *f)
{
    tr_server_shutdown(f->srv, 5000);
    cr_assert_eq(tr_server_free(f->srv), 0);
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
}

/* ---- socket options ---- */

static uint64_t seen_nodelay, seen_keepalive, seen_sockets; /* atomics */

/* on_socket runs after troupe tuned the fd: read what it set. */
static int read_options(int fd, void *user)
{
    (void)user;
    int v = 0;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l) == 0) {
        tr_test_store(&seen_nodelay, (uint64_t)v);
    }
    v = 0;
    l = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &l) == 0) {
        tr_test_store(&seen_keepalive, (uint64_t)v);
    }
    tr_test_add(&seen_sockets, 1);
    return 0;
}

static void check_accepted_options(bool on)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.on_socket = read_options;
    cfg.conn.nodelay = on;
    cfg.conn.keepalive = on;
    tr_test_store(&seen_sockets, 0);
    tr_test_store(&seen_nodelay, 99);
    tr_test_store(&seen_keepalive, 99);
    start(&f, &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "x\n", "x\n");
    cr_assert(tr_test_wait_ge(&seen_sockets, 1, 5000));
    cr_assert_eq(tr_test_load(&seen_nodelay) != 0, on, "TCP_NODELAY %s", on ? "on" : "off");
    cr_assert_eq(tr_test_load(&seen_keepalive) != 0, on, "SO_KEEPALIVE %s", on ? "on" : "off");
    close(fd);
    finish(&f);
}

Test(options, accepted_sockets_get_nodelay_and_keepalive_by_default)
{
    check_accepted_options(true);
}

Test(options, accepted_sockets_keep_the_kernel_defaults_when_asked)
{
    check_accepted_options(false);
}

static uint64_t client_opened; /* atomics */

static int client_open(tr_conn *c, void *user)
{
    (void)c;
    (void)user;
    tr_test_add(&client_opened, 1);
    return 0;
}

static const tr_handler client_handler = {.on_open = client_open, .on_frame = echo_frame};

Test(options, dialed_sockets_get_nodelay_and_keepalive)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    start(&f, &cfg);
    tr_client_config cc;
    tr_client_config_defaults(&cc);
    cc.connect = f.addr;
    cc.conn.codec = f.codec;
    cc.conn.handler = &client_handler;
    cc.on_socket = read_options;
    tr_test_store(&seen_sockets, 0);
    tr_test_store(&client_opened, 0);
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(f.rt, &cc, &id), 0);
    cr_assert(tr_test_wait_ge(&client_opened, 1, 5000));
    cr_assert(tr_test_wait_ge(&seen_sockets, 1, 5000));
    cr_assert_eq(tr_test_load(&seen_nodelay), 1);
    cr_assert_eq(tr_test_load(&seen_keepalive), 1);
    cr_assert_eq(tr_conn_close_id(id), 0);
    finish(&f);
}

/* ---- keep-alive timing ---- */

static uint64_t ka_idle, ka_intvl, ka_cnt, ka_seen; /* atomics */

static int read_keepalive(int fd, void *user)
{
    (void)user;
    int v;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &l) == 0) {
        tr_test_store(&ka_idle, (uint64_t)v);
    }
    l = sizeof(v);
    if (getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, &l) == 0) {
        tr_test_store(&ka_intvl, (uint64_t)v);
    }
    l = sizeof(v);
    if (getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, &l) == 0) {
        tr_test_store(&ka_cnt, (uint64_t)v);
    }
    tr_test_add(&ka_seen, 1);
    return 0;
}

static uint64_t client_ka_idle; /* atomics */

static int read_client_keepalive(int fd, void *user)
{
    (void)user;
    int v;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &l) == 0) {
        tr_test_store(&client_ka_idle, (uint64_t)v);
    }
    return 0;
}

Test(options, keepalive_timing_is_applied_on_both_sides)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.on_socket = read_keepalive;
    cfg.conn.keepalive_idle_s = 30;
    cfg.conn.keepalive_interval_s = 5;
    cfg.conn.keepalive_count = 3;
    tr_test_store(&ka_seen, 0);
    start(&f, &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "ka\n", "ka\n");
    cr_assert(tr_test_wait_ge(&ka_seen, 1, 5000));
    cr_assert_eq(tr_test_load(&ka_idle), 30);
    cr_assert_eq(tr_test_load(&ka_intvl), 5);
    cr_assert_eq(tr_test_load(&ka_cnt), 3);
    close(fd);

    /* A client keeps the seed's 5-minute idle by default. */
    tr_client_config cc;
    tr_client_config_defaults(&cc);
    cr_assert_eq(cc.conn.keepalive_idle_s, 300);
    cc.connect = f.addr;
    cc.conn.codec = f.codec;
    cc.conn.handler = &client_handler;
    cc.on_socket = read_client_keepalive;
    tr_test_store(&client_opened, 0);
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(f.rt, &cc, &id), 0);
    cr_assert(tr_test_wait_ge(&client_opened, 1, 5000)); /* after its on_socket */
    cr_assert_eq(tr_test_load(&client_ka_idle), 300);
    cr_assert_eq(tr_conn_close_id(id), 0);
    finish(&f);
}

/* ---- server-level info lines ---- */

static tr_test_log info_log;
enum { I_LISTENING = 1, I_DRAINING, I_STOPPED };

static void on_info(const char *line, void *user)
{
    (void)user;
    if (strstr(line, "event=server_listening") != NULL) {
        tr_test_log_add(&info_log, I_LISTENING, 0, 0);
    } else if (strstr(line, "event=server_draining") != NULL) {
        tr_test_log_add(&info_log, I_DRAINING, 0, 0);
    } else if (strstr(line, "event=server_stopped result=clean") != NULL) {
        tr_test_log_add(&info_log, I_STOPPED, 0, 0);
    }
}

static const tr_server_observer info_observer = {.on_info = on_info};

Test(options, on_info_reports_listening_draining_and_stopped_in_order)
{
    tr_test_log_init(&info_log);
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.observer = &info_observer;
    start(&f, &cfg);
    cr_assert_eq(tr_server_shutdown(f.srv, 5000), 0);
    tr_test_event ev[8];
    size_t n = tr_test_log_get(&info_log, ev, 8);
    cr_assert_eq(n, 3, "%zu info lines", n);
    cr_assert_eq(ev[0].kind, I_LISTENING);
    cr_assert_eq(ev[1].kind, I_DRAINING);
    cr_assert_eq(ev[2].kind, I_STOPPED);
    finish(&f);
    tr_test_log_fini(&info_log);
}

/* ---- CONTINUE after an idle timeout ---- */

Test(options, continue_after_an_idle_timeout_keeps_the_connection)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.idle_timeout_ms = 100;
    cfg.conn.policy[TR_ERR_IDLE_TIMEOUT] = TR_CONTINUE;
    start(&f, &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "before\n", "before\n");
    /* Two timeouts at least, counted, and the connection still serves. */
    tr_test_stat_arg a = {f.srv, offsetof(tr_server_stats, idle_timeouts), 2, false};
    cr_assert(tr_test_wait_until(tr_test_stat_cond, &a, 10000), "no idle timeouts counted");
    tr_test_roundtrip(fd, "after\n", "after\n");
    cr_assert_eq(tr_server_open_connections(f.srv), 1);
    close(fd);
    finish(&f);
}

/* ---- close cutting a running shutdown short ---- */

typedef struct shutdown_call {
    tr_server *srv;
    int rc;
    uint64_t done; /* atomics */
} shutdown_call;

static void *run_shutdown(void *arg)
{
    shutdown_call *sc = arg;
    sc->rc = tr_server_shutdown(sc->srv, 30000);
    tr_test_store(&sc->done, 1);
    return NULL;
}

static bool is_draining(void *arg)
{
    return tr_server_is_draining(arg);
}

Test(options, close_cuts_a_running_shutdown_short)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.linger_ms = 30000; /* a peer that never closes holds the drain */
    start(&f, &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "hold\n", "hold\n");
    shutdown_call sc = {f.srv, 1, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, run_shutdown, &sc), 0);
    cr_assert(tr_test_wait_until(is_draining, f.srv, 5000), "the shutdown began");
    cr_assert_not(tr_test_wait_ge(&sc.done, 1, 200), "it waits for the peer");
    cr_assert_eq(tr_server_close(f.srv), 0);
    cr_assert(tr_test_wait_ge(&sc.done, 1, 10000), "close ended the shutdown long before 30 s");
    pthread_join(t, NULL);
    cr_assert(sc.rc == 0 || sc.rc == TR_ETIMEDOUT, "shutdown: %s", tr_strerror(sc.rc));
    cr_assert_eq(tr_server_open_connections(f.srv), 0);
    cr_assert_not(tr_server_is_running(f.srv));
    close(fd);
    cr_assert_eq(tr_server_free(f.srv), 0);
    tr_test_runtime_finish(f.rt);
    tr_codec_free(f.codec);
}

/* ---- a client's on_error ---- */

static uint64_t client_errors, client_error_class; /* atomics */

static tr_error_action client_on_error(tr_conn *c, tr_error_class cls, int err, void *user)
{
    (void)c;
    (void)err;
    (void)user;
    tr_test_store(&client_error_class, (uint64_t)cls);
    tr_test_add(&client_errors, 1);
    return TR_DISCONNECT;
}

static int client_send_open(tr_conn *c, void *user)
{
    (void)user;
    return tr_conn_write(c, "hi", 2);
}

/* Answers every frame with a line longer than the client's limit. */
static int long_reply(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    return tr_conn_write(c, "a line much longer than eight bytes", 35);
}

static const tr_handler long_replier = {.on_frame = long_reply};

static const tr_handler erring_client = {
    .on_open = client_send_open, .on_frame = echo_frame, .on_error = client_on_error};

static bool id_closed(void *arg)
{
    return tr_conn_id_is_closed(*(tr_conn_id *)arg);
}

Test(options, a_clients_on_error_sees_a_frame_too_large)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &long_replier;
    start(&f, &cfg);
    tr_test_store(&client_errors, 0);
    tr_client_config cc;
    tr_client_config_defaults(&cc);
    cc.connect = f.addr;
    cc.conn.codec = f.codec;
    cc.conn.handler = &erring_client;
    cc.conn.max_frame_bytes = 8; /* the server's reply is too large for it */
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(f.rt, &cc, &id), 0);
    cr_assert(tr_test_wait_ge(&client_errors, 1, 5000), "the client's on_error never ran");
    cr_assert_eq(tr_test_load(&client_error_class), TR_ERR_FRAME_TOO_LARGE);
    cr_assert(tr_test_wait_until(id_closed, &id, 5000), "DISCONNECT closed it");
    finish(&f);
}

/* ---- tr_conn_send_wait is told, not polling ---- */

typedef struct waiter {
    uint64_t conn;    /* atomics: the connection's id bits */
    uint64_t blocked; /* atomics: the queue was full for good, the long wait began */
    uint64_t done;    /* atomics */
    int rc;
} waiter;

static waiter wt;

static int record_conn(tr_conn *c, void *user)
{
    (void)user;
    tr_test_store(&wt.conn, tr_conn_get_id(c).bits);
    return 0;
}

static const tr_handler record_handler = {.on_open = record_conn, .on_frame = echo_frame};

static char chunk[16384];

static void *fill_then_wait(void *arg)
{
    (void)arg;
    tr_conn_id id = {tr_test_load(&wt.conn)};
    /* Until the kernel's buffers and the queue are full for good: a short
     * wait then times out. */
    int rc;
    while ((rc = tr_conn_send_wait(id, chunk, sizeof(chunk) - 1, 200)) == 0) {
    }
    if (rc == TR_ETIMEDOUT) {
        tr_test_store(&wt.blocked, 1);
        rc = tr_conn_send_wait(id, chunk, sizeof(chunk) - 1, 30000);
    }
    wt.rc = rc;
    tr_test_store(&wt.done, 1);
    return NULL;
}

/* Starts a waiter on a connection whose peer does not read, and returns
 * once it sleeps in the long wait. */
static void block_a_waiter(pthread_t *t)
{
    tr_test_store(&wt.blocked, 0);
    tr_test_store(&wt.done, 0);
    cr_assert_eq(pthread_create(t, NULL, fill_then_wait, NULL), 0);
    cr_assert(tr_test_wait_ge(&wt.blocked, 1, 20000), "the queue never filled (%s)",
              tr_strerror(wt.rc));
    cr_assert_not(tr_test_wait_ge(&wt.done, 1, 200), "it waits while the queue is full");
}

static void start_waiter_server(fixture *f)
{
    memset(&wt, 0, sizeof(wt));
    memset(chunk, 'x', sizeof(chunk) - 1);
    chunk[sizeof(chunk) - 1] = '\n';
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &record_handler;
    cfg.conn.send_queue_bytes = 256 * 1024;
    cfg.conn.high_watermark = 128 * 1024;
    cfg.conn.low_watermark = 64 * 1024;
    start(f, &cfg);
}

Test(options, send_wait_wakes_when_the_peer_reads_again)
{
    fixture f;
    start_waiter_server(&f);
    int fd = tr_test_sock_connect(f.addr, NULL, 5000);
    cr_assert_geq(fd, 0);
    tr_test_sock_rcvbuf(fd, 4096);
    cr_assert(tr_test_wait_ge(&wt.conn, 1, 5000));
    pthread_t t;
    block_a_waiter(&t);
    /* Read until the waiter got its send through. */
    static char sink[65536];
    while (!tr_test_load(&wt.done)) {
        if (tr_test_sock_readable(fd, 100) > 0 && recv(fd, sink, sizeof(sink), 0) <= 0) {
            break;
        }
    }
    cr_assert(tr_test_wait_ge(&wt.done, 1, 5000));
    pthread_join(t, NULL);
    cr_assert_eq(wt.rc, 0, "got %s", tr_strerror(wt.rc));
    close(fd);
    finish(&f);
}

Test(options, send_wait_wakes_when_the_connection_is_aborted)
{
    fixture f;
    start_waiter_server(&f);
    int fd = tr_test_sock_connect(f.addr, NULL, 5000);
    cr_assert_geq(fd, 0);
    tr_test_sock_rcvbuf(fd, 4096);
    cr_assert(tr_test_wait_ge(&wt.conn, 1, 5000));
    pthread_t t;
    block_a_waiter(&t);
    cr_assert_eq(tr_conn_abort_id((tr_conn_id){tr_test_load(&wt.conn)}), 0);
    cr_assert(tr_test_wait_ge(&wt.done, 1, 5000), "the waiter slept on to its 30 s deadline");
    pthread_join(t, NULL);
    cr_assert_eq(wt.rc, TR_ECLOSED, "got %s", tr_strerror(wt.rc));
    close(fd);
    finish(&f);
}
