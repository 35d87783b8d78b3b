/* Admission control and connection counts over real sockets:
 * max_connections (close or pause), max_per_ip, and exact open counts
 * under connect/close churn from several threads. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leak.h"
#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(admission, .timeout = 60.0);

static int echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static const tr_handler echo_handler = {.on_frame = echo_frame};

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[80];
} fixture;

static void start(fixture *f, tr_server_config *cfg)
{
    f->rt = tr_test_runtime(2);
    f->codec = tr_test_codec_line(0);
    cfg->listen = "127.0.0.1:0";
    cfg->conn.codec = f->codec;
    cfg->conn.handler = &echo_handler;
    f->srv = tr_test_server(f->rt, cfg, f->addr, sizeof(f->addr));
}

static void finish(fixture *f)
{
    cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
    cr_assert_eq(tr_server_open_connections(f->srv), 0);
    tr_server_free(f->srv);
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
}

/* Connects and proves the server serves the connection. */
static int served(fixture *f, const char *from)
{
    int fd = tr_test_sock_connect(f->addr, from, 5000);
    cr_assert_geq(fd, 0, "connect: %s", tr_strerror(fd));
    tr_test_roundtrip(fd, "hi\n", "hi\n");
    return fd;
}

/* Connects and expects the server to close at once (EOF, nothing read). */
static void turned_away(fixture *f, const char *from)
{
    int fd = tr_test_sock_connect(f->addr, from, 5000);
    cr_assert_geq(fd, 0, "the kernel completes the handshake: %s", tr_strerror(fd));
    cr_assert_eq(tr_test_sock_peek(fd, 5000), 0, "EOF at once");
    close(fd);
}

Test(admission, max_connections_with_close_turns_the_extra_one_away)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.max_connections = 2;
    cfg.admission = TR_ADMIT_CLOSE;
    start(&f, &cfg);
    int a = served(&f, NULL);
    int b = served(&f, NULL);
    turned_away(&f, NULL);
    turned_away(&f, NULL);
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.accepted, 2);
    cr_assert_eq(st.refused, 2);
    cr_assert_eq(tr_server_open_connections(f.srv), 2);
    /* Room again once one leaves. */
    close(a);
    cr_assert(tr_test_wait_open(f.srv, 1, 5000));
    int c = served(&f, NULL);
    st = tr_test_stats(f.srv);
    cr_assert_eq(st.accepted, 3);
    cr_assert_eq(st.refused, 2);
    close(b);
    close(c);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    cr_assert_eq(tr_test_stats(f.srv).closed, 3);
    finish(&f);
    tr_test_leak_check();
}

Test(admission, max_connections_with_pause_holds_the_extra_one_until_room)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.max_connections = 1;
    cfg.admission = TR_ADMIT_PAUSE;
    start(&f, &cfg);
    int a = served(&f, NULL);
    int b = tr_test_sock_connect(f.addr, NULL, 5000);
    cr_assert_geq(b, 0, "the backlog takes it");
    cr_assert_eq(tr_test_sock_send_str(b, "waiting\n"), 0);
    /* Not served while a holds the only place (bounded wait on the reply
     * that must not come). */
    cr_assert_eq(tr_test_sock_readable(b, 300), 0, "served past the limit");
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.accepted, 1);
    cr_assert_eq(st.refused, 0);
    close(a);
    /* a's place goes to b: its line is echoed. */
    char got[8];
    cr_assert_eq(tr_test_sock_recv(b, got, 8), 8);
    cr_assert_arr_eq(got, "waiting\n", 8);
    st = tr_test_stats(f.srv);
    cr_assert_eq(st.accepted, 2);
    cr_assert_eq(st.refused, 0);
    cr_assert_eq(tr_server_open_connections(f.srv), 1);
    close(b);
    finish(&f);
    tr_test_leak_check();
}

Test(admission, max_per_ip_limits_each_source_address)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.max_per_ip = 2;
    start(&f, &cfg);
    int a = served(&f, "127.0.0.1");
    int b = served(&f, "127.0.0.1");
    turned_away(&f, "127.0.0.1");
    /* Another source address has its own count. */
    int c = served(&f, "127.0.0.2");
    int d = served(&f, "127.0.0.2");
    turned_away(&f, "127.0.0.2");
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.accepted, 4);
    cr_assert_eq(st.refused, 2);
    close(a);
    cr_assert(tr_test_wait_open(f.srv, 3, 5000));
    int e = served(&f, "127.0.0.1");
    cr_assert_eq(tr_test_stats(f.srv).accepted, 5);
    close(b);
    close(c);
    close(d);
    close(e);
    cr_assert(tr_test_wait_open(f.srv, 0, 5000));
    finish(&f);
    tr_test_leak_check();
}

/* ---- churn ---- */

enum { THREADS = 4, CYCLES = 150 };

typedef struct churner {
    const char *addr;
    int idx;
    int failures;
    char why[128];
} churner;

static void *churn(void *arg)
{
    churner *ch = arg;
    for (int i = 0; i < CYCLES; i++) {
        int fd = tr_test_sock_connect(ch->addr, NULL, 5000);
        if (fd < 0) {
            ch->failures++;
            snprintf(ch->why, sizeof(ch->why), "connect %d: %s", i, tr_strerror(fd));
            continue;
        }
        switch ((i + ch->idx) % 3) {
        case 0: /* a round trip, then an orderly close */
        case 1: /* a round trip, then a reset */ {
            char got[3];
            if (tr_test_sock_send_str(fd, "x\n") < 0 || tr_test_sock_recv(fd, got, 2) != 2) {
                ch->failures++;
                snprintf(ch->why, sizeof(ch->why), "round trip %d", i);
            }
            if ((i + ch->idx) % 3 == 1) {
                tr_test_sock_reset(fd);
            } else {
                close(fd);
            }
            break;
        }
        default: /* gone before saying anything */
            close(fd);
            break;
        }
    }
    return NULL;
}

Test(admission, open_connections_is_exact_under_churn)
{
    fixture f;
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    start(&f, &cfg);
    pthread_t th[THREADS];
    churner ch[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ch[i] = (churner){.addr = f.addr, .idx = i};
        cr_assert_eq(pthread_create(&th[i], NULL, churn, &ch[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(ch[i].failures, 0, "thread %d: %s", i, ch[i].why);
    }
    cr_assert(tr_test_wait_open(f.srv, 0, 10000), "open %llu",
              (unsigned long long)tr_server_open_connections(f.srv));
    tr_server_stats st = tr_test_stats(f.srv);
    cr_assert_eq(st.accepted, THREADS * CYCLES);
    cr_assert_eq(st.closed, THREADS * CYCLES);
    cr_assert_eq(st.refused, 0);
    cr_assert_eq(st.active, 0);
    /* Two of every three cycles sent one line. */
    uint64_t lines = 0;
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < CYCLES; i++) {
            lines += (i + t) % 3 != 2;
        }
    }
    cr_assert_eq(st.frames_in, lines);
    cr_assert_eq(st.frames_out, lines);
    finish(&f);
    tr_test_leak_check();
}
