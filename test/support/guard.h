/* Test helper: inputs that end right before an inaccessible page, so a
 * decoder that reads even one byte past `len` crashes at once instead of
 * reading stale memory (picohttpparser's test.c does the same). */
#ifndef TROUPE_TEST_GUARD_H
#define TROUPE_TEST_GUARD_H

#include <stddef.h>

typedef struct tr_test_guard tr_test_guard;

/* Maps room for `cap` bytes followed by a PROT_NONE page. Aborts if the
 * mapping fails: a test cannot go on without it. */
tr_test_guard *tr_test_guard_new(size_t cap);

/* Copies data[0..len) (len <= cap; aborts otherwise) so that its last byte
 * sits right before the PROT_NONE page, and returns where the copy starts.
 * With len 0 the result is the guard page's address itself. Each call
 * overwrites the previous copy. */
unsigned char *tr_test_guard_put(tr_test_guard *g, const void *data, size_t len);

/* Unmaps the pages. NULL is a no-op. */
void tr_test_guard_free(tr_test_guard *g);

#endif
