#include "troupe/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "atomic.h"

static uint32_t log_level = TR_LOG_WARN;

/* The sink and its user pointer change together: readers take a snapshot of
 * the pair through one pointer. Both entries are static, so a reader racing
 * a change uses either the old or the new sink, never half of each. */
typedef struct sink {
    tr_log_fn fn;
    void *user;
} sink;

static sink sinks[2];
static sink *current; /* NULL: stderr */
static uint32_t next_sink;

static void stderr_sink(tr_log_level level, const char *line)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(stderr, "ts=%lld.%03ld level=%s %s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
            tr_log_level_name(level), line);
}

void tr_log_set_sink(tr_log_fn fn, void *user)
{
    if (fn == NULL) {
        tr__store_rel_ptr((void **)&current, NULL);
        return;
    }
    sink *s = &sinks[tr__faa_sc_32(&next_sink, 1) & 1];
    s->fn = fn;
    s->user = user;
    tr__store_rel_ptr((void **)&current, s);
}

void tr_log_set_level(tr_log_level level)
{
    tr__store_rel_32(&log_level, (uint32_t)level);
}

tr_log_level tr_log_get_level(void)
{
    return (tr_log_level)tr__load_acq_32(&log_level);
}

const char *tr_log_level_name(tr_log_level level)
{
    switch (level) {
    case TR_LOG_DEBUG:
        return "debug";
    case TR_LOG_INFO:
        return "info";
    case TR_LOG_WARN:
        return "warn";
    case TR_LOG_ERROR:
        return "error";
    case TR_LOG_OFF:
        return "off";
    default:
        return "unknown";
    }
}

void tr_log(tr_log_level level, const char *fmt, ...)
{
    if (level >= TR_LOG_OFF || (uint32_t)level < tr__load_acq_32(&log_level)) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    sink *s = tr__load_acq_ptr((void **)&current);
    if (s == NULL) {
        stderr_sink(level, line);
        return;
    }
    s->fn(level, line, s->user);
}
