/* Adopted descriptors (adopt.h), and the sd_listen_fds protocol of
 * systemd socket activation, written here by hand (it is small): the
 * manager passes listening sockets as fds 3, 4, ... and sets
 * LISTEN_PID=<our pid> and LISTEN_FDS=<count>; a LISTEN_PID naming
 * another process means the variables were inherited, not meant for us.
 * We do not unset them: setenv/unsetenv are not thread-safe, and the pid
 * check already stops a child from taking its parent's sockets. */
#include "adopt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "troupe/error.h"
#include "troupe/server.h"

int tr__adopt_check(int fd, bool listening, int *family)
{
    int type = 0, domain = 0, acc = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
        return -errno; /* -EBADF, -ENOTSOCK */
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) {
        return -errno;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0) {
        return -errno;
    }
    if (type != SOCK_STREAM) {
        return -ESOCKTNOSUPPORT;
    }
    if (domain != AF_INET && domain != AF_INET6 && domain != AF_UNIX) {
        return -EAFNOSUPPORT;
    }
    if ((acc != 0) != listening) {
        return TR_EINVAL;
    }
    *family = domain;
    return 0;
}

/* Adds flag to what fcntl(get) reports, with fcntl(set). */
static int add_fd_flag(int fd, int get, int set, int flag)
{
    int f = fcntl(fd, get);
    if (f < 0 || fcntl(fd, set, f | flag) < 0) {
        return -errno;
    }
    return 0;
}

int tr__adopt_prepare(int fd)
{
    int rc = add_fd_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK);
    return rc < 0 ? rc : add_fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC);
}

/* A decimal number that is the whole string, or -1. */
static long whole_number(const char *s)
{
    if (s == NULL || *s == '\0') {
        return -1;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno != 0 || *end != '\0' || v < 0 ? -1 : v;
}

int tr_listen_fds(void)
{
    long pid = whole_number(getenv("LISTEN_PID"));
    long n = whole_number(getenv("LISTEN_FDS"));
    if (pid != (long)getpid() || n <= 0) {
        return 0;
    }
    if (n > 1024) {
        return TR_EINVAL;
    }
    /* The manager leaves them inheritable; our children must not keep
     * them (sd_listen_fds does the same). */
    for (int fd = TR_LISTEN_FDS_START; fd < TR_LISTEN_FDS_START + (int)n; fd++) {
        int rc = add_fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC);
        if (rc < 0) {
            return rc;
        }
    }
    return (int)n;
}
