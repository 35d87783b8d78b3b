/* Test helpers for the network tests: plain POSIX client sockets on
 * loopback, standing in for a peer that the test controls byte by byte.
 *
 * Every socket made here is blocking with SO_RCVTIMEO/SO_SNDTIMEO set to a
 * safety bound, so a test that waits for bytes that never come fails
 * instead of hanging. No Criterion here: helpers return codes (0, a count,
 * or -errno) and the test asserts. Writes use MSG_NOSIGNAL, so a peer that
 * went away is an error code, not a SIGPIPE. */
#ifndef TROUPE_TEST_NET_H
#define TROUPE_TEST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Parses "1.2.3.4:port" or "[v6]:port" and connects, bounded by
 * timeout_ms, from bind_ip if not NULL (e.g. "127.0.0.2"). The socket has
 * TCP_NODELAY on (each send leaves at once) and timeout_ms as its receive
 * and send timeout. Returns the fd or -errno. */
int tr_test_sock_connect(const char *addr, const char *bind_ip, uint32_t timeout_ms);

/* As above, on a socket the caller made (fd stays the caller's either
 * way). Returns 0 or -errno. */
int tr_test_sock_connect_fd(int fd, const char *addr, uint32_t timeout_ms);

/* A socket of the address family of addr ("[..." is IPv6), not connected,
 * with receive buffer rcvbuf if > 0 (set before connecting, so the window
 * stays small). Returns the fd or -errno. */
int tr_test_sock_new(const char *addr, int rcvbuf);

/* Sends all n bytes. Returns 0 or -errno. */
int tr_test_sock_send(int fd, const void *data, size_t n);

/* Sends a NUL-terminated string. Returns 0 or -errno. */
int tr_test_sock_send_str(int fd, const char *s);

/* Receives exactly n bytes. Returns n, the bytes got before EOF (less than
 * n), or -errno (-EAGAIN when the receive timeout passed). */
ssize_t tr_test_sock_recv(int fd, void *buf, size_t n);

/* Reads until EOF, keeping up to cap bytes in buf (buf may be NULL with
 * cap 0: count only). Returns the total bytes read before EOF, or -errno
 * (the bytes read so far then go to *partial if not NULL). */
ssize_t tr_test_sock_recv_to_eof(int fd, void *buf, size_t cap, size_t *partial);

/* Waits up to timeout_ms for the socket to become readable. Returns 1 if
 * readable (data, EOF or error pending), 0 on timeout, -errno on failure. */
int tr_test_sock_readable(int fd, int timeout_ms);

/* What the next read would see, without waiting more than timeout_ms:
 * 1 data, 0 EOF, -EAGAIN nothing yet, or -errno (e.g. -ECONNRESET). Data
 * is peeked, not consumed. */
int tr_test_sock_peek(int fd, int timeout_ms);

/* Closes with SO_LINGER {1, 0}: the peer sees a reset. */
void tr_test_sock_reset(int fd);

/* Sets SO_RCVBUF / SO_SNDBUF. Returns 0 or -errno. */
int tr_test_sock_rcvbuf(int fd, int bytes);
int tr_test_sock_sndbuf(int fd, int bytes);

/* Switches O_NONBLOCK. Returns 0 or -errno. */
int tr_test_sock_nonblock(int fd, bool on);

/* A raw listening socket on ip ("127.0.0.1", "::1") port 0 with the given
 * backlog; *port gets the bound port. Returns the fd or -errno. */
int tr_test_sock_listen(const char *ip, int backlog, int *port);

/* A TCP socket bound to ip port 0 and not listening: connecting to its
 * port is refused for as long as it stays open (no one else can take the
 * port). Returns the fd or -errno; *port gets the port. */
int tr_test_sock_bound(const char *ip, int *port);

/* Formats "ip:port" (or "[ip]:port" for an IPv6 ip) into buf. */
void tr_test_addr(char *buf, size_t len, const char *ip, int port);

#endif
