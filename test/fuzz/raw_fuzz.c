/* libFuzzer target for the raw codec.
 *
 * Input: [max_frame byte][seed] then the stream. Checks, beyond "no
 * crash": over one read, one byte per read and random reads, the frames
 * put together are exactly the stream, each at most max_frame bytes, with
 * nothing held back; one read gives ceil(len / max_frame) frames; max_frame
 * 0 is an error, not a stall; encode adds nothing. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

typedef struct expect {
    const uint8_t *s;
    size_t len;
    size_t max_frame;
} expect;

static void check_feed(const tr_test_feed *f, void *arg)
{
    const expect *e = arg;
    if (e->max_frame == 0) {
        if (e->len > 0 && (f->errors != 1 || f->frames != 0)) {
            fuzz_fail("max_frame 0: %s", f->log.s);
        }
        return;
    }
    if (f->errors != 0 || f->bytes_len != e->len ||
        (e->len > 0 && memcmp(f->bytes, e->s, e->len) != 0)) {
        fuzz_fail("frames do not rebuild the stream of %zu bytes: %s", e->len, f->log.s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint8_t mf = fuzz_u8(&in);
    uint32_t seed = fuzz_u8(&in);
    size_t max_frame = mf == 255 ? SIZE_MAX : mf;

    int err = -1;
    tr_codec *c = tr_codec_raw_new(&err);
    if (c == NULL || err != 0) {
        fuzz_fail("raw_new: %d", err);
    }
    fuzz_check_empty_decode(c, max_frame);

    expect e = {in.p, in.len, max_frame};
    tr_test_feed_opts o = {.max_frame = max_frame, .resync = true};
    if (max_frame == 0) {
        o.frame_limit = 1; /* no frame is produced at all; checked above */
    }
    tr_test_feed one;
    fuzz_feed_splits(c, &o, in.p, in.len, seed, false, check_feed, &e, &one);
    check_feed(&one, &e);
    if (max_frame > 0) {
        size_t want = max_frame == SIZE_MAX ? (in.len > 0) : (in.len + max_frame - 1) / max_frame;
        if (one.frames != want) {
            fuzz_fail("one read of %zu bytes gave %zu frames, want %zu", in.len, one.frames, want);
        }
    }
    tr_test_feed_fini(&one);

    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 99, tl = 99;
    if (c->ops->encode(c, in.len, hdr, &hl, trl, &tl) != 0 || hl != 0 || tl != 0) {
        fuzz_fail("encode added bytes");
    }
    tr_codec_free(c);
    return 0;
}
