/* Adopted descriptors with real loopback sockets: a listening socket made
 * outside troupe (cfg.listen_fd; TCP and Unix), a connected one
 * (tr_server_adopt), what each refuses, the sd_listen_fds environment
 * checks, and troupe-echo under Debian's systemd-socket-activate. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net.h"
#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(adopt, .timeout = 60.0);

static void echo_config(tr_server_config *cfg, const tr_codec *codec, int listen_fd)
{
    tr_server_config_defaults(cfg);
    cfg->listen = listen_fd >= 0 ? NULL : "127.0.0.1:0";
    cfg->listen_fd = listen_fd;
    cfg->conn.codec = codec;
    cfg->conn.handler = &tr_test_echo_handler;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* A Unix stream socket at dir/name: listening, or (listen_too false)
 * connected to `connect_to` instead. Returns the fd. */
static int unix_socket(const char *path, bool listening)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
    if (listening) {
        cr_assert_eq(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
        cr_assert_eq(listen(fd, 16), 0);
    } else {
        cr_assert_eq(connect(fd, (struct sockaddr *)&un, sizeof(un)), 0, "%s", strerror(errno));
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    return fd;
}

/* ---- listen_fd ---- */

Test(adopt, listen_fd_serves_a_tcp_listener_made_elsewhere)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    int port;
    int lfd = tr_test_sock_listen("127.0.0.1", 16, &port);
    cr_assert_geq(lfd, 0);
    tr_server_config cfg;
    echo_config(&cfg, codec, lfd);
    char addr[64], want[64];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
    tr_test_addr(want, sizeof(want), "127.0.0.1", port);
    cr_assert_str_eq(addr, want, "the adopted socket's own address");
    cr_assert_eq(tr_server_port(srv), port);
    for (int i = 0; i < 3; i++) { /* one listener, connections round-robin */
        int fd = tr_test_client(addr);
        tr_test_roundtrip(fd, "hello\n", "hello\n");
        close(fd);
    }
    cr_assert_eq(tr_test_stats(srv).accepted, 3);
    cr_assert_eq(tr_server_free(srv), 0);
    cr_assert_not(fd_is_open(lfd), "the server closed the listener it owned");
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

Test(adopt, listen_fd_serves_a_unix_listener_and_leaves_its_file)
{
    char dir[] = "/tmp/troupe-adopt-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_server_config cfg;
    echo_config(&cfg, codec, unix_socket(path, true));
    char addr[160], want[160];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
    snprintf(want, sizeof(want), "unix:%s", path);
    cr_assert_str_eq(addr, want);
    cr_assert_eq(tr_server_port(srv), 0);
    int fd = unix_socket(path, false);
    tr_test_roundtrip(fd, "over unix\n", "over unix\n");
    close(fd);
    cr_assert_eq(tr_server_free(srv), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "a file troupe did not make stays");
    unlink(path);
    rmdir(dir);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

Test(adopt, listen_fd_refuses_what_is_not_a_listening_stream_socket)
{
    tr_runtime *rt = tr_test_runtime(1);
    tr_codec *codec = tr_test_codec_line(0);
    int port, pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int bound = tr_test_sock_bound("127.0.0.1", &port); /* bound, not listening */
    int closed = dup(udp);
    close(closed);
    struct {
        int fd;
        int err;
    } cases[] = {
        {pipefd[0], -ENOTSOCK}, {udp, -ESOCKTNOSUPPORT}, {bound, TR_EINVAL}, {closed, -EBADF}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tr_server_config cfg;
        echo_config(&cfg, codec, cases[i].fd);
        int err = 1;
        cr_assert_null(tr_server_new(rt, &cfg, &err));
        cr_assert_eq(err, cases[i].err, "case %zu: %s", i, tr_strerror(err));
        if (cases[i].fd != closed) {
            cr_assert(fd_is_open(cases[i].fd), "a refused fd stays the caller's");
        }
    }
    close(pipefd[0]);
    close(pipefd[1]);
    close(udp);
    close(bound);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

Test(adopt, listen_fds_ignores_an_environment_meant_for_another_process)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    cr_assert_eq(tr_listen_fds(), 0);
    char pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long)getppid()); /* inherited from a parent */
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    cr_assert_eq(tr_listen_fds(), 0);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "one", 1);
    cr_assert_eq(tr_listen_fds(), 0, "not a number: not for us");
    setenv("LISTEN_FDS", "0", 1);
    cr_assert_eq(tr_listen_fds(), 0);
    setenv("LISTEN_FDS", "100000", 1);
    cr_assert_eq(tr_listen_fds(), TR_EINVAL);
}

/* ---- tr_server_adopt ---- */

Test(adopt, adopted_tcp_connection_is_served_and_counted_like_an_accepted_one)
{
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_server_config cfg;
    echo_config(&cfg, codec, -1);
    char addr[64];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
    /* A connection made outside the server: our own listener. */
    int port;
    int lfd = tr_test_sock_listen("127.0.0.1", 4, &port);
    char other[64];
    tr_test_addr(other, sizeof(other), "127.0.0.1", port);
    int peer = tr_test_client(other);
    int conn = accept(lfd, NULL, NULL);
    cr_assert_geq(conn, 0);
    cr_assert_eq(tr_server_adopt(srv, conn), 0);
    tr_test_roundtrip(peer, "adopted\n", "adopted\n");
    cr_assert(tr_test_wait_open(srv, 1, 5000));
    tr_server_stats st = tr_test_stats(srv);
    cr_assert_eq(st.accepted, 1);
    cr_assert_eq(st.frames_in, 1);
    close(peer);
    cr_assert(tr_test_wait_open(srv, 0, 5000), "its close is counted too");
    close(lfd);
    cr_assert_eq(tr_server_free(srv), 0);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

Test(adopt, adopted_unix_socketpair_end_is_served_by_a_unix_server)
{
    char dir[] = "/tmp/troupe-adopt-XXXXXX", listen[160];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(listen, sizeof(listen), "unix:%s/s.sock", dir);
    tr_runtime *rt = tr_test_runtime(2);
    tr_codec *codec = tr_test_codec_line(0);
    tr_server_config cfg;
    echo_config(&cfg, codec, -1);
    cfg.listen = listen;
    char addr[160];
    tr_server *srv = tr_test_server(rt, &cfg, addr, sizeof(addr));
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct timeval tv = {5, 0};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(tr_server_adopt(srv, sv[1]), 0);
    tr_test_roundtrip(sv[0], "pair\n", "pair\n");
    close(sv[0]);
    cr_assert_eq(tr_server_free(srv), 0);
    rmdir(dir);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

Test(adopt, adopt_refuses_wrong_sockets_and_states_leaving_the_fd_open)
{
    tr_runtime *rt = tr_test_runtime(1);
    tr_codec *codec = tr_test_codec_line(0);
    tr_server_config cfg;
    echo_config(&cfg, codec, -1);
    int err = 1;
    tr_server *srv = tr_server_new(rt, &cfg, &err);
    cr_assert_not_null(srv);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cr_assert_eq(tr_server_adopt(srv, sv[1]), TR_ESTATE, "not started");
    cr_assert_eq(tr_server_start(srv), 0);
    int port;
    int lfd = tr_test_sock_listen("127.0.0.1", 4, &port);
    int fresh = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    struct {
        int fd;
        int err;
    } cases[] = {{sv[1], -EAFNOSUPPORT}, /* a Unix socket for a TCP server */
                 {lfd, TR_EINVAL},       /* listening */
                 {fresh, -ENOTCONN},
                 {udp, -ESOCKTNOSUPPORT},
                 {-1, TR_EINVAL}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_assert_eq(tr_server_adopt(srv, cases[i].fd), cases[i].err, "case %zu", i);
        cr_assert(cases[i].fd < 0 || fd_is_open(cases[i].fd), "case %zu: still ours", i);
    }
    cr_assert_eq(tr_test_stats(srv).accepted, 0);
    close(sv[0]);
    close(sv[1]);
    close(lfd);
    close(fresh);
    close(udp);
    cr_assert_eq(tr_server_free(srv), 0);
    tr_test_runtime_finish(rt);
    tr_codec_free(codec);
}

/* ---- troupe-echo under systemd-socket-activate ---- */

#ifdef TROUPE_ECHO_PATH
#define ACTIVATE "/usr/bin/systemd-socket-activate"

typedef struct dial_arg {
    const char *path;
    int fd;
} dial_arg;

static bool unix_connects(void *arg)
{
    dial_arg *d = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", d->path);
    if (connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0) {
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        d->fd = fd;
        return true;
    }
    close(fd);
    return false;
}

typedef struct child_arg {
    pid_t pid;
    int status;
} child_arg;

static bool child_exited(void *arg)
{
    child_arg *c = arg;
    return waitpid(c->pid, &c->status, WNOHANG) == c->pid;
}

Test(adopt, troupe_echo_serves_the_socket_systemd_socket_activate_passes)
{
    cr_assert_eq(access(ACTIVATE, X_OK), 0, "%s (Debian package systemd) is missing", ACTIVATE);
    char dir[] = "/tmp/troupe-activate-XXXXXX", path[128], out[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/echo.sock", dir);
    snprintf(out, sizeof(out), "%s/out.txt", dir);
    child_arg child = {.pid = fork()};
    cr_assert_geq(child.pid, 0);
    if (child.pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, 1);
        dup2(o, 2);
        /* It listens on path, waits for the first connection, then execs
         * troupe-echo in its own process with LISTEN_FDS=1, LISTEN_PID. */
        execl(ACTIVATE, ACTIVATE, "-l", path, TROUPE_ECHO_PATH, "--listen", "systemd", "--workers",
              "1", (char *)NULL);
        _exit(127);
    }
    dial_arg d = {path, -1};
    cr_assert(tr_test_wait_until(unix_connects, &d, 10000), "the activator never listened");
    tr_test_roundtrip(d.fd, "activated\n", "activated\n");
    tr_test_roundtrip(d.fd, "again\n", "again\n");
    close(d.fd);
    cr_assert_eq(kill(child.pid, SIGTERM), 0);
    cr_assert(tr_test_wait_until(child_exited, &child, 10000), "troupe-echo did not stop");
    cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0, "status %d", child.status);
    char log[2048] = {0}, want[160];
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    size_t n = fread(log, 1, sizeof(log) - 1, f);
    fclose(f);
    cr_assert_gt(n, 0);
    snprintf(want, sizeof(want), "listening on unix:%s", path);
    cr_assert_not_null(strstr(log, want), "output: %s", log);
    cr_assert_not_null(strstr(log, "stopped: clean"), "output: %s", log);
    unlink(out);
    unlink(path);
    rmdir(dir);
}
#endif
