/* The reference servers' addresses and sockets (ref_common.h). */

#include "ref_common.h"

#include "hostport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int ref_parse_addr(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *port = hostport_split(spec, host, sizeof(host));
    if (port == NULL) {
        return -1;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) {
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int ref_open(const char *name, const char *spec, int type)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (ref_parse_addr(spec, &ss, &len) < 0) {
        fprintf(stderr, "%s: bad address '%s'\n", name, spec);
        return -1;
    }
    int fd = socket(ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "%s: socket: %s\n", name, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (type == SOCK_DGRAM) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)); /* ref-udp --threads */
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
        (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)) {
        fprintf(stderr, "%s: %s: %s\n", name, spec, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void ref_on_signals(void (*handler)(int))
{
    struct sigaction sa = {.sa_handler = handler}; /* no SA_RESTART: wakes epoll_wait */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int ref_set_events(int epfd, int fd, void *ptr, uint32_t *cur, uint32_t events)
{
    if (*cur == events) {
        return 0;
    }
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
        return -1;
    }
    *cur = events;
    return 0;
}

void ref_print_bound(int fd, const char *what)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    bool v6 = false;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
            port = ntohs(s6->sin6_port);
            v6 = true;
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
            port = ntohs(s4->sin_port);
        }
    }
    printf(v6 ? "%s [%s]:%u\n" : "%s %s:%u\n", what, host, port);
    fflush(stdout);
}
