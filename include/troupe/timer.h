/* troupe: timers.
 *
 * A timer belongs to the actor that starts it and lives on that actor's
 * worker loop (a libev ev_timer). When it fires it sends its message; a
 * periodic timer sends a copy each time (a buffer payload is shared, not
 * copied). Timers never fire early. A timer dies with its owner. */
#ifndef TROUPE_TIMER_H
#define TROUPE_TIMER_H

#include <stdint.h>

#include "troupe/actor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sends msg to `to` after delay_ms. Its ref (tr_msg_ref) is set to the timer
 * id, and its sender (tr_msg_from) to self. Takes msg in every case. Writes
 * the timer id to *timer_out when not NULL. Returns 0 or TR_ENOMEM.
 * Threads: owning worker only (from self's callbacks). */
TR_API int tr_send_after(tr_actor *self, tr_actor_id to, tr_msg *msg, uint32_t delay_ms,
                         uint64_t *timer_out);

/* Sends a copy of msg to `to` every interval_ms (first after interval_ms)
 * until cancelled or until self exits. Takes msg in every case. Returns 0,
 * TR_EINVAL for a zero interval, or TR_ENOMEM.
 * Threads: owning worker only. */
TR_API int tr_send_every(tr_actor *self, tr_actor_id to, tr_msg *msg, uint32_t interval_ms,
                         uint64_t *timer_out);

/* Cancels one of self's timers; its message is freed unsent. Returns 0, or
 * TR_ENOTFOUND if it already fired (one-shot) or was cancelled.
 * Threads: owning worker only. */
TR_API int tr_timer_cancel(tr_actor *self, uint64_t timer);

#ifdef __cplusplus
}
#endif

#endif
