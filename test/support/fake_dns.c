/* The fake DNS server (fake_dns.h). Answers are built from the query:
 * header and question copied, flags and counts set, A records appended
 * with a pointer to the question's name. */
#include "fake_dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wait.h"

#define MAX_IPS 8

struct tr_test_dns {
    int fd;
    int port;
    tr_test_dns_mode mode;
    unsigned n;
    struct in_addr ips[MAX_IPS];
    uint64_t queries; /* atomics */
    uint64_t stop;    /* atomics */
    pthread_t thread;
};

/* The end of the question (after QTYPE and QCLASS), or 0 if malformed;
 * *qtype gets its type. */
static size_t question_end(const unsigned char *q, size_t len, unsigned *qtype)
{
    size_t i = 12;
    while (i < len && q[i] != 0) {
        i += (size_t)q[i] + 1;
    }
    if (i + 5 > len) {
        return 0;
    }
    *qtype = (unsigned)(q[i + 1] << 8 | q[i + 2]);
    return i + 5;
}

static size_t build_answer(const tr_test_dns *dns, const unsigned char *q, size_t qlen,
                           unsigned char *out, size_t cap)
{
    unsigned qtype = 0;
    size_t end = question_end(q, qlen, &qtype);
    if (end == 0 || end > cap) {
        return 0;
    }
    memcpy(out, q, end);
    bool nx = dns->mode == TR_TEST_DNS_NXDOMAIN;
    unsigned an = !nx && qtype == 1 ? dns->n : 0;
    out[2] = (unsigned char)(0x80 | (q[2] & 0x01)); /* QR, the query's RD */
    out[3] = (unsigned char)(0x80 | (nx ? 3 : 0));  /* RA, NXDOMAIN or NOERROR */
    out[4] = 0, out[5] = 1;                         /* one question */
    out[6] = 0, out[7] = (unsigned char)an;
    memset(out + 8, 0, 4); /* no authority, no additional (EDNS dropped) */
    size_t o = end;
    for (unsigned k = 0; k < an && o + 16 <= cap; k++) {
        static const unsigned char rr[12] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
        memcpy(out + o, rr, sizeof(rr));
        memcpy(out + o + 12, &dns->ips[k], 4);
        o += 16;
    }
    return o;
}

static void *serve(void *arg)
{
    tr_test_dns *dns = arg;
    unsigned char q[512], a[1024];
    while (!tr_test_load(&dns->stop)) {
        struct pollfd p = {dns->fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) {
            continue;
        }
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t r = recvfrom(dns->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (r < 12) {
            continue;
        }
        tr_test_add(&dns->queries, 1);
        if (dns->mode == TR_TEST_DNS_SILENT) {
            continue;
        }
        size_t n = build_answer(dns, q, (size_t)r, a, sizeof(a));
        if (n > 0) {
            sendto(dns->fd, a, n, 0, (struct sockaddr *)&from, fl);
        }
    }
    return NULL;
}

tr_test_dns *tr_test_dns_start(tr_test_dns_mode mode, const char *const *ips, unsigned n)
{
    tr_test_dns *dns = calloc(1, sizeof(*dns));
    if (dns == NULL || n > MAX_IPS) {
        free(dns);
        return NULL;
    }
    dns->mode = mode;
    dns->n = n;
    for (unsigned i = 0; i < n; i++) {
        if (inet_pton(AF_INET, ips[i], &dns->ips[i]) != 1) {
            free(dns);
            return NULL;
        }
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    dns->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (dns->fd < 0 || bind(dns->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(dns->fd, (struct sockaddr *)&sa, &sl) < 0 ||
        pthread_create(&dns->thread, NULL, serve, dns) != 0) {
        if (dns->fd >= 0) {
            close(dns->fd);
        }
        free(dns);
        return NULL;
    }
    dns->port = ntohs(sa.sin_port);
    return dns;
}

void tr_test_dns_env(const tr_test_dns *dns)
{
    char v[64];
    snprintf(v, sizeof(v), "127.0.0.1:%d", dns->port);
    setenv("TROUPE_DNS_SERVERS", v, 1);
}

uint64_t tr_test_dns_queries(const tr_test_dns *dns)
{
    return tr_test_load(&dns->queries);
}

void tr_test_dns_stop(tr_test_dns *dns)
{
    if (dns == NULL) {
        return;
    }
    tr_test_store(&dns->stop, 1);
    pthread_join(dns->thread, NULL);
    close(dns->fd);
    free(dns);
}
