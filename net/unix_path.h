/* Internal: the file-system rules for Unix socket paths, shared by stream
 * servers and datagram endpoints.
 * - Before bind: a socket file nobody answers on is a leftover of a dead
 *   process and is removed; one a live socket answers on is refused
 *   (-EADDRINUSE); anything that is not a socket is refused (-EEXIST): the
 *   user's files are never deleted.
 * - Bind with the socket's own mode set to 0600 first (Linux creates the
 *   file with it, less the umask), so the file is never wider than asked,
 *   then chmod to the mode asked for and chgrp to the group asked for.
 * - At stop, unlink the file only if it is still the one we made (same
 *   device and inode). */
#ifndef TROUPE_NET_UNIX_PATH_H
#define TROUPE_NET_UNIX_PATH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct tr__unix_path {
    bool made;
    char path[108];
    dev_t dev;
    ino_t ino;
} tr__unix_path;

/* Removes a stale socket file at path; `type` is the socket type to probe
 * with (SOCK_STREAM, SOCK_DGRAM). Returns 0 or a negated errno. */
int tr__unix_path_clear(const char *path, int type);

/* After bind: mode (0 = 0600) and group (NULL: unchanged), and records the
 * file's identity in up. Returns 0, TR_EINVAL (no such group) or a negated
 * errno. */
int tr__unix_path_own(tr__unix_path *up, const char *path, uint32_t mode, const char *group);

/* Binds fd (a socket of `type`) to the address in ss. For a Unix file
 * path, all the rules above: a stale file cleared first, the file private
 * while it is created, then mode and group, its identity recorded in up
 * (and the file unlinked again if that fails). Returns 0 or a negated
 * errno / TR_EINVAL as the steps do. */
int tr__unix_path_bind(tr__unix_path *up, int fd, int type, const struct sockaddr_storage *ss,
                       socklen_t len, uint32_t mode, const char *group);

/* Unlinks the recorded file if it is still ours; idempotent. */
void tr__unix_path_unlink(tr__unix_path *up);

#endif
