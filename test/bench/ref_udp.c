/* ref-udp: a minimal UDP echo server, the reference that troupe-echo --udp
 * is measured against (docs/benchmarks.md, "Transports").
 *
 * Usage: ref-udp [--listen HOST:PORT] [--threads N] [--batch B]
 *
 * Each of N threads (default 1) owns one SO_REUSEPORT socket on the same
 * port, as troupe's workers do, and loops: a blocking recvmmsg of up to B
 * datagrams (default 32; MSG_WAITFORONE: it returns as soon as one came,
 * with whatever else is queued), then one sendmmsg sending each back to
 * its sender, unchanged. Nothing else: no epoll, no copies. A datagram the
 * kernel refuses to send is dropped, as UDP would. Prints "datagrams on
 * HOST:PORT"; SIGINT and SIGTERM stop it. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ref_common.h"

#define MAX_BATCH 256
#define MAX_THREADS 64
#define MAX_DGRAM 65536

struct rworker {
    pthread_t thread;
    int fd;
    unsigned batch;
    unsigned long long in, out; /* racy reads at exit are fine: a summary */
};

static void *udp_worker(void *arg)
{
    struct rworker *w = arg;
    static __thread struct mmsghdr msgs[MAX_BATCH];
    static __thread struct iovec iov[MAX_BATCH];
    static __thread struct sockaddr_storage from[MAX_BATCH];
    char *buf = malloc((size_t)w->batch * MAX_DGRAM);
    if (buf == NULL) {
        return NULL;
    }
    for (;;) {
        for (unsigned i = 0; i < w->batch; i++) {
            iov[i] = (struct iovec){.iov_base = buf + (size_t)i * MAX_DGRAM, .iov_len = MAX_DGRAM};
            msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &from[i],
                                                   .msg_namelen = sizeof(from[i]),
                                                   .msg_iov = &iov[i],
                                                   .msg_iovlen = 1}};
        }
        int n = recvmmsg(w->fd, msgs, w->batch, MSG_WAITFORONE, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EINTR) {
                perror("ref-udp: recvmmsg");
                break;
            }
            continue;
        }
        for (int i = 0; i < n; i++) {
            iov[i].iov_len = msgs[i].msg_len; /* send back what came */
        }
        w->in += (unsigned long long)n;
        int sent = 0;
        while (sent < n) {
            int s = sendmmsg(w->fd, msgs + sent, (unsigned)(n - sent), 0);
            if (s <= 0) {
                sent++; /* refused: drop it, as UDP would */
                continue;
            }
            sent += s;
            w->out += (unsigned long long)s;
        }
    }
    free(buf);
    return NULL;
}

/* Another socket on fd's address (SO_REUSEPORT), blocking. */
static int open_sibling(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1;
    int s = getsockname(fd, (struct sockaddr *)&ss, &len) == 0
                ? socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)
                : -1;
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(s, (struct sockaddr *)&ss, len) < 0) {
        perror("ref-udp: another socket");
        return -1;
    }
    return s;
}

int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:0";
    unsigned threads = 1, batch = 32;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0) {
            listen_spec = argv[i + 1];
        } else if (strcmp(argv[i], "--threads") == 0) {
            threads = (unsigned)strtoul(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = (unsigned)strtoul(argv[i + 1], NULL, 10);
        } else {
            threads = 0;
        }
    }
    if (argc % 2 == 0 || threads < 1 || threads > MAX_THREADS || batch < 1 || batch > MAX_BATCH) {
        fprintf(stderr, "usage: ref-udp [--listen HOST:PORT] [--threads 1..%d] [--batch 1..%d]\n",
                MAX_THREADS, MAX_BATCH);
        return 2;
    }
    /* Every thread blocks the signals; main waits for them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    static struct rworker ws[MAX_THREADS];
    int fd = ref_open("ref-udp", listen_spec, SOCK_DGRAM);
    if (fd < 0 || fcntl(fd, F_SETFL, 0) < 0) {
        return 1;
    }
    for (unsigned t = 0; t < threads; t++) {
        ws[t].fd = t == 0 ? fd : open_sibling(fd);
        ws[t].batch = batch;
        if (ws[t].fd < 0 || pthread_create(&ws[t].thread, NULL, udp_worker, &ws[t]) != 0) {
            return 1;
        }
    }
    ref_print_bound(fd, "datagrams on");
    int sig = 0;
    sigwait(&sigs, &sig);
    unsigned long long in = 0, out = 0;
    for (unsigned t = 0; t < threads; t++) {
        in += ws[t].in;
        out += ws[t].out;
    }
    printf("signal %d: stopped; datagrams in=%llu out=%llu\n", sig, in, out);
    fflush(stdout);
    return 0;
}
