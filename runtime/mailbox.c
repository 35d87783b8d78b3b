#include "mailbox.h"

#include <stddef.h>

#include "atomic.h"
#include "msg_impl.h"

void tr__mailbox_init(tr__mailbox *mb, uint32_t capacity, tr_overflow overflow)
{
    mb->sys_head = mb->sys_tail = NULL;
    mb->user_head = mb->user_tail = NULL;
    tr__store_rlx_32(&mb->depth, 0);
    mb->counted = 0;
    mb->capacity = capacity;
    mb->overflow = (uint8_t)overflow;
}

void tr__mailbox_unreserve(tr__slot *s, tr_msg *m)
{
    if (m->flags & TR__MSGF_COUNTED) {
        m->flags &= ~TR__MSGF_COUNTED;
        tr__faa_sc_32(&s->queued, UINT32_MAX);
    }
}

static void free_lane(tr_msg *m, tr__slot *s, void (*on_monitor)(void *, tr_msg *), void *ctx)
{
    while (m != NULL) {
        tr_msg *next = m->next;
        m->next = NULL;
        tr__mailbox_unreserve(s, m);
        if ((m->type == TR_MSG__MONITOR || m->type == TR_MSG__ROOM_WAIT) && on_monitor != NULL) {
            on_monitor(ctx, m);
        } else {
            tr_msg_free(m);
        }
        m = next;
    }
}

void tr__mailbox_fini(tr__mailbox *mb, tr__slot *s, void (*on_monitor)(void *, tr_msg *),
                      void *ctx)
{
    free_lane(mb->sys_head, s, on_monitor, ctx);
    free_lane(mb->user_head, s, on_monitor, ctx);
    tr__mailbox_init(mb, mb->capacity, (tr_overflow)mb->overflow);
}

void tr__mailbox_put(tr__mailbox *mb, tr_msg *m)
{
    m->next = NULL;
    if (m->flags & TR_MSGF_SYSTEM) {
        if (mb->sys_tail != NULL) {
            mb->sys_tail->next = m;
        } else {
            mb->sys_head = m;
        }
        mb->sys_tail = m;
        return;
    }
    if (mb->user_tail != NULL) {
        mb->user_tail->next = m;
    } else {
        mb->user_head = m;
    }
    mb->user_tail = m;
    tr__store_rlx_32(&mb->depth, mb->depth + 1); /* read by tr_actor_mailbox_depth */
    if (m->flags & TR__MSGF_COUNTED) {
        mb->counted++;
    }
}

tr_msg *tr__mailbox_pop_sys(tr__mailbox *mb)
{
    tr_msg *m = mb->sys_head;
    if (m != NULL) {
        mb->sys_head = m->next;
        if (mb->sys_head == NULL) {
            mb->sys_tail = NULL;
        }
        m->next = NULL;
    }
    return m;
}

/* Unlinks m, whose predecessor is prev (NULL: m is the head). */
static void unlink_user(tr__mailbox *mb, tr_msg *prev, tr_msg *m)
{
    if (prev != NULL) {
        prev->next = m->next;
    } else {
        mb->user_head = m->next;
    }
    if (mb->user_tail == m) {
        mb->user_tail = prev;
    }
    m->next = NULL;
    tr__store_rlx_32(&mb->depth, mb->depth - 1);
    if (m->flags & TR__MSGF_COUNTED) {
        mb->counted--;
    }
}

/* Frees the oldest counted messages until at most `capacity` remain;
 * messages sent past the capacity on purpose stay. */
static void drop_oldest(tr__mailbox *mb, tr__slot *s, uint32_t *dropped)
{
    tr_msg *prev = NULL, *m = mb->user_head;
    while (mb->counted > mb->capacity && m != NULL) {
        tr_msg *next = m->next;
        if (m->flags & TR__MSGF_COUNTED) {
            unlink_user(mb, prev, m);
            tr__mailbox_unreserve(s, m);
            tr_msg_free(m);
            if (dropped != NULL) {
                (*dropped)++;
            }
        } else {
            prev = m;
        }
        m = next;
    }
}

tr_msg *tr__mailbox_pop(tr__mailbox *mb, tr__slot *s, uint32_t *dropped)
{
    if (mb->overflow == TR_OVERFLOW_DROP_OLDEST && mb->capacity != 0 &&
        mb->counted > mb->capacity) {
        drop_oldest(mb, s, dropped);
    }
    tr_msg *m = mb->user_head;
    if (m == NULL) {
        return NULL;
    }
    unlink_user(mb, NULL, m);
    tr__mailbox_unreserve(s, m);
    return m;
}

bool tr__mailbox_has_sys(const tr__mailbox *mb)
{
    return mb->sys_head != NULL;
}

bool tr__mailbox_nonempty(const tr__mailbox *mb)
{
    return mb->sys_head != NULL || mb->user_head != NULL;
}
