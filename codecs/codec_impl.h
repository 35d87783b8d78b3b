/* Internal helpers shared by the built-in codecs. Not installed. */
#ifndef TROUPE_CODEC_IMPL_H
#define TROUPE_CODEC_IMPL_H

#include <stddef.h>

#include "troupe/codec.h"

/* The destroy op of every heap-allocated built-in codec: the codec is one
 * malloc'd block whose first member is the tr_codec head. */
void tr__codec_destroy_block(tr_codec *c);

static inline size_t tr__codec_min(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Stores code in *err when the caller gave somewhere to store it. */
static inline void tr__codec_set_err(int *err, int code)
{
    if (err != NULL) {
        *err = code;
    }
}

#endif
