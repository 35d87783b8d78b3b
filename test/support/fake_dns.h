/* A fake DNS server for the resolver tests: a UDP socket on 127.0.0.1
 * (port 0, read back) served by a thread, so tests resolve names through
 * real c-ares queries with no network. Point troupe at it with
 * TROUPE_DNS_SERVERS="127.0.0.1:PORT" (tr_test_dns_env).
 *
 * Modes: NXDOMAIN answers every query "no such name"; SILENT reads and
 * never answers (a resolver timeout); ANSWER gives every A query the
 * IPv4 addresses it was started with, in that order, and every other
 * query an empty NOERROR (no address of that family). */
#ifndef TROUPE_TEST_FAKE_DNS_H
#define TROUPE_TEST_FAKE_DNS_H

#include <stdint.h>

typedef enum tr_test_dns_mode {
    TR_TEST_DNS_NXDOMAIN,
    TR_TEST_DNS_SILENT,
    TR_TEST_DNS_ANSWER
} tr_test_dns_mode;

typedef struct tr_test_dns tr_test_dns;

/* Starts the server; ips: up to 8 dotted IPv4 addresses for ANSWER.
 * Returns NULL if the socket or the thread could not be made. */
tr_test_dns *tr_test_dns_start(tr_test_dns_mode mode, const char *const *ips, unsigned n);

/* Sets TROUPE_DNS_SERVERS to this server (before the runtime resolves). */
void tr_test_dns_env(const tr_test_dns *dns);

/* Queries received so far (any thread). */
uint64_t tr_test_dns_queries(const tr_test_dns *dns);

/* Stops the thread, closes the socket, frees. NULL is a no-op. */
void tr_test_dns_stop(tr_test_dns *dns);

#endif
