#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "codec_feed.h"
#include "guard.h"
#include "troupe/codec.h"

static tr_codec *raw;
static tr_test_guard *guard;

static void setup(void)
{
    guard = tr_test_guard_new(4096);
    int err = -1;
    raw = tr_codec_raw_new(&err);
    cr_assert_not_null(raw);
    cr_assert_eq(err, 0);
}

static void teardown(void)
{
    tr_codec_free(raw);
    tr_test_guard_free(guard);
}

TestSuite(raw, .init = setup, .fini = teardown, .timeout = 10.0);

/* Decodes data placed so that it ends right before a PROT_NONE page. */
static ssize_t decode_guarded(const unsigned char *data, size_t len, size_t max_frame, tr_frame *f,
                              const unsigned char **in_out)
{
    const unsigned char *in = tr_test_guard_put(guard, data, len);
    tr_codec_state st = {{0, 0}};
    *in_out = in;
    return raw->ops->decode(raw, &st, in, len, max_frame, f);
}

Test(raw, decode_empty_input_needs_more)
{
    tr_frame f = {NULL, 0};
    const unsigned char *in;
    cr_assert_eq(decode_guarded((const unsigned char *)"", 0, 100, &f, &in), 0);
}

Test(raw, decode_whole_read_is_one_frame)
{
    tr_frame f = {NULL, 0};
    const unsigned char *in;
    cr_assert_eq(decode_guarded((const unsigned char *)"hello\nworld", 11, 100, &f, &in), 11);
    cr_assert_eq(f.data, in, "a view into the input, not a copy");
    cr_assert_eq(f.len, 11);
}

Test(raw, decode_caps_frame_at_max_frame)
{
    tr_frame f = {NULL, 0};
    const unsigned char *in;
    cr_assert_eq(decode_guarded((const unsigned char *)"0123456789", 10, 4, &f, &in), 4);
    cr_assert_eq(f.data, in);
    cr_assert_eq(f.len, 4);
}

Test(raw, decode_exactly_max_frame_is_one_frame)
{
    tr_frame f = {NULL, 0};
    const unsigned char *in;
    cr_assert_eq(decode_guarded((const unsigned char *)"0123", 4, 4, &f, &in), 4);
    cr_assert_eq(f.len, 4);
}

Test(raw, decode_max_frame_zero_returns_emsgsize)
{
    tr_frame f = {NULL, 0};
    const unsigned char *in;
    cr_assert_eq(decode_guarded((const unsigned char *)"x", 1, 0, &f, &in), TR_EMSGSIZE);
}

Test(raw, feed_every_split_delivers_every_byte_in_order)
{
    static const unsigned char s[] = "GET / HTTP/1.1\r\n\0\xff binary \n tail";
    size_t n = sizeof(s) - 1;
    tr_test_feed_opts o = {.max_frame = 5};
    for (size_t cut = 0; cut < n; cut++) {
        tr_test_feed f;
        tr_test_codec_feed(raw, &o, s, n, &cut, cut == 0 ? 0 : 1, &f);
        cr_assert_not(f.broken, "cut %zu: %s", cut, f.log.s);
        cr_assert_eq(f.bytes_len, n, "cut %zu", cut);
        cr_assert_arr_eq(f.bytes, s, n, "cut %zu", cut);
        cr_assert_eq(f.errors, 0);
        /* Each read is split into ceil(read / 5) frames. */
        size_t want = cut == 0 ? (n + 4) / 5 : (cut + 4) / 5 + (n - cut + 4) / 5;
        cr_assert_eq(f.frames, want, "cut %zu: %zu frames", cut, f.frames);
        tr_test_feed_fini(&f);
    }
}

Test(raw, feed_one_byte_per_read_gives_one_frame_per_byte)
{
    static const unsigned char s[] = "abcdefgh";
    size_t cuts[7] = {1, 2, 3, 4, 5, 6, 7};
    tr_test_feed_opts o = {.max_frame = 1024};
    tr_test_feed f;
    tr_test_codec_feed(raw, &o, s, 8, cuts, 7, &f);
    cr_assert_str_eq(f.log.s, "[a][b][c][d][e][f][g][h]");
    tr_test_feed_fini(&f);
}

Test(raw, encode_adds_nothing)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 99, tl = 99;
    cr_assert_eq(raw->ops->encode(raw, 12345, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hl, 0);
    cr_assert_eq(tl, 0);
    cr_assert_eq(raw->ops->encode(raw, SIZE_MAX, hdr, &hl, trl, &tl), 0);
}

Test(raw, has_no_resync_and_a_name)
{
    cr_assert_null(raw->ops->resync, "raw never fails to decode: nothing to resync");
    cr_assert_str_eq(raw->ops->name, "raw");
}

Test(raw, free_null_and_static_codec_are_noops)
{
    tr_codec_free(NULL);
    tr_codec *again = tr_codec_raw_new(NULL);
    cr_assert_eq(again, raw, "one shared static instance");
    tr_codec_free(again); /* raw is still usable afterwards: teardown frees it again */
    tr_frame f;
    const unsigned char *in;
    cr_assert_eq(decode_guarded((const unsigned char *)"x", 1, 1, &f, &in), 1);
}
