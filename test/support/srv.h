/* Test helpers for server tests: codecs, a started server with its bound
 * address, and waits on the server's counters.
 *
 * Header-only (static inline, with Criterion asserts), like rt.h. Server
 * callbacks run on worker threads, where an assert cannot stop the test:
 * they record what they saw (atomics, rt.h's event log) and the test
 * thread asserts after waiting. */
#ifndef TROUPE_TEST_SRV_H
#define TROUPE_TEST_SRV_H

#include <criterion/criterion.h>
#include <stddef.h>
#include <string.h>

#include "net.h"
#include "troupe/troupe.h"
#include "wait.h"

static inline tr_codec *tr_test_codec_raw(void)
{
    int err = 1;
    tr_codec *c = tr_codec_raw_new(&err);
    cr_assert_not_null(c, "raw codec: %s", tr_strerror(err));
    return c;
}

/* The line codec; max_length 0 keeps the default. */
static inline tr_codec *tr_test_codec_line(size_t max_length)
{
    tr_line_codec_config lc;
    tr_line_codec_config_defaults(&lc);
    if (max_length != 0) {
        lc.max_length = max_length;
    }
    int err = 1;
    tr_codec *c = tr_codec_line_new(&lc, &err);
    cr_assert_not_null(c, "line codec: %s", tr_strerror(err));
    return c;
}

/* A 4-byte big-endian length prefix that does not count itself, stripped
 * from decoded frames (the demo's "length" codec). */
static inline tr_codec *tr_test_codec_length(void)
{
    tr_length_codec_config lc;
    tr_length_codec_config_defaults(&lc);
    lc.strip_header = 4;
    int err = 1;
    tr_codec *c = tr_codec_length_new(&lc, &err);
    cr_assert_not_null(c, "length codec: %s", tr_strerror(err));
    return c;
}

/* Writes the 4-byte big-endian prefix of a length-codec frame. */
static inline void tr_test_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A handler that writes every frame back (same framing). */
static inline int tr_test_echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static const tr_handler tr_test_echo_handler = {.on_frame = tr_test_echo_frame};

/* Creates and starts a server from cfg; its address goes to addr. */
static inline tr_server *tr_test_server(tr_runtime *rt, const tr_server_config *cfg, char *addr,
                                        size_t len)
{
    int err = 1;
    tr_server *srv = tr_server_new(rt, cfg, &err);
    cr_assert_not_null(srv, "tr_server_new: %s", tr_strerror(err));
    cr_assert_eq(err, 0);
    err = tr_server_start(srv);
    cr_assert_eq(err, 0, "tr_server_start: %s", tr_strerror(err));
    cr_assert_gt(tr_server_address(srv, addr, len), 0);
    return srv;
}

static inline tr_server_stats tr_test_stats(const tr_server *srv)
{
    tr_server_stats st;
    tr_server_stats_get(srv, &st);
    return st;
}

typedef struct tr_test_stat_arg {
    const tr_server *srv;
    size_t off;
    uint64_t want;
    bool eq;
} tr_test_stat_arg;

static inline bool tr_test_stat_cond(void *arg)
{
    tr_test_stat_arg *a = arg;
    tr_server_stats st;
    tr_server_stats_get(a->srv, &st);
    uint64_t v;
    memcpy(&v, (const char *)&st + a->off, sizeof(v));
    return a->eq ? v == a->want : v >= a->want;
}

/* Waits until a counter of tr_server_stats is >= want (or == want). */
#define TR_TEST_WAIT_STAT_GE(srv, field, want, ms)                                                 \
    tr_test_wait_until(                                                                            \
        tr_test_stat_cond,                                                                         \
        &(tr_test_stat_arg){(srv), offsetof(tr_server_stats, field), (want), false}, (ms))
#define TR_TEST_WAIT_STAT_EQ(srv, field, want, ms)                                                 \
    tr_test_wait_until(tr_test_stat_cond,                                                          \
                       &(tr_test_stat_arg){(srv), offsetof(tr_server_stats, field), (want), true}, \
                       (ms))

typedef struct tr_test_open_arg {
    const tr_server *srv;
    uint64_t want;
} tr_test_open_arg;

static inline bool tr_test_open_cond(void *arg)
{
    tr_test_open_arg *a = arg;
    return tr_server_open_connections(a->srv) == a->want;
}

/* Waits until the server has exactly `want` open connections. */
static inline bool tr_test_wait_open(const tr_server *srv, uint64_t want, uint32_t ms)
{
    tr_test_open_arg a = {srv, want};
    return tr_test_wait_until(tr_test_open_cond, &a, ms);
}

/* Connects a client socket, asserting success. */
static inline int tr_test_client(const char *addr)
{
    int fd = tr_test_sock_connect(addr, NULL, 5000);
    cr_assert_geq(fd, 0, "connect %s: %s", addr, tr_strerror(fd));
    return fd;
}

/* Sends s and asserts that exactly `want` comes back. */
static inline void tr_test_roundtrip(int fd, const char *s, const char *want)
{
    cr_assert_eq(tr_test_sock_send_str(fd, s), 0);
    size_t n = strlen(want);
    char buf[512];
    cr_assert_leq(n, sizeof(buf));
    ssize_t r = tr_test_sock_recv(fd, buf, n);
    cr_assert_eq(r, (ssize_t)n, "recv: got %zd of %zu (%s)", r, n,
                 r < 0 ? tr_strerror((int)r) : "eof");
    cr_assert_arr_eq(buf, want, n);
}

#endif
