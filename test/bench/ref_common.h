/* What the reference servers (ref-echo, ref-tls, ref-udp) share: the
 * address they are given, their listening or bound socket, and the line
 * that tells the scripts where they are. libc only. */
#ifndef TROUPE_BENCH_REF_COMMON_H
#define TROUPE_BENCH_REF_COMMON_H

#include <stdint.h>
#include <sys/socket.h>

/* Splits "host:port" or "[v6]:port" and resolves it numerically or by
 * name. Returns 0 or -1. */
int ref_parse_addr(const char *spec, struct sockaddr_storage *ss, socklen_t *len);

/* A non-blocking socket of `type` bound to spec (SO_REUSEADDR; datagram
 * sockets SO_REUSEPORT too), listening if it is a stream socket. Prints "NAME: ..." and returns -1
 * on failure. */
int ref_open(const char *name, const char *spec, int type);

/* SIGINT and SIGTERM call handler (interrupting epoll_wait); SIGPIPE is
 * ignored. */
void ref_on_signals(void (*handler)(int));

/* Makes epoll watch `events` on fd (data ptr) unless *cur already says
 * so; updates *cur. Returns 0 or -1. */
int ref_set_events(int epfd, int fd, void *ptr, uint32_t *cur, uint32_t events);

/* Prints "<what> HOST:PORT" for fd's bound address (the scripts read
 * "listening on" and "datagrams on"), and flushes. */
void ref_print_bound(int fd, const char *what);

#endif
