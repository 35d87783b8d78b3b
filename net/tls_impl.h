/* Internal: what the BoringSSL context (tls_ctx.c) and transport
 * (tls_boringssl.c) share. */
#ifndef TROUPE_NET_TLS_IMPL_H
#define TROUPE_NET_TLS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "tls.h"

/* One generation of a context: an SSL_CTX per certificate (the first is
 * the default, and the one every handshake starts on), the names each
 * answers to, the ALPN list in wire format. Reference counted (atomics). */
typedef struct tr__tls_gen {
    uint32_t refs;
    size_t n;
    SSL_CTX **ctx;
    char ***names;
    unsigned char alpn[256];
    size_t alpn_len;
} tr__tls_gen;

/* The current generation, with a reference for the caller. Any thread. */
tr__tls_gen *tr__tls_gen_acquire(tr_tls *tls);
void tr__tls_gen_release(tr__tls_gen *g);

#endif
