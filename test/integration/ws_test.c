/* The WebSocket layer over real loopback sockets, with a client written
 * here (frames masked by hand) and python3-websockets (a client nobody
 * here wrote): the handshake and subprotocols, echo of text and binary,
 * fragments, ping/pong, close codes both ways, the limits (1009, 1007,
 * 1002), pings to a silent peer, sends by id from another thread. */
#include <criterion/criterion.h>
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

TestSuite(ws, .timeout = 30.0);

static uint64_t last_id;    /* atomics: the last opened connection's id */
static uint64_t closes;     /* atomics: on_close count */
static uint64_t close_code; /* atomics: its code */

static void on_open(tr_ws *ws, void *user)
{
    (void)user;
    tr_test_store(&last_id, tr_ws_id(ws).bits);
}

static void on_message(tr_ws *ws, tr_ws_opcode op, const void *data, size_t len, void *user)
{
    (void)user;
    if (op == TR_WS_TEXT && len == 8 && memcmp(data, "close-me", 8) == 0) {
        tr_ws_close(ws, 4000, "bye");
        return;
    }
    if (op == TR_WS_TEXT && len == 6 && memcmp(data, "shared", 6) == 0) {
        tr_buf *b = tr_buf_copy("one buffer", 10);
        tr_ws_send_buf(ws, TR_WS_TEXT, b);
        return;
    }
    tr_ws_send(ws, op, data, len);
}

static void on_close(tr_ws *ws, uint16_t code, void *user)
{
    (void)ws;
    (void)user;
    tr_test_store(&close_code, code);
    tr_test_add(&closes, 1);
}

static const tr_ws_handler handler = {.on_open = on_open, .on_message = on_message,
                                      .on_close = on_close};
static const char *const protocols[] = {"text.ircv3.net", "binary.ircv3.net", NULL};
static tr_ws_config wscfg;

static int on_request(tr_http_req *req, void *user)
{
    (void)user;
    if (strcmp(tr_http_req_path(req), "/ws") == 0) {
        tr_ws_accept(req, &wscfg, NULL);
        return 0;
    }
    return tr_http_respond(req, 404, "text/plain", "no", 2);
}

typedef struct fixture {
    tr_runtime *rt;
    tr_http *http;
    tr_server *srv;
    char addr[80];
} fixture;

static void start(fixture *f, size_t max_message, uint32_t ping_ms)
{
    tr_test_store(&last_id, 0);
    tr_test_store(&closes, 0);
    tr_test_store(&close_code, 0);
    tr_ws_config_defaults(&wscfg);
    wscfg.handler = &handler;
    wscfg.subprotocols = protocols;
    if (max_message != 0) {
        wscfg.max_message_bytes = max_message;
    }
    wscfg.ping_interval_ms = ping_ms;
    f->rt = tr_test_runtime(2);
    tr_http_config hc;
    tr_http_config_defaults(&hc);
    hc.on_request = on_request;
    int err = 1;
    f->http = tr_http_new(&hc, &err);
    cr_assert_not_null(f->http);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cr_assert_eq(tr_http_apply(f->http, &cfg.conn), 0);
    f->srv = tr_test_server(f->rt, &cfg, f->addr, sizeof(f->addr));
}

static void finish(fixture *f)
{
    cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
    tr_server_free(f->srv);
    tr_test_runtime_finish(f->rt);
    tr_http_free(f->http);
}

/* ---- a hand-made client ---- */

/* RFC 6455 1.3's example key and its accept value. */
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static int read_head(int fd, char *head, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        if (tr_test_sock_recv(fd, head + n, 1) != 1) {
            break;
        }
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    head[n] = '\0';
    int status = 0;
    sscanf(head, "HTTP/1.1 %d", &status);
    return status;
}

/* Connects and upgrades; extra is more header lines. Returns the fd. */
static int ws_connect(fixture *f, const char *extra, char *head, size_t cap)
{
    int fd = tr_test_client(f->addr);
    char req[512];
    snprintf(req, sizeof(req),
             "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
             "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
             extra != NULL ? extra : "");
    cr_assert_eq(tr_test_sock_send_str(fd, req), 0);
    int status = read_head(fd, head, cap);
    cr_assert_eq(status, 101, "handshake: %s", head);
    cr_assert_not_null(strstr(head, "\r\nSec-WebSocket-Accept: " ACCEPT "\r\n"), "%s", head);
    return fd;
}

static void send_frame(int fd, bool fin, int opcode, const void *data, size_t len, bool mask)
{
    unsigned char *buf = malloc(len + 14);
    size_t n = 0;
    buf[n++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
    unsigned char m = mask ? 0x80 : 0;
    if (len < 126) {
        buf[n++] = (unsigned char)(m | len);
    } else if (len <= 0xffff) {
        buf[n++] = m | 126;
        buf[n++] = (unsigned char)(len >> 8);
        buf[n++] = (unsigned char)len;
    } else {
        buf[n++] = m | 127;
        for (int i = 7; i >= 0; i--) {
            buf[n++] = (unsigned char)((uint64_t)len >> (8 * i));
        }
    }
    static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (mask) {
        memcpy(buf + n, key, 4);
        n += 4;
    }
    for (size_t i = 0; i < len; i++) {
        buf[n + i] = ((const unsigned char *)data)[i] ^ (mask ? key[i % 4] : 0);
    }
    cr_assert_eq(tr_test_sock_send(fd, buf, n + len), 0);
    free(buf);
}

/* Reads one frame (servers do not mask). Returns the payload length; the
 * opcode goes to *op. -1 on EOF or timeout. */
static ssize_t recv_frame(int fd, int *op, void *out, size_t cap)
{
    unsigned char h[10];
    if (tr_test_sock_recv(fd, h, 2) != 2) {
        return -1;
    }
    cr_assert_eq(h[1] & 0x80, 0, "server frames are not masked");
    cr_assert(h[0] & 0x80, "a final frame");
    *op = h[0] & 0x0f;
    uint64_t len = h[1] & 0x7f;
    if (len == 126) {
        cr_assert_eq(tr_test_sock_recv(fd, h, 2), 2);
        len = (uint64_t)h[0] << 8 | h[1];
    } else if (len == 127) {
        cr_assert_eq(tr_test_sock_recv(fd, h, 8), 8);
        len = 0;
        for (int i = 0; i < 8; i++) {
            len = len << 8 | h[i];
        }
    }
    cr_assert_leq(len, cap);
    if (len > 0 && tr_test_sock_recv(fd, out, (size_t)len) != (ssize_t)len) {
        return -1;
    }
    return (ssize_t)len;
}

static void expect_frame(int fd, int op, const void *data, size_t len)
{
    static unsigned char buf[200000];
    int got;
    ssize_t n = recv_frame(fd, &got, buf, sizeof(buf));
    cr_assert_eq(got, op, "opcode %d, want %d", got, op);
    cr_assert_eq(n, (ssize_t)len, "length %zd, want %zu", n, len);
    cr_assert_arr_eq(buf, data, len);
}

/* A close frame with this code; then the server closes the socket. */
static void expect_close(int fd, uint16_t code)
{
    unsigned char buf[128];
    int op;
    ssize_t n = recv_frame(fd, &op, buf, sizeof(buf));
    cr_assert_eq(op, 8, "a close frame (got opcode %d)", op);
    cr_assert_geq(n, 2);
    cr_assert_eq(buf[0] << 8 | buf[1], code, "close code %d, want %d", buf[0] << 8 | buf[1],
                 code);
}

static void expect_eof(int fd)
{
    char c;
    ssize_t r = tr_test_sock_recv(fd, &c, 1);
    cr_assert(r == 0 || r == -ECONNRESET, "still open (%zd)", r);
}

static void close_handshake(int fd, uint16_t code)
{
    unsigned char p[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    send_frame(fd, true, 8, p, 2, true);
    expect_close(fd, code);
    expect_eof(fd);
}

Test(ws, handshake_answers_accept_and_picks_our_first_common_subprotocol)
{
    fixture f;
    start(&f, 0, 0);
    char head[1024];
    int fd = ws_connect(&f, "Sec-WebSocket-Protocol: binary.ircv3.net, text.ircv3.net\r\n", head,
                        sizeof(head));
    cr_assert_not_null(strstr(head, "\r\nSec-WebSocket-Protocol: text.ircv3.net\r\n"), "%s", head);
    close_handshake(fd, 1000);
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(tr_test_load(&close_code), 1000);
    finish(&f);
    tr_test_leak_check();
}

Test(ws, bad_handshakes_get_400_or_426)
{
    fixture f;
    start(&f, 0, 0);
    struct {
        const char *req;
        int status;
    } cases[] = {
        {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 12\r\n\r\n", 426},
        {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: short==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
        {"GET /ws HTTP/1.1\r\nSec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = tr_test_client(f.addr);
        cr_assert_eq(tr_test_sock_send_str(fd, cases[i].req), 0);
        char head[1024];
        cr_assert_eq(read_head(fd, head, sizeof(head)), cases[i].status, "case %zu: %s", i, head);
        if (cases[i].status == 426) {
            cr_assert_not_null(strstr(head, "\r\nSec-WebSocket-Version: 13\r\n"));
        }
        close(fd);
    }
    finish(&f);
    tr_test_leak_check();
}

Test(ws, text_and_binary_messages_echo_at_every_length_encoding)
{
    fixture f;
    start(&f, 0, 0);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    send_frame(fd, true, 1, "héllo", 6, true);
    expect_frame(fd, 1, "héllo", 6);
    static unsigned char big[70000];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (unsigned char)(i * 31);
    }
    send_frame(fd, true, 2, big, 300, true);
    expect_frame(fd, 2, big, 300);
    send_frame(fd, true, 2, big, sizeof(big), true);
    expect_frame(fd, 2, big, sizeof(big));
    send_frame(fd, true, 1, "", 0, true);
    expect_frame(fd, 1, "", 0);
    send_frame(fd, true, 1, "shared", 6, true);
    expect_frame(fd, 1, "one buffer", 10);
    close_handshake(fd, 1000);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(ws, fragments_are_reassembled_and_a_ping_between_them_is_answered)
{
    fixture f;
    start(&f, 0, 0);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    send_frame(fd, false, 1, "frag", 4, true);
    send_frame(fd, false, 0, "men", 3, true);
    send_frame(fd, true, 9, "p1", 2, true); /* a control frame may come between */
    send_frame(fd, true, 0, "ted", 3, true);
    expect_frame(fd, 10, "p1", 2);
    expect_frame(fd, 1, "fragmented", 10);
    close_handshake(fd, 1000);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(ws, server_close_carries_code_and_reason)
{
    fixture f;
    start(&f, 0, 0);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    send_frame(fd, true, 1, "close-me", 8, true);
    unsigned char buf[128];
    int op;
    ssize_t n = recv_frame(fd, &op, buf, sizeof(buf));
    cr_assert_eq(op, 8);
    cr_assert_eq(n, 5);
    cr_assert_eq(buf[0] << 8 | buf[1], 4000);
    cr_assert_arr_eq(buf + 2, "bye", 3);
    unsigned char p[2] = {4000 >> 8, 4000 & 0xff};
    send_frame(fd, true, 8, p, 2, true); /* our answer */
    expect_eof(fd);
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(tr_test_load(&close_code), 4000);
    finish(&f);
    tr_test_leak_check();
}

Test(ws, oversize_message_closes_with_1009)
{
    fixture f;
    start(&f, 100, 0);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    static unsigned char big[101];
    send_frame(fd, true, 2, big, 100, true);
    expect_frame(fd, 2, big, 100);
    /* Over the limit across fragments too. */
    send_frame(fd, false, 2, big, 60, true);
    send_frame(fd, true, 0, big, 41, true);
    expect_close(fd, 1009);
    expect_eof(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(ws, invalid_utf8_text_closes_with_1007)
{
    fixture f;
    start(&f, 0, 0);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    send_frame(fd, true, 1, "ok\xc3\x28", 4, true);
    expect_close(fd, 1007);
    expect_eof(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(ws, unmasked_client_frame_closes_with_1002)
{
    fixture f;
    start(&f, 0, 0);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    send_frame(fd, true, 1, "plain", 5, false);
    expect_close(fd, 1002);
    expect_eof(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(ws, silent_peer_is_pinged_then_closed_with_1011)
{
    fixture f;
    start(&f, 0, 200);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    unsigned char buf[128];
    int op;
    ssize_t n = recv_frame(fd, &op, buf, sizeof(buf));
    cr_assert_eq(op, 9, "a ping (got opcode %d)", op);
    (void)n;
    /* No pong: the next interval closes it. */
    expect_close(fd, 1011);
    expect_eof(fd);
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    finish(&f);
    tr_test_leak_check();
}

Test(ws, answered_pings_keep_the_connection)
{
    fixture f;
    start(&f, 0, 100);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    for (int i = 0; i < 3; i++) {
        unsigned char buf[128];
        int op;
        ssize_t n = recv_frame(fd, &op, buf, sizeof(buf));
        cr_assert_eq(op, 9);
        send_frame(fd, true, 10, buf, (size_t)n, true);
    }
    send_frame(fd, true, 1, "still here", 10, true);
    /* A ping may come first. */
    unsigned char buf[128];
    int op;
    ssize_t n;
    while ((n = recv_frame(fd, &op, buf, sizeof(buf))) >= 0 && op == 9) {
        send_frame(fd, true, 10, buf, (size_t)n, true);
    }
    cr_assert_eq(op, 1);
    cr_assert_arr_eq(buf, "still here", 10);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

static void *send_from_thread(void *arg)
{
    tr_conn_id id = {tr_test_load(&last_id)};
    (void)arg;
    tr_ws_send_id(id, TR_WS_TEXT, "from afar", 9);
    tr_ws_send_buf_id(id, TR_WS_BINARY, tr_buf_copy("shared", 6));
    tr_ws_close_id(id, 1001, "going");
    return NULL;
}

Test(ws, sends_by_id_from_another_thread_arrive_in_order)
{
    fixture f;
    start(&f, 0, 0);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    cr_assert(tr_test_wait_ge(&last_id, 1, 5000));
    pthread_t t;
    pthread_create(&t, NULL, send_from_thread, NULL);
    pthread_join(t, NULL);
    expect_frame(fd, 1, "from afar", 9);
    expect_frame(fd, 2, "shared", 6);
    expect_close(fd, 1001);
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(tr_ws_send_id((tr_conn_id){tr_test_load(&last_id)}, TR_WS_TEXT, "x", 1),
                 TR_ECLOSED);
    finish(&f);
    tr_test_leak_check();
}

static int shutdown_rc;

static void *shutdown_thread(void *arg)
{
    shutdown_rc = tr_server_shutdown(arg, 5000);
    return NULL;
}

Test(ws, shutdown_sends_going_away_then_drains)
{
    fixture f;
    start(&f, 0, 0);
    char head[1024];
    int fd = ws_connect(&f, NULL, head, sizeof(head));
    cr_assert(tr_test_wait_ge(&last_id, 1, 5000));
    pthread_t t;
    pthread_create(&t, NULL, shutdown_thread, f.srv);
    expect_close(fd, 1001);
    unsigned char p[2] = {1001 >> 8, 1001 & 0xff};
    send_frame(fd, true, 8, p, 2, true);
    expect_eof(fd); /* the drain half-closes after the goodbye */
    close(fd);      /* and waits for our FIN */
    pthread_join(t, NULL);
    cr_assert_eq(shutdown_rc, 0, "shutdown: %s", tr_strerror(shutdown_rc));
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(tr_test_load(&close_code), 1001);
    tr_server_free(f.srv);
    tr_test_runtime_finish(f.rt);
    tr_http_free(f.http);
    tr_test_leak_check();
}

/* ---- python3-websockets ---- */

Test(ws, python_websockets_client_interoperates)
{
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") != 0) {
        cr_skip_test("python3-websockets not installed (make deps installs it)");
    }
    fixture f;
    start(&f, 0, 0);
    char cmd[2048], out[1024];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 - <<'EOF' 2>&1\n"
             "import asyncio, websockets\n"
             "async def main():\n"
             "    async with websockets.connect('ws://%s/ws', subprotocols=['text.ircv3.net']) as w:\n"
             "        print('proto', w.subprotocol)\n"
             "        await w.send('PRIVMSG #x :hi')\n"
             "        print('text', await w.recv())\n"
             "        await w.send(bytes(range(200)))\n"
             "        print('binary', (await w.recv()) == bytes(range(200)))\n"
             "        await w.ping()\n"
             "        await w.close(code=1000, reason='done')\n"
             "        print('close', w.close_code)\n"
             "asyncio.run(main())\n"
             "EOF\n",
             f.addr);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    cr_assert_eq(pclose(p), 0, "python: %s", out);
    cr_assert_str_eq(out, "proto text.ircv3.net\ntext PRIVMSG #x :hi\nbinary True\nclose 1000\n");
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(tr_test_load(&close_code), 1000);
    finish(&f);
    tr_test_leak_check();
}
