/* Line codec: frames end with "\n"; a "\r" right before it is part of the
 * terminator, not of the frame.
 *
 * Design notes. A connection keeps the bytes decode did not consume and
 * hands them back, with more appended, on the next call. Rescanning them
 * each time would make a long line fed one byte per read cost O(n^2), so
 * the state remembers how far the previous calls looked:
 *   u[0]  bytes at the front of the input already known to hold no "\n";
 *   u[1]  LINE_DROPPING while a resync is still looking for the "\n" that
 *         ends the overlong line it is throwing away.
 * The scan never looks further than limit + 2 bytes: past that, with no
 * "\n" seen, the line is certainly too long, so a peer that never sends a
 * newline costs O(limit) per call at most and is rejected as soon as the
 * verdict is certain. */
#include <stdlib.h>
#include <string.h>

#include "codec_impl.h"

#define LINE_DROPPING 1u

typedef struct line_codec {
    tr_codec base;
    size_t max_length;
    bool crlf;
} line_codec;

static ssize_t line_decode(const tr_codec *c, tr_codec_state *st, const unsigned char *in,
                           size_t len, size_t max_frame, tr_frame *frame)
{
    const line_codec *lc = (const line_codec *)c;
    /* A caller that decodes before the resync has found the end of the
     * overlong line would otherwise get the line's tail as a frame; calling
     * it the same error again lets the policy resync once more instead. */
    if (st->u[1] & LINE_DROPPING) {
        return TR_EMSGSIZE;
    }
    if (len == 0) {
        return 0;
    }
    size_t limit = tr__codec_min(lc->max_length, max_frame);
    /* limit + 2 newline-free bytes are a line of at least limit + 1 bytes
     * even if the last of them turns out to be the "\r" of a "\r\n". */
    size_t window = limit > SIZE_MAX - 2 ? SIZE_MAX : limit + 2;
    size_t end = tr__codec_min(len, window);
    size_t from = st->u[0];
    if (from > end) {
        /* Not the input the scan position was taken on (or a smaller
         * max_frame than last time): start over, still bounded by end. */
        from = 0;
    }
    const unsigned char *nl = memchr(in + from, '\n', end - from);
    if (nl == NULL) {
        st->u[0] = end;
        /* The line so far is end bytes, minus one if the last is a "\r"
         * that the next byte may turn into a terminator. */
        size_t at_least = end - (in[end - 1] == '\r');
        if (at_least > limit) {
            st->u[1] |= LINE_DROPPING;
            return TR_EMSGSIZE;
        }
        return 0;
    }
    size_t pos = (size_t)(nl - in);
    size_t n = pos - (pos > 0 && in[pos - 1] == '\r');
    if (n > limit) {
        st->u[0] = pos;
        st->u[1] |= LINE_DROPPING;
        return TR_EMSGSIZE;
    }
    st->u[0] = 0;
    frame->data = in;
    frame->len = n;
    return (ssize_t)(pos + 1);
}

static ssize_t line_resync(const tr_codec *c, tr_codec_state *st, const unsigned char *in,
                           size_t len)
{
    /* Not dropping: the boundary is already behind us (it was the last
     * byte of the previous input), so decoding may resume here. */
    if (!(st->u[1] & LINE_DROPPING) || len == 0) {
        return 0;
    }
    /* decode already looked at the first u[0] bytes and found no "\n". */
    size_t from = st->u[0] <= len ? st->u[0] : 0;
    const unsigned char *nl = memchr(in + from, '\n', len - from);
    st->u[0] = 0;
    if (nl == NULL) {
        return (ssize_t)len;
    }
    st->u[1] &= ~(uint64_t)LINE_DROPPING;
    return (ssize_t)(nl - in) + 1;
}

static int line_encode(const tr_codec *c, size_t payload_len,
                       unsigned char hdr[TR_CODEC_MAX_HEADER], size_t *hdr_len,
                       unsigned char trl[TR_CODEC_MAX_TRAILER], size_t *trl_len)
{
    const line_codec *lc = (const line_codec *)c;
    /* Refuse what our own decoder would refuse: a peer with the same
     * config would drop the connection (or the line) anyway. */
    if (payload_len > lc->max_length) {
        return TR_EMSGSIZE;
    }
    *hdr_len = 0;
    if (lc->crlf) {
        trl[0] = '\r';
        trl[1] = '\n';
        *trl_len = 2;
    } else {
        trl[0] = '\n';
        *trl_len = 1;
    }
    return 0;
}

static const tr_codec_ops line_ops = {
    .name = "line",
    .decode = line_decode,
    .resync = line_resync,
    .encode = line_encode,
    .destroy = tr__codec_destroy_block,
};

void tr_line_codec_config_defaults(tr_line_codec_config *cfg)
{
    cfg->max_length = 64 * 1024;
    cfg->crlf = false;
}

tr_codec *tr_codec_line_new(const tr_line_codec_config *cfg, int *err)
{
    tr_line_codec_config defaults;
    if (cfg == NULL) {
        tr_line_codec_config_defaults(&defaults);
        cfg = &defaults;
    }
    if (cfg->max_length == 0) {
        tr__codec_set_err(err, TR_EINVAL);
        return NULL;
    }
    line_codec *lc = malloc(sizeof(*lc));
    if (lc == NULL) {
        tr__codec_set_err(err, TR_ENOMEM);
        return NULL;
    }
    lc->base.ops = &line_ops;
    lc->max_length = cfg->max_length;
    lc->crlf = cfg->crlf;
    tr__codec_set_err(err, 0);
    return &lc->base;
}
