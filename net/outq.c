#include "outq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "troupe/error.h"

#define BLOCK_MIN 4096
#define CLASSES 5        /* cached block sizes: 4, 8, 16, 32, 64 KiB */
#define CACHE_MAX 16     /* per size class and thread */
#define REF_CACHE_MAX 4096 /* reference segments per thread (~80 B each) */

struct tr__seg {
    tr__seg *next;
    tr_buf *buf;    /* ref segment: the payload; NULL for a block */
    size_t off;     /* bytes already written */
    size_t len;     /* bytes in the segment */
    size_t cap;     /* block capacity */
    uint8_t hlen, tlen;
    unsigned char hdr[TR_CODEC_MAX_HEADER];
    unsigned char trl[TR_CODEC_MAX_TRAILER];
    unsigned char data[]; /* block bytes */
};

/* A per-thread cache of blocks in power-of-two sizes from 4 to 64 KiB. An
 * echo reply would otherwise malloc and free a block per request, and glibc
 * then trims the worker's heap arena with madvise almost every time (a
 * syscall per request). The cache is per thread, so it needs no lock; a
 * thread's blocks are freed when it exits. */
typedef struct block_cache {
    tr__seg *free[CLASSES];
    unsigned n[CLASSES];
    /* Reference segments, the same way: a broadcast queues one on every
     * member's connection, and the worker frees them as fast. */
    tr__seg *refs;
    unsigned nrefs;
} block_cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static _Thread_local block_cache *cache;

static void cache_destroy(void *p)
{
    block_cache *bc = p;
    for (int c = 0; c < CLASSES; c++) {
        while (bc->free[c] != NULL) {
            tr__seg *s = bc->free[c];
            bc->free[c] = s->next;
            free(s);
        }
    }
    while (bc->refs != NULL) {
        tr__seg *s = bc->refs;
        bc->refs = s->next;
        free(s);
    }
    free(bc);
}

static void cache_key_init(void)
{
    pthread_key_create(&cache_key, cache_destroy);
}

/* The size class holding `need` bytes, or -1 past the largest. */
static int size_class(size_t need)
{
    size_t cap = BLOCK_MIN;
    for (int c = 0; c < CLASSES; c++, cap *= 2) {
        if (need <= cap) {
            return c;
        }
    }
    return -1;
}

static tr__seg *block_get(int c)
{
    if (cache != NULL && cache->free[c] != NULL) {
        tr__seg *s = cache->free[c];
        cache->free[c] = s->next;
        cache->n[c]--;
        return s;
    }
    return malloc(sizeof(tr__seg) + ((size_t)BLOCK_MIN << c));
}

/* The calling thread's cache, made on first use; NULL without memory. */
static block_cache *my_cache(void)
{
    if (cache == NULL) {
        pthread_once(&cache_once, cache_key_init);
        cache = calloc(1, sizeof(*cache));
        if (cache != NULL && pthread_setspecific(cache_key, cache) != 0) {
            free(cache);
            cache = NULL;
        }
    }
    return cache;
}

static void block_put(tr__seg *s, int c)
{
    if (my_cache() == NULL) {
        free(s);
        return;
    }
    if (cache->n[c] == CACHE_MAX) {
        free(s);
        return;
    }
    s->next = cache->free[c];
    cache->free[c] = s;
    cache->n[c]++;
}

static void link_seg(tr__outq *q, tr__seg *s)
{
    s->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = s;
    } else {
        q->head = s;
    }
    q->tail = s;
    q->bytes += s->len;
}

int tr__outq_append(tr__outq *q, const unsigned char *hdr, size_t hlen, const void *data,
                    size_t len, const unsigned char *trl, size_t tlen)
{
    size_t need = hlen + len + tlen;
    tr__seg *t = q->tail;
    if (t == NULL || t->buf != NULL || q->whole_frames || t->cap - t->len < need) {
        int c = size_class(q->whole_frames ? need : (need > BLOCK_MIN ? need : BLOCK_MIN));
        size_t cap = c >= 0 ? (size_t)BLOCK_MIN << c : need;
        t = c >= 0 ? block_get(c) : malloc(sizeof(*t) + cap);
        if (t == NULL) {
            return TR_ENOMEM;
        }
        t->buf = NULL;
        t->off = 0;
        t->len = 0;
        t->cap = cap;
        t->hlen = t->tlen = 0;
        link_seg(q, t);
    }
    unsigned char *p = t->data + t->len;
    memcpy(p, hdr, hlen);
    if (len > 0) {
        memcpy(p + hlen, data, len);
    }
    memcpy(p + hlen + len, trl, tlen);
    t->len += need;
    q->bytes += need;
    return 0;
}

static tr__seg *ref_get(void)
{
    if (cache != NULL && cache->refs != NULL) {
        tr__seg *s = cache->refs;
        cache->refs = s->next;
        cache->nrefs--;
        return s;
    }
    return malloc(sizeof(tr__seg));
}

static void ref_put(tr__seg *s)
{
    if (my_cache() == NULL || cache->nrefs == REF_CACHE_MAX) {
        free(s);
        return;
    }
    s->next = cache->refs;
    cache->refs = s;
    cache->nrefs++;
}

int tr__outq_append_buf(tr__outq *q, const unsigned char *hdr, size_t hlen, tr_buf *b,
                        const unsigned char *trl, size_t tlen)
{
    tr__seg *s = ref_get();
    if (s == NULL) {
        tr_buf_release(b);
        return TR_ENOMEM;
    }
    s->buf = b;
    s->off = 0;
    s->cap = 0;
    s->hlen = (uint8_t)hlen;
    s->tlen = (uint8_t)tlen;
    memcpy(s->hdr, hdr, hlen);
    memcpy(s->trl, trl, tlen);
    s->len = hlen + tr_buf_len(b) + tlen;
    link_seg(q, s);
    return 0;
}

static int add_iov(struct iovec *iov, int n, int max, const unsigned char *p, size_t len,
                   size_t *skip)
{
    if (*skip >= len) {
        *skip -= len;
        return n;
    }
    if (n < max) {
        iov[n].iov_base = (void *)(p + *skip);
        iov[n].iov_len = len - *skip;
        n++;
    }
    *skip = 0;
    return n;
}

int tr__outq_iov(const tr__outq *q, struct iovec *iov, int max)
{
    int n = 0;
    for (tr__seg *s = q->head; s != NULL && n < max; s = s->next) {
        size_t skip = s->off;
        if (s->buf == NULL) {
            n = add_iov(iov, n, max, s->data, s->len, &skip);
            continue;
        }
        n = add_iov(iov, n, max, s->hdr, s->hlen, &skip);
        n = add_iov(iov, n, max, tr_buf_data(s->buf), tr_buf_len(s->buf), &skip);
        n = add_iov(iov, n, max, s->trl, s->tlen, &skip);
    }
    return n;
}

static void free_seg(tr__seg *s)
{
    int c = s->buf == NULL ? size_class(s->cap) : -1;
    if (c >= 0 && s->cap == (size_t)BLOCK_MIN << c) {
        block_put(s, c);
        return;
    }
    if (s->buf == NULL) {
        free(s); /* a block past the largest class */
        return;
    }
    tr_buf_release(s->buf);
    ref_put(s);
}

void tr__outq_consume(tr__outq *q, size_t n)
{
    q->bytes -= n;
    while (n > 0 && q->head != NULL) {
        tr__seg *s = q->head;
        size_t left = s->len - s->off;
        if (n < left) {
            s->off += n;
            return;
        }
        n -= left;
        q->head = s->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        free_seg(s);
    }
}

size_t tr__outq_drop_oldest(tr__outq *q, size_t keep)
{
    size_t dropped = 0;
    tr__seg **p = &q->head;
    /* A partly written head must go out whole, or the stream is corrupt;
     * so must every segment a transport holds bytes of. */
    if (*p != NULL && (*p)->off > 0) {
        p = &(*p)->next;
    }
    for (size_t held = 0; *p != NULL && held < q->pinned; p = &(*p)->next) {
        held += (*p)->len;
    }
    while (*p != NULL && q->bytes > keep) {
        tr__seg *s = *p;
        *p = s->next;
        q->bytes -= s->len;
        dropped += s->len;
        free_seg(s);
    }
    q->tail = NULL;
    for (tr__seg *s = q->head; s != NULL; s = s->next) {
        q->tail = s;
    }
    return dropped;
}

void tr__outq_clear(tr__outq *q)
{
    while (q->head != NULL) {
        tr__seg *s = q->head;
        q->head = s->next;
        free_seg(s);
    }
    q->tail = NULL;
    q->bytes = 0;
}
