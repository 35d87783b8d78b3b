/* Half-closes: tr_conn_shutdown_read (the seed's CloseRead) stops the
 * frames while writing goes on, over TCP and a Unix socket. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"

TestSuite(halfclose, .timeout = 30.0);

static uint64_t frames, opened, shut_rc; /* atomics */

static int on_open(tr_conn *c, void *user)
{
    (void)user;
    tr_test_store(&shut_rc, (uint64_t)(int64_t)tr_conn_shutdown_read(c));
    tr_test_add(&opened, 1);
    return tr_conn_write(c, "hello", 5);
}

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    tr_test_add(&frames, 1);
    return tr_conn_write(c, "never", 5);
}

static const tr_handler h = {.on_open = on_open, .on_frame = on_frame};

static void run(const char *listen)
{
    tr_test_store(&frames, 0);
    tr_test_store(&opened, 0);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = listen;
    cfg.conn.codec = codec;
    cfg.conn.handler = &h;
    char addr[160];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
    int fd = tr_test_client(addr);
    char buf[16];
    cr_assert_eq(tr_test_sock_recv(fd, buf, 6), 6, "the greeting is written after the shutdown");
    cr_assert_arr_eq(buf, "hello\n", 6);
    cr_assert_eq((int64_t)tr_test_load(&shut_rc), 0);
    for (int i = 0; i < 50; i++) {
        tr_test_sock_send_str(fd, "ignored line\n"); /* may fail once the kernel resets */
    }
    /* A line sent and a round trip of nothing: the server never answers. */
    cr_assert_eq(tr_test_sock_readable(fd, 300), 0, "no frame reached the handler");
    cr_assert_eq(tr_server_shutdown(srv, 5000), 0, "and a drain does not wait for an EOF");
    cr_assert_eq(tr_test_load(&frames), 0, "not one of the 50 lines became a frame");
    cr_assert_eq(tr_server_free(srv), 0);
    close(fd);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

Test(halfclose, shutdown_read_over_tcp)
{
    run("127.0.0.1:0");
}

Test(halfclose, shutdown_read_over_unix)
{
    char listen[96];
    snprintf(listen, sizeof(listen), "unix:@troupe-halfclose-%d", (int)getpid());
    run(listen);
}
