/* troupe: a WebSocket layer (RFC 6455, server side) on troupe connections.
 *
 * Framing is Debian's wslay (libwslay-dev, 1.1). A WebSocket connection
 * starts as an HTTP request (troupe/http.h): on_request calls tr_ws_accept,
 * which checks the handshake, answers 101 with Sec-WebSocket-Accept and
 * the chosen subprotocol, and switches the same connection to WebSocket
 * once on_request returns. From then on:
 *
 * - whole messages (fragments reassembled) reach on_message, text (valid
 *   UTF-8, else the connection is closed with 1007) or binary;
 * - client frames must be masked (1002 otherwise); a message over
 *   max_message_bytes closes with 1009;
 * - pings are answered; the layer pings a peer silent for
 *   ping_interval_ms and closes (1011) if it is still silent one interval
 *   later;
 * - the close handshake: a peer's close is echoed, then the connection
 *   closes; tr_ws_close sends one and waits (close_timeout_ms) for the
 *   answer; a server shutdown sends 1001;
 * - messages go out from the connection's worker (tr_ws_send, no queue
 *   in between) or from anywhere by id (tr_ws_send_id: a message to the
 *   connection actor, sent in order with the worker's own). */
#ifndef TROUPE_WS_H
#define TROUPE_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/buf.h"
#include "troupe/conn.h"
#include "troupe/error.h"
#include "troupe/http.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_ws tr_ws;

typedef enum tr_ws_opcode {
    TR_WS_TEXT = 1,
    TR_WS_BINARY = 2
} tr_ws_opcode;

/* Close codes used by the layer (any valid code may be sent). */
enum tr_ws_close_code {
    TR_WS_NORMAL = 1000,
    TR_WS_GOING_AWAY = 1001,
    TR_WS_PROTOCOL_ERROR = 1002,
    TR_WS_NO_STATUS = 1005,   /* received: the peer's close carried no code */
    TR_WS_ABNORMAL = 1006,    /* never on the wire: the connection ended without a close */
    TR_WS_INVALID_DATA = 1007,
    TR_WS_TOO_BIG = 1009,
    TR_WS_INTERNAL_ERROR = 1011
};

/* Callbacks; each runs on the connection's worker, in the connection
 * actor, never inside the call that caused it. `user` is the config's. */
typedef struct tr_ws_handler {
    /* The handshake is done (the 101 is queued). Optional. */
    void (*on_open)(tr_ws *ws, void *user);
    /* One whole message; data is valid during the call (text is not
     * NUL-terminated). Required. */
    void (*on_message)(tr_ws *ws, tr_ws_opcode op, const void *data, size_t len, void *user);
    /* The connection is gone; the last callback (free per-connection
     * state here). code: the peer's close code (TR_WS_NO_STATUS if its
     * close had none), else the code we sent, else TR_WS_ABNORMAL.
     * Optional. */
    void (*on_close)(tr_ws *ws, uint16_t code, void *user);
    /* An application message (TR_MSG_USER <= type < TR_MSG_PROTO) sent to
     * the connection actor (tr_send(tr_conn_actor(id), m)). The runtime
     * frees m after the call unless claimed. Optional (dropped). */
    void (*on_app_message)(tr_ws *ws, tr_msg *m, void *user);
} tr_ws_handler;

typedef struct tr_ws_config {
    const tr_ws_handler *handler; /* required */
    void *user;
    /* Subprotocols this server speaks, best first, NULL-terminated (e.g.
     * {"text.ircv3.net", NULL}); the first one the client also offers is
     * chosen. NULL: none is ever chosen. */
    const char *const *subprotocols;
    /* A client offering subprotocols, none of them ours: refuse the
     * handshake (400) when true; accept without one when false (default;
     * the client then decides). */
    bool require_subprotocol;
    size_t max_message_bytes;  /* default 1 MiB (close 1009) */
    uint32_t ping_interval_ms; /* default 30000; 0: no pings */
    uint32_t close_timeout_ms; /* wait for the peer's close; default 5000 */
} tr_ws_config;

/* Fills cfg with the defaults above (handler unset). Threads: any thread. */
TR_API void tr_ws_config_defaults(tr_ws_config *cfg);

/* Accepts a WebSocket handshake from inside on_request: checks GET,
 * HTTP/1.1, "Upgrade: websocket", "Connection: upgrade",
 * "Sec-WebSocket-Version: 13" and a 16-byte Sec-WebSocket-Key; picks a
 * subprotocol; writes the 101 response. The connection becomes a
 * WebSocket when on_request returns, and on_open follows. cfg (and what
 * it points to) must outlive the connection; conn_user becomes
 * tr_ws_user. On a bad handshake it answers (400, or 426 with the
 * version we speak) itself and the connection closes.
 * Returns 0, TR_EINVAL (bad handshake, answered), TR_ESTATE (the request
 * was already answered), TR_ENOTSUP (built without BoringSSL: answered
 * 501) or TR_ENOMEM (answered 503).
 * Threads: the connection's worker, inside on_request. */
TR_API int tr_ws_accept(tr_http_req *req, const tr_ws_config *cfg, void *conn_user);

/* ---- on the connection's worker, in its callbacks ---- */

/* Queues one message (a copy of data) and writes it. Returns 0,
 * TR_EINVAL (op neither TEXT nor BINARY), TR_ECLOSED (closing: a close was
 * sent or the connection is going), TR_EBUFFULL (the connection's send
 * queue is full: nothing sent), TR_EMSGSIZE or TR_ENOMEM. Text is sent
 * as given (the caller makes it UTF-8). Threads: the connection's worker,
 * in its callbacks. */
TR_API int tr_ws_send(tr_ws *ws, tr_ws_opcode op, const void *data, size_t len);

/* As tr_ws_send with a shared buffer as the payload, which is not copied
 * (one broadcast buffer for many connections). Takes b in every case.
 * Same returns (TR_EINVAL also for b NULL). Threads: the connection's
 * worker, in its callbacks. */
TR_API int tr_ws_send_buf(tr_ws *ws, tr_ws_opcode op, tr_buf *b);

/* Starts the close handshake with code (1000-4999, not 1005/1006) and
 * reason (at most 123 bytes, may be NULL); reading goes on until the
 * peer's close, at most close_timeout_ms. Returns 0 (also when already
 * closing), or TR_EINVAL (bad code or reason). Threads: the connection's
 * worker, in its callbacks. */
TR_API int tr_ws_close(tr_ws *ws, uint16_t code, const char *reason);

/* The connection, its id, the chosen subprotocol (NULL if none), and the
 * per-connection user pointer. They cannot fail. Threads: the
 * connection's worker, in its callbacks. */
TR_API tr_conn *tr_ws_conn(const tr_ws *ws);
TR_API tr_conn_id tr_ws_id(const tr_ws *ws);
TR_API const char *tr_ws_protocol(const tr_ws *ws);
TR_API void *tr_ws_user(const tr_ws *ws);
TR_API void tr_ws_set_user(tr_ws *ws, void *user);

/* ---- by id, from any thread ---- */

/* Sends a message (a copy of data) to the WebSocket connection behind id:
 * it is queued to the connection actor, which frames and writes it in
 * order with the messages its own worker sends. Never blocks. Returns 0,
 * TR_EINVAL (bad op), TR_ECLOSED (the connection is gone), TR_EBUFFULL
 * (its mailbox is bounded and full) or TR_ENOMEM. A message reaching a
 * connection that is closing, or not (yet) a WebSocket, is dropped.
 * Threads: any thread. */
TR_API int tr_ws_send_id(tr_conn_id id, tr_ws_opcode op, const void *data, size_t len);

/* As tr_ws_send_id with a shared buffer (no copy per connection). Takes b
 * in every case. Same returns (TR_EINVAL also for b NULL). Threads: any
 * thread. */
TR_API int tr_ws_send_buf_id(tr_conn_id id, tr_ws_opcode op, tr_buf *b);

/* Asks the connection behind id to start the close handshake (as
 * tr_ws_close; the reason is cut to 123 bytes). Returns 0, TR_EINVAL,
 * TR_ECLOSED or TR_ENOMEM. Threads: any thread. */
TR_API int tr_ws_close_id(tr_conn_id id, uint16_t code, const char *reason);

#ifdef __cplusplus
}
#endif

#endif
