/* troupe: a blocking client, for programs that are not actors (the seed's
 * TCP client): connect with a timeout, write frames, read frames with a
 * timeout, one request/reply exchange, close. Built on the event-driven
 * client: the connection runs on a worker of the runtime; these calls
 * wait for it.
 * Threads: the calls that wait (connect, write, read, once, close) not on
 * a worker: there they return TR_EDEADLK (connect: NULL with *err =
 * TR_EDEADLK; close: does nothing). is_connected and close_reason: any
 * thread. One thread at a time per client. */
#ifndef TROUPE_BCLIENT_H
#define TROUPE_BCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/buf.h"
#include "troupe/codec.h"
#include "troupe/error.h"
#include "troupe/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_bclient tr_bclient;

/* Connects to addr ("host:port", "[v6]:port", "unix:/path"; a host name
 * is resolved on the connection's worker with c-ares, its addresses tried
 * in order) and waits up to timeout_ms for the connection, resolution
 * included. Frames are encoded and decoded with
 * codec (which must outlive the client); a frame larger than max_frame
 * bytes (0: 1 MiB) is an error that closes the connection. Frames that
 * arrive before they are read wait in the client, up to 4 MiB; past that
 * the connection is closed (-ENOBUFS). Returns the client, or NULL with
 * *err: TR_ETIMEDOUT, -ECONNREFUSED, -ENOENT, TR_EADDR, TR_ENONAME (the
 * name did not resolve), TR_EDEADLK, TR_ENOMEM, or any other dial error
 * (as tr_client_connect and on_dial report them).
 * Threads: not on a worker (blocks): TR_EDEADLK there. */
TR_API tr_bclient *tr_bclient_connect(tr_runtime *rt, const char *addr, const tr_codec *codec,
                                      size_t max_frame, uint32_t timeout_ms, int *err);

/* Sends one frame, waiting up to timeout_ms for room in the send queue.
 * Returns 0, TR_ECLOSED, TR_ETIMEDOUT, TR_EMSGSIZE, TR_ENOMEM, TR_EINVAL
 * (data NULL with len > 0) or TR_EDEADLK.
 * Threads: not on a worker (blocks): TR_EDEADLK there. */
TR_API int tr_bclient_write(tr_bclient *b, const void *data, size_t len, uint32_t timeout_ms);

/* The next frame, waiting up to timeout_ms. On success *frame is a new
 * buffer (release it) and the return is 0. Frames received before the
 * connection closed are still read first; then TR_ECLOSED. Else
 * TR_ETIMEDOUT or TR_EDEADLK (*frame NULL).
 * Threads: not on a worker (blocks): TR_EDEADLK there. */
TR_API int tr_bclient_read(tr_bclient *b, tr_buf **frame, uint32_t timeout_ms);

/* Sends one frame and reads one back within timeout_ms in all. Returns
 * as tr_bclient_write, then as tr_bclient_read (*reply NULL on failure).
 * Threads: not on a worker (blocks): TR_EDEADLK there. */
TR_API int tr_bclient_once(tr_bclient *b, const void *data, size_t len, tr_buf **reply,
                           uint32_t timeout_ms);

/* Whether the connection is open (a snapshot); it cannot fail.
 * Threads: any thread. */
TR_API bool tr_bclient_is_connected(tr_bclient *b);

/* The error that closed the connection (0: an orderly close; the peer's
 * or our own), once it is closed; 0 while open. It cannot fail.
 * Threads: any thread. */
TR_API int tr_bclient_close_reason(tr_bclient *b);

/* Closes the connection (waits until it is closed, at most 5 s: a peer
 * that does not close is then cut off) and frees the client. Frames not
 * read are dropped. NULL is a no-op. It cannot fail.
 * Threads: not on a worker (blocks); there it does nothing. */
TR_API void tr_bclient_close(tr_bclient *b);

#ifdef __cplusplus
}
#endif

#endif
