/* Shared pieces of the codec fuzzers: reading parameters off the front of
 * an input, feeding a stream over several splits with the contract checks
 * of test/support/codec_feed.h, and failing loudly. A failed check aborts,
 * which libFuzzer reports as a crash and the corpus replay as a failed
 * test. */
#ifndef TROUPE_FUZZ_COMMON_H
#define TROUPE_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec_feed.h"
#include "troupe/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_input {
    const uint8_t *p;
    size_t len;
} fuzz_input;

/* The next byte of the input, or 0 once it is used up. */
uint8_t fuzz_u8(fuzz_input *in);
/* The next 8 bytes, little endian, zeros past the end. */
uint64_t fuzz_u64(fuzz_input *in);

/* xorshift32: the next of a reproducible sequence (state must not be 0). */
uint32_t fuzz_rand(uint32_t *state);

/* Prints the message and aborts. */
_Noreturn void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Feeds s[0..len) to c in one read, one byte per read (short streams
 * only: it is quadratic), and in reads of pseudo-random sizes drawn from
 * seed. Aborts on any contract breach, or, when `agree`, if the
 * transcripts differ. Fills *one_read with the one-read feed (free it with
 * tr_test_feed_fini); `others` gets the rest's transcripts checked by
 * `check` when it is not NULL. */
void fuzz_feed_splits(const tr_codec *c, const tr_test_feed_opts *o, const uint8_t *s, size_t len,
                      uint32_t seed, bool agree, void (*check)(const tr_test_feed *f, void *arg),
                      void *arg, tr_test_feed *one_read);

/* Checks that decode of an empty input asks for more without touching it. */
void fuzz_check_empty_decode(const tr_codec *c, size_t max_frame);

#endif
