/* libFuzzer target for the length-field codec.
 *
 * Input: nine parameter bytes (layout, offset, adjust, strip, limits,
 * seed) then the stream. Checks, beyond "no crash": the constructor
 * accepts exactly the valid configs; the decoder's transcript equals a
 * reference computed in 128-bit arithmetic (so no overflow can hide), for
 * one read, one byte per read and random reads; the feed helper checks
 * consumed <= len, frames inside the consumed bytes and under the limit,
 * and that resync is refused; encode accepts exactly the representable
 * payloads and decode gives them back. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "guard.h"

__extension__ typedef __int128 i128;

static const unsigned widths[] = {1, 2, 3, 4, 8};

static uint64_t ref_field(const uint8_t *p, unsigned width, bool le)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++) {
        v |= (uint64_t)p[i] << (8 * (le ? i : width - 1 - i));
    }
    return v;
}

static void ref_error(tr_test_log *log, int code, bool resync)
{
    tr_test_log_error(log, '!', code);
    if (resync) {
        tr_test_log_error(log, '|', TR_ECODEC);
    } else {
        tr_test_log_printf(log, ".");
    }
}

static void reference(const tr_length_codec_config *cfg, size_t max_frame, bool resync,
                      const uint8_t *s, size_t n, tr_test_log *log)
{
    size_t header = cfg->length_offset + cfg->length_width;
    i128 limit = cfg->max_frame < max_frame ? cfg->max_frame : max_frame;
    if (limit > SSIZE_MAX) {
        limit = SSIZE_MAX;
    }
    size_t pos = 0;
    while (pos < n) {
        size_t rest = n - pos;
        if (rest < header) {
            tr_test_log_printf(log, "+%zu", rest);
            return;
        }
        uint64_t field =
            ref_field(s + pos + cfg->length_offset, cfg->length_width, cfg->little_endian);
        i128 body = (i128)field + cfg->length_adjust;
        i128 total = body + (i128)header;
        if (body < 0 || total > (i128)SIZE_MAX) {
            ref_error(log, TR_ECODEC, resync);
            return;
        }
        if (total > limit) {
            ref_error(log, TR_EMSGSIZE, resync);
            return;
        }
        if ((i128)rest < total) {
            tr_test_log_printf(log, "+%zu", rest);
            return;
        }
        tr_test_log_frame(log, s + pos + cfg->strip_header, (size_t)total - cfg->strip_header);
        pos += (size_t)total;
    }
}

static bool ref_valid(const tr_length_codec_config *cfg)
{
    unsigned w = cfg->length_width;
    if (w != 1 && w != 2 && w != 3 && w != 4 && w != 8) {
        return false;
    }
    i128 header = (i128)cfg->length_offset + w;
    return header <= TR_CODEC_MAX_HEADER && (i128)cfg->strip_header <= header &&
           (i128)cfg->max_frame >= header;
}

static void round_trip(const tr_codec *c, const tr_length_codec_config *cfg, const uint8_t *s,
                       size_t n)
{
    size_t header = cfg->length_offset + cfg->length_width;
    size_t pl = n < 600 ? n : 600;
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 99, tl = 99;
    int rc = c->ops->encode(c, pl, hdr, &hl, trl, &tl);
    if (cfg->strip_header != header) {
        if (rc != 0 || hl != 0 || tl != 0) {
            fuzz_fail("pass-through encode: rc %d hdr %zu trl %zu", rc, hl, tl);
        }
        return;
    }
    i128 field = (i128)pl - cfg->length_adjust;
    i128 room =
        cfg->length_width == 8 ? (i128)UINT64_MAX : ((i128)1 << (8 * cfg->length_width)) - 1;
    bool fits = field >= 0 && field <= room && (i128)header + (i128)pl <= (i128)cfg->max_frame;
    if (!fits) {
        if (rc != TR_EMSGSIZE) {
            fuzz_fail("encode of %zu bytes (adjust %lld, width %u) should be EMSGSIZE: %d", pl,
                      (long long)cfg->length_adjust, cfg->length_width, rc);
        }
        return;
    }
    if (rc != 0 || hl != header || tl != 0) {
        fuzz_fail("encode of %zu bytes: rc %d hdr %zu trl %zu", pl, rc, hl, tl);
    }
    for (size_t i = 0; i < cfg->length_offset; i++) {
        if (hdr[i] != 0) {
            fuzz_fail("offset byte %zu is %u, want 0", i, hdr[i]);
        }
    }
    if ((i128)ref_field(hdr + cfg->length_offset, cfg->length_width, cfg->little_endian) != field) {
        fuzz_fail("field of %zu bytes is wrong", pl);
    }
    unsigned char wire[TR_CODEC_MAX_HEADER + 600];
    memcpy(wire, hdr, hl);
    memcpy(wire + hl, s, pl);
    /* Mapped once: a mapping per input would cost more than the check. */
    static tr_test_guard *g;
    if (g == NULL) {
        g = tr_test_guard_new(sizeof(wire));
    }
    const unsigned char *in = tr_test_guard_put(g, wire, hl + pl);
    tr_codec_state st;
    memset(&st, 0, sizeof(st));
    tr_frame f = {NULL, 0};
    ssize_t r = c->ops->decode(c, &st, in, hl + pl, SIZE_MAX, &f);
    if (r != (ssize_t)(hl + pl) || f.data != in + hl || f.len != pl ||
        (pl > 0 && memcmp(f.data, s, pl) != 0)) {
        fuzz_fail("round trip of %zu bytes: consumed %zd, frame %zu", pl, r, f.len);
    }
    /* One byte short is never a frame. */
    if (hl + pl > 0) {
        memset(&st, 0, sizeof(st));
        in = tr_test_guard_put(g, wire, hl + pl - 1);
        r = c->ops->decode(c, &st, in, hl + pl - 1, SIZE_MAX, &f);
        if (r != 0) {
            fuzz_fail("round trip one byte short of %zu: %zd, want 0", hl + pl, r);
        }
    }
}

static int64_t pick_adjust(uint8_t mode, uint8_t b, fuzz_input *in, unsigned width, size_t header)
{
    switch (mode % 8) {
    case 0:
        return 0;
    case 1:
        return -(int64_t)width;
    case 2:
        return -(int64_t)header;
    case 3:
        return (int8_t)b;
    case 4:
        return INT64_MIN;
    case 5:
        return INT64_MAX;
    case 6:
        return (int64_t)fuzz_u64(in);
    default:
        return b % 8;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint8_t layout = fuzz_u8(&in);
    uint8_t offset_byte = fuzz_u8(&in);
    uint8_t adjust_mode = fuzz_u8(&in);
    uint8_t adjust_byte = fuzz_u8(&in);
    uint8_t strip_byte = fuzz_u8(&in);
    uint8_t cfg_max = fuzz_u8(&in);
    uint8_t conn_max = fuzz_u8(&in);
    uint8_t limits = fuzz_u8(&in);
    uint32_t seed = fuzz_u8(&in);

    tr_length_codec_config cfg;
    tr_length_codec_config_defaults(&cfg);
    /* Mostly valid widths; now and then an invalid one for the constructor. */
    cfg.length_width = (layout & 0x80) ? (unsigned)(layout & 0xf) : widths[(layout & 7) % 5];
    cfg.little_endian = layout & 0x08;
    bool resync = layout & 0x10;
    cfg.length_offset = offset_byte % 18; /* up to 17: past TR_CODEC_MAX_HEADER too */
    size_t header = cfg.length_offset + cfg.length_width;
    cfg.length_adjust = pick_adjust(adjust_mode, adjust_byte, &in, cfg.length_width, header);
    switch ((layout >> 5) & 3) {
    case 0:
        cfg.strip_header = 0;
        break;
    case 1:
    case 2:
        cfg.strip_header = header;
        break;
    default:
        cfg.strip_header = strip_byte % (header + 2); /* may be past the header */
        break;
    }
    switch (limits & 3) {
    case 0:
        cfg.max_frame = 1u << 20;
        break;
    case 1:
        cfg.max_frame = header + cfg_max % 32;
        break;
    case 2:
        cfg.max_frame = SIZE_MAX;
        break;
    default:
        cfg.max_frame = cfg_max % 20; /* may be below the header */
        break;
    }
    size_t max_frame;
    switch ((limits >> 2) & 3) {
    case 0:
        max_frame = SIZE_MAX;
        break;
    case 1:
        max_frame = conn_max;
        break;
    case 2:
        max_frame = (size_t)conn_max * 16;
        break;
    default:
        max_frame = 1u << 20;
        break;
    }

    int err = -1;
    tr_codec *c = tr_codec_length_new(&cfg, &err);
    if (!ref_valid(&cfg)) {
        if (c != NULL || err != TR_EINVAL) {
            fuzz_fail("invalid config accepted (offset %zu width %u strip %zu max %zu): %d",
                      cfg.length_offset, cfg.length_width, cfg.strip_header, cfg.max_frame, err);
        }
        return 0;
    }
    if (c == NULL || err != 0) {
        fuzz_fail("valid config refused (offset %zu width %u strip %zu max %zu): %d",
                  cfg.length_offset, cfg.length_width, cfg.strip_header, cfg.max_frame, err);
    }
    fuzz_check_empty_decode(c, max_frame);

    tr_test_log want;
    tr_test_log_init(&want);
    reference(&cfg, max_frame, resync, in.p, in.len, &want);
    tr_test_feed_opts o = {.max_frame = max_frame, .resync = resync};
    size_t frame_limit = cfg.max_frame < max_frame ? cfg.max_frame : max_frame;
    /* 0 would mean "use max_frame" (see line_fuzz.c); below the strip no
     * frame can pass the limit anyway. */
    o.frame_limit = frame_limit > cfg.strip_header ? frame_limit - cfg.strip_header : 1;
    tr_test_feed one;
    fuzz_feed_splits(c, &o, in.p, in.len, seed, true, NULL, NULL, &one);
    if (strcmp(one.log.s, want.s) != 0) {
        fuzz_fail("decoder and reference differ:\n codec: %s\n  want: %s", one.log.s, want.s);
    }
    tr_test_feed_fini(&one);
    tr_test_log_fini(&want);

    round_trip(c, &cfg, in.p, in.len);
    tr_codec_free(c);
    return 0;
}
