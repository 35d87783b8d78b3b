/* Atomics for runtime/ and net/: every operation names its ordering.
 *
 *   load_acq / load_rlx      acquire / relaxed loads
 *   load_sc                  a seq_cst load (the look after a publish)
 *   store_rel / store_rlx    release / relaxed stores
 *   faa_sc, fas_sc, cas_sc   read-modify-writes, sequentially consistent
 *                            (full barriers: on x86-64 every locked op is)
 *   faa_rlx                  a relaxed add, for statistics counters
 *   fence_sc                 a full fence (store -> load ordering)
 *
 * Nothing outside this header uses __atomic builtins or ck_pr directly.
 * They map onto the compiler's __atomic builtins rather than ck_pr:
 * ThreadSanitizer understands those (it cannot see ck_pr's plain volatile
 * loads and stores as atomics), and the generated code on x86-64 is the
 * same (plain moves for acquire/release, locked instructions for RMWs). */
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

#define TR__ACQ __ATOMIC_ACQUIRE
#define TR__REL __ATOMIC_RELEASE
#define TR__RLX __ATOMIC_RELAXED
#define TR__SC __ATOMIC_SEQ_CST

static inline uint8_t tr__load_acq_8(const uint8_t *p) { return __atomic_load_n(p, TR__ACQ); }
static inline uint32_t tr__load_acq_32(const uint32_t *p) { return __atomic_load_n(p, TR__ACQ); }
static inline uint64_t tr__load_acq_64(const uint64_t *p) { return __atomic_load_n(p, TR__ACQ); }
static inline void *tr__load_acq_ptr(void *const *p) { return __atomic_load_n(p, TR__ACQ); }
static inline uint32_t tr__load_rlx_32(const uint32_t *p) { return __atomic_load_n(p, TR__RLX); }
/* A load that takes part in a Dekker handshake (publish, then look). */
static inline uint32_t tr__load_sc_32(const uint32_t *p) { return __atomic_load_n(p, TR__SC); }
static inline uint64_t tr__load_rlx_64(const uint64_t *p) { return __atomic_load_n(p, TR__RLX); }

static inline void tr__store_rel_8(uint8_t *p, uint8_t v) { __atomic_store_n(p, v, TR__REL); }
static inline void tr__store_rel_32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, TR__REL); }
static inline void tr__store_rel_64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, TR__REL); }
static inline void tr__store_rel_ptr(void **p, void *v) { __atomic_store_n(p, v, TR__REL); }
static inline void tr__store_rlx_32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, TR__RLX); }
static inline void tr__store_rlx_64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, TR__RLX); }

static inline uint32_t tr__faa_sc_32(uint32_t *p, uint32_t d) { return __atomic_fetch_add(p, d, TR__SC); }
static inline uint64_t tr__faa_sc_64(uint64_t *p, uint64_t d) { return __atomic_fetch_add(p, d, TR__SC); }
static inline uint64_t tr__faa_rlx_64(uint64_t *p, uint64_t d) { return __atomic_fetch_add(p, d, TR__RLX); }
static inline uint32_t tr__fas_sc_32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, TR__SC); }
static inline void *tr__fas_sc_ptr(void **p, void *v) { return __atomic_exchange_n(p, v, TR__SC); }
static inline bool tr__cas_sc_32(uint32_t *p, uint32_t old, uint32_t v)
{
    return __atomic_compare_exchange_n(p, &old, v, false, TR__SC, TR__SC);
}
/* On failure *seen is the value found. */
static inline bool tr__cas_sc_64_value(uint64_t *p, uint64_t old, uint64_t v, uint64_t *seen)
{
    bool ok = __atomic_compare_exchange_n(p, &old, v, false, TR__SC, TR__SC);
    *seen = old;
    return ok;
}
static inline bool tr__cas_sc_ptr_value(void **p, void *old, void *v, void **seen)
{
    bool ok = __atomic_compare_exchange_n(p, &old, v, false, TR__SC, TR__SC);
    *seen = old;
    return ok;
}

/* Statistics counters written by one thread and read by others: a
 * relaxed load and store, no locked instruction. */
static inline void tr__stat_add_64(uint64_t *p, uint64_t d)
{
    __atomic_store_n(p, __atomic_load_n(p, TR__RLX) + d, TR__RLX);
}

#if defined(TR__TSAN)
/* GCC refuses __atomic_thread_fence under -fsanitize=thread (TSan does not
 * model fences). The fences only order a store before a later load in the
 * Dekker-style handshakes (sleeping/inbox, idle/mailbox); a seq_cst
 * read-modify-write on a dummy is a real full barrier on the hardware,
 * and TSan sees the handshake's accesses as atomics anyway. */
static inline void tr__fence_sc(void)
{
    static uint32_t dummy;
    __atomic_fetch_add(&dummy, 0, TR__SC);
}
#else
static inline void tr__fence_sc(void) { __atomic_thread_fence(TR__SC); }
#endif

static inline void tr__pause(void) { __builtin_ia32_pause(); }

#endif
