/* troupe: messages.
 *
 * A message is one allocation: a small header and either an inline payload
 * (copied in at creation) or a reference to a shared tr_buf. Messages are
 * moved, never shared: tr_send takes ownership, the receiving actor borrows
 * the message during receive and the runtime frees it afterwards, unless
 * the actor claims it with tr_msg_claim (to keep it or send it on). */
#ifndef TROUPE_MSG_H
#define TROUPE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "troupe/buf.h"
#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A generation-checked actor handle: index and generation in one value. It
 * stays safe to use after the actor dies: a send then returns TR_ECLOSED.
 * The zero value (TR_ACTOR_NONE) names no actor. */
typedef struct tr_actor_id {
    uint64_t bits;
} tr_actor_id;

#define TR_ACTOR_NONE ((tr_actor_id){0})

static inline int tr_actor_id_eq(tr_actor_id a, tr_actor_id b)
{
    return a.bits == b.bits;
}

static inline int tr_actor_id_is_none(tr_actor_id a)
{
    return a.bits == 0;
}

/* Message types. Types below TR_MSG_USER are the runtime's; applications
 * number their own from TR_MSG_USER up. */
enum tr_msg_type {
    TR_MSG_NONE = 0,
    /* The runtime or a supervisor asks the actor to stop. Delivered to
     * receive; unless the actor traps shutdown (tr_actor_trap_shutdown), it
     * then exits with TR_EXIT_SHUTDOWN after receive returns. */
    TR_MSG_SHUTDOWN = 1,
    /* A monitored actor exited: tr_msg_from is who, tr_msg_ref the monitor
     * reference, tr_msg_reason the exit reason. */
    TR_MSG_DOWN = 2,
    /* A request made with tr_request got no reply in time: tr_msg_ref is
     * the request id. */
    TR_MSG_TIMEOUT = 3,
    /* Runtime-internal types (never delivered to receive). */
    TR_MSG__MONITOR = 16,
    TR_MSG__DEMONITOR = 17,
    TR_MSG__KILL = 18,
    TR_MSG__SUP_DEADLINE = 19,
    TR_MSG__START = 20, /* schedules a new actor spawned from another thread */
    TR_MSG__ROOM_WAIT = 21, /* the sender wants TR_MSG__ROOM once a bounded mailbox has room */
    TR_MSG__ROOM = 22,      /* the answer (delivered to receive, on the system lane) */
    TR_MSG__TASK = 23,      /* runs a function on a worker, for no actor (route.h) */
    /* Network types are numbered by net/ from here. */
    TR_MSG__NET = 256,
    TR_MSG_USER = 0x10000
};

/* Message flags (read-only for applications). */
enum tr_msg_flag {
    TR_MSGF_REQUEST = 1u << 0, /* sent with tr_request: answer with tr_reply */
    TR_MSGF_REPLY = 1u << 1,   /* a reply: tr_msg_ref is the request id */
    TR_MSGF_SYSTEM = 1u << 2,  /* travels on the priority lane */
    TR_MSGF_CLAIMED = 1u << 3  /* private: receive took ownership */
    /* Bits from 1 << 8 up are the runtime's own. */
};

typedef struct tr_msg tr_msg;

/* Allocates a message of `type` whose payload is a copy of data[0..len)
 * (data may be NULL when len is 0, or to leave the payload uninitialised
 * for the caller to fill through tr_msg_data before sending).
 * Returns NULL when out of memory. Threads: any thread. */
TR_API tr_msg *tr_msg_new(uint32_t type, const void *data, size_t len);

/* Allocates a message of `type` whose payload is b (the message takes one
 * reference: retain b first if you keep using it). Returns NULL when out of
 * memory; b is then released. Threads: any thread. */
TR_API tr_msg *tr_msg_new_buf(uint32_t type, tr_buf *b);

/* Returns a new message with the same type, payload (a buffer is shared, not
 * copied) and reason; sender, ref and flags are cleared. NULL when out of
 * memory. Threads: any thread. */
TR_API tr_msg *tr_msg_clone(const tr_msg *m);

/* Frees a message you own. NULL is a no-op. Threads: any thread. */
TR_API void tr_msg_free(tr_msg *m);

/* The type: a tr_msg_type, or an application type >= TR_MSG_USER. Threads: any thread. */
TR_API uint32_t tr_msg_type(const tr_msg *m);

/* The sender, or TR_ACTOR_NONE when sent from a foreign thread. Threads: any thread. */
TR_API tr_actor_id tr_msg_from(const tr_msg *m);

/* The request id, monitor reference or timer id, by type (else 0). Threads: any thread. */
TR_API uint64_t tr_msg_ref(const tr_msg *m);

/* TR_MSG_DOWN: the exit reason; free for application use otherwise. Threads: any thread. */
TR_API int64_t tr_msg_reason(const tr_msg *m);

/* Sets the reason for application use (not on a TR_MSG_DOWN). Threads: any thread. */
TR_API void tr_msg_set_reason(tr_msg *m, int64_t reason);

/* The tr_msg_flag bits (read-only for applications). Threads: any thread. */
TR_API uint32_t tr_msg_flags(const tr_msg *m);

/* The shared payload, or NULL when the payload is inline; borrowed. Threads: any thread. */
TR_API tr_buf *tr_msg_buf(const tr_msg *m);

/* The payload bytes (tr_msg_len of them). Threads: any thread. */
TR_API unsigned char *tr_msg_data(const tr_msg *m);

/* The payload length in bytes. Threads: any thread. */
TR_API size_t tr_msg_len(const tr_msg *m);

#ifdef __cplusplus
}
#endif

#endif
