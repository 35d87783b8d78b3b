/* c-ares on a libev loop (design notes in resolve.h).
 *
 * A query is freed by whichever comes last of (a) c-ares answering it and
 * (b) its callback having run or been cancelled. c-ares 1.18 cannot cancel
 * one query, so a query that timed out on our clock (or was cancelled)
 * stays with c-ares until c-ares gives up on it; freeing the resolver
 * (ares_destroy) ends those at once. */
#include "resolve.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/util.h"
#include "addr.h"
#include "netw.h"
#include "troupe/error.h"
#include "troupe/log.h"

typedef struct rsock {
    ev_io io;
    struct rsock *next;
    tr__resolver *r;
} rsock;

struct tr__resolver {
    struct ev_loop *loop;
    ares_channel ch;
    ev_timer tick;              /* c-ares' own retries and timeouts */
    rsock *socks;               /* one watcher per c-ares socket */
    tr__resolve_query *queries; /* every query not freed yet */
    bool closing;               /* ares_destroy is running: no callbacks */
};

struct tr__resolve_query {
    tr__resolver *r;
    tr__resolve_query *prev, *next;
    tr__resolve_cb cb; /* NULL once run or cancelled */
    void *arg;
    ev_timer timer; /* our timeout; or 0 s to deliver an answer c-ares gave at once */
    uint16_t port;
    bool starting; /* inside ares_getaddrinfo */
    bool answered; /* c-ares is done with it */
    int err;
    tr__addrs addrs;
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_status;

static void lib_init(void)
{
    lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* ---- the channel on the loop ---- */

static void rearm(tr__resolver *r)
{
    struct timeval tv;
    ev_timer_stop(r->loop, &r->tick);
    if (ares_timeout(r->ch, NULL, &tv) != NULL) {
        ev_timer_set(&r->tick, (double)tv.tv_sec + tv.tv_usec / 1e6, 0);
        ev_timer_start(r->loop, &r->tick);
    }
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    rsock *s = tr__container_of(w, rsock, io);
    tr__resolver *r = s->r;
    int fd = w->fd;
    /* s may be freed inside ares_process_fd (the socket closed). */
    ares_process_fd(r->ch, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm(r);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tr__resolver *r = tr__container_of(w, tr__resolver, tick);
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm(r);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    tr__resolver *r = data;
    rsock **p = &r->socks;
    while (*p != NULL && (*p)->io.fd != fd) {
        p = &(*p)->next;
    }
    rsock *s = *p;
    if (!readable && !writable) {
        if (s != NULL) {
            ev_io_stop(r->loop, &s->io);
            *p = s->next;
            free(s);
        }
        return;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            /* Unwatched, the query still ends: by c-ares' timeout (the
             * tick) or ours. */
            tr_log(TR_LOG_WARN, "event=resolve_watch_failed err=%s", tr_strerror(TR_ENOMEM));
            return;
        }
        s->r = r;
        s->next = r->socks;
        r->socks = s;
        ev_init(&s->io, on_io);
    }
    ev_io_stop(r->loop, &s->io);
    ev_io_set(&s->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(r->loop, &s->io);
}

tr__resolver *tr__resolver_new(struct ev_loop *loop, int *err)
{
    pthread_once(&lib_once, lib_init);
    tr__resolver *r = calloc(1, sizeof(*r));
    if (lib_status != ARES_SUCCESS || r == NULL) {
        free(r);
        *err = TR_ENOMEM;
        return NULL;
    }
    r->loop = loop;
    ev_init(&r->tick, on_tick);
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = r;
    o.lookups = (char *)"fb"; /* the hosts file, then DNS */
    int rc = ares_init_options(&r->ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS);
    if (rc != ARES_SUCCESS) {
        free(r);
        *err = TR_ENOMEM;
        return NULL;
    }
    const char *servers = getenv("TROUPE_DNS_SERVERS");
    if (servers != NULL && *servers != '\0' &&
        ares_set_servers_ports_csv(r->ch, servers) != ARES_SUCCESS) {
        tr_log(TR_LOG_ERROR, "event=resolve_bad_servers TROUPE_DNS_SERVERS=%s", servers);
        ares_destroy(r->ch);
        free(r);
        *err = TR_EINVAL;
        return NULL;
    }
    *err = 0;
    return r;
}

static void unlink_query(tr__resolve_query *q)
{
    tr__resolver *r = q->r;
    ev_timer_stop(r->loop, &q->timer);
    if (q->prev != NULL) {
        q->prev->next = q->next;
    } else {
        r->queries = q->next;
    }
    if (q->next != NULL) {
        q->next->prev = q->prev;
    }
    free(q);
}

void tr__resolver_free(tr__resolver *r)
{
    if (r == NULL) {
        return;
    }
    r->closing = true;
    ares_destroy(r->ch); /* answers every query in c-ares (freeing it) and closes its sockets */
    while (r->queries != NULL) {
        unlink_query(r->queries); /* answered, not delivered yet */
    }
    while (r->socks != NULL) {
        rsock *s = r->socks;
        r->socks = s->next;
        ev_io_stop(r->loop, &s->io);
        free(s);
    }
    ev_timer_stop(r->loop, &r->tick);
    free(r);
}

tr__resolver *tr__netw_resolver(tr__netw *nw, int *err)
{
    if (nw->resolver == NULL) {
        nw->resolver = tr__resolver_new(nw->loop, err);
    }
    *err = nw->resolver != NULL ? 0 : *err;
    return nw->resolver;
}

/* ---- queries ---- */

static int map_status(int status)
{
    switch (status) {
    case ARES_ETIMEOUT:
        return TR_ETIMEDOUT;
    case ARES_ENOMEM:
        return TR_ENOMEM;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return TR_ECLOSED;
    default:
        /* NXDOMAIN, no address of the family, a server that failed or
         * refused: the name did not resolve. */
        return TR_ENONAME;
    }
}

static void keep_nodes(tr__resolve_query *q, const struct ares_addrinfo *res)
{
    q->addrs.n = 0;
    for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL;
         n != NULL && q->addrs.n < TR__RESOLVE_MAX; n = n->ai_next) {
        struct sockaddr_storage *ss = &q->addrs.a[q->addrs.n];
        if (n->ai_family == AF_INET && n->ai_addrlen >= sizeof(struct sockaddr_in)) {
            memcpy(ss, n->ai_addr, sizeof(struct sockaddr_in));
            ((struct sockaddr_in *)ss)->sin_port = htons(q->port);
            q->addrs.len[q->addrs.n++] = sizeof(struct sockaddr_in);
        } else if (n->ai_family == AF_INET6 && n->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            memcpy(ss, n->ai_addr, sizeof(struct sockaddr_in6));
            ((struct sockaddr_in6 *)ss)->sin6_port = htons(q->port);
            q->addrs.len[q->addrs.n++] = sizeof(struct sockaddr_in6);
        }
    }
    if (q->err == 0 && q->addrs.n == 0) {
        q->err = TR_ENONAME;
    }
}

/* Runs the callback if still wanted; frees q once c-ares is done with it. */
static void deliver(tr__resolve_query *q)
{
    tr__resolve_cb cb = q->cb;
    q->cb = NULL;
    ev_timer_stop(q->r->loop, &q->timer);
    if (cb != NULL) {
        cb(q->arg, q->err, q->err == 0 ? &q->addrs : NULL);
    }
    if (q->answered) {
        unlink_query(q);
    }
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    tr__resolve_query *q = arg;
    q->answered = true;
    if (q->cb != NULL) {
        q->err = status == ARES_SUCCESS ? 0 : map_status(status);
        keep_nodes(q, res);
    }
    ares_freeaddrinfo(res);
    if (q->r->closing) {
        return; /* tr__resolver_free frees it */
    }
    if (q->starting) {
        /* Answered inside tr__resolve_start (the hosts file, a bad name):
         * deliver from the loop, not inside the caller's call. */
        ev_timer_stop(q->r->loop, &q->timer);
        ev_timer_set(&q->timer, 0, 0);
        ev_timer_start(q->r->loop, &q->timer);
        return;
    }
    deliver(q);
}

static void on_query_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tr__resolve_query *q = tr__container_of(w, tr__resolve_query, timer);
    if (!q->answered) {
        q->err = TR_ETIMEDOUT;
    }
    deliver(q);
}

tr__resolve_query *tr__resolve_start(tr__resolver *r, const char *host, uint16_t port, int family,
                                     uint32_t timeout_ms, tr__resolve_cb cb, void *arg, int *err)
{
    tr__resolve_query *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        *err = TR_ENOMEM;
        return NULL;
    }
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->port = port;
    q->next = r->queries;
    if (r->queries != NULL) {
        r->queries->prev = q;
    }
    r->queries = q;
    ev_init(&q->timer, on_query_timer);
    ev_timer_set(&q->timer, timeout_ms / 1000.0, 0);
    ev_timer_start(r->loop, &q->timer);
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM; /* one node per address, not one per socket type */
    q->starting = true;
    ares_getaddrinfo(r->ch, host, NULL, &hints, on_answer, q);
    q->starting = false;
    rearm(r);
    *err = 0;
    return q;
}

void tr__resolve_cancel(tr__resolve_query *q)
{
    q->cb = NULL;
    ev_timer_stop(q->r->loop, &q->timer);
    if (q->answered) {
        unlink_query(q);
    }
}

/* ---- blocking, off the workers ---- */

typedef struct waiter {
    bool done;
    int err;
    tr__addrs *out;
} waiter;

static void wait_done(void *arg, int err, const tr__addrs *addrs)
{
    waiter *w = arg;
    w->done = true;
    w->err = err;
    if (err == 0) {
        *w->out = *addrs;
    }
}

int tr__resolve_wait(const char *host, uint16_t port, int family, uint32_t timeout_ms,
                     tr__addrs *out)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (loop == NULL) {
        return TR_ENOMEM;
    }
    int err;
    tr__resolver *r = tr__resolver_new(loop, &err);
    if (r != NULL) {
        waiter w = {.out = out};
        if (tr__resolve_start(r, host, port, family, timeout_ms, wait_done, &w, &err) != NULL) {
            /* The query's own timer bounds this loop. */
            while (!w.done) {
                ev_run(loop, EVRUN_ONCE);
            }
            err = w.err;
        }
        tr__resolver_free(r);
    }
    ev_loop_destroy(loop);
    return err;
}

int tr__resolve_split(const char *s, char *host, size_t hlen, uint16_t *port)
{
    const char *colon = s != NULL ? strrchr(s, ':') : NULL;
    size_t n = colon != NULL ? (size_t)(colon - s) : 0;
    if (n == 0 || n > 253 || n >= hlen || s[0] == '-' || s[0] == '.') {
        return TR_EADDR;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_';
        if (!ok) {
            return TR_EADDR;
        }
    }
    /* An all-numeric last label is a malformed address ("300.1.1.1",
     * "1.2.3"), never a host name (RFC 1123 2.1). */
    size_t end = s[n - 1] == '.' ? n - 1 : n; /* "name.example." is fully qualified */
    size_t last = end;
    while (last > 0 && s[last - 1] != '.') {
        last--;
    }
    if (strspn(s + last, "0123456789") >= end - last) {
        return TR_EADDR;
    }
    in_port_t net_port;
    if (tr__addr_parse_port(colon + 1, &net_port) < 0) {
        return TR_EADDR;
    }
    memcpy(host, s, n);
    host[n] = '\0';
    *port = ntohs(net_port);
    return 0;
}

int tr__resolve_addr_wait(const char *s, int family, uint32_t timeout_ms, tr__addrs *out)
{
    out->n = 0;
    int rc = tr__addr_parse(s, &out->a[0], &out->len[0]);
    if (rc == 0) {
        out->n = 1;
        return 0;
    }
    char host[256];
    uint16_t port;
    if (rc != TR_EADDR || tr__resolve_split(s, host, sizeof(host), &port) < 0) {
        return rc;
    }
    return tr__resolve_wait(host, port, family, timeout_ms, out);
}
