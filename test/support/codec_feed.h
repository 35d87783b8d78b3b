/* Test helper: drives a codec the way a connection does, over any split of
 * a byte stream, and writes down what came out as a short transcript that
 * tests compare with a literal.
 *
 * Transcript grammar:
 *   [bytes]    one frame; bytes outside printable ASCII, and [ ] \, are
 *              written \xHH
 *   !EMSGSIZE  a decode error (!ECODEC, or !E<n> for any other code)
 *   .          the feed stopped after an error because resync was off
 *              (the error policy said DISCONNECT)
 *   |ECODEC    the codec refused to resync: the feed stopped there
 *   +N         N bytes were still waiting for more input at the end
 *   ?what      the codec broke its contract (consumed more than it was
 *              given, a frame outside the input, no resync progress...)
 *
 * Every decode and resync call sees its input end right before a PROT_NONE
 * page (guard.h), so an over-read crashes the test. One thread only: the
 * helpers share one cached mapping. */
#ifndef TROUPE_TEST_CODEC_FEED_H
#define TROUPE_TEST_CODEC_FEED_H

#include <stdbool.h>
#include <stddef.h>

#include "troupe/codec.h"

typedef struct tr_test_log {
    char *s; /* NUL-terminated */
    size_t len;
    size_t cap;
} tr_test_log;

void tr_test_log_init(tr_test_log *l);
void tr_test_log_fini(tr_test_log *l);
void tr_test_log_frame(tr_test_log *l, const unsigned char *p, size_t n);
void tr_test_log_error(tr_test_log *l, char mark, int code);
void tr_test_log_printf(tr_test_log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct tr_test_feed_opts {
    size_t max_frame;   /* passed to every decode */
    size_t frame_limit; /* a longer frame is a contract breach; 0: max_frame */
    bool resync;        /* CONTINUE after a decode error, else stop */
} tr_test_feed_opts;

typedef struct tr_test_feed {
    tr_test_log log;
    unsigned char *bytes; /* every frame's bytes, concatenated */
    size_t bytes_len;
    size_t frames;
    size_t errors;
    size_t calls; /* decode and resync calls made */
    bool broken;  /* a "?" entry was logged */
} tr_test_feed;

/* Feeds stream[0..len) to c as reads that end at each of cuts[0..ncuts)
 * (strictly increasing, each in 1..len-1) and then at len, decoding after
 * each read until the codec needs more. Resync follows the protocol in
 * codec.h. Fills *out; free it with tr_test_feed_fini. */
void tr_test_codec_feed(const tr_codec *c, const tr_test_feed_opts *o, const unsigned char *stream,
                        size_t len, const size_t *cuts, size_t ncuts, tr_test_feed *out);
void tr_test_feed_fini(tr_test_feed *f);

/* Feeds the stream in one read, split at every single point, split at
 * every pair of points (when len <= 96), and one byte per read. Returns
 * NULL when every transcript equals `expected`, else a malloc'd message
 * naming the first split that differed and what it produced. */
char *tr_test_codec_check_splits(const tr_codec *c, const tr_test_feed_opts *o,
                                 const unsigned char *stream, size_t len, const char *expected);

#endif
