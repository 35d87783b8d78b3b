/* The blocking client against a troupe echo server on loopback: connect
 * with a timeout, write and read frames, one exchange, read timeouts,
 * frames read after the peer closed, connect errors, and the refusal to
 * block on a worker. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(bclient, .timeout = 60.0);

/* Echoes, and "bye" makes the server answer then close. */
static int echo_or_bye(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    int rc = tr_conn_write(c, data, len);
    if (len == 3 && memcmp(data, "bye", 3) == 0) {
        tr_conn_close(c);
    }
    return rc;
}

static const tr_handler echo = {.on_frame = echo_or_bye};

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[80];
} fixture;

static void start(fixture *f)
{
    f->rt = tr_test_runtime(2);
    f->codec = tr_test_codec_line(0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = f->codec;
    cfg.conn.handler = &echo;
    f->srv = tr_test_server(f->rt, &cfg, f->addr, sizeof(f->addr));
}

static void finish(fixture *f)
{
    cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
    cr_assert_eq(tr_server_free(f->srv), 0);
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
}

static void expect_frame(tr_bclient *b, const char *want, uint32_t ms)
{
    tr_buf *buf = NULL;
    int rc = tr_bclient_read(b, &buf, ms);
    cr_assert_eq(rc, 0, "read: %s", tr_strerror(rc));
    cr_assert_eq(tr_buf_len(buf), strlen(want));
    cr_assert_arr_eq(tr_buf_data(buf), want, strlen(want));
    tr_buf_release(buf);
}

Test(bclient, write_read_and_once_against_an_echo_server)
{
    fixture f;
    start(&f);
    int err = 1;
    tr_bclient *b = tr_bclient_connect(f.rt, f.addr, f.codec, 0, 5000, &err);
    cr_assert_not_null(b, "connect: %s", tr_strerror(err));
    cr_assert(tr_bclient_is_connected(b));
    cr_assert_eq(tr_bclient_write(b, "one", 3, 5000), 0);
    cr_assert_eq(tr_bclient_write(b, "two", 3, 5000), 0);
    expect_frame(b, "one", 5000);
    expect_frame(b, "two", 5000);
    tr_buf *reply = NULL;
    cr_assert_eq(tr_bclient_once(b, "ping", 4, &reply, 5000), 0);
    cr_assert_eq(tr_buf_len(reply), 4);
    cr_assert_arr_eq(tr_buf_data(reply), "ping", 4);
    tr_buf_release(reply);
    /* Nothing more comes: the read times out, bounded. */
    tr_buf *none = NULL;
    uint64_t t0 = tr_test_now_ms();
    cr_assert_eq(tr_bclient_read(b, &none, 100), TR_ETIMEDOUT);
    cr_assert_geq(tr_test_now_ms() - t0, 100);
    cr_assert_null(none);
    tr_bclient_close(b);
    finish(&f);
}

Test(bclient, frames_received_before_the_close_are_still_read)
{
    fixture f;
    start(&f);
    int err = 1;
    tr_bclient *b = tr_bclient_connect(f.rt, f.addr, f.codec, 0, 5000, &err);
    cr_assert_not_null(b);
    cr_assert_eq(tr_bclient_write(b, "a", 1, 5000), 0);
    cr_assert_eq(tr_bclient_write(b, "bye", 3, 5000), 0);
    expect_frame(b, "a", 5000);
    expect_frame(b, "bye", 5000);
    tr_buf *none = NULL;
    cr_assert_eq(tr_bclient_read(b, &none, 5000), TR_ECLOSED, "the server closed after bye");
    cr_assert_not(tr_bclient_is_connected(b));
    cr_assert_eq(tr_bclient_close_reason(b), 0, "an orderly close");
    cr_assert_eq(tr_bclient_write(b, "late", 4, 100), TR_ECLOSED);
    tr_bclient_close(b);
    finish(&f);
}

Test(bclient, connect_errors_are_clear_and_bounded)
{
    tr_runtime *rt = tr_test_runtime(1);
    tr_codec *codec = tr_test_codec_line(0);
    int port = 0;
    int lfd = tr_test_sock_bound("127.0.0.1", &port); /* bound, never listening */
    cr_assert_geq(lfd, 0);
    char addr[64];
    tr_test_addr(addr, sizeof(addr), "127.0.0.1", port);
    int err = 1;
    uint64_t t0 = tr_test_now_ms();
    cr_assert_null(tr_bclient_connect(rt, addr, codec, 0, 5000, &err));
    cr_assert_eq(err, -ECONNREFUSED, "got %s", tr_strerror(err));
    cr_assert_lt(tr_test_now_ms() - t0, 5000, "refused at once, not at the timeout");
    close(lfd);
    cr_assert_null(tr_bclient_connect(rt, "not an address", codec, 0, 1000, &err));
    cr_assert_eq(err, TR_EADDR);
    cr_assert_null(tr_bclient_connect(rt, "unix:/nonexistent/dir/s.sock", codec, 0, 1000, &err));
    cr_assert_eq(err, -ENOENT, "got %s", tr_strerror(err));
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

/* On a worker, every call refuses instead of waiting for its own thread. */
static uint64_t on_worker_rc, on_worker_done; /* atomics */
static char worker_addr[80];
static const tr_codec *worker_codec;

static int try_on_worker(tr_actor *self, void *arg)
{
    (void)arg;
    int err = 0;
    tr_bclient *b = tr_bclient_connect(tr_actor_runtime(self), worker_addr, worker_codec, 0, 100,
                                       &err);
    tr_test_store(&on_worker_rc, (uint64_t)(int64_t)(b == NULL ? err : 0));
    tr_test_store(&on_worker_done, 1);
    return TR_EINVAL; /* and exit */
}

static void ignore(tr_actor *self, tr_msg *m)
{
    (void)self;
    (void)m;
}

static const tr_behavior on_worker = {.name = "bclient-on-worker", .init = try_on_worker,
                                      .receive = ignore};

Test(bclient, refuses_to_block_on_a_worker)
{
    fixture f;
    start(&f);
    memcpy(worker_addr, f.addr, sizeof(worker_addr));
    worker_codec = f.codec;
    tr_actor_id id;
    cr_assert_eq(tr_spawn(f.rt, &on_worker, NULL, NULL, &id), 0);
    cr_assert(tr_test_wait_ge(&on_worker_done, 1, 5000));
    cr_assert_eq((int)(int64_t)tr_test_load(&on_worker_rc), TR_EDEADLK);
    finish(&f);
}
