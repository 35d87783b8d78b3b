/* troupe: datagram endpoints (UDP and Unix datagram sockets).
 *
 * A datagram endpoint is not a connection: a datagram is never merged with
 * another or split, and each one reaches the handler whole, with its
 * sender's address, to be answered with tr_dgram_send_to. Receiving reads
 * up to `batch` datagrams per system call (recvmmsg) on every worker (UDP:
 * one SO_REUSEPORT socket per worker; Unix: one socket); a datagram larger
 * than max_datagram_bytes is detected (MSG_TRUNC), counted and dropped,
 * never delivered cut. Sending is direct from any thread (sendto; a batch
 * with sendmmsg); a socket buffer that is full refuses with TR_EBUFFULL,
 * as UDP would drop it anyway.
 * Lifecycle: tr_dgram_new -> tr_dgram_start -> tr_dgram_stop (immediate,
 * as the seed's) -> tr_dgram_free. While running, the endpoint counts as
 * one open "connection" (the seed's semantics). */
#ifndef TROUPE_DGRAM_H
#define TROUPE_DGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "troupe/actor.h"
#include "troupe/error.h"
#include "troupe/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_dgram tr_dgram;

/* A peer's address, as received or parsed. */
typedef struct tr_dgram_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} tr_dgram_addr;

/* Called for every datagram, on the receiving worker; data is borrowed.
 * Return 0 (a negative return is counted as a handler error). */
typedef int (*tr_dgram_cb)(tr_dgram *d, const void *data, size_t len, const tr_dgram_addr *from,
                           void *user);

/* Messages a handler actor receives: the payload holds the datagram; read
 * it with tr_dgram_msg_payload and its sender with tr_dgram_msg_from. */
enum { TR_MSG_DGRAM = 272 };

typedef struct tr_dgram_config {
    /* Where to receive: "1.2.3.4:port", "[v6]:port", "localhost:port", a
     * host name "name.example:port" (resolved by tr_dgram_start, see
     * resolve_timeout_ms; its first address), "unix:/path" (a Unix
     * datagram socket file: the same stale/live/mode rules as Unix stream
     * servers), "unix:@name". Required unless `connect` is set (then an
     * ephemeral address is used). */
    const char *bind;
    /* A client: the socket is connected to this peer; tr_dgram_send sends
     * to it and only its datagrams come in. Optional. */
    const char *connect;
    /* Largest datagram taken; a larger one is counted in `truncated` and
     * dropped. Default 65507 (the largest UDP payload over IPv4). */
    size_t max_datagram_bytes;
    /* Datagrams per recvmmsg on each worker. Default 8; at most 256.
     * Each worker keeps batch * (max_datagram_bytes + 1) bytes of buffer. */
    unsigned batch;
    tr_dgram_cb on_datagram;   /* a callback on the worker, or: */
    tr_actor_id handler_actor; /* TR_MSG_DGRAM messages to this actor */
    void *user;
    bool reuseport;            /* UDP: one socket per worker (default true) */
    uint32_t unix_mode;        /* Unix socket files: default 0 = 0600 */
    const char *unix_group;    /* NULL: the process's */
    /* Called on each socket before bind (SO_RCVBUF and friends); return 0
     * or a negative code to fail the start. */
    int (*on_socket)(int fd, void *user);
    /* Host names in bind / connect are resolved by tr_dgram_start on the
     * calling thread (a private c-ares channel: the hosts file, then DNS;
     * TROUPE_DNS_SERVERS as for clients), waiting at most this long. A
     * connected endpoint resolves into the family of its other address.
     * Default 5000; 0 with a host name is TR_EINVAL. */
    uint32_t resolve_timeout_ms;
} tr_dgram_config;

typedef struct tr_dgram_stats {
    uint64_t datagrams_in, bytes_in;
    uint64_t datagrams_out, bytes_out;
    uint64_t truncated;    /* larger than max_datagram_bytes: dropped */
    uint64_t refused_out;  /* sends refused (full socket buffer, or an error) */
    uint64_t handler_errors;
    uint64_t undelivered;  /* the handler actor was gone or refused */
} tr_dgram_stats;

/* Fills cfg with the defaults above. Threads: any thread. */
TR_API void tr_dgram_config_defaults(tr_dgram_config *cfg);

/* Creates an endpoint (nothing bound yet). Returns NULL with *err:
 * TR_EINVAL, TR_EADDR (bad address), -ENAMETOOLONG, TR_ENOHANDLER (neither
 * on_datagram nor handler_actor), TR_ENOMEM. Threads: any thread. */
TR_API tr_dgram *tr_dgram_new(tr_runtime *rt, const tr_dgram_config *cfg, int *err);

/* Resolves host names (blocking, at most resolve_timeout_ms each), binds
 * (and connects) the sockets and starts receiving. Returns 0, TR_ESTATE
 * (not created, or the runtime is not running), TR_ENONAME (a name did
 * not resolve), TR_ETIMEDOUT (no answer in time), or a negated errno
 * (-EADDRINUSE, -EEXIST, -ENOENT, -EACCES...).
 * Threads: not on a worker (TR_EDEADLK; blocks while resolving). */
TR_API int tr_dgram_start(tr_dgram *d);

/* The bound address ("127.0.0.1:40000", "unix:/path"). Returns the
 * length, TR_ESTATE before start, or TR_EINVAL (buf too small).
 * Threads: any thread. */
TR_API int tr_dgram_address(const tr_dgram *d, char *buf, size_t len);

/* Sends one datagram to `to`. Never blocks. Returns the bytes sent,
 * TR_EBUFFULL (the socket buffer is full: dropped), TR_EMSGSIZE (over
 * max_datagram_bytes), TR_ECLOSED (not running), or a negated errno.
 * Threads: any thread. */
TR_API int tr_dgram_send_to(tr_dgram *d, const tr_dgram_addr *to, const void *data, size_t len);

/* A connected endpoint: sends to its peer. As tr_dgram_send_to; TR_EINVAL
 * if not connected. Threads: any thread. */
TR_API int tr_dgram_send(tr_dgram *d, const void *data, size_t len);

/* One datagram of a batch. */
typedef struct tr_dgram_out {
    const tr_dgram_addr *to; /* NULL on a connected endpoint */
    const void *data;
    size_t len;
} tr_dgram_out;

/* Sends up to n datagrams with one sendmmsg. Returns how many were sent
 * (the rest were refused: retry them or drop them), or an error as
 * tr_dgram_send_to when none was. Threads: any thread. */
TR_API int tr_dgram_send_batch(tr_dgram *d, const tr_dgram_out *out, unsigned n);

/* Parses "1.2.3.4:port", "[v6]:port", "localhost:port", "unix:/path",
 * "unix:@name": numeric only, it never resolves a host name (TR_EADDR).
 * Returns 0, TR_EADDR or -ENAMETOOLONG. Threads: any thread. */
TR_API int tr_dgram_addr_parse(const char *s, tr_dgram_addr *out);

/* Formats as tr_dgram_address does. Returns the length or TR_EINVAL.
 * Threads: any thread. */
TR_API int tr_dgram_addr_format(const tr_dgram_addr *a, char *buf, size_t len);

/* A TR_MSG_DGRAM message's sender and datagram. tr_dgram_msg_from returns
 * 0 or TR_EINVAL (not such a message); tr_dgram_msg_payload returns the
 * bytes (len in *len) or NULL. Threads: any thread. */
TR_API int tr_dgram_msg_from(const tr_msg *m, tr_dgram_addr *from);
TR_API const void *tr_dgram_msg_payload(const tr_msg *m, size_t *len);

/* Stops receiving at once and closes the watchers; sends are refused from
 * then on. Unlinks a Unix socket file. Idempotent. Returns 0.
 * Threads: not on a worker (blocks briefly; TR_EDEADLK). */
TR_API int tr_dgram_stop(tr_dgram *d);

/* Stops if needed and frees. NULL is a no-op. Returns 0 or TR_EDEADLK.
 * Threads: not on a worker. */
TR_API int tr_dgram_free(tr_dgram *d);

/* 1 while running, else 0 (the seed's open-connection count); and whether
 * it runs. Snapshots. Threads: any thread. */
TR_API uint64_t tr_dgram_open_connections(const tr_dgram *d);
TR_API bool tr_dgram_is_running(const tr_dgram *d);

/* A snapshot of the counters (summed over workers). Threads: any thread. */
TR_API void tr_dgram_stats_get(const tr_dgram *d, tr_dgram_stats *out);

#ifdef __cplusplus
}
#endif

#endif
