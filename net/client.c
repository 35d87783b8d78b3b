/* TCP and Unix stream clients (the dialer): a connection actor that dials
 * out, trying each address of a name in turn, with optional reconnect
 * (capped exponential backoff with jitter; the connection keeps its id, and
 * sends made while it is down wait in its queue). The blocking one-shot
 * exchange, which needs no runtime, is client_once.c. */
#include "troupe/client.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <string.h>
#include <unistd.h>

#include "troupe/log.h"
#include "../runtime/actor.h"
#include "../runtime/util.h"
#include "addr.h"
#include "conn.h"
#include "netw.h"
#include "resolve.h"
#include "tcp.h"

#define KEEPALIVE_IDLE_S 300

typedef struct client {
    tr__conn_cfg *ccfg;   /* counted: the connection keeps it past this record */
    tr_client_config cfg;
    char *host;           /* a host name resolved at every dial, or NULL */
    uint16_t port;
    tr__resolve_query *query; /* a resolution in flight */
    tr__addrs addrs;      /* this dial's addresses, tried in order */
    unsigned next;        /* the next one to try */
    uint32_t attempts;
    bool giving_up;
    ev_timer timer;  /* connect timeout, or backoff before the next dial */
    tr_conn *c;
} client;

void tr_client_config_defaults(tr_client_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->connect_timeout_ms = 5000;
    tr__conn_settings_defaults(&cfg->conn);
    cfg->conn.keepalive_idle_s = KEEPALIVE_IDLE_S;
    cfg->backoff_min_ms = 100;
    cfg->backoff_max_ms = 30000;
    cfg->resolve_timeout_ms = 5000;
}

static int dial(tr_conn *c);

static void report_dial(client *cl, int err)
{
    if (cl->cfg.on_dial != NULL) {
        cl->cfg.on_dial(cl->c->id, err, cl->cfg.conn.user);
    }
}

/* Schedules the next dial, or gives up. Returns false when giving up. */
/* A per-thread xorshift generator seeded from the kernel: every process
 * (and thread) draws a different jitter, unlike an unseeded rand(), which
 * makes every process back off in lockstep. */
static uint64_t jitter_random(void)
{
    static _Thread_local uint64_t state;
    if (state == 0) {
        if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != (ssize_t)sizeof(state)) {
            state = tr__now_ns() ^ (uint64_t)(uintptr_t)&state;
        }
        state |= 1;
    }
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static bool schedule_redial(client *cl)
{
    if (!cl->cfg.reconnect || (cl->cfg.max_attempts && cl->attempts >= cl->cfg.max_attempts)) {
        return false;
    }
    uint64_t delay = cl->cfg.backoff_min_ms;
    for (uint32_t i = 1; i < cl->attempts && delay < cl->cfg.backoff_max_ms; i++) {
        delay *= 2;
    }
    if (delay > cl->cfg.backoff_max_ms) {
        delay = cl->cfg.backoff_max_ms;
    }
    /* Full jitter over the upper half: many clients that lost the same
     * server do not come back in lockstep. */
    uint64_t half = delay / 2;
    delay = half + (half ? jitter_random() % (half + 1) : 0);
    struct ev_loop *loop = cl->c->nw->loop;
    ev_timer_stop(loop, &cl->timer);
    ev_timer_set(&cl->timer, delay / 1000.0, 0);
    ev_timer_start(loop, &cl->timer);
    return true;
}

/* Watches fd for the connect's completion: the connection's write
 * watcher fires and the connect_done hook below runs. */
static void watch_connect(tr_conn *c, int fd)
{
    c->fd = fd;
    ev_io_set(&c->wio, fd, EV_WRITE);
    ev_io_start(c->nw->loop, &c->wio);
}

/* Stops watching a failed connect attempt and closes its fd. */
static void unwatch_connect(tr_conn *c)
{
    ev_io_stop(c->nw->loop, &c->wio);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void dial_failed(client *cl, int err)
{
    tr_conn *c = cl->c;
    ev_timer_stop(c->nw->loop, &cl->timer);
    unwatch_connect(c);
    tr_log(TR_LOG_DEBUG, "event=dial_failed conn=%llu err=%d attempt=%u",
           (unsigned long long)c->id.bits, err, cl->attempts);
    report_dial(cl, err);
    if (schedule_redial(cl)) {
        return;
    }
    cl->giving_up = true;
    tr__conn_finish_close(c, err, true);
}

static void connected(client *cl)
{
    ev_timer_stop(cl->c->nw->loop, &cl->timer);
    if (cl->ccfg->conn.tls != NULL) {
        tr__conn_start(cl->c); /* handshake_done reports the dial */
        return;
    }
    cl->attempts = 0;
    report_dial(cl, 0);
    tr__conn_open(cl->c);
}

/* The TLS handshake ended: a failure is a failed dial (redial or give up). */
static void handshake_done(tr_conn *c, int err)
{
    client *cl = c->owner;
    if (err < 0) {
        dial_failed(cl, err);
        return;
    }
    cl->attempts = 0;
    report_dial(cl, 0);
}

/* The name a TLS client sends and verifies by default: the host of
 * "host:port" / "[v6]:port"; none for a Unix address. */
static void default_server_name(const char *addr, char *out, size_t len)
{
    out[0] = '\0';
    if (addr == NULL || strncmp(addr, "unix:", 5) == 0) {
        return;
    }
    const char *end = addr[0] == '[' ? strchr(addr, ']') : strrchr(addr, ':');
    const char *start = addr[0] == '[' ? addr + 1 : addr;
    if (end == NULL || (size_t)(end - start) >= len) {
        return;
    }
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
}

static void try_next(client *cl, int err);

/* This address failed: on to the next one, or the dial failed. */
static void address_failed(client *cl, int err)
{
    ev_timer_stop(cl->c->nw->loop, &cl->timer);
    unwatch_connect(cl->c);
    try_next(cl, err);
}

static void connect_done(tr_conn *c)
{
    client *cl = c->owner;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
        err = errno;
    }
    if (err == EINPROGRESS || err == EALREADY) {
        return;
    }
    if (err != 0) {
        address_failed(cl, -err);
        return;
    }
    connected(cl);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    client *cl = (client *)((char *)w - offsetof(client, timer));
    if (cl->c->fd >= 0) {
        address_failed(cl, TR_ETIMEDOUT); /* this address's connect timed out */
    } else {
        dial(cl->c); /* the backoff ended */
    }
}

/* Starts connecting to address i. Returns 0 (connected, or in progress
 * under the connect timeout) or the error that ended it at once. */
static int try_address(client *cl, unsigned i)
{
    tr_conn *c = cl->c;
    const struct sockaddr_storage *sa = &cl->addrs.a[i];
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    c->peer = *sa;
    c->peer_len = cl->addrs.len[i];
    if (sa->ss_family != AF_UNIX) {
        tr__sock_tune(fd, cl->ccfg);
    }
    watch_connect(c, fd);
    if (cl->cfg.on_socket != NULL && cl->cfg.on_socket(fd, cl->cfg.conn.user) < 0) {
        unwatch_connect(c);
        return TR_EINVAL;
    }
    if (connect(fd, (const struct sockaddr *)sa, cl->addrs.len[i]) == 0) {
        connected(cl);
        return 0;
    }
    if (errno != EINPROGRESS) {
        int err = -errno;
        unwatch_connect(c);
        return err;
    }
    ev_timer_set(&cl->timer, cl->cfg.connect_timeout_ms / 1000.0, 0);
    ev_timer_start(c->nw->loop, &cl->timer);
    return 0;
}

/* Tries the addresses left in order; the dial fails with the last error
 * once none is left. */
static void try_next(client *cl, int err)
{
    while (cl->next < cl->addrs.n) {
        if ((err = try_address(cl, cl->next++)) == 0) {
            return;
        }
    }
    dial_failed(cl, err);
}

static void resolved(void *arg, int err, const tr__addrs *addrs)
{
    client *cl = arg;
    cl->query = NULL;
    if (err < 0) {
        tr_log(TR_LOG_WARN, "event=resolve_failed conn=%llu host=%s error=\"%s\"",
               (unsigned long long)cl->c->id.bits, cl->host, tr_strerror(err));
        dial_failed(cl, err);
        return;
    }
    cl->addrs = *addrs;
    try_next(cl, TR_ENONAME);
}

static int dial(tr_conn *c)
{
    client *cl = c->owner;
    cl->attempts++;
    c->fd = -1;
    cl->next = 0;
    if (cl->host == NULL) {
        try_next(cl, TR_EADDR);
        return 0;
    }
    /* A name is resolved again at every dial: a reconnect follows the DNS. */
    int err;
    tr__resolver *r = tr__netw_resolver(c->nw, &err);
    if (r != NULL) {
        cl->query = tr__resolve_start(r, cl->host, cl->port, AF_UNSPEC, cl->cfg.resolve_timeout_ms,
                                      resolved, cl, &err);
    }
    if (cl->query == NULL) {
        dial_failed(cl, err);
    }
    return 0;
}

static void cancel_resolve(client *cl)
{
    if (cl->query != NULL) {
        tr__resolve_cancel(cl->query);
        cl->query = NULL;
    }
}

/* The first dial runs from the actor's init; it needs the client record. */
static int first_dial(tr_conn *c)
{
    client *cl = c->owner;
    cl->c = c;
    ev_init(&cl->timer, on_timer);
    return dial(c);
}

static void on_gone(tr_conn *c)
{
    client *cl = c->owner;
    cancel_resolve(cl); /* closed while resolving */
    if (cl->giving_up || tr__conn_is_draining(c) || !tr__conn_was_opened(c) ||
        tr__conn_closed_by_user(c)) {
        if (c->nw != NULL) {
            ev_timer_stop(c->nw->loop, &cl->timer); /* no dial after the end */
        }
        return;
    }
    if (schedule_redial(cl)) {
        tr__conn_reset(c); /* keeps the actor: the id stays valid */
    }
}

static void on_free(tr_conn *c)
{
    client *cl = c->owner;
    cancel_resolve(cl);
    if (c->nw != NULL) {
        ev_timer_stop(c->nw->loop, &cl->timer);
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    tr__conn_cfg_release(cl->ccfg); /* the connection holds its own reference */
    free(cl->host);
    free(cl);
}

/* A numeric address (or "localhost", or a Unix one) is the one address of
 * every dial; a host name is kept, to be resolved at each dial. */
static int client_address(client *cl, const char *s)
{
    int rc = tr__addr_parse(s, &cl->addrs.a[0], &cl->addrs.len[0]);
    if (rc == 0) {
        cl->addrs.n = 1;
        return 0;
    }
    char host[256];
    if (rc != TR_EADDR || tr__resolve_split(s, host, sizeof(host), &cl->port) < 0) {
        return rc;
    }
    cl->host = strdup(host);
    return cl->host != NULL ? 0 : TR_ENOMEM;
}

int tr_client_connect(tr_runtime *rt, const tr_client_config *cfg, tr_conn_id *out)
{
    if (rt == NULL || cfg == NULL || out == NULL) {
        return TR_EINVAL;
    }
    client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        return TR_ENOMEM;
    }
    cl->cfg = *cfg;
    tr__conn_cfg *cc = cl->ccfg = tr__conn_cfg_new();
    if (cc == NULL) {
        free(cl);
        return TR_ENOMEM;
    }
    tr__conn_cfg_copy(cc, &cfg->conn);
    cc->on_gone = on_gone;
    cc->on_free = on_free;
    cc->connect_done = connect_done;
    cc->tp = &tr__tcp_transport;
    cc->handshake_done = handshake_done;
    char name[256];
    default_server_name(cfg->connect, name, sizeof(name));
    int rc = tr__conn_cfg_check(cc);
    if (rc == 0) {
        rc = tr__conn_cfg_set_tls(cc, cfg->conn.tls, false,
                                  cfg->tls_server_name != NULL ? cfg->tls_server_name : name);
    }
    if (rc == 0 && (cfg->conn.handler == NULL || cfg->backoff_min_ms == 0 ||
                    cfg->backoff_max_ms < cfg->backoff_min_ms || cfg->resolve_timeout_ms == 0)) {
        rc = cfg->conn.handler == NULL ? TR_ENOHANDLER : TR_EINVAL;
    }
    if (rc == 0) {
        rc = client_address(cl, cfg->connect);
    }
    cl->cfg.connect = NULL; /* the caller's string; cl->host keeps a name */
    tr__conn_arg arg = {.fd = -1, .cfg = cc, .owner = cl, .dial = first_dial};
    if (rc == 0) {
        /* The peer until a dial picks an address (for a name: none yet). */
        arg.peer = cl->addrs.a[0];
        arg.peer_len = cl->addrs.len[0];
        rc = tr__conn_spawn(rt, -1, &arg, out);
    }
    if (rc < 0) {
        tr__conn_cfg_release(cc);
        free(cl->host);
        free(cl);
    }
    return rc;
}
