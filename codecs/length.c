/* Length-field codec: Netty's LengthFieldBasedFrameDecoder set.
 *
 * A frame is  [length_offset bytes][length field][body]  where the body is
 * field + length_adjust bytes long. The header is readable as soon as
 * length_offset + length_width bytes have arrived, and from then on the
 * whole frame's size is known, so a frame that is too large (or
 * malformed) is refused right there, before any of its body is buffered.
 * Decoding needs no state: re-reading a header of at most
 * TR_CODEC_MAX_HEADER bytes on every call is O(1). */
#include <limits.h>
#include <stdlib.h>

#include "codec_impl.h"

typedef struct length_codec {
    tr_codec base;
    size_t offset;
    unsigned width;
    bool little_endian;
    int64_t adjust;
    size_t strip;
    size_t header; /* offset + width */
    size_t max_frame;
} length_codec;

static uint64_t read_field(const length_codec *lc, const unsigned char *p)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < lc->width; i++) {
        unsigned char b = lc->little_endian ? p[lc->width - 1 - i] : p[i];
        v = (v << 8) | b;
    }
    return v;
}

static void write_field(const length_codec *lc, unsigned char *p, uint64_t v)
{
    for (unsigned i = 0; i < lc->width; i++) {
        unsigned char b = (unsigned char)(v >> (8 * (lc->width - 1 - i)));
        p[lc->little_endian ? lc->width - 1 - i : i] = b;
    }
}

/* The magnitude of a negative adjust, computed in unsigned arithmetic so
 * INT64_MIN has one too. */
static uint64_t magnitude(int64_t adjust)
{
    return (uint64_t)0 - (uint64_t)adjust;
}

static ssize_t length_decode(const tr_codec *c, tr_codec_state *st, const unsigned char *in,
                             size_t len, size_t max_frame, tr_frame *frame)
{
    const length_codec *lc = (const length_codec *)c;
    if (len < lc->header) {
        return 0;
    }
    uint64_t field = read_field(lc, in + lc->offset);
    uint64_t body;
    if (lc->adjust >= 0) {
        if (field > UINT64_MAX - (uint64_t)lc->adjust) {
            return TR_ECODEC;
        }
        body = field + (uint64_t)lc->adjust;
    } else {
        if (field < magnitude(lc->adjust)) {
            return TR_ECODEC; /* the adjusted length is negative */
        }
        body = field - magnitude(lc->adjust);
    }
    /* A frame whose size does not even fit size_t is garbage, not merely
     * large. */
    if (body > SIZE_MAX - lc->header) {
        return TR_ECODEC;
    }
    size_t total = lc->header + (size_t)body;
    /* Capped at SSIZE_MAX so that the consumed count always fits the
     * return type. */
    size_t limit = tr__codec_min(tr__codec_min(lc->max_frame, max_frame), (size_t)SSIZE_MAX);
    if (total > limit) {
        return TR_EMSGSIZE;
    }
    if (len < total) {
        return 0;
    }
    frame->data = in + lc->strip;
    frame->len = total - lc->strip;
    return (ssize_t)total;
}

/* A length-field stream has no marker to find the next frame by: once a
 * header is garbage, every later byte is ambiguous. */
static ssize_t length_resync(const tr_codec *c, tr_codec_state *st, const unsigned char *in,
                             size_t len)
{
    return TR_ECODEC;
}

static int length_encode(const tr_codec *c, size_t payload_len,
                         unsigned char hdr[TR_CODEC_MAX_HEADER], size_t *hdr_len,
                         unsigned char trl[TR_CODEC_MAX_TRAILER], size_t *trl_len)
{
    const length_codec *lc = (const length_codec *)c;
    *trl_len = 0;
    if (lc->strip != lc->header) {
        /* Decoded frames keep (part of) their header, so the application
         * deals in whole frames: it sends them as they are. */
        *hdr_len = 0;
        return 0;
    }
    /* Refuse what our own decoder would refuse. max_frame >= header was
     * checked by the constructor, so the subtraction cannot wrap. */
    if (payload_len > lc->max_frame - lc->header) {
        return TR_EMSGSIZE;
    }
    /* The decoder computes body = field + adjust; we need body ==
     * payload_len. */
    uint64_t field;
    if (lc->adjust >= 0) {
        if ((uint64_t)payload_len < (uint64_t)lc->adjust) {
            return TR_EMSGSIZE; /* the field would have to be negative */
        }
        field = (uint64_t)payload_len - (uint64_t)lc->adjust;
    } else {
        if ((uint64_t)payload_len > UINT64_MAX - magnitude(lc->adjust)) {
            return TR_EMSGSIZE;
        }
        field = (uint64_t)payload_len + magnitude(lc->adjust);
    }
    if (lc->width < 8 && (field >> (8 * lc->width)) != 0) {
        return TR_EMSGSIZE;
    }
    for (size_t i = 0; i < lc->offset; i++) {
        hdr[i] = 0;
    }
    write_field(lc, hdr + lc->offset, field);
    *hdr_len = lc->header;
    return 0;
}

static const tr_codec_ops length_ops = {
    .name = "length",
    .decode = length_decode,
    .resync = length_resync,
    .encode = length_encode,
    .destroy = tr__codec_destroy_block,
};

void tr_length_codec_config_defaults(tr_length_codec_config *cfg)
{
    cfg->length_offset = 0;
    cfg->length_width = 4;
    cfg->little_endian = false;
    cfg->length_adjust = 0;
    cfg->strip_header = 0;
    cfg->max_frame = 1024 * 1024;
}

static bool valid_config(const tr_length_codec_config *cfg)
{
    switch (cfg->length_width) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 8:
        break;
    default:
        return false;
    }
    /* Written so that a huge offset cannot wrap the sum around. */
    if (cfg->length_offset > TR_CODEC_MAX_HEADER - cfg->length_width) {
        return false;
    }
    size_t header = cfg->length_offset + cfg->length_width;
    /* A max_frame below the header would refuse every frame. */
    return cfg->strip_header <= header && cfg->max_frame >= header;
}

tr_codec *tr_codec_length_new(const tr_length_codec_config *cfg, int *err)
{
    tr_length_codec_config defaults;
    if (cfg == NULL) {
        tr_length_codec_config_defaults(&defaults);
        cfg = &defaults;
    }
    if (!valid_config(cfg)) {
        tr__codec_set_err(err, TR_EINVAL);
        return NULL;
    }
    length_codec *lc = malloc(sizeof(*lc));
    if (lc == NULL) {
        tr__codec_set_err(err, TR_ENOMEM);
        return NULL;
    }
    lc->base.ops = &length_ops;
    lc->offset = cfg->length_offset;
    lc->width = cfg->length_width;
    lc->little_endian = cfg->little_endian;
    lc->adjust = cfg->length_adjust;
    lc->strip = cfg->strip_header;
    lc->header = cfg->length_offset + cfg->length_width;
    lc->max_frame = cfg->max_frame;
    tr__codec_set_err(err, 0);
    return &lc->base;
}
