/* Tests for runtime/buf.c: reference-counted immutable buffers. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "troupe/buf.h"
#include "tsan_criterion.h"

TestSuite(buf, .timeout = 30.0);

Test(buf, new_has_one_reference_and_its_length)
{
    tr_buf *b = tr_buf_new(100);
    cr_assert_not_null(b);
    cr_assert_eq(tr_buf_refs(b), 1);
    cr_assert_eq(tr_buf_len(b), 100);
    cr_assert_eq((uintptr_t)tr_buf_data(b) % 16, 0, "payload is 16-byte aligned");
    memset(tr_buf_data(b), 0xab, 100); /* all 100 bytes are ours: ASan checks */
    tr_buf_release(b);
}

Test(buf, zero_length_buffer_is_valid)
{
    tr_buf *b = tr_buf_new(0);
    cr_assert_not_null(b);
    cr_assert_eq(tr_buf_len(b), 0);
    tr_buf_release(b);
}

Test(buf, copy_holds_the_bytes)
{
    const char text[] = "hello, troupe";
    tr_buf *b = tr_buf_copy(text, sizeof(text));
    cr_assert_not_null(b);
    cr_assert_eq(tr_buf_len(b), sizeof(text));
    cr_assert_eq(memcmp(tr_buf_data(b), text, sizeof(text)), 0);
    tr_buf_release(b);
}

Test(buf, retain_returns_the_buffer_and_counts)
{
    tr_buf *b = tr_buf_new(8);
    cr_assert_eq(tr_buf_retain(b), b);
    cr_assert_eq(tr_buf_retain(b), b);
    cr_assert_eq(tr_buf_refs(b), 3);
    tr_buf_release(b);
    cr_assert_eq(tr_buf_refs(b), 2);
    tr_buf_release(b);
    cr_assert_eq(tr_buf_refs(b), 1);
    tr_buf_release(b); /* the last one frees: ASan reports a leak otherwise */
}

Test(buf, release_null_is_a_noop)
{
    tr_buf_release(NULL);
}

Test(buf, impossible_size_returns_null)
{
    cr_assert_null(tr_buf_new(SIZE_MAX));
    cr_assert_null(tr_buf_new(SIZE_MAX - 8));
}

#define THREADS 4
#define ROUNDS 100000

static void *retain_release(void *arg)
{
    tr_buf *b = arg;
    for (int i = 0; i < ROUNDS; i++) {
        tr_buf_retain(b);
        tr_buf_retain(b);
        tr_buf_release(b);
        tr_buf_release(b);
    }
    tr_buf_release(b); /* the reference the test handed this thread */
    return NULL;
}

Test(buf, concurrent_retain_release_keeps_an_exact_count)
{
    tr_buf *b = tr_buf_copy("shared", 6);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        tr_buf_retain(b);
        cr_assert_eq(pthread_create(&t[i], NULL, retain_release, b), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    cr_assert_eq(tr_buf_refs(b), 1, "got %u", tr_buf_refs(b));
    cr_assert_eq(memcmp(tr_buf_data(b), "shared", 6), 0);
    tr_buf_release(b);
}
