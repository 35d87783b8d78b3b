/* Host names resolved with c-ares, with no network: names from /etc/hosts,
 * and a fake DNS server on loopback (test/support/fake_dns.c) that
 * answers, says NXDOMAIN, or never answers, chosen with
 * TROUPE_DNS_SERVERS. Clients (event-driven, blocking, once), servers and
 * datagram endpoints; numeric addresses and localhost never ask the DNS. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_dns.h"
#include "net.h"
#include "net/resolve.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(resolve, .timeout = 60.0);

static uint64_t dials, dial_err_bits, opens, frames, closes;
static char open_peer[64];

static void on_dial(tr_conn_id id, int err, void *user)
{
    (void)id;
    (void)user;
    tr_test_store(&dial_err_bits, (uint64_t)(int64_t)err);
    tr_test_add(&dials, 1);
}

static int c_open(tr_conn *c, void *user)
{
    (void)user;
    tr_conn_peer(c, open_peer, sizeof(open_peer)); /* read after `opens` is seen */
    tr_test_add(&opens, 1);
    return tr_conn_write(c, "hi", 2);
}

static int c_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)user;
    if (len == 2 && memcmp(data, "hi", 2) == 0) {
        tr_test_add(&frames, 1);
    }
    return 0;
}

static void c_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    (void)reason;
    tr_test_add(&closes, 1);
}

static const tr_handler client_handler = {
    .on_open = c_open, .on_frame = c_frame, .on_close = c_close};

static bool id_closed(void *arg)
{
    return tr_conn_id_is_closed(*(tr_conn_id *)arg);
}

static int dial_err(void)
{
    return (int)(int64_t)tr_test_load(&dial_err_bits);
}

static tr_server *echo_server(tr_runtime *rt, const tr_codec *codec, const char *listen, char *addr)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = listen;
    cfg.conn.codec = codec;
    cfg.conn.handler = &tr_test_echo_handler;
    return tr_test_server(rt, &cfg, addr, 64);
}

static void client_config(tr_client_config *cfg, const char *addr, const tr_codec *codec)
{
    tr_client_config_defaults(cfg);
    cfg->connect = addr;
    cfg->conn.codec = codec;
    cfg->conn.handler = &client_handler;
    cfg->on_dial = on_dial;
}

static tr_test_dns *fake_dns(tr_test_dns_mode mode, const char *const *ips, unsigned n)
{
    tr_test_dns *dns = tr_test_dns_start(mode, ips, n);
    cr_assert_not_null(dns);
    tr_test_dns_env(dns);
    return dns;
}

static const char *const loopback[] = {"127.0.0.1"};

typedef struct queries_arg {
    const tr_test_dns *dns;
    uint64_t want;
} queries_arg;

static bool queries_reached(void *arg)
{
    queries_arg *q = arg;
    return tr_test_dns_queries(q->dns) >= q->want;
}

static bool tr_test_wait_until_queries(const tr_test_dns *dns, uint64_t want, uint32_t ms)
{
    queries_arg q = {dns, want};
    return tr_test_wait_until(queries_reached, &q, ms);
}

static void cleanup(tr_runtime *rt, tr_server *srv, tr_codec *codec, tr_test_dns *dns)
{
    cr_assert_eq(tr_server_free(srv), 0);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_dns_stop(dns);
}

/* A fake DNS answering 127.0.0.1, a runtime, and an echo server on
 * 127.0.0.1:0; name is "svc.troupe.test:<its port>". */
typedef struct named_echo_fixture {
    tr_test_dns *dns;
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[64], name[96];
} named_echo_fixture;

static void named_echo(named_echo_fixture *f)
{
    f->dns = fake_dns(TR_TEST_DNS_ANSWER, loopback, 1);
    f->rt = tr_test_runtime(2);
    f->codec = tr_test_codec_line(0);
    f->srv = echo_server(f->rt, f->codec, "127.0.0.1:0", f->addr);
    snprintf(f->name, sizeof(f->name), "svc.troupe.test:%d", tr_server_port(f->srv));
}

/* ---- the resolver itself ---- */

Test(resolve, localhost_comes_from_the_hosts_file_not_the_dns)
{
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_NXDOMAIN, NULL, 0);
    tr__addrs as;
    cr_assert_eq(tr__resolve_wait("localhost", 8080, AF_INET, 2000, &as), 0);
    cr_assert_geq(as.n, 1);
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)&as.a[0];
    cr_assert_eq(a4->sin_family, AF_INET);
    cr_assert_eq(ntohl(a4->sin_addr.s_addr), INADDR_LOOPBACK);
    cr_assert_eq(ntohs(a4->sin_port), 8080);
    cr_assert_eq(tr_test_dns_queries(dns), 0, "a hosts-file name never reaches the DNS");
    tr_test_dns_stop(dns);
}

/* The first name /etc/hosts maps to ::1 other than localhost (Debian's
 * ip6-localhost), or NULL. */
static bool hosts_v6_name(char *out, size_t len)
{
    FILE *f = fopen("/etc/hosts", "r");
    char line[512];
    bool found = false;
    while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL) {
        char *save = NULL, *addr = strtok_r(line, " \t\n", &save);
        if (addr == NULL || strcmp(addr, "::1") != 0) {
            continue;
        }
        for (char *n = strtok_r(NULL, " \t\n", &save); n != NULL && n[0] != '#';
             n = strtok_r(NULL, " \t\n", &save)) {
            if (strcmp(n, "localhost") != 0 && strlen(n) < len) {
                snprintf(out, len, "%s", n);
                found = true;
                break;
            }
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return found;
}

Test(resolve, ip6_localhost_from_the_hosts_file_is_v6_loopback)
{
    char name[128];
    if (!hosts_v6_name(name, sizeof(name))) {
        cr_skip_test("/etc/hosts names no ::1 alias here");
    }
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_NXDOMAIN, NULL, 0);
    tr__addrs as;
    cr_assert_eq(tr__resolve_wait(name, 9, AF_INET6, 2000, &as), 0, "%s", name);
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&as.a[0];
    cr_assert_eq(a6->sin6_family, AF_INET6);
    cr_assert(IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr));
    cr_assert_eq(tr_test_dns_queries(dns), 0);
    tr_test_dns_stop(dns);
}

Test(resolve, dns_answers_keep_their_order_and_get_the_port)
{
    const char *const ips[] = {"127.0.0.2", "127.0.0.1"};
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_ANSWER, ips, 2);
    tr__addrs as;
    cr_assert_eq(tr__resolve_wait("svc.troupe.test", 4242, AF_INET, 2000, &as), 0);
    cr_assert_eq(as.n, 2);
    for (unsigned i = 0; i < 2; i++) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&as.a[i];
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof(ip));
        cr_assert_str_eq(ip, ips[i]);
        cr_assert_eq(ntohs(a4->sin_port), 4242);
    }
    cr_assert_geq(tr_test_dns_queries(dns), 1);
    tr_test_dns_stop(dns);
}

Test(resolve, split_takes_host_names_and_refuses_the_rest)
{
    char host[256];
    uint16_t port;
    cr_assert_eq(tr__resolve_split("svc-1.example_x.test:80", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "svc-1.example_x.test");
    cr_assert_eq(port, 80);
    const char *bad[] = {"svc.test", "svc.test:", "svc.test:65536", ":80",        "-svc:80",
                         "1.2.3:80", "sv c:80",   "svc/x:80",       "svc.test:8x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(tr__resolve_split(bad[i], host, sizeof(host), &port), TR_EADDR, "%s", bad[i]);
    }
}

/* ---- clients ---- */

Test(resolve, client_dials_a_name_the_dns_answers)
{
    named_echo_fixture f;
    named_echo(&f);
    tr_client_config cfg;
    client_config(&cfg, f.name, f.codec);
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(f.rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_ge(&frames, 1, 5000), "the echo came back");
    cr_assert_eq(tr_test_load(&dials), 1);
    cr_assert_eq(dial_err(), 0);
    cr_assert_str_eq(open_peer, f.addr);
    cr_assert_geq(tr_test_dns_queries(f.dns), 1);
    tr_conn_close_id(id);
    cleanup(f.rt, f.srv, f.codec, f.dns);
}

Test(resolve, client_tries_each_address_in_order_until_one_connects)
{
    const char *const ips[] = {"127.0.0.2", "127.0.0.1"};
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_ANSWER, ips, 2);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    char addr[64], name[96];
    tr_server *srv = echo_server(rt, codec, "127.0.0.1:0", addr);
    int port = tr_server_port(srv);
    /* 127.0.0.2 on the same port: bound, not listening, so refused. */
    int holder = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in h = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.2", &h.sin_addr);
    cr_assert_eq(bind(holder, (struct sockaddr *)&h, sizeof(h)), 0);
    snprintf(name, sizeof(name), "two.troupe.test:%d", port);
    tr_client_config cfg;
    client_config(&cfg, name, codec);
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_ge(&frames, 1, 5000));
    cr_assert_eq(tr_test_load(&dials), 1, "one dial, two addresses");
    cr_assert_eq(dial_err(), 0);
    cr_assert_str_eq(open_peer, addr, "connected to the second address");
    cr_assert_eq(tr_test_stats(srv).accepted, 1);
    tr_conn_close_id(id);
    close(holder);
    cleanup(rt, srv, codec, dns);
}

Test(resolve, client_unknown_name_fails_the_dial_with_enoname)
{
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_NXDOMAIN, NULL, 0);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_client_config cfg;
    client_config(&cfg, "nosuch.troupe.test:80", codec);
    cfg.resolve_timeout_ms = 3000;
    tr_conn_id id;
    uint64_t t0 = tr_test_now_ms();
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_ge(&dials, 1, 5000));
    cr_assert_eq(dial_err(), TR_ENONAME, "%s", tr_strerror(dial_err()));
    cr_assert_lt(tr_test_now_ms() - t0, 3000, "NXDOMAIN is an answer, not a timeout");
    cr_assert(tr_test_wait_until(id_closed, &id, 5000), "no reconnect: the connection ends");
    cr_assert_eq(tr_test_load(&opens), 0);
    cr_assert_str_eq(tr_strerror(TR_ENONAME), "host name did not resolve");
    cr_assert_geq(tr_test_dns_queries(dns), 1);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_dns_stop(dns);
}

Test(resolve, client_silent_dns_fails_the_dial_with_etimedout_at_the_resolve_timeout)
{
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_SILENT, NULL, 0);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_client_config cfg;
    client_config(&cfg, "slow.troupe.test:80", codec);
    cfg.resolve_timeout_ms = 300;
    tr_conn_id id;
    uint64_t t0 = tr_test_now_ms();
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_ge(&dials, 1, 5000));
    uint64_t took = tr_test_now_ms() - t0;
    cr_assert_eq(dial_err(), TR_ETIMEDOUT, "%s", tr_strerror(dial_err()));
    cr_assert_geq(took, 290, "not before the timeout (%llu ms)", (unsigned long long)took);
    cr_assert_geq(tr_test_dns_queries(dns), 1, "the query did reach the server");
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    tr_test_runtime_finish(rt); /* the query still inside c-ares is dropped */
    tr_codec_free(codec);
    tr_test_dns_stop(dns);
}

Test(resolve, client_closed_while_resolving_never_reports_a_dial)
{
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_SILENT, NULL, 0);
    tr_runtime *rt = tr_test_runtime(1);
    tr_codec *codec = tr_test_codec_line(0);
    tr_client_config cfg;
    client_config(&cfg, "slow.troupe.test:80", codec);
    cfg.reconnect = true;
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
    cr_assert(tr_test_wait_until_queries(dns, 1, 5000));
    cr_assert_eq(tr_conn_close_id(id), 0);
    cr_assert(tr_test_wait_until(id_closed, &id, 5000));
    tr_test_runtime_finish(rt);
    cr_assert_eq(tr_test_load(&dials), 0, "the cancelled resolution ran no callback");
    cr_assert_eq(tr_test_load(&opens), 0);
    tr_codec_free(codec);
    tr_test_dns_stop(dns);
}

Test(resolve, numeric_addresses_and_localhost_never_ask_the_dns)
{
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_NXDOMAIN, NULL, 0);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    char addr[64], local[64];
    tr_server *srv = echo_server(rt, codec, "localhost:0", addr);
    snprintf(local, sizeof(local), "localhost:%d", tr_server_port(srv));
    const char *targets[] = {addr, local};
    for (int i = 0; i < 2; i++) {
        tr_client_config cfg;
        client_config(&cfg, targets[i], codec);
        tr_conn_id id;
        cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
        cr_assert(tr_test_wait_ge(&frames, (uint64_t)i + 1, 5000), "%s", targets[i]);
        tr_conn_close_id(id);
    }
    tr_buf *reply = NULL;
    cr_assert_eq(tr_client_once(local, codec, "x", 1, 1024, 5000, &reply), 0);
    tr_buf_release(reply);
    cr_assert_eq(tr_test_dns_queries(dns), 0);
    cleanup(rt, srv, codec, dns);
}

/* ---- the blocking callers ---- */

Test(resolve, client_once_resolves_a_name_and_reports_enoname)
{
    named_echo_fixture f;
    named_echo(&f);
    tr_buf *reply = NULL;
    cr_assert_eq(tr_client_once(f.name, f.codec, "ping", 4, 1024, 5000, &reply), 0);
    cr_assert_eq(tr_buf_len(reply), 4);
    cr_assert_arr_eq(tr_buf_data(reply), "ping", 4);
    tr_buf_release(reply);
    tr_test_dns_stop(f.dns);
    f.dns = fake_dns(TR_TEST_DNS_NXDOMAIN, NULL, 0);
    cr_assert_eq(tr_client_once(f.name, f.codec, "ping", 4, 1024, 5000, &reply), TR_ENONAME);
    cr_assert_null(reply);
    cleanup(f.rt, f.srv, f.codec, f.dns);
}

Test(resolve, bclient_connects_by_name_and_times_out_on_a_silent_dns)
{
    named_echo_fixture f;
    named_echo(&f);
    int err = 1;
    tr_bclient *b = tr_bclient_connect(f.rt, f.name, f.codec, 0, 5000, &err);
    cr_assert_not_null(b, "%s", tr_strerror(err));
    tr_buf *reply = NULL;
    cr_assert_eq(tr_bclient_once(b, "ping", 4, &reply, 5000), 0);
    cr_assert_arr_eq(tr_buf_data(reply), "ping", 4);
    tr_buf_release(reply);
    tr_bclient_close(b);
    tr_test_dns_stop(f.dns);
    f.dns = fake_dns(TR_TEST_DNS_SILENT, NULL, 0);
    /* A worker made its channel already: a new runtime reads the new servers. */
    tr_runtime *rt2 = tr_test_runtime(1);
    uint64_t t0 = tr_test_now_ms();
    cr_assert_null(tr_bclient_connect(rt2, f.name, f.codec, 0, 300, &err));
    cr_assert_eq(err, TR_ETIMEDOUT, "%s", tr_strerror(err));
    cr_assert_geq(tr_test_now_ms() - t0, 290);
    tr_test_runtime_finish(rt2);
    cleanup(f.rt, f.srv, f.codec, f.dns);
}

Test(resolve, server_listens_on_a_name_and_start_reports_enoname)
{
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_ANSWER, loopback, 1);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    char addr[64];
    tr_server *srv = echo_server(rt, codec, "svc.troupe.test:0", addr);
    cr_assert_eq(strncmp(addr, "127.0.0.1:", 10), 0, "%s", addr);
    int fd = tr_test_client(addr);
    tr_test_roundtrip(fd, "hello\n", "hello\n");
    close(fd);
    cr_assert_eq(tr_server_free(srv), 0);
    tr_test_dns_stop(dns);

    dns = fake_dns(TR_TEST_DNS_NXDOMAIN, NULL, 0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "nosuch.troupe.test:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &tr_test_echo_handler;
    int err = 1;
    srv = tr_server_new(rt, &cfg, &err);
    cr_assert_not_null(srv, "a name is only resolved at start: %s", tr_strerror(err));
    cr_assert_eq(tr_server_start(srv), TR_ENONAME);
    cr_assert_eq(tr_server_address(srv, addr, sizeof(addr)), TR_ESTATE);
    cleanup(rt, srv, codec, dns);
}

static int dgram_echo(tr_dgram *d, const void *data, size_t len, const tr_dgram_addr *from,
                      void *user)
{
    (void)user;
    int rc = tr_dgram_send_to(d, from, data, len);
    return rc < 0 ? rc : 0;
}

Test(resolve, datagram_endpoint_binds_and_connects_by_name)
{
    tr_test_dns *dns = fake_dns(TR_TEST_DNS_ANSWER, loopback, 1);
    tr_runtime *rt = tr_test_runtime(2);
    tr_dgram_config dc;
    tr_dgram_config_defaults(&dc);
    dc.bind = "svc.troupe.test:0";
    dc.on_datagram = dgram_echo;
    int err = 1;
    tr_dgram *d = tr_dgram_new(rt, &dc, &err);
    cr_assert_not_null(d, "%s", tr_strerror(err));
    cr_assert_eq(tr_dgram_start(d), 0);
    char addr[64], name[96];
    cr_assert_gt(tr_dgram_address(d, addr, sizeof(addr)), 0);
    cr_assert_eq(strncmp(addr, "127.0.0.1:", 10), 0, "%s", addr);
    snprintf(name, sizeof(name), "svc.troupe.test:%s", strrchr(addr, ':') + 1);
    /* A raw client: one datagram there, one back. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    tr_dgram_addr to;
    cr_assert_eq(tr_dgram_addr_parse(addr, &to), 0);
    cr_assert_eq(sendto(fd, "dg", 2, 0, (struct sockaddr *)&to.ss, to.len), 2);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[8];
    cr_assert_eq(recv(fd, buf, sizeof(buf), 0), 2);
    close(fd);
    /* tr_dgram_addr_parse stays numeric. */
    cr_assert_eq(tr_dgram_addr_parse(name, &to), TR_EADDR);
    cr_assert_eq(tr_dgram_free(d), 0);
    tr_test_dns_stop(dns);

    dns = fake_dns(TR_TEST_DNS_NXDOMAIN, NULL, 0);
    tr_dgram_config_defaults(&dc);
    dc.connect = name;
    dc.on_datagram = dgram_echo;
    d = tr_dgram_new(rt, &dc, &err);
    cr_assert_not_null(d);
    cr_assert_eq(tr_dgram_start(d), TR_ENONAME);
    cr_assert_eq(tr_dgram_free(d), 0);
    tr_test_runtime_finish(rt);
    tr_test_dns_stop(dns);
}
