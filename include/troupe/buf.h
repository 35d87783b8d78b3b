/* troupe: reference-counted immutable buffers.
 *
 * A tr_buf is one allocation holding a byte payload and a reference count.
 * Fill it right after tr_buf_new, while you hold the only reference; once it
 * is shared (retained, or attached to a message) it must not change. One
 * chat line sent to 10,000 actors is then one allocation and 10,000
 * references. */
#ifndef TROUPE_BUF_H
#define TROUPE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_buf tr_buf;

/* Allocates a buffer of `len` bytes (uninitialised) with one reference.
 * Returns NULL when out of memory.
 * Threads: any thread. */
TR_API tr_buf *tr_buf_new(size_t len);

/* Allocates a buffer holding a copy of data[0..len). Returns NULL when out
 * of memory. Threads: any thread. */
TR_API tr_buf *tr_buf_copy(const void *data, size_t len);

/* Adds a reference and returns b. Threads: any thread. */
TR_API tr_buf *tr_buf_retain(tr_buf *b);

/* Drops a reference; the last one frees the buffer. NULL is a no-op.
 * Threads: any thread. */
TR_API void tr_buf_release(tr_buf *b);

/* The payload; writable only while the caller holds the only reference.
 * Threads: any thread holding a reference. */
TR_API unsigned char *tr_buf_data(tr_buf *b);

/* Payload length in bytes. Threads: any thread holding a reference. */
TR_API size_t tr_buf_len(const tr_buf *b);

/* Current reference count (a snapshot; for tests and diagnostics).
 * Threads: any thread holding a reference. */
TR_API uint32_t tr_buf_refs(const tr_buf *b);

#ifdef __cplusplus
}
#endif

#endif
