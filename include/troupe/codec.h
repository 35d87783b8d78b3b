/* troupe: codecs (framing).
 *
 * A codec turns a byte stream into frames and frames back into bytes. It is
 * a small vtable plus its configuration, shared read-only by every
 * connection that uses it; per-connection decoder state lives in a
 * tr_codec_state the connection owns (zeroed when the connection opens).
 *
 * Decoders are pure functions of (state, bytes): they never allocate, never
 * read past `len`, and accept any split of the stream (one byte at a time,
 * many frames in one read) and any garbage. Built in: raw pass-through,
 * line (LF or CRLF), and length-field (Netty's LengthFieldBasedFrameDecoder
 * set). Applications may write their own by filling a tr_codec_ops. */
#ifndef TROUPE_CODEC_H
#define TROUPE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_codec tr_codec;

/* Per-connection decoder state: opaque scratch a codec may use. */
typedef struct tr_codec_state {
    uint64_t u[2];
} tr_codec_state;

/* A decoded frame: a view into the input passed to decode (valid until
 * that input changes). */
typedef struct tr_frame {
    const unsigned char *data;
    size_t len;
} tr_frame;

/* The most header and trailer bytes an encoder may add around a payload. */
#define TR_CODEC_MAX_HEADER 16
#define TR_CODEC_MAX_TRAILER 4

typedef struct tr_codec_ops {
    const char *name;
    /* Decodes at most one frame from in[0..len) (in may be NULL when len
     * is 0). max_frame is the connection's limit; each codec says what it
     * bounds, and the smaller of it and the codec's own limit applies.
     * Returns the number of input bytes consumed (> 0, <= len) and fills
     * *frame, which lies inside those consumed bytes (a frame may be
     * empty: len 0); returns 0 when more input is needed (consume nothing:
     * the caller keeps the bytes and calls again with them at the front
     * and more appended; the codec may remember in *st how far it has
     * looked, which keeps a stream fed one byte per read O(n) in all);
     * returns TR_EMSGSIZE when the frame being decoded would exceed the
     * limit (known as soon as it is certain: a line codec does not wait
     * for the newline), or TR_ECODEC for malformed input. */
    ssize_t (*decode)(const tr_codec *c, tr_codec_state *st, const unsigned char *in, size_t len,
                      size_t max_frame, tr_frame *frame);
    /* After decode failed, skips towards the next frame boundary so the
     * stream can go on (the error policy's CONTINUE). Returns the bytes to
     * drop from the front of in[0..len) (it may be all of them: the codec
     * then remembers in *st to keep dropping until a boundary), or
     * TR_ECODEC when this codec cannot resynchronise. NULL means cannot.
     *
     * The caller's protocol: after the failed decode, call resync on the
     * bytes held (the same in[0..len) decode saw) and drop what it
     * returns. While it returns all of len, keep passing each new input to
     * resync instead of decode; once it returns less than len, the
     * boundary is behind: decode the rest as usual. A boundary on the very
     * last byte also returns len; the next call then returns 0, which is
     * below len and so resumes decoding. The first call after an error
     * always drops at least one byte when len > 0, so CONTINUE cannot loop.
     * A codec whose decode is called while a resync is still pending may
     * report the error again rather than deliver the skipped bytes. */
    ssize_t (*resync)(const tr_codec *c, tr_codec_state *st, const unsigned char *in, size_t len);
    /* Writes the header and trailer that frame a payload of payload_len
     * bytes, so a frame goes out as the iovecs [hdr, payload, trailer] with
     * no copy of the payload. Returns 0, or TR_EMSGSIZE if the length does
     * not fit the codec's length field or is more than the codec's own
     * configured maximum would decode (the connection's max frame is not
     * known here). The encoder never sees the payload's bytes. */
    int (*encode)(const tr_codec *c, size_t payload_len, unsigned char hdr[TR_CODEC_MAX_HEADER],
                  size_t *hdr_len, unsigned char trl[TR_CODEC_MAX_TRAILER], size_t *trl_len);
    /* Frees the codec (NULL for static codecs). */
    void (*destroy)(tr_codec *c);
} tr_codec_ops;

/* The common head of every codec. A custom codec embeds this first. */
struct tr_codec {
    const tr_codec_ops *ops;
};

/* Frees a codec made by one of the constructors below. NULL is a no-op.
 * Threads: any thread, once no connection uses it. */
TR_API void tr_codec_free(tr_codec *c);

/* ---- raw: every chunk read is one frame (at most max_frame bytes); ----
 * ---- encode adds nothing. Never fails to decode.                    ----
 * (Except with max_frame 0, where even one byte is over the limit: that is
 * TR_EMSGSIZE rather than a decode that consumes nothing. No resync op.)
 * Returns one shared static codec and sets *err to 0; it never fails, and
 * tr_codec_free on it is a no-op. err may be NULL (for every constructor
 * here). Threads: any thread (every function in this header). */
TR_API tr_codec *tr_codec_raw_new(int *err);

/* ---- line ----
 * Decode: max_frame bounds the line without its terminator. A line over
 * the limit is TR_EMSGSIZE as soon as its length makes that certain; resync
 * then drops up to and including the next "\n", across as many reads as it
 * takes. Encode appends "\n" or "\r\n"; the payload must not contain
 * "\n" nor end with "\r" (the encoder cannot check: it sees only the
 * length), or the peer decodes something else. */
typedef struct tr_line_codec_config {
    /* Longest line, excluding the terminator. Default 64 KiB. The smaller
     * of this and the connection's max frame applies. */
    size_t max_length;
    /* Encoder terminator: false (default) "\n", true "\r\n". The decoder
     * accepts both; a "\r" before the "\n" is not part of the frame. */
    bool crlf;
} tr_line_codec_config;

/* Fills cfg with the defaults above. Threads: any thread. */
TR_API void tr_line_codec_config_defaults(tr_line_codec_config *cfg);
/* cfg NULL means the defaults. Returns NULL with *err = TR_EINVAL
 * (max_length 0) or TR_ENOMEM. Threads: any thread. */
TR_API tr_codec *tr_codec_line_new(const tr_line_codec_config *cfg, int *err);

/* ---- length-field ----
 * A frame is [length_offset bytes][length field][body], the body being
 * field + length_adjust bytes; max_frame bounds the whole frame, header
 * included. As soon as the header is readable decode returns TR_EMSGSIZE
 * for a frame over the limit, or TR_ECODEC when the adjusted length is
 * negative or the frame's size does not fit size_t. It cannot resync
 * (TR_ECODEC): nothing in the stream marks where the next frame starts. */
typedef struct tr_length_codec_config {
    size_t length_offset;   /* bytes before the length field; default 0 */
    unsigned length_width;  /* 1, 2, 3, 4 or 8 bytes; default 4 */
    bool little_endian;     /* default false (big endian) */
    /* Added to the field's value to get the bytes that follow the field
     * (e.g. -4 when the length counts the 4-byte field itself). Default 0. */
    int64_t length_adjust;
    /* Header bytes to strip from the front of each decoded frame; default
     * 0. For the 4-byte prefix codec use length_offset + length_width. */
    size_t strip_header;
    /* Largest whole frame (header included); default 1 MiB. The smaller of
     * this and the connection's max frame applies. */
    size_t max_frame;
} tr_length_codec_config;

/* Defaults: a 4-byte big-endian length at offset 0 counting only the
 * payload, header kept (strip 0), max 1 MiB. Threads: any thread. */
TR_API void tr_length_codec_config_defaults(tr_length_codec_config *cfg);
/* cfg NULL means the defaults. Returns NULL with *err = TR_EINVAL (bad
 * width, strip past the header, offset too large: header over
 * TR_CODEC_MAX_HEADER, max_frame smaller than the header) or TR_ENOMEM. The
 * encoder writes length_offset zero bytes, then the field (payload_len -
 * length_adjust; TR_EMSGSIZE if that is negative, does not fit the width,
 * or the frame would exceed max_frame), so it needs strip_header ==
 * length_offset + length_width to round-trip payloads; with another strip
 * decoded frames keep header bytes, so the encoder adds nothing and the
 * payload must be a whole frame (an echo handler sends frames back as
 * they came). Threads: any thread. */
TR_API tr_codec *tr_codec_length_new(const tr_length_codec_config *cfg, int *err);

#ifdef __cplusplus
}
#endif

#endif
