/* Splitting "host:port" (hostport.h). */

#include "hostport.h"

#include <string.h>

const char *hostport_split(const char *spec, char *host, size_t cap)
{
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec || (size_t)(colon - spec) >= cap) {
        return NULL;
    }
    size_t hl = (size_t)(colon - spec);
    memcpy(host, spec, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    return colon + 1;
}
