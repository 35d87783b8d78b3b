/* troupe: a pluggable log sink with levels.
 *
 * troupe formats a log line only when its level is enabled, so a disabled
 * level costs one comparison. Lines are key=value, one per event. The
 * default sink writes them to stderr. */
#ifndef TROUPE_LOG_H
#define TROUPE_LOG_H

#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tr_log_level {
    TR_LOG_DEBUG = 0,
    TR_LOG_INFO = 1,
    TR_LOG_WARN = 2,
    TR_LOG_ERROR = 3,
    TR_LOG_OFF = 4
} tr_log_level;

/* Receives one formatted line (no trailing newline). It may be called from
 * any thread at once, and from a worker: it must not block for long.
 * The line is only valid during the call. */
typedef void (*tr_log_fn)(tr_log_level level, const char *line, void *user);

/* Replaces the process-wide sink; NULL restores the stderr sink.
 * Threads: any thread, but set it before starting runtimes: a line being
 * logged concurrently may still go to the previous sink. */
TR_API void tr_log_set_sink(tr_log_fn fn, void *user);

/* Sets the lowest level that is formatted and passed to the sink
 * (default TR_LOG_WARN). Threads: any thread. */
TR_API void tr_log_set_level(tr_log_level level);

/* Returns the current level. Threads: any thread. */
TR_API tr_log_level tr_log_get_level(void);

/* Formats and emits a line at `level` if that level is enabled.
 * Threads: any thread. */
TR_API void tr_log(tr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Name of a level ("debug", "info", "warn", "error", "off"; "unknown" for
 * anything else; never NULL). Threads: any thread. */
TR_API const char *tr_log_level_name(tr_log_level level);

#ifdef __cplusplus
}
#endif

#endif
