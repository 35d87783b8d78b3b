/* A troupe user's program: an echo server and a client on loopback,
 * through the installed headers and library only. Prints "consumer: ok"
 * and exits 0 when the client got its line back. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <troupe/troupe.h>

static int echo(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    return tr_conn_write(c, data, len);
}

/* Set on a worker when the echo arrives; main waits for it (bounded). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int got;

static int reply(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)user;
    if (len == 5 && memcmp(data, "hello", 5) == 0) {
        pthread_mutex_lock(&mu);
        got = 1;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
    return 0;
}

static int say_hello(tr_conn *c, void *user)
{
    (void)user;
    return tr_conn_write(c, "hello", 5);
}

int main(void)
{
    int err;
    tr_runtime_config rc;
    tr_runtime_config_defaults(&rc);
    rc.workers = 2;
    tr_runtime *rt = tr_runtime_new(&rc, &err);
    if (rt == NULL || tr_runtime_start(rt) < 0) {
        fprintf(stderr, "consumer: runtime: %s\n", tr_strerror(err));
        return 1;
    }
    tr_line_codec_config lc;
    tr_line_codec_config_defaults(&lc);
    tr_codec *lines = tr_codec_line_new(&lc, &err);
    static const tr_handler server_h = {.on_frame = echo};
    static const tr_handler client_h = {.on_open = say_hello, .on_frame = reply};
    tr_server_config sc;
    tr_server_config_defaults(&sc);
    sc.listen = "127.0.0.1:0";
    sc.conn.codec = lines;
    sc.conn.handler = &server_h;
    tr_server *srv = tr_server_new(rt, &sc, &err);
    if (srv == NULL || (err = tr_server_start(srv)) < 0) {
        fprintf(stderr, "consumer: server: %s\n", tr_strerror(err));
        return 1;
    }
    char addr[64];
    tr_server_address(srv, addr, sizeof(addr));
    tr_client_config cc;
    tr_client_config_defaults(&cc);
    cc.connect = addr;
    cc.conn.codec = lines;
    cc.conn.handler = &client_h;
    tr_conn_id id;
    if ((err = tr_client_connect(rt, &cc, &id)) < 0) {
        fprintf(stderr, "consumer: client: %s\n", tr_strerror(err));
        return 1;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&mu);
    while (!got && pthread_cond_timedwait(&cv, &mu, &deadline) == 0) {
    }
    int ok = got;
    pthread_mutex_unlock(&mu);
    tr_conn_close_id(id);
    tr_server_shutdown(srv, 2000);
    tr_server_free(srv);
    tr_runtime_shutdown(rt, 2000);
    tr_runtime_free(rt);
    tr_codec_free(lines);
    printf("consumer: %s\n", ok ? "ok" : "no echo within 5 s");
    return ok ? 0 : 1;
}
