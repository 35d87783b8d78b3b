/* Server shutdown over real sockets: graceful drains deliver every queued
 * byte and the goodbye before FIN, refuse new connects, report a timeout
 * when a peer never reads; close is immediate. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leak.h"
#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(shutdown, .timeout = 60.0);

enum { BIG = 64 * 1024 };
static const char bye[] = "bye";
static unsigned char pattern[BIG];
static uint64_t frames, goodbyes, closes, forced;

/* Any input: queue BIG bytes of pattern. */
static int big_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    int rc = tr_conn_write(c, pattern, BIG);
    tr_test_add(&frames, 1);
    return rc;
}

static void say_bye(tr_conn *c, void *user)
{
    (void)user;
    if (tr_conn_write(c, bye, 3) == 0) {
        tr_test_add(&goodbyes, 1);
    }
}

static void count_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    tr_test_add(&closes, 1);
    if (reason != 0) {
        tr_test_add(&forced, 1);
    }
}

static const tr_handler big_handler = {
    .on_frame = big_frame, .on_shutdown = say_bye, .on_close = count_close};

static int small_sndbuf(int fd, void *user)
{
    (void)user;
    return tr_test_sock_sndbuf(fd, 4096);
}

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[80];
} fixture;

static void start(fixture *f, tr_codec *codec, tr_server_config *cfg)
{
    for (size_t i = 0; i < BIG; i++) {
        pattern[i] = (unsigned char)(i % 251);
    }
    f->rt = tr_test_runtime(2);
    f->codec = codec;
    cfg->listen = "127.0.0.1:0";
    cfg->conn.codec = codec;
    cfg->on_socket = small_sndbuf;
    int err = 1;
    f->srv = tr_server_new(f->rt, cfg, &err);
    cr_assert_not_null(f->srv);
    cr_assert_not(tr_server_is_running(f->srv));
    cr_assert_eq(tr_server_address(f->srv, f->addr, sizeof(f->addr)), TR_ESTATE);
    cr_assert_eq(tr_server_start(f->srv), 0);
    cr_assert_eq(tr_server_start(f->srv), TR_ESTATE, "started twice");
    cr_assert(tr_server_is_running(f->srv));
    cr_assert_not(tr_server_is_draining(f->srv));
    cr_assert_gt(tr_server_address(f->srv, f->addr, sizeof(f->addr)), 0);
}

static void finish(fixture *f)
{
    tr_server_free(f->srv);
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
}

/* A client that asked for BIG bytes and reads none of them yet. */
static int lazy_client(fixture *f)
{
    int fd = tr_test_sock_new(f->addr, 4096);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tr_test_sock_connect_fd(fd, f->addr, 5000), 0);
    cr_assert_eq(tr_test_sock_send_str(fd, "go"), 0);
    return fd;
}

typedef struct shutter {
    tr_server *srv;
    uint32_t timeout_ms;
    int rc;
    uint64_t took_ms;
    uint64_t done;
} shutter;

static void *run_shutdown(void *arg)
{
    shutter *s = arg;
    uint64_t t0 = tr_test_now_ms();
    s->rc = tr_server_shutdown(s->srv, s->timeout_ms);
    s->took_ms = tr_test_now_ms() - t0;
    tr_test_store(&s->done, 1);
    return NULL;
}

typedef struct dialer {
    const char *addr;
    int rc;
} dialer;

static void *dial(void *arg)
{
    dialer *d = arg;
    int fd = tr_test_sock_connect(d->addr, NULL, 2000);
    d->rc = fd < 0 ? fd : 0;
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

static int dial_from_thread(const char *addr)
{
    dialer d = {addr, 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, dial, &d), 0);
    pthread_join(th, NULL);
    return d.rc;
}

enum { NCLIENTS = 100 };

Test(shutdown, graceful_drain_of_100_connections_delivers_every_byte_before_fin)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &big_handler;
    cfg.conn.linger_ms = 20000; /* the clients read one after the other */
    start(&f, tr_test_codec_raw(), &cfg);
    int fds[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        fds[i] = lazy_client(&f);
    }
    /* Every connection has BIG bytes queued that its peer has not read. */
    cr_assert(tr_test_wait_ge(&frames, NCLIENTS, 10000));
    cr_assert_eq(tr_server_open_connections(f.srv), NCLIENTS);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_lt(st.bytes_out, (uint64_t)NCLIENTS * BIG, "data is still queued");

    shutter sh = {.srv = f.srv, .timeout_ms = 20000, .rc = 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_shutdown, &sh), 0);
    /* Each handler said goodbye: the listeners are closed by then. */
    cr_assert(tr_test_wait_ge(&goodbyes, NCLIENTS, 10000));
    cr_assert(tr_server_is_draining(f.srv));
    cr_assert_not(tr_server_is_running(f.srv));
    cr_assert_eq(tr_test_load(&sh.done), 0, "shutdown waits for the peers");
    cr_assert_eq(dial_from_thread(f.addr), -ECONNREFUSED, "connect while draining");

    /* Every client reads its BIG bytes and the goodbye, then EOF. */
    unsigned char *buf = malloc(BIG + 16);
    for (int i = 0; i < NCLIENTS; i++) {
        ssize_t n = tr_test_sock_recv_to_eof(fds[i], buf, BIG + 16, NULL);
        cr_assert_eq(n, BIG + 3, "client %d got %zd bytes", i, n);
        cr_assert_arr_eq(buf, pattern, BIG, "client %d", i);
        cr_assert_arr_eq(buf + BIG, bye, 3, "client %d: goodbye last", i);
        close(fds[i]);
    }
    free(buf);
    pthread_join(th, NULL);
    cr_assert_eq(sh.rc, 0, "shutdown: %s", tr_strerror(sh.rc));
    cr_assert_not(tr_server_is_draining(f.srv));
    cr_assert_not(tr_server_is_running(f.srv));
    cr_assert_eq(tr_server_open_connections(f.srv), 0);
    cr_assert_eq(dial_from_thread(f.addr), -ECONNREFUSED, "connect after shutdown");
    st = tr_test_stats(f.srv);
    cr_assert_eq(st.accepted, NCLIENTS);
    cr_assert_eq(st.closed, NCLIENTS);
    cr_assert_eq(st.forced_closes, 0);
    cr_assert_eq(st.bytes_out, (uint64_t)NCLIENTS * (BIG + 3));
    cr_assert_eq(tr_test_load(&closes), NCLIENTS);
    cr_assert_eq(tr_test_load(&forced), 0, "every close was orderly");
    cr_assert_eq(tr_server_shutdown(f.srv, 100), TR_ESTATE, "only once");
    finish(&f);
    tr_test_leak_check();
}

Test(shutdown, peer_that_never_reads_makes_shutdown_report_a_timeout)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &big_handler;
    start(&f, tr_test_codec_raw(), &cfg);
    int lazy = lazy_client(&f);
    int good = tr_test_sock_connect(f.addr, NULL, 5000);
    cr_assert_geq(good, 0);
    cr_assert(TR_TEST_WAIT_STAT_EQ(f.srv, accepted, 2, 5000));
    cr_assert(tr_test_wait_ge(&frames, 1, 5000));
    shutter sh = {.srv = f.srv, .timeout_ms = 500, .rc = 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_shutdown, &sh), 0);
    /* The good peer reads its goodbye and EOF, and closes. */
    char buf[8];
    cr_assert_eq(tr_test_sock_recv_to_eof(good, buf, sizeof(buf), NULL), 3);
    cr_assert_arr_eq(buf, bye, 3);
    close(good);
    pthread_join(th, NULL);
    cr_assert_eq(sh.rc, TR_ETIMEDOUT);
    cr_assert_geq(sh.took_ms, 500);
    cr_assert_lt(sh.took_ms, 5000);
    cr_assert_eq(tr_server_open_connections(f.srv), 0);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.forced_closes, 1);
    cr_assert_eq(st.closed, 2);
    cr_assert_eq(tr_test_load(&forced), 1);
    /* The lazy peer got part of its data, then a reset. */
    size_t partial = 0;
    ssize_t n = tr_test_sock_recv_to_eof(lazy, NULL, 0, &partial);
    cr_assert(n == -ECONNRESET || (n >= 0 && n < BIG + 3), "lazy peer: %zd", n);
    close(lazy);
    finish(&f);
    tr_test_leak_check();
}

Test(shutdown, peer_that_never_closes_is_forced_at_the_deadline)
{
    /* The peer reads everything but never closes its side: the lingering
     * close waits for it until the shutdown deadline. */
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &big_handler;
    start(&f, tr_test_codec_raw(), &cfg);
    int fd = tr_test_sock_connect(f.addr, NULL, 5000);
    cr_assert_geq(fd, 0);
    cr_assert(tr_test_wait_open(f.srv, 1, 5000));
    shutter sh = {.srv = f.srv, .timeout_ms = 300, .rc = 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_shutdown, &sh), 0);
    char buf[8];
    cr_assert_eq(tr_test_sock_recv(fd, buf, 3), 3);
    cr_assert_eq(tr_test_sock_peek(fd, 5000), 0, "EOF after the goodbye");
    pthread_join(th, NULL);
    cr_assert_eq(sh.rc, TR_ETIMEDOUT);
    cr_assert_eq(tr_test_stats(f.srv).forced_closes, 1);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(shutdown, close_is_immediate_and_resets_every_connection)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &big_handler;
    start(&f, tr_test_codec_raw(), &cfg);
    enum { N = 20 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = lazy_client(&f);
    }
    cr_assert(tr_test_wait_ge(&frames, N, 10000));
    uint64_t t0 = tr_test_now_ms();
    cr_assert_eq(tr_server_close(f.srv), 0);
    uint64_t took = tr_test_now_ms() - t0;
    cr_assert_lt(took, 2000, "close took %llu ms", (unsigned long long)took);
    cr_assert_eq(tr_server_open_connections(f.srv), 0, "all closed when close returns");
    cr_assert_not(tr_server_is_running(f.srv));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.closed, N);
    cr_assert_eq(st.forced_closes, N);
    cr_assert_eq(tr_test_load(&goodbyes), 0, "no goodbye on close");
    for (int i = 0; i < N; i++) {
        size_t partial = 0;
        ssize_t n = tr_test_sock_recv_to_eof(fds[i], NULL, 0, &partial);
        cr_assert(n == -ECONNRESET || (n >= 0 && n < BIG), "client %d: %zd", i, n);
        close(fds[i]);
    }
    cr_assert_eq(dial_from_thread(f.addr), -ECONNREFUSED);
    cr_assert_eq(tr_server_close(f.srv), 0, "close twice is harmless");
    finish(&f);
    tr_test_leak_check();
}

/* ---- goodbye frames ---- */

static int echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static const tr_handler bye_handler = {
    .on_frame = echo_frame, .on_shutdown = say_bye, .on_close = count_close};

Test(shutdown, on_shutdown_goodbye_frame_arrives_before_eof)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &bye_handler;
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "hi\n", "hi\n");
    shutter sh = {.srv = f.srv, .timeout_ms = 5000, .rc = 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_shutdown, &sh), 0);
    char buf[16];
    cr_assert_eq(tr_test_sock_recv_to_eof(fd, buf, sizeof(buf), NULL), 4);
    cr_assert_arr_eq(buf, "bye\n", 4);
    close(fd);
    pthread_join(th, NULL);
    cr_assert_eq(sh.rc, 0);
    cr_assert_eq(tr_test_load(&goodbyes), 1);
    cr_assert_eq(tr_test_load(&closes), 1);
    cr_assert_eq(tr_test_load(&forced), 0);
    finish(&f);
    tr_test_leak_check();
}

/* A handler actor says goodbye with tr_conn_send, then closes. */
static uint64_t actor_opened, actor_closed;

static void bye_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    tr_conn_id id = tr_conn_id_from_msg(m);
    switch (tr_msg_type(m)) {
    case TR_MSG_CONN_OPEN:
        tr_test_add(&actor_opened, 1);
        break;
    case TR_MSG_CONN_FRAME:
        tr_conn_send(id, tr_msg_data(m), tr_msg_len(m));
        break;
    case TR_MSG_CONN_SHUTDOWN:
        if (tr_conn_send(id, "farewell", 8) == 0) {
            tr_test_add(&goodbyes, 1);
        }
        tr_conn_close_id(id);
        break;
    case TR_MSG_CONN_CLOSED:
        tr_test_add(&actor_closed, 1);
        break;
    default:
        break;
    }
}

static const tr_behavior bye_actor = {.name = "bye", .receive = bye_receive};

Test(shutdown, handler_actor_goodbye_arrives_before_eof)
{
    fixture f;
    f.rt = tr_test_runtime(2);
    f.codec = tr_test_codec_line(0);
    tr_actor_id hid;
    cr_assert_eq(tr_spawn(f.rt, &bye_actor, NULL, NULL, &hid), 0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = f.codec;
    cfg.handler_actor = hid;
    f.srv = tr_test_server(f.rt, &cfg, f.addr, sizeof(f.addr));
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = tr_test_client(f.addr);
        tr_test_roundtrip(fds[i], "hello\n", "hello\n");
    }
    cr_assert_eq(tr_test_load(&actor_opened), 3);
    shutter sh = {.srv = f.srv, .timeout_ms = 5000, .rc = 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_shutdown, &sh), 0);
    for (int i = 0; i < 3; i++) {
        char buf[16];
        cr_assert_eq(tr_test_sock_recv_to_eof(fds[i], buf, sizeof(buf), NULL), 9);
        cr_assert_arr_eq(buf, "farewell\n", 9);
        close(fds[i]);
    }
    pthread_join(th, NULL);
    cr_assert_eq(sh.rc, 0);
    cr_assert(tr_test_wait_ge(&actor_closed, 3, 5000));
    cr_assert_eq(tr_test_load(&goodbyes), 3);
    finish(&f);
    tr_test_leak_check();
}
