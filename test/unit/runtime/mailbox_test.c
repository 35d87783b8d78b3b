/* Tests for runtime/mailbox.c: the two-lane MPSC mailbox, bounded
 * capacities and overflow policies, and many producers at once. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "mailbox.h"
#include "troupe/troupe.h"
#include "tsan_criterion.h"
#include "wait.h"

static tr__mailbox box;

static tr_msg *msg_n(uint32_t n)
{
    tr_msg *m = tr_msg_new(TR_MSG_USER, &n, sizeof(n));
    cr_assert_not_null(m);
    return m;
}

static tr_msg *sys_n(uint32_t n)
{
    tr_msg *m = tr_msg_new(TR_MSG_SHUTDOWN, &n, sizeof(n));
    cr_assert_not_null(m);
    m->flags = TR_MSGF_SYSTEM;
    return m;
}

static uint32_t val(const tr_msg *m)
{
    uint32_t v;
    memcpy(&v, tr_msg_data(m), sizeof(v));
    return v;
}

/* Pops a user message, checks its value and frees it. */
static void expect_pop(uint32_t want)
{
    tr_msg *m = tr__mailbox_pop(&box, NULL);
    cr_assert_not_null(m, "expected %u, mailbox empty", want);
    cr_assert_eq(val(m), want);
    cr_assert_null(m->next, "a popped message is unlinked");
    tr_msg_free(m);
}

static void teardown(void)
{
    tr__mailbox_fini(&box); /* frees whatever a test left: ASan sees leaks */
}

TestSuite(mailbox, .fini = teardown, .timeout = 60.0);

Test(mailbox, empty_mailbox_pops_null)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    cr_assert_null(tr__mailbox_pop(&box, NULL));
    cr_assert_null(tr__mailbox_pop_sys(&box));
    cr_assert_not(tr__mailbox_nonempty(&box));
    cr_assert_not(tr__mailbox_has_sys(&box));
}

Test(mailbox, user_messages_come_out_first_in_first_out)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    for (uint32_t i = 1; i <= 5; i++) {
        cr_assert_eq(tr__mailbox_push(&box, msg_n(i)), 0);
    }
    cr_assert(tr__mailbox_nonempty(&box));
    for (uint32_t i = 1; i <= 5; i++) {
        expect_pop(i);
    }
    cr_assert_null(tr__mailbox_pop(&box, NULL));
    cr_assert_not(tr__mailbox_nonempty(&box));
}

Test(mailbox, order_holds_across_batches_taken_between_pushes)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    tr__mailbox_push(&box, msg_n(1));
    tr__mailbox_push(&box, msg_n(2));
    expect_pop(1); /* takes the batch {1, 2}; 2 stays in the private list */
    tr__mailbox_push(&box, msg_n(3));
    tr__mailbox_push(&box, msg_n(4));
    expect_pop(2);
    expect_pop(3);
    tr__mailbox_push(&box, msg_n(5));
    expect_pop(4);
    expect_pop(5);
    cr_assert_null(tr__mailbox_pop(&box, NULL));
}

Test(mailbox, system_lane_is_separate_and_fifo)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    tr__mailbox_push(&box, msg_n(1));
    tr__mailbox_push_sys(&box, sys_n(10));
    tr__mailbox_push_sys(&box, sys_n(11));
    cr_assert(tr__mailbox_has_sys(&box));
    tr_msg *s = tr__mailbox_pop_sys(&box);
    cr_assert_eq(val(s), 10, "system messages are FIFO too");
    tr_msg_free(s);
    s = tr__mailbox_pop_sys(&box);
    cr_assert_eq(val(s), 11);
    tr_msg_free(s);
    cr_assert_not(tr__mailbox_has_sys(&box));
    cr_assert_null(tr__mailbox_pop_sys(&box), "user messages never come out of the sys lane");
    expect_pop(1);
}

Test(mailbox, bounded_refuses_beyond_capacity_and_accepts_again_after_pop)
{
    tr__mailbox_init(&box, 2, TR_OVERFLOW_REFUSE);
    tr_msg *c = msg_n(3);
    cr_assert_eq(tr__mailbox_push(&box, msg_n(1)), 0);
    cr_assert_eq(tr__mailbox_push(&box, msg_n(2)), 0);
    cr_assert_eq(tr__mailbox_push(&box, c), TR_EBUFFULL);
    cr_assert_eq(box.count, 2, "a refused push leaves the count alone");
    expect_pop(1);
    cr_assert_eq(tr__mailbox_push(&box, c), 0, "room again after one pop");
    tr_msg *d = msg_n(4);
    cr_assert_eq(tr__mailbox_push(&box, d), TR_EBUFFULL, "full again");
    tr_msg_free(d);
    expect_pop(2);
    expect_pop(3);
    cr_assert_eq(box.count, 0);
}

Test(mailbox, bounded_system_lane_is_never_refused_nor_counted)
{
    tr__mailbox_init(&box, 1, TR_OVERFLOW_REFUSE);
    cr_assert_eq(tr__mailbox_push(&box, msg_n(1)), 0);
    for (uint32_t i = 0; i < 10; i++) {
        tr__mailbox_push_sys(&box, sys_n(i));
    }
    cr_assert_eq(box.count, 1);
    tr_msg *refused = msg_n(2);
    cr_assert_eq(tr__mailbox_push(&box, refused), TR_EBUFFULL);
    tr_msg_free(refused);
    /* fini frees the ten system messages and the queued user one. */
}

Test(mailbox, exit_policy_refuses_at_capacity_like_refuse)
{
    tr__mailbox_init(&box, 3, TR_OVERFLOW_EXIT);
    for (uint32_t i = 1; i <= 3; i++) {
        cr_assert_eq(tr__mailbox_push(&box, msg_n(i)), 0);
    }
    tr_msg *m = msg_n(4);
    cr_assert_eq(tr__mailbox_push(&box, m), TR_EBUFFULL);
    tr_msg_free(m);
    expect_pop(1);
}

Test(mailbox, drop_oldest_accepts_twice_capacity_then_drops_the_oldest_on_pop)
{
    tr__mailbox_init(&box, 3, TR_OVERFLOW_DROP_OLDEST);
    for (uint32_t i = 1; i <= 6; i++) {
        cr_assert_eq(tr__mailbox_push(&box, msg_n(i)), 0, "push %u", i);
    }
    tr_msg *m = msg_n(7);
    cr_assert_eq(tr__mailbox_push(&box, m), TR_EBUFFULL, "refused past twice the capacity");
    tr_msg_free(m);
    uint32_t dropped = 0;
    m = tr__mailbox_pop(&box, &dropped);
    cr_assert_eq(dropped, 3, "the three oldest beyond capacity are dropped");
    cr_assert_eq(val(m), 4);
    tr_msg_free(m);
    dropped = 0;
    m = tr__mailbox_pop(&box, &dropped);
    cr_assert_eq(dropped, 0);
    cr_assert_eq(val(m), 5);
    tr_msg_free(m);
    expect_pop(6);
    cr_assert_eq(box.count, 0);
}

Test(mailbox, drop_oldest_within_capacity_drops_nothing)
{
    tr__mailbox_init(&box, 4, TR_OVERFLOW_DROP_OLDEST);
    for (uint32_t i = 1; i <= 4; i++) {
        tr__mailbox_push(&box, msg_n(i));
    }
    uint32_t dropped = 0;
    for (uint32_t i = 1; i <= 4; i++) {
        tr_msg *m = tr__mailbox_pop(&box, &dropped);
        cr_assert_eq(val(m), i);
        tr_msg_free(m);
    }
    cr_assert_eq(dropped, 0);
}

Test(mailbox, fini_frees_messages_in_every_list)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    for (uint32_t i = 0; i < 4; i++) {
        tr__mailbox_push(&box, msg_n(i));
        tr__mailbox_push_sys(&box, sys_n(i));
    }
    /* One pop from each lane moves the rest into the private lists. */
    tr_msg_free(tr__mailbox_pop(&box, NULL));
    tr_msg_free(tr__mailbox_pop_sys(&box));
    tr__mailbox_push(&box, msg_n(9));
    tr__mailbox_push_sys(&box, sys_n(9));
    tr__mailbox_fini(&box);
    cr_assert_not(tr__mailbox_nonempty(&box));
    /* teardown's second fini must be harmless */
}

/* ---- many producers, one consumer ---- */

#define PRODUCERS 8
#define PER_PRODUCER 100000

typedef struct prod {
    uint32_t index;
    uint32_t refused; /* bounded runs */
} prod;

static uint32_t go, done;

static void *producer(void *arg)
{
    prod *p = arg;
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE)) {
        sched_yield(); /* start together for maximum contention */
    }
    for (uint32_t seq = 0; seq < PER_PRODUCER; seq++) {
        uint32_t v[2] = {p->index, seq};
        tr_msg *m = tr_msg_new(TR_MSG_USER, v, sizeof(v));
        if (tr__mailbox_push(&box, m) < 0) {
            tr_msg_free(m);
            p->refused++;
        }
    }
    __atomic_fetch_add(&done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static uint8_t *seen; /* one bit per (producer, seq) */

Test(mailbox, many_producers_one_consumer_lose_and_duplicate_nothing)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    seen = calloc(PRODUCERS * PER_PRODUCER / 8 + 1, 1);
    pthread_t t[PRODUCERS];
    prod p[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        p[i] = (prod){.index = i};
        cr_assert_eq(pthread_create(&t[i], NULL, producer, &p[i]), 0);
    }
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);

    /* This thread is the single consumer, popping while they push. */
    int64_t next[PRODUCERS] = {0};
    uint64_t got = 0, dup = 0, out_of_order = 0, bad = 0;
    uint64_t deadline = tr_test_now_ms() + 50000;
    while (got < (uint64_t)PRODUCERS * PER_PRODUCER && tr_test_now_ms() < deadline) {
        tr_msg *m = tr__mailbox_pop(&box, NULL);
        if (m == NULL) {
            continue;
        }
        uint32_t v[2];
        memcpy(v, tr_msg_data(m), sizeof(v));
        tr_msg_free(m);
        if (v[0] >= PRODUCERS || v[1] >= PER_PRODUCER) {
            bad++;
            continue;
        }
        size_t bit = (size_t)v[0] * PER_PRODUCER + v[1];
        if (seen[bit / 8] & (1u << (bit % 8))) {
            dup++;
        }
        seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
        if (v[1] != next[v[0]]) {
            out_of_order++;
        }
        next[v[0]] = (int64_t)v[1] + 1;
        got++;
    }
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
    }
    cr_assert_eq(got, (uint64_t)PRODUCERS * PER_PRODUCER, "got %llu", (unsigned long long)got);
    cr_assert_eq(bad, 0);
    cr_assert_eq(dup, 0, "%llu duplicates", (unsigned long long)dup);
    cr_assert_eq(out_of_order, 0, "%llu out of per-producer order",
                 (unsigned long long)out_of_order);
    for (size_t bit = 0; bit < (size_t)PRODUCERS * PER_PRODUCER; bit++) {
        cr_assert(seen[bit / 8] & (1u << (bit % 8)), "lost message %zu", bit);
    }
    cr_assert_null(tr__mailbox_pop(&box, NULL), "nothing beyond what was sent");
    free(seen);
}

/* Bounded mailbox under contention: every message is either refused to its
 * producer, dropped (DROP_OLDEST) or delivered; never two, never none. */
static void run_bounded(uint32_t capacity, tr_overflow policy)
{
    tr__mailbox_init(&box, capacity, policy);
    uint32_t limit = policy == TR_OVERFLOW_DROP_OLDEST ? 2 * capacity : capacity;
    pthread_t t[4];
    prod p[4];
    for (uint32_t i = 0; i < 4; i++) {
        p[i] = (prod){.index = i};
        cr_assert_eq(pthread_create(&t[i], NULL, producer, &p[i]), 0);
    }
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    uint64_t popped = 0, out_of_order = 0, over_bound = 0;
    uint32_t dropped = 0;
    int64_t last[4] = {-1, -1, -1, -1};
    uint64_t deadline = tr_test_now_ms() + 50000;
    for (;;) {
        /* Read `done` before popping: if all producers had finished, an
         * empty pop afterwards means the mailbox is drained for good. */
        uint32_t finished = __atomic_load_n(&done, __ATOMIC_SEQ_CST);
        tr_msg *m = tr__mailbox_pop(&box, &dropped);
        if (m == NULL) {
            if (finished == 4 || tr_test_now_ms() > deadline) {
                break;
            }
            continue;
        }
        /* Refused producers add before they back out: at most 4 extra. */
        if (__atomic_load_n(&box.count, __ATOMIC_SEQ_CST) > limit + 4) {
            over_bound++;
        }
        uint32_t v[2];
        memcpy(v, tr_msg_data(m), sizeof(v));
        tr_msg_free(m);
        if ((int64_t)v[1] <= last[v[0]]) {
            out_of_order++;
        }
        last[v[0]] = v[1];
        popped++;
    }
    for (uint32_t i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    cr_assert_eq(__atomic_load_n(&done, __ATOMIC_SEQ_CST), 4, "producers did not finish");
    uint64_t refused = 0;
    for (uint32_t i = 0; i < 4; i++) {
        refused += p[i].refused;
    }
    cr_assert_eq(popped + dropped + refused, 4ull * PER_PRODUCER,
                 "popped %llu + dropped %u + refused %llu", (unsigned long long)popped, dropped,
                 (unsigned long long)refused);
    cr_assert_gt(popped, 0);
    cr_assert_eq(out_of_order, 0);
    cr_assert_eq(over_bound, 0, "the queue grew past its bound");
    cr_assert_eq(box.count, 0, "the count returns to zero when drained");
    if (policy != TR_OVERFLOW_DROP_OLDEST) {
        cr_assert_eq(dropped, 0);
    }
}

Test(mailbox, bounded_refuse_under_contention_accounts_for_every_message)
{
    run_bounded(64, TR_OVERFLOW_REFUSE);
}

Test(mailbox, drop_oldest_under_contention_accounts_for_every_message)
{
    run_bounded(64, TR_OVERFLOW_DROP_OLDEST);
}
