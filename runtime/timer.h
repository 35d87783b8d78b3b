/* Internal: timers and pending requests, owned by one actor.
 *
 * Each is an ev_timer on the owner's worker loop, linked on the owner's
 * list; the owner's exit stops and frees them all. A request is a timer
 * whose firing sends TR_MSG_TIMEOUT; a reply completes it. */
#ifndef TROUPE_RUNTIME_TIMER_H
#define TROUPE_RUNTIME_TIMER_H

#include <ev.h>
#include <stdint.h>

#include "troupe/timer.h"
#include "actor.h"

enum tr__timer_kind { TR__TIMER_ONCE, TR__TIMER_PERIODIC, TR__TIMER_REQUEST };

typedef struct tr__timer {
    ev_timer w;
    struct tr__timer *next;
    tr_actor *owner;
    uint64_t id;
    tr_actor_id to;
    tr_msg *msg; /* what to send (a template when periodic); NULL for requests */
    uint8_t kind;
} tr__timer;

/* Starts a request timer for id on self. Returns 0 or TR_ENOMEM. */
int tr__request_start(tr_actor *self, tr_actor_id target, uint64_t id, uint32_t timeout_ms);

/* A reply for id arrived: returns 1 if the request was pending (its timer
 * is stopped and freed), 0 if unknown or already timed out. */
int tr__request_complete(tr_actor *self, uint64_t id);

/* Stops and frees every timer and request of a. Owning worker. */
void tr__timers_cancel_all(tr_actor *a);

#endif
