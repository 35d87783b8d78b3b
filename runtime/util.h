/* Small helpers shared by runtime/ and net/. */
#ifndef TROUPE_RUNTIME_UTIL_H
#define TROUPE_RUNTIME_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

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

#endif
