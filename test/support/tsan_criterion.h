/* Makes Criterion's runner work in ThreadSanitizer builds.
 *
 * Criterion's sandbox library (BoxFort, linked into libcriterion) maps each
 * of its shared arenas at an address drawn with rand_r() from
 * [0x200000000000, 0x600000000000). Under TSan on x86-64 almost all of that
 * range is TSan's shadow, metadata or protected gaps: most draws fail, and
 * the runner aborts ("Could not initialize inheritable arena: Resource
 * temporarily unavailable") or, when a later per-test arena fails, crashes
 * on the context it did not check (Snaipe/Criterion#274; with gcc 12 and
 * Criterion 2.4.1 not one run in 40 got through). The one stretch TSan
 * leaves to applications there is [0x550000000000, 0x568000000000), the
 * PIE-binary window in every TSan x86-64 layout (LLVM 14 and 15+).
 *
 * So, in TSan builds only, the test executable interposes rand_r() with a
 * generator whose draws land in that window (BoxFort computes the address
 * as 0x200000000000 + (rand_r() & 0x3fffff) << 24 and retries occupied
 * ones). Nothing else in a test executable calls rand_r().
 *
 * This header defines a function: include it from exactly one source file
 * per test executable (the test file; rt.h includes it). It is empty in
 * other builds. */
#ifndef TROUPE_TEST_TSAN_CRITERION_H
#define TROUPE_TEST_TSAN_CRITERION_H

#if defined(__SANITIZE_THREAD__)
#define TR_TEST__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TR_TEST__TSAN 1
#endif
#endif

#if defined(TR_TEST__TSAN) && defined(__x86_64__) && defined(__linux__)
#include <stdlib.h>

int rand_r(unsigned int *seed)
{
    /* 0x350000 << 24 + 0x200000000000 = 0x550000000000; 0x18000 draws
     * cover the 1.5 TiB up to 0x568000000000. */
    *seed = *seed * 1103515245u + 12345u;
    return (int)(0x350000u + (*seed >> 8) % 0x18000u);
}
#endif

#endif
