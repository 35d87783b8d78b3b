/* troupe: TCP clients.
 *
 * A client connection is a connection actor like a server's, with the same
 * codecs, handler callbacks and send API, made by dialling out. */
#ifndef TROUPE_CLIENT_H
#define TROUPE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/codec.h"
#include "troupe/conn.h"
#include "troupe/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_client_config {
    /* Required. "1.2.3.4:80", "[::1]:80", "localhost:80" (numeric, and
     * localhost as 127.0.0.1: no resolver involved), "name.example:80" (a
     * host name: resolved at every dial, see resolve_timeout_ms),
     * "unix:/path" or "unix:@name". The string is copied. */
    const char *connect;
    /* Bounds each address tried: a name that resolves to several
     * addresses tries them in order until one connects, each with this
     * timeout (so a dial may take resolve_timeout_ms + n * this). */
    uint32_t connect_timeout_ms; /* default 5000 */
    /* What the connection shares with a server's (troupe/conn.h): codec
     * and handler (both required), timeouts, limits, socket options, TLS
     * (a client context; see tls_server_name). Client defaults:
     * idle_timeout_ms 0 = off, keepalive_idle_s 300 (the seed's 5 min). */
    tr_conn_settings conn;
    /* Called when the dial finished: err 0 (connected; on_open follows) or
     * the failure (TR_ECONNREFUSED, TR_ETIMEDOUT, TR_ENONAME: the name did
     * not resolve, ...; with several addresses, the last one's). Worker
     * thread. */
    void (*on_dial)(tr_conn_id id, int err, void *user);
    /* Reconnect after a failed dial or a lost connection, with capped
     * exponential backoff and jitter; the tr_conn_id stays the same. */
    bool reconnect;
    uint32_t backoff_min_ms;   /* default 100 */
    uint32_t backoff_max_ms;   /* default 30000 */
    uint32_t max_attempts;     /* 0 = unlimited */
    int (*on_socket)(int fd, void *user);
    /* TLS (conn.tls): tls_server_name is sent as SNI and verified against
     * the server's certificate (unless the context's verify is
     * TR_TLS_VERIFY_NONE); NULL: the host of `connect` (an IP address is
     * verified, not sent). on_dial reports 0 only once the handshake
     * completed; a failed or timed-out handshake (conn.tls_handshake_timeout_ms)
     * is reported there (TR_ETLS, TR_ETIMEDOUT) and to on_error, and counts
     * as a failed dial (reconnect applies). */
    const char *tls_server_name;
    /* A host name is resolved with c-ares on the connection's worker
     * (never blocking it): the hosts file, then DNS (the servers of
     * /etc/resolv.conf, or of the environment variable TROUPE_DNS_SERVERS,
     * e.g. "127.0.0.1:5353,[::1]:53", read when a worker first resolves).
     * No answer within this time fails the dial with TR_ETIMEDOUT; a name
     * that does not exist (or has no address) with TR_ENONAME. Default
     * 5000; 0 is TR_EINVAL. */
    uint32_t resolve_timeout_ms;
} tr_client_config;

/* Fills cfg with the defaults above (connect, codec, handler unset).
 * Threads: any thread. */
TR_API void tr_client_config_defaults(tr_client_config *cfg);

/* Starts dialling (resolving a host name first, without blocking); the
 * connection actor runs on a worker of rt. *out gets its id at once
 * (sends before the connection opens are queued). cfg is copied; codec
 * and handler must outlive the connection. Returns 0, TR_ENOCODEC,
 * TR_ENOHANDLER, TR_EADDR (neither an address nor a valid host name),
 * TR_EINVAL, TR_ECLOSED (runtime stopping) or TR_ENOMEM; resolution and
 * connect errors come later, to on_dial. Threads: any thread. */
TR_API int tr_client_connect(tr_runtime *rt, const tr_client_config *cfg, tr_conn_id *out);

/* One-shot request/response (the seed's Once): connect, send one frame
 * encoded with codec, read one frame back, close. No runtime needed.
 * addr as tr_client_config.connect: a host name is resolved on a private
 * c-ares channel on the calling thread (the hosts file, then DNS), and
 * its addresses are tried in order until one connects; timeout_ms bounds
 * all of it. On success *reply is a new buffer (release it) and the
 * return is 0; else TR_ETIMEDOUT (whole exchange over timeout_ms),
 * TR_ENONAME (the name did not resolve), TR_EADDR, TR_ECONNREFUSED (the
 * last address's), TR_ECLOSED (peer closed before a whole frame),
 * TR_EMSGSIZE, TR_ENOCODEC, TR_EINVAL, TR_ENOMEM, TR_EDEADLK (on a
 * worker). Threads: not on a worker (blocks). */
TR_API int tr_client_once(const char *addr, const tr_codec *codec, const void *data, size_t len,
                          size_t max_frame, uint32_t timeout_ms, tr_buf **reply);

#ifdef __cplusplus
}
#endif

#endif
