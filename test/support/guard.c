#include "guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct tr_test_guard {
    unsigned char *map;
    size_t map_len;
    unsigned char *end; /* first byte of the PROT_NONE page */
    size_t cap;
};

tr_test_guard *tr_test_guard_new(size_t cap)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_len = (cap + page - 1) / page * page;
    if (data_len == 0) {
        data_len = page;
    }
    tr_test_guard *g = malloc(sizeof(*g));
    if (g == NULL) {
        abort();
    }
    g->map_len = data_len + page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) {
        perror("tr_test_guard_new: mmap");
        abort();
    }
    g->end = g->map + data_len;
    if (mprotect(g->end, page, PROT_NONE) != 0) {
        perror("tr_test_guard_new: mprotect");
        abort();
    }
    g->cap = data_len;
    return g;
}

unsigned char *tr_test_guard_put(tr_test_guard *g, const void *data, size_t len)
{
    if (len > g->cap) {
        fprintf(stderr, "tr_test_guard_put: %zu bytes do not fit %zu\n", len, g->cap);
        abort();
    }
    unsigned char *dst = g->end - len;
    if (len > 0) {
        /* memmove: callers may pass bytes that already live in the guard. */
        memmove(dst, data, len);
    }
    return dst;
}

void tr_test_guard_free(tr_test_guard *g)
{
    if (g == NULL) {
        return;
    }
    munmap(g->map, g->map_len);
    free(g);
}
