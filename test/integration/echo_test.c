/* Echo round trips over real loopback sockets: each codec, byte-at-a-time
 * and coalesced input, IPv6, the order of callbacks, and one shared buffer
 * sent to many connections. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leak.h"
#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(echo, .timeout = 30.0);

static int echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static const tr_handler echo_handler = {.on_frame = echo_frame};

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[80];
} fixture;

static void fixture_start(fixture *f, tr_codec *codec, const char *listen, const tr_handler *h,
                          const tr_server_observer *obs, void *user)
{
    f->rt = tr_test_runtime(2);
    f->codec = codec;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = listen;
    cfg.conn.codec = codec;
    cfg.conn.handler = h;
    cfg.observer = obs;
    cfg.conn.user = user;
    f->srv = tr_test_server(f->rt, &cfg, f->addr, sizeof(f->addr));
}

static void fixture_finish(fixture *f)
{
    cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
    cr_assert_eq(tr_server_open_connections(f->srv), 0);
    tr_server_free(f->srv);
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
}

/* ---- one round trip per codec ---- */

Test(echo, raw_roundtrip_returns_every_byte)
{
    fixture f;
    fixture_start(&f, tr_test_codec_raw(), "127.0.0.1:0", &echo_handler, NULL, NULL);
    int fd = tr_test_client(f.addr);
    unsigned char out[3000], in[3000];
    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] = (unsigned char)(i * 7 + 1);
    }
    cr_assert_eq(tr_test_sock_send(fd, out, sizeof(out)), 0);
    cr_assert_eq(tr_test_sock_recv(fd, in, sizeof(in)), (ssize_t)sizeof(in));
    cr_assert_arr_eq(in, out, sizeof(out));
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.accepted, 1);
    cr_assert_eq(st.closed, 1);
    cr_assert_eq(st.bytes_in, sizeof(out));
    cr_assert_eq(st.bytes_out, sizeof(out));
    cr_assert_eq(st.frames_in, st.frames_out, "raw: one write per chunk read");
    fixture_finish(&f);
    tr_test_leak_check();
}

Test(echo, line_roundtrip_answers_lf_and_crlf_lines_with_lf)
{
    fixture f;
    fixture_start(&f, tr_test_codec_line(0), "127.0.0.1:0", &echo_handler, NULL, NULL);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "hello\n", "hello\n");
    tr_test_roundtrip(fd, "crlf\r\n", "crlf\n");
    tr_test_roundtrip(fd, "\n", "\n");
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.frames_in, 3);
    cr_assert_eq(st.frames_out, 3);
    cr_assert_eq(st.bytes_in, 6 + 6 + 1);
    cr_assert_eq(st.bytes_out, 6 + 5 + 1);
    fixture_finish(&f);
    tr_test_leak_check();
}

Test(echo, length_roundtrip_keeps_the_4_byte_header)
{
    fixture f;
    fixture_start(&f, tr_test_codec_length(), "127.0.0.1:0", &echo_handler, NULL, NULL);
    int fd = tr_test_client(f.addr);
    unsigned char out[4 + 300], in[sizeof(out)];
    tr_test_be32(out, 300);
    for (size_t i = 0; i < 300; i++) {
        out[4 + i] = (unsigned char)i;
    }
    cr_assert_eq(tr_test_sock_send(fd, out, sizeof(out)), 0);
    cr_assert_eq(tr_test_sock_recv(fd, in, sizeof(in)), (ssize_t)sizeof(in));
    cr_assert_arr_eq(in, out, sizeof(out));
    /* An empty frame is a frame too. */
    unsigned char empty[4] = {0, 0, 0, 0};
    cr_assert_eq(tr_test_sock_send(fd, empty, 4), 0);
    cr_assert_eq(tr_test_sock_recv(fd, in, 4), 4);
    cr_assert_arr_eq(in, empty, 4);
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.frames_in, 2);
    cr_assert_eq(st.frames_out, 2);
    fixture_finish(&f);
    tr_test_leak_check();
}

/* ---- input split every way ---- */

/* Sends one byte at a time and waits until the server has read each one
 * before sending the next, so every byte is a read of its own. */
static void send_bytewise(fixture *f, int fd, const unsigned char *p, size_t n)
{
    uint64_t base = tr_test_stats(f->srv).bytes_in;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(tr_test_sock_send(fd, p + i, 1), 0);
        cr_assert(TR_TEST_WAIT_STAT_EQ(f->srv, bytes_in, base + i + 1, 5000), "byte %zu not read",
                  i);
    }
}

Test(echo, line_byte_at_a_time_decodes_each_line_once)
{
    fixture f;
    fixture_start(&f, tr_test_codec_line(0), "127.0.0.1:0", &echo_handler, NULL, NULL);
    int fd = tr_test_client(f.addr);
    const char *in = "ab\r\ncd\n\nxyz\n";
    send_bytewise(&f, fd, (const unsigned char *)in, strlen(in));
    const char *want = "ab\ncd\n\nxyz\n";
    char got[32];
    cr_assert_eq(tr_test_sock_recv(fd, got, strlen(want)), (ssize_t)strlen(want));
    cr_assert_arr_eq(got, want, strlen(want));
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    cr_assert_eq(tr_test_stats(f.srv).frames_in, 4);
    fixture_finish(&f);
    tr_test_leak_check();
}

Test(echo, length_byte_at_a_time_decodes_each_frame_once)
{
    fixture f;
    fixture_start(&f, tr_test_codec_length(), "127.0.0.1:0", &echo_handler, NULL, NULL);
    int fd = tr_test_client(f.addr);
    unsigned char in[4 + 5 + 4 + 0 + 4 + 2];
    tr_test_be32(in, 5);
    memcpy(in + 4, "hello", 5);
    tr_test_be32(in + 9, 0);
    tr_test_be32(in + 13, 2);
    memcpy(in + 17, "ok", 2);
    send_bytewise(&f, fd, in, sizeof(in));
    unsigned char got[sizeof(in)];
    cr_assert_eq(tr_test_sock_recv(fd, got, sizeof(got)), (ssize_t)sizeof(got));
    cr_assert_arr_eq(got, in, sizeof(in));
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    cr_assert_eq(tr_test_stats(f.srv).frames_in, 3);
    fixture_finish(&f);
    tr_test_leak_check();
}

Test(echo, line_coalesced_input_decodes_every_line_in_order)
{
    fixture f;
    fixture_start(&f, tr_test_codec_line(0), "127.0.0.1:0", &echo_handler, NULL, NULL);
    int fd = tr_test_client(f.addr);
    enum { N = 1000 };
    char *buf = malloc(N * 8);
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        n += (size_t)sprintf(buf + n, "%05d\n", i); /* 6 bytes each */
    }
    cr_assert_eq(tr_test_sock_send(fd, buf, n), 0);
    char *got = malloc(n);
    cr_assert_eq(tr_test_sock_recv(fd, got, n), (ssize_t)n);
    cr_assert_arr_eq(got, buf, n);
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.frames_in, N);
    cr_assert_eq(st.frames_out, N);
    cr_assert_eq(st.bytes_in, n);
    cr_assert_eq(st.bytes_out, n);
    free(buf);
    free(got);
    fixture_finish(&f);
    tr_test_leak_check();
}

Test(echo, length_coalesced_frames_straddling_reads_all_arrive)
{
    fixture f;
    fixture_start(&f, tr_test_codec_length(), "127.0.0.1:0", &echo_handler, NULL, NULL);
    int fd = tr_test_client(f.addr);
    /* 200 frames of 0..1999 bytes: ~200 KB in one send, so frames straddle
     * the server's 64 KiB reads. */
    enum { N = 200 };
    size_t cap = 0;
    for (int i = 0; i < N; i++) {
        cap += 4 + (size_t)(i * 10);
    }
    unsigned char *buf = malloc(cap), *got = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        tr_test_be32(buf + n, (uint32_t)(i * 10));
        memset(buf + n + 4, 'a' + i % 26, (size_t)(i * 10));
        n += 4 + (size_t)(i * 10);
    }
    cr_assert_eq(tr_test_sock_send(fd, buf, n), 0);
    cr_assert_eq(tr_test_sock_recv(fd, got, n), (ssize_t)n);
    cr_assert_arr_eq(got, buf, n);
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.frames_in, N);
    cr_assert_eq(st.frames_out, N);
    free(buf);
    free(got);
    fixture_finish(&f);
    tr_test_leak_check();
}

/* ---- IPv6 ---- */

static char peer6[80];
static char local6[80];
static uint64_t open6;

static int v6_open(tr_conn *c, void *user)
{
    (void)user;
    tr_conn_peer(c, peer6, sizeof(peer6));
    tr_conn_local(c, local6, sizeof(local6));
    tr_test_store(&open6, 1);
    return 0;
}

static const tr_handler v6_handler = {.on_open = v6_open, .on_frame = echo_frame};

Test(echo, ipv6_loopback_roundtrip_and_addresses)
{
    fixture f;
    fixture_start(&f, tr_test_codec_line(0), "[::1]:0", &v6_handler, NULL, NULL);
    char want[80];
    tr_test_addr(want, sizeof(want), "::1", tr_server_port(f.srv));
    cr_assert_str_eq(f.addr, want);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "six\n", "six\n");
    cr_assert(tr_test_wait_ge(&open6, 1, 5000));
    cr_assert_str_eq(local6, f.addr);
    cr_assert_eq(strncmp(peer6, "[::1]:", 6), 0, "peer %s", peer6);
    close(fd);
    fixture_finish(&f);
    tr_test_leak_check();
}

/* ---- callbacks in order ---- */

enum { E_NEW = 1, E_OPEN, E_READ, E_FRAME, E_WRITE, E_HCLOSE, E_OCLOSE, E_BAD };
enum { NCONN = 8, ROUNDS = 5 };
static tr_test_log events;
static uint64_t next_idx;

/* Connection index, kept in the connection's user pointer (+1, so NULL
 * means "none yet"). */
static int32_t idx_of(tr_conn *c)
{
    return (int32_t)(intptr_t)tr_conn_user(c) - 1;
}

static void o_new(tr_conn *c, void *user)
{
    (void)user;
    if (tr_conn_user(c) != NULL) {
        tr_test_log_add(&events, E_BAD, -1, 0); /* NEW twice */
    }
    uint64_t i = __atomic_fetch_add(&next_idx, 1, __ATOMIC_SEQ_CST);
    tr_conn_set_user(c, (void *)(intptr_t)(i + 1));
    tr_test_log_add(&events, E_NEW, idx_of(c), 0);
}

static void o_read(tr_conn *c, size_t n, void *user)
{
    (void)user;
    tr_test_log_add(&events, E_READ, idx_of(c), (int64_t)n);
}

static void o_write(tr_conn *c, size_t n, void *user)
{
    (void)user;
    tr_test_log_add(&events, E_WRITE, idx_of(c), (int64_t)n);
}

static void o_close(tr_conn *c, int reason, void *user)
{
    (void)user;
    tr_test_log_add(&events, E_OCLOSE, idx_of(c), reason);
}

static int h_open(tr_conn *c, void *user)
{
    (void)user;
    tr_test_log_add(&events, E_OPEN, idx_of(c), 0);
    return 0;
}

static int h_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    tr_test_log_add(&events, E_FRAME, idx_of(c), (int64_t)len);
    return tr_conn_write(c, data, len);
}

static void h_close(tr_conn *c, int reason, void *user)
{
    (void)user;
    tr_test_log_add(&events, E_HCLOSE, idx_of(c), reason);
}

static const tr_handler order_handler = {
    .on_open = h_open, .on_frame = h_frame, .on_close = h_close};
static const tr_server_observer order_observer = {
    .on_new = o_new, .on_read = o_read, .on_write = o_write, .on_close = o_close};

Test(echo, callbacks_run_new_then_read_write_then_close_per_connection)
{
    tr_test_log_init(&events);
    fixture f;
    fixture_start(&f, tr_test_codec_line(0), "127.0.0.1:0", &order_handler, &order_observer, NULL);
    int fds[NCONN];
    for (int i = 0; i < NCONN; i++) {
        fds[i] = tr_test_client(f.addr);
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NCONN; i++) {
            tr_test_roundtrip(fds[i], "ping\n", "ping\n");
        }
    }
    for (int i = 0; i < NCONN; i++) {
        close(fds[i]);
    }
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    fixture_finish(&f);

    static tr_test_event ev[TR_TEST_LOG_MAX];
    size_t n = tr_test_log_get(&events, ev, TR_TEST_LOG_MAX);
    cr_assert_eq(tr_test_load(&next_idx), NCONN);
    cr_assert_eq(tr_test_log_select(&events, E_BAD, NULL, NULL, 1), 0);
    for (int32_t c = 0; c < NCONN; c++) {
        /* Per connection: NEW, OPEN, then READ/FRAME/WRITE (each frame
         * after a read, each write after a frame), then the handler's
         * close, then the observer's close, last. */
        int state = 0;
        int64_t read_bytes = 0, frame_bytes = 0, written = 0;
        int frames = 0;
        for (size_t i = 0; i < n; i++) {
            if (ev[i].who != c) {
                continue;
            }
            switch (ev[i].kind) {
            case E_NEW:
                cr_assert_eq(state, 0, "conn %d: NEW first", c);
                state = 1;
                break;
            case E_OPEN:
                cr_assert_eq(state, 1, "conn %d: OPEN right after NEW", c);
                state = 2;
                break;
            case E_READ:
                cr_assert_eq(state, 2, "conn %d: READ between OPEN and CLOSE", c);
                read_bytes += ev[i].val;
                break;
            case E_FRAME:
                cr_assert_eq(state, 2);
                frames++;
                frame_bytes += ev[i].val + 1;
                cr_assert_leq(frame_bytes, read_bytes, "conn %d: frame before its bytes", c);
                break;
            case E_WRITE:
                cr_assert_eq(state, 2);
                written += ev[i].val;
                cr_assert_leq(written, frame_bytes, "conn %d: write before its frame", c);
                break;
            case E_HCLOSE:
                cr_assert_eq(state, 2, "conn %d: handler close after traffic", c);
                cr_assert_eq(ev[i].val, 0, "orderly close");
                state = 3;
                break;
            case E_OCLOSE:
                cr_assert_eq(state, 3, "conn %d: observer close after the handler's", c);
                cr_assert_eq(ev[i].val, 0);
                state = 4;
                break;
            default:
                cr_assert_fail("unknown event");
            }
        }
        cr_assert_eq(state, 4, "conn %d ended in state %d", c, state);
        cr_assert_eq(frames, ROUNDS);
        cr_assert_eq(read_bytes, ROUNDS * 5);
        cr_assert_eq(written, ROUNDS * 5);
    }
    tr_test_log_fini(&events);
    tr_test_leak_check();
}

/* ---- one buffer, many connections ---- */

enum { FAN = 20 };
static uint64_t fan_ids[FAN];
static uint64_t fan_n;

static int fan_open(tr_conn *c, void *user)
{
    (void)user;
    uint64_t i = __atomic_fetch_add(&fan_n, 1, __ATOMIC_SEQ_CST);
    if (i < FAN) {
        tr_test_store(&fan_ids[i], tr_conn_get_id(c).bits);
    }
    return 0;
}

static bool only_ref(void *b)
{
    return tr_buf_refs(b) == 1;
}

static const tr_handler fan_handler = {.on_open = fan_open, .on_frame = echo_frame};

Test(echo, send_buf_fans_one_buffer_out_to_every_connection)
{
    fixture f;
    fixture_start(&f, tr_test_codec_line(0), "127.0.0.1:0", &fan_handler, NULL, NULL);
    int fds[FAN];
    for (int i = 0; i < FAN; i++) {
        fds[i] = tr_test_client(f.addr);
    }
    cr_assert(tr_test_wait_ge(&fan_n, FAN, 5000));
    for (int i = 0; i < FAN; i++) {
        cr_assert(tr_test_wait_ge(&fan_ids[i], 1, 5000));
    }
    tr_buf *b = tr_buf_copy("broadcast", 9);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < FAN; i++) {
            tr_conn_id id = {tr_test_load(&fan_ids[i])};
            cr_assert_eq(tr_conn_send_buf(id, tr_buf_retain(b)), 0);
        }
    }
    for (int i = 0; i < FAN; i++) {
        char got[30];
        cr_assert_eq(tr_test_sock_recv(fds[i], got, 30), 30);
        cr_assert_arr_eq(got, "broadcast\nbroadcast\nbroadcast\n", 30);
    }
    /* Every reference the queues took is given back once written. */
    cr_assert(tr_test_wait_until(only_ref, b, 5000), "refs %u", tr_buf_refs(b));
    tr_buf_release(b);
    cr_assert(TR_TEST_WAIT_STAT_EQ(f.srv, bytes_out, 30 * FAN, 5000));
    cr_assert_eq(tr_test_stats(f.srv).frames_out, 3 * FAN);
    for (int i = 0; i < FAN; i++) {
        close(fds[i]);
    }
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    /* A send to a connection that is gone is refused and frees the buffer. */
    tr_conn_id gone = {tr_test_load(&fan_ids[0])};
    cr_assert(tr_conn_id_is_closed(gone));
    cr_assert_eq(tr_conn_send_buf(gone, tr_buf_copy("x", 1)), TR_ECLOSED);
    cr_assert_eq(tr_conn_send(gone, "x", 1), TR_ECLOSED);
    fixture_finish(&f);
    tr_test_leak_check();
}

/* ---- half-close ---- */

static uint64_t half_refused, half_closed;
static uint64_t half_reason;

static int half_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    if (len == 4 && memcmp(data, "half", 4) == 0) {
        return tr_conn_shutdown_write(c);
    }
    if (tr_conn_write(c, data, len) == TR_ECLOSED) {
        tr_test_add(&half_refused, 1);
    }
    return 0;
}

static void half_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    tr_test_store(&half_reason, (uint64_t)(int64_t)reason);
    tr_test_add(&half_closed, 1);
}

static const tr_handler half_handler = {.on_frame = half_frame, .on_close = half_close};

Test(echo, shutdown_write_sends_eof_and_keeps_reading)
{
    fixture f;
    fixture_start(&f, tr_test_codec_line(0), "127.0.0.1:0", &half_handler, NULL, NULL);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "a\n", "a\n");
    cr_assert_eq(tr_test_sock_send_str(fd, "half\n"), 0);
    cr_assert_eq(tr_test_sock_peek(fd, 5000), 0, "EOF after the half-close");
    /* The server still reads; its writes are refused, not fatal. */
    cr_assert_eq(tr_test_sock_send_str(fd, "b\nc\n"), 0);
    cr_assert(TR_TEST_WAIT_STAT_EQ(f.srv, frames_in, 4, 5000));
    cr_assert(tr_test_wait_ge(&half_refused, 2, 5000));
    cr_assert_eq(tr_server_open_connections(f.srv), 1);
    close(fd);
    cr_assert(tr_test_wait_ge(&half_closed, 1, 5000));
    cr_assert_eq((int64_t)tr_test_load(&half_reason), 0);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.disconnects, 0);
    cr_assert_eq(st.errors[TR_ERR_WRITE] + st.errors[TR_ERR_PEER_RESET], 0);
    cr_assert_eq(st.frames_out, 1);
    fixture_finish(&f);
    tr_test_leak_check();
}
