/* Small helpers shared by runtime/ and net/. */
#ifndef TROUPE_RUNTIME_UTIL_H
#define TROUPE_RUNTIME_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "atomic.h"

/* The struct of type `type` whose member `member` is at ptr. */
#define tr__container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Monotonic time. */
static inline uint64_t tr__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t tr__now_ms(void)
{
    return tr__now_ns() / 1000000u;
}

/* The CLOCK_MONOTONIC time ms from now (for pthread_cond_timedwait on a
 * condition variable set to that clock). */
static inline void tr__timespec_after_ms(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Sleeps a millisecond: the step of the few waits that poll (blocking
 * calls of foreign threads, such as stop and free, bounded by deadlines). */
static inline void tr__nap(void)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* Waits until *p == want or the monotonic deadline_ms passes. Returns
 * whether *p reached want. */
static inline bool tr__wait_u32(const uint32_t *p, uint32_t want, uint64_t deadline_ms)
{
    while (tr__load_acq_32(p) != want) {
        if (tr__now_ms() >= deadline_ms) {
            return false;
        }
        tr__nap();
    }
    return true;
}

#endif
