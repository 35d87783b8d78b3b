/* Codec lifetime shared by every codec, built-in or custom. */
#include <stdlib.h>

#include "codec_impl.h"

void tr_codec_free(tr_codec *c)
{
    /* Static codecs (raw) have no destroy op: freeing them is a no-op, so
     * callers never need to know which constructor made the codec. */
    if (c != NULL && c->ops->destroy != NULL) {
        c->ops->destroy(c);
    }
}

void tr__codec_destroy_block(tr_codec *c)
{
    free(c);
}
