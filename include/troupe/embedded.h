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

/* Creates an open connection from a server config: its `conn` settings
 * (codec and handler required; timeouts, socket options and TLS are
 * ignored); listen, handler_actor, observer and the rest are ignored too.
 * on_open runs inside this call. Returns the connection (*err = 0), or
 * NULL with *err = TR_ENOCODEC, TR_ENOHANDLER (no handler, or one without
 * on_frame), TR_EINVAL (cfg NULL, bad limits or policy) or TR_ENOMEM.
 * Threads: any thread; the connection then belongs to it. */
TR_API tr_embedded *tr_embedded_new(const tr_server_config *cfg, int *err);

/* Feeds bytes as if read from the socket: decodes, calls the handler, and
 * flushes whatever it wrote. Returns 0, or TR_ECLOSED if the connection is
 * closed (before or because of this input); decode and handler errors go
 * to the error policy, as on a real connection.
 * Threads: the connection's thread (the one that uses it). */
TR_API int tr_embedded_feed(tr_embedded *e, const void *data, size_t len);

/* The peer closed its side (EOF). Returns 0, or TR_ECLOSED if already
 * closed. Threads: the connection's thread. */
TR_API int tr_embedded_feed_eof(tr_embedded *e);

/* Moves up to cap written bytes into buf. Returns how many (0: none
 * waiting); it cannot fail. Threads: the connection's thread. */
TR_API size_t tr_embedded_read(tr_embedded *e, void *buf, size_t cap);

/* Bytes written and not read yet; it cannot fail. Threads: the
 * connection's thread. */
TR_API size_t tr_embedded_pending(const tr_embedded *e);

/* True once closed; tr_embedded_close_reason then gives on_close's reason
 * (0: an orderly close; before the close, 0). tr_embedded_write_shut is
 * true once the write side was shut (the peer would read EOF). They cannot
 * fail. Threads: the connection's thread. */
TR_API bool tr_embedded_is_closed(const tr_embedded *e);
TR_API int tr_embedded_close_reason(const tr_embedded *e);
TR_API bool tr_embedded_write_shut(const tr_embedded *e);

/* The connection (never NULL), to call tr_conn_write/close on it from a
 * test; tr_embedded_flush pushes out what was written. They cannot fail.
 * Threads: the connection's thread. */
TR_API tr_conn *tr_embedded_conn(tr_embedded *e);
TR_API void tr_embedded_flush(tr_embedded *e);

/* Closes (abort, if still open: on_close runs inside this call, reason
 * TR_ECLOSED) and frees. NULL is a no-op. It cannot fail.
 * Threads: the connection's thread. */
TR_API void tr_embedded_free(tr_embedded *e);

#ifdef __cplusplus
}
#endif

#endif
