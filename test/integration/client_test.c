/* TCP clients over real sockets: dial results (refused, timeout), callback
 * order, sends queued before the connection opens, a peer that resets
 * mid-frame, reconnect with backoff keeping the id, and tr_client_once. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "leak.h"
#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(client, .timeout = 60.0);

enum { E_DIAL = 1, E_OPEN, E_FRAME, E_CLOSE };
static tr_test_log events;
static uint64_t dials_ok, dials_failed, opens, frames, closes;
static uint64_t last_close_reason;

static void on_dial(tr_conn_id id, int err, void *user)
{
    (void)id;
    (void)user;
    tr_test_log_add(&events, E_DIAL, err, (int64_t)tr_test_now_ms());
    tr_test_add(err == 0 ? &dials_ok : &dials_failed, 1);
}

static int c_open(tr_conn *c, void *user)
{
    (void)user;
    tr_test_log_add(&events, E_OPEN, 0, (int64_t)tr_conn_get_id(c).bits);
    tr_test_add(&opens, 1);
    return 0;
}

static int c_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)user;
    int64_t v = 0;
    memcpy(&v, data, len < sizeof(v) ? len : sizeof(v));
    tr_test_log_add(&events, E_FRAME, (int32_t)len, v);
    tr_test_add(&frames, 1);
    return 0;
}

static void c_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    tr_test_store(&last_close_reason, (uint64_t)(int64_t)reason);
    tr_test_log_add(&events, E_CLOSE, reason, 0);
    tr_test_add(&closes, 1);
}

static const tr_handler client_handler = {
    .on_open = c_open, .on_frame = c_frame, .on_close = c_close};

static int echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static const tr_handler echo_handler = {.on_frame = echo_frame};

static tr_server *echo_server(tr_runtime *rt, const tr_codec *codec, const char *listen, char *addr,
                              size_t len)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = listen;
    cfg.conn.codec = codec;
    cfg.conn.handler = &echo_handler;
    return tr_test_server(rt, &cfg, addr, len);
}

static void client_config(tr_client_config *cfg, const char *addr, const tr_codec *codec)
{
    tr_client_config_defaults(cfg);
    cfg->connect = addr;
    cfg->conn.codec = codec;
    cfg->conn.handler = &client_handler;
    cfg->on_dial = on_dial;
}

static bool id_closed(void *arg)
{
    return tr_conn_id_is_closed(*(tr_conn_id *)arg);
}

/* ---- dialling ---- */

Test(client, connect_refused_reports_econnrefused_and_never_opens)
{
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    int port;
    int holder = tr_test_sock_bound("127.0.0.1", &port); /* bound, not listening */
    cr_assert_geq(holder, 0);
    char addr[64];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    tr_client_config cfg;
    client_config(&cfg, addr, codec);
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert_neq(id.bits, 0);
    cr_assert(tr_test_wait_ge(&dials_failed, 1, 5000));
    int32_t err[4];
    cr_assert_eq(tr_test_log_select(&events, E_DIAL, err, NULL, 4), 1);
    cr_assert_eq(err[0], TR_ECONNREFUSED);
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    cr_assert_eq(tr_conn_send(id, "x", 1), TR_ECLOSED);
    cr_assert(tr_test_wait_actor_count(rt, 0, 5000), "the connection actor is gone");
    cr_assert_eq(tr_test_load(&opens), 0);
    cr_assert_eq(tr_test_load(&closes), 0, "never opened: no on_close");
    close(holder);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_log_fini(&events);
    tr_test_leak_check();
}

Test(client, reconnect_gives_up_after_max_attempts)
{
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    int port;
    int holder = tr_test_sock_bound("127.0.0.1", &port);
    cr_assert_geq(holder, 0);
    char addr[64];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    tr_client_config cfg;
    client_config(&cfg, addr, codec);
    cfg.reconnect = true;
    cfg.backoff_min_ms = 10;
    cfg.backoff_max_ms = 20;
    cfg.max_attempts = 3;
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    cr_assert(tr_test_wait_actor_count(rt, 0, 5000));
    cr_assert_eq(tr_test_load(&dials_failed), 3);
    cr_assert_eq(tr_test_load(&dials_ok), 0);
    close(holder);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_log_fini(&events);
    tr_test_leak_check();
}

/* Fills the accept queue of a backlog-0 listener that never accepts, so
 * further SYNs are dropped and a connect hangs until its timeout (Linux
 * drops a SYN when the accept queue is full). Returns the fillers. */
static int fill_backlog(int port, int *fillers, int max)
{
    char addr[64];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    int n = 0;
    while (n < max) {
        int fd = tr_test_sock_new(addr, 0);
        cr_assert_geq(fd, 0);
        fillers[n++] = fd;
        if (tr_test_sock_connect_fd(fd, addr, 300) == -ETIMEDOUT) {
            return n; /* this one hangs: the queue is full */
        }
    }
    cr_assert_fail("the accept queue never filled");
    return n;
}

Test(client, connect_to_a_full_backlog_times_out)
{
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    int port;
    int lfd = tr_test_sock_listen("127.0.0.1", 0, &port);
    cr_assert_geq(lfd, 0);
    int fillers[16];
    int nf = fill_backlog(port, fillers, 16);
    char addr[64];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    tr_client_config cfg;
    client_config(&cfg, addr, codec);
    cfg.connect_timeout_ms = 300;
    uint64_t t0 = tr_test_now_ms();
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_ge(&dials_failed, 1, 5000));
    int32_t err[4];
    int64_t at[4];
    cr_assert_eq(tr_test_log_select(&events, E_DIAL, err, at, 4), 1);
    cr_assert_eq(err[0], TR_ETIMEDOUT, "dial: %s", tr_strerror(err[0]));
    cr_assert_geq((uint64_t)at[0] + 5, t0 + 300, "timed out after %lld ms",
                  (long long)((uint64_t)at[0] - t0));
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    cr_assert(tr_test_wait_actor_count(rt, 0, 5000));
    cr_assert_eq(tr_test_load(&opens), 0);
    for (int i = 0; i < nf; i++) {
        close(fillers[i]);
    }
    close(lfd);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_log_fini(&events);
    tr_test_leak_check();
}

/* ---- an open connection ---- */

Test(client, callbacks_run_dial_open_frames_close_and_early_sends_are_kept)
{
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    char addr[80];
    tr_server *srv = echo_server(rt, codec, "127.0.0.1:0", addr, sizeof(addr));
    tr_client_config cfg;
    client_config(&cfg, addr, codec);
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    /* Sent before the dial finished: queued, then sent once open. */
    cr_assert_eq(tr_conn_send(id, "early", 5), 0);
    cr_assert(tr_test_wait_ge(&frames, 1, 5000));
    cr_assert_eq(tr_conn_send(id, "later", 5), 0);
    cr_assert(tr_test_wait_ge(&frames, 2, 5000));
    cr_assert_eq(tr_conn_close_id(id), 0);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    tr_test_event ev[16];
    size_t n = tr_test_log_get(&events, ev, 16);
    cr_assert_eq(n, 5);
    cr_assert_eq(ev[0].kind, E_DIAL);
    cr_assert_eq(ev[0].who, 0);
    cr_assert_eq(ev[1].kind, E_OPEN);
    cr_assert_eq((uint64_t)ev[1].val, id.bits, "on_open sees the id tr_client_connect gave");
    cr_assert_eq(ev[2].kind, E_FRAME);
    cr_assert_eq(ev[2].who, 5);
    cr_assert_eq(memcmp(&ev[2].val, "early", 5), 0);
    cr_assert_eq(ev[3].kind, E_FRAME);
    cr_assert_eq(memcmp(&ev[3].val, "later", 5), 0);
    cr_assert_eq(ev[4].kind, E_CLOSE);
    cr_assert_eq(ev[4].who, 0, "orderly close");
    cr_assert(tr_test_wait_open(srv, 0, 5000));
    cr_assert_eq(tr_server_shutdown(srv, 5000), 0);
    tr_server_free(srv);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_log_fini(&events);
    tr_test_leak_check();
}

Test(client, peer_reset_mid_frame_closes_with_econnreset)
{
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_length();
    int port;
    int lfd = tr_test_sock_listen("127.0.0.1", 8, &port);
    cr_assert_geq(lfd, 0);
    char addr[64];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    tr_client_config cfg;
    client_config(&cfg, addr, codec);
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert_eq(tr_test_sock_readable(lfd, 5000), 1);
    int peer = accept(lfd, NULL, NULL);
    cr_assert_geq(peer, 0);
    cr_assert(tr_test_wait_ge(&opens, 1, 5000));
    /* A whole frame, then half of the next. */
    unsigned char out[4 + 2 + 4 + 10];
    tr_test_be32(out, 2);
    memcpy(out + 4, "ok", 2);
    tr_test_be32(out + 6, 100);
    memset(out + 10, 'h', 10);
    cr_assert_eq(tr_test_sock_send(peer, out, sizeof(out)), 0);
    cr_assert(tr_test_wait_ge(&frames, 1, 5000));
    tr_test_sock_reset(peer);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq((int64_t)tr_test_load(&last_close_reason), TR_ECONNRESET);
    cr_assert_eq(tr_test_load(&frames), 1, "the half frame is never delivered");
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    close(lfd);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_log_fini(&events);
    tr_test_leak_check();
}

/* ---- reconnect ---- */

static bool frame_count_is_2(void *arg)
{
    (void)arg;
    return tr_test_load(&frames) >= 2;
}

Test(client, reconnect_with_backoff_keeps_the_connection_id)
{
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    char addr[80];
    tr_server *srv = echo_server(rt, codec, "127.0.0.1:0", addr, sizeof(addr));
    tr_client_config cfg;
    client_config(&cfg, addr, codec);
    cfg.reconnect = true;
    cfg.backoff_min_ms = 50;
    cfg.backoff_max_ms = 200;
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert_eq(tr_conn_send(id, "one", 3), 0);
    cr_assert(tr_test_wait_ge(&frames, 1, 5000));

    /* The server goes away: the connection closes and dials again, with
     * growing pauses between the refused attempts. */
    cr_assert_eq(tr_server_close(srv), 0);
    tr_server_free(srv);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert(tr_test_wait_ge(&dials_failed, 4, 10000));
    cr_assert_not(tr_conn_id_is_closed(id), "the id survives while it redials");
    int32_t err[64];
    int64_t at[64];
    size_t nd = tr_test_log_select(&events, E_DIAL, err, at, 64);
    cr_assert_geq(nd, 5);
    cr_assert_eq(err[0], 0);
    for (size_t i = 1; i < nd; i++) {
        cr_assert_eq(err[i], TR_ECONNREFUSED, "dial %zu: %s", i, tr_strerror(err[i]));
    }
    /* Full jitter over the upper half of min * 2^k, capped: the pauses
     * before attempts 2, 3, 4 are at least 25, 50, 100 ms, at most 200. */
    cr_assert_geq(at[2] - at[1], 25);
    cr_assert_geq(at[3] - at[2], 50);
    cr_assert_geq(at[4] - at[3], 100);
    cr_assert_lt(at[4] - at[3], 1000, "capped at backoff_max_ms");

    /* The server is back on the same port: the client reconnects with the
     * same id, and sends reach it again. */
    tr_server *srv2 = echo_server(rt, codec, addr, addr, sizeof(addr));
    cr_assert(tr_test_wait_ge(&dials_ok, 2, 5000));
    cr_assert(tr_test_wait_ge(&opens, 2, 5000));
    int32_t who[4];
    int64_t ids[4];
    cr_assert_eq(tr_test_log_select(&events, E_OPEN, who, ids, 4), 2);
    cr_assert_eq((uint64_t)ids[0], id.bits);
    cr_assert_eq((uint64_t)ids[1], id.bits, "same id after the reconnect");
    cr_assert_eq(tr_conn_send(id, "two", 3), 0);
    cr_assert(tr_test_wait_until(frame_count_is_2, NULL, 5000));
    cr_assert_eq(tr_conn_close_id(id), 0);
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    cr_assert(tr_test_wait_open(srv2, 0, 5000));
    cr_assert_eq(tr_server_shutdown(srv2, 5000), 0);
    tr_server_free(srv2);
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&opens), 2);
    tr_codec_free(codec);
    tr_test_log_fini(&events);
    tr_test_leak_check();
}

/* ---- tr_client_once ---- */

static int silent_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)data;
    (void)len;
    (void)user;
    return 0;
}

static int hangup_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    return tr_conn_close(c);
}

Test(client, once_returns_the_reply_frame)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_length();
    char addr[80];
    tr_server *srv = echo_server(rt, codec, "127.0.0.1:0", addr, sizeof(addr));
    tr_buf *reply = NULL;
    cr_assert_eq(tr_client_once(addr, codec, "ping", 4, 1024, 5000, &reply), 0);
    cr_assert_not_null(reply);
    cr_assert_eq(tr_buf_len(reply), 4);
    cr_assert_arr_eq(tr_buf_data(reply), "ping", 4);
    tr_buf_release(reply);
    /* A reply larger than max_frame is refused. */
    static unsigned char big[4096];
    reply = NULL;
    cr_assert_eq(tr_client_once(addr, codec, big, sizeof(big), 100, 5000, &reply), TR_EMSGSIZE);
    cr_assert_null(reply);
    cr_assert(tr_test_wait_open(srv, 0, 5000));
    cr_assert_eq(tr_test_stats(srv).accepted, 2);
    cr_assert_eq(tr_server_shutdown(srv, 5000), 0);
    tr_server_free(srv);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(client, once_times_out_when_no_reply_comes)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    static const tr_handler silent = {.on_frame = silent_frame};
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &silent;
    char addr[80];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
    tr_buf *reply = NULL;
    uint64_t t0 = tr_test_now_ms();
    cr_assert_eq(tr_client_once(addr, codec, "ping", 4, 1024, 300, &reply), TR_ETIMEDOUT);
    uint64_t took = tr_test_now_ms() - t0;
    cr_assert_null(reply);
    cr_assert_geq(took, 300);
    cr_assert_lt(took, 3000);
    cr_assert(TR_TEST_WAIT_STAT_EQ(srv, frames_in, 1, 5000), "the request arrived");
    cr_assert(tr_test_wait_open(srv, 0, 5000));
    cr_assert_eq(tr_server_shutdown(srv, 5000), 0);
    tr_server_free(srv);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(client, once_reports_refused_and_peer_closed)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    int port;
    int holder = tr_test_sock_bound("127.0.0.1", &port);
    cr_assert_geq(holder, 0);
    char addr[80];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    tr_buf *reply = NULL;
    cr_assert_eq(tr_client_once(addr, codec, "x", 1, 1024, 2000, &reply), TR_ECONNREFUSED);
    cr_assert_eq(tr_client_once("nonsense", codec, "x", 1, 1024, 2000, &reply), TR_EADDR);
    close(holder);

    static const tr_handler hangup = {.on_frame = hangup_frame};
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &hangup;
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
    cr_assert_eq(tr_client_once(addr, codec, "x", 1, 1024, 5000, &reply), TR_ECLOSED);
    cr_assert_null(reply);
    cr_assert(tr_test_wait_open(srv, 0, 5000));
    cr_assert_eq(tr_server_shutdown(srv, 5000), 0);
    tr_server_free(srv);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_leak_check();
}

/* A thread that sends without pause until told to stop. */
typedef struct blaster {
    tr_conn_id id;
    uint64_t stop;
    uint64_t sent, refused, closed, other;
} blaster;

static void *blast(void *arg)
{
    blaster *b = arg;
    while (!tr_test_load(&b->stop)) {
        int rc = tr_conn_send(b->id, "blast-blast-blast", 17);
        tr_test_add(rc == 0             ? &b->sent
                    : rc == TR_EBUFFULL ? &b->refused
                    : rc == TR_ECLOSED  ? &b->closed /* while it closes, before the redial */
                                        : &b->other,
                    1);
        if (rc != 0) {
            sched_yield();
        }
    }
    return NULL;
}

static bool send_succeeds(void *arg)
{
    return tr_conn_send(*(tr_conn_id *)arg, "probe", 5) == 0;
}

Test(client, sends_racing_a_lost_connection_keep_the_queue_accounting_right)
{
    /* Sends reserved just before the connection dropped and handled after
     * the client reset itself for a redial must not leave the queue's
     * byte count wrong (it would refuse every send from then on). */
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    char addr[80];
    tr_server *srv = echo_server(rt, codec, "127.0.0.1:0", addr, sizeof(addr));
    tr_client_config cfg;
    client_config(&cfg, addr, codec);
    cfg.reconnect = true;
    cfg.backoff_min_ms = 10;
    cfg.backoff_max_ms = 20;
    cfg.conn.send_queue_bytes = 64 * 1024;
    cfg.conn.high_watermark = 32 * 1024;
    cfg.conn.low_watermark = 8 * 1024;
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_ge(&opens, 1, 5000));
    for (int round = 0; round < 5; round++) {
        blaster b = {.id = id};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, blast, &b), 0);
        cr_assert(tr_test_wait_ge(&frames, tr_test_load(&frames) + 10, 5000));
        cr_assert_eq(tr_server_close(srv), 0);
        tr_server_free(srv);
        cr_assert(tr_test_wait_ge(&dials_failed, tr_test_load(&dials_failed) + 1, 5000));
        srv = echo_server(rt, codec, addr, addr, sizeof(addr));
        cr_assert(tr_test_wait_ge(&opens, (uint64_t)round + 2, 5000));
        tr_test_store(&b.stop, 1);
        pthread_join(th, NULL);
        cr_assert_eq(tr_test_load(&b.other), 0);
        cr_assert(tr_test_wait_until(send_succeeds, &id, 5000), "round %d: sends refused for good",
                  round);
    }
    cr_assert_eq(tr_conn_close_id(id), 0);
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    cr_assert(tr_test_wait_open(srv, 0, 5000));
    cr_assert_eq(tr_server_shutdown(srv, 5000), 0);
    tr_server_free(srv);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_log_fini(&events);
    tr_test_leak_check();
}

Test(client, close_while_redialing_stops_the_client)
{
    tr_test_log_init(&events);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    int port;
    int holder = tr_test_sock_bound("127.0.0.1", &port);
    cr_assert_geq(holder, 0);
    char addr[64];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    tr_client_config cfg;
    client_config(&cfg, addr, codec);
    cfg.reconnect = true;
    cfg.backoff_min_ms = 50;
    cfg.backoff_max_ms = 100;
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_ge(&dials_failed, 2, 5000));
    /* Between attempts: the application gives up on it. */
    cr_assert_eq(tr_conn_close_id(id), 0);
    cr_assert(tr_test_wait_until(id_closed, &id, 5000), "still redialing");
    cr_assert(tr_test_wait_actor_count(rt, 0, 5000));
    uint64_t failed = tr_test_load(&dials_failed);
    cr_assert_leq(failed, 3, "at most the attempt in flight when closed");
    close(holder);
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&dials_failed), failed, "no dial after the close");
    cr_assert_eq(tr_test_load(&opens), 0);
    tr_codec_free(codec);
    tr_test_log_fini(&events);
    tr_test_leak_check();
}
