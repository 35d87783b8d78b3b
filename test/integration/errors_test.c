/* The error policy over real sockets: oversized frames (DISCONNECT and
 * CONTINUE), handler errors, idle timeouts, peers that reset mid-frame or
 * go away while the server is still writing. */
#include <criterion/criterion.h>
#include <errno.h>
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

TestSuite(errors, .timeout = 30.0);

/* What the callbacks saw, for the test thread. */
static uint64_t closes;
static uint64_t close_reason; /* (uint64_t)(int64_t) of the last reason */
static uint64_t observed_errors;
static uint64_t observed_class, observed_err, observed_action;

static int echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static void rec_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    tr_test_store(&close_reason, (uint64_t)(int64_t)reason);
    tr_test_add(&closes, 1);
}

static void obs_error(tr_conn *c, tr_error_class cls, int err, tr_error_action act, void *user)
{
    (void)c;
    (void)user;
    tr_test_store(&observed_class, (uint64_t)cls);
    tr_test_store(&observed_err, (uint64_t)(int64_t)err);
    tr_test_store(&observed_action, (uint64_t)act);
    tr_test_add(&observed_errors, 1);
}

static const tr_handler echo_handler = {.on_frame = echo_frame, .on_close = rec_close};
static const tr_server_observer observer = {.on_error = obs_error};

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[80];
} fixture;

static void start(fixture *f, tr_codec *codec, tr_server_config *cfg)
{
    f->rt = tr_test_runtime(2);
    f->codec = codec;
    cfg->listen = "127.0.0.1:0";
    cfg->conn.codec = codec;
    if (cfg->conn.handler == NULL) {
        cfg->conn.handler = &echo_handler;
    }
    cfg->observer = &observer;
    f->srv = tr_test_server(f->rt, cfg, f->addr, sizeof(f->addr));
}

static void finish(fixture *f)
{
    cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
    tr_server_free(f->srv);
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
}

static int64_t last_reason(void)
{
    return (int64_t)tr_test_load(&close_reason);
}

/* ---- oversized frames ---- */

Test(errors, oversized_line_with_disconnect_closes_the_connection)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.max_frame_bytes = 16;
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "short\n", "short\n");
    char big[64];
    memset(big, 'x', sizeof(big));
    big[63] = '\n';
    cr_assert_eq(tr_test_sock_send(fd, big, sizeof(big)), 0);
    char buf[8];
    cr_assert_eq(tr_test_sock_recv_to_eof(fd, buf, sizeof(buf), NULL), 0, "EOF, nothing echoed");
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(last_reason(), TR_EMSGSIZE);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_FRAME_TOO_LARGE], 1);
    cr_assert_eq(st.disconnects, 1);
    cr_assert_eq(st.continues, 0);
    cr_assert_eq(st.frames_in, 1);
    cr_assert_eq(tr_test_load(&observed_errors), 1);
    cr_assert_eq(tr_test_load(&observed_class), TR_ERR_FRAME_TOO_LARGE);
    cr_assert_eq((int64_t)tr_test_load(&observed_err), TR_EMSGSIZE);
    cr_assert_eq(tr_test_load(&observed_action), TR_DISCONNECT);
    finish(&f);
    tr_test_leak_check();
}

Test(errors, oversized_line_with_continue_skips_it_and_keeps_the_connection)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.max_frame_bytes = 16;
    cfg.conn.policy[TR_ERR_FRAME_TOO_LARGE] = TR_CONTINUE;
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    /* The long line goes in pieces, so the codec sees it exceed the limit
     * before its newline arrives and must drop through to it. */
    char big[100];
    memset(big, 'y', sizeof(big));
    cr_assert_eq(tr_test_sock_send(fd, big, sizeof(big)), 0);
    cr_assert(TR_TEST_WAIT_STAT_EQ(f.srv, bytes_in, 100, 5000));
    cr_assert_eq(tr_test_sock_send(fd, big, sizeof(big)), 0);
    cr_assert(TR_TEST_WAIT_STAT_EQ(f.srv, bytes_in, 200, 5000));
    tr_test_roundtrip(fd, "tail\nnext\n", "next\n");
    /* Once more in one piece, with good lines around it. */
    char mix[6 + 40 + 1 + 6];
    memcpy(mix, "head1\n", 6);
    memset(mix + 6, 'z', 40);
    mix[46] = '\n';
    memcpy(mix + 47, "head2\n", 6);
    cr_assert_eq(tr_test_sock_send(fd, mix, sizeof(mix)), 0);
    char got[12];
    cr_assert_eq(tr_test_sock_recv(fd, got, 12), 12);
    cr_assert_arr_eq(got, "head1\nhead2\n", 12);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_FRAME_TOO_LARGE], 2);
    cr_assert_eq(st.continues, 2);
    cr_assert_eq(st.disconnects, 0);
    cr_assert_eq(tr_server_open_connections(f.srv), 1);
    cr_assert_eq(tr_test_load(&observed_action), TR_CONTINUE);
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(last_reason(), 0);
    finish(&f);
    tr_test_leak_check();
}

Test(errors, oversized_length_frame_with_continue_still_disconnects)
{
    /* The length codec cannot find the next frame boundary: CONTINUE is
     * not honoured for it. */
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.max_frame_bytes = 64;
    cfg.conn.policy[TR_ERR_FRAME_TOO_LARGE] = TR_CONTINUE;
    start(&f, tr_test_codec_length(), &cfg);
    int fd = tr_test_client(f.addr);
    unsigned char hdr[4];
    tr_test_be32(hdr, 1000);
    cr_assert_eq(tr_test_sock_send(fd, hdr, 4), 0);
    cr_assert_eq(tr_test_sock_recv_to_eof(fd, NULL, 0, NULL), 0);
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(last_reason(), TR_EMSGSIZE);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_FRAME_TOO_LARGE], 1);
    finish(&f);
    tr_test_leak_check();
}

static tr_error_action forgive(tr_conn *c, tr_error_class cls, int err, void *user)
{
    (void)c;
    (void)err;
    (void)user;
    return cls == TR_ERR_FRAME_TOO_LARGE ? TR_CONTINUE : TR_DISCONNECT;
}

static const tr_handler forgiving = {
    .on_frame = echo_frame, .on_close = rec_close, .on_error = forgive};

Test(errors, on_error_callback_overrides_the_policy_table)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.max_frame_bytes = 8;
    cfg.conn.handler = &forgiving; /* policy table says DISCONNECT */
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "0123456789abcdef\nok\n", "ok\n");
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_FRAME_TOO_LARGE], 1);
    cr_assert_eq(st.continues, 1);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

/* ---- handler errors ---- */

static int picky_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    if (len == 3 && memcmp(data, "bad", 3) == 0) {
        return TR_ECODEC;
    }
    return tr_conn_write(c, data, len);
}

static const tr_handler picky = {.on_frame = picky_frame, .on_close = rec_close};

Test(errors, handler_error_disconnects_by_default)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &picky;
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "good\nbad\nlost\n"), 0);
    char got[16];
    cr_assert_eq(tr_test_sock_recv_to_eof(fd, got, sizeof(got), NULL), 5);
    cr_assert_arr_eq(got, "good\n", 5);
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(last_reason(), TR_ECODEC);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_HANDLER], 1);
    cr_assert_eq(st.disconnects, 1);
    finish(&f);
    tr_test_leak_check();
}

Test(errors, handler_error_with_continue_drops_only_that_frame)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &picky;
    cfg.conn.policy[TR_ERR_HANDLER] = TR_CONTINUE;
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "good\nbad\nkept\n", "good\nkept\n");
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_HANDLER], 1);
    cr_assert_eq(st.continues, 1);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

/* ---- idle timeout ---- */

Test(errors, idle_timeout_closes_an_idle_connection_and_spares_an_active_one)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.idle_timeout_ms = 300;
    start(&f, tr_test_codec_line(0), &cfg);
    int idle = tr_test_client(f.addr);
    int active = tr_test_client(f.addr);
    uint64_t t_once = tr_test_now_ms();
    tr_test_roundtrip(idle, "once\n", "once\n");
    uint64_t t0 = tr_test_now_ms();
    uint64_t idle_eof_at = 0;
    int rounds = 0;
    /* The active one talks every ~50 ms for 1 s (over three idle
     * periods). Between round trips the test waits on the events that
     * matter: the idle connection's EOF, and any sign of the active one
     * being closed (which would fail the test), for at most 50 ms. */
    while (tr_test_now_ms() - t0 < 1000) {
        tr_test_roundtrip(active, "tick\n", "tick\n");
        rounds++;
        cr_assert_eq(tr_test_sock_readable(active, 50), 0, "active connection closed early");
        if (idle_eof_at == 0 && tr_test_sock_peek(idle, 0) == 0) {
            idle_eof_at = tr_test_now_ms();
        }
    }
    cr_assert_neq(idle_eof_at, 0, "the idle connection was not closed");
    cr_assert_geq(idle_eof_at + 5, t_once + 300, "closed %llu ms after its last byte",
                  (unsigned long long)(idle_eof_at - t_once));
    cr_assert_geq(rounds, 5);
    tr_test_roundtrip(active, "still\n", "still\n");
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.idle_timeouts, 1);
    cr_assert_eq(st.errors[TR_ERR_IDLE_TIMEOUT], 1);
    cr_assert_eq(tr_test_load(&observed_class), TR_ERR_IDLE_TIMEOUT);
    /* The idle one lingers (half-closed) until its peer closes too. */
    close(idle);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert(tr_test_wait_open(f.srv, 1, 5000));
    cr_assert_eq(last_reason(), TR_ETIMEDOUT);
    close(active);
    finish(&f);
    tr_test_leak_check();
}

/* ---- peers that go away ---- */

Test(errors, peer_reset_mid_frame_is_a_peer_reset_error)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    start(&f, tr_test_codec_length(), &cfg);
    int fd = tr_test_client(f.addr);
    unsigned char half[4 + 10];
    tr_test_be32(half, 100);
    memset(half + 4, 'h', 10);
    cr_assert_eq(tr_test_sock_send(fd, half, sizeof(half)), 0);
    cr_assert(TR_TEST_WAIT_STAT_EQ(f.srv, bytes_in, sizeof(half), 5000));
    tr_test_sock_reset(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(last_reason(), TR_ECONNRESET);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_PEER_RESET], 1);
    cr_assert_eq(st.disconnects, 1);
    cr_assert_eq(st.frames_in, 0);
    cr_assert_eq(st.closed, 1);
    finish(&f);
    tr_test_leak_check();
}

static int streaming_socket(int fd, void *user)
{
    (void)user;
    return tr_test_sock_sndbuf(fd, 4096);
}

static uint64_t streamed;

static int stream_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    static const char chunk[16384];
    for (int i = 0; i < 64; i++) { /* 1 MiB */
        if (tr_conn_write(c, chunk, sizeof(chunk)) == 0) {
            tr_test_add(&streamed, sizeof(chunk));
        }
    }
    return 0;
}

static const tr_handler streamer = {.on_frame = stream_frame, .on_close = rec_close};

Test(errors, peer_gone_while_server_writes_is_an_error_not_a_sigpipe)
{
    /* The peer half-closes, reads a little, then closes with unread data
     * (a reset). The server, still flushing 1 MiB into a small send
     * buffer, must see an error code on its next write, not SIGPIPE. */
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &streamer;
    cfg.on_socket = streaming_socket;
    cfg.conn.high_watermark = 2u << 20;
    start(&f, tr_test_codec_raw(), &cfg);
    int fd = tr_test_sock_new(f.addr, 4096);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tr_test_sock_connect_fd(fd, f.addr, 5000), 0);
    cr_assert_eq(tr_test_sock_send_str(fd, "go"), 0);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    char buf[1024];
    cr_assert_eq(tr_test_sock_recv(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    close(fd); /* unread data: the kernel answers with a reset */
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    int64_t r = last_reason();
    cr_assert(r == TR_EPIPE || r == TR_ECONNRESET, "reason %s", tr_strerror((int)r));
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_PEER_RESET], 1);
    cr_assert_lt(st.bytes_out, 1u << 20);
    cr_assert_eq(tr_test_load(&streamed), 1u << 20);
    finish(&f);
    tr_test_leak_check();
}

/* ---- write timeout ---- */

static int flood_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    static const char chunk[16384];
    for (int i = 0; i < 32; i++) { /* 512 KiB the peer will not read */
        tr_conn_write(c, chunk, sizeof(chunk));
    }
    return 0;
}

static const tr_handler flooder = {.on_frame = flood_frame, .on_close = rec_close};

Test(errors, write_timeout_aborts_a_connection_whose_queue_makes_no_progress)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &flooder;
    cfg.on_socket = streaming_socket;
    cfg.conn.write_timeout_ms = 200;
    cfg.conn.idle_timeout_ms = 0;
    start(&f, tr_test_codec_raw(), &cfg);
    int fd = tr_test_sock_new(f.addr, 4096);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tr_test_sock_connect_fd(fd, f.addr, 5000), 0);
    uint64_t t0 = tr_test_now_ms();
    cr_assert_eq(tr_test_sock_send_str(fd, "go"), 0);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    uint64_t took = tr_test_now_ms() - t0;
    cr_assert_geq(took, 200);
    cr_assert_eq(last_reason(), TR_ETIMEDOUT);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.errors[TR_ERR_WRITE_TIMEOUT], 1);
    cr_assert_eq(st.idle_timeouts, 0);
    cr_assert_eq(st.disconnects, 1);
    cr_assert_eq(tr_test_load(&observed_class), TR_ERR_WRITE_TIMEOUT);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

/* ---- refusals at open ---- */

static int refuse_open(tr_conn *c, void *user)
{
    (void)c;
    (void)user;
    return TR_EINVAL;
}

static const tr_handler refuser = {
    .on_open = refuse_open, .on_frame = echo_frame, .on_close = rec_close};

Test(errors, on_open_error_closes_the_connection_and_counts_a_refusal)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &refuser;
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_peek(fd, 5000), 0, "EOF");
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(last_reason(), TR_EINVAL);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.refused, 1);
    cr_assert_eq(st.closed, 1);
    finish(&f);
    tr_test_leak_check();
}

static uint64_t hooked;

static int refuse_socket(int fd, void *user)
{
    (void)fd;
    (void)user;
    tr_test_add(&hooked, 1);
    return TR_EINVAL;
}

Test(errors, on_socket_error_refuses_before_any_callback)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.on_socket = refuse_socket;
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_peek(fd, 5000), 0, "EOF");
    close(fd);
    cr_assert_eq(tr_test_load(&hooked), 1);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.refused, 1);
    cr_assert_eq(st.accepted, 0);
    cr_assert_eq(tr_server_open_connections(f.srv), 0);
    cr_assert_eq(tr_test_load(&closes), 0, "never opened: no on_close");
    finish(&f);
    tr_test_leak_check();
}

Test(errors, idle_timeout_closes_a_peer_that_stopped_reading)
{
    /* The peer asked for data and stopped reading: the queue cannot
     * drain, nothing moves, and the idle timeout must still end the
     * connection (a graceful close cannot flush to it). */
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &flooder;
    cfg.on_socket = streaming_socket;
    cfg.conn.idle_timeout_ms = 300;
    cfg.conn.linger_ms = 500;
    start(&f, tr_test_codec_raw(), &cfg);
    int fd = tr_test_sock_new(f.addr, 4096);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tr_test_sock_connect_fd(fd, f.addr, 5000), 0);
    cr_assert_eq(tr_test_sock_send_str(fd, "go"), 0);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000), "still open after 5 s");
    cr_assert_eq(last_reason(), TR_ETIMEDOUT);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.idle_timeouts, 1);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}
