/* ref-broadcast: a minimal epoll IRC broadcast server, the reference that
 * troupe-chat is measured against under troupe-fanout (docs/benchmarks.md,
 * "Chat fan-out"). No actors, no troupe library.
 *
 * Usage: ref-broadcast [--listen HOST:PORT] [--threads N]
 *
 * IRC only as far as troupe-fanout needs: NICK and USER register (001),
 * JOIN answers the joiner with its JOIN and 366 (members are not told),
 * PING gets PONG, QUIT closes, and "PRIVMSG #chan :text" from a member goes
 * to every other member as ":nick!user@h PRIVMSG #chan :text". Anything else
 * is ignored. A line over 512 bytes (CRLF included) closes the connection.
 *
 * One loop turn: epoll_wait, handle every ready event, then write each
 * connection that got output ONCE (the dirty list), so a burst of lines for
 * one member costs one write, not one per line. A write the kernel does not
 * take whole keeps the rest and waits for EPOLLOUT; meanwhile new lines are
 * only appended. Level-triggered throughout.
 *
 * Threads: N event loops, each with its own epoll, connections and channel
 * table (a channel exists once per thread, holding that thread's members).
 * Thread 0 owns the one listener and hands accepted sockets round-robin, so
 * the spread is exact (SO_REUSEPORT hashes unevenly with few clients), and
 * accepting is not what is measured. A PRIVMSG is delivered to the local
 * members at once and queued once per other thread, not once per member:
 * at the end of the turn each thread's batch is appended to that thread's
 * inbox (mutex + eventfd), whose loop then delivers it to its own members.
 * Every thread gets every channel line; one with no members drops it.
 * SIGINT and SIGTERM stop every loop; connections are closed and freed. */

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ref_common.h"

#define MAX_THREADS 64
#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define LINE_MAX_BYTES 512 /* RFC 1459, CRLF included */
#define NAME_MAX_BYTES 50  /* nick, user and channel names, NUL included */
#define MAX_CHANS 8        /* channels per connection */
#define HASH_BUCKETS 256
#define READ_BUF (64 * 1024)
#define READ_BUDGET (256 * 1024)
/* Past this many unsent output bytes the member is dropped rather than
 * buffered further: a peer that stops reading cannot grow our memory
 * without bound, and nothing upstream waits for it (troupe-chat's --sendq
 * does the same). */
#define OUT_MAX (4 * 1024 * 1024)

enum { REC_LINE = 1, REC_FD = 2 }; /* inbox record types */

struct buf {
    char *p;
    size_t len, cap;
};

struct channel {
    char name[NAME_MAX_BYTES];
    struct conn **members;
    size_t n, cap;
    struct channel *next; /* hash chain */
};

struct conn {
    int fd;
    uint32_t events;             /* what epoll watches now */
    bool pending, dead, blocked; /* on the dirty list; closing; waiting for EPOLLOUT */
    char nick[NAME_MAX_BYTES], user[NAME_MAX_BYTES];
    bool registered;
    struct channel *chans[MAX_CHANS]; /* in this thread's table */
    int nchans;
    char in[LINE_MAX_BYTES]; /* a partial line */
    size_t in_len;
    struct buf out;
    size_t out_off; /* first unsent byte of out */
    struct conn *next_pending;
    struct conn *prev, *next; /* all of the thread's connections */
};

/* Every field is the owning thread's, except lock, inbox and evfd, which
 * any thread may use: inbox only under lock, evfd to wake the owner. */
struct worker {
    int id;
    pthread_t th;
    int ep, evfd, lfd; /* lfd: thread 0 only, else -1 */
    pthread_mutex_t lock;
    struct buf inbox;
    struct buf taken;               /* the inbox swapped out, being handled */
    struct buf outbox[MAX_THREADS]; /* this turn's records for each other thread */
    struct channel *table[HASH_BUCKETS];
    struct conn *conns, *pending;
    unsigned rr; /* thread 0: next accept's thread */
    char rbuf[READ_BUF];
};

static struct worker *workers;
static int nthreads = 1;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
    uint64_t one = 1;
    for (int i = 0; i < nthreads; i++) {
        ssize_t r = write(workers[i].evfd, &one, sizeof(one)); /* async-signal-safe */
        (void)r;
    }
}

static int buf_append(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static void mark_pending(struct worker *w, struct conn *c)
{
    if (!c->pending) {
        c->pending = true;
        c->next_pending = w->pending;
        w->pending = c;
    }
}

/* Frees the connection at the end of the turn: it may still be in this
 * turn's event array or in a member list being walked. */
static void conn_kill(struct worker *w, struct conn *c)
{
    c->dead = true;
    mark_pending(w, c);
}

static void conn_destroy(struct worker *w, struct conn *c)
{
    for (int i = 0; i < c->nchans; i++) {
        struct channel *ch = c->chans[i];
        for (size_t j = 0; j < ch->n; j++) {
            if (ch->members[j] == c) {
                ch->members[j] = ch->members[--ch->n];
                break;
            }
        }
    }
    close(c->fd); /* also leaves the epoll set */
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    free(c->out.p);
    free(c);
}

static void conn_add(struct worker *w, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (c == NULL || epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        free(c);
        return;
    }
    c->fd = fd;
    c->events = EPOLLIN;
    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
}

/* Appends output; the write happens at the end of the turn. */
static void conn_queue(struct worker *w, struct conn *c, const char *data, size_t n)
{
    if (c->dead) {
        return;
    }
    if (c->out.len - c->out_off + n > OUT_MAX) {
        conn_kill(w, c);
        return;
    }
    if (c->out_off > 0 && c->out.len + n > c->out.cap) {
        /* Compact before growing. */
        memmove(c->out.p, c->out.p + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
    if (buf_append(&c->out, data, n) < 0) {
        conn_kill(w, c);
        return;
    }
    if (!c->blocked) {
        mark_pending(w, c);
    }
}

/* The one write of this turn. */
static void conn_flush(struct worker *w, struct conn *c)
{
    size_t left = c->out.len - c->out_off;
    ssize_t n = left > 0 ? write(c->fd, c->out.p + c->out_off, left) : 0;
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_destroy(w, c);
            return;
        }
        n = 0;
    }
    c->out_off += (size_t)n;
    if (c->out_off == c->out.len) {
        c->out_off = c->out.len = 0; /* keep the buffer: busy members refill it */
    }
    c->blocked = c->out.len > 0;
    uint32_t want = c->blocked ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
    if (ref_set_events(w->ep, c->fd, c, &c->events, want) < 0) {
        conn_destroy(w, c);
    }
}

static struct channel *channel_find(struct worker *w, const char *name, bool create)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = name; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    struct channel **slot = &w->table[h % HASH_BUCKETS];
    for (struct channel *ch = *slot; ch != NULL; ch = ch->next) {
        if (strcmp(ch->name, name) == 0) {
            return ch;
        }
    }
    if (!create) {
        return NULL;
    }
    struct channel *ch = calloc(1, sizeof(*ch));
    if (ch == NULL) {
        return NULL;
    }
    snprintf(ch->name, sizeof(ch->name), "%s", name);
    ch->next = *slot;
    *slot = ch;
    return ch;
}

/* Sends line to every member of ch but `except` (NULL: all). */
static void deliver(struct worker *w, struct channel *ch, struct conn *except, const char *line,
                    size_t n)
{
    for (size_t i = 0; i < ch->n; i++) {
        if (ch->members[i] != except) {
            conn_queue(w, ch->members[i], line, n);
        }
    }
}

__attribute__((format(printf, 3, 4))) static void reply(struct worker *w, struct conn *c,
                                                        const char *fmt, ...)
{
    char line[LINE_MAX_BYTES + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0) {
        conn_queue(w, c, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
}

static void do_join(struct worker *w, struct conn *c, const char *name)
{
    if (name[0] != '#' || strlen(name) >= NAME_MAX_BYTES) {
        return;
    }
    struct channel *ch = channel_find(w, name, true);
    if (ch == NULL) {
        return;
    }
    for (int i = 0; i < c->nchans; i++) {
        if (c->chans[i] == ch) {
            return; /* already a member */
        }
    }
    if (c->nchans == MAX_CHANS) {
        return;
    }
    if (ch->n == ch->cap) {
        size_t cap = ch->cap ? ch->cap * 2 : 64;
        struct conn **m = realloc(ch->members, cap * sizeof(*m));
        if (m == NULL) {
            return;
        }
        ch->members = m;
        ch->cap = cap;
    }
    ch->members[ch->n++] = c;
    c->chans[c->nchans++] = ch;
    reply(w, c, ":%s!%s@h JOIN %s\r\n", c->nick, c->user, name);
    reply(w, c, ":ref 366 %s %s :End of /NAMES list.\r\n", c->nick, name);
}

static void do_privmsg(struct worker *w, struct conn *c, const char *target, const char *text)
{
    struct channel *ch = channel_find(w, target, false);
    bool member = false;
    for (int i = 0; ch != NULL && i < c->nchans; i++) {
        member = member || c->chans[i] == ch;
    }
    if (!member) {
        return;
    }
    char line[LINE_MAX_BYTES + 2 * NAME_MAX_BYTES + 32];
    int n =
        snprintf(line, sizeof(line), ":%s!%s@h PRIVMSG %s :%s\r\n", c->nick, c->user, target, text);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        return;
    }
    deliver(w, ch, c, line, (size_t)n);
    /* Record: type, channel name length, name, line length (host order:
     * the reader is this process), line. */
    uint8_t hdr[2] = {REC_LINE, (uint8_t)strlen(target)};
    uint16_t len = (uint16_t)n;
    for (int t = 0; t < nthreads; t++) {
        struct buf *b = &w->outbox[t];
        if (t != w->id) {
            buf_append(b, hdr, 2);
            buf_append(b, target, hdr[1]);
            buf_append(b, &len, sizeof(len));
            buf_append(b, line, len);
        }
    }
}

/* Splits off the first space-separated word of *rest (a leading ':' makes
 * the whole rest one word, as in IRC's trailing parameter). */
static char *word(char **rest)
{
    char *s = *rest;
    if (*s == ':') {
        *rest = s + strlen(s);
        return s + 1;
    }
    char *sp = strchr(s, ' ');
    if (sp != NULL) {
        *sp = '\0';
        *rest = sp + 1;
    } else {
        *rest = s + strlen(s);
    }
    return s;
}

static void handle_line(struct worker *w, struct conn *c, char *line)
{
    char *rest = line;
    if (*rest == ':') {
        word(&rest); /* a client's prefix means nothing here */
    }
    const char *cmd = word(&rest);
    if (strcmp(cmd, "PING") == 0) {
        reply(w, c, ":ref PONG ref :%s\r\n", word(&rest));
    } else if (strcmp(cmd, "QUIT") == 0) {
        conn_kill(w, c);
    } else if (strcmp(cmd, "NICK") == 0 || strcmp(cmd, "USER") == 0) {
        const char *name = word(&rest);
        if (c->registered || name[0] == '\0' || strlen(name) >= NAME_MAX_BYTES) {
            return;
        }
        strcpy(cmd[0] == 'N' ? c->nick : c->user, name);
        if (c->nick[0] != '\0' && c->user[0] != '\0') {
            c->registered = true;
            reply(w, c, ":ref 001 %s :hi\r\n", c->nick);
        }
    } else if (!c->registered) {
        return;
    } else if (strcmp(cmd, "JOIN") == 0) {
        char *list = word(&rest);
        for (char *name = strtok_r(list, ",", &rest); name != NULL;
             name = strtok_r(NULL, ",", &rest)) {
            do_join(w, c, name);
        }
    } else if (strcmp(cmd, "PRIVMSG") == 0) {
        char *target = word(&rest);
        do_privmsg(w, c, target, word(&rest));
    }
}

/* Takes bytes read from c: handles every complete line, keeps the partial
 * tail in c->in. */
static void take_input(struct worker *w, struct conn *c, char *p, size_t n)
{
    while (n > 0 && !c->dead) {
        char *nl = memchr(p, '\n', n);
        size_t take = nl != NULL ? (size_t)(nl - p) + 1 : n;
        if (c->in_len + take > LINE_MAX_BYTES) {
            conn_kill(w, c);
            return;
        }
        char *line = p;
        if (nl == NULL || c->in_len > 0) {
            memcpy(c->in + c->in_len, p, take);
            c->in_len += take;
            line = c->in;
        }
        p += take;
        n -= take;
        if (nl == NULL) {
            return;
        }
        size_t len = line == c->in ? c->in_len - 1 : take - 1;
        c->in_len = 0;
        if (len > 0 && line[len - 1] == '\r') {
            len--;
        }
        line[len] = '\0'; /* overwrites the '\r' or '\n' */
        if (len > 0) {
            handle_line(w, c, line);
        }
    }
}

static void on_readable(struct worker *w, struct conn *c)
{
    for (size_t total = 0; total < READ_BUDGET && !c->dead;) {
        ssize_t n = read(c->fd, w->rbuf, sizeof(w->rbuf));
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                conn_kill(w, c);
            }
            return;
        }
        take_input(w, c, w->rbuf, (size_t)n);
        total += (size_t)n;
        if ((size_t)n < sizeof(w->rbuf)) {
            return; /* drained */
        }
    }
}

static void on_accept(struct worker *w)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                usleep(1000); /* level-triggered: no hot spin on a full table */
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int t = (int)(w->rr++ % (unsigned)nthreads);
        if (t == w->id) {
            conn_add(w, fd);
            continue;
        }
        uint8_t type = REC_FD;
        if (buf_append(&w->outbox[t], &type, 1) < 0 ||
            buf_append(&w->outbox[t], &fd, sizeof(fd)) < 0) {
            close(fd);
        }
    }
}

/* Handles what other threads sent: lines for our members, new sockets. */
static void on_inbox(struct worker *w)
{
    uint64_t v;
    ssize_t r = read(w->evfd, &v, sizeof(v)); /* before the swap: see send_batches */
    (void)r;
    pthread_mutex_lock(&w->lock);
    struct buf t = w->taken;
    w->taken = w->inbox;
    w->inbox = t;
    w->inbox.len = 0;
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < w->taken.len;) {
        const char *p = w->taken.p + i;
        if (p[0] == REC_FD) {
            int fd;
            memcpy(&fd, p + 1, sizeof(fd));
            conn_add(w, fd);
            i += 1 + sizeof(fd);
            continue;
        }
        char name[NAME_MAX_BYTES];
        uint8_t nl = (uint8_t)p[1];
        uint16_t len;
        memcpy(name, p + 2, nl);
        name[nl] = '\0';
        memcpy(&len, p + 2 + nl, sizeof(len));
        struct channel *ch = channel_find(w, name, false);
        if (ch != NULL) {
            deliver(w, ch, NULL, p + 4 + nl, len);
        }
        i += 4 + nl + len;
    }
}

/* Appends this turn's records to the other threads' inboxes. The writer
 * that finds an inbox empty wakes its owner; one that finds it non-empty
 * need not, since the owner has not swapped it out yet and will see the
 * new records with the old. The owner reads the eventfd before it swaps,
 * so a wake-up is never consumed without its records. */
static void send_batches(struct worker *w)
{
    for (int t = 0; t < nthreads; t++) {
        struct buf *b = &w->outbox[t];
        if (b->len == 0) {
            continue;
        }
        struct worker *to = &workers[t];
        pthread_mutex_lock(&to->lock);
        bool was_empty = to->inbox.len == 0;
        int rc = buf_append(&to->inbox, b->p, b->len);
        pthread_mutex_unlock(&to->lock);
        if (rc < 0) {
            fprintf(stderr, "ref-broadcast: out of memory; lines to thread %d dropped\n", t);
        }
        uint64_t one = 1;
        if (was_empty && write(to->evfd, &one, sizeof(one)) < 0) {
            perror("ref-broadcast: eventfd");
        }
        b->len = 0;
    }
}

static void *run_loop(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[MAX_EVENTS];
    while (!stop_requested) {
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR) {
            perror("ref-broadcast: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == NULL) {
                on_accept(w);
            } else if (p == w) {
                on_inbox(w);
            } else {
                struct conn *c = p;
                if (c->dead) {
                    continue;
                }
                if (evs[i].events & EPOLLOUT) {
                    c->blocked = false;
                    mark_pending(w, c);
                }
                /* EPOLLHUP/EPOLLERR: the read says what happened. */
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    on_readable(w, c);
                }
            }
        }
        /* Other threads first, so they deliver while we write. */
        send_batches(w);
        while (w->pending != NULL) {
            struct conn *c = w->pending;
            w->pending = c->next_pending;
            c->pending = false;
            if (c->dead) {
                conn_destroy(w, c);
            } else {
                conn_flush(w, c);
            }
        }
    }
    return NULL;
}

static void worker_fini(struct worker *w)
{
    while (w->conns != NULL) {
        conn_destroy(w, w->conns);
    }
    for (int b = 0; b < HASH_BUCKETS; b++) {
        while (w->table[b] != NULL) {
            struct channel *ch = w->table[b];
            w->table[b] = ch->next;
            free(ch->members);
            free(ch);
        }
    }
    for (int t = 0; t < nthreads; t++) {
        free(w->outbox[t].p);
    }
    free(w->inbox.p);
    free(w->taken.p);
    pthread_mutex_destroy(&w->lock);
    close(w->evfd);
    close(w->ep);
}

int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_spec = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            nthreads = atoi(argv[++i]);
        } else {
            fprintf(
                strcmp(argv[i], "--help") == 0 ? stdout : stderr,
                "usage: ref-broadcast [--listen HOST:PORT] [--threads N]\n"
                "  default --listen 127.0.0.1:0 --threads 1; prints 'listening on HOST:PORT'\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (nthreads < 1 || nthreads > MAX_THREADS) {
        fprintf(stderr, "ref-broadcast: --threads 1..%d\n", MAX_THREADS);
        return 2;
    }
    workers = calloc((size_t)nthreads, sizeof(*workers));
    int lfd = ref_open("ref-broadcast", listen_spec, SOCK_STREAM);
    if (workers == NULL || lfd < 0) {
        return 1;
    }
    for (int t = 0; t < nthreads; t++) {
        struct worker *w = &workers[t];
        w->id = t;
        w->lfd = t == 0 ? lfd : -1;
        pthread_mutex_init(&w->lock, NULL);
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
        struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
        if (w->ep < 0 || w->evfd < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->evfd, &ev) < 0 ||
            (t == 0 && epoll_ctl(w->ep, EPOLL_CTL_ADD, lfd, &lev) < 0)) {
            perror("ref-broadcast: epoll");
            return 1;
        }
    }
    ref_on_signals(on_signal);
    ref_print_bound(lfd, "listening on");
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&workers[t].th, NULL, run_loop, &workers[t]) != 0) {
            fprintf(stderr, "ref-broadcast: cannot start thread %d\n", t);
            return 1;
        }
    }
    run_loop(&workers[0]);
    for (int t = 1; t < nthreads; t++) {
        pthread_join(workers[t].th, NULL);
    }
    /* Sockets handed off but never picked up are closed with the process. */
    for (int t = 0; t < nthreads; t++) {
        worker_fini(&workers[t]);
    }
    close(lfd);
    free(workers);
    return 0;
}
