#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* "1.2.3.4:80", "[::1]:80", "unix:/path" or "unix:@name" into a sockaddr.
 * Returns 0 or -EINVAL. */
static int parse(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *port;
    memset(ss, 0, sizeof(*ss));
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        const char *name = addr + 5;
        size_t n = strlen(name);
        if (n == 0 || n >= sizeof(un->sun_path)) {
            return -EINVAL;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, name, n);
        if (name[0] == '@') {
            un->sun_path[0] = '\0'; /* abstract: the length delimits it */
            *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        } else {
            *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        }
        return 0;
    }
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof(host)) {
            return -EINVAL;
        }
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        port = end + 2;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)atoi(port));
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            return -EINVAL;
        }
        *len = sizeof(*a6);
        return 0;
    }
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
        return -EINVAL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
        return -EINVAL;
    }
    *len = sizeof(*a4);
    return 0;
}

static int ip_sockaddr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[96];
    tr_test_addr(buf, sizeof(buf), ip, port);
    return parse(buf, ss, len);
}

void tr_test_addr(char *buf, size_t len, const char *ip, int port)
{
    if (strchr(ip, ':') != NULL) {
        snprintf(buf, len, "[%s]:%d", ip, port);
    } else {
        snprintf(buf, len, "%s:%d", ip, port);
    }
}

static void set_timeouts(int fd, uint32_t timeout_ms)
{
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int tr_test_sock_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) {
        return -errno;
    }
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int tr_test_sock_new(const char *addr, int rcvbuf)
{
    int family = strncmp(addr, "unix:", 5) == 0 ? AF_UNIX : addr[0] == '[' ? AF_INET6 : AF_INET;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (rcvbuf > 0) {
        tr_test_sock_rcvbuf(fd, rcvbuf);
    }
    return fd;
}

int tr_test_sock_connect_fd(int fd, const char *addr, uint32_t timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = parse(addr, &ss, &len);
    if (rc < 0) {
        return rc;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_timeouts(fd, timeout_ms);
    if ((rc = tr_test_sock_nonblock(fd, true)) < 0) {
        return rc;
    }
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno != EINPROGRESS) {
            return -errno;
        }
        struct pollfd p = {fd, POLLOUT, 0};
        int r;
        do {
            r = poll(&p, 1, (int)timeout_ms);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            return -errno;
        }
        if (r == 0) {
            return -ETIMEDOUT;
        }
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            return -err;
        }
    }
    return tr_test_sock_nonblock(fd, false);
}

int tr_test_sock_connect(const char *addr, const char *bind_ip, uint32_t timeout_ms)
{
    int fd = tr_test_sock_new(addr, 0);
    if (fd < 0) {
        return fd;
    }
    if (bind_ip != NULL) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (ip_sockaddr(bind_ip, 0, &ss, &len) < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0) {
            int err = errno ? -errno : -EINVAL;
            close(fd);
            return err;
        }
    }
    int rc = tr_test_sock_connect_fd(fd, addr, timeout_ms);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int tr_test_sock_send(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int tr_test_sock_send_str(int fd, const char *s)
{
    return tr_test_sock_send(fd, s, strlen(s));
}

ssize_t tr_test_sock_recv(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
        if (r == 0) {
            break;
        }
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

ssize_t tr_test_sock_recv_to_eof(int fd, void *buf, size_t cap, size_t *partial)
{
    size_t total = 0;
    char scratch[16384];
    for (;;) {
        char *dst = scratch;
        size_t room = sizeof(scratch);
        if (total < cap) {
            dst = (char *)buf + total;
            room = cap - total;
        }
        ssize_t r = recv(fd, dst, room, 0);
        if (r == 0) {
            return (ssize_t)total;
        }
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (partial != NULL) {
                *partial = total;
            }
            return -errno;
        }
        total += (size_t)r;
    }
}

int tr_test_sock_readable(int fd, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    do {
        r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return -errno;
    }
    return r > 0 ? 1 : 0;
}

int tr_test_sock_peek(int fd, int timeout_ms)
{
    int r = tr_test_sock_readable(fd, timeout_ms);
    if (r <= 0) {
        return r == 0 ? -EAGAIN : r;
    }
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        return 1;
    }
    if (n == 0) {
        return 0;
    }
    return -errno;
}

void tr_test_sock_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

int tr_test_sock_rcvbuf(int fd, int bytes)
{
    return setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) < 0 ? -errno : 0;
}

int tr_test_sock_sndbuf(int fd, int bytes)
{
    return setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)) < 0 ? -errno : 0;
}

static int bound_socket(const char *ip, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (ip_sockaddr(ip, 0, &ss, &len) < 0) {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int tr_test_sock_bound(const char *ip, int *port)
{
    return bound_socket(ip, port);
}

int tr_test_sock_listen(const char *ip, int backlog, int *port)
{
    int fd = bound_socket(ip, port);
    if (fd < 0) {
        return fd;
    }
    if (listen(fd, backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}
