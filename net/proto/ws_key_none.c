/* Sec-WebSocket-Accept in a build without BoringSSL: not available. */
#include "ws_key.h"

#include "troupe/error.h"

int tr__ws_accept_key(const char *key, size_t key_len, char out[29])
{
    (void)key;
    (void)key_len;
    out[0] = '\0';
    return TR_ENOTSUP;
}
