/* Datagram endpoints: UDP and Unix datagram sockets.
 *
 * Each worker that has a socket runs an "agent" actor that owns it: the
 * read watcher, the recvmmsg buffers and the worker's counters. A UDP
 * endpoint with reuseport has one socket per worker (the kernel spreads
 * datagrams by their 4-tuple); otherwise, and for Unix sockets, worker 0's
 * agent alone receives. Sends do not go through the agents: sendto and
 * sendmmsg on a datagram socket are safe from any thread and never block
 * here (the sockets are non-blocking), so a reply leaves from the thread
 * that makes it, with no hand-off. The sockets are closed only in
 * tr_dgram_free, after the agents are gone, so a send racing a stop meets
 * a refused state or a live descriptor, never a reused number. */
#include "troupe/dgram.h"

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "troupe/log.h"
#include "troupe/runtime.h"
#include "../runtime/actor.h"
#include "../runtime/atomic.h"
#include "../runtime/msg_impl.h"
#include "../runtime/util.h"
#include "addr.h"
#include "resolve.h"
#include "unix_path.h"

enum { D_CREATED, D_RUNNING, D_STOPPED };
enum { AG_STOP = TR_MSG_USER + 1 };

typedef struct dstats {
    _Alignas(64) uint64_t in, bytes_in, truncated, handler_errors, undelivered;
} dstats;

typedef struct dagent {
    tr_dgram *d;
    unsigned idx;
    int fd;                /* -1: this worker has no socket */
    ev_io rio;
    tr_actor_id id;
    struct mmsghdr *hdrs;  /* owning worker: recvmmsg state */
    struct iovec *iovs;
    tr_dgram_addr *from;
    unsigned char *bufs;
    dstats st;
} dagent;

struct tr_dgram {
    tr_runtime *rt;
    tr_dgram_config cfg;
    tr_dgram_addr local;   /* parsed bind address */
    tr_dgram_addr peer;    /* parsed connect address */
    char *bind_host, *connect_host; /* host names resolved at start, or NULL */
    uint16_t bind_port, connect_port;
    bool has_bind, connected, is_unix;
    struct sockaddr_storage bound;
    socklen_t bound_len;
    tr__unix_path upath;
    uint32_t state;        /* atomics */
    uint32_t agents_alive; /* atomics */
    unsigned nagents;
    dagent *agents;
    int send_fd;           /* the socket sends use (agent 0's) */
    uint64_t out, bytes_out, refused_out; /* atomics (any thread sends) */
};

void tr_dgram_config_defaults(tr_dgram_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_datagram_bytes = 65507;
    cfg->batch = 8;
    cfg->reuseport = true;
    cfg->resolve_timeout_ms = 5000;
}

int tr_dgram_addr_parse(const char *s, tr_dgram_addr *out)
{
    memset(out, 0, sizeof(*out));
    return tr__addr_parse(s, &out->ss, &out->len);
}

int tr_dgram_addr_format(const tr_dgram_addr *a, char *buf, size_t len)
{
    return tr__addr_format((const struct sockaddr *)&a->ss, a->len, buf, len);
}

/* ---- receiving (the agent, on its worker) ---- */

static void deliver(dagent *ag, const unsigned char *data, size_t len, const tr_dgram_addr *from)
{
    tr_dgram *d = ag->d;
    if (d->cfg.on_datagram != NULL) {
        if (d->cfg.on_datagram(d, data, len, from, d->cfg.user) < 0) {
            tr__stat_add_64(&ag->st.handler_errors, 1);
        }
        return;
    }
    tr_msg *m = tr_msg_new(TR_MSG_DGRAM, NULL, sizeof(tr_dgram_addr) + len);
    if (m == NULL) {
        tr__stat_add_64(&ag->st.undelivered, 1);
        return;
    }
    memcpy(tr_msg_data(m), from, sizeof(*from));
    memcpy(tr_msg_data(m) + sizeof(*from), data, len);
    if (tr_send(d->cfg.handler_actor, m) < 0) {
        tr__stat_add_64(&ag->st.undelivered, 1);
    }
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    dagent *ag = tr__container_of(w, dagent, rio);
    tr_dgram *d = ag->d;
    unsigned batch = d->cfg.batch;
    size_t slot = d->cfg.max_datagram_bytes + 1; /* one more byte tells "too large" */
    for (unsigned i = 0; i < batch; i++) {
        ag->iovs[i].iov_base = ag->bufs + (size_t)i * slot;
        ag->iovs[i].iov_len = slot;
        memset(&ag->hdrs[i].msg_hdr, 0, sizeof(ag->hdrs[i].msg_hdr));
        ag->hdrs[i].msg_hdr.msg_iov = &ag->iovs[i];
        ag->hdrs[i].msg_hdr.msg_iovlen = 1;
        ag->hdrs[i].msg_hdr.msg_name = &ag->from[i].ss;
        ag->hdrs[i].msg_hdr.msg_namelen = sizeof(ag->from[i].ss);
    }
    int n = recvmmsg(ag->fd, ag->hdrs, batch, MSG_DONTWAIT, NULL);
    if (n <= 0) {
        return; /* EAGAIN, or an error the next readiness will show again */
    }
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &ag->hdrs[i].msg_hdr;
        size_t len = ag->hdrs[i].msg_len;
        if ((h->msg_flags & MSG_TRUNC) || len > d->cfg.max_datagram_bytes) {
            tr__stat_add_64(&ag->st.truncated, 1);
            continue;
        }
        ag->from[i].len = h->msg_namelen;
        tr__stat_add_64(&ag->st.in, 1);
        tr__stat_add_64(&ag->st.bytes_in, len);
        deliver(ag, ag->bufs + (size_t)i * slot, len, &ag->from[i]);
    }
}

static int agent_init(tr_actor *self, void *arg)
{
    dagent *ag = arg;
    tr_actor_set_state(self, ag);
    struct ev_loop *loop = tr_actor_loop(self);
    ev_io_init(&ag->rio, on_readable, ag->fd, EV_READ);
    if (tr__load_acq_32(&ag->d->state) == D_RUNNING) {
        ev_io_start(loop, &ag->rio);
    }
    return 0;
}

static void agent_receive(tr_actor *self, tr_msg *m)
{
    if (m->type == AG_STOP || m->type == TR_MSG_SHUTDOWN) {
        tr_exit(self, TR_EXIT_NORMAL);
    }
}

static void agent_terminate(tr_actor *self, int reason)
{
    (void)reason;
    dagent *ag = tr_actor_state(self);
    ev_io_stop(tr_actor_loop(self), &ag->rio);
    tr__faa_sc_32(&ag->d->agents_alive, UINT32_MAX);
}

static const tr_behavior agent_behavior = {
    .name = "dgram", .init = agent_init, .receive = agent_receive, .terminate = agent_terminate};

/* ---- lifecycle ---- */

/* A numeric or Unix address, parsed; or a host name, kept for start. */
static int endpoint_address(tr_dgram *d, const char *s, tr_dgram_addr *out, char **host,
                            uint16_t *port)
{
    int rc = tr_dgram_addr_parse(s, out);
    char name[256];
    if (rc != TR_EADDR || tr__resolve_split(s, name, sizeof(name), port) < 0) {
        return rc;
    }
    if (d->cfg.resolve_timeout_ms == 0) {
        return TR_EINVAL;
    }
    *host = strdup(name);
    return *host != NULL ? 0 : TR_ENOMEM;
}

tr_dgram *tr_dgram_new(tr_runtime *rt, const tr_dgram_config *cfg, int *err)
{
    int rc = TR_EINVAL;
    tr_dgram *d = NULL;
    if (rt == NULL || cfg == NULL || (cfg->bind == NULL && cfg->connect == NULL) ||
        cfg->max_datagram_bytes == 0 || cfg->max_datagram_bytes > 65535 || cfg->batch == 0 ||
        cfg->batch > 256 || (cfg->unix_mode & ~07777u) != 0) {
        goto fail;
    }
    if (cfg->on_datagram == NULL && tr_actor_id_is_none(cfg->handler_actor)) {
        rc = TR_ENOHANDLER;
        goto fail;
    }
    rc = TR_ENOMEM;
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        goto fail;
    }
    d->rt = rt;
    d->cfg = *cfg;
    d->send_fd = -1;
    if (cfg->bind != NULL &&
        (rc = endpoint_address(d, cfg->bind, &d->local, &d->bind_host, &d->bind_port)) < 0) {
        goto fail_free;
    }
    if (cfg->connect != NULL && (rc = endpoint_address(d, cfg->connect, &d->peer,
                                                        &d->connect_host, &d->connect_port)) < 0) {
        goto fail_free;
    }
    d->has_bind = cfg->bind != NULL;
    d->connected = cfg->connect != NULL;
    int fam = d->has_bind ? d->local.ss.ss_family : d->peer.ss.ss_family;
    if (d->has_bind && d->connected && d->bind_host == NULL && d->connect_host == NULL &&
        d->local.ss.ss_family != d->peer.ss.ss_family) {
        rc = TR_EADDR;
        goto fail_free;
    }
    d->is_unix = fam == AF_UNIX;
    d->local.ss.ss_family = (sa_family_t)fam;
    d->nagents = tr_runtime_workers(rt);
    rc = TR_ENOMEM;
    d->agents = calloc(d->nagents, sizeof(dagent));
    if (d->agents == NULL) {
        goto fail_free;
    }
    for (unsigned i = 0; i < d->nagents; i++) {
        d->agents[i].d = d;
        d->agents[i].idx = i;
        d->agents[i].fd = -1;
    }
    *err = 0;
    return d;
fail_free:
    free(d->bind_host);
    free(d->connect_host);
    free(d);
fail:
    *err = rc;
    return NULL;
}

/* The recvmmsg state of one agent. */
static int agent_buffers(dagent *ag, const tr_dgram_config *cfg)
{
    size_t slot = cfg->max_datagram_bytes + 1;
    ag->hdrs = calloc(cfg->batch, sizeof(*ag->hdrs));
    ag->iovs = calloc(cfg->batch, sizeof(*ag->iovs));
    ag->from = calloc(cfg->batch, sizeof(*ag->from));
    ag->bufs = malloc(slot * cfg->batch);
    return ag->hdrs && ag->iovs && ag->from && ag->bufs ? 0 : TR_ENOMEM;
}

/* One socket: options, bind (Unix path rules), connect. */
static int open_socket(tr_dgram *d, bool first, bool reuseport)
{
    int fd = socket(d->local.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int rc = 0;
    int one = 1;
    if (reuseport) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    if (d->cfg.on_socket != NULL && (rc = d->cfg.on_socket(fd, d->cfg.user)) < 0) {
        rc = rc == -1 ? TR_EINVAL : rc;
        goto fail;
    }
    if (d->has_bind) {
        /* Later sockets of a reuseport group bind the port the first got;
         * a Unix endpoint has one socket. */
        rc = first ? tr__unix_path_bind(&d->upath, fd, SOCK_DGRAM, &d->local.ss, d->local.len,
                                        d->cfg.unix_mode, d->cfg.unix_group)
                   : (bind(fd, (struct sockaddr *)&d->bound, d->bound_len) < 0 ? -errno : 0);
        if (rc < 0) {
            goto fail;
        }
    } else if (d->is_unix) {
        /* A Unix client needs an address to be answered at: autobind an
         * abstract one. */
        sa_family_t fam = AF_UNIX;
        if (bind(fd, (const struct sockaddr *)&fam, sizeof(fam)) < 0) {
            rc = -errno;
            goto fail;
        }
    }
    if (d->connected && connect(fd, (struct sockaddr *)&d->peer.ss, d->peer.len) < 0) {
        rc = -errno;
        goto fail;
    }
    if (first) {
        d->bound_len = sizeof(d->bound);
        getsockname(fd, (struct sockaddr *)&d->bound, &d->bound_len);
    }
    return fd;
fail:
    close(fd);
    if (first) {
        tr__unix_path_unlink(&d->upath);
    }
    return rc;
}

static void close_sockets(tr_dgram *d)
{
    for (unsigned i = 0; i < d->nagents; i++) {
        if (d->agents[i].fd >= 0) {
            close(d->agents[i].fd);
            d->agents[i].fd = -1;
        }
    }
    d->send_fd = -1;
}

/* Resolves a host name into out: an address of `family` (AF_UNSPEC:
 * any), the first given. */
static int resolve_endpoint(const tr_dgram *d, const char *host, uint16_t port, int family,
                            tr_dgram_addr *out)
{
    tr__addrs as;
    int rc = tr__resolve_wait(host, port, family, d->cfg.resolve_timeout_ms, &as);
    if (rc == 0) {
        memcpy(&out->ss, &as.a[0], sizeof(out->ss));
        out->len = as.len[0];
    }
    return rc;
}

/* Names in bind / connect, resolved on this thread; a connected endpoint
 * binds and connects in one family (the numeric side's, or the bind
 * name's). */
static int resolve_names(tr_dgram *d)
{
    int rc = 0;
    if (d->bind_host != NULL) {
        int fam = d->connected && d->connect_host == NULL ? d->peer.ss.ss_family : AF_UNSPEC;
        rc = resolve_endpoint(d, d->bind_host, d->bind_port, fam, &d->local);
    }
    if (rc == 0 && d->connect_host != NULL) {
        int fam = d->has_bind ? d->local.ss.ss_family : AF_UNSPEC;
        rc = resolve_endpoint(d, d->connect_host, d->connect_port, fam, &d->peer);
    }
    if (!d->has_bind) {
        d->local.ss.ss_family = d->peer.ss.ss_family;
    }
    return rc;
}

int tr_dgram_start(tr_dgram *d)
{
    if (tr_runtime_on_worker(d->rt)) {
        return TR_EDEADLK;
    }
    if (!tr_runtime_is_running(d->rt) || tr__load_acq_32(&d->state) != D_CREATED) {
        return TR_ESTATE;
    }
    int rc = resolve_names(d);
    if (rc < 0) {
        return rc;
    }
    /* Port 0 with reuseport: the first socket picks the port, the others
     * bind that one. A connected or Unix endpoint has one socket. */
    bool reuseport = d->cfg.reuseport && !d->is_unix && !d->connected && d->has_bind;
    unsigned n = reuseport ? d->nagents : 1;
    for (unsigned i = 0; i < n; i++) {
        int fd = open_socket(d, i == 0, reuseport);
        if (fd < 0) {
            rc = fd;
            goto fail;
        }
        d->agents[i].fd = fd;
        if ((rc = agent_buffers(&d->agents[i], &d->cfg)) < 0) {
            goto fail;
        }
    }
    d->send_fd = d->agents[0].fd;
    tr__store_rel_32(&d->state, D_RUNNING);
    for (unsigned i = 0; i < n; i++) {
        tr_spawn_opts opts;
        tr_spawn_opts_defaults(&opts);
        opts.worker = (int)i;
        tr__faa_sc_32(&d->agents_alive, 1);
        if ((rc = tr_spawn(d->rt, &agent_behavior, &d->agents[i], &opts, &d->agents[i].id)) < 0) {
            tr__faa_sc_32(&d->agents_alive, UINT32_MAX);
            tr_dgram_stop(d);
            return rc;
        }
    }
    return 0;
fail:
    close_sockets(d);
    tr__unix_path_unlink(&d->upath);
    return rc;
}

int tr_dgram_address(const tr_dgram *d, char *buf, size_t len)
{
    if (tr__load_acq_32((uint32_t *)&d->state) == D_CREATED) {
        return TR_ESTATE;
    }
    return tr__addr_format((const struct sockaddr *)&d->bound, d->bound_len, buf, len);
}

/* ---- sending (any thread) ---- */

static int send_error(tr_dgram *d, int err)
{
    tr__faa_rlx_64(&d->refused_out, 1);
    return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS ? TR_EBUFFULL : -err;
}

/* Counts one send's outcome and returns it as the API does. */
static int sent(tr_dgram *d, ssize_t r)
{
    if (r < 0) {
        return send_error(d, errno);
    }
    tr__faa_rlx_64(&d->out, 1);
    tr__faa_rlx_64(&d->bytes_out, (uint64_t)r);
    return (int)r;
}

static int check_send(tr_dgram *d, size_t len)
{
    if (tr__load_acq_32(&d->state) != D_RUNNING) {
        return TR_ECLOSED;
    }
    return len > d->cfg.max_datagram_bytes ? TR_EMSGSIZE : 0;
}

int tr_dgram_send_to(tr_dgram *d, const tr_dgram_addr *to, const void *data, size_t len)
{
    int rc = check_send(d, len);
    if (rc < 0) {
        return rc;
    }
    if (to == NULL || (data == NULL && len > 0)) {
        return TR_EINVAL;
    }
    ssize_t r = sendto(d->send_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL,
                       (const struct sockaddr *)&to->ss, to->len);
    return sent(d, r);
}

int tr_dgram_send(tr_dgram *d, const void *data, size_t len)
{
    if (!d->connected) {
        return TR_EINVAL;
    }
    int rc = check_send(d, len);
    if (rc < 0) {
        return rc;
    }
    ssize_t r = send(d->send_fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return sent(d, r);
}

int tr_dgram_send_batch(tr_dgram *d, const tr_dgram_out *out, unsigned n)
{
    if (n == 0 || out == NULL || n > 1024) {
        return TR_EINVAL;
    }
    if (tr__load_acq_32(&d->state) != D_RUNNING) {
        return TR_ECLOSED;
    }
    struct mmsghdr hdrs[64];
    struct iovec iovs[64];
    unsigned done = 0;
    while (done < n) {
        unsigned k = n - done < 64 ? n - done : 64;
        for (unsigned i = 0; i < k; i++) {
            const tr_dgram_out *o = &out[done + i];
            if (o->len > d->cfg.max_datagram_bytes || (o->to == NULL && !d->connected)) {
                return done > 0 ? (int)done : (o->to == NULL ? TR_EINVAL : TR_EMSGSIZE);
            }
            iovs[i].iov_base = (void *)o->data;
            iovs[i].iov_len = o->len;
            memset(&hdrs[i], 0, sizeof(hdrs[i]));
            hdrs[i].msg_hdr.msg_iov = &iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            if (o->to != NULL) {
                hdrs[i].msg_hdr.msg_name = (void *)&o->to->ss;
                hdrs[i].msg_hdr.msg_namelen = o->to->len;
            }
        }
        int r = sendmmsg(d->send_fd, hdrs, k, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r <= 0) {
            int rc = send_error(d, r < 0 ? errno : EAGAIN);
            return done > 0 ? (int)done : rc;
        }
        for (int i = 0; i < r; i++) {
            tr__faa_rlx_64(&d->out, 1);
            tr__faa_rlx_64(&d->bytes_out, hdrs[i].msg_len);
        }
        done += (unsigned)r;
        if ((unsigned)r < k) {
            tr__faa_rlx_64(&d->refused_out, 1);
            break; /* the socket buffer filled: the caller decides */
        }
    }
    return (int)done;
}

/* ---- messages to a handler actor ---- */

int tr_dgram_msg_from(const tr_msg *m, tr_dgram_addr *from)
{
    if (m->type != TR_MSG_DGRAM || m->len < sizeof(*from)) {
        return TR_EINVAL;
    }
    memcpy(from, m->data_, sizeof(*from));
    return 0;
}

const void *tr_dgram_msg_payload(const tr_msg *m, size_t *len)
{
    if (m->type != TR_MSG_DGRAM || m->len < sizeof(tr_dgram_addr)) {
        return NULL;
    }
    *len = m->len - sizeof(tr_dgram_addr);
    return m->data_ + sizeof(tr_dgram_addr);
}

/* ---- stopping ---- */

int tr_dgram_stop(tr_dgram *d)
{
    if (tr_runtime_on_worker(d->rt)) {
        return TR_EDEADLK;
    }
    uint32_t st = tr__fas_sc_32(&d->state, D_STOPPED);
    if (st != D_RUNNING) {
        return 0;
    }
    for (unsigned i = 0; i < d->nagents; i++) {
        if (!tr_actor_id_is_none(d->agents[i].id)) {
            tr_send_copy(d->agents[i].id, AG_STOP, NULL, 0);
        }
    }
    tr__wait_u32(&d->agents_alive, 0, tr__now_ms() + 5000);
    tr__unix_path_unlink(&d->upath);
    return 0;
}

int tr_dgram_free(tr_dgram *d)
{
    if (d == NULL) {
        return 0;
    }
    if (tr_runtime_on_worker(d->rt)) {
        return TR_EDEADLK;
    }
    tr_dgram_stop(d);
    if (tr__load_acq_32(&d->agents_alive) != 0) {
        tr_log(TR_LOG_ERROR, "event=dgram_free_busy agents=%u", tr__load_acq_32(&d->agents_alive));
        return TR_ETIMEDOUT; /* an agent could still touch d: leak it */
    }
    close_sockets(d);
    for (unsigned i = 0; i < d->nagents; i++) {
        free(d->agents[i].hdrs);
        free(d->agents[i].iovs);
        free(d->agents[i].from);
        free(d->agents[i].bufs);
    }
    free(d->agents);
    free(d->bind_host);
    free(d->connect_host);
    free(d);
    return 0;
}

uint64_t tr_dgram_open_connections(const tr_dgram *d)
{
    return tr_dgram_is_running(d) ? 1 : 0;
}

bool tr_dgram_is_running(const tr_dgram *d)
{
    return tr__load_acq_32((uint32_t *)&d->state) == D_RUNNING;
}

void tr_dgram_stats_get(const tr_dgram *d, tr_dgram_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < d->nagents; i++) {
        const dstats *s = &d->agents[i].st;
        out->datagrams_in += tr__load_rlx_64(&s->in);
        out->bytes_in += tr__load_rlx_64(&s->bytes_in);
        out->truncated += tr__load_rlx_64(&s->truncated);
        out->handler_errors += tr__load_rlx_64(&s->handler_errors);
        out->undelivered += tr__load_rlx_64(&s->undelivered);
    }
    out->datagrams_out = tr__load_rlx_64(&d->out);
    out->bytes_out = tr__load_rlx_64(&d->bytes_out);
    out->refused_out = tr__load_rlx_64(&d->refused_out);
}
