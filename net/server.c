/* TCP and Unix stream servers: the public API, the per-worker agent
 * actor, and shutdown (listener.c accepts, admission.c admits; the shared
 * types and the design are in server_impl.h).
 *
 * Connection actors are spawned on the accepting worker (reuseport) or
 * round-robin (single acceptor). The blocking calls (shutdown, close,
 * free) run on a foreign thread and wait by polling atomics with a short
 * sleep: they are rare and bounded by their deadlines. */
#include "server_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "troupe/log.h"
#include "../runtime/actor.h"
#include "../runtime/atomic.h"
#include "../runtime/msg_impl.h"
#include "../runtime/util.h"
#include "addr.h"
#include "admission.h"
#include "adopt.h"
#include "listener.h"
#include "resolve.h"
#include "tcp.h"

void tr_server_config_defaults(tr_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backlog = 1024;
    tr__conn_settings_defaults(&cfg->conn);
    cfg->conn.idle_timeout_ms = 30000;
    cfg->admission = TR_ADMIT_CLOSE;
    cfg->accept_mode = TR_ACCEPT_REUSEPORT;
    cfg->listen_fd = -1;
    cfg->resolve_timeout_ms = 5000;
    cfg->budget.grace_ms = 5000;
}

static void info(tr_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void info(tr_server *s, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (s->cfg.observer != NULL && s->cfg.observer->on_info != NULL) {
        s->cfg.observer->on_info(line, s->cfg.conn.user);
    }
    tr_log(TR_LOG_INFO, "%s", line);
}

/* ---- the agent actor ---- */

void tr__server_send_agents(tr_server *s, uint32_t type)
{
    for (unsigned i = 0; i < s->nagents; i++) {
        tr_send_copy(s->agents[i].id, type, NULL, 0);
    }
}

static int agent_init(tr_actor *self, void *arg)
{
    tr__agent *ag = arg;
    tr_actor_set_state(self, ag);
    tr_actor_trap_shutdown(self, true);
    tr__listener_init(ag);
    tr__listener_start(ag, tr_actor_loop(self));
    return 0;
}

static void each_conn(tr__agent *ag, void (*fn)(tr_conn *c))
{
    /* fn may not unlink: it only sends messages. */
    for (tr_conn *c = ag->conns.head; c != NULL; c = c->list_next) {
        fn(c);
    }
}

static void send_shutdown(tr_conn *c)
{
    tr_msg *m = tr_msg_new(TR_MSG_SHUTDOWN, NULL, 0);
    if (m != NULL) {
        m->flags = TR_MSGF_SYSTEM;
        tr__send(c->id.bits ? (tr_actor_id){c->id.bits} : TR_ACTOR_NONE, m, true);
    }
}

static void send_kill(tr_conn *c)
{
    tr_kill((tr_actor_id){c->id.bits}, TR_ETIMEDOUT);
}

/* A connected fd from tr_server_adopt: admitted as if accepted here,
 * unless the server stopped accepting since. */
static void adopt_conn(tr__agent *ag, const tr_msg *m)
{
    int fd;
    memcpy(&fd, tr_msg_data(m), sizeof(fd));
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (tr__load_acq_32(&ag->srv->state) != S_RUNNING ||
        getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) {
        TR__STAT_ADD(&ag->srv->stats[ag->idx], refused, 1);
        close(fd);
        return;
    }
    tr__admit(ag, fd, &peer, plen);
}

static void agent_receive(tr_actor *self, tr_msg *m)
{
    tr__agent *ag = tr_actor_state(self);
    struct ev_loop *loop = tr_actor_loop(self);
    switch (m->type) {
    case AG_STOP_ACCEPT:
        tr__listener_close(ag, loop);
        tr__faa_sc_32(&ag->srv->acks, 1);
        break;
    case AG_DRAIN:
        each_conn(ag, send_shutdown);
        break;
    case AG_FORCE:
        each_conn(ag, send_kill);
        break;
    case AG_RESUME:
        tr__listener_start(ag, loop);
        break;
    case AG_EXIT:
        tr_exit(self, TR_EXIT_NORMAL);
        break;
    case AG_ADOPT:
        adopt_conn(ag, m);
        break;
    case TR_MSG_SHUTDOWN:
        /* The runtime is shutting down: connections drain on their own. */
        tr__listener_close(ag, loop);
        tr_exit(self, TR_EXIT_SHUTDOWN);
        break;
    default:
        break;
    }
}

static void agent_terminate(tr_actor *self, int reason)
{
    (void)reason;
    tr__agent *ag = tr_actor_state(self);
    tr__listener_close(ag, tr_actor_loop(self));
    tr__faa_sc_32(&ag->srv->agents_alive, (uint32_t)-1);
}

static const tr_behavior agent_behavior = {
    .name = "server_agent", .init = agent_init, .receive = agent_receive,
    .terminate = agent_terminate};

/* ---- public API ---- */

/* Where to listen: an adopted listening fd (checked here), a numeric or
 * Unix address, or a host name kept to be resolved at start. */
static int server_address(tr_server *s, const tr_server_config *cfg)
{
    if (cfg->listen_fd >= 0) {
        int family;
        int rc = tr__adopt_check(cfg->listen_fd, true, &family);
        s->addr.ss_family = (sa_family_t)family;
        s->adopted = rc == 0;
        return rc;
    }
    int rc = tr__addr_parse(cfg->listen, &s->addr, &s->addr_len);
    char host[256];
    if (rc != TR_EADDR || tr__resolve_split(cfg->listen, host, sizeof(host), &s->listen_port) < 0) {
        return rc;
    }
    if (cfg->resolve_timeout_ms == 0) {
        return TR_EINVAL;
    }
    s->listen_host = strdup(host);
    return s->listen_host != NULL ? 0 : TR_ENOMEM;
}

tr_server *tr_server_new(tr_runtime *rt, const tr_server_config *cfg, int *err)
{
    int rc = TR_EINVAL;
    if (rt == NULL || cfg == NULL) {
        goto fail;
    }
    tr_server *s = calloc(1, sizeof(*s));
    rc = TR_ENOMEM;
    if (s == NULL) {
        goto fail;
    }
    s->rt = rt;
    s->cfg = *cfg;
    tr__conn_cfg *cc = s->ccfg = tr__conn_cfg_new();
    if (cc == NULL) {
        goto fail_free;
    }
    tr__conn_cfg_copy(cc, &cfg->conn);
    cc->handler_actor = cfg->handler_actor;
    cc->observer = cfg->observer;
    cc->on_gone = tr__admission_gone;
    cc->tp = &tr__tcp_transport;
    tr__budget_init(&cc->budget, &cfg->budget);
    if ((rc = tr__conn_cfg_check(cc)) < 0 ||
        (rc = tr__conn_cfg_set_tls(cc, cfg->conn.tls, true, NULL)) < 0) {
        goto fail_free;
    }
    if ((rc = server_address(s, cfg)) < 0) {
        goto fail_free;
    }
    s->is_unix = s->addr.ss_family == AF_UNIX;
    if (s->is_unix && (cfg->unix_mode & ~07777u) != 0) {
        rc = TR_EINVAL;
        goto fail_free;
    }
    rc = TR_EINVAL;
    if (cfg->backlog <= 0 || (unsigned)cfg->accept_mode > TR_ACCEPT_SINGLE ||
        (unsigned)cfg->admission > TR_ADMIT_PAUSE) {
        goto fail_free;
    }
    rc = TR_ENOMEM;
    s->nagents = tr_runtime_workers(rt);
    s->agents = calloc(s->nagents, sizeof(tr__agent));
    s->stats = aligned_alloc(64, sizeof(tr__netstats) * s->nagents);
    if (s->agents == NULL || s->stats == NULL) {
        goto fail_arrays;
    }
    memset(s->stats, 0, sizeof(tr__netstats) * s->nagents);
    cc->owned = s->stats; /* connections count into it until they are gone */
    for (unsigned i = 0; i < s->nagents; i++) {
        s->agents[i].srv = s;
        s->agents[i].idx = i;
        s->agents[i].lfd = -1;
    }
    if (s->adopted) {
        s->agents[0].lfd = cfg->listen_fd; /* ours from now on */
    }
    tr__admission_init(s);
    *err = 0;
    return s;
fail_arrays:
    free(s->agents);
    free(s->stats);
fail_free:
    if (s->ccfg != NULL) {
        s->ccfg->owned = NULL;
    }
    tr__conn_cfg_release(s->ccfg);
    free(s->listen_host);
    free(s);
fail:
    *err = rc;
    return NULL;
}

int tr_server_start(tr_server *s)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    if (!tr_runtime_is_running(s->rt) || tr__load_acq_32(&s->state) != S_CREATED) {
        return TR_ESTATE;
    }
    /* A Unix path can be bound once, and an adopted listener is one
     * socket: one listener, round-robin hand-out. */
    bool reuseport = s->cfg.accept_mode == TR_ACCEPT_REUSEPORT && !s->is_unix && !s->adopted;
    unsigned nl = reuseport ? s->nagents : 1;
    int rc = 0;
    unsigned i = 0;
    if (s->adopted) {
        if ((rc = tr__adopt_prepare(s->agents[0].lfd)) < 0) {
            return rc;
        }
        tr__listener_set_bound(s);
        i = 1;
    }
    for (; i < nl; i++) {
        /* Port 0: the others must bind the port the first one got. */
        int fd = i == 0 ? tr__listener_open_first(s, reuseport)
                        : tr__listener_open(s, &s->bound, s->bound_len, reuseport);
        if (fd < 0) {
            rc = fd;
            goto fail;
        }
        s->agents[i].lfd = fd;
        if (i == 0) {
            tr__listener_set_bound(s);
        }
    }
    tr__store_rel_32(&s->state, S_RUNNING);
    for (i = 0; i < s->nagents; i++) {
        tr_spawn_opts opts;
        tr_spawn_opts_defaults(&opts);
        opts.worker = (int)i;
        tr_actor_id id;
        rc = tr_spawn(s->rt, &agent_behavior, &s->agents[i], &opts, &id);
        if (rc < 0) {
            /* Agents already spawned own their listeners; stop them. */
            tr__store_rel_32(&s->state, S_STOPPED);
            for (unsigned j = i; j < nl; j++) {
                close(s->agents[j].lfd);
                s->agents[j].lfd = -1;
            }
            if (i == 0) {
                tr__unix_path_unlink(&s->upath); /* no agent took the listener */
            }
            tr__server_send_agents(s, AG_EXIT);
            return rc;
        }
        s->agents[i].id = id;
        tr__faa_sc_32(&s->agents_alive, 1);
    }
    char addr[80];
    tr_server_address(s, addr, sizeof(addr));
    info(s, "event=server_listening addr=%s workers=%u mode=%s", addr, s->nagents,
         reuseport ? "reuseport" : "single");
    return 0;
fail:
    while (i-- > 0) {
        close(s->agents[i].lfd);
        s->agents[i].lfd = -1;
    }
    tr__unix_path_unlink(&s->upath);
    return rc;
}

int tr_server_address(const tr_server *s, char *buf, size_t len)
{
    if (tr__load_acq_32((uint32_t *)&s->state) == S_CREATED) {
        return TR_ESTATE;
    }
    return tr__addr_format((const struct sockaddr *)&s->bound, s->bound_len, buf, len);
}

int tr_server_port(const tr_server *s)
{
    if (tr__load_acq_32((uint32_t *)&s->state) == S_CREATED) {
        return TR_ESTATE;
    }
    if (s->is_unix) {
        return 0; /* no port */
    }
    if (s->bound.ss_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)&s->bound)->sin6_port);
    }
    return ntohs(((const struct sockaddr_in *)&s->bound)->sin_port);
}

static bool wait_open_zero(tr_server *s, uint64_t deadline)
{
    while (tr__load_acq_64(&s->open) != 0) {
        if (tr__now_ms() >= deadline) {
            return false;
        }
        tr__nap();
    }
    return true;
}

static void stop_accepting(tr_server *s, uint64_t deadline)
{
    tr__store_rel_32(&s->acks, 0);
    tr__server_send_agents(s, AG_STOP_ACCEPT);
    tr__wait_u32(&s->acks, tr__load_acq_32(&s->agents_alive), deadline);
    tr__unix_path_unlink(&s->upath); /* nobody accepts on it any more */
}

int tr_server_shutdown(tr_server *s, uint32_t timeout_ms)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    if (!tr__cas_sc_32(&s->state, S_RUNNING, S_DRAINING)) {
        return TR_ESTATE;
    }
    uint64_t deadline = tr__now_ms() + timeout_ms;
    info(s, "event=server_draining open=%llu timeout_ms=%u",
         (unsigned long long)tr__load_acq_64(&s->open), timeout_ms);
    stop_accepting(s, deadline);
    tr__store_rel_32(&s->draining, 1);
    tr__server_send_agents(s, AG_DRAIN);
    int rc = 0;
    if (!wait_open_zero(s, deadline)) {
        rc = TR_ETIMEDOUT;
        info(s, "event=server_drain_timeout forcing=%llu",
             (unsigned long long)tr__load_acq_64(&s->open));
        tr__store_rel_32(&s->forcing, 1);
        tr__server_send_agents(s, AG_FORCE);
        wait_open_zero(s, tr__now_ms() + 5000);
    }
    tr__store_rel_32(&s->state, S_STOPPED);
    info(s, "event=server_stopped result=%s", rc == 0 ? "clean" : "forced");
    return rc;
}

int tr_server_close(tr_server *s)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    uint32_t st = tr__fas_sc_32(&s->state, S_STOPPED);
    if (st == S_STOPPED || st == S_CREATED) {
        return 0;
    }
    uint64_t deadline = tr__now_ms() + 5000;
    stop_accepting(s, deadline);
    tr__store_rel_32(&s->draining, 1);
    tr__store_rel_32(&s->forcing, 1);
    tr__server_send_agents(s, AG_FORCE);
    wait_open_zero(s, deadline);
    return 0;
}

int tr_server_free(tr_server *s)
{
    if (s == NULL) {
        return 0;
    }
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK; /* it waits for the agents, which may need this worker */
    }
    tr_server_close(s);
    tr__server_send_agents(s, AG_EXIT);
    if (!tr__wait_u32(&s->agents_alive, 0, tr__now_ms() + 5000) || tr__load_acq_64(&s->open) != 0) {
        /* An agent or connection could still touch s: leak it rather than
         * risk a use-after-free. */
        tr_log(TR_LOG_ERROR, "event=server_free_busy agents=%u open=%llu",
               tr__load_acq_32(&s->agents_alive), (unsigned long long)tr__load_acq_64(&s->open));
        return TR_ETIMEDOUT;
    }
    for (unsigned i = 0; i < s->nagents; i++) {
        if (s->agents[i].lfd >= 0) {
            close(s->agents[i].lfd); /* never handed to a started agent */
        }
    }
    tr__admission_fini(s);
    tr__unix_path_unlink(&s->upath);
    free(s->listen_host);
    free(s->agents);
    tr__conn_cfg_release(s->ccfg); /* and the counters, once no connection needs them */
    free(s);
    return 0;
}

int tr_server_adopt(tr_server *s, int fd)
{
    if (s == NULL || fd < 0) {
        return TR_EINVAL;
    }
    if (tr__load_acq_32(&s->state) != S_RUNNING) {
        return TR_ESTATE;
    }
    int family;
    int rc = tr__adopt_check(fd, false, &family);
    if (rc < 0) {
        return rc;
    }
    if ((family == AF_UNIX) != s->is_unix) {
        return -EAFNOSUPPORT; /* a TCP server adopts TCP connections, a Unix one Unix ones */
    }
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) {
        return -errno; /* -ENOTCONN */
    }
    if ((rc = tr__adopt_prepare(fd)) < 0) {
        return rc;
    }
    /* The agent admits it on its own worker, with the same limits, hooks
     * and counters as an accepted socket. */
    unsigned w = tr__faa_sc_32(&s->rr, 1) % s->nagents;
    return tr_send_copy(s->agents[w].id, AG_ADOPT, &fd, sizeof(fd));
}

bool tr_server_is_running(const tr_server *s)
{
    return tr__load_acq_32((uint32_t *)&s->state) == S_RUNNING;
}

bool tr_server_is_gone(const tr_server *s)
{
    return tr__load_acq_32((uint32_t *)&s->state) == S_STOPPED &&
           tr__load_acq_64((uint64_t *)&s->open) == 0;
}

bool tr_server_is_draining(const tr_server *s)
{
    return tr__load_acq_32((uint32_t *)&s->state) == S_DRAINING;
}

uint64_t tr_server_open_connections(const tr_server *s)
{
    return tr__load_acq_64((uint64_t *)&s->open);
}

void tr_server_stats_get(const tr_server *s, tr_server_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned w = 0; w < s->nagents; w++) {
        const tr_server_stats *p = &s->stats[w].s;
#define SUM(f) out->f += tr__load_rlx_64((uint64_t *)&p->f)
        SUM(accepted);
        SUM(refused);
        SUM(closed);
        SUM(bytes_in);
        SUM(bytes_out);
        SUM(frames_in);
        SUM(frames_out);
        SUM(disconnects);
        SUM(continues);
        SUM(sends_refused);
        SUM(idle_timeouts);
        SUM(accept_errors);
        SUM(forced_closes);
        SUM(tls_handshakes);
        SUM(budget_pauses);
        SUM(budget_closes);
        SUM(budget_refused);
        SUM(frame_timeouts);
        for (int i = 0; i < TR_ERR__COUNT; i++) {
            SUM(errors[i]);
        }
#undef SUM
    }
    out->active = tr__load_acq_64((uint64_t *)&s->open);
}
