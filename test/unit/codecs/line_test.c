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

TestSuite(line, .init = setup, .fini = teardown, .timeout = 30.0);

static tr_codec *line_new(size_t max_length, bool crlf)
{
    tr_line_codec_config cfg;
    tr_line_codec_config_defaults(&cfg);
    cfg.max_length = max_length;
    cfg.crlf = crlf;
    int err = -1;
    tr_codec *c = tr_codec_line_new(&cfg, &err);
    cr_assert_not_null(c, "%s", tr_strerror(err));
    cr_assert_eq(err, 0);
    return c;
}

/* Feeds the literal to c over every split (see codec_feed.h) and compares
 * each transcript with `want`. */
static void check_splits(const tr_codec *c, size_t max_frame, bool resync, const char *s,
                         size_t len, const char *want)
{
    tr_test_feed_opts o = {.max_frame = max_frame, .resync = resync};
    char *msg = tr_test_codec_check_splits(c, &o, (const unsigned char *)s, len, want);
    if (msg != NULL) {
        cr_assert_fail("%s", msg);
        free(msg);
    }
}

#define CHECK(c, max_frame, resync, lit, want)                                                     \
    check_splits((c), (max_frame), (resync), (lit), sizeof(lit) - 1, (want))

/* One decode call on data placed so that it ends at a PROT_NONE page. */
static ssize_t dec(const tr_codec *c, tr_codec_state *st, const char *data, size_t len,
                   size_t max_frame, tr_frame *f)
{
    const unsigned char *in = tr_test_guard_put(guard, data, len);
    return c->ops->decode(c, st, in, len, max_frame, f);
}

static ssize_t res(const tr_codec *c, tr_codec_state *st, const char *data, size_t len)
{
    const unsigned char *in = tr_test_guard_put(guard, data, len);
    return c->ops->resync(c, st, in, len);
}

Test(line, lf_lines_decode_at_every_split)
{
    tr_codec *c = line_new(1024, false);
    CHECK(c, SIZE_MAX, false, "hello\nworld\n", "[hello][world]");
    tr_codec_free(c);
}

Test(line, crlf_terminator_is_not_part_of_the_frame)
{
    tr_codec *c = line_new(1024, false);
    CHECK(c, SIZE_MAX, false, "hello\r\nworld\r\n", "[hello][world]");
    tr_codec_free(c);
}

Test(line, mixed_terminators_and_empty_lines_decode_in_order)
{
    tr_codec *c = line_new(1024, false);
    CHECK(c, SIZE_MAX, false, "a\n\nb\r\n\r\nc\n\n", "[a][][b][][c][]");
    tr_codec_free(c);
}

Test(line, cr_not_before_lf_is_data)
{
    tr_codec *c = line_new(1024, false);
    CHECK(c, SIZE_MAX, false, "a\rb\n\r\r\n\r\n\rx\n", "[a\\x0db][\\x0d][][\\x0dx]");
    tr_codec_free(c);
}

Test(line, binary_bytes_pass_through)
{
    tr_codec *c = line_new(1024, false);
    CHECK(c, SIZE_MAX, false, "\0\xff\x80\n\0\n", "[\\x00\\xff\\x80][\\x00]");
    tr_codec_free(c);
}

Test(line, partial_line_waits_for_more)
{
    tr_codec *c = line_new(1024, false);
    CHECK(c, SIZE_MAX, false, "abc\ndef", "[abc]+3");
    CHECK(c, SIZE_MAX, false, "abc\r", "+4");
    CHECK(c, SIZE_MAX, false, "\r", "+1");
    tr_codec_free(c);
}

Test(line, many_lines_in_one_read_decode_one_per_call)
{
    tr_codec *c = line_new(1024, false);
    tr_codec_state st = {{0, 0}};
    static const char s[] = "one\ntwo\r\n\nthree\n";
    size_t len = sizeof(s) - 1, off = 0;
    const char *want[] = {"one", "two", "", "three"};
    for (size_t i = 0; i < 4; i++) {
        tr_frame f = {NULL, 0};
        ssize_t r = dec(c, &st, s + off, len - off, SIZE_MAX, &f);
        cr_assert_gt(r, 0);
        cr_assert_eq(f.len, strlen(want[i]));
        cr_assert_arr_eq(f.data, want[i], f.len);
        off += (size_t)r;
    }
    cr_assert_eq(off, len, "every byte consumed, terminators included");
    tr_codec_free(c);
}

Test(line, exactly_max_length_is_accepted_and_one_more_refused)
{
    tr_codec *c = line_new(5, false);
    CHECK(c, SIZE_MAX, false, "12345\n", "[12345]");
    CHECK(c, SIZE_MAX, false, "12345\r\n", "[12345]");
    CHECK(c, SIZE_MAX, false, "1234\r\r\n", "[1234\\x0d]");
    CHECK(c, SIZE_MAX, false, "123456\n", "!EMSGSIZE.");
    CHECK(c, SIZE_MAX, false, "12345\r\r\n", "!EMSGSIZE.");
    tr_codec_free(c);
}

Test(line, overlong_line_is_refused_before_its_newline)
{
    tr_codec *c = line_new(5, false);
    /* No newline anywhere: the verdict comes from the length alone. */
    CHECK(c, SIZE_MAX, false, "123456", "!EMSGSIZE.");
    CHECK(c, SIZE_MAX, false, "12345\rx", "!EMSGSIZE.");
    /* Five bytes and a "\r" may still be a five-byte line. */
    CHECK(c, SIZE_MAX, false, "12345\r", "+6");
    tr_codec_free(c);
}

Test(line, overlong_line_fails_on_exactly_the_first_certain_byte)
{
    tr_codec *c = line_new(5, false);
    static const char s[] = "abcdefghij";
    tr_codec_state st = {{0, 0}};
    tr_frame f;
    for (size_t k = 1; k <= 5; k++) {
        cr_assert_eq(dec(c, &st, s, k, SIZE_MAX, &f), 0, "%zu bytes", k);
    }
    cr_assert_eq(dec(c, &st, s, 6, SIZE_MAX, &f), TR_EMSGSIZE);

    static const char cr[] = "abcde\r\r";
    memset(&st, 0, sizeof(st));
    cr_assert_eq(dec(c, &st, cr, 6, SIZE_MAX, &f), 0, "\"abcde\\r\" may end with \"\\n\"");
    cr_assert_eq(dec(c, &st, cr, 7, SIZE_MAX, &f), TR_EMSGSIZE);
    tr_codec_free(c);
}

Test(line, smaller_of_max_length_and_max_frame_applies)
{
    tr_codec *c = line_new(100, false);
    CHECK(c, 3, true, "abc\nabcd\nxy\n", "[abc]!EMSGSIZE[xy]");
    tr_codec_free(c);
    c = line_new(3, false);
    CHECK(c, 100, true, "abc\nabcd\nxy\n", "[abc]!EMSGSIZE[xy]");
    tr_codec_free(c);
}

Test(line, max_frame_zero_allows_only_empty_lines)
{
    tr_codec *c = line_new(100, false);
    CHECK(c, 0, true, "\n\r\nx\n\n", "[][]!EMSGSIZE[]");
    tr_codec_free(c);
}

Test(line, resync_skips_overlong_line_and_next_line_arrives)
{
    tr_codec *c = line_new(4, false);
    CHECK(c, SIZE_MAX, true, "ok\ntoolong\nfine\n", "[ok]!EMSGSIZE[fine]");
    CHECK(c, SIZE_MAX, true, "ok\r\ntoolong\r\nfine\r\n", "[ok]!EMSGSIZE[fine]");
    CHECK(c, SIZE_MAX, true, "aaaaaa\nbbbbbbb\nok\n", "!EMSGSIZE!EMSGSIZE[ok]");
    CHECK(c, SIZE_MAX, true, "toolong\n", "!EMSGSIZE");
    CHECK(c, SIZE_MAX, true, "toolong", "!EMSGSIZE");
    CHECK(c, SIZE_MAX, true, "toolong\nab", "!EMSGSIZE+2");
    tr_codec_free(c);
}

Test(line, without_resync_the_feed_stops_at_the_error)
{
    tr_codec *c = line_new(4, false);
    CHECK(c, SIZE_MAX, false, "ok\ntoolong\nfine\n", "[ok]!EMSGSIZE.");
    tr_codec_free(c);
}

Test(line, resync_keeps_dropping_across_many_reads)
{
    tr_codec *c = line_new(8, false);
    size_t n = 300;
    char *s = malloc(n + 16);
    memset(s, 'x', n);
    memcpy(s + n, "\r\nnext\n", 7);
    check_splits(c, SIZE_MAX, true, s, n + 7, "!EMSGSIZE[next]");
    free(s);
    tr_codec_free(c);
}

Test(line, resync_with_newline_as_last_byte_resumes_on_next_read)
{
    tr_codec *c = line_new(4, false);
    tr_codec_state st = {{0, 0}};
    tr_frame f;
    cr_assert_eq(dec(c, &st, "toolo", 5, SIZE_MAX, &f), TR_EMSGSIZE);
    cr_assert_eq(res(c, &st, "toolo", 5), 5, "no newline yet: drop all, keep dropping");
    cr_assert_eq(res(c, &st, "ng", 2), 2);
    cr_assert_eq(res(c, &st, "\n", 1), 1, "the boundary is the last byte: all of len again");
    cr_assert_eq(res(c, &st, "next\n", 5), 0, "below len: the boundary is behind, decode");
    cr_assert_eq(dec(c, &st, "next\n", 5, SIZE_MAX, &f), 5);
    cr_assert_eq(f.len, 4);
    cr_assert_arr_eq(f.data, "next", 4);
    tr_codec_free(c);
}

Test(line, resync_finds_newline_inside_the_held_bytes)
{
    tr_codec *c = line_new(4, false);
    tr_codec_state st = {{0, 0}};
    tr_frame f;
    static const char s[] = "abcdefgh\nok\n";
    cr_assert_eq(dec(c, &st, s, 12, SIZE_MAX, &f), TR_EMSGSIZE);
    cr_assert_eq(res(c, &st, s, 12), 9);
    cr_assert_eq(dec(c, &st, s + 9, 3, SIZE_MAX, &f), 3);
    cr_assert_arr_eq(f.data, "ok", 2);
    tr_codec_free(c);
}

Test(line, decode_while_resync_pending_repeats_the_error)
{
    tr_codec *c = line_new(4, false);
    tr_codec_state st = {{0, 0}};
    tr_frame f;
    cr_assert_eq(dec(c, &st, "abcdef", 6, SIZE_MAX, &f), TR_EMSGSIZE);
    cr_assert_eq(res(c, &st, "abcdef", 6), 6);
    /* A caller that skips the protocol never gets the tail as a line. */
    cr_assert_eq(dec(c, &st, "gh\nok\n", 6, SIZE_MAX, &f), TR_EMSGSIZE);
    cr_assert_eq(res(c, &st, "gh\nok\n", 6), 3);
    cr_assert_eq(dec(c, &st, "ok\n", 3, SIZE_MAX, &f), 3);
    tr_codec_free(c);
}

Test(line, resync_without_pending_error_drops_nothing)
{
    tr_codec *c = line_new(4, false);
    tr_codec_state st = {{0, 0}};
    cr_assert_eq(res(c, &st, "abc\n", 4), 0);
    tr_codec_free(c);
}

/* A 2 MiB line arriving one byte per read: each byte is scanned once. A
 * decoder that rescanned the held bytes would make 2^41 byte reads here
 * and blow the suite's timeout by hours. */
Test(line, long_line_fed_byte_by_byte_costs_linear_time)
{
    size_t n = 2u << 20;
    tr_codec *c = line_new(n, false);
    unsigned char *s = malloc(n + 1);
    memset(s, 'a', n);
    s[n] = '\n';
    tr_codec_state st = {{0, 0}};
    tr_frame f;
    for (size_t k = 1; k <= n; k++) {
        ssize_t r = c->ops->decode(c, &st, s, k, SIZE_MAX, &f);
        if (r != 0) {
            cr_assert_fail("%zu bytes: %zd", k, r);
            break;
        }
    }
    cr_assert_eq(c->ops->decode(c, &st, s, n + 1, SIZE_MAX, &f), (ssize_t)n + 1);
    cr_assert_eq(f.len, n);
    free(s);
    tr_codec_free(c);
}

/* Garbage without a newline: the decoder looks at no more than limit + 2
 * bytes however much is buffered, and resync drops it all in one go. */
Test(line, unbounded_garbage_is_refused_and_dropped_in_linear_time)
{
    size_t n = 8u << 20;
    tr_codec *c = line_new(16, false);
    unsigned char *s = malloc(n);
    memset(s, 'z', n);
    tr_codec_state st = {{0, 0}};
    tr_frame f;
    cr_assert_eq(c->ops->decode(c, &st, s, n, SIZE_MAX, &f), TR_EMSGSIZE);
    cr_assert_eq(c->ops->resync(c, &st, s, n), (ssize_t)n);
    for (size_t k = 0; k < 1000; k++) {
        cr_assert_eq(c->ops->resync(c, &st, s, 4096), 4096);
    }
    s[10] = '\n';
    cr_assert_eq(c->ops->resync(c, &st, s, 4096), 11);
    free(s);
    tr_codec_free(c);
}

Test(line, encode_appends_lf_or_crlf)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 99, tl = 99;
    tr_codec *c = line_new(10, false);
    cr_assert_eq(c->ops->encode(c, 3, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hl, 0);
    cr_assert_eq(tl, 1);
    cr_assert_eq(trl[0], '\n');
    tr_codec_free(c);

    c = line_new(10, true);
    cr_assert_eq(c->ops->encode(c, 0, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(hl, 0);
    cr_assert_eq(tl, 2);
    cr_assert_arr_eq(trl, "\r\n", 2);
    tr_codec_free(c);
}

Test(line, encode_refuses_lines_over_max_length)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl, tl;
    tr_codec *c = line_new(10, false);
    cr_assert_eq(c->ops->encode(c, 10, hdr, &hl, trl, &tl), 0);
    cr_assert_eq(c->ops->encode(c, 11, hdr, &hl, trl, &tl), TR_EMSGSIZE);
    cr_assert_eq(c->ops->encode(c, SIZE_MAX, hdr, &hl, trl, &tl), TR_EMSGSIZE);
    tr_codec_free(c);
}

static void round_trip(bool crlf)
{
    static const char *payloads[] = {"", "a",         "hello world", "\r\rx",
                                     "", "tab\there", "0123456789"};
    size_t np = sizeof(payloads) / sizeof(payloads[0]);
    tr_codec *c = line_new(16, crlf);
    unsigned char stream[256];
    size_t len = 0;
    tr_test_log want;
    tr_test_log_init(&want);
    for (size_t i = 0; i < np; i++) {
        unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
        size_t hl, tl, pl = strlen(payloads[i]);
        cr_assert_eq(c->ops->encode(c, pl, hdr, &hl, trl, &tl), 0);
        memcpy(stream + len, hdr, hl);
        len += hl;
        memcpy(stream + len, payloads[i], pl);
        len += pl;
        memcpy(stream + len, trl, tl);
        len += tl;
        tr_test_log_frame(&want, (const unsigned char *)payloads[i], pl);
    }
    check_splits(c, SIZE_MAX, false, (const char *)stream, len, want.s);
    tr_test_log_fini(&want);
    tr_codec_free(c);
}

Test(line, encode_then_decode_gives_payloads_back_lf)
{
    round_trip(false);
}

Test(line, encode_then_decode_gives_payloads_back_crlf)
{
    round_trip(true);
}

Test(line, config_defaults_are_64k_lf)
{
    tr_line_codec_config cfg;
    memset(&cfg, 0xab, sizeof(cfg));
    tr_line_codec_config_defaults(&cfg);
    cr_assert_eq(cfg.max_length, 65536);
    cr_assert_eq(cfg.crlf, false);
}

Test(line, null_config_means_defaults)
{
    int err = -1;
    tr_codec *c = tr_codec_line_new(NULL, &err);
    cr_assert_not_null(c);
    cr_assert_eq(err, 0);
    cr_assert_str_eq(c->ops->name, "line");
    size_t n = 65536;
    unsigned char *s = malloc(n + 2);
    memset(s, 'q', n + 1);
    s[n] = '\n';
    tr_codec_state st = {{0, 0}};
    tr_frame f;
    cr_assert_eq(c->ops->decode(c, &st, s, n + 1, SIZE_MAX, &f), (ssize_t)n + 1);
    memset(&st, 0, sizeof(st));
    s[n] = 'q';
    s[n + 1] = '\n';
    cr_assert_eq(c->ops->decode(c, &st, s, n + 2, SIZE_MAX, &f), TR_EMSGSIZE);
    free(s);
    tr_codec_free(c);
}

Test(line, zero_max_length_is_einval)
{
    tr_line_codec_config cfg;
    tr_line_codec_config_defaults(&cfg);
    cfg.max_length = 0;
    int err = 0;
    cr_assert_null(tr_codec_line_new(&cfg, &err));
    cr_assert_eq(err, TR_EINVAL);
}
