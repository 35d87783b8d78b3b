/* Listening sockets (bind and listen, on an address or the first address
 * of a name that binds) and the accept loop each agent runs on its worker:
 * up to ACCEPTS_PER_EVENT accepts per readiness, a pause while admission
 * is full (TR_ADMIT_PAUSE), and a timer instead of the watcher while the
 * process is out of descriptors. */
#include "listener.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/atomic.h"
#include "admission.h"
#include "resolve.h"
#include "troupe/log.h"

#define ACCEPTS_PER_EVENT 64
#define EMFILE_RETRY_S 0.1

/* ---- listening sockets ---- */

int tr__listener_open(tr_server *s, const struct sockaddr_storage *sa, socklen_t len,
                      bool reuseport)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    if (!s->is_unix) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (reuseport) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    int rc = tr__unix_path_bind(&s->upath, fd, SOCK_STREAM, sa, len, s->cfg.unix_mode,
                                s->cfg.unix_group);
    if (rc == 0 && listen(fd, s->cfg.backlog) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        close(fd);
        tr__unix_path_unlink(&s->upath);
        return rc;
    }
    return fd;
}

void tr__listener_set_bound(tr_server *s)
{
    socklen_t bl = sizeof(s->bound);
    getsockname(s->agents[0].lfd, (struct sockaddr *)&s->bound, &bl);
    s->bound_len = bl;
}

/* The first listener: on the parsed address, or on the first address of
 * the name that binds. */
int tr__listener_open_first(tr_server *s, bool reuseport)
{
    tr__addrs as = {.n = 1, .a = {s->addr}, .len = {s->addr_len}};
    if (s->listen_host != NULL) {
        int rc = tr__resolve_wait(s->listen_host, s->listen_port, AF_UNSPEC,
                                  s->cfg.resolve_timeout_ms, &as);
        if (rc < 0) {
            return rc;
        }
    }
    int fd = TR_ENONAME;
    for (unsigned k = 0; k < as.n; k++) {
        if ((fd = tr__listener_open(s, &as.a[k], as.len[k], reuseport)) >= 0) {
            s->addr = as.a[k];
            s->addr_len = as.len[k];
            break;
        }
    }
    return fd;
}

/* ---- the accept loop ---- */

void tr__listener_stop(tr__agent *ag, struct ev_loop *loop)
{
    if (ag->listening) {
        ev_io_stop(loop, &ag->lio);
        ag->listening = false;
    }
}

void tr__listener_start(tr__agent *ag, struct ev_loop *loop)
{
    if (!ag->listening && ag->lfd >= 0 && tr__load_acq_32(&ag->srv->state) == S_RUNNING) {
        ev_io_start(loop, &ag->lio);
        ag->listening = true;
    }
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    tr__agent *ag = (tr__agent *)((char *)w - offsetof(tr__agent, lio));
    tr_server *s = ag->srv;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        if (s->cfg.max_connections && s->cfg.admission == TR_ADMIT_PAUSE &&
            tr__load_acq_64(&s->open) >= s->cfg.max_connections) {
            /* Pause: the backlog holds the rest until a connection closes. */
            tr__store_rel_32(&s->paused, 1);
            tr__listener_stop(ag, loop);
            if (tr__load_acq_64(&s->open) < s->cfg.max_connections &&
                tr__cas_sc_32(&s->paused, 1, 0)) {
                tr__listener_start(ag, loop); /* one closed meanwhile */
                continue;
            }
            return;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(ag->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            tr__admit(ag, fd, &peer, plen);
            continue;
        }
        int err = errno;
        if (err == EINTR || err == ECONNABORTED) {
            continue;
        }
        if (err == EAGAIN || err == EWOULDBLOCK) {
            return;
        }
        TR__STAT_ADD(&s->stats[ag->idx], accept_errors, 1);
        if (s->cfg.observer != NULL && s->cfg.observer->on_server_error != NULL) {
            s->cfg.observer->on_server_error(-err, s->cfg.conn.user);
        }
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            /* Out of fds: the listener stays readable, so watching it would
             * spin. Sleep on a timer instead and try again. */
            tr_log(TR_LOG_WARN, "event=accept_paused error=%s retry_ms=%d", strerror(err),
                   (int)(EMFILE_RETRY_S * 1000));
            tr__listener_stop(ag, loop);
            ev_timer_set(&ag->retry, EMFILE_RETRY_S, 0);
            ev_timer_start(loop, &ag->retry);
            return;
        }
        tr_log(TR_LOG_ERROR, "event=accept_error error=%s", strerror(err));
        return;
    }
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    tr__agent *ag = (tr__agent *)((char *)w - offsetof(tr__agent, retry));
    tr__listener_start(ag, loop);
}

void tr__listener_init(tr__agent *ag)
{
    ev_io_init(&ag->lio, on_accept, ag->lfd, EV_READ);
    ev_init(&ag->retry, on_retry);
}

void tr__listener_close(tr__agent *ag, struct ev_loop *loop)
{
    tr__listener_stop(ag, loop);
    ev_timer_stop(loop, &ag->retry);
    if (ag->lfd >= 0) {
        close(ag->lfd);
        ag->lfd = -1;
    }
}
