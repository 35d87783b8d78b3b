#include "fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t fuzz_u8(fuzz_input *in)
{
    if (in->len == 0) {
        return 0;
    }
    uint8_t b = in->p[0];
    in->p++;
    in->len--;
    return b;
}

uint64_t fuzz_u64(fuzz_input *in)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++) {
        v |= (uint64_t)fuzz_u8(in) << (8 * i);
    }
    return v;
}

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz check failed: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* xorshift32: reproducible read sizes from one seed. */
static uint32_t next_rand(uint32_t *x)
{
    uint32_t v = *x;
    v ^= v << 13;
    v ^= v >> 17;
    v ^= v << 5;
    *x = v;
    return v;
}

uint32_t fuzz_rand(uint32_t *state)
{
    return next_rand(state);
}

static void run(const tr_codec *c, const tr_test_feed_opts *o, const uint8_t *s, size_t len,
                const size_t *cuts, size_t ncuts, const char *what, tr_test_feed *f)
{
    tr_test_codec_feed(c, o, s, len, cuts, ncuts, f);
    if (f->broken) {
        fuzz_fail("%s: codec broke its contract: %s", what, f->log.s);
    }
}

void fuzz_feed_splits(const tr_codec *c, const tr_test_feed_opts *o, const uint8_t *s, size_t len,
                      uint32_t seed, bool agree, void (*check)(const tr_test_feed *f, void *arg),
                      void *arg, tr_test_feed *one_read)
{
    run(c, o, s, len, NULL, 0, "one read", one_read);
    size_t *cuts = malloc((len > 0 ? len : 1) * sizeof(*cuts));
    if (cuts == NULL) {
        abort();
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t n = 0;
        if (pass == 0) {
            if (len > 2048) {
                continue;
            }
            for (size_t i = 1; i < len; i++) {
                cuts[n++] = i;
            }
        } else {
            uint32_t x = seed * 2654435761u + (uint32_t)len + 1;
            size_t at = 0;
            for (;;) {
                at += 1 + next_rand(&x) % ((next_rand(&x) & 1) ? 4 : 64);
                if (at >= len) {
                    break;
                }
                cuts[n++] = at;
            }
        }
        tr_test_feed f;
        run(c, o, s, len, cuts, n, pass == 0 ? "byte per read" : "random reads", &f);
        if (agree && strcmp(f.log.s, one_read->log.s) != 0) {
            fuzz_fail("split changed the result:\n one read:  %s\n %s: %s", one_read->log.s,
                      pass == 0 ? "byte/read" : "random", f.log.s);
        }
        if (check != NULL) {
            check(&f, arg);
        }
        tr_test_feed_fini(&f);
    }
    free(cuts);
}

void fuzz_check_empty_decode(const tr_codec *c, size_t max_frame)
{
    tr_codec_state st;
    memset(&st, 0, sizeof(st));
    tr_frame f = {NULL, 0};
    /* A NULL input with len 0 is legal: decode must not look at it. */
    ssize_t r = c->ops->decode(c, &st, NULL, 0, max_frame, &f);
    if (r != 0) {
        fuzz_fail("decode of nothing returned %zd, want 0", r);
    }
}
