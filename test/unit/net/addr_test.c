/* Tests for net/addr.c through the public API: which "host:port" strings
 * servers, clients and tr_client_once accept, and how addresses are
 * written back. No socket is opened. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "leak.h"
#include "troupe/troupe.h"

static tr_runtime *rt;
static tr_codec *codec;

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)data;
    (void)len;
    (void)user;
    return 0;
}

static const tr_handler handler = {.on_frame = on_frame};

static void setup(void)
{
    tr_runtime_config rc;
    tr_runtime_config_defaults(&rc);
    rc.workers = 1;
    int err = 1;
    rt = tr_runtime_new(&rc, &err); /* never started: no thread */
    cr_assert_not_null(rt);
    codec = tr_codec_raw_new(&err);
    cr_assert_not_null(codec);
}

static void teardown(void)
{
    tr_codec_free(codec);
    tr_runtime_free(rt);
}

TestSuite(addr, .init = setup, .fini = teardown, .timeout = 10.0);

/* The error tr_server_new gives for listen address s (0 if accepted). */
static int server_parse(const char *s)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = s;
    cfg.conn.codec = codec;
    cfg.conn.handler = &handler;
    int err = 1;
    tr_server *srv = tr_server_new(rt, &cfg, &err);
    cr_assert_eq(srv == NULL, err != 0, "a server exactly when no error");
    tr_server_free(srv);
    return err;
}

static int client_parse(const char *s)
{
    tr_client_config cfg;
    tr_client_config_defaults(&cfg);
    cfg.connect = s;
    cfg.conn.codec = codec;
    cfg.conn.handler = &handler;
    tr_conn_id id = {0};
    return tr_client_connect(rt, &cfg, &id);
}

Test(addr, accepts_ipv4_ipv6_wildcard_and_localhost)
{
    static const char *ok[] = {
        "127.0.0.1:0", "0.0.0.0:8080", ":0",          "localhost:80",         "10.1.2.3:65535",
        "[::1]:0",     "[::]:443",     "[fe80::1]:1", "[::ffff:127.0.0.1]:9", "1.2.3.4:00080",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(server_parse(ok[i]), 0, "\"%s\" refused", ok[i]);
    }
    tr_test_leak_check();
}

Test(addr, host_names_are_kept_to_be_resolved_at_start)
{
    /* tr_server_new never resolves (tr_server_start does), so no network
     * is needed here; test/integration/resolve_test.c resolves. */
    static const char *names[] = {
        "example.com:80",
        "a-very-long-host-name-that-does-not-fit-into-the-parse-buffer-at-all.example:80",
        "svc_1.internal:0",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        cr_assert_eq(server_parse(names[i]), 0, "\"%s\" refused", names[i]);
    }
    tr_test_leak_check();
}

Test(addr, refuses_malformed_addresses_with_eaddr)
{
    static const char *bad[] = {
        "",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:8a",
        "127.0.0.1: 80",
        "127.0.0.1:000080",
        "300.1.1.1:80",
        "1.2.3:80",
        "[::1]80",
        "[::1]",
        "[::1:80",
        "::1:80",
        "[127.0.0.1]:80",
        "[::1]:",
        "[::1]:99999",
        "127.0.0.1:80:90",
        "exa mple.com:80",
        "-example.com:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(server_parse(bad[i]), TR_EADDR, "\"%s\" accepted (or another error)", bad[i]);
        cr_assert_eq(client_parse(bad[i]), TR_EADDR, "client: \"%s\"", bad[i]);
    }
    cr_assert_eq(server_parse(NULL), TR_EADDR);
    cr_assert_eq(client_parse(NULL), TR_EADDR);
    tr_buf *reply = NULL;
    cr_assert_eq(tr_client_once("nowhere", codec, "x", 1, 16, 100, &reply), TR_EADDR);
    cr_assert_null(reply);
    tr_test_leak_check();
}

Test(addr, unix_paths_and_abstract_names)
{
    static const char *ok[] = {"unix:/tmp/a.sock", "unix:./rel.sock", "unix:@name", "unix:@a"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(server_parse(ok[i]), 0, "\"%s\" refused", ok[i]);
    }
    static const char *bad[] = {"unix:", "unix:@", "unix:relative", "unix"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(server_parse(bad[i]), TR_EADDR, "\"%s\"", bad[i]);
        cr_assert_eq(client_parse(bad[i]), TR_EADDR, "client: \"%s\"", bad[i]);
    }
    /* sun_path holds 107 bytes and a NUL; an abstract name 107 after its NUL. */
    char path[200] = "unix:/";
    memset(path + 6, 'p', 106);
    cr_assert_eq(server_parse(path), 0, "107 bytes fit");
    path[6 + 106] = 'p';
    cr_assert_eq(server_parse(path), -ENAMETOOLONG, "108 bytes do not");
    cr_assert_eq(client_parse(path), -ENAMETOOLONG);
    char abs[200] = "unix:@";
    memset(abs + 6, 'n', 107);
    cr_assert_eq(server_parse(abs), 0, "a 107-byte abstract name fits");
    abs[6 + 107] = 'n';
    cr_assert_eq(server_parse(abs), -ENAMETOOLONG);
    tr_test_leak_check();
}

Test(addr, config_errors_name_what_is_missing)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "bad address";
    int err = 0;
    /* The codec is checked first, then the handler, then the address. */
    cr_assert_null(tr_server_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_ENOCODEC);
    cfg.conn.codec = codec;
    cr_assert_null(tr_server_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_ENOHANDLER);
    cfg.conn.handler = &handler;
    cr_assert_null(tr_server_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_EADDR);
    cfg.listen = "127.0.0.1:0";
    cfg.backlog = 0;
    cr_assert_null(tr_server_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_EINVAL);
    tr_test_leak_check();
}

Test(addr, an_unstarted_server_has_no_address)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &handler;
    int err = 1;
    tr_server *srv = tr_server_new(rt, &cfg, &err);
    cr_assert_not_null(srv);
    char buf[64];
    cr_assert_eq(tr_server_address(srv, buf, sizeof(buf)), TR_ESTATE);
    cr_assert_eq(tr_server_port(srv), TR_ESTATE);
    cr_assert_not(tr_server_is_running(srv));
    cr_assert_eq(tr_server_open_connections(srv), 0);
    tr_server_free(srv);
    tr_test_leak_check();
}

Test(addr, embedded_connection_has_no_peer_and_small_buffers_are_refused)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.codec = codec;
    cfg.conn.handler = &handler;
    int err = 1;
    tr_embedded *e = tr_embedded_new(&cfg, &err);
    cr_assert_not_null(e);
    char buf[64];
    cr_assert_eq(tr_conn_peer(tr_embedded_conn(e), buf, sizeof(buf)), 7);
    cr_assert_str_eq(buf, "unknown");
    cr_assert_eq(tr_conn_local(tr_embedded_conn(e), buf, sizeof(buf)), 7);
    cr_assert_str_eq(buf, "unknown");
    cr_assert_eq(tr_conn_peer(tr_embedded_conn(e), buf, 7), TR_EINVAL, "no room for the NUL");
    tr_embedded_free(e);
    tr_test_leak_check();
}
