/* libFuzzer target for the line codec.
 *
 * Input: [flags][max_length][max_frame byte][seed] then the stream.
 * Checks, beyond "no crash": the decoder's transcript equals a plain
 * reference splitter's (frames, errors, held bytes), for one read, one
 * byte per read and random reads alike; the feed helper checks consumed <=
 * len, frames inside the consumed bytes and under the limit, and resync
 * progress; and encode + decode gives a payload back. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "guard.h"

/* What the codec should make of the whole stream, computed the obvious
 * way: split at every "\n", drop one "\r" before it, and judge the
 * unterminated tail by the least length it could still turn out to have. */
static void reference(const uint8_t *s, size_t n, size_t limit, bool resync, tr_test_log *log)
{
    size_t pos = 0;
    while (pos < n) {
        const uint8_t *nl = memchr(s + pos, '\n', n - pos);
        if (nl == NULL) {
            size_t rest = n - pos;
            if (rest - (s[n - 1] == '\r') > limit) {
                tr_test_log_error(log, '!', TR_EMSGSIZE);
                if (!resync) {
                    tr_test_log_printf(log, ".");
                }
                /* With resync the tail is being dropped: nothing held. */
                return;
            }
            tr_test_log_printf(log, "+%zu", rest);
            return;
        }
        size_t line = (size_t)(nl - (s + pos));
        size_t content = line - (line > 0 && s[pos + line - 1] == '\r');
        if (content > limit) {
            tr_test_log_error(log, '!', TR_EMSGSIZE);
            if (!resync) {
                tr_test_log_printf(log, ".");
                return;
            }
        } else {
            tr_test_log_frame(log, s + pos, content);
        }
        pos += line + 1;
    }
}

static void round_trip(const tr_codec *c, const tr_line_codec_config *cfg, size_t max_frame,
                       const uint8_t *s, size_t n)
{
    size_t pl = n < 300 ? n : 300;
    unsigned char payload[300];
    memcpy(payload, s, pl);
    /* What a line can carry: no "\n", and no "\r" at the very end. */
    for (size_t i = 0; i < pl; i++) {
        if (payload[i] == '\n') {
            payload[i] = ' ';
        }
    }
    if (pl > 0 && payload[pl - 1] == '\r') {
        payload[pl - 1] = ' ';
    }
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 99, tl = 99;
    int rc = c->ops->encode(c, pl, hdr, &hl, trl, &tl);
    if (pl > cfg->max_length) {
        if (rc != TR_EMSGSIZE) {
            fuzz_fail("encode of %zu bytes over max_length %zu: %d", pl, cfg->max_length, rc);
        }
        return;
    }
    if (rc != 0 || hl != 0 || tl != (cfg->crlf ? 2u : 1u) ||
        memcmp(trl, cfg->crlf ? "\r\n" : "\n", tl) != 0) {
        fuzz_fail("encode: rc %d hdr %zu trl %zu", rc, hl, tl);
    }
    unsigned char wire[300 + TR_CODEC_MAX_TRAILER];
    memcpy(wire, payload, pl);
    memcpy(wire + pl, trl, tl);
    /* Mapped once: a mapping per input would cost more than the check. */
    static tr_test_guard *g;
    if (g == NULL) {
        g = tr_test_guard_new(sizeof(wire));
    }
    const unsigned char *in = tr_test_guard_put(g, wire, pl + tl);
    tr_codec_state st;
    memset(&st, 0, sizeof(st));
    tr_frame f = {NULL, 0};
    ssize_t r = c->ops->decode(c, &st, in, pl + tl, max_frame, &f);
    size_t limit = cfg->max_length < max_frame ? cfg->max_length : max_frame;
    if (pl > limit) {
        if (r != TR_EMSGSIZE) {
            fuzz_fail("round trip of %zu bytes over limit %zu: %zd", pl, limit, r);
        }
    } else if (r != (ssize_t)(pl + tl) || f.data != in || f.len != pl) {
        fuzz_fail("round trip of %zu bytes: consumed %zd, frame %zu", pl, r, f.len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    uint8_t len_byte = fuzz_u8(&in);
    uint8_t frame_byte = fuzz_u8(&in);
    uint32_t seed = fuzz_u8(&in);

    tr_line_codec_config cfg;
    tr_line_codec_config_defaults(&cfg);
    cfg.crlf = flags & 1;
    bool resync = flags & 2;
    if (!(flags & 4)) {
        cfg.max_length = 1 + (size_t)len_byte; /* small limits hit every edge */
    }
    size_t max_frame;
    switch ((flags >> 3) & 3) {
    case 0:
        max_frame = SIZE_MAX;
        break;
    case 1:
        max_frame = frame_byte; /* 0 included: only empty lines fit */
        break;
    case 2:
        max_frame = 1 + frame_byte % 8;
        break;
    default:
        max_frame = (size_t)frame_byte * 64;
        break;
    }
    int err = -1;
    tr_codec *c = tr_codec_line_new(&cfg, &err);
    if (c == NULL || err != 0) {
        fuzz_fail("line_new(max_length %zu): %d", cfg.max_length, err);
    }
    fuzz_check_empty_decode(c, max_frame);

    size_t limit = cfg.max_length < max_frame ? cfg.max_length : max_frame;
    tr_test_log want;
    tr_test_log_init(&want);
    reference(in.p, in.len, limit, resync, &want);

    tr_test_feed_opts o = {.max_frame = max_frame, .frame_limit = limit, .resync = resync};
    if (limit == 0) {
        /* frame_limit 0 would mean "use max_frame"; the feed helper cannot
         * express "only empty frames", so check that here instead. */
        o.frame_limit = 1;
    }
    tr_test_feed one;
    fuzz_feed_splits(c, &o, in.p, in.len, seed, true, NULL, NULL, &one);
    if (strcmp(one.log.s, want.s) != 0) {
        fuzz_fail("decoder and reference differ (limit %zu, resync %d):\n codec: %s\n  want: %s",
                  limit, resync, one.log.s, want.s);
    }
    if (limit == 0 && one.bytes_len != 0) {
        fuzz_fail("limit 0 but frames carried %zu bytes", one.bytes_len);
    }
    tr_test_feed_fini(&one);
    tr_test_log_fini(&want);

    round_trip(c, &cfg, max_frame, in.p, in.len);
    tr_codec_free(c);
    return 0;
}
