/* Accept under fd exhaustion: with no fd left, accept fails with EMFILE
 * while the listener stays readable; the server must back off (not spin on
 * the readable listener) and accept the waiting connection once fds free
 * up. The test lowers RLIMIT_NOFILE in its own process (Criterion runs
 * each test in a child process) and fills the table with dup(). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "leak.h"
#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(emfile, .timeout = 60.0);

static int echo_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static const tr_handler echo_handler = {.on_frame = echo_frame};

static uint64_t server_errors, last_server_error; /* atomics */

static void on_server_error(int err, void *user)
{
    (void)user;
    tr_test_store(&last_server_error, (uint64_t)(int64_t)err);
    tr_test_add(&server_errors, 1);
}

static const tr_server_observer observer = {.on_server_error = on_server_error};

static int highest_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int hi = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd > hi) {
            hi = fd;
        }
    }
    closedir(d);
    return hi;
}

static uint64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void exhaust_and_recover(tr_accept_mode mode)
{
    tr_log_set_level(TR_LOG_ERROR); /* one warning per retry otherwise */
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.conn.codec = codec;
    cfg.conn.handler = &echo_handler;
    cfg.accept_mode = mode;
    cfg.observer = &observer;
    tr_test_store(&server_errors, 0);
    char addr[80];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));

    /* The client's socket exists before the fds run out; connecting it
     * needs none (the kernel completes the handshake into the backlog). */
    int fd = tr_test_sock_new(addr, 0);
    cr_assert_geq(fd, 0);
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)highest_fd() + 32;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    static int fillers[4096];
    int nf = 0;
    for (;;) {
        int d = dup(fd);
        if (d < 0) {
            cr_assert_eq(errno, EMFILE);
            break;
        }
        cr_assert_lt(nf, 4096);
        fillers[nf++] = d;
    }
    cr_assert_eq(tr_test_sock_connect_fd(fd, addr, 5000), 0);

    /* The server sees EMFILE and keeps trying, slowly: over ~500 ms
     * (five more failed accepts at one retry per 100 ms) the process uses
     * well under 40% of one CPU. */
    cr_assert(TR_TEST_WAIT_STAT_GE(srv, accept_errors, 1, 5000));
    uint64_t e0 = tr_test_stats(srv).accept_errors;
    uint64_t c0 = cpu_us(), t0 = tr_test_now_ns();
    cr_assert(TR_TEST_WAIT_STAT_GE(srv, accept_errors, e0 + 5, 5000));
    uint64_t cpu = cpu_us() - c0, wall = (tr_test_now_ns() - t0) / 1000;
    cr_assert_geq(wall, 300000, "retries too fast: 5 in %llu us", (unsigned long long)wall);
    cr_assert_lt(cpu * 100, wall * 40, "cpu %llu us over %llu us: a spin", (unsigned long long)cpu,
                 (unsigned long long)wall);
    tr_server_stats st = tr_test_stats(srv);
    cr_assert_eq(st.accepted, 0);
    cr_assert_geq(tr_test_load(&server_errors), 5, "the server-level error callback ran");
    cr_assert_eq((int)(int64_t)tr_test_load(&last_server_error), -EMFILE);
    cr_assert_eq(tr_server_open_connections(srv), 0);

    /* fds free up: the waiting connection is accepted and served. */
    for (int i = 0; i < nf; i++) {
        close(fillers[i]);
    }
    cr_assert(TR_TEST_WAIT_STAT_EQ(srv, accepted, 1, 5000));
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    tr_test_roundtrip(fd, "back\n", "back\n");
    close(fd);
    cr_assert(tr_test_wait_open(srv, 0, 5000));
    cr_assert_not(tr_server_is_gone(srv));
    cr_assert_eq(tr_server_shutdown(srv, 5000), 0);
    cr_assert(tr_server_is_gone(srv), "stopped with no connection left");
    tr_server_free(srv);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

Test(emfile, reuseport_accept_backs_off_without_spinning_and_recovers)
{
    exhaust_and_recover(TR_ACCEPT_REUSEPORT);
    tr_test_leak_check();
}

Test(emfile, single_acceptor_backs_off_without_spinning_and_recovers)
{
    exhaust_and_recover(TR_ACCEPT_SINGLE);
    tr_test_leak_check();
}
