/* Design notes: the message allocator.
 *
 * Most messages are small and cross threads: allocated on one worker,
 * freed on another. With malloc, the freeing thread returns each block to
 * the allocating thread's arena under that arena's lock, and the two
 * workers contend for it on every message. Instead, each worker thread has
 * a cache of fixed-size blocks (payloads up to TR__MSG_SMALL bytes):
 * - it allocates from its own free list (no atomics) and refills it from
 *   its `remote` stack when empty (one exchange);
 * - a block freed on its home thread goes back on the free list;
 * - a block freed on another worker is adopted by that worker while its
 *   free list is short (the next message it sends, a reply say, reuses a
 *   block still in its CPU cache); otherwise it joins that worker's
 *   batch for the block's home, and a batch of 64 goes home with one CAS
 *   onto `remote`;
 * - a foreign thread pushes a block home with one CAS.
 * Larger messages, and messages made off the workers, use malloc.
 *
 * A cache outlives its thread: at exit it becomes an orphan (its blocks
 * are freed; later frees aimed at it go to free()), and the next worker
 * thread to start adopts it. Caches are never freed, so a message that
 * outlives its runtime can still be freed safely. */
#ifndef TROUPE_RUNTIME_MSG_ALLOC_H
#define TROUPE_RUNTIME_MSG_ALLOC_H

#include <stddef.h>

#include "troupe/msg.h"
#include "msg_impl.h"

/* Inline payloads up to this size come from the caches: with the header,
 * a block is two cache lines (128 bytes, 64-aligned). */
#define TR__MSG_SMALL (128u - sizeof(tr_msg))

/* Gives the calling thread a cache (worker threads, at start). */
void tr__msg_cache_attach(void);

/* Returns the calling thread's cache: batches go home, blocks are freed
 * (worker threads, at exit). */
void tr__msg_cache_detach(void);

/* Sends every pending batch home (a worker about to sleep). */
void tr__msg_cache_flush(void);

/* A message block with room for inline_len payload bytes, its home set;
 * NULL when out of memory. */
tr_msg *tr__msg_alloc(size_t inline_len);

/* Frees a block from tr__msg_alloc. */
void tr__msg_release(tr_msg *m);

#endif
