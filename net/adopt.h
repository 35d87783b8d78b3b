/* Internal: descriptors made elsewhere and handed to troupe: a listening
 * socket (systemd socket activation, or the caller's) and a connected
 * one. Checks what the descriptor is, so a wrong one is a clear error at
 * the call, not a strange failure later. Any thread; nothing blocks. */
#ifndef TROUPE_NET_ADOPT_H
#define TROUPE_NET_ADOPT_H

#include <stdbool.h>
#include <sys/socket.h>

/* Checks that fd is a stream socket (TCP over IPv4/IPv6, or Unix) that is
 * listening (`listening`) or not; *family gets its family. Returns 0,
 * -EBADF, -ENOTSOCK, -ESOCKTNOSUPPORT (not a stream socket),
 * -EAFNOSUPPORT (another family) or TR_EINVAL (listening when it should
 * not be, or the reverse). */
int tr__adopt_check(int fd, bool listening, int *family);

/* Makes fd non-blocking and close-on-exec. Returns 0 or a negated errno. */
int tr__adopt_prepare(int fd);

#endif
