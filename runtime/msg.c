#include "troupe/msg.h"

#include <stdlib.h>
#include <string.h>

#include "msg_alloc.h"

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
