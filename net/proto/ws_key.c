/* Sec-WebSocket-Accept with BoringSSL's SHA1 and EVP_EncodeBlock. */
#include "ws_key.h"

#include <openssl/base64.h>
#include <openssl/sha.h>
#include <string.h>

#include "troupe/error.h"

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int tr__ws_accept_key(const char *key, size_t key_len, char out[29])
{
    SHA_CTX sha;
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1_Init(&sha);
    SHA1_Update(&sha, key, key_len);
    SHA1_Update(&sha, GUID, sizeof(GUID) - 1);
    SHA1_Final(digest, &sha);
    EVP_EncodeBlock((uint8_t *)out, digest, sizeof(digest)); /* 28 chars and a NUL */
    return 0;
}
