#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "codec_feed.h"
#include "guard.h"
#include "troupe/codec.h"

static tr_test_guard *guard;

static void setup(void)
{
    guard = tr_test_guard_new(1 << 16);
}

static void teardown(void)
{
    tr_test_guard_free(guard);
}

TestSuite(length, .init = setup, .fini = teardown, .timeout = 30.0);

static tr_length_codec_config cfg_of(size_t offset, unsigned width, bool le, int64_t adjust,
                                     size_t strip, size_t max_frame)
{
    tr_length_codec_config cfg;
    tr_length_codec_config_defaults(&cfg);
    cfg.length_offset = offset;
    cfg.length_width = width;
    cfg.little_endian = le;
    cfg.length_adjust = adjust;
    cfg.strip_header = strip;
    cfg.max_frame = max_frame;
    return cfg;
}

static tr_codec *length_new(size_t offset, unsigned width, bool le, int64_t adjust, size_t strip,
                            size_t max_frame)
{
    tr_length_codec_config cfg = cfg_of(offset, width, le, adjust, strip, max_frame);
    int err = -1;
    tr_codec *c = tr_codec_length_new(&cfg, &err);
    cr_assert_not_null(c, "%s", tr_strerror(err));
    cr_assert_eq(err, 0);
    return c;
}

static void check_splits(const tr_codec *c, size_t max_frame, const void *s, size_t len,
                         const char *want)
{
    /* resync on: the codec must refuse it ("|ECODEC") after any error. */
    tr_test_feed_opts o = {.max_frame = max_frame, .resync = true};
    char *msg = tr_test_codec_check_splits(c, &o, s, len, want);
    if (msg != NULL) {
        cr_assert_fail("%s", msg);
        free(msg);
    }
}

#define CHECK(c, max_frame, lit, want)                                                             \
    check_splits((c), (max_frame), (lit), sizeof(lit) - 1, (want))

static ssize_t dec(const tr_codec *c, const void *data, size_t len, size_t max_frame, tr_frame *f)
{
    tr_codec_state st = {{0, 0}};
    const unsigned char *in = tr_test_guard_put(guard, data, len);
    return c->ops->decode(c, &st, in, len, max_frame, f);
}

Test(length, defaults_are_4_byte_big_endian_header_kept_1mib)
{
    tr_length_codec_config cfg;
    memset(&cfg, 0xab, sizeof(cfg));
    tr_length_codec_config_defaults(&cfg);
    cr_assert_eq(cfg.length_offset, 0);
    cr_assert_eq(cfg.length_width, 4);
    cr_assert_eq(cfg.little_endian, false);
    cr_assert_eq(cfg.length_adjust, 0);
    cr_assert_eq(cfg.strip_header, 0);
    cr_assert_eq(cfg.max_frame, 1u << 20);

    tr_codec *c = tr_codec_length_new(NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_str_eq(c->ops->name, "length");
    CHECK(c, SIZE_MAX, "\0\0\0\3abc\0\0\0\0\0\0\0\1z",
          "[\\x00\\x00\\x00\\x03abc][\\x00\\x00\\x00\\x00][\\x00\\x00\\x00\\x01z]");
    tr_codec_free(c);
}

Test(length, strip_header_gives_payloads_at_every_split)
{
    tr_codec *c = length_new(0, 4, false, 0, 4, 1 << 20);
    CHECK(c, SIZE_MAX, "\0\0\0\3abc\0\0\0\0\0\0\0\5hello\0\0\0\1z\0\0", "[abc][][hello][z]+2");
    tr_codec_free(c);
}

Test(length, partial_header_and_partial_body_wait)
{
    tr_codec *c = length_new(0, 4, false, 0, 4, 1 << 20);
    CHECK(c, SIZE_MAX, "\0\0\0", "+3");
    CHECK(c, SIZE_MAX, "\0\0\0\5hel", "+7");
    tr_codec_free(c);
}

/* The seven examples of Netty's LengthFieldBasedFrameDecoder javadoc. */
Test(length, netty_examples_decode_as_documented)
{
    tr_codec *c = length_new(0, 2, false, 0, 0, 1 << 20);
    CHECK(c, SIZE_MAX, "\x00\x0cHELLO, WORLD", "[\\x00\\x0cHELLO, WORLD]");
    tr_codec_free(c);

    c = length_new(0, 2, false, 0, 2, 1 << 20);
    CHECK(c, SIZE_MAX, "\x00\x0cHELLO, WORLD", "[HELLO, WORLD]");
    tr_codec_free(c);

    c = length_new(0, 2, false, -2, 0, 1 << 20);
    CHECK(c, SIZE_MAX, "\x00\x0eHELLO, WORLD", "[\\x00\\x0eHELLO, WORLD]");
    tr_codec_free(c);

    c = length_new(2, 3, false, 0, 0, 1 << 20);
    CHECK(c, SIZE_MAX, "\xca\xfe\x00\x00\x0cHELLO, WORLD",
          "[\\xca\\xfe\\x00\\x00\\x0cHELLO, WORLD]");
    tr_codec_free(c);

    c = length_new(0, 3, false, 2, 0, 1 << 20);
    CHECK(c, SIZE_MAX, "\x00\x00\x0c\xca\xfeHELLO, WORLD",
          "[\\x00\\x00\\x0c\\xca\\xfeHELLO, WORLD]");
    tr_codec_free(c);

    c = length_new(1, 2, false, 1, 3, 1 << 20);
    CHECK(c, SIZE_MAX, "\xca\x00\x0c\xfeHELLO, WORLD", "[\\xfeHELLO, WORLD]");
    tr_codec_free(c);

    c = length_new(1, 2, false, -3, 3, 1 << 20);
    CHECK(c, SIZE_MAX, "\xca\x00\x10\xfeHELLO, WORLD", "[\\xfeHELLO, WORLD]");
    tr_codec_free(c);
}

Test(length, every_width_reads_both_endiannesses)
{
    static const unsigned widths[] = {1, 2, 3, 4, 8};
    for (size_t w = 0; w < 5; w++) {
        unsigned width = widths[w];
        for (int le = 0; le <= 1; le++) {
            tr_codec *c = length_new(0, width, le, 0, width, 1 << 20);
            unsigned char s[8 + 300];
            memset(s, 0, width);
            /* 258 = 0x0102 needs two bytes; a 1-byte field says 0x02 = 2. */
            size_t body = width == 1 ? 2 : 258;
            if (width == 1) {
                s[0] = 2;
            } else if (le) {
                s[0] = 0x02;
                s[1] = 0x01;
            } else {
                s[width - 2] = 0x01;
                s[width - 1] = 0x02;
            }
            memset(s + width, 'p', body);
            tr_frame f = {NULL, 0};
            ssize_t r = dec(c, s, width + body, SIZE_MAX, &f);
            cr_assert_eq(r, (ssize_t)(width + body), "width %u le %d: %zd", width, le, r);
            cr_assert_eq(f.len, body);
            cr_assert_eq(dec(c, s, width + body - 1, SIZE_MAX, &f), 0, "width %u le %d", width, le);
            tr_codec_free(c);
        }
    }
}

Test(length, three_byte_fields_use_all_their_bytes)
{
    tr_codec *be = length_new(0, 3, false, 0, 0, 1 << 30);
    tr_codec *le = length_new(0, 3, true, 0, 0, 1 << 30);
    tr_frame f;
    /* 0x010203 = 66051: too much for a 1 KiB max frame, but readable. */
    cr_assert_eq(dec(be, "\x01\x02\x03", 3, 1024, &f), TR_EMSGSIZE);
    cr_assert_eq(dec(be, "\x00\x00\x03xyz", 6, 1024, &f), 6);
    cr_assert_eq(dec(le, "\x03\x00\x00xyz", 6, 1024, &f), 6);
    cr_assert_eq(dec(le, "\x00\x00\x03", 3, 1024, &f), TR_EMSGSIZE);
    tr_codec_free(be);
    tr_codec_free(le);
}

Test(length, offset_bytes_precede_the_field)
{
    tr_codec *c = length_new(3, 2, true, 0, 5, 1 << 20);
    CHECK(c, SIZE_MAX, "XYZ\x02\x00okABC\x00\x00", "[ok][]");
    tr_codec_free(c);
    c = length_new(3, 2, true, 0, 3, 1 << 20);
    CHECK(c, SIZE_MAX, "XYZ\x02\x00ok", "[\\x02\\x00ok]");
    tr_codec_free(c);
}

Test(length, adjust_counts_the_field_itself_or_extra_bytes)
{
    /* -4: the field counts itself. */
    tr_codec *c = length_new(0, 4, false, -4, 4, 1 << 20);
    CHECK(c, SIZE_MAX, "\0\0\0\7abc\0\0\0\4", "[abc][]");
    tr_codec_free(c);
    /* +2: two trailing bytes (a checksum, say) the field does not count. */
    c = length_new(0, 1, false, 2, 1, 1 << 20);
    CHECK(c, SIZE_MAX, "\1a++\0--", "[a++][--]");
    tr_codec_free(c);
}

Test(length, exactly_max_frame_ok_and_one_more_refused_at_header)
{
    /* max 14 = 4-byte header + 10 body bytes. */
    tr_codec *c = length_new(0, 4, false, 0, 4, 14);
    CHECK(c, SIZE_MAX,
          "\0\0\0\x0a"
          "0123456789",
          "[0123456789]");
    /* The refusal comes with the header alone: no body bytes needed. */
    CHECK(c, SIZE_MAX, "\0\0\0\x0b", "!EMSGSIZE|ECODEC");
    CHECK(c, SIZE_MAX,
          "\0\0\0\x01z\0\0\0\x0b"
          "0123",
          "[z]!EMSGSIZE|ECODEC");
    tr_codec_free(c);
}

Test(length, smaller_of_config_and_connection_max_frame_applies)
{
    tr_codec *c = length_new(0, 1, false, 0, 1, 100);
    CHECK(c, 5,
          "\x04"
          "abcd",
          "[abcd]");
    CHECK(c, 5,
          "\x05"
          "abcde",
          "!EMSGSIZE|ECODEC");
    CHECK(c, 1000, "\x63", "+1");
    CHECK(c, 1000, "\x64", "!EMSGSIZE|ECODEC");
    tr_codec_free(c);
}

Test(length, hostile_huge_lengths_are_refused_not_waited_for)
{
    tr_codec *c = length_new(0, 8, false, 0, 8, 1 << 20);
    tr_frame f;
    /* 2^64 - 1 + the 8-byte header does not fit size_t: garbage. */
    cr_assert_eq(dec(c, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, SIZE_MAX, &f), TR_ECODEC);
    /* 2^63 + 8 fits size_t; it is merely too large. */
    cr_assert_eq(dec(c, "\x80\0\0\0\0\0\0\0", 8, SIZE_MAX, &f), TR_EMSGSIZE);
    cr_assert_eq(dec(c, "\xff\xff\xff\xff\xff\xff\xff\xf7", 8, SIZE_MAX, &f), TR_EMSGSIZE);
    cr_assert_eq(dec(c, "\xff\xff\xff\xff\xff\xff\xff\xf8", 8, SIZE_MAX, &f), TR_ECODEC);
    CHECK(c, SIZE_MAX, "\0\0\0\0\x7f\xff\xff\xff", "!EMSGSIZE|ECODEC");
    tr_codec_free(c);

    c = length_new(0, 4, true, 0, 0, 1 << 20);
    CHECK(c, SIZE_MAX, "\xff\xff\xff\xff", "!EMSGSIZE|ECODEC");
    tr_codec_free(c);
}

Test(length, hostile_negative_lengths_after_adjust_are_ecodec)
{
    tr_codec *c = length_new(0, 4, false, -4, 4, 1 << 20);
    CHECK(c, SIZE_MAX, "\0\0\0\3", "!ECODEC|ECODEC");
    CHECK(c, SIZE_MAX, "\0\0\0\0", "!ECODEC|ECODEC");
    CHECK(c, SIZE_MAX, "\0\0\0\4\0\0\0\3", "[]!ECODEC|ECODEC");
    tr_codec_free(c);
}

Test(length, extreme_adjusts_never_overflow)
{
    tr_frame f;
    tr_codec *c = length_new(0, 8, false, INT64_MIN, 8, 1 << 20);
    cr_assert_eq(dec(c, "\0\0\0\0\0\0\0\0", 8, SIZE_MAX, &f), TR_ECODEC);
    cr_assert_eq(dec(c, "\x7f\xff\xff\xff\xff\xff\xff\xff", 8, SIZE_MAX, &f), TR_ECODEC);
    cr_assert_eq(dec(c, "\x80\0\0\0\0\0\0\x02zz", 10, SIZE_MAX, &f), 10);
    cr_assert_eq(f.len, 2);
    cr_assert_eq(dec(c, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, SIZE_MAX, &f), TR_EMSGSIZE);
    tr_codec_free(c);

    c = length_new(0, 8, false, INT64_MAX, 8, 1 << 20);
    cr_assert_eq(dec(c, "\0\0\0\0\0\0\0\0", 8, SIZE_MAX, &f), TR_EMSGSIZE);
    cr_assert_eq(dec(c, "\x80\0\0\0\0\0\0\0", 8, SIZE_MAX, &f), TR_ECODEC);
    tr_codec_free(c);
}

Test(length, resync_is_refused)
{
    tr_codec *c = length_new(0, 4, false, 0, 4, 1 << 20);
    tr_codec_state st = {{0, 0}};
    const unsigned char *in = tr_test_guard_put(guard, "\xff\xff\xff\xff", 4);
    cr_assert_not_null(c->ops->resync);
    cr_assert_eq(c->ops->resync(c, &st, in, 4), TR_ECODEC);
    tr_codec_free(c);
}

Test(length, encode_writes_offset_zeros_then_field)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 99, tl = 99;
    tr_codec *c = length_new(2, 3, false, 0, 5, 1 << 20);
    cr_assert_eq(c->ops->encode(c, 0x0102, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hl, 5);
    cr_assert_eq(tl, 0);
    cr_assert_arr_eq(hdr, "\0\0\x00\x01\x02", 5);
    tr_codec_free(c);

    c = length_new(1, 4, true, -5, 5, 1 << 20);
    cr_assert_eq(c->ops->encode(c, 3, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hl, 5);
    cr_assert_arr_eq(hdr, "\0\x08\0\0\0", 5, "little endian 3 + 5");
    tr_codec_free(c);

    c = length_new(0, 8, false, 0, 8, 1 << 20);
    cr_assert_eq(c->ops->encode(c, 7, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hl, 8);
    cr_assert_arr_eq(hdr, "\0\0\0\0\0\0\0\7", 8);
    tr_codec_free(c);
}

Test(length, encode_refuses_what_the_field_cannot_hold)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl, tl;
    tr_codec *c = length_new(0, 1, false, 0, 1, 1 << 30);
    cr_assert_eq(c->ops->encode(c, 255, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(c->ops->encode(c, 256, hdr, &hl, trl, &tl), TR_EMSGSIZE);
    tr_codec_free(c);

    c = length_new(0, 1, false, -1, 1, 1 << 30);
    cr_assert_eq(c->ops->encode(c, 254, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hdr[0], 255);
    cr_assert_eq(c->ops->encode(c, 255, hdr, &hl, trl, &tl), TR_EMSGSIZE);
    tr_codec_free(c);

    c = length_new(0, 3, true, 0, 3, 1 << 30);
    cr_assert_eq(c->ops->encode(c, (1u << 24) - 1, hdr, &hl, trl, &tl), 0);
    cr_assert_arr_eq(hdr, "\xff\xff\xff", 3);
    cr_assert_eq(c->ops->encode(c, 1u << 24, hdr, &hl, trl, &tl), TR_EMSGSIZE);
    tr_codec_free(c);

    /* +5: a 3-byte payload would need a field of -2. */
    c = length_new(0, 2, false, 5, 2, 1 << 20);
    cr_assert_eq(c->ops->encode(c, 3, hdr, &hl, trl, &tl), TR_EMSGSIZE);
    cr_assert_eq(c->ops->encode(c, 5, hdr, &hl, trl, &tl), 0);
    cr_assert_arr_eq(hdr, "\0\0", 2);
    tr_codec_free(c);

    c = length_new(0, 8, false, INT64_MIN, 8, SIZE_MAX);
    cr_assert_eq(c->ops->encode(c, SIZE_MAX - 8, hdr, &hl, trl, &tl), TR_EMSGSIZE);
    cr_assert_eq(c->ops->encode(c, 1, hdr, &hl, trl, &tl), 0);
    cr_assert_arr_eq(hdr, "\x80\0\0\0\0\0\0\1", 8);
    tr_codec_free(c);
}

Test(length, encode_refuses_frames_over_max_frame)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl, tl;
    tr_codec *c = length_new(0, 4, false, 0, 4, 14);
    cr_assert_eq(c->ops->encode(c, 10, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(c->ops->encode(c, 11, hdr, &hl, trl, &tl), TR_EMSGSIZE);
    tr_codec_free(c);
}

Test(length, encode_passes_whole_frames_through_when_header_is_kept)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 99, tl = 99;
    tr_codec *c = length_new(0, 4, false, 0, 0, 1 << 20);
    cr_assert_eq(c->ops->encode(c, 7, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hl, 0);
    cr_assert_eq(tl, 0);
    tr_codec_free(c);
    c = length_new(2, 2, false, 0, 2, 1 << 20);
    cr_assert_eq(c->ops->encode(c, 7, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hl, 0);
    tr_codec_free(c);
}

/* Every width, both endiannesses, several adjusts: the stream made by
 * encode decodes back to the payloads at every split. */
Test(length, encode_then_decode_round_trips_every_layout)
{
    static const unsigned widths[] = {1, 2, 3, 4, 8};
    static const char *payloads[] = {"", "a", "hello", "", "0123456789abcdef"};
    for (size_t w = 0; w < 5; w++) {
        for (int le = 0; le <= 1; le++) {
            for (size_t off = 0; off <= 2; off += 2) {
                unsigned width = widths[w];
                size_t header = off + width;
                int64_t adjusts[] = {0, -(int64_t)width, -(int64_t)header, 3};
                for (size_t a = 0; a < 4; a++) {
                    tr_codec *c = length_new(off, width, le, adjusts[a], header, 1 << 20);
                    unsigned char stream[512];
                    size_t len = 0;
                    tr_test_log want;
                    tr_test_log_init(&want);
                    for (size_t i = 0; i < 5; i++) {
                        unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
                        size_t hl, tl, pl = strlen(payloads[i]);
                        int rc = c->ops->encode(c, pl, hdr, &hl, trl, &tl);
                        if (adjusts[a] > 0 && pl < (size_t)adjusts[a]) {
                            cr_assert_eq(rc, TR_EMSGSIZE);
                            continue;
                        }
                        cr_assert_eq(rc, 0, "width %u le %d adjust %lld len %zu", width, le,
                                     (long long)adjusts[a], pl);
                        cr_assert_eq(hl, header);
                        memcpy(stream + len, hdr, hl);
                        len += hl;
                        memcpy(stream + len, payloads[i], pl);
                        len += pl;
                        memcpy(stream + len, trl, tl);
                        len += tl;
                        tr_test_log_frame(&want, (const unsigned char *)payloads[i], pl);
                    }
                    check_splits(c, SIZE_MAX, stream, len, want.s);
                    tr_test_log_fini(&want);
                    tr_codec_free(c);
                }
            }
        }
    }
}

Test(length, bad_configs_are_einval)
{
    struct {
        tr_length_codec_config cfg;
        const char *why;
    } bad[] = {
        {cfg_of(0, 0, false, 0, 0, 100), "width 0"},
        {cfg_of(0, 5, false, 0, 0, 100), "width 5"},
        {cfg_of(0, 16, false, 0, 0, 100), "width 16"},
        {cfg_of(13, 4, false, 0, 0, 100), "header 17 > TR_CODEC_MAX_HEADER"},
        {cfg_of(SIZE_MAX, 4, false, 0, 0, 100), "offset wraps"},
        {cfg_of(0, 4, false, 0, 5, 100), "strip past the header"},
        {cfg_of(2, 4, false, 0, 0, 5), "max_frame below the header"},
        {cfg_of(0, 4, false, 0, 0, 0), "max_frame 0"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int err = 0;
        cr_assert_null(tr_codec_length_new(&bad[i].cfg, &err), "%s", bad[i].why);
        cr_assert_eq(err, TR_EINVAL, "%s", bad[i].why);
    }
    tr_length_codec_config ok = cfg_of(8, 8, false, 0, 16, 16);
    int err = -1;
    tr_codec *c = tr_codec_length_new(&ok, &err);
    cr_assert_not_null(c, "a 16-byte header is the most allowed");
    tr_codec_free(c);
}
