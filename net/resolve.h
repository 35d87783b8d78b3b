/* Internal: host names resolved with c-ares, without blocking a worker.
 *
 * Design notes. A resolver is one c-ares channel driven by one libev loop:
 * c-ares' socket-state callback maps each of its sockets to an ev_io, and
 * one ev_timer runs ares_process_fd when ares_timeout says a retry is due.
 * A worker gets its resolver lazily (tr__netw_resolver) and it is freed
 * with the worker's net state. Callers off the workers (server start,
 * datagram start, tr_client_once) use tr__resolve_wait: a private channel
 * on a private loop, run until the answer or the timeout.
 *
 * Names: the hosts file first, then DNS (c-ares lookups "fb"). DNS servers
 * come from /etc/resolv.conf, or from the environment variable
 * TROUPE_DNS_SERVERS ("127.0.0.1:5353,[::1]:53", c-ares' csv form), read
 * when a channel is made. Numeric addresses and "localhost" never get
 * here: tr__addr_parse handles them.
 *
 * A query's callback runs on the loop, never inside tr__resolve_start, at
 * most once: with the addresses, or an error (TR_ENONAME: the name does
 * not resolve; TR_ETIMEDOUT: no answer within the query's timeout;
 * TR_ENOMEM). Cancelling stops it from running. Everything here is the
 * loop's thread only. */
#ifndef TROUPE_NET_RESOLVE_H
#define TROUPE_NET_RESOLVE_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#define TR__RESOLVE_MAX 8 /* addresses kept per answer, in the order given */

typedef struct tr__addrs {
    unsigned n;
    struct sockaddr_storage a[TR__RESOLVE_MAX];
    socklen_t len[TR__RESOLVE_MAX];
} tr__addrs;

typedef struct tr__resolver tr__resolver;
typedef struct tr__resolve_query tr__resolve_query;
struct tr__netw;

/* err 0 and the addresses (n >= 1, ports set), or a code and NULL. */
typedef void (*tr__resolve_cb)(void *arg, int err, const tr__addrs *addrs);

/* Splits "name:port" where name is a host name (letters, digits, '-',
 * '.', '_'; at most 253 bytes). Returns 0 or TR_EADDR. For the strings
 * tr__addr_parse refused: a numeric address never reaches it. */
int tr__resolve_split(const char *s, char *host, size_t hlen, uint16_t *port);

/* Any "host:port" (or Unix address): the numeric fast path when
 * tr__addr_parse takes it (one address, no c-ares), else the name
 * resolved with tr__resolve_wait. family: AF_UNSPEC or the one wanted.
 * Returns 0, TR_EADDR, TR_ENONAME, TR_ETIMEDOUT, TR_ENOMEM, TR_EINVAL (a
 * bad TROUPE_DNS_SERVERS). Not on a worker (blocks up to timeout_ms). */
int tr__resolve_addr_wait(const char *s, int family, uint32_t timeout_ms, tr__addrs *out);

/* The worker's resolver, made on first use; NULL with *err (TR_ENOMEM,
 * TR_EINVAL for a bad TROUPE_DNS_SERVERS). Owning worker only. */
tr__resolver *tr__netw_resolver(struct tr__netw *nw, int *err);

/* A resolver on `loop`; NULL with *err. Freeing drops every query without
 * running its callback. */
tr__resolver *tr__resolver_new(struct ev_loop *loop, int *err);
void tr__resolver_free(tr__resolver *r);

/* Starts resolving host (addresses of `family`, AF_UNSPEC for both),
 * giving each address `port`; cb runs within timeout_ms. Returns the
 * query (valid until its callback ran or it was cancelled), or NULL with
 * *err = TR_ENOMEM. */
tr__resolve_query *tr__resolve_start(tr__resolver *r, const char *host, uint16_t port, int family,
                                     uint32_t timeout_ms, tr__resolve_cb cb, void *arg, int *err);

/* The callback will not run. q must be pending (its callback not run). */
void tr__resolve_cancel(tr__resolve_query *q);

/* Resolves on a private channel and loop, waiting at most timeout_ms.
 * Returns 0 (out filled) or a code as the callback gets. Not on a
 * worker. */
int tr__resolve_wait(const char *host, uint16_t port, int family, uint32_t timeout_ms,
                     tr__addrs *out);

#endif
