/* Test helpers: bounded polling instead of sleeps. */
#ifndef TROUPE_TEST_WAIT_H
#define TROUPE_TEST_WAIT_H

#include <stdbool.h>
#include <stdint.h>

/* Polls cond(arg) every millisecond or so until it returns true or
 * timeout_ms passes. Returns true if the condition held. */
bool tr_test_wait_until(bool (*cond)(void *arg), void *arg, uint32_t timeout_ms);

/* Monotonic clock in nanoseconds and milliseconds. */
uint64_t tr_test_now_ns(void);
uint64_t tr_test_now_ms(void);

/* Atomic helpers for counters shared between actors and the test thread. */
uint64_t tr_test_load(const uint64_t *p);
void tr_test_add(uint64_t *p, uint64_t v);
void tr_test_store(uint64_t *p, uint64_t v);

/* Waits until *p >= want (atomically read) or timeout_ms. */
bool tr_test_wait_ge(const uint64_t *p, uint64_t want, uint32_t timeout_ms);

#endif
