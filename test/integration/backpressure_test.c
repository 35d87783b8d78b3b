/* Backpressure over real sockets: a peer that never reads fills the send
 * queue (TR_EBUFFULL, watermark callbacks, bounded memory); a naive echo
 * handler cannot grow the server without bound; tr_conn_send_wait; and a
 * handler actor with a bounded mailbox that pauses reading. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "leak.h"
#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(backpressure, .timeout = 60.0);

enum { QUEUE = 64 * 1024, HIGH = 32 * 1024, LOW = 8 * 1024, CHUNK = 1000 };

enum { E_UNWRITABLE = 1, E_WRITABLE, E_CLOSE, E_DEADLK };
static tr_test_log events;
static uint64_t conn_id;
static uint64_t max_queued; /* the most queued bytes any callback saw */

static void note_queued(tr_conn *c)
{
    tr_conn_stats cs;
    tr_conn_stats_get(c, &cs);
    uint64_t m = tr_test_load(&max_queued);
    while (cs.queued_bytes > m &&
           !__atomic_compare_exchange_n(&max_queued, &m, cs.queued_bytes, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
    }
}

static int bp_open(tr_conn *c, void *user)
{
    (void)user;
    tr_test_store(&conn_id, tr_conn_get_id(c).bits);
    return 0;
}

static int echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    int rc = tr_conn_write(c, data, len);
    note_queued(c);
    return rc;
}

static void bp_writable(tr_conn *c, bool writable, void *user)
{
    (void)user;
    note_queued(c);
    tr_conn_stats cs;
    tr_conn_stats_get(c, &cs);
    tr_test_log_add(&events, writable ? E_WRITABLE : E_UNWRITABLE, 0, (int64_t)cs.queued_bytes);
}

static void bp_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    tr_test_log_add(&events, E_CLOSE, 0, reason);
}

static const tr_handler bp_handler = {
    .on_open = bp_open, .on_frame = echo_frame, .on_writable = bp_writable, .on_close = bp_close};

/* A small kernel send buffer on the server side, so the send queue, not
 * the kernel, holds what the peer does not read. (Not SO_RCVBUF: shrinking
 * it on an accepted socket, after the window was advertised, makes the
 * kernel drop segments and the peer stall in retransmits.) */
static int small_buffers(int fd, void *user)
{
    (void)user;
    return tr_test_sock_sndbuf(fd, 4096);
}

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[80];
} fixture;

static void start(fixture *f, tr_codec *codec, tr_server_config *cfg)
{
    tr_test_log_init(&events);
    f->rt = tr_test_runtime(2);
    f->codec = codec;
    cfg->listen = "127.0.0.1:0";
    cfg->conn.codec = codec;
    f->srv = tr_test_server(f->rt, cfg, f->addr, sizeof(f->addr));
}

static void finish(fixture *f)
{
    cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
    tr_server_free(f->srv);
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
    tr_test_log_fini(&events);
}

static void small_queue_config(tr_server_config *cfg)
{
    tr_server_config_defaults(cfg);
    cfg->conn.handler = &bp_handler;
    cfg->conn.send_queue_bytes = QUEUE;
    cfg->conn.high_watermark = HIGH;
    cfg->conn.low_watermark = LOW;
    cfg->on_socket = small_buffers;
}

/* Connects a peer with a tiny receive window that does not read. */
static int lazy_peer(fixture *f)
{
    int fd = tr_test_sock_new(f->addr, 4096);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tr_test_sock_connect_fd(fd, f->addr, 5000), 0);
    cr_assert(tr_test_wait_ge(&conn_id, 1, 5000));
    return fd;
}

/* Sends CHUNK-byte frames from this thread until the queue refuses one.
 * Returns how many were accepted; every accepted byte is (i % 251). */
static size_t fill_queue(tr_conn_id id, uint64_t *offset)
{
    unsigned char chunk[CHUNK];
    size_t ok = 0;
    for (;;) {
        for (size_t i = 0; i < CHUNK; i++) {
            chunk[i] = (unsigned char)((*offset + i) % 251);
        }
        int rc = tr_conn_send(id, chunk, CHUNK);
        if (rc == TR_EBUFFULL) {
            return ok;
        }
        cr_assert_eq(rc, 0, "send: %s", tr_strerror(rc));
        *offset += CHUNK;
        ok++;
        cr_assert_lt(ok, 100000, "the queue never filled");
    }
}

static void read_pattern(int fd, size_t n)
{
    unsigned char *buf = malloc(n);
    cr_assert_eq(tr_test_sock_recv(fd, buf, n), (ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(buf[i], (unsigned char)(i % 251), "byte %zu", i);
    }
    free(buf);
}

static bool unwritable_seen(void *arg)
{
    (void)arg;
    return tr_test_log_select(&events, E_UNWRITABLE, NULL, NULL, 8) >= 1;
}

static bool writable_seen(void *arg)
{
    (void)arg;
    return tr_test_log_select(&events, E_WRITABLE, NULL, NULL, 8) >= 1;
}

Test(backpressure, peer_that_never_reads_gets_ebuffull_and_watermark_callbacks)
{
    fixture f;
    tr_server_config cfg;
    small_queue_config(&cfg);
    start(&f, tr_test_codec_raw(), &cfg);
    int fd = lazy_peer(&f);
    tr_conn_id id = {tr_test_load(&conn_id)};
    uint64_t offset = 0;
    size_t ok = fill_queue(id, &offset);
    cr_assert(tr_test_wait_until(unwritable_seen, NULL, 5000));
    /* More sends keep being refused while the peer does not read; each
     * refusal is counted. */
    unsigned refused = 1;
    for (int i = 0; i < 50; i++) {
        unsigned char chunk[CHUNK];
        for (size_t k = 0; k < CHUNK; k++) {
            chunk[k] = (unsigned char)((offset + k) % 251);
        }
        int rc = tr_conn_send(id, chunk, CHUNK);
        if (rc == 0) {
            offset += CHUNK;
            ok++;
        } else {
            cr_assert_eq(rc, TR_EBUFFULL);
            refused++;
        }
    }
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.sends_refused, refused);
    /* Memory stays bounded: what was accepted and not yet written is in
     * the queue, never over its limit. */
    cr_assert_leq(offset - st.bytes_out, QUEUE);
    cr_assert_geq(offset - st.bytes_out, HIGH, "the queue, not the kernel, holds the rest");
    cr_assert_leq(tr_test_load(&max_queued), QUEUE);
    /* The peer starts reading: everything arrives, in order, and the queue
     * goes back under the low watermark. */
    read_pattern(fd, offset);
    cr_assert(tr_test_wait_until(writable_seen, NULL, 5000));
    int64_t q[8];
    int32_t who[8];
    size_t nu = tr_test_log_select(&events, E_UNWRITABLE, who, q, 8);
    cr_assert_eq(nu, 1);
    cr_assert_gt(q[0], HIGH);
    cr_assert_leq(q[0], QUEUE);
    size_t nw = tr_test_log_select(&events, E_WRITABLE, who, q, 8);
    cr_assert_eq(nw, 1);
    cr_assert_leq(q[0], LOW);
    cr_assert_eq(ok * CHUNK, offset);
    /* Sends work again. */
    cr_assert_eq(tr_conn_send(id, "x", 1), 0);
    char x;
    cr_assert_eq(tr_test_sock_recv(fd, &x, 1), 1);
    cr_assert_eq(x, 'x');
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    cr_assert_eq(tr_test_stats(f.srv).bytes_out, offset + 1);
    finish(&f);
    tr_test_leak_check();
}

Test(backpressure, naive_echo_to_a_peer_that_never_reads_stays_bounded)
{
    /* The peer writes as fast as it can and reads nothing. The echo
     * handler's queue passes the high watermark, the server stops reading,
     * the kernel window closes, and the peer's writes block. Nothing is
     * refused or lost: once the peer reads, every byte comes back. */
    fixture f;
    tr_server_config cfg;
    small_queue_config(&cfg);
    cfg.conn.send_queue_bytes = 1u << 20;
    cfg.conn.high_watermark = 128 * 1024;
    cfg.conn.low_watermark = 32 * 1024;
    start(&f, tr_test_codec_raw(), &cfg);
    int fd = tr_test_sock_new(f.addr, 16384);
    cr_assert_geq(fd, 0);
    tr_test_sock_sndbuf(fd, 16384);
    cr_assert_eq(tr_test_sock_connect_fd(fd, f.addr, 5000), 0);
    cr_assert_eq(tr_test_sock_nonblock(fd, true), 0);
    size_t sent = 0;
    unsigned char chunk[4096];
    for (;;) {
        for (size_t i = 0; i < sizeof(chunk); i++) {
            chunk[i] = (unsigned char)((sent + i) % 251);
        }
        ssize_t w = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            cr_assert_lt(sent, 64u << 20, "the server never pushed back");
            continue;
        }
        cr_assert(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %s", strerror(errno));
        /* Wait for room; once the server has said it is unwritable,
         * 300 ms without room means it stopped reading. */
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 300) == 0 && unwritable_seen(NULL)) {
            break;
        }
    }
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_lt(st.bytes_in, sent, "the server stopped reading");
    cr_assert_leq(st.bytes_in - st.bytes_out, 128 * 1024 + 65536, "queued %llu",
                  (unsigned long long)(st.bytes_in - st.bytes_out));
    cr_assert_leq(tr_test_load(&max_queued), 128 * 1024 + 65536);
    cr_assert_eq(st.sends_refused, 0);
    cr_assert_eq(st.disconnects, 0);
    cr_assert_eq(tr_test_sock_nonblock(fd, false), 0);
    read_pattern(fd, sent);
    cr_assert(tr_test_wait_until(writable_seen, NULL, 5000));
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    st = tr_test_stats(f.srv);
    cr_assert_eq(st.bytes_in, sent);
    cr_assert_eq(st.bytes_out, sent);
    finish(&f);
    tr_test_leak_check();
}

/* ---- tr_conn_send_wait ---- */

typedef struct waiter {
    tr_conn_id id;
    unsigned char data[CHUNK];
    int rc;
} waiter;

static void *wait_send(void *arg)
{
    waiter *w = arg;
    w->rc = tr_conn_send_wait(w->id, w->data, CHUNK, 10000);
    return NULL;
}

Test(backpressure, send_wait_times_out_on_a_full_queue_and_succeeds_once_drained)
{
    fixture f;
    tr_server_config cfg;
    small_queue_config(&cfg);
    start(&f, tr_test_codec_raw(), &cfg);
    int fd = lazy_peer(&f);
    tr_conn_id id = {tr_test_load(&conn_id)};
    uint64_t offset = 0;
    fill_queue(id, &offset);
    /* The kernel may still take a little of what is queued: waits may
     * succeed until it is full, which takes a bounded number of them. */
    unsigned char more[CHUNK];
    int rc;
    uint64_t took;
    int tries = 0;
    do {
        for (size_t i = 0; i < CHUNK; i++) {
            more[i] = (unsigned char)((offset + i) % 251);
        }
        uint64_t t0 = tr_test_now_ms();
        rc = tr_conn_send_wait(id, more, CHUNK, 200);
        took = tr_test_now_ms() - t0;
        if (rc == 0) {
            offset += CHUNK;
        }
        cr_assert_lt(++tries, 100, "the queue kept draining to a peer that does not read");
    } while (rc == 0);
    cr_assert_eq(rc, TR_ETIMEDOUT, "send_wait: %s", tr_strerror(rc));
    cr_assert_geq(took, 200, "took %llu tries %d", (unsigned long long)took, tries);
    cr_assert_lt(took, 2000);
    /* Another thread waits for room; the peer then reads, and its frame
     * follows everything queued before it. */
    waiter w = {.id = id, .rc = 1};
    for (size_t i = 0; i < CHUNK; i++) {
        w.data[i] = (unsigned char)((offset + i) % 251);
    }
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, wait_send, &w), 0);
    read_pattern(fd, offset + CHUNK);
    pthread_join(th, NULL);
    cr_assert_eq(w.rc, 0);
    close(fd);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    finish(&f);
    tr_test_leak_check();
}

static int deadlk_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    int rc = tr_conn_send_wait(tr_conn_get_id(c), data, len, 100);
    tr_test_log_add(&events, E_DEADLK, 0, rc);
    return tr_conn_write(c, data, len);
}

static const tr_handler deadlk_handler = {.on_frame = deadlk_frame};

Test(backpressure, send_wait_on_a_worker_returns_edeadlk)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &deadlk_handler;
    start(&f, tr_test_codec_line(0), &cfg);
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "hi\n", "hi\n");
    int64_t rc[2];
    cr_assert_eq(tr_test_log_select(&events, E_DEADLK, NULL, rc, 2), 1);
    cr_assert_eq(rc[0], TR_EDEADLK);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

/* Regression: tr_server_free on a worker used to block (it waits for the
 * server's agents, which may need that very worker). */
static tr_server *free_me;

static int free_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    tr_test_log_add(&events, E_DEADLK, 1, tr_server_free(free_me));
    return tr_conn_write(c, data, len);
}

static const tr_handler free_handler = {.on_frame = free_frame};

Test(backpressure, server_free_on_a_worker_returns_edeadlk_and_frees_nothing)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.conn.handler = &free_handler;
    start(&f, tr_test_codec_line(0), &cfg);
    free_me = f.srv;
    int fd = tr_test_client(f.addr);
    tr_test_roundtrip(fd, "hi\n", "hi\n");
    int64_t rc[2];
    cr_assert_eq(tr_test_log_select(&events, E_DEADLK, NULL, rc, 2), 1);
    cr_assert_eq(rc[0], TR_EDEADLK);
    cr_assert(tr_server_is_running(f.srv), "the server is untouched");
    tr_test_roundtrip(fd, "again\n", "again\n");
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

/* ---- handler actor with a bounded mailbox ---- */

enum { MSG_HOLD = TR_MSG_USER, MAILBOX = 16, LINE = 128 };

/* Line i: its number, filler, a newline; LINE bytes (and a NUL). */
static void make_line(char *buf, size_t i)
{
    snprintf(buf, 8, "%06zu", i % 1000000);
    memset(buf + 6, 'a' + (int)(i % 26), LINE - 7);
    buf[LINE - 1] = '\n';
    buf[LINE] = '\0';
}

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static uint64_t holding, opened, frames_seen, reply_failures, closed_seen;

static void handler_receive(tr_actor *self, tr_msg *m)
{
    (void)self;
    switch (tr_msg_type(m)) {
    case MSG_HOLD:
        /* Stands in for a slow handler: its worker is busy, its mailbox
         * fills up. */
        pthread_mutex_lock(&gate_lock);
        tr_test_store(&holding, 1);
        while (!gate_open) {
            pthread_cond_wait(&gate_cond, &gate_lock);
        }
        pthread_mutex_unlock(&gate_lock);
        break;
    case TR_MSG_CONN_OPEN:
        tr_test_store(&conn_id, tr_msg_ref(m));
        tr_test_add(&opened, 1);
        break;
    case TR_MSG_CONN_FRAME:
        tr_test_add(&frames_seen, 1);
        if (tr_conn_send(tr_conn_id_from_msg(m), tr_msg_data(m), tr_msg_len(m)) != 0) {
            tr_test_add(&reply_failures, 1);
        }
        break;
    case TR_MSG_CONN_CLOSED:
        tr_test_add(&closed_seen, 1);
        break;
    default:
        break;
    }
}

static const tr_behavior handler_actor = {.name = "handler", .receive = handler_receive};

static void open_gate(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

Test(backpressure, handler_actor_with_full_mailbox_pauses_reading_and_loses_nothing)
{
    fixture f;
    tr_test_log_init(&events);
    f.rt = tr_test_runtime(2);
    f.codec = tr_test_codec_line(0);
    /* The handler lives on worker 1; the single acceptor hands the first
     * connection to worker 0, so it keeps running while the handler is
     * stuck. */
    tr_spawn_opts so;
    tr_spawn_opts_defaults(&so);
    so.worker = 1;
    so.mailbox_capacity = MAILBOX;
    tr_actor_id hid;
    cr_assert_eq(tr_spawn(f.rt, &handler_actor, NULL, &so, &hid), 0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = f.codec;
    cfg.handler_actor = hid;
    cfg.accept_mode = TR_ACCEPT_SINGLE;
    cfg.on_socket = small_buffers;
    f.srv = tr_test_server(f.rt, &cfg, f.addr, sizeof(f.addr));

    int fd = tr_test_sock_new(f.addr, 0);
    cr_assert_geq(fd, 0);
    tr_test_sock_sndbuf(fd, 8192);
    cr_assert_eq(tr_test_sock_connect_fd(fd, f.addr, 5000), 0);
    cr_assert(tr_test_wait_ge(&opened, 1, 5000));
    tr_test_roundtrip(fd, "first\n", "first\n");

    cr_assert_eq(tr_send_copy(hid, MSG_HOLD, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&holding, 1, 5000));
    /* Lines of LINE bytes until the peer's writes block for 300 ms. */
    cr_assert_eq(tr_test_sock_nonblock(fd, true), 0);
    size_t lines = 0;
    char partial[LINE + 1];
    size_t partial_len = 0;
    for (;;) {
        if (partial_len == 0) {
            make_line(partial, lines);
            partial_len = LINE;
        }
        ssize_t w = send(fd, partial + LINE - partial_len, partial_len, MSG_NOSIGNAL);
        if (w > 0) {
            partial_len -= (size_t)w;
            if (partial_len == 0) {
                lines++;
            }
            cr_assert_lt(lines, 1u << 20, "the server never pushed back");
            continue;
        }
        cr_assert(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 300) == 0) {
            break;
        }
    }
    /* One line handed over before the hold, MAILBOX waiting in the full
     * mailbox; the connection holds the rest and has stopped reading. */
    cr_assert(TR_TEST_WAIT_STAT_EQ(f.srv, frames_in, 1 + MAILBOX, 5000), "frames_in %llu",
              (unsigned long long)tr_test_stats(f.srv).frames_in);
    tr_server_stats st = tr_test_stats(f.srv);
    size_t sent = 6 + lines * LINE + (partial_len > 0 ? LINE - partial_len : 0);
    cr_assert_lt(st.bytes_in, sent, "reading paused");
    open_gate();
    /* Finish the last partial line so every line is whole. */
    cr_assert_eq(tr_test_sock_nonblock(fd, false), 0);
    if (partial_len > 0) {
        cr_assert_eq(tr_test_sock_send(fd, partial + LINE - partial_len, partial_len), 0);
        lines++;
    }
    /* Every line comes back, in order. */
    char line[LINE], want[LINE + 1];
    for (size_t i = 0; i < lines; i++) {
        make_line(want, i);
        cr_assert_eq(tr_test_sock_recv(fd, line, LINE), LINE, "line %zu of %zu", i, lines);
        cr_assert_arr_eq(line, want, LINE, "line %zu", i);
    }
    cr_assert_eq(tr_test_load(&frames_seen), 1 + lines);
    cr_assert_eq(tr_test_load(&reply_failures), 0);
    close(fd);
    cr_assert(tr_test_wait_ge(&closed_seen, 1, 5000));
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    st = tr_test_stats(f.srv);
    cr_assert_eq(st.frames_in, 1 + lines);
    cr_assert_eq(st.frames_out, 1 + lines);
    cr_assert_eq(tr_kill(hid, 0), 0);
    finish(&f);
    tr_test_leak_check();
}

static bool closed_seen_once(void *arg)
{
    (void)arg;
    return tr_test_log_select(&events, E_CLOSE, NULL, NULL, 8) >= 1;
}

Test(backpressure, overflow_exit_disconnects_a_peer_that_never_reads)
{
    fixture f;
    tr_server_config cfg;
    small_queue_config(&cfg);
    cfg.conn.send_overflow = TR_OVERFLOW_EXIT;
    cfg.conn.linger_ms = 300;
    start(&f, tr_test_codec_raw(), &cfg);
    int fd = lazy_peer(&f);
    tr_conn_id id = {tr_test_load(&conn_id)};
    uint64_t offset = 0;
    fill_queue(id, &offset);
    /* A producer that keeps going: still one overflow, one error. */
    static const unsigned char more[CHUNK * 8];
    unsigned refused = 0;
    for (int i = 0; i < 20; i++) {
        int rc = tr_conn_send(id, more, sizeof(more));
        refused += rc == TR_EBUFFULL;
        cr_assert(rc == 0 || rc == TR_EBUFFULL || rc == TR_ECLOSED, "send: %s", tr_strerror(rc));
    }
    /* The overflow is an error for the policy (DISCONNECT): the queue
     * cannot drain to this peer, so the close gives up on it. */
    cr_assert(tr_test_wait_until(closed_seen_once, NULL, 5000));
    int64_t reason[2];
    cr_assert_eq(tr_test_log_select(&events, E_CLOSE, NULL, reason, 2), 1);
    cr_assert_eq(reason[0], TR_EBUFFULL);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_gt(refused, 0);
    cr_assert_eq(st.errors[TR_ERR_SEND_OVERFLOW], 1, "%llu overflow errors, %u more refusals",
                 (unsigned long long)st.errors[TR_ERR_SEND_OVERFLOW], refused);
    cr_assert_eq(st.disconnects, 1);
    cr_assert_eq(tr_conn_send(id, "x", 1), TR_ECLOSED);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

/* Connection events go past a handler actor's capacity: a CLOSED dropped
 * on a full mailbox would leave the handler believing the connection is
 * open for good. */
Test(backpressure, handler_actor_gets_closed_even_with_a_full_mailbox)
{
    enum { SMALL = 4 };
    fixture f;
    tr_test_log_init(&events);
    f.rt = tr_test_runtime(2);
    f.codec = tr_test_codec_line(0);
    tr_spawn_opts so;
    tr_spawn_opts_defaults(&so);
    so.worker = 1;
    so.mailbox_capacity = SMALL;
    tr_actor_id hid;
    cr_assert_eq(tr_spawn(f.rt, &handler_actor, NULL, &so, &hid), 0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = f.codec;
    cfg.handler_actor = hid;
    cfg.accept_mode = TR_ACCEPT_SINGLE; /* the connection lives on worker 0 */
    f.srv = tr_test_server(f.rt, &cfg, f.addr, sizeof(f.addr));

    int fd = tr_test_sock_new(f.addr, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tr_test_sock_connect_fd(fd, f.addr, 5000), 0);
    cr_assert(tr_test_wait_ge(&opened, 1, 5000));
    cr_assert_eq(tr_send_copy(hid, MSG_HOLD, NULL, 0), 0);
    cr_assert(tr_test_wait_ge(&holding, 1, 5000));
    char line[LINE + 1];
    for (size_t i = 0; i < 2 * SMALL; i++) {
        make_line(line, i);
        cr_assert_eq(tr_test_sock_send(fd, line, LINE), 0);
    }
    /* SMALL frames fill the mailbox; the rest wait in the connection. */
    cr_assert(TR_TEST_WAIT_STAT_EQ(f.srv, frames_in, SMALL, 5000), "frames_in %llu",
              (unsigned long long)tr_test_stats(f.srv).frames_in);
    tr_conn_id cid = {tr_test_load(&conn_id)};
    cr_assert_eq(tr_conn_abort_id(cid), 0);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    open_gate();
    cr_assert(tr_test_wait_ge(&closed_seen, 1, 5000), "TR_MSG_CONN_CLOSED was lost");
    cr_assert_eq(tr_test_load(&frames_seen), SMALL, "CLOSED came after the queued frames");
    close(fd);
    cr_assert_eq(tr_kill(hid, 0), 0);
    finish(&f);
    tr_test_leak_check();
}
