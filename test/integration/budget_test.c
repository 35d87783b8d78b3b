/* Memory budgets and the frame deadline over real sockets: a partial-frame
 * flood stays near a small input budget while a normal client is served;
 * the heaviest holders are paused, then closed after the grace period
 * (TR_ENOBUFS, counted); a trickling peer is closed by the frame deadline
 * while an idle one is not; a spent output budget refuses writes and
 * recovers once peers read. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(budget, .timeout = 60.0);

enum { KIB = 1024 };

static uint64_t closes_enobufs, closes_timedout;

static void note_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    if (reason == TR_ENOBUFS) {
        tr_test_add(&closes_enobufs, 1);
    } else if (reason == TR_ETIMEDOUT) {
        tr_test_add(&closes_timedout, 1);
    }
}

static const tr_handler echo_noting = {.on_frame = tr_test_echo_frame, .on_close = note_close};

static tr_runtime *rt;
static tr_server *srv;
static tr_codec *codec;
static char addr[80];

static void start(const tr_budget *rb, uint32_t frame_ms, uint32_t idle_ms,
                  const tr_handler *h)
{
    tr_test_store(&closes_enobufs, 0);
    tr_test_store(&closes_timedout, 0);
    rt = tr_test_runtime(2);
    if (rb != NULL) {
        cr_assert_eq(tr_net_budget_set(rt, rb), 0);
    }
    codec = tr_test_codec_line(1u << 20); /* the server's max frame */
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = h;
    cfg.conn.frame_timeout_ms = frame_ms;
    cfg.conn.idle_timeout_ms = idle_ms;
    srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
}

static void finish(void)
{
    tr_server_free(srv);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

/* Sends what the socket takes of n bytes of 'x' (no newline); returns it. */
static size_t send_partial(int fd, size_t n)
{
    static char xs[64 * KIB];
    memset(xs, 'x', sizeof(xs));
    size_t sent = 0;
    while (sent < n) {
        size_t k = n - sent < sizeof(xs) ? n - sent : sizeof(xs);
        ssize_t r = send(fd, xs, k, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r <= 0) {
            break;
        }
        sent += (size_t)r;
    }
    return sent;
}

/* One line out, the same line back within timeout_ms. */
static bool round_trip(const char *line, int timeout_ms)
{
    int fd = tr_test_sock_connect(addr, NULL, 2000);
    cr_assert_geq(fd, 0);
    bool ok = tr_test_sock_send_str(fd, line) == 0;
    size_t want = strlen(line), got = 0;
    char buf[256];
    uint64_t end = tr_test_now_ms() + (uint64_t)timeout_ms;
    while (ok && got < want && tr_test_now_ms() < end) {
        if (tr_test_sock_readable(fd, 50) <= 0) {
            continue;
        }
        ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);
        ok = r > 0;
        got += r > 0 ? (size_t)r : 0;
    }
    close(fd);
    return ok && got == want && memcmp(buf, line, want) == 0;
}

typedef struct held_arg {
    tr_runtime *rt;
    uint64_t max;
} held_arg;

static bool input_held_at_most(void *arg)
{
    held_arg *a = arg;
    tr_budget_stats bs;
    tr_net_budget_stats(a->rt, &bs);
    return bs.input_bytes <= a->max;
}

Test(budget, partial_flood_stays_near_budget_and_normal_client_is_served)
{
    enum { N = 16, EACH = 200 * KIB, LIMIT = 256 * KIB };
    tr_budget b = {.input_bytes = LIMIT, .output_bytes = 0, .grace_ms = 60000};
    start(&b, 0, 0, &echo_noting);
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = tr_test_sock_connect(addr, NULL, 2000);
        cr_assert_geq(fds[i], 0);
        send_partial(fds[i], EACH);
    }
    /* Without a budget the server would hold N * EACH = 3.2 MB. */
    cr_assert(TR_TEST_WAIT_STAT_GE(srv, budget_pauses, 1, 5000));
    uint64_t peak = 0;
    for (int round = 0; round < 20; round++) {
        tr_budget_stats bs;
        tr_net_budget_stats(rt, &bs);
        peak = bs.input_bytes > peak ? bs.input_bytes : peak;
        /* A normal client, and nothing it sends is lost. */
        char line[64];
        snprintf(line, sizeof(line), "hello %d\n", round);
        cr_assert(round_trip(line, 1000), "round %d: no echo within 1 s", round);
    }
    /* Slack (troupe/budget.h): what workers reading at the same moment
     * add (at most what they held), a small read per holder, the
     * per-worker batches. Before buffers grew by the read near the budget,
     * every holder could double once past it and this failed 1 run in 4. */
    cr_assert_leq(peak, 2 * LIMIT + N * 4 * KIB + 2 * 16 * KIB, "peak %llu",
                  (unsigned long long)peak);
    tr_server_stats st = tr_test_stats(srv);
    cr_assert_eq(st.budget_closes, 0, "grace 60 s: nobody closed yet");
    cr_assert_eq(st.errors[TR_ERR_BUDGET], 0);
    /* Paused holders do not see their peers go (they do not read) until
     * they resume or their grace ends; closing the server frees them, and
     * every byte held is given back. */
    cr_assert_eq(tr_server_close(srv), 0);
    held_arg ha = {rt, 2 * 16 * KIB};
    cr_assert(tr_test_wait_until(input_held_at_most, &ha, 5000));
    for (int i = 0; i < N; i++) {
        close(fds[i]);
    }
    finish();
}

Test(budget, heaviest_paused_then_closed_after_grace_light_holder_kept)
{
    enum { HEAVY = 4, EACH = 200 * KIB, LIMIT = 256 * KIB };
    tr_budget b = {.input_bytes = LIMIT, .output_bytes = 0, .grace_ms = 300};
    start(&b, 0, 0, &echo_noting);
    int light = tr_test_sock_connect(addr, NULL, 2000);
    cr_assert_geq(light, 0);
    cr_assert_eq(tr_test_sock_send_str(light, "light-start"), 0); /* a small partial line */
    cr_assert(TR_TEST_WAIT_STAT_GE(srv, accepted, 1, 2000));
    int fds[HEAVY];
    for (int i = 0; i < HEAVY; i++) {
        fds[i] = tr_test_sock_connect(addr, NULL, 2000);
        cr_assert_geq(fds[i], 0);
        send_partial(fds[i], EACH);
    }
    cr_assert(TR_TEST_WAIT_STAT_GE(srv, budget_pauses, 1, 5000));
    cr_assert(TR_TEST_WAIT_STAT_GE(srv, budget_closes, 1, 5000));
    tr_server_stats st = tr_test_stats(srv);
    cr_assert_eq(st.errors[TR_ERR_BUDGET], st.budget_closes);
    cr_assert_geq(st.disconnects, st.budget_closes);
    cr_assert(tr_test_wait_ge(&closes_enobufs, st.budget_closes, 2000));
    tr_budget_stats bs;
    tr_net_budget_stats(rt, &bs);
    cr_assert_geq(bs.closes, st.budget_closes);
    cr_assert_geq(bs.pauses, 1);
    /* The light holder was never the heaviest: it completes its line. */
    cr_assert_eq(tr_test_sock_send_str(light, "-end\n"), 0);
    char buf[64];
    size_t got = 0;
    uint64_t end = tr_test_now_ms() + 5000;
    while (got < 16 && tr_test_now_ms() < end) {
        if (tr_test_sock_readable(light, 50) > 0) {
            ssize_t r = recv(light, buf + got, sizeof(buf) - got, 0);
            cr_assert_gt(r, 0, "the light holder was closed");
            got += (size_t)r;
        }
    }
    cr_assert_eq(got, 16);
    cr_assert_eq(memcmp(buf, "light-start-end\n", 16), 0);
    close(light);
    for (int i = 0; i < HEAVY; i++) {
        close(fds[i]);
    }
    finish();
}

Test(budget, trickling_peer_closed_by_frame_deadline_idle_peer_kept)
{
    start(NULL, 600, 3000, &echo_noting);
    int idle = tr_test_sock_connect(addr, NULL, 2000);
    int trickle = tr_test_sock_connect(addr, NULL, 2000);
    cr_assert_geq(idle, 0);
    cr_assert_geq(trickle, 0);
    /* One byte every 100 ms: the idle clock restarts each time, the frame
     * deadline does not. */
    uint64_t t0 = tr_test_now_ms();
    bool closed = false;
    while (!closed && tr_test_now_ms() - t0 < 2500) {
        send(trickle, "x", 1, MSG_NOSIGNAL);
        if (tr_test_sock_readable(trickle, 100) > 0) {
            char c;
            closed = recv(trickle, &c, 1, 0) <= 0;
        }
    }
    uint64_t took = tr_test_now_ms() - t0;
    cr_assert(closed, "the trickling peer is still connected after %llu ms",
              (unsigned long long)took);
    cr_assert_geq(took, 500, "closed after %llu ms, before its deadline", (unsigned long long)took);
    cr_assert(TR_TEST_WAIT_STAT_EQ(srv, frame_timeouts, 1, 2000));
    tr_server_stats st = tr_test_stats(srv);
    cr_assert_eq(st.errors[TR_ERR_FRAME_TIMEOUT], 1);
    cr_assert_eq(st.idle_timeouts, 0);
    /* The idle peer, well within its idle timeout, still echoes. */
    cr_assert_eq(tr_test_sock_send_str(idle, "still here\n"), 0);
    char buf[32];
    size_t got = 0;
    uint64_t end = tr_test_now_ms() + 2000;
    while (got < 11 && tr_test_now_ms() < end) {
        if (tr_test_sock_readable(idle, 50) > 0) {
            ssize_t r = recv(idle, buf + got, sizeof(buf) - got, 0);
            cr_assert_gt(r, 0, "the idle peer was closed");
            got += (size_t)r;
        }
    }
    cr_assert_eq(got, 11);
    cr_assert_eq(memcmp(buf, "still here\n", 11), 0);
    close(idle);
    close(trickle);
    finish();
}

/* On "fill": writes 16 KiB lines (16383 bytes and the codec's newline)
 * until refused; on "one": one line. */
enum { CHUNK = 16 * 1024 };
static uint64_t chunks_ok, last_rc;

static int fill_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    static char chunk[CHUNK];
    memset(chunk, 'y', sizeof(chunk));
    bool fill = len == 4 && memcmp(data, "fill", 4) == 0;
    for (int i = 0; i < (fill ? 1000 : 1); i++) {
        int rc = tr_conn_write(c, chunk, sizeof(chunk) - 1);
        if (rc < 0) {
            tr_test_store(&last_rc, (uint64_t)(int64_t)rc);
            return 0; /* refused: not an error for the policy */
        }
        tr_test_add(&chunks_ok, 1);
    }
    return 0;
}

static const tr_handler fill_handler = {.on_frame = fill_frame};

/* Reads everything the peer sends for `ms` of quiet; returns the count. */
static size_t drain(int fd, int ms)
{
    static char buf[64 * KIB];
    size_t total = 0;
    while (tr_test_sock_readable(fd, ms) > 0) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0) {
            break;
        }
        total += (size_t)r;
    }
    return total;
}

Test(budget, spent_output_budget_refuses_writes_and_recovers)
{
    tr_budget b = {.input_bytes = 0, .output_bytes = 256 * KIB, .grace_ms = 5000};
    tr_test_store(&chunks_ok, 0);
    tr_test_store(&last_rc, 0);
    start(&b, 0, 0, &fill_handler);
    int fd = tr_test_sock_new(addr, 4096); /* a small window: the queue holds the rest */
    cr_assert_geq(fd, 0);
    cr_assert_eq(tr_test_sock_connect_fd(fd, addr, 2000), 0);
    cr_assert_eq(tr_test_sock_send_str(fd, "fill\n"), 0);
    cr_assert(TR_TEST_WAIT_STAT_GE(srv, budget_refused, 1, 5000));
    cr_assert_eq((int)(int64_t)tr_test_load(&last_rc), TR_EBUFFULL);
    uint64_t ok1 = tr_test_load(&chunks_ok);
    /* 256 KiB of 16 KiB chunks, give or take a batch: the queue limit
     * (4 MiB) is far off, so the budget refused. */
    cr_assert_geq(ok1, 14);
    cr_assert_leq(ok1, 20);
    tr_server_stats st = tr_test_stats(srv);
    cr_assert_geq(st.sends_refused, 1);
    /* The peer reads: every byte queued arrives, and writes work again. */
    size_t got = drain(fd, 500);
    cr_assert_eq(got, ok1 * CHUNK, "got %zu, queued %llu", got, (unsigned long long)(ok1 * CHUNK));
    cr_assert_eq(tr_test_sock_send_str(fd, "one\n"), 0);
    cr_assert(tr_test_wait_ge(&chunks_ok, ok1 + 1, 2000));
    got = drain(fd, 300);
    cr_assert_eq(got, CHUNK);
    close(fd);
    finish();
}
