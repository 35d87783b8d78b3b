#include <criterion/criterion.h>

#include "troupe/troupe.h"
#include "wait.h"

static uint64_t got;

static void recv_count(tr_actor *self, tr_msg *m)
{
    (void)self;
    tr_test_add(&got, *(uint32_t *)tr_msg_data(m));
}

static const tr_behavior counter = {.name = "counter", .receive = recv_count};

Test(smoke, spawn_send_receive_sums_payloads, .timeout = 10.0)
{
    int err;
    tr_runtime *rt = tr_runtime_new(NULL, &err);
    cr_assert_not_null(rt, "%s", tr_strerror(err));
    cr_assert_eq(tr_runtime_start(rt), 0);
    tr_actor_id id;
    cr_assert_eq(tr_spawn(rt, &counter, NULL, NULL, &id), 0);
    for (uint32_t i = 1; i <= 1000; i++) {
        cr_assert_eq(tr_send_copy(id, TR_MSG_USER, &i, sizeof(i)), 0);
    }
    cr_assert(tr_test_wait_ge(&got, 500500, 5000));
    cr_assert_eq(tr_runtime_shutdown(rt, 2000), 0);
    tr_runtime_free(rt);
    cr_assert_eq(tr_send_copy(id, TR_MSG_USER, "x", 1), TR_ECLOSED);
}
