/* Internal: shared by the parts of the connection actor (conn.c: lifecycle,
 * handshake and the actor; conn_read.c: bytes in; conn_write.c: bytes out
 * and the send queue; conn_send.c: the any-thread API; conn_timer.c: the
 * timer; unix_cred.c: Unix peer credentials).
 * Everything here is owning-worker only unless it says otherwise. */
#ifndef TROUPE_NET_CONN_IMPL_H
#define TROUPE_NET_CONN_IMPL_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "../runtime/actor.h"
#include "../runtime/worker.h"
#include "conn.h"

enum {
    F_DIRTY = 1u << 0, /* on the flush list (netw.c uses the same bit) */
    F_OPEN = 1u << 1,
    F_READING = 1u << 2,
    F_WRITING = 1u << 3,
    F_UNWRITABLE = 1u << 4,
    F_HPAUSE = 1u << 5, /* handler actor's mailbox was full */
    F_CLOSING = 1u << 6,
    F_SHUT_REQ = 1u << 7,
    F_WR_SHUT = 1u << 8,
    F_LINGER = 1u << 9,
    F_CLOSED = 1u << 10,
    F_EOF = 1u << 11,
    F_DRAINING = 1u << 12,
    F_ABORT_REQ = 1u << 13,
    F_CONNECTED = 1u << 14,
    F_RESYNC = 1u << 15,    /* a CONTINUE resync dropped all input: keep dropping */
    F_USER_CLOSE = 1u << 16, /* tr_conn_close/abort: a client must not redial */
    F_HANDSHAKE = 1u << 17,  /* the transport's handshake runs (not connected yet) */
    F_RD_WANTS_WR = 1u << 18, /* a transport read waits for writability */
    F_WR_WANTS_RD = 1u << 19, /* a transport write waits for readability */
    F_RD_SHUT = 1u << 20,     /* tr_conn_shutdown_read: nothing more is read */
    F_BPAUSE = 1u << 21       /* paused at an input budget (budget.c) */
};

#define HANDLER_RETRY_S 0.005
#define READ_BUDGET (4 * TR__RBUF_BYTES)
#define MAX_IOV 128
/* While an input budget is spent, reads take this much at most, so a peer
 * starting a frame adds little before it is paused. */
#define TIGHT_READ 4096

/* Runs handler code as the connection actor, so tr_send inside a callback
 * carries the connection as sender. */
typedef struct tr__conn_ctx {
    tr__worker *w;
    tr_actor *prev;
} tr__conn_ctx;

ev_tstamp tr__conn_now(tr_conn *c);
void tr__conn_mark_dirty(tr_conn *c);
void tr__conn_unreserve(tr_conn *c, size_t n);
tr__conn_ctx tr__conn_enter(tr_conn *c);
void tr__conn_leave(tr__conn_ctx x);
bool tr__conn_has_handler_actor(const tr_conn *c);
void tr__conn_post_event(tr_conn *c, uint32_t type, int reason);
void tr__conn_update_reading(tr_conn *c);
/* Whether bytes should be read now (connected, not paused or closed). */
bool tr__conn_wants_input(const tr_conn *c);
/* Takes the transport's handshake one step (on either watcher). */
void tr__conn_handshake(tr_conn *c);
/* The handshake failed (or timed out): a server connection closes, a
 * client's handshake_done hook decides (redial or give up). */
void tr__conn_handshake_failed(tr_conn *c, int err);
/* Arms the connection's timer for its nearest deadline (conn_timer.c). */
void tr__conn_rearm(tr_conn *c);
/* The timer's callback: acts on every deadline passed, then re-arms. */
void tr__conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents);
tr_error_action tr__conn_error(tr_conn *c, tr_error_class cls, int err);
int tr__conn_keep_tail(tr_conn *c, const unsigned char *p, size_t n);
/* A frame started (now held in pend): arms the timer if its deadline is
 * the nearest (conn_timer.c). */
void tr__conn_frame_started(tr_conn *c);
void tr__conn_on_readable(struct ev_loop *loop, ev_io *w, int revents);
void tr__conn_read_some(tr_conn *c);
void tr__conn_on_writable(struct ev_loop *loop, ev_io *w, int revents);
/* Returns 0, TR_ECLOSED, TR_EBUFFULL (this queue is full: the overflow
 * policy applies) or TR__EOUTBUDGET (an output budget is spent: the
 * caller returns TR_EBUFFULL, no overflow policy). Any thread. */
#define TR__EOUTBUDGET (-4900)
int tr__conn_reserve(tr_conn *c, size_t n);
/* The queue shrank or the connection closed: wakes tr_conn_send_wait
 * callers, if any (conn_send.c). The caller's change must have been a
 * locked read-modify-write (tr__faa_sc_64 on queued, tr__fas_sc_32 on
 * closing): that is the full barrier the handshake needs. */
void tr__conn_room(tr_conn *c);
int tr__conn_encode(tr_conn *c, size_t len, unsigned char *hdr, size_t *hl, unsigned char *trl,
                    size_t *tl);
void tr__conn_overflow_exit(tr_conn *c);
/* A sender's half of queueing a frame of len payload bytes on c (pinned,
 * a its actor): sizes it with the codec and reserves the room, so a full
 * queue refuses the sender at once and memory stays bounded. *reason is
 * what the CONN_SEND message carries: the bytes reserved, or -1 when the
 * connection is not set up yet and reserves for itself. Returns 0,
 * TR_EBUFFULL (after asking an EXIT-policy connection to close),
 * TR_ECLOSED or TR_EMSGSIZE. Any thread (conn_send.c). */
int tr__conn_reserve_frame(tr_conn *c, tr_actor *a, size_t len, int64_t *reason);
/* Gives back what tr__conn_reserve_frame reserved (nothing for -1). */
static inline void tr__conn_unreserve_reason(tr_conn *c, int64_t reason)
{
    if (reason > 0) {
        tr__conn_unreserve(c, (size_t)reason);
    }
}
int tr__conn_write_owned(tr_conn *c, const void *data, size_t len, tr_buf *b, bool reserved,
                         size_t reserved_n);

#endif
