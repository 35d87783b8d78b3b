/* A connection is an actor: application messages sent to its id reach the
 * handler's on_message, in order, on the connection's worker. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"

TestSuite(message, .timeout = 30.0);

enum { MSG_SAY = TR_MSG_USER + 1 };

static uint64_t conn_bits; /* atomics: the accepted connection's id */
static uint64_t after_close; /* atomics: on_message calls after on_close */
static uint64_t closed;      /* atomics */

static int on_open(tr_conn *c, void *user)
{
    (void)user;
    tr_test_store(&conn_bits, tr_conn_get_id(c).bits);
    return 0;
}

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)data;
    (void)len;
    (void)user;
    return 0;
}

static void on_message(tr_conn *c, tr_msg *m, void *user)
{
    (void)user;
    if (tr_test_load(&closed)) {
        tr_test_add(&after_close, 1);
    }
    if (tr_msg_type(m) == MSG_SAY) {
        tr_conn_write(c, tr_msg_data(m), tr_msg_len(m));
    }
}

static void on_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)reason;
    (void)user;
    tr_test_store(&closed, 1);
}

static const tr_handler h = {
    .on_open = on_open, .on_frame = on_frame, .on_message = on_message, .on_close = on_close};

Test(message, messages_to_a_connection_reach_on_message_in_order)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &h;
    char addr[64];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
    int fd = tr_test_client(addr);
    cr_assert(tr_test_wait_ge(&conn_bits, 1, 5000));
    tr_conn_id id = {tr_test_load(&conn_bits)};
    for (int i = 0; i < 100; i++) {
        char line[16];
        int n = snprintf(line, sizeof(line), "m%03d", i);
        cr_assert_eq(tr_send(tr_conn_actor(id), tr_msg_new(MSG_SAY, line, (size_t)n)), 0);
    }
    for (int i = 0; i < 100; i++) {
        char want[16], got[16];
        snprintf(want, sizeof(want), "m%03d\n", i);
        cr_assert_eq(tr_test_sock_recv(fd, got, 5), 5);
        cr_assert_arr_eq(got, want, 5, "message %d in order", i);
    }
    close(fd);
    cr_assert(tr_test_wait_ge(&closed, 1, 5000));
    /* Gone: a send is refused or dropped, never delivered. */
    tr_send(tr_conn_actor(id), tr_msg_new(MSG_SAY, "late", 4));
    cr_assert_eq(tr_server_shutdown(srv, 5000), 0);
    cr_assert_eq(tr_test_load(&after_close), 0);
    cr_assert_eq(tr_server_free(srv), 0);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}
