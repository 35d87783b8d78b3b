/* Internal: the handshake's Sec-WebSocket-Accept value (RFC 6455 4.2.2):
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). Computed
 * with BoringSSL (ws_key.c), or refused in a build without it
 * (ws_key_none.c). */
#ifndef TROUPE_NET_PROTO_WS_KEY_H
#define TROUPE_NET_PROTO_WS_KEY_H

#include <stddef.h>

/* Writes the 28-character value and a NUL to out. Returns 0, or
 * TR_ENOTSUP without BoringSSL. */
int tr__ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
