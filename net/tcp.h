/* Internal: the fd transport of TCP and Unix stream connections, and TCP
 * socket options (tcp.c). */
#ifndef TROUPE_NET_TCP_H
#define TROUPE_NET_TCP_H

#include "conn.h"

/* read, sendmsg (never SIGPIPE), shutdown, close (an abort resets). */
extern const tr__transport tr__tcp_transport;

/* Applies socket options of cfg to a TCP fd (nodelay, keep-alive and its
 * timing). */
void tr__sock_tune(int fd, const tr__conn_cfg *cfg);

#endif
