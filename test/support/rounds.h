/* Stress tests: repeat a race for many rounds within a time budget. A
 * test runs at least `min` rounds and at most `max`, and starts no new
 * round once the budget is spent (after the minimum). */
#ifndef TROUPE_TEST_ROUNDS_H
#define TROUPE_TEST_ROUNDS_H

#include <stdbool.h>
#include <stdint.h>

#include "wait.h"

#define TR_TEST_ROUNDS_BUDGET_MS 3500u

typedef struct rounds {
    uint64_t start_ms;
    unsigned done, min, max;
} rounds;

static inline rounds rounds_begin(unsigned min, unsigned max)
{
    rounds r = {tr_test_now_ms(), 0, min, max};
    return r;
}

static inline bool rounds_next(rounds *r)
{
    if (r->done >= r->max ||
        (r->done >= r->min && tr_test_now_ms() - r->start_ms >= TR_TEST_ROUNDS_BUDGET_MS)) {
        return false;
    }
    r->done++;
    return true;
}

#endif
