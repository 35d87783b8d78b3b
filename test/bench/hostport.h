/* "host:port" and "[v6]:port" for the bench programs (troupe-load and the
 * reference servers). libc only. */
#ifndef TROUPE_BENCH_HOSTPORT_H
#define TROUPE_BENCH_HOSTPORT_H

#include <stddef.h>

/* Copies the host part of spec into host (brackets removed) and returns
 * the port part, or NULL if spec has no colon or the host does not fit. */
const char *hostport_split(const char *spec, char *host, size_t cap);

#endif
