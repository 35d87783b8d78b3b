/* Tests for runtime/mailbox.c: the owner-only two-lane mailbox, bounded
 * reservations given back on pop, drop and free, and DROP_OLDEST, which
 * must never drop a message sent past the capacity on purpose. Refusal
 * at the capacity happens on the send path: actor_test.c covers it. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "mailbox.h"
#include "msg_impl.h"
#include "troupe/troupe.h"
#include "tsan_criterion.h"

static tr__mailbox box;
static tr__slot slot; /* only its reservation counter is used */

static tr_msg *msg_n(uint32_t n)
{
    tr_msg *m = tr_msg_new(TR_MSG_USER, &n, sizeof(n));
    cr_assert_not_null(m);
    return m;
}

/* A user message holding a reservation, as a sender to a bounded mailbox
 * leaves it. */
static tr_msg *counted_n(uint32_t n)
{
    tr_msg *m = msg_n(n);
    m->flags |= TR__MSGF_COUNTED;
    slot.queued++;
    return m;
}

static tr_msg *over_n(uint32_t n)
{
    tr_msg *m = msg_n(n);
    m->flags |= TR__MSGF_OVER;
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
    tr_msg *m = tr__mailbox_pop(&box, &slot, NULL);
    cr_assert_not_null(m, "expected %u, mailbox empty", want);
    cr_assert_eq(val(m), want);
    cr_assert_null(m->next, "a popped message is unlinked");
    cr_assert_eq(m->flags & TR__MSGF_COUNTED, 0, "the reservation went back on pop");
    tr_msg_free(m);
}

static void teardown(void)
{
    tr__mailbox_fini(&box, &slot, NULL, NULL); /* frees what a test left: ASan sees leaks */
}

TestSuite(mailbox, .fini = teardown, .timeout = 60.0);

Test(mailbox, empty_mailbox_pops_null)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    cr_assert_null(tr__mailbox_pop(&box, &slot, NULL));
    cr_assert_null(tr__mailbox_pop_sys(&box));
    cr_assert_not(tr__mailbox_nonempty(&box));
    cr_assert_not(tr__mailbox_has_sys(&box));
}

Test(mailbox, user_messages_come_out_first_in_first_out)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    for (uint32_t i = 1; i <= 100; i++) {
        tr__mailbox_put(&box, msg_n(i));
    }
    cr_assert_eq(box.depth, 100);
    cr_assert(tr__mailbox_nonempty(&box));
    for (uint32_t i = 1; i <= 100; i++) {
        expect_pop(i);
    }
    cr_assert_null(tr__mailbox_pop(&box, &slot, NULL));
    cr_assert_eq(box.depth, 0);
    cr_assert_not(tr__mailbox_nonempty(&box));
}

Test(mailbox, order_holds_when_puts_and_pops_interleave)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    tr__mailbox_put(&box, msg_n(1));
    tr__mailbox_put(&box, msg_n(2));
    expect_pop(1);
    tr__mailbox_put(&box, msg_n(3));
    expect_pop(2);
    expect_pop(3);
    tr__mailbox_put(&box, msg_n(4));
    expect_pop(4);
    cr_assert_null(tr__mailbox_pop(&box, &slot, NULL));
}

Test(mailbox, system_lane_is_separate_and_fifo)
{
    tr__mailbox_init(&box, 0, TR_OVERFLOW_REFUSE);
    tr__mailbox_put(&box, msg_n(1));
    tr__mailbox_put(&box, sys_n(10));
    tr__mailbox_put(&box, sys_n(11));
    cr_assert(tr__mailbox_has_sys(&box));
    cr_assert_eq(box.depth, 1, "system messages are not user depth");
    tr_msg *s = tr__mailbox_pop_sys(&box);
    cr_assert_eq(val(s), 10);
    tr_msg_free(s);
    s = tr__mailbox_pop_sys(&box);
    cr_assert_eq(val(s), 11);
    tr_msg_free(s);
    cr_assert_not(tr__mailbox_has_sys(&box));
    cr_assert_null(tr__mailbox_pop_sys(&box), "user messages never come out of the sys lane");
    expect_pop(1);
}

Test(mailbox, pop_gives_each_reservation_back)
{
    tr__mailbox_init(&box, 4, TR_OVERFLOW_REFUSE);
    slot.queued = 0;
    for (uint32_t i = 1; i <= 4; i++) {
        tr__mailbox_put(&box, counted_n(i));
    }
    cr_assert_eq(slot.queued, 4);
    cr_assert_eq(box.counted, 4);
    expect_pop(1);
    cr_assert_eq(slot.queued, 3);
    expect_pop(2);
    expect_pop(3);
    expect_pop(4);
    cr_assert_eq(slot.queued, 0);
    cr_assert_eq(box.counted, 0);
}

Test(mailbox, drop_oldest_drops_the_oldest_counted_messages_beyond_capacity)
{
    tr__mailbox_init(&box, 3, TR_OVERFLOW_DROP_OLDEST);
    slot.queued = 0;
    for (uint32_t i = 1; i <= 6; i++) {
        tr__mailbox_put(&box, counted_n(i));
    }
    uint32_t dropped = 0;
    tr_msg *m = tr__mailbox_pop(&box, &slot, &dropped);
    cr_assert_eq(dropped, 3);
    cr_assert_eq(val(m), 4, "the three oldest went");
    tr_msg_free(m);
    expect_pop(5);
    expect_pop(6);
    cr_assert_eq(slot.queued, 0, "dropped messages gave their reservations back");
}

Test(mailbox, drop_oldest_within_capacity_drops_nothing)
{
    tr__mailbox_init(&box, 4, TR_OVERFLOW_DROP_OLDEST);
    slot.queued = 0;
    for (uint32_t i = 1; i <= 4; i++) {
        tr__mailbox_put(&box, counted_n(i));
    }
    for (uint32_t i = 1; i <= 4; i++) {
        uint32_t dropped = 0;
        tr_msg *m = tr__mailbox_pop(&box, &slot, &dropped);
        cr_assert_eq(dropped, 0);
        cr_assert_eq(val(m), i);
        tr_msg_free(m);
    }
}

/* Regression: DROP_OLDEST used to count a connection's OPEN/CLOSED events
 * (sent past the capacity on purpose) as droppable user messages. */
Test(mailbox, drop_oldest_never_drops_messages_sent_past_the_capacity)
{
    tr__mailbox_init(&box, 2, TR_OVERFLOW_DROP_OLDEST);
    slot.queued = 0;
    tr__mailbox_put(&box, over_n(100)); /* OPEN */
    for (uint32_t i = 1; i <= 4; i++) {
        tr__mailbox_put(&box, counted_n(i));
    }
    tr__mailbox_put(&box, over_n(200)); /* CLOSED */
    uint32_t dropped = 0;
    tr_msg *m = tr__mailbox_pop(&box, &slot, &dropped);
    cr_assert_eq(dropped, 2, "only counted frames are dropped");
    cr_assert_eq(val(m), 100, "the event sent first is still first");
    tr_msg_free(m);
    expect_pop(3);
    expect_pop(4);
    expect_pop(200);
    cr_assert_null(tr__mailbox_pop(&box, &slot, NULL));
    cr_assert_eq(slot.queued, 0);
}

static unsigned monitors_seen;

static void on_monitor(void *ctx, tr_msg *m)
{
    cr_assert_eq(ctx, &box);
    cr_assert_eq(m->type, TR_MSG__MONITOR);
    monitors_seen++;
    tr_msg_free(m);
}

Test(mailbox, fini_frees_every_lane_gives_reservations_back_and_answers_monitors)
{
    tr__mailbox_init(&box, 8, TR_OVERFLOW_REFUSE);
    slot.queued = 0;
    tr__mailbox_put(&box, counted_n(1));
    tr__mailbox_put(&box, counted_n(2));
    tr__mailbox_put(&box, sys_n(3));
    tr_msg *mon = tr_msg_new(TR_MSG__MONITOR, NULL, 0);
    mon->flags = TR_MSGF_SYSTEM;
    tr__mailbox_put(&box, mon);
    monitors_seen = 0;
    tr__mailbox_fini(&box, &slot, on_monitor, &box);
    cr_assert_eq(monitors_seen, 1);
    cr_assert_eq(slot.queued, 0);
    cr_assert_not(tr__mailbox_nonempty(&box));
    cr_assert_eq(box.depth, 0);
}
