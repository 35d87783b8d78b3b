/* Unix stream sockets: the same server, connection and client API over
 * "unix:/path" and "unix:@name", in a temp dir. File mode and stale-file
 * rules, unlink on stop, peer credentials, half-close, the event-driven and
 * one-shot clients, and socat (Debian's) as a peer nobody here wrote. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rt.h"
#include "srv.h"
#include "troupe/troupe.h"

TestSuite(unix, .timeout = 60.0);

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/troupe-unix-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    /* Fails if a server left its socket file behind. */
    cr_assert_eq(rmdir(dir), 0, "%s not empty: %s", dir, strerror(errno));
}

/* ---- an echo server that records what it learns about its peers ---- */

static uint64_t cred_ok;  /* atomics: peer credentials matched this process */
static uint64_t peer_ok;  /* atomics: the peer address read "unix:" */
static uint64_t closes;   /* atomics */

static int on_open(tr_conn *c, void *user)
{
    (void)user;
    tr_peer_cred pc;
    if (tr_conn_peer_cred(c, &pc) == 0 && pc.pid == (int32_t)getpid() && pc.uid == getuid() &&
        pc.gid == getgid()) {
        tr_test_add(&cred_ok, 1);
    }
    char buf[128];
    if (tr_conn_peer(c, buf, sizeof(buf)) > 0 && strcmp(buf, "unix:") == 0) {
        tr_test_add(&peer_ok, 1);
    }
    return 0;
}

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

static void on_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)reason;
    (void)user;
    tr_test_add(&closes, 1);
}

static const tr_handler echo = {.on_open = on_open, .on_frame = on_frame, .on_close = on_close};

typedef struct fixture {
    tr_runtime *rt;
    tr_codec *codec;
    tr_server *srv;
    char addr[160];
} fixture;

static void config(fixture *f, tr_server_config *cfg, const char *listen)
{
    tr_server_config_defaults(cfg);
    cfg->listen = listen;
    cfg->conn.codec = f->codec;
    cfg->conn.handler = &echo;
}

static void setup(fixture *f)
{
    make_dir();
    tr_test_store(&cred_ok, 0);
    tr_test_store(&peer_ok, 0);
    tr_test_store(&closes, 0);
    f->rt = tr_test_runtime(2);
    f->codec = tr_test_codec_line(0);
    f->srv = NULL;
}

static void start_at(fixture *f, const char *listen)
{
    tr_server_config cfg;
    config(f, &cfg, listen);
    f->srv = tr_test_server(f->rt, &cfg, f->addr, sizeof(f->addr));
}

static void teardown(fixture *f)
{
    if (f->srv != NULL) {
        cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
        cr_assert_eq(tr_server_free(f->srv), 0);
    }
    tr_test_runtime_finish(f->rt);
    tr_codec_free(f->codec);
    remove_dir();
}

static void path_in_dir(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "unix:%s/%s", dir, name);
}

Test(unix, echo_over_a_path_with_peer_credentials_and_a_private_file)
{
    fixture f;
    setup(&f);
    char listen[160];
    path_in_dir(listen, sizeof(listen), "echo.sock");
    start_at(&f, listen);
    cr_assert_str_eq(f.addr, listen, "the server reports the path it listens on");
    cr_assert_eq(tr_server_port(f.srv), 0);
    struct stat st;
    cr_assert_eq(stat(listen + 5, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);

    int fd = tr_test_client(listen);
    tr_test_roundtrip(fd, "hello\n", "hello\n");
    tr_test_roundtrip(fd, "again\n", "again\n");
    cr_assert(tr_test_wait_ge(&cred_ok, 1, 5000), "SO_PEERCRED named this process");
    cr_assert_eq(tr_test_load(&peer_ok), 1, "an unnamed client reads as unix:");
    close(fd);
    cr_assert(tr_test_wait_ge(&closes, 1, 5000));
    cr_assert_eq(tr_server_shutdown(f.srv, 5000), 0);
    cr_assert_eq(stat(listen + 5, &st), -1, "the socket file is removed when the server stops");
    cr_assert_eq(errno, ENOENT);
    cr_assert_eq(tr_server_free(f.srv), 0);
    f.srv = NULL;
    teardown(&f);
}

Test(unix, mode_is_what_was_asked)
{
    fixture f;
    setup(&f);
    char listen[160];
    path_in_dir(listen, sizeof(listen), "shared.sock");
    tr_server_config cfg;
    config(&f, &cfg, listen);
    cfg.unix_mode = 0660;
    f.srv = tr_test_server(f.rt, &cfg, f.addr, sizeof(f.addr));
    struct stat st;
    cr_assert_eq(stat(listen + 5, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0660, "mode %o", st.st_mode & 07777);
    teardown(&f);
}

/* Binds and closes a socket at path: the file a crashed server leaves. */
static void leave_stale_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(path), sizeof(un.sun_path));
    memcpy(un.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
    close(fd);
}

Test(unix, a_stale_socket_file_is_replaced)
{
    fixture f;
    setup(&f);
    char listen[160];
    path_in_dir(listen, sizeof(listen), "stale.sock");
    leave_stale_socket(listen + 5);
    start_at(&f, listen);
    int fd = tr_test_client(listen);
    tr_test_roundtrip(fd, "fresh\n", "fresh\n");
    close(fd);
    teardown(&f);
}

Test(unix, a_live_server_and_a_regular_file_are_never_replaced)
{
    fixture f;
    setup(&f);
    char listen[160];
    path_in_dir(listen, sizeof(listen), "live.sock");
    start_at(&f, listen);

    tr_server_config cfg;
    config(&f, &cfg, listen);
    int err = 1;
    tr_server *second = tr_server_new(f.rt, &cfg, &err);
    cr_assert_not_null(second);
    cr_assert_eq(tr_server_start(second), -EADDRINUSE, "a live server keeps its path");
    cr_assert_eq(tr_server_free(second), 0);
    int fd = tr_test_client(listen);
    tr_test_roundtrip(fd, "still here\n", "still here\n");
    close(fd);

    char file[160];
    path_in_dir(file, sizeof(file), "notes.txt");
    FILE *fp = fopen(file + 5, "w");
    cr_assert_not_null(fp);
    fputs("keep me\n", fp);
    fclose(fp);
    config(&f, &cfg, file);
    second = tr_server_new(f.rt, &cfg, &err);
    cr_assert_not_null(second);
    cr_assert_eq(tr_server_start(second), -EEXIST, "not a socket: never deleted");
    cr_assert_eq(tr_server_free(second), 0);
    struct stat st;
    cr_assert_eq(stat(file + 5, &st), 0);
    cr_assert_eq(st.st_size, 8, "the file is untouched");
    unlink(file + 5);
    teardown(&f);
}

Test(unix, bad_paths_give_clear_errors)
{
    fixture f;
    setup(&f);
    tr_server_config cfg;
    char listen[300];
    snprintf(listen, sizeof(listen), "unix:%s/", dir);
    size_t n = strlen(listen);
    memset(listen + n, 'x', 150);
    listen[n + 150] = '\0';
    config(&f, &cfg, listen);
    int err = 1;
    cr_assert_null(tr_server_new(f.rt, &cfg, &err));
    cr_assert_eq(err, -ENAMETOOLONG, "too long: %s", tr_strerror(err));

    config(&f, &cfg, "unix:relative-without-dot");
    cr_assert_null(tr_server_new(f.rt, &cfg, &err));
    cr_assert_eq(err, TR_EADDR);

    char missing[160];
    snprintf(missing, sizeof(missing), "unix:%s/no/such/dir.sock", dir);
    config(&f, &cfg, missing);
    tr_server *s = tr_server_new(f.rt, &cfg, &err);
    cr_assert_not_null(s);
    cr_assert_eq(tr_server_start(s), -ENOENT, "a missing folder");
    cr_assert_eq(tr_server_free(s), 0);

    cfg.unix_mode = 010000;
    cr_assert_null(tr_server_new(f.rt, &cfg, &err));
    cr_assert_eq(err, TR_EINVAL, "mode bits beyond 07777");
    teardown(&f);
}

Test(unix, an_abstract_name_needs_no_file)
{
    fixture f;
    setup(&f);
    char listen[96];
    snprintf(listen, sizeof(listen), "unix:@troupe-test-%d", (int)getpid());
    start_at(&f, listen);
    cr_assert_str_eq(f.addr, listen);
    int fd = tr_test_client(listen);
    tr_test_roundtrip(fd, "abstract\n", "abstract\n");
    close(fd);
    teardown(&f);
}

Test(unix, half_close_from_the_client_still_gets_every_reply)
{
    fixture f;
    setup(&f);
    char listen[160];
    path_in_dir(listen, sizeof(listen), "half.sock");
    start_at(&f, listen);
    int fd = tr_test_client(listen);
    cr_assert_eq(tr_test_sock_send_str(fd, "one\ntwo\n"), 0);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    char buf[64];
    ssize_t r = tr_test_sock_recv_to_eof(fd, buf, sizeof(buf), NULL);
    cr_assert_eq(r, 8, "read to EOF: %zd (%s)", r, r < 0 ? tr_strerror((int)r) : "bytes");
    cr_assert_arr_eq(buf, "one\ntwo\n", 8);
    close(fd);
    teardown(&f);
}

/* ---- clients ---- */

static uint64_t client_frames; /* atomics */

static int client_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)user;
    if (len == 4 && memcmp(data, "pong", 4) == 0) {
        tr_test_add(&client_frames, 1);
    }
    return 0;
}

static int client_open(tr_conn *c, void *user)
{
    (void)user;
    return tr_conn_write(c, "pong", 4);
}

static const tr_handler client_handler = {.on_open = client_open, .on_frame = client_frame};

Test(unix, the_event_driven_and_one_shot_clients_dial_a_path)
{
    fixture f;
    setup(&f);
    char listen[160];
    path_in_dir(listen, sizeof(listen), "client.sock");
    start_at(&f, listen);

    tr_test_store(&client_frames, 0);
    tr_client_config cc;
    tr_client_config_defaults(&cc);
    cc.connect = listen;
    cc.conn.codec = f.codec;
    cc.conn.handler = &client_handler;
    tr_conn_id id;
    cr_assert_eq(tr_client_connect(f.rt, &cc, &id), 0);
    cr_assert(tr_test_wait_ge(&client_frames, 1, 5000), "the echo came back");
    cr_assert_eq(tr_conn_close_id(id), 0);

    tr_buf *reply = NULL;
    cr_assert_eq(tr_client_once(listen, f.codec, "once", 4, 1024, 5000, &reply), 0);
    cr_assert_not_null(reply);
    cr_assert_eq(tr_buf_len(reply), 4);
    cr_assert_arr_eq(tr_buf_data(reply), "once", 4);
    tr_buf_release(reply);

    char missing[160];
    path_in_dir(missing, sizeof(missing), "nobody.sock");
    reply = NULL;
    cr_assert_eq(tr_client_once(missing, f.codec, "x", 1, 1024, 2000, &reply), -ENOENT);
    cr_assert_null(reply);
    teardown(&f);
}

Test(unix, socat_talks_to_the_server)
{
    fixture f;
    setup(&f);
    char listen[160];
    path_in_dir(listen, sizeof(listen), "socat.sock");
    start_at(&f, listen);
    char cmd[400];
    /* -t 5: socat waits up to 5 s for the reply after its input ends. */
    snprintf(cmd, sizeof(cmd), "printf 'from socat\\n' | socat -t 5 - UNIX-CONNECT:%s", listen + 5);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "socat (Debian package socat) must be installed");
    char out[64] = {0};
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    int status = pclose(p);
    cr_assert_eq(status, 0, "socat exited with %d (is it installed?)", status);
    cr_assert_eq(n, 11, "got %zu bytes: %s", n, out);
    cr_assert_str_eq(out, "from socat\n");
    teardown(&f);
}
