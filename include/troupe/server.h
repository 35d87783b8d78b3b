/* troupe: TCP servers.
 *
 * A server listens on one address and turns every accepted socket into a
 * connection actor on one of the runtime's workers. Lifecycle:
 * tr_server_new -> tr_server_start -> running -> tr_server_shutdown
 * (graceful, bounded) or tr_server_close (immediate) -> tr_server_free.
 * The runtime must outlive the server. */
#ifndef TROUPE_SERVER_H
#define TROUPE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/actor.h"
#include "troupe/budget.h"
#include "troupe/codec.h"
#include "troupe/conn.h"
#include "troupe/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_server tr_server;

/* What happens past max_connections. */
typedef enum tr_admission {
    TR_ADMIT_CLOSE = 0, /* accept and close at once (the client sees EOF) */
    TR_ADMIT_PAUSE = 1  /* stop accepting until a connection closes */
} tr_admission;

/* How accepted connections spread over workers. */
typedef enum tr_accept_mode {
    TR_ACCEPT_REUSEPORT = 0, /* one SO_REUSEPORT listener per worker (default) */
    TR_ACCEPT_SINGLE = 1     /* one listener on worker 0, round-robin hand-out */
} tr_accept_mode;

/* Lifecycle events for an observer (the seed's callbacks). Each runs on a
 * worker and must not block. Any may be NULL. */
typedef struct tr_server_observer {
    void (*on_new)(tr_conn *c, void *user);
    void (*on_read)(tr_conn *c, size_t bytes, void *user);
    void (*on_write)(tr_conn *c, size_t bytes, void *user);
    void (*on_close)(tr_conn *c, int reason, void *user);
    void (*on_error)(tr_conn *c, tr_error_class cls, int err, tr_error_action action, void *user);
    void (*on_info)(const char *line, void *user); /* server-level events */
    /* A server-level error: accepting failed (err is the negated errno:
     * -EMFILE when out of descriptors, then accepting pauses and retries;
     * others). No connection is involved. Runs on the accepting worker. */
    void (*on_server_error)(int err, void *user);
} tr_server_observer;

typedef struct tr_server_config {
    /* Required (unless listen_fd is set). "127.0.0.1:8080", "[::1]:0",
     * "0.0.0.0:0", "localhost:8080" (127.0.0.1, no resolver); a host
     * name, "name.example:8080", resolved by tr_server_start (see
     * resolve_timeout_ms) and bound on its first address that binds; or a Unix stream
     * socket: "unix:/run/app.sock" (a file: a stale one left by a dead
     * server is removed, one a live server listens on is refused with
     * -EADDRINUSE, a non-socket file with -EEXIST; it is unlinked when the
     * server stops), "unix:@name" (a Linux abstract name: no file). A Unix
     * server has one listener (accept_mode is ignored) and no per-IP limit;
     * conn.nodelay and conn.keepalive do not apply. */
    const char *listen;
    int backlog;               /* default 1024 */
    /* What every connection of the server shares (troupe/conn.h): codec
     * and handler (both required), timeouts, limits, socket options, TLS.
     * Server defaults: idle_timeout_ms 30000, keep-alive timing the
     * kernel's. */
    tr_conn_settings conn;
    tr_actor_id handler_actor; /* frames go to this actor as TR_MSG_CONN_* instead */
    uint32_t max_connections;  /* default 0 = unlimited */
    tr_admission admission;    /* default TR_ADMIT_CLOSE */
    uint32_t max_per_ip;       /* default 0 = unlimited */
    /* Called on each accepted fd before use (SO_RCVBUF and friends).
     * Return 0, or a negative code to refuse the connection. */
    int (*on_socket)(int fd, void *user);
    tr_accept_mode accept_mode;
    const tr_server_observer *observer;
    /* Unix socket files: permission bits (default 0 = 0600: only this
     * user may connect) and group (a name; NULL keeps the process's). The
     * file never has wider permissions than asked, not even briefly. */
    uint32_t unix_mode;
    const char *unix_group;
    /* A listening socket made elsewhere, served instead of binding
     * `listen` (which is then ignored): systemd socket activation (see
     * tr_listen_fds) or the caller's own. A stream socket, TCP or Unix,
     * already listening; tr_server_new checks it (SO_ACCEPTCONN, SO_TYPE,
     * SO_DOMAIN). From a successful tr_server_new the server owns it: it
     * is made non-blocking and close-on-exec at start, closed when the
     * server stops (or by tr_server_free if it never started); a Unix
     * socket file is never unlinked (its maker owns it). One listener:
     * accept_mode is ignored. Default -1: none. */
    int listen_fd;
    /* A host name in `listen` is resolved by tr_server_start on the
     * calling thread (a private c-ares channel: the hosts file, then DNS;
     * TROUPE_DNS_SERVERS as for clients), waiting at most this long.
     * Default 5000; 0 with a host name is TR_EINVAL. */
    uint32_t resolve_timeout_ms;
    /* This server's own memory budget (troupe/budget.h), on top of the
     * runtime's (tr_net_budget_set), which every server and client shares.
     * Default {0, 0, 5000}: limits off, only the runtime's applies. */
    tr_budget budget;
} tr_server_config;

/* Fills cfg with the defaults above (listen, codec, handler unset).
 * Threads: any thread. */
TR_API void tr_server_config_defaults(tr_server_config *cfg);

/* Validates cfg and creates a server (not listening yet). Returns NULL with
 * *err = TR_ENOCODEC, TR_ENOHANDLER, TR_EADDR (neither an address nor a
 * valid host name), TR_EINVAL (inconsistent limits; a listen_fd that is
 * not listening), -EBADF, -ENOTSOCK, -ESOCKTNOSUPPORT (a listen_fd that
 * is not a stream socket), -EAFNOSUPPORT (nor TCP nor Unix) or
 * TR_ENOMEM. Never resolves a name (that waits for tr_server_start). cfg is copied; the codec,
 * handler and observer it points to must outlive the server.
 * Threads: any thread. */
TR_API tr_server *tr_server_new(tr_runtime *rt, const tr_server_config *cfg, int *err);

/* Resolves a host name (blocking, at most resolve_timeout_ms), binds,
 * listens and starts accepting; or starts accepting on listen_fd. Returns
 * 0, TR_ESTATE (not just created, or the runtime is not running),
 * TR_EDEADLK (on a worker), TR_ENONAME (the name did not resolve),
 * TR_ETIMEDOUT (no answer in time), or the bind error (TR_EADDRINUSE,
 * -EEXIST and -ENOENT for Unix paths, ...; the last address's).
 * Threads: not on a worker (blocks while resolving). */
TR_API int tr_server_start(tr_server *srv);

/* The bound address ("127.0.0.1:43125", "unix:/path"), valid once
 * started. Returns the length, TR_ESTATE (not started) or TR_EINVAL (buf
 * too small). tr_server_port returns the port (0 for Unix sockets) or
 * TR_ESTATE. Threads: any thread. */
TR_API int tr_server_address(const tr_server *srv, char *buf, size_t len);
TR_API int tr_server_port(const tr_server *srv);

/* Graceful shutdown: stops accepting (new connects are refused), tells
 * every connection to drain (on_shutdown, flush, half-close, read until the
 * peer closes), and waits up to timeout_ms. At the deadline the rest are
 * closed by force. Returns 0, TR_ETIMEDOUT if some were forced, or
 * TR_ESTATE. Threads: not on a worker (blocks); TR_EDEADLK there. */
TR_API int tr_server_shutdown(tr_server *srv, uint32_t timeout_ms);

/* Immediate close: stops accepting and aborts every connection; returns
 * 0 once all are closed (at most 5 s), also when already stopped.
 * Threads: not on a worker (blocks); TR_EDEADLK there. */
TR_API int tr_server_close(tr_server *srv);

/* Closes if needed and frees. NULL is a no-op. Returns 0; TR_ETIMEDOUT
 * if its accept agents or connections did not finish within 5 s (the
 * server is then left allocated rather than freed under them); or
 * TR_EDEADLK, doing nothing, when called on a worker.
 * Connections may outlive the server briefly (until their actors are
 * reclaimed): the settings they read stay alive until then.
 * Threads: not on a worker (blocks). */
TR_API int tr_server_free(tr_server *srv);

/* Adopts an already-connected socket (the seed's Handle(conn)) as a
 * connection of this running server: same codec, handler, policies,
 * limits (max_connections, max_per_ip, on_socket) and counters (it counts
 * as accepted, or refused) as an accepted one, on a worker chosen
 * round-robin. A TCP server adopts TCP sockets, a Unix server Unix ones.
 * Returns 0 once the server owns fd (made non-blocking and close-on-exec;
 * it may still be refused by the limits, or by a shutdown that began
 * meanwhile: then it is closed and counted as refused). On error fd stays
 * the caller's, open: TR_EINVAL (fd < 0, or a listening socket),
 * TR_ESTATE (not running), -EBADF, -ENOTSOCK, -ESOCKTNOSUPPORT (not a
 * stream socket), -EAFNOSUPPORT (the other kind of server), -ENOTCONN (not
 * connected), TR_ECLOSED or TR_ENOMEM. Call it after tr_server_start
 * returned and before tr_server_free. Threads: any thread (never
 * blocks). */
TR_API int tr_server_adopt(tr_server *srv, int fd);

/* The first descriptor passed by socket activation. */
#define TR_LISTEN_FDS_START 3

/* Socket activation (systemd's sd_listen_fds protocol, implemented here
 * without libsystemd): how many listening sockets the service manager
 * passed to this process, as fds TR_LISTEN_FDS_START, +1, ... (set
 * cfg.listen_fd to one of them). Reads LISTEN_PID and LISTEN_FDS; 0 when
 * they are absent or name another process (inherited from a parent).
 * Marks the passed fds close-on-exec; does not unset the variables.
 * Returns the count (>= 0), TR_EINVAL (an absurd LISTEN_FDS) or a negated
 * errno (-EBADF: a passed fd is not open). Threads: any thread, but call
 * it before threads that fork and exec exist. */
TR_API int tr_listen_fds(void);

/* States, and connections admitted and not gone yet; is_gone: stopped and
 * every connection gone (the seed's IsGone). Snapshots; they cannot fail.
 * Threads: any thread. */
TR_API bool tr_server_is_running(const tr_server *srv);
TR_API bool tr_server_is_draining(const tr_server *srv);
TR_API bool tr_server_is_gone(const tr_server *srv);
TR_API uint64_t tr_server_open_connections(const tr_server *srv);

typedef struct tr_server_stats {
    uint64_t accepted;     /* connections accepted and admitted */
    uint64_t refused;      /* accepted but closed at once (limits, hook, on_open) */
    uint64_t active;       /* open now */
    uint64_t closed;
    uint64_t bytes_in, bytes_out;
    uint64_t frames_in, frames_out;
    uint64_t errors[TR_ERR__COUNT];
    uint64_t disconnects;  /* errors answered with TR_DISCONNECT */
    uint64_t continues;    /* errors answered with TR_CONTINUE */
    uint64_t sends_refused;
    uint64_t idle_timeouts;
    uint64_t accept_errors; /* EMFILE and friends */
    uint64_t forced_closes; /* closed by force at a shutdown deadline */
    uint64_t tls_handshakes; /* completed (failures count in errors[TR_ERR_TLS]) */
    uint64_t budget_pauses;  /* reading paused at an input budget (runtime's or server's) */
    uint64_t budget_closes;  /* closed at an input budget (also in errors[TR_ERR_BUDGET]) */
    uint64_t budget_refused; /* writes refused at an output budget (also in sends_refused) */
    uint64_t frame_timeouts; /* frames past frame_timeout_ms (also errors[TR_ERR_FRAME_TIMEOUT]) */
} tr_server_stats;

/* A snapshot of the counters (summed over workers; each counter is exact
 * once the server is quiet). Threads: any thread. */
TR_API void tr_server_stats_get(const tr_server *srv, tr_server_stats *out);

#ifdef __cplusplus
}
#endif

#endif
