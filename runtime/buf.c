#include "troupe/buf.h"

#include <stdlib.h>
#include <string.h>

#include "atomic.h"

struct tr_buf {
    uint32_t refs; /* any thread; atomics only */
    size_t len;
    _Alignas(16) unsigned char data[];
};

tr_buf *tr_buf_new(size_t len)
{
    if (len > SIZE_MAX - sizeof(tr_buf)) {
        return NULL;
    }
    tr_buf *b = malloc(sizeof(*b) + len);
    if (b == NULL) {
        return NULL;
    }
    b->refs = 1;
    b->len = len;
    return b;
}

tr_buf *tr_buf_copy(const void *data, size_t len)
{
    tr_buf *b = tr_buf_new(len);
    if (b != NULL && len > 0) {
        memcpy(b->data, data, len);
    }
    return b;
}

tr_buf *tr_buf_retain(tr_buf *b)
{
    tr__faa_sc_32(&b->refs, 1);
    return b;
}

void tr_buf_release(tr_buf *b)
{
    if (b == NULL) {
        return;
    }
    /* The decrement is a full barrier, so every holder's reads of the
     * payload happen before the last holder frees it. */
    if (tr__faa_sc_32(&b->refs, UINT32_MAX) == 1) {
        free(b);
    }
}

unsigned char *tr_buf_data(tr_buf *b)
{
    return b->data;
}

size_t tr_buf_len(const tr_buf *b)
{
    return b->len;
}

uint32_t tr_buf_refs(const tr_buf *b)
{
    return tr__load_acq_32(&b->refs);
}
