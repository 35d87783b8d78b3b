/* troupe: TLS (BoringSSL) for servers and clients.
 *
 * A tr_tls is a TLS context: certificates, keys, versions, ciphers, ALPN,
 * peer verification. Give it to a tr_server_config or tr_client_config
 * (`conn.tls`) and every connection of that server or client speaks TLS
 * under its codec: codecs and handlers see plaintext only. The handshake
 * runs on the connection's worker without blocking; on_open (or
 * TR_MSG_CONN_OPEN) comes only once it has completed, so a handler never
 * sees a connection whose peer was not verified.
 *
 * One context may serve several servers and clients; each retains it, so
 * tr_tls_free may come as soon as they were started. tr_tls_reload swaps
 * in new certificates: connections accepted from then on use them, open
 * ones keep theirs.
 *
 * Failures: the handshake's and every later one reach the error policy
 * and the log with BoringSSL's reason; the code is TR_ETLS (class
 * TR_ERR_TLS), TR_ETIMEDOUT for a handshake past its timeout, and
 * TR_ETLSTRUNC for a peer that closed without close_notify (a possibly
 * truncated stream, reported as a read error, never as a clean close). */
#ifndef TROUPE_TLS_H
#define TROUPE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/conn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_tls tr_tls;

/* Protocol versions (the wire values). */
enum { TR_TLS_1_2 = 0x0303, TR_TLS_1_3 = 0x0304 };

/* How a peer's certificate is checked. */
typedef enum tr_tls_verify {
    TR_TLS_VERIFY_DEFAULT = 0,  /* server: NONE; client: REQUIRED */
    TR_TLS_VERIFY_NONE,         /* no certificate asked for / not checked */
    TR_TLS_VERIFY_OPTIONAL,     /* asked for; missing or bad is reported, not fatal */
    TR_TLS_VERIFY_REQUIRED      /* missing or bad fails the handshake */
} tr_tls_verify;

/* A certificate chain and its private key, each from a PEM file or from
 * PEM text in memory (NUL-terminated). The chain's first certificate is
 * the leaf; intermediates follow. */
typedef struct tr_tls_keypair {
    const char *cert_file, *key_file;
    const char *cert_pem, *key_pem;
} tr_tls_keypair;

typedef struct tr_tls_config {
    bool server;                  /* a server context (else a client one) */
    /* Server: the certificates. The first is the default; with several,
     * SNI picks the one whose names (subjectAltName DNS entries, else the
     * common name; "*.example.com" wildcards) match the name the client
     * asked for. Client: at most one, sent when the server asks. */
    const tr_tls_keypair *certs;
    size_t ncerts;
    uint16_t min_version;         /* default TR_TLS_1_2 */
    uint16_t max_version;         /* default TR_TLS_1_3 */
    /* TLS 1.2 cipher suites (OpenSSL syntax); NULL: ECDHE with AES-GCM
     * and ChaCha20-Poly1305 only. TLS 1.3 suites are BoringSSL's fixed,
     * all-AEAD set. */
    const char *ciphers;
    const char *groups;           /* key-exchange groups; NULL: "X25519:P-256:P-384" */
    /* ALPN protocols in preference order, comma separated ("h2,http/1.1");
     * NULL: none. A server picks its first that the client offers and
     * goes on without ALPN when none is shared. */
    const char *alpn;
    /* Peer verification. Server: the client certificate (mutual TLS),
     * checked against ca_file / ca_dir. Client: the server's, against
     * ca_file / ca_dir, or the system store (/etc/ssl/certs) when both are
     * NULL, and against the server name (tr_client_config). */
    tr_tls_verify verify;
    const char *ca_file, *ca_dir;
    const char *ca_pem;           /* or CA certificates as PEM text */
    /* Server: session tickets for resumption (default on). Their keys are
     * BoringSSL's own, rotated every two days, and new after a reload. */
    bool no_tickets;
} tr_tls_config;

/* Fills cfg with the defaults above (server = false, no certificates).
 * Threads: any thread. */
TR_API void tr_tls_config_defaults(tr_tls_config *cfg);

/* Makes a context. Files are read now (and again by tr_tls_reload);
 * strings are copied. On failure returns NULL, *err = TR_EINVAL (a
 * server without a certificate, a bad version range), TR_ETLS (a file
 * that cannot be read, a certificate and key that do not match, a bad
 * cipher or group list: errbuf, if not NULL, gets BoringSSL's reason and
 * the file), TR_ENOTSUP (built without BoringSSL) or TR_ENOMEM.
 * Threads: any thread (not a worker: it reads files). */
TR_API tr_tls *tr_tls_new(const tr_tls_config *cfg, char *errbuf, size_t errlen, int *err);

/* Reads the certificates, keys and CA files again (cfg NULL) or builds
 * from a new config of the same kind (server or client); on success new
 * connections use the result and open ones keep what they have. On any
 * failure nothing changes. Returns 0, or as tr_tls_new.
 * Threads: any thread (not a worker: it reads files). */
TR_API int tr_tls_reload(tr_tls *tls, const tr_tls_config *cfg, char *errbuf, size_t errlen);

/* Drops the caller's reference; servers and clients hold their own.
 * NULL is a no-op. Threads: any thread. */
TR_API void tr_tls_free(tr_tls *tls);

/* What a connection negotiated, and its last TLS failure. Pointers are
 * static strings or point into the connection (valid in the callback
 * that asked); "" when absent (before the handshake completed, most). */
typedef struct tr_tls_info {
    const char *version;          /* "TLSv1.3" */
    const char *cipher;           /* "TLS_AES_128_GCM_SHA256" */
    const char *server_name;      /* the SNI name the client sent, or "" */
    const char *error;            /* why the last TLS operation failed, or "" */
    bool resumed;                 /* a session was resumed */
    bool peer_cert;               /* the peer presented a certificate */
    bool peer_verified;           /* ... and it verified */
    const char *verify_error;     /* why it did not verify, or "" */
    char peer_subject[256];       /* "/CN=client", or "" */
    char alpn[256];               /* the protocol agreed, or "" */
} tr_tls_info;

/* Fills *out for a TLS connection, also during a failed handshake (in
 * on_error: `error` says why). Returns 0, or TR_ENOTSUP (not a TLS
 * connection, or closed already).
 * Threads: the connection's worker (its callbacks). */
TR_API int tr_conn_tls_info(const tr_conn *c, tr_tls_info *out);

#ifdef __cplusplus
}
#endif

#endif
