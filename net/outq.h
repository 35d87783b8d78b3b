/* Internal: a connection's send queue.
 *
 * A list of segments, oldest first. Copied frames are appended to a "block"
 * segment (header, payload and trailer packed together), so many small
 * frames coalesce into one iovec; a shared tr_buf payload becomes a "ref"
 * segment (header, buffer, trailer: three iovecs, no copy). `off` counts the
 * bytes of the head segment already written. Owning worker only. */
#ifndef TROUPE_NET_OUTQ_H
#define TROUPE_NET_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "troupe/buf.h"
#include "troupe/codec.h"

typedef struct tr__seg tr__seg;

typedef struct tr__outq {
    tr__seg *head;
    tr__seg *tail;
    size_t bytes; /* total unwritten bytes */
    /* One segment per frame, never coalesced: set for the drop-oldest
     * overflow policy, which can only drop whole segments. */
    bool whole_frames;
    /* Bytes at the head a transport was shown and holds on to (TLS's
     * record in flight): never dropped. */
    size_t pinned;
} tr__outq;

/* Appends header + payload + trailer as copied bytes. Returns 0/TR_ENOMEM. */
int tr__outq_append(tr__outq *q, const unsigned char *hdr, size_t hlen, const void *data,
                    size_t len, const unsigned char *trl, size_t tlen);

/* Shared payloads up to this size are copied into the queue's block
 * rather than referenced. A reference is a segment of its own (about 100
 * bytes with the allocator's header), a pointer chase at every flush and
 * an iovec of its own, and its buffer's count is touched by every worker
 * that holds it: for a chat line that costs more, in memory and in time,
 * than the line. Larger buffers are referenced, never copied. */
#define TR__OUTQ_COPY_MAX 256

/* Whether a shared payload of len bytes is copied into q rather than
 * referenced (a drop-oldest queue keeps one segment per frame, where a
 * reference is the smaller). */
static inline bool tr__outq_copies(const tr__outq *q, size_t len)
{
    return len <= TR__OUTQ_COPY_MAX && !q->whole_frames;
}

/* Appends a reference to b (takes the reference). Returns 0/TR_ENOMEM
 * (b is then released). */
int tr__outq_append_buf(tr__outq *q, const unsigned char *hdr, size_t hlen, tr_buf *b,
                        const unsigned char *trl, size_t tlen);

/* Fills up to max iovecs with the unwritten bytes; returns the count. */
int tr__outq_iov(const tr__outq *q, struct iovec *iov, int max);

/* Drops n written bytes from the front. */
void tr__outq_consume(tr__outq *q, size_t n);

/* Drops whole unstarted segments from the front until at most `keep`
 * bytes remain (never a partly written head). Returns the bytes dropped. */
size_t tr__outq_drop_oldest(tr__outq *q, size_t keep);

/* Frees everything. */
void tr__outq_clear(tr__outq *q);

#endif
