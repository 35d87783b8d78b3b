/* Makes a leak fail the test under AddressSanitizer.
 *
 * Criterion runs each test in a child process; LeakSanitizer reports at
 * that child's exit, after the test's result was already sent, so a leak
 * is printed but the test still passes (a failure or crash in a suite's
 * .fini is only a warning, too). Call tr_test_leak_check() as the last
 * statement of a test, once everything is freed: it runs the leak check
 * while the test can still fail. Memory the test's own stack still points
 * at counts as reachable, so it finds what the library lost, which is the
 * point. Header-only; a no-op without ASan. */
#ifndef TROUPE_TEST_LEAK_H
#define TROUPE_TEST_LEAK_H

#include <criterion/criterion.h>

#if defined(__SANITIZE_ADDRESS__)
#define TR_TEST__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TR_TEST__ASAN 1
#endif
#endif

#ifdef TR_TEST__ASAN
#include <sanitizer/lsan_interface.h>

static inline void tr_test_leak_check(void)
{
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
                 "memory leaked: see the LeakSanitizer report above");
}
#else
static inline void tr_test_leak_check(void)
{
}
#endif

#endif
