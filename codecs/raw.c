/* Raw codec: whatever one read brings is one frame; nothing is added on
 * the way out. It has no configuration and no state, so one static
 * instance serves every connection. */
#include <limits.h>

#include "codec_impl.h"

static ssize_t raw_decode(const tr_codec *c, tr_codec_state *st, const unsigned char *in,
                          size_t len, size_t max_frame, tr_frame *frame)
{
    if (len == 0) {
        return 0;
    }
    /* With max_frame 0 even a one-byte frame is over the limit; reporting
     * it beats consuming nothing, which would spin the caller's loop. */
    if (max_frame == 0) {
        return TR_EMSGSIZE;
    }
    size_t n = tr__codec_min(len, max_frame);
    if (n > (size_t)SSIZE_MAX) {
        n = (size_t)SSIZE_MAX;
    }
    frame->data = in;
    frame->len = n;
    return (ssize_t)n;
}

static int raw_encode(const tr_codec *c, size_t payload_len, unsigned char hdr[TR_CODEC_MAX_HEADER],
                      size_t *hdr_len, unsigned char trl[TR_CODEC_MAX_TRAILER], size_t *trl_len)
{
    *hdr_len = 0;
    *trl_len = 0;
    return 0;
}

/* No resync op: raw decode fails only for max_frame 0, which no amount of
 * skipping fixes. */
static const tr_codec_ops raw_ops = {
    .name = "raw",
    .decode = raw_decode,
    .resync = NULL,
    .encode = raw_encode,
    .destroy = NULL,
};

/* Never written: the tr_codec head is non-const only because the API hands
 * out tr_codec pointers. */
static tr_codec raw_codec = {.ops = &raw_ops};

tr_codec *tr_codec_raw_new(int *err)
{
    tr__codec_set_err(err, 0);
    return &raw_codec;
}
