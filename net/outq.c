#include "outq.h"

#include <stdlib.h>
#include <string.h>

#include "troupe/error.h"

#define BLOCK_MIN 4096

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
        size_t cap = need > BLOCK_MIN || q->whole_frames ? need : BLOCK_MIN;
        t = malloc(sizeof(*t) + cap);
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

int tr__outq_append_buf(tr__outq *q, const unsigned char *hdr, size_t hlen, tr_buf *b,
                        const unsigned char *trl, size_t tlen)
{
    tr__seg *s = malloc(sizeof(*s));
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
    tr_buf_release(s->buf);
    free(s);
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
    /* A partly written head must go out whole, or the stream is corrupt. */
    if (*p != NULL && (*p)->off > 0) {
        p = &(*p)->next;
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
