#include "troupe/error.h"

#include <string.h>

const char *tr_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define TR__ERROR_CASE(name, value, text)                                                          \
    case name:                                                                                     \
        return text;
        TR_ERROR_MAP(TR__ERROR_CASE)
#undef TR__ERROR_CASE
    default:
        break;
    }
    if (code < 0 && code > -4000) {
        /* glibc's strerror returns static strings for every errno it knows;
         * only unknown numbers use a shared buffer, and those we map away. */
        static const char unknown[] = "unknown error";
        const char *s = strerror(-code);
        if (s == NULL || strncmp(s, "Unknown error", 13) == 0) {
            return unknown;
        }
        return s;
    }
    return "unknown error";
}
