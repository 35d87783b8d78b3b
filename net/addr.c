#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "troupe/error.h"

int tr__addr_parse_port(const char *p, in_port_t *out)
{
    if (*p == '\0' || strlen(p) > 5) {
        return TR_EADDR;
    }
    unsigned v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') {
            return TR_EADDR;
        }
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v > 65535) {
        return TR_EADDR;
    }
    *out = htons((in_port_t)v);
    return 0;
}

static int parse_unix(const char *name, struct sockaddr_storage *out, socklen_t *len)
{
    struct sockaddr_un *un = (struct sockaddr_un *)out;
    un->sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n == 0 || (name[0] != '/' && name[0] != '@' && name[0] != '.')) {
        return TR_EADDR; /* a path (absolute or ./relative) or @abstract */
    }
    if (name[0] == '@') {
        /* Abstract: a NUL, then the name; the length delimits it. */
        if (n - 1 > sizeof(un->sun_path) - 1 || n == 1) {
            return n == 1 ? TR_EADDR : -ENAMETOOLONG;
        }
        un->sun_path[0] = '\0';
        memcpy(un->sun_path + 1, name + 1, n - 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return 0;
    }
    if (n >= sizeof(un->sun_path)) {
        return -ENAMETOOLONG;
    }
    memcpy(un->sun_path, name, n + 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int tr__addr_parse(const char *s, struct sockaddr_storage *out, socklen_t *len)
{
    if (s == NULL) {
        return TR_EADDR;
    }
    memset(out, 0, sizeof(*out));
    if (strncmp(s, "unix:", 5) == 0) {
        return parse_unix(s + 5, out, len);
    }
    char host[64];
    const char *port;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host)) {
            return TR_EADDR;
        }
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port = end + 2;
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
        a6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1 ||
            tr__addr_parse_port(port, &a6->sin6_port)) {
            return TR_EADDR;
        }
        *len = sizeof(*a6);
        return 0;
    }
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
        return TR_EADDR;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    port = colon + 1;
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    a4->sin_family = AF_INET;
    if (host[0] == '\0') {
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (strcmp(host, "localhost") == 0) {
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
        return TR_EADDR;
    }
    if (tr__addr_parse_port(port, &a4->sin_port)) {
        return TR_EADDR;
    }
    *len = sizeof(*a4);
    return 0;
}

const char *tr__addr_unix_path(const struct sockaddr_storage *ss)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    if (ss->ss_family != AF_UNIX || un->sun_path[0] == '\0') {
        return NULL;
    }
    return un->sun_path;
}

int tr__addr_format(const struct sockaddr *sa, socklen_t salen, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    int n;
    if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = salen > off ? (size_t)salen - off : 0;
        if (plen > sizeof(un->sun_path)) {
            plen = sizeof(un->sun_path);
        }
        if (plen == 0) {
            n = snprintf(buf, len, "unix:");
        } else if (un->sun_path[0] == '\0') {
            n = snprintf(buf, len, "unix:@%.*s", (int)(plen - 1), un->sun_path + 1);
        } else {
            n = snprintf(buf, len, "unix:%.*s", (int)strnlen(un->sun_path, plen), un->sun_path);
        }
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a4->sin_addr, host, sizeof(host));
        n = snprintf(buf, len, "%s:%u", host, ntohs(a4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof(host));
        n = snprintf(buf, len, "[%s]:%u", host, ntohs(a6->sin6_port));
    } else {
        n = snprintf(buf, len, "unknown");
    }
    if (n < 0 || (size_t)n >= len) {
        return TR_EINVAL;
    }
    return n;
}
