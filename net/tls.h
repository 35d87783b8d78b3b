/* Internal: TLS contexts (tls_ctx.c) and the TLS transport
 * (tls_boringssl.c), or their stand-ins when built without BoringSSL
 * (tls_none.c). */
#ifndef TROUPE_NET_TLS_H
#define TROUPE_NET_TLS_H

#include <stdbool.h>

#include "troupe/tls.h"
#include "conn.h"

/* Reference counting of a context; any thread. */
void tr__tls_retain(tr_tls *tls);
void tr__tls_release(tr_tls *tls);
bool tr__tls_is_server(const tr_tls *tls);

/* Puts a TLS session over the connection's fd transport: c->tp becomes
 * the TLS transport (its state in c->tp_state) until it closes, when the
 * fd transport it stacked on comes back. `server_name` (client) is sent
 * as SNI and verified; NULL or "" for none. Returns 0, TR_ENOMEM or
 * TR_ETLS. Owning worker. */
int tr__tls_attach(tr_conn *c, tr_tls *tls, const char *server_name);

#endif
