/* troupe: an in-memory connection for unit tests (Netty's EmbeddedChannel).
 *
 * It runs a codec and a handler exactly as a server connection would, with
 * no socket, no thread and no runtime: feed bytes in, and every callback
 * they cause runs inside the call, deterministically; read back the bytes
 * the handler wrote (encoded, as they would go on the wire). Unlike a real
 * connection, callbacks here do run inside tr_embedded_feed and friends:
 * that is the point. Timeouts do not exist here; a graceful close
 * completes without lingering.
 * Threads: any one thread at a time per connection (the test's); no
 * runtime is involved and nothing blocks. Calls without a return code
 * cannot fail. */
#ifndef TROUPE_EMBEDDED_H
#define TROUPE_EMBEDDED_H

#include <stdbool.h>
#include <stddef.h>

#include "troupe/conn.h"
#include "troupe/server.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_embedded tr_embedded;

/* Creates an open connection from a server config (listen, handler_actor,
 * observer, timeouts and socket settings are ignored; codec and handler
 * are required). on_open runs inside this call. Returns NULL with *err set
 * (TR_ENOCODEC, TR_ENOHANDLER, TR_EINVAL, TR_ENOMEM). */
TR_API tr_embedded *tr_embedded_new(const tr_server_config *cfg, int *err);

/* Feeds bytes as if read from the socket: decodes, calls the handler, and
 * flushes whatever it wrote. Returns 0, or TR_ECLOSED if the connection is
 * closed (before or because of this input). */
TR_API int tr_embedded_feed(tr_embedded *e, const void *data, size_t len);

/* The peer closed its side (EOF). Returns 0, or TR_ECLOSED if already
 * closed. */
TR_API int tr_embedded_feed_eof(tr_embedded *e);

/* Moves up to cap written bytes into buf; returns how many. */
TR_API size_t tr_embedded_read(tr_embedded *e, void *buf, size_t cap);

/* Bytes written and not read yet. */
TR_API size_t tr_embedded_pending(const tr_embedded *e);

/* True once closed; tr_embedded_close_reason then gives on_close's reason.
 * tr_embedded_write_shut is true once the write side was shut (the peer
 * would read EOF). */
TR_API bool tr_embedded_is_closed(const tr_embedded *e);
TR_API int tr_embedded_close_reason(const tr_embedded *e);
TR_API bool tr_embedded_write_shut(const tr_embedded *e);

/* The connection, to call tr_conn_write/close on it from a test. Run
 * tr_embedded_flush afterwards to push out what was written. */
TR_API tr_conn *tr_embedded_conn(tr_embedded *e);
TR_API void tr_embedded_flush(tr_embedded *e);

/* Closes (abort, if still open: on_close runs) and frees. NULL is a no-op. */
TR_API void tr_embedded_free(tr_embedded *e);

#ifdef __cplusplus
}
#endif

#endif
