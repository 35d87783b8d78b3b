/* The one-shot exchange (tr_client_once, the seed's Once): connect, send
 * one frame, read one frame, close, all on the calling thread, on a
 * non-blocking socket waited on with poll for the time left, under one
 * deadline. No runtime and no connection actor. */
#include "troupe/client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/actor.h"
#include "../runtime/util.h"
#include "resolve.h"

static int64_t ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    /* Rounded up: a remainder under 1 ms is still time left, not a
     * timeout before the deadline. */
    int64_t ns = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000 +
                 (int64_t)(deadline->tv_nsec - now.tv_nsec);
    return ns <= 0 ? 0 : (ns + 999999) / 1000000;
}

static int wait_fd(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        int64_t left = ms_left(deadline);
        if (left <= 0) {
            return TR_ETIMEDOUT;
        }
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)left);
        if (r > 0) {
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            return -errno;
        }
    }
}

static int once_exchange(int fd, const tr_codec *codec, const void *data, size_t len,
                         size_t max_frame, const struct timespec *deadline, tr_buf **reply)
{
    unsigned char hdr[TR_CODEC_MAX_HEADER], trl[TR_CODEC_MAX_TRAILER];
    size_t hl = 0, tl = 0;
    if (codec->ops->encode != NULL) {
        int rc = codec->ops->encode(codec, len, hdr, &hl, trl, &tl);
        if (rc < 0) {
            return rc;
        }
    }
    struct iovec iov[3] = {{hdr, hl}, {(void *)data, len}, {trl, tl}};
    int n = 3, i = 0;
    while (i < n) {
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov + i;
        mh.msg_iovlen = (size_t)(n - i);
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL); /* no SIGPIPE */
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                int rc = wait_fd(fd, POLLOUT, deadline);
                if (rc < 0) {
                    return rc;
                }
                continue;
            }
            return -errno;
        }
        while (i < n && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < n) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
    size_t cap = 4096, have = 0;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        return TR_ENOMEM;
    }
    tr_codec_state st;
    memset(&st, 0, sizeof(st));
    int rc;
    for (;;) {
        if (have > 0) {
            tr_frame f;
            ssize_t d = codec->ops->decode(codec, &st, buf, have, max_frame, &f);
            if (d > 0) {
                *reply = tr_buf_copy(f.data, f.len);
                rc = *reply == NULL ? TR_ENOMEM : 0;
                break;
            }
            if (d < 0) {
                rc = (int)d;
                break;
            }
        }
        if (have == cap) {
            if (cap > max_frame + 2 * TR_CODEC_MAX_HEADER + 4096) {
                rc = TR_EMSGSIZE;
                break;
            }
            unsigned char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = TR_ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + have, cap - have);
        if (r > 0) {
            have += (size_t)r;
            continue;
        }
        if (r == 0) {
            rc = TR_ECLOSED;
            break;
        }
        if (errno == EAGAIN || errno == EINTR) {
            rc = wait_fd(fd, POLLIN, deadline);
            if (rc < 0) {
                break;
            }
            continue;
        }
        rc = -errno;
        break;
    }
    free(buf);
    return rc;
}

/* A connected blocking socket to sa, or the error (the deadline passed:
 * TR_ETIMEDOUT). */
static int once_connect(const struct sockaddr_storage *sa, socklen_t sl,
                        const struct timespec *deadline)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int rc = 0;
    if (connect(fd, (const struct sockaddr *)sa, sl) < 0) {
        rc = errno != EINPROGRESS ? -errno : wait_fd(fd, POLLOUT, deadline);
        int err = 0;
        socklen_t el = sizeof(err);
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err != 0) {
            rc = -err;
        }
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int tr_client_once(const char *addr, const tr_codec *codec, const void *data, size_t len,
                   size_t max_frame, uint32_t timeout_ms, tr_buf **reply)
{
    if (tr__current_worker() != NULL) {
        return TR_EDEADLK;
    }
    if (codec == NULL || codec->ops == NULL || codec->ops->decode == NULL) {
        return TR_ENOCODEC;
    }
    if (reply == NULL || (data == NULL && len > 0) || max_frame == 0) {
        return TR_EINVAL;
    }
    *reply = NULL;
    struct timespec deadline;
    tr__timespec_after_ms(&deadline, timeout_ms);
    /* A host name resolves on a private c-ares channel within the same
     * timeout; then each address in turn, until one connects. */
    tr__addrs *as = malloc(sizeof(*as));
    if (as == NULL) {
        return TR_ENOMEM;
    }
    int rc = tr__resolve_addr_wait(addr, AF_UNSPEC, timeout_ms, as);
    int fd = rc;
    for (unsigned i = 0; rc == 0 && i < as->n; i++) {
        if ((fd = once_connect(&as->a[i], as->len[i], &deadline)) >= 0) {
            break;
        }
    }
    free(as);
    if (fd < 0) {
        return fd;
    }
    rc = once_exchange(fd, codec, data, len, max_frame, &deadline, reply);
    close(fd);
    return rc;
}
