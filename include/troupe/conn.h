/* troupe: connections.
 *
 * Every connection (accepted by a server or made by a client) is an actor
 * on one worker. Its reader decodes the byte stream with the codec and
 * hands each frame to the handler; its writer queues what is sent and
 * drains it with writev when the socket is writable, once per loop turn.
 *
 * Two handles:
 * - `tr_conn *` is the connection itself, valid only inside its handler
 *   callbacks, on its worker. The fast calls (tr_conn_write, ...) take it.
 * - `tr_conn_id` is a value safe anywhere and after the connection is gone
 *   (sends then return TR_ECLOSED), for other actors and threads.
 *
 * Handlers are either callbacks run inside the connection actor (the
 * default: no message per frame) or another actor, which then receives the
 * TR_MSG_CONN_* messages below. */
#ifndef TROUPE_CONN_H
#define TROUPE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "troupe/actor.h"
#include "troupe/buf.h"
#include "troupe/codec.h"
#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_conn tr_conn;

/* A connection handle usable from any thread. Zero names none. */
typedef struct tr_conn_id {
    uint64_t bits;
} tr_conn_id;

/* The connection as an actor (for tr_send, tr_monitor, a message's
 * sender), and back: a connection's id is its actor's id. Threads: any. */
static inline tr_actor_id tr_conn_actor(tr_conn_id id)
{
    tr_actor_id a = {id.bits};
    return a;
}

static inline tr_conn_id tr_conn_from_actor(tr_actor_id a)
{
    tr_conn_id c = {a.bits};
    return c;
}

/* Error classes, for the error policy. */
typedef enum tr_error_class {
    TR_ERR_PEER_RESET = 0,      /* the peer reset the connection */
    TR_ERR_READ = 1,            /* read failed */
    TR_ERR_WRITE = 2,           /* write failed (incl. EPIPE) */
    TR_ERR_FRAME_TOO_LARGE = 3, /* a frame exceeded the max frame size */
    TR_ERR_MALFORMED = 4,       /* the codec rejected the input */
    TR_ERR_HANDLER = 5,         /* on_frame returned an error */
    TR_ERR_IDLE_TIMEOUT = 6,    /* nothing read or written for idle_timeout_ms */
    TR_ERR_WRITE_TIMEOUT = 7,   /* queued output made no progress for write_timeout_ms */
    TR_ERR_SEND_OVERFLOW = 8,   /* the send queue overflowed under TR_OVERFLOW_EXIT */
    TR_ERR_TLS = 9,             /* TLS: handshake failed or timed out, bad record, alert */
    TR_ERR_BUDGET = 10,         /* paused past the grace period at a spent input budget
                                   (troupe/budget.h); err TR_ENOBUFS */
    TR_ERR_FRAME_TIMEOUT = 11,  /* a frame started and did not complete within
                                   frame_timeout_ms; err TR_ETIMEDOUT */
    TR_ERR__COUNT = 12
} tr_error_class;

/* What to do about an error (the seed's ErrorAction). */
typedef enum tr_error_action {
    TR_DISCONNECT = 0, /* close the connection (the default for every class) */
    TR_CONTINUE = 1    /* keep it: honoured where it can make sense, see below */
} tr_error_action;

/* CONTINUE is honoured for FRAME_TOO_LARGE and MALFORMED only when the
 * codec can resynchronise (the line codec skips to the next newline), for
 * HANDLER (the frame is dropped), IDLE_TIMEOUT, WRITE_TIMEOUT and
 * FRAME_TIMEOUT (the clock restarts), SEND_OVERFLOW (the send is refused,
 * the connection stays) and BUDGET (the connection stays paused for
 * another grace period). PEER_RESET, READ, WRITE and TLS always disconnect: the socket
 * (or the TLS session) is unusable. TLS errors may come before on_open: a
 * handshake that fails or times out (err TR_ETLS / TR_ETIMEDOUT) reaches
 * on_error and the observer, and the connection never opens. */

/* Name of an error class ("peer_reset", ...); never NULL ("unknown" for
 * a value out of range). Threads: any thread. */
TR_API const char *tr_error_class_name(tr_error_class cls);

/* Connection callbacks. All run on the connection's worker, inside its
 * actor, never inside the call that caused them. `user` is the config's
 * user pointer. Any may be NULL except on_frame. */
typedef struct tr_handler {
    /* A connection is open. Return 0, or a negative code to close it at
     * once (on_close then follows). */
    int (*on_open)(tr_conn *c, void *user);
    /* One decoded frame; data is valid only during the call. Return 0, or a
     * negative code: a TR_ERR_HANDLER error for the policy. */
    int (*on_frame)(tr_conn *c, const void *data, size_t len, void *user);
    /* The send queue crossed the high watermark (writable = false) or went
     * back under the low one (true). Reading pauses meanwhile. */
    void (*on_writable)(tr_conn *c, bool writable, void *user);
    /* The server is draining: last chance to queue a goodbye frame. The
     * connection then flushes, half-closes and closes. */
    void (*on_shutdown)(tr_conn *c, void *user);
    /* The connection is closed (fd released). reason is 0 for an orderly
     * close, else the TR_E* code that ended it. Last callback. */
    void (*on_close)(tr_conn *c, int reason, void *user);
    /* An error happened; return what to do. NULL: use the policy table. */
    tr_error_action (*on_error)(tr_conn *c, tr_error_class cls, int err, void *user);
    /* A connection is an actor: an application message (type >=
     * TR_MSG_USER) sent to its id (tr_send(tr_conn_actor(id), m)) comes
     * here, in order with the connection's other callbacks. The runtime
     * frees m after the call unless it is claimed (tr_msg_claim). Messages
     * reaching a closed connection are dropped. NULL: dropped. */
    void (*on_message)(tr_conn *c, tr_msg *m, void *user);
} tr_handler;

struct tr_tls;

/* What every connection of one server or client shares: framing, handler,
 * error policy, timeouts, limits, socket options and TLS. A member (`conn`)
 * of tr_server_config and tr_client_config; tr_server_config_defaults and
 * tr_client_config_defaults fill it with their side's defaults (they
 * differ where noted). Copied when the server or client is made; the codec,
 * handler and TLS context it points to must outlive it (a TLS context is
 * retained). */
typedef struct tr_conn_settings {
    const tr_codec *codec;     /* required (TR_ENOCODEC) */
    const tr_handler *handler; /* required (TR_ENOHANDLER) unless a server's handler_actor is */
    void *user;                /* handed to every callback */
    tr_error_action policy[TR_ERR__COUNT]; /* default all TR_DISCONNECT */
    /* Nothing read or written for this long: TR_ERR_IDLE_TIMEOUT. Server
     * default 30000, client default 0; 0 = off. */
    uint32_t idle_timeout_ms;
    uint32_t write_timeout_ms; /* queued output stuck this long; default 0 = off */
    /* Once a frame has started (bytes of it are held, waiting for the
     * rest), it must complete within this long, however the bytes trickle
     * in: TR_ERR_FRAME_TIMEOUT (err TR_ETIMEDOUT), then a graceful close.
     * Unlike the idle timeout, reading resets nothing; only completing the
     * frame does. Default 30000 (server and client); 0 = off. Size it for
     * the largest frame at the slowest rate a real peer sends
     * (max_frame_bytes / rate), see docs/guide.md. */
    uint32_t frame_timeout_ms;
    uint32_t linger_ms;        /* max wait for the peer's FIN after our half-close; default 5000 */
    size_t max_frame_bytes;    /* default 1 MiB */
    size_t send_queue_bytes;   /* per-connection send queue limit; default 4 MiB */
    size_t high_watermark;     /* default 1 MiB: pause reading, on_writable(false) */
    size_t low_watermark;      /* default 256 KiB: resume, on_writable(true) */
    tr_overflow send_overflow; /* full queue: REFUSE (default), DROP_OLDEST, EXIT = disconnect */
    bool nodelay;              /* TCP_NODELAY; default true (not for Unix sockets) */
    bool keepalive;            /* SO_KEEPALIVE; default true (not for Unix sockets) */
    /* Keep-alive timing, in seconds / probes; 0 keeps the kernel's (idle
     * 7200 s, interval 75 s, 9 probes on Linux). Defaults: all 0 for a
     * server; for a client idle 300 (the seed's 5 min), the others 0. */
    uint32_t keepalive_idle_s, keepalive_interval_s, keepalive_count;
    /* TLS (troupe/tls.h): a server context for a server, a client one for
     * a client, or NULL for plain bytes. The server or client holds its
     * own reference. A handshake must complete within
     * tls_handshake_timeout_ms (default 10000) of the accept or connect,
     * or the connection is closed (TR_ERR_TLS, TR_ETIMEDOUT). */
    struct tr_tls *tls;
    uint32_t tls_handshake_timeout_ms;
} tr_conn_settings;

/* Messages a handler actor receives (tr_msg_ref holds the tr_conn_id bits;
 * tr_msg_from is the connection actor). */
enum tr_conn_msg_type {
    TR_MSG_CONN_OPEN = 256,       /* a connection opened */
    TR_MSG_CONN_FRAME = 257,      /* payload = one decoded frame */
    TR_MSG_CONN_UNWRITABLE = 258, /* send queue over the high watermark */
    TR_MSG_CONN_WRITABLE = 259,   /* back under the low watermark */
    TR_MSG_CONN_SHUTDOWN = 260,   /* draining: send a goodbye with tr_conn_send */
    TR_MSG_CONN_CLOSED = 261      /* closed; tr_msg_reason as on_close */
};

static inline tr_conn_id tr_conn_id_from_msg(const tr_msg *m)
{
    tr_conn_id id = {tr_msg_ref(m)};
    return id;
}

/* Per-connection counters. */
typedef struct tr_conn_stats {
    uint64_t bytes_in, bytes_out;
    uint64_t frames_in, frames_out;
    uint64_t sends_refused;
    uint64_t queued_bytes; /* now */
} tr_conn_stats;

/* ---- the connection itself ----
 * Threads: the connection's own worker, inside one of its handler
 * callbacks (or on a tr_embedded connection, the test's thread). Nothing
 * here blocks. */

/* Encodes and queues one frame; it leaves before the worker next waits for
 * events. Returns 0, TR_EBUFFULL (queue over its limit and the overflow
 * policy refuses: nothing queued), TR_ECLOSED, TR_EMSGSIZE (over
 * max_frame_bytes, or the codec refuses the length) or TR_ENOMEM.
 * Threads: the connection's worker, in its callbacks. */
TR_API int tr_conn_write(tr_conn *c, const void *data, size_t len);

/* As tr_conn_write with a shared buffer (no copy); the same returns, and
 * TR_EINVAL if b is NULL. Takes b in every case. Threads: the connection's worker, in its
 * callbacks. */
TR_API int tr_conn_write_buf(tr_conn *c, tr_buf *b);

/* Graceful close: stops reading frames, flushes the queue, half-closes,
 * waits (bounded) for the peer to close, then closes. on_close follows.
 * Returns 0 (also when already closing), or TR_ECLOSED once closed.
 * Threads: the connection's worker, in its callbacks. */
TR_API int tr_conn_close(tr_conn *c);

/* Immediate close; unsent data is dropped and the peer sees a reset.
 * Returns 0, or TR_ECLOSED if already closed. Threads: the connection's
 * worker, in its callbacks. */
TR_API int tr_conn_abort(tr_conn *c);

/* Half-close: after the queue is flushed, shut the write side (the peer
 * reads EOF); reading goes on. Returns 0, or TR_ECLOSED if closing.
 * Threads: the connection's worker, in its callbacks. */
TR_API int tr_conn_shutdown_write(tr_conn *c);

/* Half-close the other way (the seed's CloseRead): stop reading now; what
 * the peer sends from here on is discarded by the kernel (TCP, Unix:
 * shutdown(SHUT_RD)) or left unread (TLS), and no frame reaches the
 * handler any more. Writing goes on; a close then ends at once, not
 * waiting for the peer's EOF it can no longer see. Returns 0, or
 * TR_ECLOSED if closing or closed.
 * Threads: the connection's worker, in its callbacks. */
TR_API int tr_conn_shutdown_read(tr_conn *c);

/* Closing or closed; the id (safe anywhere, forever); the user pointer;
 * the counters. They cannot fail. Threads: the connection's worker, in
 * its callbacks. */
TR_API bool tr_conn_is_closed(const tr_conn *c);
TR_API tr_conn_id tr_conn_get_id(const tr_conn *c);
TR_API void *tr_conn_user(const tr_conn *c);
TR_API void tr_conn_set_user(tr_conn *c, void *user);
TR_API void tr_conn_stats_get(const tr_conn *c, tr_conn_stats *out);

/* Peer and local address as "host:port" ("[v6]:port" for IPv6;
 * "unix:/path", "unix:@name", or "unix:" for an unnamed Unix socket such as
 * a client's). Returns the length, or TR_EINVAL if buf is too small (64
 * bytes always do for IP; a Unix path may need 114). Threads: the
 * connection's worker, in its callbacks. */
TR_API int tr_conn_peer(const tr_conn *c, char *buf, size_t len);
TR_API int tr_conn_local(const tr_conn *c, char *buf, size_t len);

/* Who is at the other end of a Unix stream connection (SO_PEERCRED: the
 * peer's credentials when it connected). */
typedef struct tr_peer_cred {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} tr_peer_cred;

/* Fills *out for a Unix stream connection. Returns 0, TR_EINVAL (not a
 * Unix socket, or closed) or a negated errno. Threads: the connection's
 * worker, in its callbacks. */
TR_API int tr_conn_peer_cred(const tr_conn *c, tr_peer_cred *out);

/* ---- by id ----
 * Threads: any thread, unless noted; nothing blocks unless noted. */

/* Queues a frame on the connection behind id (a copy of data). Never
 * blocks. Returns 0, TR_EBUFFULL (over the queue limit: the seed's
 * ErrBufferFull), TR_ECLOSED, TR_EMSGSIZE or TR_ENOMEM.
 * Threads: any thread. */
TR_API int tr_conn_send(tr_conn_id id, const void *data, size_t len);

/* As tr_conn_send with a shared buffer: one buffer, many connections, no
 * copies; the same returns (TR_EINVAL if b is NULL). Takes b in every
 * case. Threads: any thread. */
TR_API int tr_conn_send_buf(tr_conn_id id, tr_buf *b);

/* Queues b on every connection in ids[0..n) (each frames it with its own
 * codec): one message per worker that owns some of them, not one per
 * connection, so a broadcast to thousands costs little more than the
 * writes. Each connection sees a sender's frames in the order sent, mixed
 * with its tr_conn_send / tr_conn_send_buf frames. As with tr_conn_send,
 * each frame's room is reserved in the connection's send queue at once: a
 * full queue refuses it (counted in that connection's sends_refused; under
 * TR_OVERFLOW_EXIT the connection is closed), and the caller is not told
 * which. The connections must belong to one runtime: ids of closed
 * connections, or of another runtime, are skipped. Takes b in every case.
 * Returns how many connections it was queued for (0 to n), TR_EINVAL (b
 * NULL, ids NULL with n > 0, n > INT_MAX) or TR_ENOMEM (nothing sent; on
 * a partial failure, the count of those sent).
 * Threads: any thread. */
TR_API int tr_conn_send_buf_many(const tr_conn_id *ids, size_t n, tr_buf *b);

/* Waits up to timeout_ms for room, then sends (the seed's WriteTimeout /
 * WriteBlocking). The caller sleeps until the connection's queue shrinks
 * or it closes (it is told; it does not poll). Returns as tr_conn_send,
 * or TR_ETIMEDOUT.
 * Threads: not on a worker (blocks); TR_EDEADLK there. */
TR_API int tr_conn_send_wait(tr_conn_id id, const void *data, size_t len, uint32_t timeout_ms);

/* Asks the connection to close gracefully / abort (tr_conn_close /
 * tr_conn_abort, run on its worker). Returns 0, TR_ECLOSED (gone) or
 * TR_ENOMEM. Threads: any thread. */
TR_API int tr_conn_close_id(tr_conn_id id);
TR_API int tr_conn_abort_id(tr_conn_id id);

/* True once the connection is closing or gone (a snapshot); it cannot
 * fail. Threads: any thread. */
TR_API bool tr_conn_id_is_closed(tr_conn_id id);

#ifdef __cplusplus
}
#endif

#endif
