/* Datagram endpoints over real sockets: UDP on 127.0.0.1 and ::1, Unix
 * datagram sockets in a temp dir. Whole datagrams with their sender,
 * replies by send-to, truncation counted and dropped, a handler actor,
 * a connected client endpoint, batched sends, stop semantics, and socat
 * (Debian's) as a peer nobody here wrote. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rt.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(dgram, .timeout = 60.0);

static uint64_t got, got_bytes, handler_calls; /* atomics */

/* Echoes every datagram to its sender. */
static int echo(tr_dgram *d, const void *data, size_t len, const tr_dgram_addr *from, void *user)
{
    (void)user;
    tr_test_add(&got, 1);
    tr_test_add(&got_bytes, len);
    return tr_dgram_send_to(d, from, data, len) == (int)len ? 0 : -1;
}

static tr_dgram *start_dgram(tr_runtime *rt, tr_dgram_config *cfg, char *addr, size_t len)
{
    int err = 1;
    tr_dgram *d = tr_dgram_new(rt, cfg, &err);
    cr_assert_not_null(d, "tr_dgram_new: %s", tr_strerror(err));
    cr_assert_eq(tr_dgram_start(d), 0);
    cr_assert_gt(tr_dgram_address(d, addr, len), 0);
    return d;
}

/* A plain client socket of the address's family (Unix: bound to path). */
static int client_socket(const char *addr, const char *unix_client_path)
{
    tr_dgram_addr a;
    cr_assert_eq(tr_dgram_addr_parse(addr, &a), 0);
    int fd = socket(a.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    if (unix_client_path != NULL) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        cr_assert_lt(strlen(unix_client_path), sizeof(un.sun_path));
        memcpy(un.sun_path, unix_client_path, strlen(unix_client_path) + 1);
        cr_assert_eq(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
    }
    cr_assert_eq(connect(fd, (struct sockaddr *)&a.ss, a.len), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void roundtrip(int fd, const char *s)
{
    size_t n = strlen(s);
    cr_assert_eq(send(fd, s, n, 0), (ssize_t)n);
    char buf[512];
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    cr_assert_eq(r, (ssize_t)n, "recv %zd: %s", r, r < 0 ? strerror(errno) : "short");
    cr_assert_arr_eq(buf, s, n);
}

static bool out_reached(void *arg)
{
    void **a = arg;
    tr_dgram_stats st;
    tr_dgram_stats_get(a[0], &st);
    return st.datagrams_out >= *(uint64_t *)a[1];
}

/* The counter moves just after the reply left: wait for it. */
static void wait_out(tr_dgram *d, uint64_t want)
{
    void *a[2] = {d, &want};
    cr_assert(tr_test_wait_until(out_reached, a, 5000), "datagrams_out never reached %llu",
              (unsigned long long)want);
}

static void reset_counts(void)
{
    tr_test_store(&got, 0);
    tr_test_store(&got_bytes, 0);
    tr_test_store(&handler_calls, 0);
}

static void echo_over(const char *bind)
{
    reset_counts();
    tr_runtime *rt = tr_test_runtime(2);
    tr_dgram_config cfg;
    tr_dgram_config_defaults(&cfg);
    cfg.bind = bind;
    cfg.on_datagram = echo;
    char addr[128];
    tr_dgram *d = start_dgram(rt, &cfg, addr, sizeof(addr));
    cr_assert_eq(tr_dgram_open_connections(d), 1, "the seed counts a running endpoint as one");
    int fd = client_socket(addr, NULL);
    roundtrip(fd, "ping");
    roundtrip(fd, "a second, longer datagram");
    /* Two datagrams never merge: each comes back on its own. */
    cr_assert_eq(send(fd, "ab", 2, 0), 2);
    cr_assert_eq(send(fd, "cde", 3, 0), 3);
    char buf[16];
    cr_assert_eq(recv(fd, buf, sizeof(buf), 0), 2);
    cr_assert_eq(recv(fd, buf, sizeof(buf), 0), 3);
    wait_out(d, 4);
    tr_dgram_stats st;
    tr_dgram_stats_get(d, &st);
    cr_assert_eq(st.datagrams_in, 4);
    cr_assert_eq(st.datagrams_out, 4);
    cr_assert_eq(st.bytes_in, 4 + 25 + 2 + 3);
    cr_assert_eq(st.truncated, 0);
    close(fd);
    cr_assert_eq(tr_dgram_stop(d), 0);
    cr_assert_eq(tr_dgram_open_connections(d), 0);
    tr_dgram_addr to;
    cr_assert_eq(tr_dgram_addr_parse(addr, &to), 0);
    cr_assert_eq(tr_dgram_send_to(d, &to, "x", 1), TR_ECLOSED, "stopped: sends refused");
    cr_assert_eq(tr_dgram_free(d), 0);
    tr_test_runtime_finish(rt);
}

Test(dgram, udp_echo_on_ipv4)
{
    echo_over("127.0.0.1:0");
}

Test(dgram, udp_echo_on_ipv6)
{
    echo_over("[::1]:0");
}

Test(dgram, oversized_datagrams_are_counted_and_dropped_never_cut)
{
    reset_counts();
    tr_runtime *rt = tr_test_runtime(2);
    tr_dgram_config cfg;
    tr_dgram_config_defaults(&cfg);
    cfg.bind = "127.0.0.1:0";
    cfg.on_datagram = echo;
    cfg.max_datagram_bytes = 100;
    char addr[128];
    tr_dgram *d = start_dgram(rt, &cfg, addr, sizeof(addr));
    int fd = client_socket(addr, NULL);
    char big[200];
    memset(big, 'b', sizeof(big));
    cr_assert_eq(send(fd, big, 101, 0), 101);
    cr_assert_eq(send(fd, big, 200, 0), 200);
    roundtrip(fd, "small one");
    tr_dgram_stats st;
    tr_dgram_stats_get(d, &st);
    cr_assert_eq(st.truncated, 2);
    cr_assert_eq(st.datagrams_in, 1);
    cr_assert_eq(tr_test_load(&got_bytes), 9, "nothing cut was delivered");
    tr_dgram_addr to;
    cr_assert_eq(tr_dgram_addr_parse(addr, &to), 0);
    cr_assert_eq(tr_dgram_send_to(d, &to, big, 101), TR_EMSGSIZE);
    close(fd);
    cr_assert_eq(tr_dgram_free(d), 0);
    tr_test_runtime_finish(rt);
}

/* ---- a handler actor ---- */

static tr_dgram *actor_ep;

static void dgram_actor_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    tr_dgram_addr from;
    size_t len = 0;
    const void *p = tr_dgram_msg_payload(m, &len);
    if (tr_msg_type(m) != TR_MSG_DGRAM || p == NULL || tr_dgram_msg_from(m, &from) != 0) {
        return;
    }
    tr_test_add(&handler_calls, 1);
    tr_dgram_send_to(actor_ep, &from, p, len);
}

static const tr_behavior dgram_actor = {.name = "dgram-handler", .receive = dgram_actor_receive};

Test(dgram, a_handler_actor_gets_each_datagram_with_its_sender)
{
    reset_counts();
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id h;
    cr_assert_eq(tr_spawn(rt, &dgram_actor, NULL, NULL, &h), 0);
    tr_dgram_config cfg;
    tr_dgram_config_defaults(&cfg);
    cfg.bind = "127.0.0.1:0";
    cfg.handler_actor = h;
    char addr[128];
    actor_ep = start_dgram(rt, &cfg, addr, sizeof(addr));
    int fd = client_socket(addr, NULL);
    roundtrip(fd, "via an actor");
    roundtrip(fd, "and again");
    cr_assert_eq(tr_test_load(&handler_calls), 2);
    close(fd);
    cr_assert_eq(tr_dgram_free(actor_ep), 0);
    tr_test_runtime_finish(rt);
}

/* ---- a connected client endpoint, and batches ---- */

static uint64_t client_got; /* atomics */

static int count_reply(tr_dgram *d, const void *data, size_t len, const tr_dgram_addr *from,
                       void *user)
{
    (void)d;
    (void)data;
    (void)len;
    (void)from;
    (void)user;
    tr_test_add(&client_got, 1);
    return 0;
}

Test(dgram, a_connected_endpoint_sends_single_and_batched_datagrams)
{
    reset_counts();
    tr_test_store(&client_got, 0);
    tr_runtime *rt = tr_test_runtime(2);
    tr_dgram_config cfg;
    tr_dgram_config_defaults(&cfg);
    cfg.bind = "127.0.0.1:0";
    cfg.on_datagram = echo;
    char addr[128];
    tr_dgram *server = start_dgram(rt, &cfg, addr, sizeof(addr));

    tr_dgram_config cc;
    tr_dgram_config_defaults(&cc);
    cc.connect = addr;
    cc.on_datagram = count_reply;
    char caddr[128];
    tr_dgram *client = start_dgram(rt, &cc, caddr, sizeof(caddr));
    cr_assert_eq(tr_dgram_send(client, "one", 3), 3);
    cr_assert(tr_test_wait_ge(&client_got, 1, 5000), "the reply came back to the client");
    tr_dgram_out out[10];
    for (int i = 0; i < 10; i++) {
        out[i] = (tr_dgram_out){NULL, "batched", 7};
    }
    cr_assert_eq(tr_dgram_send_batch(client, out, 10), 10);
    cr_assert(tr_test_wait_ge(&client_got, 11, 5000), "got %llu replies",
              (unsigned long long)tr_test_load(&client_got));
    cr_assert_eq(tr_test_load(&got), 11);
    tr_dgram_addr to;
    cr_assert_eq(tr_dgram_addr_parse(addr, &to), 0);
    cr_assert_eq(tr_dgram_send(server, "x", 1), TR_EINVAL, "not connected");
    cr_assert_eq(tr_dgram_free(client), 0);
    cr_assert_eq(tr_dgram_free(server), 0);
    tr_test_runtime_finish(rt);
}

/* ---- Unix datagram sockets ---- */

Test(dgram, unixgram_echo_with_file_rules)
{
    reset_counts();
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/troupe-dgram-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char path[128], where[140], cpath[128];
    snprintf(path, sizeof(path), "%s/d.sock", dir);
    snprintf(where, sizeof(where), "unix:%s", path);
    snprintf(cpath, sizeof(cpath), "%s/client.sock", dir);
    /* A stale file from a dead endpoint is replaced. */
    int stale = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(stale, (struct sockaddr *)&un, sizeof(un)), 0);
    close(stale);

    tr_runtime *rt = tr_test_runtime(2);
    tr_dgram_config cfg;
    tr_dgram_config_defaults(&cfg);
    cfg.bind = where;
    cfg.on_datagram = echo;
    char addr[160];
    tr_dgram *d = start_dgram(rt, &cfg, addr, sizeof(addr));
    cr_assert_str_eq(addr, where);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    /* A second endpoint on the live path is refused. */
    int err = 1;
    tr_dgram *second = tr_dgram_new(rt, &cfg, &err);
    cr_assert_not_null(second);
    cr_assert_eq(tr_dgram_start(second), -EADDRINUSE);
    cr_assert_eq(tr_dgram_free(second), 0);

    int fd = client_socket(where, cpath);
    roundtrip(fd, "over a unix datagram socket");
    close(fd);
    unlink(cpath);
    cr_assert_eq(tr_dgram_stop(d), 0);
    cr_assert_eq(stat(path, &st), -1, "unlinked at stop");
    cr_assert_eq(tr_dgram_free(d), 0);
    tr_test_runtime_finish(rt);
    cr_assert_eq(rmdir(dir), 0);
}

Test(dgram, bad_configs_give_clear_errors)
{
    tr_runtime *rt = tr_test_runtime(1);
    tr_dgram_config cfg;
    tr_dgram_config_defaults(&cfg);
    int err = 1;
    cfg.bind = "127.0.0.1:0";
    cr_assert_null(tr_dgram_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_ENOHANDLER);
    cfg.on_datagram = echo;
    cfg.bind = "nowhere";
    cr_assert_null(tr_dgram_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_EADDR);
    cfg.bind = "127.0.0.1:0";
    cfg.max_datagram_bytes = 70000;
    cr_assert_null(tr_dgram_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_EINVAL);
    cfg.max_datagram_bytes = 512;
    cfg.bind = NULL;
    cr_assert_null(tr_dgram_new(rt, &cfg, &err));
    cr_assert_eq(err, TR_EINVAL, "neither bind nor connect");
    tr_test_runtime_finish(rt);
}

Test(dgram, socat_talks_to_the_udp_endpoint)
{
    reset_counts();
    tr_runtime *rt = tr_test_runtime(2);
    tr_dgram_config cfg;
    tr_dgram_config_defaults(&cfg);
    cfg.bind = "127.0.0.1:0";
    cfg.on_datagram = echo;
    char addr[128];
    tr_dgram *d = start_dgram(rt, &cfg, addr, sizeof(addr));
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "printf 'from socat\\n' | socat -t 5 - UDP:%s", addr);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[64] = {0};
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    int status = pclose(p);
    cr_assert_eq(status, 0, "socat exited with %d (is it installed?)", status);
    cr_assert_eq(n, 11, "got %zu bytes: %s", n, out);
    cr_assert_str_eq(out, "from socat\n");
    cr_assert_eq(tr_dgram_free(d), 0);
    tr_test_runtime_finish(rt);
}

Test(dgram, socat_talks_to_the_unixgram_endpoint)
{
    reset_counts();
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/troupe-dgram-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char where[140];
    snprintf(where, sizeof(where), "unix:%s/e.sock", dir);
    tr_runtime *rt = tr_test_runtime(2);
    tr_dgram_config cfg;
    tr_dgram_config_defaults(&cfg);
    cfg.bind = where;
    cfg.on_datagram = echo;
    char addr[160];
    tr_dgram *d = start_dgram(rt, &cfg, addr, sizeof(addr));
    char cmd[400];
    snprintf(cmd, sizeof(cmd),
             "printf 'unixgram socat\\n' | socat -t 5 - UNIX-SENDTO:%s,bind=%s/socat.sock", where + 5,
             dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[64] = {0};
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    int status = pclose(p);
    cr_assert_eq(status, 0, "socat exited with %d", status);
    cr_assert_str_eq(out, "unixgram socat\n", "got %zu bytes", n);
    cr_assert_eq(tr_dgram_free(d), 0);
    tr_test_runtime_finish(rt);
    char sp[128];
    snprintf(sp, sizeof(sp), "%s/socat.sock", dir);
    unlink(sp);
    cr_assert_eq(rmdir(dir), 0, "the endpoint's file was unlinked");
}
