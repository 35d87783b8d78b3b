/* Tests for runtime/log.c: levels, the pluggable sink, the stderr sink. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "troupe/log.h"
#include "tsan_criterion.h"

#define MAX_LINES 16

typedef struct capture {
    int n;
    tr_log_level level[MAX_LINES];
    char line[MAX_LINES][2048];
    void *user[MAX_LINES];
} capture;

static capture cap;

static void sink(tr_log_level level, const char *line, void *user)
{
    if (cap.n < MAX_LINES) {
        cap.level[cap.n] = level;
        snprintf(cap.line[cap.n], sizeof(cap.line[0]), "%s", line);
        cap.user[cap.n] = user;
    }
    cap.n++;
}

static void teardown(void)
{
    tr_log_set_sink(NULL, NULL);
    tr_log_set_level(TR_LOG_WARN);
}

TestSuite(log, .fini = teardown, .timeout = 5.0);

static void log_all_levels(void)
{
    tr_log(TR_LOG_DEBUG, "event=a n=%d", 0);
    tr_log(TR_LOG_INFO, "event=b n=%d", 1);
    tr_log(TR_LOG_WARN, "event=c n=%d", 2);
    tr_log(TR_LOG_ERROR, "event=d n=%d", 3);
}

Test(log, default_level_is_warn)
{
    cr_assert_eq(tr_log_get_level(), TR_LOG_WARN);
}

Test(log, set_level_is_read_back)
{
    for (int l = TR_LOG_DEBUG; l <= TR_LOG_OFF; l++) {
        tr_log_set_level((tr_log_level)l);
        cr_assert_eq(tr_log_get_level(), (tr_log_level)l);
    }
}

Test(log, sink_receives_lines_at_enabled_levels_only)
{
    int token;
    tr_log_set_sink(sink, &token);
    tr_log_set_level(TR_LOG_INFO);
    log_all_levels();
    cr_assert_eq(cap.n, 3, "debug is below info: 3 lines, got %d", cap.n);
    cr_assert_eq(cap.level[0], TR_LOG_INFO);
    cr_assert_str_eq(cap.line[0], "event=b n=1");
    cr_assert_eq(cap.level[1], TR_LOG_WARN);
    cr_assert_str_eq(cap.line[1], "event=c n=2");
    cr_assert_eq(cap.level[2], TR_LOG_ERROR);
    cr_assert_str_eq(cap.line[2], "event=d n=3");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(cap.user[i], &token, "the user pointer is passed through");
    }
}

Test(log, default_level_drops_debug_and_info)
{
    tr_log_set_sink(sink, NULL);
    log_all_levels();
    cr_assert_eq(cap.n, 2);
    cr_assert_str_eq(cap.line[0], "event=c n=2");
    cr_assert_str_eq(cap.line[1], "event=d n=3");
}

Test(log, debug_level_passes_everything)
{
    tr_log_set_sink(sink, NULL);
    tr_log_set_level(TR_LOG_DEBUG);
    log_all_levels();
    cr_assert_eq(cap.n, 4);
    cr_assert_eq(cap.level[0], TR_LOG_DEBUG);
    cr_assert_str_eq(cap.line[0], "event=a n=0");
}

Test(log, level_off_silences_every_level)
{
    tr_log_set_sink(sink, NULL);
    tr_log_set_level(TR_LOG_OFF);
    log_all_levels();
    cr_assert_eq(cap.n, 0);
}

Test(log, off_is_not_a_level_to_log_at)
{
    tr_log_set_sink(sink, NULL);
    tr_log_set_level(TR_LOG_DEBUG);
    tr_log(TR_LOG_OFF, "event=never");
    cr_assert_eq(cap.n, 0);
}

Test(log, long_line_is_truncated_not_overflowed)
{
    tr_log_set_sink(sink, NULL);
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tr_log(TR_LOG_ERROR, "%s", big);
    cr_assert_eq(cap.n, 1);
    size_t len = strlen(cap.line[0]);
    cr_assert_eq(len, 1023, "lines are cut at the 1 KiB buffer, got %zu", len);
    cr_assert_eq(strspn(cap.line[0], "x"), 1023);
}

Test(log, replacing_the_sink_routes_to_the_new_one)
{
    int a, b;
    tr_log_set_sink(sink, &a);
    tr_log(TR_LOG_WARN, "one");
    tr_log_set_sink(sink, &b);
    tr_log(TR_LOG_WARN, "two");
    cr_assert_eq(cap.n, 2);
    cr_assert_eq(cap.user[0], &a);
    cr_assert_eq(cap.user[1], &b);
}

Test(log, level_names)
{
    cr_assert_str_eq(tr_log_level_name(TR_LOG_DEBUG), "debug");
    cr_assert_str_eq(tr_log_level_name(TR_LOG_INFO), "info");
    cr_assert_str_eq(tr_log_level_name(TR_LOG_WARN), "warn");
    cr_assert_str_eq(tr_log_level_name(TR_LOG_ERROR), "error");
    cr_assert_str_eq(tr_log_level_name(TR_LOG_OFF), "off");
    cr_assert_str_eq(tr_log_level_name((tr_log_level)42), "unknown");
}

Test(log, null_sink_restores_stderr_with_level_and_line)
{
    tr_log_set_sink(sink, NULL);
    tr_log_set_sink(NULL, NULL);

    char path[] = "/tmp/troupe-log-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    tr_log(TR_LOG_ERROR, "event=to_stderr k=%d", 7);
    tr_log(TR_LOG_DEBUG, "event=hidden");
    fflush(stderr);
    cr_assert_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);

    char buf[512] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    cr_assert_gt(n, 0);
    cr_assert_eq(cap.n, 0, "the replaced sink saw nothing");
    cr_assert_not_null(strstr(buf, "level=error event=to_stderr k=7\n"), "got: %s", buf);
    cr_assert_eq(strncmp(buf, "ts=", 3), 0, "got: %s", buf);
    cr_assert_null(strstr(buf, "hidden"));
    cr_assert_eq(strchr(buf, '\n'), buf + n - 1, "exactly one line: %s", buf);
}
