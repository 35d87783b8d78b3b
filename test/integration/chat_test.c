/* troupe-chat, the real binary, driven over loopback by line clients:
 * registration, nicks and case mapping, channels and their broadcasts,
 * per-sender order, private messages, the numerics for bad input, the
 * 512-byte limit, flood and send-queue disconnects, the shutdown notice. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net.h"
#include "troupe/conn.h"
#include "wait.h"

#ifndef TROUPE_CHAT_PATH
#error "TROUPE_CHAT_PATH: the troupe-chat binary"
#endif

TestSuite(chat, .timeout = 120.0);

/* ---- the server ---- */

typedef struct server {
    pid_t pid;
    FILE *out;     /* its stdout */
    char addr[64]; /* "127.0.0.1:PORT" */
    char http[64]; /* the HTTP listener's */
    char tls[64];  /* the TLS listener's, if asked for */
} server;

static void start_server(server *s, const char *extra)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "exec %s --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --workers 2 %s",
             TROUPE_CHAT_PATH,
             extra != NULL ? extra : "");
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    s->pid = fork();
    cr_assert_geq(s->pid, 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no server behind */
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    s->out = fdopen(pipefd[0], "r");
    char line[256];
    s->addr[0] = s->http[0] = s->tls[0] = '\0';
    while ((s->addr[0] == '\0' || s->http[0] == '\0') && fgets(line, sizeof(line), s->out) != NULL) {
        sscanf(line, "IRC on %63s", s->addr);
        sscanf(line, "HTTP on %63s", s->http);
        sscanf(line, "IRC over TLS on %63s", s->tls); /* printed before the HTTP line */
    }
    cr_assert_neq(s->addr[0], '\0', "troupe-chat printed its address");
    cr_assert_neq(s->http[0], '\0', "and its HTTP address");
}

/* SIGTERM, then its exit status. */
static int stop_server(server *s)
{
    kill(s->pid, SIGTERM);
    int status = -1;
    waitpid(s->pid, &status, 0);
    fclose(s->out);
    return status;
}

static long server_rss_kb(const server *s)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)s->pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb;
}

/* Runs cmd with sh, its output (up to cap - 1 bytes) into out; returns
 * its wait status. */
static int run_capture(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    return pclose(p);
}

/* ---- a line client ---- */

typedef struct client {
    int fd;
    char buf[65536];
    size_t len;
} client;

static void client_open(client *c, const server *s)
{
    c->fd = tr_test_sock_connect(s->addr, NULL, 5000);
    cr_assert_geq(c->fd, 0, "connect %s", s->addr);
    c->len = 0;
}

static void sendf(client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sendf(client *c, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    memcpy(line + n, "\r\n", 2);
    cr_assert_eq(tr_test_sock_send(c->fd, line, (size_t)n + 2), 0);
}

/* The next line (without CR LF) into out; false at EOF or after timeout. */
static bool next_line(client *c, char *out, size_t cap, int timeout_ms)
{
    uint64_t end = tr_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);
            size_t keep = n > 0 && c->buf[n - 1] == '\r' ? n - 1 : n;
            snprintf(out, cap, "%.*s", (int)keep, c->buf);
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return true;
        }
        uint64_t now = tr_test_now_ms();
        if (c->len == sizeof(c->buf)) {
            return false;
        }
        if (tr_test_sock_readable(c->fd, now >= end ? 0 : (int)(end - now)) <= 0) {
            return false;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r <= 0) {
            return false;
        }
        c->len += (size_t)r;
    }
}

/* Reads lines until one contains `want`; fails the test after 5 s. The
 * line goes to out (if not NULL). */
static void expect(client *c, const char *want, char *out, size_t cap)
{
    char line[1024];
    while (next_line(c, line, sizeof(line), 5000)) {
        if (strstr(line, want) != NULL) {
            if (out != NULL) {
                snprintf(out, cap, "%s", line);
            }
            return;
        }
    }
    cr_assert_fail("no line with \"%s\"", want);
}

/* True if no line containing `what` arrives within ms. */
static bool silent_about(client *c, const char *what, int ms)
{
    char line[1024];
    while (next_line(c, line, sizeof(line), ms)) {
        if (strstr(line, what) != NULL) {
            return false;
        }
    }
    return true;
}

static bool at_eof(client *c, int timeout_ms)
{
    char line[1024];
    while (next_line(c, line, sizeof(line), timeout_ms)) {
    }
    return tr_test_sock_peek(c->fd, timeout_ms) == 0 || tr_test_sock_peek(c->fd, 0) == -ECONNRESET;
}

static void login_any_motd(client *c, const server *s, const char *nick)
{
    client_open(c, s);
    sendf(c, "NICK %s", nick);
    sendf(c, "USER %s 0 * :%s the tester", nick, nick);
    expect(c, " 001 ", NULL, 0);
    expect(c, "MOTD", NULL, 0); /* 422 MOTD File is missing, or 376 End of /MOTD */
}

static void join(client *c, const char *nick, const char *chan)
{
    sendf(c, "JOIN %s", chan);
    char want[128];
    snprintf(want, sizeof(want), ":%s!", nick);
    expect(c, want, NULL, 0); /* our JOIN */
    expect(c, " 366 ", NULL, 0);
}

static void client_close(client *c)
{
    close(c->fd);
}

/* ---- tests ---- */

Test(chat, registration_welcome_isupport_and_cap)
{
    server s;
    start_server(&s, NULL);
    client a;
    client_open(&a, &s);
    sendf(&a, "CAP LS 302");
    expect(&a, "CAP * LS", NULL, 0);
    sendf(&a, "NICK alice");
    sendf(&a, "USER alice 0 * :Alice A");
    cr_assert(silent_about(&a, " 001 ", 300), "registration waits for CAP END");
    sendf(&a, "CAP END");
    char line[1024];
    expect(&a, " 001 alice :Welcome", line, sizeof(line));
    cr_assert_not_null(strstr(line, "alice!alice@127.0.0.1"), "%s", line);
    expect(&a, " 002 ", NULL, 0);
    expect(&a, " 003 ", NULL, 0);
    expect(&a, " 004 ", NULL, 0);
    expect(&a, " 005 ", line, sizeof(line));
    cr_assert_not_null(strstr(line, "CASEMAPPING=rfc1459"), "%s", line);
    cr_assert_not_null(strstr(line, "CHANTYPES=#"), "%s", line);
    cr_assert_not_null(strstr(line, "NICKLEN=30"), "%s", line);
    expect(&a, " 422 ", NULL, 0);
    sendf(&a, "PING :abc");
    expect(&a, "PONG", line, sizeof(line));
    cr_assert_not_null(strstr(line, ":abc"), "%s", line);
    client_close(&a);
    cr_assert_eq(stop_server(&s), 0);
}

Test(chat, nick_collisions_under_rfc1459_case_mapping)
{
    server s;
    start_server(&s, NULL);
    client a, b;
    login_any_motd(&a, &s, "Alice[1]");
    client_open(&b, &s);
    sendf(&b, "NICK alice{1}"); /* the same nick under rfc1459 */
    expect(&b, " 433 * alice{1} :Nickname is already in use", NULL, 0);
    sendf(&b, "NICK 1bad");
    expect(&b, " 432 ", NULL, 0);
    sendf(&b, "NICK");
    expect(&b, " 431 ", NULL, 0);
    sendf(&b, "JOIN #x");
    expect(&b, " 451 ", NULL, 0);
    sendf(&b, "NICK bob");
    sendf(&b, "USER bob 0 * :Bob");
    expect(&b, " 001 bob ", NULL, 0);
    /* A quit frees the nick. */
    sendf(&a, "QUIT :bye");
    expect(&a, "ERROR :Closing Link", NULL, 0);
    cr_assert(at_eof(&a, 3000));
    client c;
    client_open(&c, &s);
    bool got = false;
    for (int i = 0; i < 50 && !got; i++) {
        sendf(&c, "NICK ALICE[1]");
        char line[1024];
        while (next_line(&c, line, sizeof(line), 200)) {
            got |= strstr(line, " 433 ") == NULL && strstr(line, "NICK") != NULL;
            if (strstr(line, " 433 ") != NULL) {
                break;
            }
        }
        sendf(&c, "USER c 0 * :C");
        got |= !silent_about(&c, " 001 ", 200);
    }
    cr_assert(got, "the freed nick can be taken again");
    client_close(&b);
    client_close(&c);
    cr_assert_eq(stop_server(&s), 0);
}

Test(chat, channel_join_names_privmsg_part_topic_list_who_kick)
{
    server s;
    start_server(&s, NULL);
    client a, b;
    login_any_motd(&a, &s, "alice");
    login_any_motd(&b, &s, "bob");
    sendf(&a, "JOIN #Test");
    char line[1024];
    expect(&a, ":alice!alice@127.0.0.1 JOIN #Test", NULL, 0);
    expect(&a, " 353 alice = #Test :@alice", NULL, 0);
    expect(&a, " 366 alice #Test ", NULL, 0);
    sendf(&b, "JOIN #test"); /* the same channel, another case */
    expect(&b, "JOIN #Test", NULL, 0);
    expect(&b, " 353 ", line, sizeof(line));
    cr_assert_not_null(strstr(line, "@alice"), "%s", line);
    cr_assert_not_null(strstr(line, "bob"), "%s", line);
    expect(&a, ":bob!bob@127.0.0.1 JOIN #Test", NULL, 0);

    sendf(&a, "PRIVMSG #test :hello bob");
    expect(&b, ":alice!alice@127.0.0.1 PRIVMSG #test :hello bob", NULL, 0);
    sendf(&a, "PRIVMSG bob :just you");
    expect(&b, ":alice!alice@127.0.0.1 PRIVMSG bob :just you", NULL, 0);
    sendf(&a, "PRIVMSG nobody :hi");
    expect(&a, " 401 alice nobody :No such nick", NULL, 0);

    sendf(&b, "TOPIC #test :the topic");
    expect(&a, ":bob!bob@127.0.0.1 TOPIC #Test :the topic", NULL, 0);
    sendf(&a, "TOPIC #test");
    expect(&a, " 332 alice #Test :the topic", NULL, 0);
    sendf(&a, "LIST");
    expect(&a, " 321 ", NULL, 0);
    expect(&a, " 322 alice #Test 2 :the topic", NULL, 0);
    expect(&a, " 323 ", NULL, 0);
    sendf(&a, "WHO #test");
    expect(&a, " 352 ", NULL, 0);
    expect(&a, " 315 ", NULL, 0);

    sendf(&b, "KICK #test alice :no");
    expect(&b, " 482 bob #Test :You're not channel operator", NULL, 0);
    sendf(&a, "KICK #test bob :out");
    expect(&a, ":alice!alice@127.0.0.1 KICK #Test bob :out", NULL, 0);
    expect(&b, "KICK #Test bob :out", NULL, 0);
    sendf(&b, "PRIVMSG #test :still here?");
    expect(&b, " 404 bob #test :Cannot send to channel", NULL, 0);
    sendf(&b, "JOIN #test");
    expect(&a, "JOIN #Test", NULL, 0);
    sendf(&b, "PART #test :later");
    expect(&a, ":bob!bob@127.0.0.1 PART #Test :later", NULL, 0);
    sendf(&b, "PART #test");
    expect(&b, " 442 ", NULL, 0);
    client_close(&a);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}

Test(chat, nick_and_quit_reach_each_sharing_user_once)
{
    server s;
    start_server(&s, NULL);
    client a, b, c;
    login_any_motd(&a, &s, "alice");
    login_any_motd(&b, &s, "bob");
    login_any_motd(&c, &s, "carol");
    join(&a, "alice", "#one");
    join(&a, "alice", "#two");
    join(&b, "bob", "#one");
    join(&b, "bob", "#two"); /* bob shares two channels with alice */
    join(&c, "carol", "#two");
    expect(&a, "carol", NULL, 0);
    sendf(&a, "NICK alicia");
    expect(&a, ":alice!alice@127.0.0.1 NICK :alicia", NULL, 0);
    expect(&b, ":alice!alice@127.0.0.1 NICK :alicia", NULL, 0);
    expect(&c, ":alice!alice@127.0.0.1 NICK :alicia", NULL, 0);
    cr_assert(silent_about(&b, "NICK :alicia", 500), "bob heard it once");
    sendf(&a, "QUIT :gone fishing");
    expect(&b, ":alicia!alice@127.0.0.1 QUIT :Quit: gone fishing", NULL, 0);
    expect(&c, ":alicia!alice@127.0.0.1 QUIT :Quit: gone fishing", NULL, 0);
    cr_assert(silent_about(&b, "QUIT", 500), "bob heard the quit once");
    /* A dropped connection is a quit too. */
    tr_test_sock_reset(c.fd);
    expect(&b, ":carol!carol@127.0.0.1 QUIT :", NULL, 0);
    client_close(&a);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}

Test(chat, one_senders_lines_arrive_in_order)
{
    server s;
    start_server(&s, "--flood 1000:1000");
    client a, b;
    login_any_motd(&a, &s, "alice");
    login_any_motd(&b, &s, "bob");
    join(&a, "alice", "#order");
    join(&b, "bob", "#order");
    for (int i = 0; i < 500; i++) {
        sendf(&a, "PRIVMSG #order :line %d", i);
    }
    for (int i = 0; i < 500; i++) {
        char want[64], line[1024];
        snprintf(want, sizeof(want), "PRIVMSG #order :line %d", i);
        cr_assert(next_line(&b, line, sizeof(line), 5000), "line %d arrived", i);
        if (strstr(line, "PRIVMSG") == NULL) {
            i--;
            continue;
        }
        cr_assert_not_null(strstr(line, want), "line %d in order: %s", i, line);
    }
    client_close(&a);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}

Test(chat, numerics_for_bad_input_keep_the_connection)
{
    server s;
    start_server(&s, NULL);
    client a;
    login_any_motd(&a, &s, "alice");
    sendf(&a, "FROB x");
    expect(&a, " 421 alice FROB :Unknown command", NULL, 0);
    sendf(&a, "JOIN");
    expect(&a, " 461 alice JOIN :Not enough parameters", NULL, 0);
    sendf(&a, "JOIN nochan");
    expect(&a, " 403 alice nochan :No such channel", NULL, 0);
    sendf(&a, "PRIVMSG");
    expect(&a, " 411 ", NULL, 0);
    sendf(&a, "PRIVMSG #x");
    expect(&a, " 412 ", NULL, 0);
    sendf(&a, "PRIVMSG #x :not a member");
    expect(&a, " 404 ", NULL, 0);
    sendf(&a, "USER again 0 * :x");
    expect(&a, " 462 ", NULL, 0);
    char big[700];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sendf(&a, "PRIVMSG #x :%s", big);
    expect(&a, " 417 ", NULL, 0);
    sendf(&a, "PING :still");
    expect(&a, ":still", NULL, 0);
    client_close(&a);
    cr_assert_eq(stop_server(&s), 0);
}

Test(chat, a_flood_is_cut_with_excess_flood)
{
    server s;
    start_server(&s, "--flood 10:1");
    client a;
    login_any_motd(&a, &s, "alice");
    for (int i = 0; i < 40; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "PING :%d\r\n", i);
        if (tr_test_sock_send(a.fd, line, (size_t)n) < 0) {
            break;
        }
    }
    expect(&a, "ERROR :Closing Link: 127.0.0.1 (Excess Flood)", NULL, 0);
    cr_assert(at_eof(&a, 3000));
    client_close(&a);
    cr_assert_eq(stop_server(&s), 0);
}

static void http_get(const server *s, const char *path, char *out, size_t cap);
static unsigned long long metric(const char *text, const char *name);

Test(chat, a_reader_that_never_reads_is_cut_and_memory_stays_bounded)
{
    server s;
    start_server(&s, "--flood 100000:100000 --sendq 65536");
    client slow;
    /* A small receive window, set before connecting. */
    slow.fd = tr_test_sock_new(s.addr, 4096);
    cr_assert_geq(slow.fd, 0);
    cr_assert_eq(tr_test_sock_connect_fd(slow.fd, s.addr, 5000), 0);
    slow.len = 0;
    sendf(&slow, "NICK slow");
    sendf(&slow, "USER slow 0 * :Slow");
    expect(&slow, " 001 ", NULL, 0);
    join(&slow, "slow", "#big");
    client a, b;
    login_any_motd(&a, &s, "alice");
    login_any_motd(&b, &s, "bob");
    join(&a, "alice", "#big");
    join(&b, "bob", "#big");
    char text[480];
    memset(text, 'y', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    /* Up to 40 MB for slow, who reads nothing; bob keeps up with alice
     * (every 50 lines we wait for him to see the last one) and sees
     * slow go. */
    bool cut = false;
    for (int i = 0; i < 80000 && !cut; i++) {
        sendf(&a, "PRIVMSG #big :%d %s", i, text);
        if (i % 50 != 49) { /* 25 KB: within the 64 KiB send queue */
            continue;
        }
        char want[32], line[1024];
        snprintf(want, sizeof(want), "#big :%d ", i);
        bool seen = false;
        while (!seen && next_line(&b, line, sizeof(line), 5000)) {
            cut |= strstr(line, ":slow!slow@127.0.0.1 QUIT :SendQ exceeded") != NULL;
            seen = strstr(line, want) != NULL;
        }
        cr_assert(seen, "bob saw line %d (last: %.80s, peek %d)", i, line, tr_test_sock_peek(b.fd, 0));
    }
    char line[1024];
    while (!cut && next_line(&b, line, sizeof(line), 10000)) {
        cut = strstr(line, ":slow!slow@127.0.0.1 QUIT :SendQ exceeded") != NULL;
    }
    cr_assert(cut, "slow was closed for its send queue");
    static char body[65536];
    http_get(&s, "/metrics", body, sizeof(body));
    cr_assert_geq(metric(body, "troupe_chat_sendq_disconnects_total"), 1);
    cr_assert_geq(metric(body, "troupe_chat_delivery_drops_total"), 1, "the line slow's queue refused");
    long kb = server_rss_kb(&s);
    cr_assert_gt(kb, 0);
    cr_assert_lt(kb, 200 * 1024, "server RSS %ld kB", kb);
    client_close(&slow);
    client_close(&a);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}

Test(chat, shutdown_tells_every_user)
{
    server s;
    start_server(&s, NULL);
    client c[20];
    for (int i = 0; i < 20; i++) {
        char nick[16];
        snprintf(nick, sizeof(nick), "user%d", i);
        login_any_motd(&c[i], &s, nick);
    }
    kill(s.pid, SIGTERM);
    for (int i = 0; i < 20; i++) {
        expect(&c[i], "NOTICE user", NULL, 0);
        expect(&c[i], "ERROR :Closing Link: 127.0.0.1 (Server shutting down)", NULL, 0);
        cr_assert(at_eof(&c[i], 5000));
        client_close(&c[i]);
    }
    int status = -1;
    waitpid(s.pid, &status, 0);
    fclose(s.out);
    cr_assert_eq(status, 0);
}

Test(chat, pipelined_lines_wait_for_registration_and_joins)
{
    server s;
    start_server(&s, NULL);
    client b;
    login_any_motd(&b, &s, "bob");
    join(&b, "bob", "#pipe");
    client a;
    client_open(&a, &s);
    /* Everything at once, as `printf ... | nc` sends it. */
    const char *all = "NICK alice\r\nUSER alice 0 * :A\r\nJOIN #pipe\r\nPRIVMSG #pipe :first\r\n"
                      "PRIVMSG #pipe :second\r\nPART #pipe :done\r\n";
    cr_assert_eq(tr_test_sock_send(a.fd, all, strlen(all)), 0);
    expect(&a, " 001 alice ", NULL, 0);
    expect(&b, ":alice!alice@127.0.0.1 JOIN #pipe", NULL, 0);
    expect(&b, ":alice!alice@127.0.0.1 PRIVMSG #pipe :first", NULL, 0);
    expect(&b, ":alice!alice@127.0.0.1 PRIVMSG #pipe :second", NULL, 0);
    expect(&b, ":alice!alice@127.0.0.1 PART #pipe :done", NULL, 0);
    cr_assert(silent_about(&a, " 451 ", 300), "nothing was refused as unregistered");
    client_close(&a);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}

/* Debian's `ii`, an IRC client nobody here wrote: it joins a channel
 * through its FIFO, our raw client talks there, and ii's log shows it. */
Test(chat, the_ii_client_joins_and_talks)
{
    if (access("/usr/bin/ii", X_OK) != 0) {
        cr_skip_test("ii is not installed (Debian package ii; make deps installs it)");
    }
    server s;
    start_server(&s, NULL);
    char dir[] = "/tmp/troupe-ii-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char host[64], port[16];
    snprintf(host, sizeof(host), "%s", s.addr);
    char *colon = strrchr(host, ':');
    *colon = '\0';
    snprintf(port, sizeof(port), "%s", colon + 1);
    pid_t ii = fork();
    cr_assert_geq(ii, 0);
    if (ii == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execl("/usr/bin/ii", "ii", "-s", host, "-p", port, "-n", "iibot", "-i", dir, (char *)NULL);
        _exit(127);
    }
    /* ii makes DIR/HOST/in once it is connected. */
    char in[160], out[200], chan_in[200];
    snprintf(in, sizeof(in), "%s/%s/in", dir, host);
    snprintf(out, sizeof(out), "%s/%s/#ii/out", dir, host);
    snprintf(chan_in, sizeof(chan_in), "%s/%s/#ii/in", dir, host);
    for (int i = 0; i < 500 && access(in, W_OK) != 0; i++) {
        poll(NULL, 0, 10);
    }
    cr_assert_eq(access(in, W_OK), 0, "ii connected and made %s", in);
    client b;
    login_any_motd(&b, &s, "bob");
    join(&b, "bob", "#ii");
    int fd = open(in, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "/j #ii\n", 7), 7);
    close(fd);
    expect(&b, ":iibot!iibot@127.0.0.1 JOIN #ii", NULL, 0);
    sendf(&b, "PRIVMSG #ii :hello ii");
    for (int i = 0; i < 500 && access(chan_in, W_OK) != 0; i++) {
        poll(NULL, 0, 10);
    }
    fd = open(chan_in, O_WRONLY);
    cr_assert_geq(fd, 0, "ii made %s", chan_in);
    cr_assert_eq(write(fd, "hi from ii\n", 11), 11);
    close(fd);
    expect(&b, ":iibot!iibot@127.0.0.1 PRIVMSG #ii :hi from ii", NULL, 0);
    /* ii wrote what it received to its log. */
    bool logged = false;
    for (int i = 0; i < 500 && !logged; i++) {
        FILE *f = fopen(out, "r");
        char line[512];
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            logged |= strstr(line, "<bob> hello ii") != NULL;
        }
        if (f != NULL) {
            fclose(f);
        }
        if (!logged) {
            poll(NULL, 0, 10);
        }
    }
    cr_assert(logged, "ii logged bob's line in %s", out);
    kill(ii, SIGTERM);
    waitpid(ii, NULL, 0);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
    char rm[256];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
    cr_assert_eq(system(rm), 0);
}

/* One HTTP/1.0 GET; the whole response (head and body) into out. */
static void http_get(const server *s, const char *path, char *out, size_t cap)
{
    int fd = tr_test_sock_connect(s->http, NULL, 5000);
    cr_assert_geq(fd, 0);
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    cr_assert_eq(tr_test_sock_send(fd, req, strlen(req)), 0);
    size_t got = 0;
    ssize_t r = tr_test_sock_recv_to_eof(fd, out, cap - 1, &got);
    out[r >= 0 ? (size_t)r : got] = '\0';
    close(fd);
}

static unsigned long long metric(const char *text, const char *name)
{
    char want[128];
    snprintf(want, sizeof(want), "\n%s ", name);
    const char *p = strstr(text, want);
    cr_assert_not_null(p, "metric %s", name);
    return strtoull(p + strlen(want), NULL, 10);
}

/* A labelled series, e.g. name = troupe_worker_turns_total, labels =
 * worker="0"; its value as a double. */
static double series(const char *text, const char *name, const char *labels)
{
    char want[160];
    snprintf(want, sizeof(want), "\n%s{%s} ", name, labels);
    const char *p = strstr(text, want);
    cr_assert_not_null(p, "series %s{%s} in:\n%s", name, labels, text);
    return strtod(p + strlen(want), NULL);
}

/* The sum of a per-worker series over the server's 2 workers. */
static double over_workers(const char *text, const char *name)
{
    double sum = 0;
    for (int w = 0; w < 2; w++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "worker=\"%d\"", w);
        double v = series(text, name, labels);
        cr_assert_geq(v, 0, "%s{%s}", name, labels);
        sum += v;
    }
    return sum;
}

Test(chat, http_page_healthz_and_metrics_reflect_what_happened)
{
    server s;
    start_server(&s, NULL);
    static char body[65536];
    http_get(&s, "/healthz", body, sizeof(body));
    cr_assert_not_null(strstr(body, "200 OK"), "%s", body);
    cr_assert_not_null(strstr(body, "\r\n\r\nok\n"), "%s", body);
    http_get(&s, "/", body, sizeof(body));
    cr_assert_not_null(strstr(body, "text/html"), "%.200s", body);
    cr_assert_not_null(strstr(body, "new WebSocket"), "the page is the IRC client");
    http_get(&s, "/nope", body, sizeof(body));
    cr_assert_not_null(strstr(body, " 404 "), "%.100s", body);

    client a, b;
    login_any_motd(&a, &s, "alice");
    login_any_motd(&b, &s, "bob");
    join(&a, "alice", "#m");
    join(&b, "bob", "#m");
    sendf(&a, "PRIVMSG #m :one");
    sendf(&a, "PRIVMSG #m :two");
    expect(&b, "PRIVMSG #m :two", NULL, 0);
    http_get(&s, "/metrics", body, sizeof(body));
    cr_assert_eq(metric(body, "troupe_chat_connections"), 2);
    cr_assert_eq(metric(body, "troupe_chat_users"), 2);
    cr_assert_eq(metric(body, "troupe_chat_channels"), 1);
    cr_assert_geq(metric(body, "troupe_chat_registrations_total"), 2);
    cr_assert_geq(metric(body, "troupe_chat_lines_in_total"), 8);
    cr_assert_geq(metric(body, "troupe_chat_deliveries_total"), 2, "alice's two lines to bob");
    cr_assert_not_null(strstr(body, "troupe_server_accepted_total{listener=\"irc\"} 2"), "%s", body);
    /* The workers' load and the mailbox depths (start_server: --workers 2). */
    cr_assert_gt(over_workers(body, "troupe_worker_busy_seconds_total"), 0);
    cr_assert_gt(over_workers(body, "troupe_worker_turns_total"), 0);
    cr_assert_gt(over_workers(body, "troupe_worker_messages_total"), 0);
    cr_assert_gt(over_workers(body, "troupe_worker_sleeps_total"), 0);
    /* At least the registry, #m and alice's and bob's connections. */
    cr_assert_geq(over_workers(body, "troupe_worker_actors"), 4);
    cr_assert_not_null(strstr(body, "# TYPE troupe_worker_busy_seconds_total counter\n"), "%s", body);
    cr_assert_not_null(strstr(body, "# TYPE troupe_worker_actors gauge\n"), "%s", body);
    cr_assert_geq(series(body, "troupe_chat_mailbox_depth", "actor=\"registry\""), 0);
    unsigned long long max = metric(body, "troupe_chat_channel_mailbox_depth_max");
    unsigned long long sum = metric(body, "troupe_chat_channel_mailbox_depth_sum");
    cr_assert_leq(max, sum);
    /* Counters only grow. A worker adds its turns once it ends a batch, a
     * moment after the turns themselves: scrape until they show. */
    double busy = over_workers(body, "troupe_worker_busy_seconds_total");
    double turns = over_workers(body, "troupe_worker_turns_total");
    sendf(&a, "PRIVMSG #m :three");
    expect(&b, "PRIVMSG #m :three", NULL, 0);
    bool moved = false;
    for (int i = 0; i < 100 && !moved; i++) {
        http_get(&s, "/metrics", body, sizeof(body));
        cr_assert_geq(over_workers(body, "troupe_worker_busy_seconds_total"), busy);
        cr_assert_geq(over_workers(body, "troupe_worker_turns_total"), turns);
        moved = over_workers(body, "troupe_worker_turns_total") > turns;
    }
    cr_assert(moved, "turns ran since the first scrape");
    client_close(&a);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}

Test(chat, metrics_past_64_kib_come_whole)
{
    /* 400 workers: their series alone are about 90 KB, past the first
     * buffer /metrics tries. */
    server s;
    start_server(&s, "--workers 400");
    static char body[1 << 20];
    http_get(&s, "/metrics", body, sizeof(body));
    cr_assert_not_null(strstr(body, "200 OK"), "%.200s", body);
    cr_assert_gt(strlen(body), 64 * 1024, "%zu bytes", strlen(body));
    cr_assert_eq(metric(body, "troupe_workers"), 400);
    cr_assert_geq(series(body, "troupe_worker_sleeps_total", "worker=\"399\""), 0);
    /* The last family, to the end of its last line. */
    char last[160];
    snprintf(last, sizeof(last), "troupe_server_errors_total{listener=\"irc\",class=\"%s\"} 0\n",
             tr_error_class_name((tr_error_class)(TR_ERR__COUNT - 1)));
    size_t n = strlen(body), k = strlen(last);
    cr_assert(n > k && strcmp(body + n - k, last) == 0, "the text is cut: ...%s", body + n - 80);
    cr_assert_eq(stop_server(&s), 0);
}

/* Bad values are refused with a line naming the option, exit status 2. */
Test(chat, bad_options_are_refused_with_a_reason)
{
    static const struct {
        const char *args, *says;
    } cases[] = {
        {"--workers abc", "--workers wants a whole number"},
        {"--workers 5000", "--workers wants a whole number"},
        {"--max-clients -1", "--max-clients wants a whole number"},
        {"--ping-timeout 0", "--ping-timeout wants a whole number"},
        {"--sendq 12x", "--sendq wants a whole number"},
        {"--flood 3", "--flood wants BURST:PER_S"},
        {"--flood 0:1", "--flood wants BURST:PER_S"},
        {"--log-level loud", "--log-level wants debug"},
        {"--cert c.pem", "go together"},
        {"--frobnicate 1", "unknown option --frobnicate"},
        {"--motd", "--motd wants a value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "%s %s 2>&1", TROUPE_CHAT_PATH, cases[i].args);
        char out[4096];
        int status = run_capture(cmd, out, sizeof(out));
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "%s: status %d", cases[i].args,
                  status);
        cr_assert_not_null(strstr(out, cases[i].says), "%s said:\n%s", cases[i].args, out);
        cr_assert_not_null(strstr(out, "usage: troupe-chat"), "%s: and the usage", cases[i].args);
    }
}

/* The WebSocket endpoint, with a client nobody here wrote (Debian's
 * python3-websockets): a web user and a TCP user talk in one channel. */
Test(chat, a_websocket_user_and_a_tcp_user_share_a_channel)
{
    if (system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") != 0) {
        cr_skip_test("python3-websockets is not installed (make deps installs it)");
    }
    server s;
    start_server(&s, NULL);
    char cmd[512], out[4096];
    snprintf(cmd, sizeof(cmd), "timeout 30 /usr/bin/python3 %s/chat_ws.py %s %s 2>&1",
             TROUPE_TEST_DIR, s.http, s.addr);
    int status = run_capture(cmd, out, sizeof(out));
    cr_assert_eq(status, 0, "chat_ws.py failed:\n%s", out);
    cr_assert_not_null(strstr(out, "WS GOT: :tcpuser!t@127.0.0.1 PRIVMSG #web :hello from tcp"), "%s", out);
    cr_assert_not_null(strstr(out, "TCP GOT browser line"), "%s", out);
    cr_assert_eq(stop_server(&s), 0);
}

/* The page itself, in Debian's headless Chromium driven over the DevTools
 * protocol: two pages type nicks and lines into the page's own form, a raw
 * TCP client shares their channel, and chat_browser.py checks each page's
 * DOM for every line. */
Test(chat, two_browser_pages_and_a_tcp_user_talk_in_one_channel)
{
    if (access("/usr/bin/chromium", X_OK) != 0) {
        cr_skip_test("chromium is not installed (Debian package chromium; make deps installs it)");
    }
    if (system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") != 0) {
        cr_skip_test("python3-websockets is not installed (make deps installs it)");
    }
    server s;
    start_server(&s, NULL);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "timeout 90 /usr/bin/python3 %s/chat_browser.py %s %s 2>&1",
             TROUPE_TEST_DIR, s.http, s.addr);
    static char out[16384];
    int status = run_capture(cmd, out, sizeof(out));
    cr_assert_eq(status, 0, "chat_browser.py failed:\n%s", out);
    cr_assert_not_null(strstr(out, "everyone saw <carol> same here"), "%s", out);
    cr_assert_not_null(strstr(out, "chat_browser.py: ok"), "%s", out);
    cr_assert_eq(stop_server(&s), 0);
}

/* The TLS listener, with Debian's openssl s_client as the IRC client. */
Test(chat, irc_over_tls_with_openssl_s_client)
{
    char dir[] = "/tmp/troupe-chat-tls-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1",
             dir, dir);
    cr_assert_eq(system(cmd), 0, "openssl (Debian package openssl) makes a certificate");
    char extra[512];
    snprintf(extra, sizeof(extra), "--tls-listen 127.0.0.1:0 --cert %s/cert.pem --key %s/key.pem",
             dir, dir);
    server s;
    start_server(&s, extra);
    const char *tls_addr = s.tls;
    cr_assert_neq(tls_addr[0], '\0', "troupe-chat printed its TLS address");
    snprintf(cmd, sizeof(cmd),
             "printf 'NICK secure\\r\\nUSER s 0 * :S\\r\\nQUIT :bye\\r\\n' | "
             "timeout 20 openssl s_client -connect %s -quiet -ign_eof 2>/dev/null",
             tls_addr);
    static char out[16384];
    run_capture(cmd, out, sizeof(out));
    cr_assert_not_null(strstr(out, " 001 secure :Welcome"), "%s", out);
    cr_assert_not_null(strstr(out, "ERROR :Closing Link"), "%s", out);
    cr_assert_eq(stop_server(&s), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* A line of the server's stdout containing `want`, within timeout_ms, into
 * out; false at its end or after the timeout. */
static bool server_says(server *s, const char *want, char *out, size_t cap, int timeout_ms)
{
    int fd = fileno(s->out);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uint64_t end = tr_test_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        while (fgets(out, (int)cap, s->out) != NULL) {
            if (strstr(out, want) != NULL) {
                return true;
            }
        }
        if (feof(s->out)) {
            return false;
        }
        clearerr(s->out);
        uint64_t now = tr_test_now_ms();
        if (now >= end) {
            return false;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        poll(&pfd, 1, (int)(end - now));
    }
}

/* The subject of the certificate the TLS listener at addr presents
 * ("subject=CN = ..."), as Debian's openssl s_client sees it. */
static void tls_subject(const char *addr, char *out, size_t cap)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "timeout 20 openssl s_client -connect %s </dev/null 2>/dev/null | "
             "openssl x509 -noout -subject 2>/dev/null",
             addr);
    run_capture(cmd, out, cap);
}

static void make_cert(const char *dir, const char *name)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=%s -keyout %s/%s-key.pem -out %s/%s-cert.pem >/dev/null 2>&1",
             name, dir, name, dir, name);
    cr_assert_eq(system(cmd), 0, "openssl (Debian package openssl) makes a certificate");
}

/* SIGHUP reads the certificate and key again: new handshakes get the new
 * pair; a pair that does not load is refused and the old one stays. */
Test(chat, sighup_reloads_the_tls_certificate)
{
    char dir[] = "/tmp/troupe-chat-hup-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    make_cert(dir, "first");
    make_cert(dir, "second");
    char cert[256], key[256], path[256], extra[640], got[512];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(path, sizeof(path), "%s/first-cert.pem", dir);
    cr_assert_eq(rename(path, cert), 0);
    snprintf(path, sizeof(path), "%s/first-key.pem", dir);
    cr_assert_eq(rename(path, key), 0);
    snprintf(extra, sizeof(extra), "--tls-listen 127.0.0.1:0 --cert %s --key %s", cert, key);
    server s;
    start_server(&s, extra);
    cr_assert_neq(s.tls[0], '\0', "troupe-chat printed its TLS address");
    tls_subject(s.tls, got, sizeof(got));
    cr_assert_not_null(strstr(got, "CN = first"), "%s", got);

    /* New files alone change nothing. */
    snprintf(path, sizeof(path), "%s/second-cert.pem", dir);
    cr_assert_eq(rename(path, cert), 0);
    snprintf(path, sizeof(path), "%s/second-key.pem", dir);
    cr_assert_eq(rename(path, key), 0);
    tls_subject(s.tls, got, sizeof(got));
    cr_assert_not_null(strstr(got, "CN = first"), "%s", got);

    char line[512];
    cr_assert_eq(kill(s.pid, SIGHUP), 0);
    cr_assert(server_says(&s, "SIGHUP: TLS reload", line, sizeof(line), 10000));
    cr_assert_not_null(strstr(line, "reload done"), "%s", line);
    tls_subject(s.tls, got, sizeof(got));
    cr_assert_not_null(strstr(got, "CN = second"), "%s", got);

    /* A key that does not parse: refused, said, the second pair stays. */
    FILE *f = fopen(key, "w");
    cr_assert_not_null(f);
    fputs("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    cr_assert_eq(kill(s.pid, SIGHUP), 0);
    cr_assert(server_says(&s, "SIGHUP: TLS reload", line, sizeof(line), 10000));
    cr_assert_null(strstr(line, "reload done"), "%s", line);
    tls_subject(s.tls, got, sizeof(got));
    cr_assert_not_null(strstr(got, "CN = second"), "%s", got);

    cr_assert_eq(stop_server(&s), 0);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Past --max-clients a new connection is told why and closed; once
 * someone leaves, a new one is welcome. */
Test(chat, max_clients_closes_the_one_too_many)
{
    server s;
    start_server(&s, "--max-clients 2");
    client a, b, c;
    login_any_motd(&a, &s, "alice");
    login_any_motd(&b, &s, "bob");
    client_open(&c, &s);
    expect(&c, "ERROR :Closing Link: 127.0.0.1 (Too many connections)", NULL, 0);
    cr_assert(at_eof(&c, 5000), "the one too many is closed");
    client_close(&c);
    client_close(&a);
    /* alice's close reaches the count a moment later: try until welcome. */
    bool welcome = false;
    for (int i = 0; i < 100 && !welcome; i++) {
        client_open(&c, &s);
        sendf(&c, "NICK carol");
        sendf(&c, "USER carol 0 * :Carol");
        char line[1024];
        while (next_line(&c, line, sizeof(line), 5000)) {
            if (strstr(line, " 001 carol ") != NULL) {
                welcome = true;
                break;
            }
            if (strstr(line, "Too many connections") != NULL) {
                break;
            }
        }
        if (!welcome) {
            cr_assert(at_eof(&c, 5000), "refused and closed");
            client_close(&c);
        }
    }
    cr_assert(welcome, "a place came free");
    client_close(&c);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}

/* Reads b's lines until one contains `want`, answering every PING on the
 * way (as a live client does); false after timeout_ms or at EOF. */
static bool expect_answering(client *b, const char *want, int timeout_ms)
{
    char line[1024];
    uint64_t end = tr_test_now_ms() + (uint64_t)timeout_ms;
    while (tr_test_now_ms() < end && next_line(b, line, sizeof(line), timeout_ms)) {
        if (strncmp(line, "PING ", 5) == 0) {
            sendf(b, "PONG %s", line + 5);
        }
        if (strstr(line, want) != NULL) {
            return true;
        }
    }
    return false;
}

/* --ping-timeout: a silent user is pinged, then dropped (and its channel
 * hears the QUIT); one who answers stays, and is pinged again later. Both
 * are read in one loop, so bob answers each PING as it comes. */
Test(chat, a_silent_user_is_pinged_then_dropped_one_who_answers_stays)
{
    server s;
    start_server(&s, "--ping-timeout 2");
    client a, b;
    login_any_motd(&a, &s, "alice");
    login_any_motd(&b, &s, "bob");
    join(&a, "alice", "#p");
    join(&b, "bob", "#p");
    bool a_pinged = false, a_told = false, a_closed = false, b_heard = false;
    int b_pings = 0;
    uint64_t end = tr_test_now_ms() + 30000;
    while (tr_test_now_ms() < end && !(a_closed && b_heard && b_pings >= 2)) {
        char line[1024];
        while (next_line(&b, line, sizeof(line), 0)) {
            if (strncmp(line, "PING ", 5) == 0) {
                sendf(&b, "PONG %s", line + 5);
                b_pings++;
            }
            b_heard |= strstr(line, ":alice!alice@127.0.0.1 QUIT :Ping timeout") != NULL;
        }
        while (!a_closed && next_line(&a, line, sizeof(line), 0)) {
            a_pinged |= strcmp(line, "PING :troupe.chat") == 0;
            if (strcmp(line, "ERROR :Closing Link: 127.0.0.1 (Ping timeout)") == 0) {
                cr_assert(a_pinged, "pinged before the drop");
                a_told = true;
            }
        }
        int peek = a_told ? tr_test_sock_peek(a.fd, 0) : 1;
        a_closed = a_closed || peek == 0 || peek == -ECONNRESET;
        struct pollfd pfd[2] = {{.fd = a.fd, .events = a_closed ? 0 : POLLIN},
                                {.fd = b.fd, .events = POLLIN}};
        poll(pfd, 2, 100);
    }
    cr_assert(a_closed, "alice was pinged (%d), told (%d) and closed", a_pinged, a_told);
    cr_assert(b_heard, "bob heard alice go");
    cr_assert_geq(b_pings, 2, "bob answered and was pinged again");
    sendf(&b, "PING :alive");
    cr_assert(expect_answering(&b, "PONG", 10000), "bob is still there");
    client_close(&a);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}

/* --password: PASS before NICK/USER, or 464 and the link is closed. */
Test(chat, password_is_required_when_set)
{
    server s;
    start_server(&s, "--password sesame");
    client x, y, z;
    client_open(&x, &s);
    sendf(&x, "NICK xavier");
    sendf(&x, "USER x 0 * :X");
    expect(&x, " 464 ", NULL, 0);
    expect(&x, "ERROR :Closing Link: 127.0.0.1 (Bad password)", NULL, 0);
    cr_assert(at_eof(&x, 5000));
    client_open(&y, &s);
    sendf(&y, "PASS open");
    sendf(&y, "NICK yvonne");
    sendf(&y, "USER y 0 * :Y");
    expect(&y, " 464 ", NULL, 0);
    cr_assert(at_eof(&y, 5000));
    client_open(&z, &s);
    sendf(&z, "PASS sesame");
    sendf(&z, "NICK zoe");
    sendf(&z, "USER z 0 * :Z");
    expect(&z, " 001 zoe ", NULL, 0);
    client_close(&x);
    client_close(&y);
    client_close(&z);
    cr_assert_eq(stop_server(&s), 0);
}

/* --motd FILE: its lines as 375 / 372 / 376, at registration and on MOTD. */
Test(chat, motd_file_lines_come_as_375_372_376)
{
    char path[] = "/tmp/troupe-chat-motd-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *text = "Welcome to the test network.\nBe kind.\n";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char extra[128];
    snprintf(extra, sizeof(extra), "--motd %s", path);
    server s;
    start_server(&s, extra);
    client a;
    client_open(&a, &s);
    sendf(&a, "NICK alice");
    sendf(&a, "USER alice 0 * :A");
    for (int round = 0; round < 2; round++) {
        expect(&a, " 375 alice :- troupe.chat Message of the day", NULL, 0);
        expect(&a, " 372 alice :- Welcome to the test network.", NULL, 0);
        expect(&a, " 372 alice :- Be kind.", NULL, 0);
        expect(&a, " 376 alice :End of /MOTD command.", NULL, 0);
        if (round == 0) {
            sendf(&a, "MOTD"); /* and again on request */
        }
    }
    client_close(&a);
    cr_assert_eq(stop_server(&s), 0);
    unlink(path);
}

/* JOIN 0 parts every channel, and each channel hears it. */
Test(chat, join_0_parts_every_channel)
{
    server s;
    start_server(&s, NULL);
    client a, b;
    login_any_motd(&a, &s, "alice");
    login_any_motd(&b, &s, "bob");
    join(&a, "alice", "#one");
    join(&a, "alice", "#two");
    join(&b, "bob", "#one");
    join(&b, "bob", "#two");
    sendf(&a, "JOIN 0");
    expect(&a, ":alice!alice@127.0.0.1 PART #two", NULL, 0);
    expect(&a, ":alice!alice@127.0.0.1 PART #one", NULL, 0);
    expect(&b, ":alice!alice@127.0.0.1 PART #", NULL, 0);
    expect(&b, ":alice!alice@127.0.0.1 PART #", NULL, 0);
    /* alice is in no channel now: a line to #one is refused (404). */
    sendf(&a, "PRIVMSG #one :still here?");
    expect(&a, " 404 alice #one ", NULL, 0);
    cr_assert(silent_about(&b, "still here?", 300), "bob hears nothing from outside");
    client_close(&a);
    client_close(&b);
    cr_assert_eq(stop_server(&s), 0);
}
