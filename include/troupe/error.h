/* troupe: error codes.
 *
 * Every troupe function that can fail returns an int: 0 or a non-negative
 * value (a count, an fd) on success, a negative TR_E* code on failure.
 * System errors keep their errno, negated; troupe's own codes sit below
 * -4000. The code alone tells retry (TR_EBUFFULL) from gone (TR_ECLOSED)
 * from caller bug (TR_EINVAL). */
#ifndef TROUPE_ERROR_H
#define TROUPE_ERROR_H

#include <errno.h>

#if defined(__GNUC__)
#define TR_API __attribute__((visibility("default")))
#else
#define TR_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* One table lists every code once; the enum and the strings come from it. */
#define TR_ERROR_MAP(X)                                                                            \
    X(TR_EINVAL, -EINVAL, "invalid argument")                                                      \
    X(TR_ENOMEM, -ENOMEM, "out of memory")                                                         \
    X(TR_EMSGSIZE, -EMSGSIZE, "frame larger than the limit")                                       \
    X(TR_ETIMEDOUT, -ETIMEDOUT, "timed out")                                                       \
    X(TR_EDEADLK, -EDEADLK, "call would block a worker thread")                                    \
    X(TR_EAGAIN, -EAGAIN, "resource temporarily unavailable")                                      \
    X(TR_EMFILE, -EMFILE, "too many open files")                                                   \
    X(TR_ECONNREFUSED, -ECONNREFUSED, "connection refused")                                        \
    X(TR_ECONNRESET, -ECONNRESET, "connection reset by peer")                                      \
    X(TR_EPIPE, -EPIPE, "broken pipe")                                                             \
    X(TR_EADDRINUSE, -EADDRINUSE, "address already in use")                                        \
    X(TR_ECLOSED, -4001, "actor or connection is closed")                                          \
    X(TR_EBUFFULL, -4002, "queue full; try again later")                                           \
    X(TR_ESTATE, -4003, "operation not valid in the current state")                                \
    X(TR_ECODEC, -4004, "malformed frame")                                                         \
    X(TR_ETLS, -4005, "TLS failure")                                                               \
    X(TR_ENOCODEC, -4006, "invalid config: codec is required")                                     \
    X(TR_ENOHANDLER, -4007, "invalid config: handler is required")                                 \
    X(TR_ENOTFOUND, -4008, "no such item")                                                         \
    X(TR_EADDR, -4009, "invalid address")                                                          \
    X(TR_ENONAME, -4010, "host name did not resolve")                                              \
    X(TR_ENOTSUP, -EOPNOTSUPP, "not supported by this build or object")                            \
    X(TR_ENOBUFS, -ENOBUFS, "memory budget for buffered bytes exhausted")                          \
    X(TR_ETLSTRUNC, -4012, "TLS peer closed without close_notify (stream may be truncated)")

#define TR__ERROR_ENUM(name, value, text) name = (value),
enum tr_error { TR_OK = 0, TR_ERROR_MAP(TR__ERROR_ENUM) };
#undef TR__ERROR_ENUM

/* Names a code: a TR_E* code, or any negated errno. Never NULL, even for
 * unknown codes. The string is static.
 * Threads: any thread. */
TR_API const char *tr_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
