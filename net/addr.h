/* Internal: "host:port" parsing and formatting. */
#ifndef TROUPE_NET_ADDR_H
#define TROUPE_NET_ADDR_H

#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Parses "1.2.3.4:80", "[::1]:80", "localhost:80" or ":80" (any IPv4);
 * "unix:/path/to/socket" (a Unix stream socket in the file system) or
 * "unix:@name" (a Linux abstract name). Numeric only (plus "localhost"),
 * so it never blocks on DNS. Returns 0, TR_EADDR (malformed), or
 * -ENAMETOOLONG (a Unix path longer than the 107 bytes sun_path holds). */
int tr__addr_parse(const char *s, struct sockaddr_storage *out, socklen_t *len);

/* Parses a decimal port "0".."65535" into network byte order. Returns 0
 * or TR_EADDR. */
int tr__addr_parse_port(const char *p, in_port_t *out);

/* Formats as "host:port" / "[v6]:port" / "unix:/path" / "unix:@name"
 * ("unix:" for an unnamed Unix socket, such as a client's). `salen` is
 * the address length (it delimits abstract names). Returns the length or
 * TR_EINVAL (buffer too small). */
int tr__addr_format(const struct sockaddr *sa, socklen_t salen, char *buf, size_t len);

/* The file-system path of a Unix address, or NULL (abstract or not Unix). */
const char *tr__addr_unix_path(const struct sockaddr_storage *ss);

#endif
