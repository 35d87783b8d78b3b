/* Stress tests for tr_conn_send_buf_many over real loopback sockets:
 * - one sender's frames keep their order on every connection, whether
 *   they went one by one (through the connection's mailbox) or in a
 *   broadcast (one task per worker), from an actor and from a foreign
 *   thread at once;
 * - broadcasts from actors and foreign threads racing connection resets,
 *   aborts, a server's free and the runtime's forced end: no crash, no
 *   reference to the buffer left behind, no return but a count.
 *
 * Each racy test repeats its scenario for a bounded time (rounds.h).
 * Callbacks record into atomics; the test thread asserts after bounded
 * waits. */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leak.h"
#include "net.h"
#include "rounds.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(multicast_stress, .timeout = 120.0);

enum { MAX_CONNS = 16 };

/* The server side's connection ids, in the order they opened. */
typedef struct opened {
    uint64_t n;               /* atomics */
    uint64_t ids[MAX_CONNS];  /* atomics */
} opened;

static opened op;

static int record_open(tr_conn *c, void *user)
{
    (void)user;
    uint64_t i = __atomic_fetch_add(&op.n, 1, __ATOMIC_SEQ_CST);
    if (i < MAX_CONNS) {
        tr_test_store(&op.ids[i], tr_conn_get_id(c).bits);
    }
    return 0;
}

static int ignore_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)data;
    (void)len;
    (void)user;
    return 0;
}

static const tr_handler record_handler = {.on_open = record_open, .on_frame = ignore_frame};

static tr_server *line_server(tr_runtime *rt, const tr_codec *codec, char *addr, size_t len)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &record_handler;
    return tr_test_server(rt, &cfg, addr, len);
}

/* Connects n clients and waits until the server has opened all n. */
static void connect_clients(const char *addr, int *fds, unsigned n, tr_conn_id *ids)
{
    memset(&op, 0, sizeof(op));
    for (unsigned i = 0; i < n; i++) {
        fds[i] = tr_test_sock_connect(addr, NULL, 5000);
        cr_assert_geq(fds[i], 0, "connect %u", i);
    }
    cr_assert(tr_test_wait_ge(&op.n, n, 5000), "the server opened %llu of %u",
              (unsigned long long)tr_test_load(&op.n), n);
    for (unsigned i = 0; i < n; i++) {
        ids[i].bits = tr_test_load(&op.ids[i]);
    }
}

/* ---- order ---- */

enum { ORDER_CONNS = 9, ORDER_LINES = 3000 };

typedef struct order_job {
    tr_conn_id ids[ORDER_CONNS];
    char tag;
    uint64_t done; /* atomics */
    uint64_t bad;  /* atomics: a send that did not return what it should */
} order_job;

/* Line k of a sender: every third one by one, the rest as a broadcast. */
static void send_line(order_job *j, unsigned k)
{
    char line[32];
    int len = snprintf(line, sizeof(line), "%c%u", j->tag, k);
    if (k % 3 == 0) {
        for (unsigned i = 0; i < ORDER_CONNS; i++) {
            if (tr_conn_send(j->ids[i], line, (size_t)len) != 0) {
                tr_test_add(&j->bad, 1);
            }
        }
        return;
    }
    tr_buf *b = tr_buf_copy(line, (size_t)len);
    if (b == NULL || tr_conn_send_buf_many(j->ids, ORDER_CONNS, b) != ORDER_CONNS) {
        tr_test_add(&j->bad, 1);
    }
}

/* An actor sends its lines in bursts of 50 per turn (so its one-by-one
 * frames wait in mailboxes when a broadcast comes), then stops. */
static int order_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void order_receive(tr_actor *self, tr_msg *m)
{
    order_job *j = tr_actor_state(self);
    unsigned from = (unsigned)tr_msg_reason(m);
    for (unsigned k = from; k < from + 50 && k < ORDER_LINES; k++) {
        send_line(j, k);
    }
    if (from + 50 < ORDER_LINES) {
        tr_msg *next = tr_msg_new(TR_MSG_USER, NULL, 0);
        cr_assert_not_null(next);
        tr_msg_set_reason(next, (int64_t)(from + 50));
        tr_send(tr_self(self), next);
    } else {
        tr_test_store(&j->done, 1);
    }
}

static const tr_behavior order_behavior = {
    .name = "order-sender", .init = order_init, .receive = order_receive};

static void *order_thread(void *arg)
{
    order_job *j = arg;
    for (unsigned k = 0; k < ORDER_LINES; k++) {
        send_line(j, k);
        if ((k & 63) == 0) {
            sched_yield(); /* two cores: leave the workers room */
        }
    }
    tr_test_store(&j->done, 1);
    return NULL;
}

/* What one client has read: per tag, the next number due. */
typedef struct reader {
    char buf[256];
    size_t len;
    unsigned next[2];
    bool broken;
    char why[96];
} reader;

static void take_line(reader *r, const char *line)
{
    int t = line[0] == 'a' ? 0 : line[0] == 'f' ? 1 : -1;
    char *end;
    unsigned long k = strtoul(line + 1, &end, 10);
    if (t < 0 || *end != '\0' || k != r->next[t]) {
        if (!r->broken) {
            snprintf(r->why, sizeof(r->why), "got \"%.40s\", wanted %c%u", line, t == 1 ? 'f' : 'a',
                     r->next[t < 0 ? 0 : t]);
        }
        r->broken = true;
        return;
    }
    r->next[t]++;
}

static void feed(reader *r, const char *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            r->buf[r->len] = '\0';
            take_line(r, r->buf);
            r->len = 0;
        } else if (r->len + 1 < sizeof(r->buf)) {
            r->buf[r->len++] = data[i];
        }
    }
}

Test(multicast_stress, one_senders_frames_keep_their_order_mixed_with_broadcasts)
{
    tr_codec *codec = tr_test_codec_line(0);
    tr_runtime *rt = tr_test_runtime(3);
    char addr[80];
    tr_server *srv = line_server(rt, codec, addr, sizeof(addr));
    int fds[ORDER_CONNS];
    order_job a = {.tag = 'a'}, f = {.tag = 'f'};
    connect_clients(addr, fds, ORDER_CONNS, a.ids);
    memcpy(f.ids, a.ids, sizeof(f.ids));

    tr_actor_id sender;
    cr_assert_eq(tr_spawn(rt, &order_behavior, &a, NULL, &sender), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, order_thread, &f), 0);
    tr_msg *go = tr_msg_new(TR_MSG_USER, NULL, 0);
    cr_assert_not_null(go);
    tr_msg_set_reason(go, 0);
    cr_assert_eq(tr_send(sender, go), 0);

    reader rd[ORDER_CONNS];
    memset(rd, 0, sizeof(rd));
    uint64_t deadline = tr_test_now_ms() + 60000;
    for (;;) {
        bool all = true;
        struct pollfd p[ORDER_CONNS];
        for (unsigned i = 0; i < ORDER_CONNS; i++) {
            p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
            all &= rd[i].broken || (rd[i].next[0] == ORDER_LINES && rd[i].next[1] == ORDER_LINES);
        }
        if (all || tr_test_now_ms() > deadline) {
            break;
        }
        cr_assert_geq(poll(p, ORDER_CONNS, 1000), 0);
        for (unsigned i = 0; i < ORDER_CONNS; i++) {
            if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                char data[8192];
                ssize_t n = read(fds[i], data, sizeof(data));
                cr_assert_gt(n, 0, "client %u: the server closed it", i);
                feed(&rd[i], data, (size_t)n);
            }
        }
    }
    pthread_join(th, NULL);
    cr_assert(tr_test_wait_ge(&a.done, 1, 5000));
    cr_assert_eq(tr_test_load(&a.bad), 0, "the actor's sends failed %llu times",
                 (unsigned long long)tr_test_load(&a.bad));
    cr_assert_eq(tr_test_load(&f.bad), 0, "the thread's sends failed %llu times",
                 (unsigned long long)tr_test_load(&f.bad));
    for (unsigned i = 0; i < ORDER_CONNS; i++) {
        cr_assert(!rd[i].broken, "client %u: %s", i, rd[i].why);
        cr_assert_eq(rd[i].next[0], ORDER_LINES, "client %u: %u of the actor's lines", i,
                     rd[i].next[0]);
        cr_assert_eq(rd[i].next[1], ORDER_LINES, "client %u: %u of the thread's lines", i,
                     rd[i].next[1]);
        close(fds[i]);
    }
    tr_server_free(srv);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
    tr_test_leak_check();
}

/* ---- races ---- */

enum { RACE_CONNS = 12, RACE_THREADS = 3 };

typedef struct caster {
    const tr_conn_id *ids;
    tr_buf *buf;
    uint64_t stop;         /* atomics */
    uint64_t calls, sent;  /* atomics */
    uint64_t bad, first_bad; /* atomics */
} caster;

static void cast_once(caster *c)
{
    int rc = tr_conn_send_buf_many(c->ids, RACE_CONNS, tr_buf_retain(c->buf));
    tr_test_add(&c->calls, 1);
    if (rc >= 0 && rc <= RACE_CONNS) {
        tr_test_add(&c->sent, (uint64_t)rc);
    } else if (__atomic_fetch_add(&c->bad, 1, __ATOMIC_SEQ_CST) == 0) {
        tr_test_store(&c->first_bad, (uint64_t)(int64_t)rc);
    }
}

static void *cast_thread(void *arg)
{
    caster *c = arg;
    for (unsigned i = 0; !tr_test_load(&c->stop); i++) {
        cast_once(c);
        if ((i & 127) == 0) {
            sched_yield();
        }
    }
    return NULL;
}

/* An actor that broadcasts a few times a turn and sends itself the next
 * turn, so broadcasts also start on workers (and run at once there for
 * the connections that worker owns). */
static int cast_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

static void cast_receive(tr_actor *self, tr_msg *m)
{
    (void)m;
    caster *c = tr_actor_state(self);
    if (tr_test_load(&c->stop)) {
        return;
    }
    for (int i = 0; i < 4; i++) {
        cast_once(c);
    }
    tr_msg *next = tr_msg_new(TR_MSG_USER, NULL, 0);
    if (next != NULL) {
        tr_send(tr_self(self), next);
    }
}

static const tr_behavior cast_behavior = {
    .name = "caster", .init = cast_init, .receive = cast_receive};

/* Four ways a round ends: clients reset and aborts by id, then a graceful
 * server free; a runtime shutdown while broadcasts fly; a runtime stopped
 * without one (the queued tasks are dropped, not run); a server freed at
 * once. */
Test(multicast_stress, broadcasts_racing_resets_aborts_and_teardown_leave_nothing_behind)
{
    tr_codec *codec = tr_test_codec_line(0);
    rounds r = rounds_begin(12, 300);
    while (rounds_next(&r)) {
        tr_runtime *rt = tr_test_runtime(2);
        char addr[80];
        tr_server *srv = line_server(rt, codec, addr, sizeof(addr));
        int fds[RACE_CONNS];
        tr_conn_id ids[RACE_CONNS];
        connect_clients(addr, fds, RACE_CONNS, ids);
        tr_buf *buf = tr_buf_copy("a broadcast line", 16);
        cr_assert_not_null(buf);
        caster cs[RACE_THREADS + 1];
        memset(cs, 0, sizeof(cs));
        pthread_t th[RACE_THREADS];
        for (int i = 0; i <= RACE_THREADS; i++) {
            cs[i].ids = ids;
            cs[i].buf = buf;
        }
        for (int i = 0; i < RACE_THREADS; i++) {
            cr_assert_eq(pthread_create(&th[i], NULL, cast_thread, &cs[i]), 0);
        }
        tr_actor_id actor;
        cr_assert_eq(tr_spawn(rt, &cast_behavior, &cs[RACE_THREADS], NULL, &actor), 0);
        cr_assert_eq(tr_send(actor, tr_msg_new(TR_MSG_USER, NULL, 0)), 0);
        for (int i = 0; i <= RACE_THREADS; i++) {
            cr_assert(tr_test_wait_ge(&cs[i].calls, 50, 5000), "caster %d never ran", i);
        }
        unsigned mode = r.done % 4;
        /* A third of the clients reset, a third aborted by id, mid-flight. */
        for (unsigned i = 0; i < RACE_CONNS / 3; i++) {
            tr_test_sock_reset(fds[i]);
            fds[i] = -1;
            tr_conn_abort_id(ids[RACE_CONNS / 3 + i]);
        }
        int rc;
        switch (mode) {
        case 0:
            cr_assert(tr_test_wait_ge(&cs[0].calls, tr_test_load(&cs[0].calls) + 50, 5000));
            tr_server_free(srv);
            tr_test_store(&cs[RACE_THREADS].stop, 1);
            break;
        case 1:
            rc = tr_runtime_shutdown(rt, 2000);
            cr_assert(rc == 0 || rc == TR_ETIMEDOUT, "shutdown: %s", tr_strerror(rc));
            break;
        case 2:
            break; /* stopped below with everything in flight */
        default:
            tr_server_free(srv);
            break;
        }
        tr_test_store(&cs[RACE_THREADS].stop, 1);
        if (mode == 1 || mode == 2) {
            cr_assert_eq(tr_runtime_stop(rt), 0);
            /* Broadcasts after the stop find nobody alive. */
            uint64_t calls = tr_test_load(&cs[0].calls);
            cr_assert(tr_test_wait_ge(&cs[0].calls, calls + 20, 5000));
        }
        for (int i = 0; i < RACE_THREADS; i++) {
            tr_test_store(&cs[i].stop, 1);
            pthread_join(th[i], NULL);
        }
        uint64_t sent = 0;
        for (int i = 0; i <= RACE_THREADS; i++) {
            cr_assert_eq(tr_test_load(&cs[i].bad), 0, "round %u: a broadcast returned %s",
                         r.done, tr_strerror((int)(int64_t)tr_test_load(&cs[i].first_bad)));
            sent += tr_test_load(&cs[i].sent);
        }
        cr_assert_gt(sent, 0, "round %u: nothing was sent", r.done);
        if (mode == 1 || mode == 2) {
            tr_server_free(srv);
            tr_runtime_free(rt);
        } else {
            tr_test_runtime_finish(rt);
        }
        /* Every task ran or was dropped, every queued frame freed. */
        cr_assert_eq(tr_buf_refs(buf), 1, "round %u (mode %u): %u references left", r.done, mode,
                     tr_buf_refs(buf) - 1);
        tr_buf_release(buf);
        for (unsigned i = 0; i < RACE_CONNS; i++) {
            if (fds[i] >= 0) {
                close(fds[i]);
            }
        }
    }
    tr_codec_free(codec);
    cr_log_info("%u rounds", r.done);
    tr_test_leak_check();
}

/* ---- inputs ---- */

Test(multicast_stress, bad_arguments_are_refused_and_the_buffer_released)
{
    tr_buf *b = tr_buf_copy("x", 1);
    cr_assert_not_null(b);
    cr_assert_eq(tr_conn_send_buf_many(NULL, 1, tr_buf_retain(b)), TR_EINVAL);
    cr_assert_eq(tr_conn_send_buf_many(NULL, 0, NULL), TR_EINVAL);
    tr_conn_id gone = {0};
    cr_assert_eq(tr_conn_send_buf_many(&gone, 1, tr_buf_retain(b)), 0, "nobody alive: 0 sent");
    cr_assert_eq(tr_conn_send_buf_many(NULL, 0, tr_buf_retain(b)), 0);
    cr_assert_eq(tr_buf_refs(b), 1);
    tr_buf_release(b);
}
