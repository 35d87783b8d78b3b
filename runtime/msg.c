#include "troupe/msg.h"

#include <stdlib.h>
#include <string.h>

#include "msg_alloc.h"
#include "msg_impl.h"

static tr_msg *alloc_msg(uint32_t type, size_t inline_len)
{
    tr_msg *m = tr__msg_alloc(inline_len);
    if (m == NULL) {
        return NULL;
    }
    m->next = NULL;
    m->type = type;
    m->flags = 0;
    m->from = TR_ACTOR_NONE;
    m->ref = 0;
    m->reason = 0;
    m->len = inline_len;
    m->buf = NULL;
    m->data_ = m->inline_;
    return m;
}

tr_msg *tr_msg_new(uint32_t type, const void *data, size_t len)
{
    tr_msg *m = alloc_msg(type, len);
    if (m != NULL && data != NULL && len > 0) {
        memcpy(m->inline_, data, len);
    }
    return m;
}

tr_msg *tr_msg_new_buf(uint32_t type, tr_buf *b)
{
    tr_msg *m = alloc_msg(type, 0);
    if (m == NULL) {
        tr_buf_release(b);
        return NULL;
    }
    m->buf = b;
    m->len = tr_buf_len(b);
    m->data_ = tr_buf_data(b);
    return m;
}

tr_msg *tr_msg_clone(const tr_msg *m)
{
    tr_msg *c;
    if (m->buf != NULL) {
        c = tr_msg_new_buf(m->type, tr_buf_retain(m->buf));
    } else {
        c = tr_msg_new(m->type, m->inline_, m->len);
    }
    if (c != NULL) {
        c->reason = m->reason;
    }
    return c;
}

void tr_msg_free(tr_msg *m)
{
    if (m == NULL) {
        return;
    }
    tr_buf_release(m->buf);
    tr__msg_release(m);
}

uint32_t tr_msg_type(const tr_msg *m)
{
    return m->type;
}

tr_actor_id tr_msg_from(const tr_msg *m)
{
    return m->from;
}

uint64_t tr_msg_ref(const tr_msg *m)
{
    return m->ref;
}

int64_t tr_msg_reason(const tr_msg *m)
{
    return m->reason;
}

void tr_msg_set_reason(tr_msg *m, int64_t reason)
{
    m->reason = reason;
}

uint32_t tr_msg_flags(const tr_msg *m)
{
    return m->flags;
}

tr_buf *tr_msg_buf(const tr_msg *m)
{
    return m->buf;
}

unsigned char *tr_msg_data(const tr_msg *m)
{
    return m->data_;
}

size_t tr_msg_len(const tr_msg *m)
{
    return m->len;
}
