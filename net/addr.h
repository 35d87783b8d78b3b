/* Internal: "host:port" parsing and formatting. */
#ifndef TROUPE_NET_ADDR_H
#define TROUPE_NET_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Parses "1.2.3.4:80", "[::1]:80", "localhost:80" or ":80" (any IPv4).
 * Numeric only (plus "localhost"), so it never blocks on DNS.
 * Returns 0 or TR_EADDR. */
int tr__addr_parse(const char *s, struct sockaddr_storage *out, socklen_t *len);

/* Formats as "host:port" / "[v6]:port". Returns the length or TR_EINVAL. */
int tr__addr_format(const struct sockaddr *sa, char *buf, size_t len);

#endif
