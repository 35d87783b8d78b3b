/* Tests for runtime/msg.c: inline and buffer payloads, clones, and one
 * buffer shared by many messages to many actors. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "msg_impl.h" /* pokes at private fields: next, type, ref, flags, from */
#include "rt.h"
#include "troupe/troupe.h"
#include "wait.h"

TestSuite(msg, .timeout = 60.0);

Test(msg, new_copies_an_inline_payload)
{
    char text[] = "inline payload";
    tr_msg *m = tr_msg_new(TR_MSG_USER + 1, text, sizeof(text));
    cr_assert_not_null(m);
    text[0] = 'X'; /* the message holds a copy */
    cr_assert_eq(tr_msg_type(m), TR_MSG_USER + 1);
    cr_assert_eq(tr_msg_len(m), sizeof(text));
    cr_assert_eq(memcmp(tr_msg_data(m), "inline payload", sizeof(text)), 0);
    cr_assert_null(tr_msg_buf(m));
    cr_assert_eq(tr_msg_flags(m), 0);
    cr_assert_eq(tr_msg_ref(m), 0);
    cr_assert_eq(tr_msg_reason(m), 0);
    cr_assert(tr_actor_id_is_none(tr_msg_from(m)));
    cr_assert_null(m->next);
    cr_assert_eq((uintptr_t)tr_msg_data(m) % 16, 0, "inline payload is 16-byte aligned");
    tr_msg_free(m);
}

Test(msg, null_data_leaves_room_to_fill)
{
    tr_msg *m = tr_msg_new(TR_MSG_USER, NULL, 64);
    cr_assert_not_null(m);
    cr_assert_eq(tr_msg_len(m), 64);
    memset(tr_msg_data(m), 7, 64); /* all 64 bytes are writable: ASan checks */
    tr_msg_free(m);
}

Test(msg, empty_message_has_no_payload)
{
    tr_msg *m = tr_msg_new(TR_MSG_USER, NULL, 0);
    cr_assert_not_null(m);
    cr_assert_eq(tr_msg_len(m), 0);
    tr_msg_free(m);
}

Test(msg, new_buf_takes_the_callers_reference)
{
    tr_buf *b = tr_buf_copy("shared bytes", 12);
    tr_buf_retain(b); /* keep one for the test */
    tr_msg *m = tr_msg_new_buf(TR_MSG_USER, b);
    cr_assert_not_null(m);
    cr_assert_eq(tr_msg_buf(m), b);
    cr_assert_eq(tr_msg_data(m), tr_buf_data(b), "no copy: the payload is the buffer");
    cr_assert_eq(tr_msg_len(m), 12);
    cr_assert_eq(tr_buf_refs(b), 2);
    tr_msg_free(m);
    cr_assert_eq(tr_buf_refs(b), 1, "freeing the message drops its reference");
    tr_buf_release(b);
}

Test(msg, clone_of_inline_is_an_independent_copy)
{
    tr_msg *m = tr_msg_new(TR_MSG_USER + 3, "abcd", 4);
    tr_msg_set_reason(m, 42);
    cr_assert_eq(tr_msg_reason(m), 42);
    m->ref = 9;
    m->flags = TR_MSGF_REQUEST;
    m->from = (tr_actor_id){77};
    tr_msg *c = tr_msg_clone(m);
    cr_assert_not_null(c);
    memcpy(tr_msg_data(m), "wxyz", 4);
    cr_assert_eq(memcmp(tr_msg_data(c), "abcd", 4), 0);
    cr_assert_neq(tr_msg_data(c), tr_msg_data(m));
    cr_assert_eq(tr_msg_type(c), TR_MSG_USER + 3);
    cr_assert_eq(tr_msg_reason(c), 42, "reason is kept");
    cr_assert_eq(tr_msg_ref(c), 0, "ref is cleared");
    cr_assert_eq(tr_msg_flags(c), 0, "flags are cleared");
    cr_assert(tr_actor_id_is_none(tr_msg_from(c)), "from is cleared");
    tr_msg_free(m);
    tr_msg_free(c);
}

Test(msg, clone_of_buffer_message_shares_the_buffer)
{
    tr_buf *b = tr_buf_copy("0123456789", 10);
    tr_msg *m = tr_msg_new_buf(TR_MSG_USER, b);
    tr_msg *c = tr_msg_clone(m);
    cr_assert_not_null(c);
    cr_assert_eq(tr_msg_buf(c), b);
    cr_assert_eq(tr_msg_data(c), tr_buf_data(b));
    cr_assert_eq(tr_buf_refs(b), 2);
    tr_msg_free(m);
    cr_assert_eq(tr_buf_refs(b), 1);
    cr_assert_eq(memcmp(tr_msg_data(c), "0123456789", 10), 0);
    tr_msg_free(c); /* frees the buffer too: ASan reports a leak otherwise */
}

Test(msg, free_null_is_a_noop)
{
    tr_msg_free(NULL);
}

Test(msg, impossible_size_returns_null)
{
    cr_assert_null(tr_msg_new(TR_MSG_USER, NULL, SIZE_MAX));
}

/* ---- one buffer, many messages, many actors ---- */

#define RECEIVERS 200
#define PER_RECEIVER 20
#define PAYLOAD 4096

enum { MSG_SHARED = TR_MSG_USER, MSG_CLONES };

static tr_buf *shared;
static uint64_t received, bad_payload, bad_buffer;

static void check_payload(tr_msg *m)
{
    const unsigned char *d = tr_msg_data(m);
    if (tr_msg_len(m) != PAYLOAD || d[0] != 0x5a || d[PAYLOAD - 1] != 0xa5) {
        tr_test_add(&bad_payload, 1);
    }
    if (tr_msg_buf(m) != shared || d != tr_buf_data(shared)) {
        tr_test_add(&bad_buffer, 1);
    }
}

static void shared_receive(tr_actor *self, tr_msg *m)
{
    if (tr_msg_type(m) == MSG_CLONES) {
        /* Send clones of the message to ourselves: more references to the
         * same buffer, created on the worker. */
        m->type = MSG_SHARED;
        for (int i = 0; i < PER_RECEIVER - 1; i++) {
            tr_send(tr_self(self), tr_msg_clone(m));
        }
    }
    if (tr_msg_type(m) == MSG_SHARED) {
        check_payload(m);
        tr_test_add(&received, 1);
    }
}

static const tr_behavior shared_behavior = {.name = "shared", .receive = shared_receive};

static tr_buf *make_shared(void)
{
    tr_buf *b = tr_buf_new(PAYLOAD);
    memset(tr_buf_data(b), 0, PAYLOAD);
    tr_buf_data(b)[0] = 0x5a;
    tr_buf_data(b)[PAYLOAD - 1] = 0xa5;
    return b;
}

Test(msg, one_buffer_sent_to_many_actors_is_freed_once_after_the_last)
{
    shared = make_shared();
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id ids[RECEIVERS];
    for (int i = 0; i < RECEIVERS; i++) {
        cr_assert_eq(tr_spawn(rt, &shared_behavior, NULL, NULL, &ids[i]), 0);
    }
    for (int r = 0; r < PER_RECEIVER; r++) {
        for (int i = 0; i < RECEIVERS; i++) {
            tr_msg *m = tr_msg_new_buf(MSG_SHARED, tr_buf_retain(shared));
            cr_assert_not_null(m);
            cr_assert_eq(tr_send(ids[i], m), 0);
        }
    }
    cr_assert(tr_test_wait_ge(&received, RECEIVERS * PER_RECEIVER, 20000));
    cr_assert_eq(tr_test_load(&received), RECEIVERS * PER_RECEIVER);
    cr_assert_eq(tr_test_load(&bad_payload), 0);
    cr_assert_eq(tr_test_load(&bad_buffer), 0, "a message copied the payload");
    /* Every message was freed after its receive: only our reference is left. */
    cr_assert_eq(tr_buf_refs(shared), 1, "refs %u", tr_buf_refs(shared));
    tr_test_runtime_finish(rt);
    tr_buf_release(shared);
}

Test(msg, clones_made_on_workers_share_the_buffer_and_release_it)
{
    shared = make_shared();
    tr_runtime *rt = tr_test_runtime(2);
    tr_actor_id ids[RECEIVERS];
    for (int i = 0; i < RECEIVERS; i++) {
        cr_assert_eq(tr_spawn(rt, &shared_behavior, NULL, NULL, &ids[i]), 0);
        cr_assert_eq(tr_send(ids[i], tr_msg_new_buf(MSG_CLONES, tr_buf_retain(shared))), 0);
    }
    cr_assert(tr_test_wait_ge(&received, RECEIVERS * PER_RECEIVER, 20000));
    cr_assert_eq(tr_test_load(&received), RECEIVERS * PER_RECEIVER);
    cr_assert_eq(tr_test_load(&bad_payload), 0);
    cr_assert_eq(tr_test_load(&bad_buffer), 0);
    cr_assert_eq(tr_buf_refs(shared), 1, "refs %u", tr_buf_refs(shared));
    tr_test_runtime_finish(rt);
    tr_buf_release(shared);
}

Test(msg, pending_buffer_messages_are_released_at_shutdown)
{
    shared = make_shared();
    /* Not started: every message stays queued until shutdown frees it. */
    tr_runtime *rt = tr_test_runtime_ex(2, 0, false);
    tr_actor_id ids[RECEIVERS];
    for (int i = 0; i < RECEIVERS; i++) {
        cr_assert_eq(tr_spawn(rt, &shared_behavior, NULL, NULL, &ids[i]), 0);
        for (int r = 0; r < PER_RECEIVER; r++) {
            cr_assert_eq(tr_send(ids[i], tr_msg_new_buf(MSG_SHARED, tr_buf_retain(shared))), 0);
        }
    }
    cr_assert_eq(tr_buf_refs(shared), 1 + RECEIVERS * PER_RECEIVER);
    tr_runtime_free(rt); /* never started: actors are killed, mailboxes freed */
    cr_assert_eq(tr_test_load(&received), 0);
    cr_assert_eq(tr_buf_refs(shared), 1, "refs %u", tr_buf_refs(shared));
    tr_buf_release(shared);
}
