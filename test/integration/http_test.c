/* The HTTP/1.1 layer over real loopback sockets: keep-alive, pipelining,
 * bodies by length and chunked, each limit and its status, malformed
 * input, HTTP/1.0, and curl (a client nobody here wrote). */
#include <criterion/criterion.h>
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

TestSuite(http, .timeout = 30.0);

static int on_request(tr_http_req *req, void *user)
{
    (void)user;
    const char *path = tr_http_req_path(req);
    char out[512];
    if (strcmp(path, "/echo") == 0) {
        size_t len;
        const void *body = tr_http_req_body(req, &len);
        return tr_http_respond(req, 200, "application/octet-stream", body, len);
    }
    if (strcmp(path, "/hdr") == 0) {
        const char *v = tr_http_req_header(req, "x-TEST-header");
        return tr_http_respond(req, 200, "text/plain", v ? v : "-", strlen(v ? v : "-"));
    }
    if (strcmp(path, "/info") == 0) {
        int n = snprintf(out, sizeof(out), "%s %s q=%s v=%d h=%zu", tr_http_req_method(req),
                         tr_http_req_target(req), tr_http_req_query(req),
                         tr_http_req_version(req), tr_http_req_header_count(req));
        return tr_http_respond(req, 200, "text/plain", out, (size_t)n);
    }
    if (strcmp(path, "/silent") == 0) {
        return 0; /* no answer: the layer sends 500 */
    }
    if (strcmp(path, "/") == 0) {
        tr_http_header extra[] = {{"X-Served-By", "troupe"}};
        tr_http_response r = {.status = 200, .content_type = "text/plain",
                              .headers = extra, .nheaders = 1, .body = "hello", .body_len = 5};
        return tr_http_respond_ex(req, &r);
    }
    return tr_http_respond(req, 404, "text/plain", "not found", 9);
}

typedef struct fixture {
    tr_runtime *rt;
    tr_http *http;
    tr_server *srv;
    char addr[80];
} fixture;

static void start(fixture *f, void (*tweak)(tr_http_config *))
{
    f->rt = tr_test_runtime(2);
    tr_http_config hc;
    tr_http_config_defaults(&hc);
    hc.on_request = on_request;
    if (tweak != NULL) {
        tweak(&hc);
    }
    int err = 1;
    f->http = tr_http_new(&hc, &err);
    cr_assert_not_null(f->http, "tr_http_new: %s", tr_strerror(err));
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = "127.0.0.1:0";
    cr_assert_eq(tr_http_apply(f->http, &cfg.conn), 0);
    f->srv = tr_test_server(f->rt, &cfg, f->addr, sizeof(f->addr));
}

static void finish(fixture *f)
{
    cr_assert_eq(tr_server_shutdown(f->srv, 5000), 0);
    tr_server_free(f->srv);
    tr_test_runtime_finish(f->rt);
    tr_http_free(f->http);
}

typedef struct response {
    int status;
    char head[2048];
    char body[4096];
    size_t body_len;
} response;

/* Reads one response: the head up to the blank line, then Content-Length
 * bytes of body. Returns false on EOF or timeout before a whole head. */
static bool read_response_ex(int fd, response *r, bool no_body)
{
    size_t n = 0;
    memset(r, 0, sizeof(*r));
    while (n + 1 < sizeof(r->head)) {
        if (tr_test_sock_recv(fd, r->head + n, 1) != 1) {
            return false;
        }
        n++;
        if (n >= 4 && memcmp(r->head + n - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    r->head[n] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) {
        return false;
    }
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    if (cl != NULL && !no_body) {
        r->body_len = strtoul(cl + 18, NULL, 10);
        cr_assert_lt(r->body_len, sizeof(r->body));
        if (r->body_len > 0 &&
            tr_test_sock_recv(fd, r->body, r->body_len) != (ssize_t)r->body_len) {
            return false;
        }
    }
    return true;
}

static bool read_response(int fd, response *r)
{
    return read_response_ex(fd, r, false);
}

static void expect(int fd, int status, const char *body)
{
    response r;
    cr_assert(read_response(fd, &r), "no response");
    cr_assert_eq(r.status, status, "status %d, want %d; head:\n%s", r.status, status, r.head);
    if (body != NULL) {
        cr_assert_eq(r.body_len, strlen(body), "body %.*s", (int)r.body_len, r.body);
        cr_assert_arr_eq(r.body, body, r.body_len);
    }
}

/* After an error response the server closes: EOF, or a reset when bytes
 * it never read were still in its receive queue. */
static void expect_closed(int fd)
{
    char c;
    ssize_t r = tr_test_sock_recv(fd, &c, 1);
    cr_assert(r == 0 || r == -ECONNRESET, "connection still open (%zd)", r);
}

Test(http, get_keepalive_serves_two_requests_on_one_connection)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    response r;
    cr_assert(read_response(fd, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.head, "\r\nX-Served-By: troupe\r\n"));
    cr_assert_not_null(strstr(r.head, "\r\nContent-Type: text/plain\r\n"));
    cr_assert_null(strstr(r.head, "Connection: close"));
    cr_assert_arr_eq(r.body, "hello", 5);
    cr_assert_eq(tr_test_sock_send_str(fd, "GET /info?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    expect(fd, 200, "GET /info?a=1&b=2 q=a=1&b=2 v=11 h=1");
    cr_assert_eq(tr_test_stats(f.srv).accepted, 1);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, pipelined_requests_are_answered_in_order)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "GET /info?1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                           "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                                           "GET /nope HTTP/1.1\r\n\r\n"
                                           "GET /hdr HTTP/1.1\r\nX-Test-Header: v4\r\n\r\n"),
                 0);
    expect(fd, 200, "GET /info?1 q=1 v=11 h=1");
    expect(fd, 200, "abc");
    expect(fd, 404, "not found");
    expect(fd, 200, "v4");
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

typedef struct read_at_least {
    tr_server *srv;
    uint64_t bytes;
} read_at_least;

static bool server_read(void *arg)
{
    read_at_least *r = arg;
    return tr_test_stats(r->srv).bytes_in >= r->bytes;
}

Test(http, byte_at_a_time_request_is_parsed_once)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    const char *req = "POST /echo HTTP/1.1\r\nx-test-header: a\r\nContent-Length: 5\r\n\r\nhello";
    for (size_t i = 0; req[i] != '\0'; i++) {
        cr_assert_eq(tr_test_sock_send(fd, req + i, 1), 0);
        /* One read per byte: the next goes only once the server read this one. */
        read_at_least wait = {f.srv, i + 1};
        cr_assert(tr_test_wait_until(server_read, &wait, 5000), "byte %zu read", i);
    }
    expect(fd, 200, "hello");
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, chunked_body_is_joined)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           "5\r\nhello\r\n"
                                           "7;ext=1\r\n, world\r\n"
                                           "0\r\nTrailer: x\r\n\r\n"),
                 0);
    expect(fd, 200, "hello, world");
    /* The connection is still usable. */
    cr_assert_eq(tr_test_sock_send_str(fd, "GET / HTTP/1.1\r\n\r\n"), 0);
    expect(fd, 200, "hello");
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, head_request_gets_length_but_no_body)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 0);
    response r;
    cr_assert(read_response_ex(fd, &r, true));
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.head, "\r\nContent-Length: 5\r\n"));
    expect(fd, 200, "hello"); /* the GET's answer follows at once */
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, unanswered_request_gets_500)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "GET /silent HTTP/1.1\r\n\r\n"), 0);
    expect(fd, 500, "no response\n");
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, connection_close_header_closes_after_the_response)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"), 0);
    response r;
    cr_assert(read_response(fd, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.head, "Connection: close\r\n"));
    expect_closed(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, http10_closes_unless_keep_alive)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    response r;
    cr_assert(read_response(fd, &r));
    cr_assert_not_null(strstr(r.head, "Connection: keep-alive\r\n"));
    cr_assert_eq(tr_test_sock_send_str(fd, "GET /info HTTP/1.0\r\n\r\n"), 0);
    cr_assert(read_response(fd, &r));
    cr_assert_arr_eq(r.body, "GET /info q= v=10 h=0", r.body_len);
    cr_assert_not_null(strstr(r.head, "Connection: close\r\n"));
    expect_closed(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

static void small_limits(tr_http_config *hc)
{
    hc->max_header_bytes = 256;
    hc->max_body_bytes = 100;
    hc->max_headers = 4;
    hc->request_timeout_ms = 300;
}

Test(http, header_bytes_over_the_limit_get_431_and_close)
{
    fixture f;
    start(&f, small_limits);
    int fd = tr_test_client(f.addr);
    char req[600];
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Big: %s\r\n\r\n", big);
    cr_assert_eq(tr_test_sock_send_str(fd, req), 0);
    expect(fd, 431, "request header fields too large\n");
    expect_closed(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, too_many_headers_get_431)
{
    fixture f;
    start(&f, small_limits);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n"),
                 0);
    expect(fd, 431, "too many header fields\n");
    expect_closed(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, content_length_over_the_limit_gets_413_before_the_body)
{
    fixture f;
    start(&f, small_limits);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "POST /echo HTTP/1.1\r\nContent-Length: 101\r\n\r\n"), 0);
    expect(fd, 413, "request body too large\n");
    expect_closed(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, chunked_body_over_the_limit_gets_413)
{
    fixture f;
    start(&f, small_limits);
    int fd = tr_test_client(f.addr);
    char req[512];
    char chunk[61];
    memset(chunk, 'z', 60);
    chunk[60] = '\0';
    snprintf(req, sizeof(req),
             "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n%s\r\n3c\r\n%s\r\n",
             chunk, chunk);
    cr_assert_eq(tr_test_sock_send_str(fd, req), 0);
    expect(fd, 413, "request body too large\n");
    expect_closed(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, slow_request_head_gets_408)
{
    fixture f;
    start(&f, small_limits);
    int fd = tr_test_client(f.addr);
    uint64_t t0 = tr_test_now_ms();
    cr_assert_eq(tr_test_sock_send_str(fd, "GET / HTTP/1.1\r\nHost: x\r\n"), 0);
    /* Trickle one more header byte now and then, never finishing. */
    for (int i = 0; i < 3 && tr_test_sock_readable(fd, 50) == 0; i++) {
        tr_test_sock_send_str(fd, "X"); /* paced by a bounded wait for the answer */
    }
    expect(fd, 408, "request timeout\n");
    uint64_t took = tr_test_now_ms() - t0;
    cr_assert_geq(took, 290, "408 after %llu ms", (unsigned long long)took);
    cr_assert_lt(took, 3000, "408 after %llu ms", (unsigned long long)took);
    expect_closed(fd);
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, idle_keepalive_connection_is_not_timed_out_by_the_request_timer)
{
    fixture f;
    start(&f, small_limits);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(fd, "GET / HTTP/1.1\r\n\r\n"), 0);
    expect(fd, 200, "hello");
    tr_test_wait_timer(f.rt, 500); /* past request_timeout_ms */
    cr_assert_eq(tr_test_sock_send_str(fd, "GET / HTTP/1.1\r\n\r\n"), 0);
    expect(fd, 200, "hello");
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

Test(http, malformed_requests_get_400_and_close)
{
    static const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        "GET / HTTP/9.9x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    fixture f;
    start(&f, NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = tr_test_client(f.addr);
        cr_assert_eq(tr_test_sock_send_str(fd, bad[i]), 0);
        response r;
        cr_assert(read_response(fd, &r), "case %zu: no response", i);
        cr_assert_eq(r.status, 400, "case %zu: status %d", i, r.status);
        cr_assert_not_null(strstr(r.head, "Connection: close\r\n"));
        expect_closed(fd);
        close(fd);
    }
    finish(&f);
    tr_test_leak_check();
}

Test(http, expect_100_continue_is_answered_before_the_body)
{
    fixture f;
    start(&f, NULL);
    int fd = tr_test_client(f.addr);
    cr_assert_eq(tr_test_sock_send_str(
                     fd, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
                 0);
    char buf[25];
    cr_assert_eq(tr_test_sock_recv(fd, buf, 25), 25);
    cr_assert_arr_eq(buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    cr_assert_eq(tr_test_sock_send_str(fd, "body"), 0);
    expect(fd, 200, "body");
    close(fd);
    finish(&f);
    tr_test_leak_check();
}

/* ---- curl ---- */

static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    return pclose(p);
}

Test(http, curl_keeps_the_connection_alive_and_posts_chunked)
{
    if (access("/usr/bin/curl", X_OK) != 0) {
        cr_skip_test("curl not installed (Debian package curl; make deps installs it)");
    }
    fixture f;
    start(&f, NULL);
    char cmd[512], out[4096];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/curl -sS --noproxy '*' http://%s/ http://%s/info?x=1 "
             "-H 'X-Test-Header: curl' http://%s/hdr 2>&1",
             f.addr, f.addr, f.addr);
    cr_assert_eq(run(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert_str_eq(out, "helloGET /info?x=1 q=x=1 v=11 h=4curl");
    cr_assert_eq(tr_test_stats(f.srv).accepted, 1, "curl reused its connection");
    snprintf(cmd, sizeof(cmd),
             "printf 'chunked body' | /usr/bin/curl -sS --noproxy '*' -H 'Transfer-Encoding: chunked' "
             "--data-binary @- http://%s/echo 2>&1",
             f.addr);
    cr_assert_eq(run(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert_str_eq(out, "chunked body");
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/curl -s --noproxy '*' -o /dev/null -w '%%{http_code}' "
             "-H \"X-Big: $(head -c 9000 /dev/zero | tr '\\0' a)\" http://%s/ 2>&1",
             f.addr);
    cr_assert_eq(run(cmd, out, sizeof(out)), 0, "curl: %s", out);
    cr_assert_str_eq(out, "431");
    finish(&f);
    tr_test_leak_check();
}
