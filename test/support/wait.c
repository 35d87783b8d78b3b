#include "wait.h"

#include <sched.h>
#include <time.h>

uint64_t tr_test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tr_test_now_ms(void)
{
    return tr_test_now_ns() / 1000000u;
}

bool tr_test_wait_until(bool (*cond)(void *arg), void *arg, uint32_t timeout_ms)
{
    uint64_t deadline = tr_test_now_ms() + timeout_ms;
    for (;;) {
        if (cond(arg)) {
            return true;
        }
        if (tr_test_now_ms() >= deadline) {
            return cond(arg);
        }
        /* A short pause between polls keeps a busy wait off the CPU the
         * workers need; the deadline, not this pause, bounds the wait. */
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
}

uint64_t tr_test_load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

void tr_test_add(uint64_t *p, uint64_t v)
{
    __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

void tr_test_store(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

typedef struct ge_arg {
    const uint64_t *p;
    uint64_t want;
} ge_arg;

static bool ge(void *arg)
{
    ge_arg *g = arg;
    return tr_test_load(g->p) >= g->want;
}

bool tr_test_wait_ge(const uint64_t *p, uint64_t want, uint32_t timeout_ms)
{
    ge_arg g = {p, want};
    return tr_test_wait_until(ge, &g, timeout_ms);
}
