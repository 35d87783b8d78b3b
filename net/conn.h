/* Internal: the connection actor.
 *
 * Design notes. A connection is an actor whose record carries a tr_conn in
 * its extra bytes (tr__actor_extra), so a foreign sender holding a pin may
 * touch the two atomic fields (`queued`, `closing`) however late. All else
 * belongs to the owning worker.
 *
 * Bytes in: the read watcher reads into the worker's shared buffer; frames
 * are decoded in place and handed to the handler at once; only the tail of
 * an incomplete frame is copied into a right-sized per-connection buffer
 * (`pend`), freed when the frame completes. An idle connection owns no
 * buffer.
 * Bytes out: writes append to the send queue and put the connection on its
 * worker's flush list; the list is written out with one writev per
 * connection after the loop's I/O callbacks (an ev_check at the lowest
 * priority) and before the loop next polls (an ev_prepare), so fan-out
 * gathers; a connection's own reply to a read is written at the end of
 * that read callback (conn_read.c says why). The write
 * watcher runs only while the kernel refuses bytes.
 * Backpressure: over the high watermark, or while a handler actor's bounded
 * mailbox is full, the read watcher stops (the kernel window then slows the
 * peer) until the queue is under the low watermark / the handler has room.
 * The same pause holds a connection whose partial frame grows while an
 * input budget is spent (budget.h), until the sweep resumes or closes it.
 * Timeouts: one ev_timer per connection, re-armed only when it fires (the
 * libev "cheap timeout" pattern), never on every read; a frame that starts
 * re-arms it only if its deadline (frame_timeout_ms) comes first. */
#ifndef TROUPE_NET_CONN_H
#define TROUPE_NET_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "troupe/codec.h"
#include "troupe/conn.h"
#include "troupe/server.h"
#include "../runtime/atomic.h"
#include "conn_settings.h"
#include "outq.h"

struct tr__netw;
struct tr__conn_list;

/* A connection's transport: operations over the connection's own transport
 * state (c->fd, c->tp_state). TCP and Unix stream sockets share the fd
 * operations (tcp.c); the in-memory connection is a transport of its own
 * (embedded.c); TLS will stack on the fd ones.
 * - read: >0 bytes, 0 at EOF, or -errno (-EAGAIN: nothing now).
 * - writev: bytes taken, or -errno (-EAGAIN: none taken now).
 * - pending (may be NULL: none): bytes the transport holds that the fd
 *   will never report readable (TLS records decrypted ahead); the reader
 *   keeps reading while it is nonzero.
 * - shutdown_wr: half-close the write side: 0, -EAGAIN (call again once
 *   writable: TLS's close_notify did not fit), or -errno; close: release
 *   everything (abort: discard unsent data, reset the peer).
 * - handshake (may be NULL: none): 0 done, -EAGAIN (call again when `want`
 *   says), or a TR_E* failure.
 * - want (may be NULL: each operation waits on its own direction): after
 *   an -EAGAIN, the direction the transport needs next (TR__WANT_*), which
 *   for TLS may be the other one: a read that must first write.
 * - retry_same: a writev that returned -EAGAIN (or fewer bytes than it
 *   was shown) holds on to what it was shown beyond that: the next call
 *   must show the same bytes first (TLS's record in flight), so the send
 *   queue must not drop them. */
enum { TR__WANT_READ = 1, TR__WANT_WRITE = 2 };
typedef struct tr__transport {
    ssize_t (*read)(tr_conn *c, void *buf, size_t len);
    ssize_t (*writev)(tr_conn *c, const struct iovec *iov, int n);
    size_t (*pending)(const tr_conn *c);
    int (*shutdown_wr)(tr_conn *c);
    void (*close)(tr_conn *c, bool abort);
    int (*handshake)(tr_conn *c);
    int (*want)(const tr_conn *c);
    /* Half-close the read side (may be NULL: reading just stops). */
    int (*shutdown_rd)(tr_conn *c);
    bool retry_same;
} tr__transport;

struct tr_conn {
    uint64_t queued;         /* any thread; atomics: reserved + queued bytes */
    uint32_t closing;        /* any thread; atomics: sends refused once set */
    /* tr_conn_send_wait: threads blocked on a full queue (they hold a pin)
     * and a sequence they sleep on (a futex), bumped by the owner when the
     * queue shrinks or the connection closes while someone waits. */
    uint32_t room_waiters;   /* any thread; atomics */
    uint32_t room_seq;       /* any thread; atomics */
    uint32_t flags;          /* owner only: F_* in conn_impl.h */
    tr_actor *actor;         /* NULL for an embedded connection */
    tr_conn_id id;
    const tr__conn_cfg *cfg;
    const tr__transport *tp; /* this connection's transport and its state */
    void *tp_state;
    struct tr__netw *nw;     /* NULL for an embedded connection */
    tr__netstats *st;        /* this worker's server counters, or NULL */
    int fd;
    int close_reason;
    ev_io rio;
    ev_io wio;
    ev_timer tmo;
    ev_tstamp last_io;
    ev_tstamp last_progress;
    ev_tstamp linger_until;
    ev_tstamp retry_at;
    tr_codec_state cst;
    unsigned char *pend;     /* tail of an incomplete frame */
    size_t pend_len, pend_cap;
    ev_tstamp frame_start;   /* when the frame held in pend began */
    ev_tstamp bp_since;      /* paused at an input budget since (F_BPAUSE) */
    tr_conn *bp_prev, *bp_next; /* worker's list of budget-paused connections */
    tr__outq out;
    tr_conn *dirty_next;     /* worker's flush list */
    tr_conn *list_prev, *list_next; /* owner's connection list (server) */
    struct tr__conn_list *list;
    void *user;
    void *owner;             /* server agent or client record */
    tr_conn_stats cs;
    struct sockaddr_storage peer;
    socklen_t peer_len;
};

typedef struct tr__conn_list {
    tr_conn *head;
    uint64_t n;
} tr__conn_list;

/* Message types between senders and the connection actor. */
enum {
    TR__MSG_CONN_SEND = TR_MSG__NET + 64,
    TR__MSG_CONN_CLOSE,
    TR__MSG_CONN_ABORT,
    TR__MSG_CONN_OVERFLOW
};

/* What the spawner hands the connection actor's init (which frees it). */
typedef struct tr__conn_arg {
    int fd;                  /* connected socket, or -1 to dial (client) */
    const tr__conn_cfg *cfg;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    void *owner;
    tr__conn_list *list;     /* owner's list on that worker, or NULL */
    tr__netstats *st;
    /* Client: dials instead of opening at once. */
    int (*dial)(tr_conn *c);
    /* Server: set while draining / forcing; checked when the actor starts,
     * so a connection accepted just before a shutdown is not missed. */
    const uint32_t *drain_flag;
    const uint32_t *force_flag;
} tr__conn_arg;

/* Spawns a connection actor on worker `worker` (-1: round-robin). The arg
 * is copied. Returns as tr_spawn; on failure the fd is NOT closed. */
int tr__conn_spawn(tr_runtime *rt, int worker, const tr__conn_arg *arg, tr_conn_id *out);

/* Owner-side steps used by the actor itself, client.c and embedded.c. */
void tr__conn_setup(tr_conn *c, const tr__conn_cfg *cfg, tr_actor *actor, struct tr__netw *nw);
void tr__conn_open(tr_conn *c);          /* fd connected: on_open, start reading */
void tr__conn_start(tr_conn *c);         /* fd connected: TLS handshake if any, then open */
void tr__conn_input(tr_conn *c, const unsigned char *data, size_t len); /* decode + deliver */
void tr__conn_flush(tr_conn *c);         /* write what the transport takes */
void tr__conn_drain(tr_conn *c);         /* server shutdown: goodbye, flush, linger */
void tr__conn_begin_close(tr_conn *c, int reason);
void tr__conn_finish_close(tr_conn *c, int reason, bool abort);
void tr__conn_eof(tr_conn *c);           /* the transport saw EOF */

/* Client: after a close, make the connection reusable for a redial. */
void tr__conn_reset(tr_conn *c);
/* Whether on_open ran / a drain was requested. */
bool tr__conn_was_opened(const tr_conn *c);
bool tr__conn_is_draining(const tr_conn *c);
/* Whether the application closed it (tr_conn_close/abort, or by id). */
bool tr__conn_closed_by_user(const tr_conn *c);

#endif
