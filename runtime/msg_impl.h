/* troupe: the message layout.
 *
 * The fields of struct tr_msg are private to runtime/ and net/; everything
 * else goes through the accessors in troupe/msg.h, so the layout can change
 * without breaking users. */
#ifndef TROUPE_RUNTIME_MSG_IMPL_H
#define TROUPE_RUNTIME_MSG_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "troupe/msg.h"

struct tr_msg {
    tr_msg *next;         /* queue link */
    tr_actor_id to_;      /* the target while in flight */
    void *home_;          /* the allocator cache it goes back to */
    uint32_t type;        /* a tr_msg_type, or an application type >= TR_MSG_USER */
    uint32_t flags;       /* tr_msg_flag bits */
    tr_actor_id from;     /* the sending actor, or TR_ACTOR_NONE from a foreign thread */
    uint64_t ref;         /* request id, monitor reference or timer id, by type */
    int64_t reason;       /* TR_MSG_DOWN: the exit reason; free for application use otherwise */
    size_t len;           /* payload length */
    tr_buf *buf;          /* shared payload, or NULL when inline */
    unsigned char *data_; /* points at the payload */
    _Alignas(16) unsigned char inline_[];
};

#endif
