#include "mailbox.h"

#include "atomic.h"
#include <stddef.h>

void tr__mailbox_init(tr__mailbox *mb, uint32_t capacity, tr_overflow overflow)
{
    mb->sys_head = NULL;
    mb->user_head = NULL;
    mb->sys_local = NULL;
    mb->user_local = NULL;
    mb->count = 0;
    mb->capacity = capacity;
    mb->overflow = (uint8_t)overflow;
}

static void free_list(tr_msg *m)
{
    while (m != NULL) {
        tr_msg *next = m->next;
        tr_msg_free(m);
        m = next;
    }
}

void tr__mailbox_fini(tr__mailbox *mb)
{
    free_list(mb->sys_local);
    free_list(tr__fasp((void **)&mb->sys_head, NULL));
    free_list(mb->user_local);
    free_list(tr__fasp((void **)&mb->user_head, NULL));
    mb->sys_local = NULL;
    mb->user_local = NULL;
    mb->count = 0;
}

static void push(tr_msg **head, tr_msg *m)
{
    void *old = tr__loadp((void **)head);
    do {
        m->next = old;
        /* The CAS is a full barrier: the message body is visible before the
         * node is, and the caller's later load of `scheduled` cannot move
         * above it. */
    } while (!tr__casp_value((void **)head, old, m, &old));
}

int tr__mailbox_push(tr__mailbox *mb, tr_msg *m)
{
    if (mb->capacity != 0) {
        uint32_t limit = mb->capacity;
        if (mb->overflow == TR_OVERFLOW_DROP_OLDEST) {
            limit = mb->capacity > UINT32_MAX / 2 ? UINT32_MAX : mb->capacity * 2;
        }
        if (tr__faa32(&mb->count, 1) >= limit) {
            tr__faa32(&mb->count, UINT32_MAX);
            return TR_EBUFFULL;
        }
    }
    push(&mb->user_head, m);
    return 0;
}

void tr__mailbox_push_over(tr__mailbox *mb, tr_msg *m)
{
    if (mb->capacity != 0) {
        tr__faa32(&mb->count, 1);
    }
    push(&mb->user_head, m);
}

void tr__mailbox_push_sys(tr__mailbox *mb, tr_msg *m)
{
    push(&mb->sys_head, m);
}

/* Takes the whole shared stack (newest first) and returns it oldest first. */
static tr_msg *take_fifo(tr_msg **head)
{
    tr_msg *m = tr__fasp((void **)head, NULL);
    tr_msg *fifo = NULL;
    while (m != NULL) {
        tr_msg *next = m->next;
        m->next = fifo;
        fifo = m;
        m = next;
    }
    return fifo;
}

static tr_msg *pop_lane(tr_msg **local, tr_msg **head)
{
    if (*local == NULL) {
        if (tr__loadp((void **)head) == NULL) {
            return NULL;
        }
        *local = take_fifo(head);
    }
    tr_msg *m = *local;
    *local = m->next;
    m->next = NULL;
    return m;
}

tr_msg *tr__mailbox_pop_sys(tr__mailbox *mb)
{
    return pop_lane(&mb->sys_local, &mb->sys_head);
}

tr_msg *tr__mailbox_pop(tr__mailbox *mb, uint32_t *dropped)
{
    if (mb->capacity == 0) {
        return pop_lane(&mb->user_local, &mb->user_head);
    }
    if (mb->overflow == TR_OVERFLOW_DROP_OLDEST) {
        while (tr__load32(&mb->count) > mb->capacity) {
            tr_msg *old = pop_lane(&mb->user_local, &mb->user_head);
            if (old == NULL) {
                break; /* counted but not linked yet: the producer is mid-push */
            }
            tr__faa32(&mb->count, UINT32_MAX);
            tr_msg_free(old);
            if (dropped != NULL) {
                (*dropped)++;
            }
        }
    }
    tr_msg *m = pop_lane(&mb->user_local, &mb->user_head);
    if (m != NULL) {
        tr__faa32(&mb->count, UINT32_MAX);
    }
    return m;
}

bool tr__mailbox_has_sys(tr__mailbox *mb)
{
    return mb->sys_local != NULL || tr__loadp((void **)&mb->sys_head) != NULL;
}

bool tr__mailbox_nonempty(tr__mailbox *mb)
{
    return mb->sys_local != NULL || mb->user_local != NULL ||
           tr__loadp((void **)&mb->sys_head) != NULL || tr__loadp((void **)&mb->user_head) != NULL;
}
