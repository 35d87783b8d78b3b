/* Atomics for the runtime: Concurrency Kit's ck_pr in normal builds.
 *
 * ThreadSanitizer cannot see ck_pr's plain volatile loads and stores as
 * atomics, even with CK_USE_CC_BUILTINS=1 (only its read-modify-write
 * operations become __sync builtins), so TSan builds map the same
 * operations onto the compiler's __atomic builtins, which it understands.
 * The orderings are the ones ck_pr gives on x86-64: loads and stores are
 * at least acquire/release, read-modify-writes are full barriers. */
#ifndef TROUPE_RUNTIME_ATOMIC_H
#define TROUPE_RUNTIME_ATOMIC_H

#include <stdbool.h>
#include <stdint.h>

#if defined(__SANITIZE_THREAD__)
#define TR__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TR__TSAN 1
#endif
#endif

#if defined(TR__TSAN)

#define TR__SC __ATOMIC_SEQ_CST
static inline uint32_t tr__load32(const uint32_t *p) { return __atomic_load_n(p, TR__SC); }
static inline uint64_t tr__load64(const uint64_t *p) { return __atomic_load_n(p, TR__SC); }
static inline void *tr__loadp(void *const *p) { return __atomic_load_n(p, TR__SC); }
static inline void tr__store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, TR__SC); }
static inline void tr__store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, TR__SC); }
static inline void tr__storep(void **p, void *v) { __atomic_store_n(p, v, TR__SC); }
static inline uint32_t tr__faa32(uint32_t *p, uint32_t d) { return __atomic_fetch_add(p, d, TR__SC); }
static inline uint64_t tr__faa64(uint64_t *p, uint64_t d) { return __atomic_fetch_add(p, d, TR__SC); }
static inline uint32_t tr__fas32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, TR__SC); }
static inline void *tr__fasp(void **p, void *v) { return __atomic_exchange_n(p, v, TR__SC); }
static inline bool tr__cas32(uint32_t *p, uint32_t old, uint32_t v)
{
    return __atomic_compare_exchange_n(p, &old, v, false, TR__SC, TR__SC);
}
static inline bool tr__cas64_value(uint64_t *p, uint64_t old, uint64_t v, uint64_t *seen)
{
    bool ok = __atomic_compare_exchange_n(p, &old, v, false, TR__SC, TR__SC);
    *seen = old;
    return ok;
}
static inline bool tr__casp_value(void **p, void *old, void *v, void **seen)
{
    bool ok = __atomic_compare_exchange_n(p, &old, v, false, TR__SC, TR__SC);
    *seen = old;
    return ok;
}
/* GCC refuses __atomic_thread_fence under -fsanitize=thread (-Wtsan: TSan
 * does not model fences). Every operation above is seq_cst, and the
 * fences only order a store before a later load in the Dekker-style
 * handshakes (sleeping/incoming, scheduled/mailbox), which seq_cst
 * accesses already guarantee; a seq_cst read-modify-write on a dummy
 * keeps a real full barrier on the hardware too. */
static inline void tr__fence(void)
{
    static uint32_t dummy;
    __atomic_fetch_add(&dummy, 0, TR__SC);
}
static inline void tr__pause(void) { __builtin_ia32_pause(); }

#else

#include <ck_pr.h>

static inline uint32_t tr__load32(const uint32_t *p) { return ck_pr_load_32(p); }
static inline uint64_t tr__load64(const uint64_t *p) { return ck_pr_load_64(p); }
static inline void *tr__loadp(void *const *p) { return ck_pr_load_ptr(p); }
static inline void tr__store32(uint32_t *p, uint32_t v) { ck_pr_store_32(p, v); }
static inline void tr__store64(uint64_t *p, uint64_t v) { ck_pr_store_64(p, v); }
static inline void tr__storep(void **p, void *v) { ck_pr_store_ptr(p, v); }
static inline uint32_t tr__faa32(uint32_t *p, uint32_t d) { return ck_pr_faa_32(p, d); }
static inline uint64_t tr__faa64(uint64_t *p, uint64_t d) { return ck_pr_faa_64(p, d); }
static inline uint32_t tr__fas32(uint32_t *p, uint32_t v) { return ck_pr_fas_32(p, v); }
static inline void *tr__fasp(void **p, void *v) { return ck_pr_fas_ptr(p, v); }
static inline bool tr__cas32(uint32_t *p, uint32_t old, uint32_t v) { return ck_pr_cas_32(p, old, v); }
static inline bool tr__cas64_value(uint64_t *p, uint64_t old, uint64_t v, uint64_t *seen)
{
    return ck_pr_cas_64_value(p, old, v, seen);
}
static inline bool tr__casp_value(void **p, void *old, void *v, void **seen)
{
    return ck_pr_cas_ptr_value(p, old, v, seen);
}
static inline void tr__fence(void) { ck_pr_fence_memory(); }
static inline void tr__pause(void) { ck_pr_stall(); }

#endif

#endif
