/* Stress tests for connections over real loopback sockets, through the
 * public API only: a close requested from another connection's callback
 * on a quiet loop, sends from foreign threads racing a client's and a
 * server's teardown, and connection events through a handler actor whose
 * bounded mailbox drops the oldest messages.
 *
 * Each test repeats its scenario for a bounded time (a minimum number of
 * rounds, then until the budget is spent). Callbacks record into atomics;
 * the test thread asserts after bounded waits. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
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

TestSuite(net_stress, .timeout = 120.0);

static int sink_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)data;
    (void)len;
    (void)user;
    return 0;
}

static bool id_closed(void *arg)
{
    return tr_conn_id_is_closed(*(tr_conn_id *)arg);
}

/* ---- a close asked for from another connection's callback ---- */

typedef struct quiet {
    uint64_t opened;  /* atomics */
    uint64_t victim;  /* atomics: the first connection's id (B) */
    uint64_t trigger; /* atomics: the second connection's id (A) */
    uint64_t frames;  /* atomics */
    uint64_t abort_rc;
} quiet;

static quiet q;

static int quiet_open(tr_conn *c, void *user)
{
    (void)user;
    uint64_t id = tr_conn_get_id(c).bits;
    tr_test_store(tr_test_load(&q.opened) == 0 ? &q.victim : &q.trigger, id);
    tr_test_add(&q.opened, 1);
    return 0;
}

/* A frame on A aborts B, by id. */
static int quiet_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    if (tr_conn_get_id(c).bits == tr_test_load(&q.trigger)) {
        tr_conn_id b = {tr_test_load(&q.victim)};
        tr_test_store(&q.abort_rc, (uint64_t)(int64_t)tr_conn_abort_id(b));
    }
    tr_test_add(&q.frames, 1);
    return 0;
}

static const tr_handler quiet_handler = {.on_open = quiet_open, .on_frame = quiet_frame};

Test(net_stress, abort_by_id_from_another_connection_closes_it_on_a_quiet_loop)
{
    rounds r = rounds_begin(3, 20);
    while (rounds_next(&r)) {
        memset(&q, 0, sizeof(q));
        /* One worker: both connections and the abort share one loop, and
         * with no idle timeout nothing else will wake it. */
        tr_runtime *rt = tr_test_runtime(1);
        tr_codec *codec = tr_test_codec_line(0);
        tr_server_config cfg;
        tr_server_config_defaults(&cfg);
        cfg.listen = "127.0.0.1:0";
        cfg.conn.codec = codec;
        cfg.conn.handler = &quiet_handler;
        cfg.conn.idle_timeout_ms = 0;
        char addr[80];
        tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
        int fb = tr_test_client(addr);
        cr_assert(tr_test_wait_ge(&q.opened, 1, 5000));
        int fa = tr_test_client(addr);
        cr_assert(tr_test_wait_ge(&q.opened, 2, 5000));
        cr_assert(tr_test_wait_open(srv, 2, 5000));
        uint64_t live = tr_runtime_actor_count(rt);

        cr_assert_eq(tr_test_sock_send_str(fa, "go\n"), 0);
        cr_assert(tr_test_wait_ge(&q.frames, 1, 5000));
        cr_assert_eq((int)(int64_t)tr_test_load(&q.abort_rc), 0, "tr_conn_abort_id: %s",
                     tr_strerror((int)(int64_t)tr_test_load(&q.abort_rc)));
        int seen = tr_test_sock_peek(fb, 2000);
        cr_assert(seen == 0 || seen == -ECONNRESET,
                  "round %u: B saw %d (%s) within 2 s, want EOF or a reset", r.done, seen,
                  seen == -EAGAIN ? "nothing" : "data or error");
        cr_assert(tr_test_wait_open(srv, 1, 2000), "round %u: %llu connections open, want 1",
                  r.done, (unsigned long long)tr_server_open_connections(srv));
        cr_assert(tr_test_wait_actor_count(rt, live - 1, 2000),
                  "round %u: B's connection actor still live after 2 s (%llu actors, want %llu)",
                  r.done, (unsigned long long)tr_runtime_actor_count(rt),
                  (unsigned long long)(live - 1));
        cr_assert_eq(tr_test_sock_peek(fa, 0), -EAGAIN, "A stays open");

        close(fa);
        close(fb);
        tr_server_free(srv);
        tr_test_runtime_finish(rt);
        tr_codec_free(codec);
    }
    cr_log_info("%u rounds", r.done);
    tr_test_leak_check();
}

/* ---- sends from foreign threads racing a teardown ---- */

enum { SEND_THREADS = 4, MAX_IDS = 8, QUEUE_BYTES = 64 * 1024 };

typedef struct racer {
    const uint64_t *ids; /* atomics: connection ids to send to */
    unsigned nids;
    tr_buf *buf;                      /* shared payload for tr_conn_send_buf */
    bool yield;                       /* sched_yield now and then (or hog the CPU: see below) */
    uint64_t stop;                    /* atomics */
    uint64_t sends, ok, closed, full; /* atomics */
    uint64_t bad, first_bad;          /* atomics */
} racer;

static void *race_sends(void *arg)
{
    racer *rc = arg;
    for (unsigned i = 0; !tr_test_load(&rc->stop); i++) {
        tr_conn_id id = {tr_test_load(&rc->ids[i % rc->nids])};
        int res =
            (i & 1) ? tr_conn_send(id, "ping\n", 5) : tr_conn_send_buf(id, tr_buf_retain(rc->buf));
        tr_test_add(&rc->sends, 1);
        if (res == 0) {
            tr_test_add(&rc->ok, 1);
        } else if (res == TR_ECLOSED) {
            tr_test_add(&rc->closed, 1);
        } else if (res == TR_EBUFFULL) {
            tr_test_add(&rc->full, 1);
        } else if (__atomic_fetch_add(&rc->bad, 1, __ATOMIC_SEQ_CST) == 0) {
            tr_test_store(&rc->first_bad, (uint64_t)(int64_t)res);
        }
        if (rc->yield && (i & 255) == 0) {
            sched_yield(); /* two cores: leave the workers room */
        }
    }
    return NULL;
}

typedef struct race {
    racer r[SEND_THREADS];
    pthread_t th[SEND_THREADS];
    tr_buf *buf;
} race;

static void race_start(race *ra, const uint64_t *ids, unsigned nids, bool yield)
{
    ra->buf = tr_buf_copy("pong\n", 5);
    cr_assert_not_null(ra->buf);
    for (int i = 0; i < SEND_THREADS; i++) {
        memset(&ra->r[i], 0, sizeof(ra->r[i]));
        ra->r[i].ids = ids;
        ra->r[i].nids = nids;
        ra->r[i].buf = ra->buf;
        ra->r[i].yield = yield;
        cr_assert_eq(pthread_create(&ra->th[i], NULL, race_sends, &ra->r[i]), 0);
    }
    for (int i = 0; i < SEND_THREADS; i++) {
        cr_assert(tr_test_wait_ge(&ra->r[i].sends, 100, 5000), "sender %d never ran", i);
    }
}

/* Lets every thread see `closed` refusals more after the teardown (the
 * race goes on past the free), then stops and checks them. */
static void race_finish(race *ra, unsigned round, uint64_t closed)
{
    for (int i = 0; i < SEND_THREADS; i++) {
        uint64_t want = tr_test_load(&ra->r[i].closed) + closed;
        (void)tr_test_wait_ge(&ra->r[i].closed, want, 5000); /* a bound, not a check */
    }
    for (int i = 0; i < SEND_THREADS; i++) {
        tr_test_store(&ra->r[i].stop, 1);
    }
    for (int i = 0; i < SEND_THREADS; i++) {
        pthread_join(ra->th[i], NULL);
    }
    /* Summed over the threads: one that started late may have met only a
     * full queue before the teardown, but the queue starts empty. */
    uint64_t ok = 0, refused = 0;
    for (int i = 0; i < SEND_THREADS; i++) {
        racer *rc = &ra->r[i];
        cr_assert_eq(tr_test_load(&rc->bad), 0, "round %u: a send returned %s", round,
                     tr_strerror((int)(int64_t)tr_test_load(&rc->first_bad)));
        ok += tr_test_load(&rc->ok);
        refused += tr_test_load(&rc->closed);
    }
    cr_assert_gt(ok, 0, "round %u: no send was accepted", round);
    cr_assert_gt(refused, 0, "round %u: no send was refused", round);
}

/* Once the runtime is gone, every reference a send took was released. */
static void race_release(race *ra)
{
    cr_assert_eq(tr_buf_refs(ra->buf), 1, "%u references left", tr_buf_refs(ra->buf) - 1);
    tr_buf_release(ra->buf);
}

static uint64_t client_opens;

static int count_open(tr_conn *c, void *user)
{
    (void)c;
    (void)user;
    tr_test_add(&client_opens, 1);
    return 0;
}

static const tr_handler sink_handler = {.on_open = count_open, .on_frame = sink_frame};

static tr_server *sink_server(tr_runtime *rt, const tr_codec *codec, char *addr, size_t len)
{
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &sink_handler;
    return tr_test_server(rt, &cfg, addr, len);
}

/* Three ways a client connection ends: abort, close, runtime shutdown. */
Test(net_stress, sends_racing_a_client_teardown_return_closed_without_crashing)
{
    tr_codec *codec = tr_test_codec_line(0);
    rounds r = rounds_begin(9, 300);
    while (rounds_next(&r)) {
        tr_test_store(&client_opens, 0);
        tr_runtime *rt = tr_test_runtime(2);
        char addr[80];
        tr_server *srv = sink_server(rt, codec, addr, sizeof(addr));
        uint64_t base = tr_runtime_actor_count(rt);
        tr_client_config cfg;
        tr_client_config_defaults(&cfg);
        cfg.connect = addr;
        cfg.conn.codec = codec;
        cfg.conn.handler = &sink_handler;
        /* A small queue keeps the mailbox a teardown must free small. */
        cfg.conn.send_queue_bytes = QUEUE_BYTES;
        cfg.conn.high_watermark = QUEUE_BYTES / 2;
        cfg.conn.low_watermark = QUEUE_BYTES / 4;
        tr_conn_id id;
        cr_assert_eq(tr_client_connect(rt, &cfg, &id), 0);
        /* Both ends opened: the client's and the server's. */
        cr_assert(tr_test_wait_ge(&client_opens, 2, 5000), "round %u: never connected", r.done);
        uint64_t ids[1] = {id.bits};
        race ra;
        race_start(&ra, ids, 1, true);
        unsigned mode = r.done % 3;
        if (mode == 0) {
            cr_assert_eq(tr_conn_abort_id(id), 0);
        } else if (mode == 1) {
            cr_assert_eq(tr_conn_close_id(id), 0);
        } else {
            int rc = tr_runtime_shutdown(rt, 5000);
            cr_assert(rc == 0 || rc == TR_ETIMEDOUT, "shutdown: %s", tr_strerror(rc));
        }
        cr_assert(tr_test_wait_until(id_closed, &id, 5000), "round %u: client never closed",
                  r.done);
        if (mode != 2) {
            cr_assert(tr_test_wait_actor_count(rt, base, 5000),
                      "round %u (mode %u): %llu actors, want %llu", r.done, mode,
                      (unsigned long long)tr_runtime_actor_count(rt), (unsigned long long)base);
        }
        race_finish(&ra, r.done, 200);
        tr_server_free(srv);
        if (mode != 2) {
            tr_test_runtime_finish(rt);
        } else {
            cr_assert_eq(tr_runtime_stop(rt), 0);
            cr_assert_eq(tr_runtime_actor_count(rt), 0);
            tr_runtime_free(rt);
        }
        race_release(&ra);
    }
    tr_codec_free(codec);
    cr_log_info("%u rounds", r.done);
    tr_test_leak_check();
}

typedef struct server_ids {
    uint64_t n;            /* atomics */
    uint64_t ids[MAX_IDS]; /* atomics */
} server_ids;

static server_ids sids;

static int record_open(tr_conn *c, void *user)
{
    (void)user;
    uint64_t i = __atomic_fetch_add(&sids.n, 1, __ATOMIC_SEQ_CST);
    if (i < MAX_IDS) {
        tr_test_store(&sids.ids[i], tr_conn_get_id(c).bits);
    }
    return 0;
}

static const tr_handler record_handler = {.on_open = record_open, .on_frame = sink_frame};

Test(net_stress, sends_racing_server_close_and_free_return_closed_without_crashing)
{
    tr_codec *codec = tr_test_codec_line(0);
    rounds r = rounds_begin(10, 300);
    while (rounds_next(&r)) {
        memset(&sids, 0, sizeof(sids));
        tr_runtime *rt = tr_test_runtime(2);
        tr_server_config cfg;
        tr_server_config_defaults(&cfg);
        cfg.listen = "127.0.0.1:0";
        cfg.conn.codec = codec;
        cfg.conn.handler = &record_handler;
        cfg.conn.send_queue_bytes = QUEUE_BYTES;
        cfg.conn.high_watermark = QUEUE_BYTES / 2;
        cfg.conn.low_watermark = QUEUE_BYTES / 4;
        char addr[80];
        tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
        int fds[MAX_IDS];
        for (int i = 0; i < MAX_IDS; i++) {
            fds[i] = tr_test_client(addr);
        }
        cr_assert(tr_test_wait_ge(&sids.n, MAX_IDS, 5000));
        cr_assert(tr_test_wait_open(srv, MAX_IDS, 5000));
        race ra;
        /* More sender threads than cores, never yielding: a sender is
         * often preempted in the middle of a send, holding a connection
         * across the close and the free. */
        race_start(&ra, sids.ids, MAX_IDS, false);
        cr_assert_eq(tr_server_close(srv), 0);
        cr_assert_eq(tr_server_open_connections(srv), 0, "all closed when close returns");
        tr_server_free(srv);
        race_finish(&ra, r.done, 200);
        for (int i = 0; i < MAX_IDS; i++) {
            close(fds[i]);
        }
        tr_test_runtime_finish(rt);
        race_release(&ra);
    }
    tr_codec_free(codec);
    cr_log_info("%u rounds", r.done);
    tr_test_leak_check();
}

/* ---- connection events through a DROP_OLDEST handler actor ---- */

enum { CONN_TABLE = 8192, DROP_CLIENTS = 32, DROP_LINES = 8 };

typedef struct conn_rec {
    uint64_t id;
    uint32_t opens, closes;
    uint32_t early; /* events before OPEN */
    uint32_t late;  /* events after CLOSED */
} conn_rec;

typedef struct dropper {
    conn_rec table[CONN_TABLE];     /* the handler's own; read once the runtime is stopped */
    uint64_t nrec;                  /* likewise */
    uint64_t full;                  /* likewise: the table overflowed */
    uint64_t opens, closes, frames; /* atomics */
} dropper;

static conn_rec *rec_of(dropper *d, uint64_t id)
{
    uint64_t h = id * 0x9e3779b97f4a7c15ull;
    for (unsigned n = 0; n < CONN_TABLE; n++) {
        conn_rec *rec = &d->table[(h + n) % CONN_TABLE];
        if (rec->id == id) {
            return rec;
        }
        if (rec->id == 0) {
            rec->id = id;
            d->nrec++;
            return rec;
        }
    }
    d->full++;
    return NULL;
}

static int dropper_init(tr_actor *self, void *arg)
{
    tr_actor_set_state(self, arg);
    return 0;
}

/* Slow on purpose: 100 us per message lets the mailbox overflow. */
static void dropper_receive(tr_actor *self, tr_msg *m)
{
    dropper *d = tr_actor_state(self);
    uint64_t until = tr_test_now_ns() + 100000;
    while (tr_test_now_ns() < until) {
    }
    if (tr_msg_type(m) != TR_MSG_CONN_OPEN && tr_msg_type(m) != TR_MSG_CONN_FRAME &&
        tr_msg_type(m) != TR_MSG_CONN_CLOSED) {
        return;
    }
    conn_rec *rec = rec_of(d, tr_conn_id_from_msg(m).bits);
    if (rec == NULL) {
        return;
    }
    if (rec->closes > 0) {
        rec->late++;
    }
    if (tr_msg_type(m) == TR_MSG_CONN_OPEN) {
        rec->opens++;
        tr_test_add(&d->opens, 1);
    } else if (tr_msg_type(m) == TR_MSG_CONN_CLOSED) {
        if (rec->opens == 0) {
            rec->early++;
        }
        rec->closes++;
        tr_test_add(&d->closes, 1);
    } else {
        if (rec->opens == 0) {
            rec->early++;
        }
        tr_test_add(&d->frames, 1);
    }
}

static const tr_behavior dropper_behavior = {
    .name = "dropper", .init = dropper_init, .receive = dropper_receive};

static dropper drop;

Test(net_stress, drop_oldest_handler_gets_one_open_and_one_closed_per_connection)
{
    dropper *d = &drop;
    memset(d, 0, sizeof(*d));
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_spawn_opts opts;
    tr_spawn_opts_defaults(&opts);
    opts.mailbox_capacity = 4;
    opts.overflow = TR_OVERFLOW_DROP_OLDEST;
    tr_actor_id hid;
    cr_assert_eq(tr_spawn(rt, &dropper_behavior, d, &opts, &hid), 0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.handler_actor = hid;
    char addr[80];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));

    char lines[DROP_LINES * 2 + 1];
    for (int i = 0; i < DROP_LINES; i++) {
        lines[2 * i] = (char)('a' + i);
        lines[2 * i + 1] = '\n';
    }
    lines[DROP_LINES * 2] = '\0';
    uint64_t conns = 0;
    bool all_seen = true;
    rounds r = rounds_begin(5, 200);
    while (all_seen && rounds_next(&r)) {
        int fds[DROP_CLIENTS];
        for (int i = 0; i < DROP_CLIENTS; i++) {
            fds[i] = tr_test_client(addr);
            cr_assert_eq(tr_test_sock_send_str(fds[i], lines), 0);
        }
        for (int i = 0; i < DROP_CLIENTS; i++) {
            if (i % 4 == 0) {
                tr_test_sock_reset(fds[i]);
            } else {
                close(fds[i]);
            }
        }
        conns += DROP_CLIENTS;
        cr_assert(TR_TEST_WAIT_STAT_EQ(srv, closed, conns, 10000),
                  "round %u: the server closed %llu of %llu", r.done,
                  (unsigned long long)tr_test_stats(srv).closed, (unsigned long long)conns);
        /* The server has posted every CLOSED; the handler should see them
         * all once it works through its mailbox. */
        all_seen = tr_test_wait_ge(&d->closes, conns, 3000);
    }
    tr_server_free(srv);
    tr_test_runtime_finish(rt); /* joins the workers: the table is ours now */
    tr_codec_free(codec);

    uint64_t opens = tr_test_load(&d->opens), closes = tr_test_load(&d->closes);
    uint64_t frames = tr_test_load(&d->frames);
    cr_log_info("%u rounds, %llu connections, %llu of %llu frames reached the handler", r.done,
                (unsigned long long)conns, (unsigned long long)frames,
                (unsigned long long)conns * DROP_LINES);
    cr_assert_eq(d->full, 0);
    cr_assert_eq(opens, conns, "%llu OPEN for %llu connections (%llu CLOSED)",
                 (unsigned long long)opens, (unsigned long long)conns, (unsigned long long)closes);
    cr_assert_eq(closes, conns, "%llu CLOSED for %llu connections (%llu OPEN)",
                 (unsigned long long)closes, (unsigned long long)conns, (unsigned long long)opens);
    cr_assert_eq(d->nrec, conns, "events named %llu connections, want %llu",
                 (unsigned long long)d->nrec, (unsigned long long)conns);
    for (unsigned i = 0; i < CONN_TABLE; i++) {
        conn_rec *rec = &d->table[i];
        if (rec->id == 0) {
            continue;
        }
        cr_assert(rec->opens == 1 && rec->closes == 1, "conn %llx: %u OPEN, %u CLOSED",
                  (unsigned long long)rec->id, rec->opens, rec->closes);
        cr_assert_eq(rec->early, 0, "conn %llx: an event before OPEN", (unsigned long long)rec->id);
        cr_assert_eq(rec->late, 0, "conn %llx: an event after CLOSED", (unsigned long long)rec->id);
    }
    tr_test_leak_check();
}

/* Regression: a runtime forced down with open, idle connections. Each
 * connection actor's terminate closes the socket and sends itself a KILL;
 * the actor was idle, so that send queued it on its worker's ready queue
 * just before it was freed, and the worker then read the freed actor. */
static uint64_t forced_opens; /* atomics */

static int count_forced_open(tr_conn *c, void *user)
{
    (void)c;
    (void)user;
    tr_test_add(&forced_opens, 1);
    return 0;
}

static const tr_handler forced_handler = {.on_open = count_forced_open, .on_frame = sink_frame};

Test(net_stress, a_runtime_forced_down_with_open_idle_connections_frees_them_cleanly)
{
    tr_codec *codec = tr_test_codec_line(0);
    rounds r = rounds_begin(5, 50);
    while (rounds_next(&r)) {
        tr_test_store(&forced_opens, 0);
        tr_runtime *rt = tr_test_runtime(2);
        tr_server_config cfg;
        tr_server_config_defaults(&cfg);
        cfg.listen = "127.0.0.1:0";
        cfg.conn.codec = codec;
        cfg.conn.handler = &forced_handler;
        cfg.conn.linger_ms = 30000; /* the drain waits for peers that never close */
        char addr[80];
        tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
        int fds[8];
        for (int i = 0; i < 8; i++) {
            fds[i] = tr_test_client(addr);
        }
        cr_assert(tr_test_wait_ge(&forced_opens, 8, 5000));
        /* The graceful part cannot finish (the peers hold their sockets):
         * at the deadline every connection actor is forced to exit. */
        cr_assert_eq(tr_runtime_shutdown(rt, 50), TR_ETIMEDOUT);
        cr_assert_eq(tr_runtime_stop(rt), 0);
        cr_assert_eq(tr_runtime_actor_count(rt), 0);
        tr_server_free(srv);
        tr_runtime_free(rt);
        for (int i = 0; i < 8; i++) {
            close(fds[i]);
        }
    }
    tr_codec_free(codec);
    cr_log_info("%u rounds", r.done);
}
