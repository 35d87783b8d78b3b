/* Tests for net/embedded.c: the in-memory connection runs the codec, the
 * handler and the error policy exactly as a socket would, inside the
 * feed/flush calls, with no thread. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leak.h"
#include "troupe/troupe.h"

TestSuite(embedded, .timeout = 10.0);

/* What the callbacks did, as a transcript the tests compare literally:
 * "O" open, "[..]" a frame, "E<class>" an error, "W0"/"W1" writability,
 * "S" shutdown, "C<reason>" close. */
static char log_buf[4096];
static size_t log_len;

static void tlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void tlog(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(log_buf + log_len, sizeof(log_buf) - log_len, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof(log_buf) - log_len, "transcript full");
    log_len += (size_t)n;
}

static void log_reset(void)
{
    log_len = 0;
    log_buf[0] = '\0';
}

static int h_open(tr_conn *c, void *user)
{
    (void)c;
    (void)user;
    tlog("O");
    return 0;
}

static int h_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    tlog("[%.*s]", (int)len, (const char *)data);
    if (len >= 4 && memcmp(data, "quit", 4) == 0) {
        return tr_conn_close(c);
    }
    return tr_conn_write(c, data, len);
}

static void h_writable(tr_conn *c, bool writable, void *user)
{
    (void)c;
    (void)user;
    tlog("W%d", writable);
}

static void h_shutdown(tr_conn *c, void *user)
{
    (void)c;
    (void)user;
    tlog("S");
}

static void h_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    tlog("C%s", reason == 0 ? "0" : tr_strerror(reason));
}

static tr_error_action h_error(tr_conn *c, tr_error_class cls, int err, void *user)
{
    (void)c;
    (void)err;
    (void)user;
    tlog("E%s", tr_error_class_name(cls));
    return TR_DISCONNECT;
}

static const tr_handler handler = {.on_open = h_open,
                                   .on_frame = h_frame,
                                   .on_writable = h_writable,
                                   .on_shutdown = h_shutdown,
                                   .on_close = h_close};

/* As handler, with an on_error that names the class and disconnects. */
static const tr_handler handler_err = {
    .on_open = h_open, .on_frame = h_frame, .on_close = h_close, .on_error = h_error};

static tr_codec *line_codec(void)
{
    tr_line_codec_config lc;
    tr_line_codec_config_defaults(&lc);
    int err = 1;
    tr_codec *c = tr_codec_line_new(&lc, &err);
    cr_assert_not_null(c);
    return c;
}

static tr_embedded *emb_new(const tr_server_config *cfg)
{
    int err = 1;
    tr_embedded *e = tr_embedded_new(cfg, &err);
    cr_assert_not_null(e, "tr_embedded_new: %s", tr_strerror(err));
    cr_assert_eq(err, 0);
    return e;
}

static void config(tr_server_config *cfg, const tr_codec *codec, const tr_handler *h)
{
    tr_server_config_defaults(cfg);
    cfg->conn.codec = codec;
    cfg->conn.handler = h;
}

/* Reads everything written so far as a NUL-terminated string. */
static const char *out_of(tr_embedded *e)
{
    static char out[8192];
    size_t n = tr_embedded_read(e, out, sizeof(out) - 1);
    out[n] = '\0';
    return out;
}

/* ---- construction ---- */

Test(embedded, new_refuses_missing_codec_and_handler)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    int err = 0;
    config(&cfg, NULL, &handler);
    cr_assert_null(tr_embedded_new(&cfg, &err));
    cr_assert_eq(err, TR_ENOCODEC);
    config(&cfg, codec, NULL);
    cr_assert_null(tr_embedded_new(&cfg, &err));
    cr_assert_eq(err, TR_ENOHANDLER);
    static const tr_handler no_frame = {.on_open = h_open};
    config(&cfg, codec, &no_frame);
    cr_assert_null(tr_embedded_new(&cfg, &err));
    cr_assert_eq(err, TR_ENOHANDLER);
    config(&cfg, codec, &handler);
    cfg.conn.low_watermark = cfg.conn.high_watermark + 1;
    cr_assert_null(tr_embedded_new(&cfg, &err));
    cr_assert_eq(err, TR_EINVAL);
    cr_assert_null(tr_embedded_new(NULL, &err));
    cr_assert_eq(err, TR_EINVAL);
    cr_assert_eq(log_len, 0, "no callback ran");
    tr_embedded_free(NULL);
    tr_codec_free(codec);
    tr_test_leak_check();
}

/* ---- feeding and reading ---- */

Test(embedded, feed_runs_the_handler_and_read_returns_what_it_wrote)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &handler);
    tr_embedded *e = emb_new(&cfg);
    cr_assert_str_eq(log_buf, "O", "on_open runs inside tr_embedded_new");
    cr_assert_eq(tr_embedded_feed(e, "hello\nworld\r\n", 13), 0);
    cr_assert_str_eq(log_buf, "O[hello][world]");
    cr_assert_eq(tr_embedded_pending(e), 12);
    char part[5];
    cr_assert_eq(tr_embedded_read(e, part, 5), 5);
    cr_assert_arr_eq(part, "hello", 5);
    cr_assert_eq(tr_embedded_pending(e), 7);
    cr_assert_str_eq(out_of(e), "\nworld\n");
    cr_assert_eq(tr_embedded_pending(e), 0);
    cr_assert_eq(tr_embedded_read(e, part, 5), 0);
    tr_conn_stats cs;
    tr_conn_stats_get(tr_embedded_conn(e), &cs);
    cr_assert_eq(cs.frames_in, 2);
    cr_assert_eq(cs.frames_out, 2);
    cr_assert_eq(cs.bytes_in, 13);
    cr_assert_eq(cs.bytes_out, 12);
    cr_assert_eq(cs.queued_bytes, 0);
    cr_assert_not(tr_embedded_is_closed(e));
    tr_embedded_free(e);
    cr_assert_str_eq(log_buf,
                     "O[hello][world]C"
                     "actor or connection is closed",
                     "free aborts an open connection: on_close runs");
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(embedded, every_split_point_of_a_line_stream_gives_the_same_frames)
{
    static const char in[] = "alpha\r\nbeta\n\n\r\ngamma-delta\nx\n";
    const size_t n = sizeof(in) - 1;
    const char *want_log = "O[alpha][beta][][][gamma-delta][x]";
    const char *want_out = "alpha\nbeta\n\n\ngamma-delta\nx\n";
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &handler);
    /* Two pieces, cut at every point. */
    for (size_t cut = 0; cut <= n; cut++) {
        log_reset();
        tr_embedded *e = emb_new(&cfg);
        cr_assert_eq(tr_embedded_feed(e, in, cut), 0);
        cr_assert_eq(tr_embedded_feed(e, in + cut, n - cut), 0);
        cr_assert_str_eq(log_buf, want_log, "cut at %zu", cut);
        cr_assert_str_eq(out_of(e), want_out, "cut at %zu", cut);
        tr_embedded_free(e);
    }
    /* Three pieces, both cuts everywhere. */
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            log_reset();
            tr_embedded *e = emb_new(&cfg);
            cr_assert_eq(tr_embedded_feed(e, in, a), 0);
            cr_assert_eq(tr_embedded_feed(e, in + a, b - a), 0);
            cr_assert_eq(tr_embedded_feed(e, in + b, n - b), 0);
            cr_assert_str_eq(log_buf, want_log, "cuts at %zu, %zu", a, b);
            tr_embedded_free(e);
        }
    }
    /* One byte at a time. */
    log_reset();
    tr_embedded *e = emb_new(&cfg);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(tr_embedded_feed(e, in + i, 1), 0);
    }
    cr_assert_str_eq(log_buf, want_log);
    cr_assert_str_eq(out_of(e), want_out);
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(embedded, length_codec_frames_split_anywhere_and_echo_with_their_header)
{
    tr_length_codec_config lc;
    tr_length_codec_config_defaults(&lc);
    lc.strip_header = 4;
    int err = 1;
    tr_codec *codec = tr_codec_length_new(&lc, &err);
    cr_assert_not_null(codec);
    static const unsigned char in[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0, 0, 0, 2, 'z', 'z'};
    tr_server_config cfg;
    config(&cfg, codec, &handler);
    for (size_t cut = 0; cut <= sizeof(in); cut++) {
        log_reset();
        tr_embedded *e = emb_new(&cfg);
        cr_assert_eq(tr_embedded_feed(e, in, cut), 0);
        cr_assert_eq(tr_embedded_feed(e, in + cut, sizeof(in) - cut), 0);
        cr_assert_str_eq(log_buf, "O[abc][][zz]", "cut at %zu", cut);
        unsigned char out[32];
        cr_assert_eq(tr_embedded_read(e, out, sizeof(out)), sizeof(in));
        cr_assert_arr_eq(out, in, sizeof(in));
        tr_embedded_free(e);
    }
    tr_codec_free(codec);
    tr_test_leak_check();
}

/* ---- errors and the policy ---- */

Test(embedded, oversized_line_closes_with_emsgsize)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &handler_err);
    cfg.conn.max_frame_bytes = 8;
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "ok\n123456789\nlost\n", 18), TR_ECLOSED);
    cr_assert(tr_embedded_is_closed(e));
    cr_assert_eq(tr_embedded_close_reason(e), TR_EMSGSIZE);
    cr_assert(tr_embedded_write_shut(e));
    cr_assert_str_eq(out_of(e), "ok\n", "what was written before the error still goes out");
    cr_assert_str_eq(log_buf, "O[ok]Eframe_too_largeCframe larger than the limit");
    cr_assert_eq(tr_embedded_feed(e, "more\n", 5), TR_ECLOSED);
    cr_assert_eq(tr_embedded_feed_eof(e), TR_ECLOSED);
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

static tr_error_action keep_going(tr_conn *c, tr_error_class cls, int err, void *user)
{
    (void)c;
    (void)err;
    (void)user;
    tlog("E%s", tr_error_class_name(cls));
    return TR_CONTINUE;
}

static const tr_handler handler_continue = {
    .on_frame = h_frame, .on_close = h_close, .on_error = keep_going};

Test(embedded, continue_skips_an_oversized_line_and_counts_it_once)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &handler_continue);
    cfg.conn.max_frame_bytes = 8;
    /* The long line arrives in three feeds: still one error. */
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "a\n0123456789", 12), 0);
    cr_assert_eq(tr_embedded_feed(e, "0123456789", 10), 0);
    cr_assert_eq(tr_embedded_feed(e, "01\nb\n", 5), 0);
    cr_assert_str_eq(log_buf, "[a]Eframe_too_large[b]");
    cr_assert_str_eq(out_of(e), "a\nb\n");
    cr_assert_not(tr_embedded_is_closed(e));
    /* Every split of the same stream: the same transcript. */
    static const char in[] = "a\n0123456789012345678901\nb\n";
    const size_t n = sizeof(in) - 1;
    tr_embedded_free(e);
    for (size_t cut = 0; cut <= n; cut++) {
        for (size_t cut2 = cut; cut2 <= n; cut2++) {
            log_reset();
            e = emb_new(&cfg);
            cr_assert_eq(tr_embedded_feed(e, in, cut), 0);
            cr_assert_eq(tr_embedded_feed(e, in + cut, cut2 - cut), 0);
            cr_assert_eq(tr_embedded_feed(e, in + cut2, n - cut2), 0);
            cr_assert_str_eq(log_buf, "[a]Eframe_too_large[b]", "cuts at %zu, %zu", cut, cut2);
            tr_embedded_free(e);
        }
    }
    tr_codec_free(codec);
    tr_test_leak_check();
}

static int failing_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)c;
    (void)user;
    tlog("[%.*s]", (int)len, (const char *)data);
    return len == 3 && memcmp(data, "bad", 3) == 0 ? TR_ECODEC : 0;
}

Test(embedded, handler_error_follows_the_policy_table)
{
    tr_codec *codec = line_codec();
    static const tr_handler h = {.on_frame = failing_frame, .on_close = h_close};
    tr_server_config cfg;
    config(&cfg, codec, &h);
    cfg.conn.policy[TR_ERR_HANDLER] = TR_CONTINUE;
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "bad\nok\n", 7), 0);
    cr_assert_str_eq(log_buf, "[bad][ok]");
    tr_embedded_free(e);
    log_reset();
    cfg.conn.policy[TR_ERR_HANDLER] = TR_DISCONNECT;
    e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "bad\nok\n", 7), TR_ECLOSED);
    cr_assert_str_eq(log_buf, "[bad]Cmalformed frame");
    cr_assert_eq(tr_embedded_close_reason(e), TR_ECODEC);
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

/* ---- closing ---- */

Test(embedded, eof_flushes_then_closes_without_on_shutdown)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &handler);
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "last\npartial", 12), 0);
    cr_assert_eq(tr_embedded_feed_eof(e), 0);
    cr_assert(tr_embedded_is_closed(e));
    cr_assert_eq(tr_embedded_close_reason(e), 0);
    cr_assert(tr_embedded_write_shut(e));
    cr_assert_str_eq(out_of(e), "last\n");
    /* No server drains an embedded connection: on_shutdown never runs. */
    cr_assert_str_eq(log_buf, "O[last]C0");
    cr_assert_eq(tr_embedded_feed(e, "x\n", 2), TR_ECLOSED);
    tr_embedded_free(e);
    cr_assert_str_eq(log_buf, "O[last]C0", "closed once");
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(embedded, close_from_the_handler_flushes_what_was_written_first)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &handler);
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "one\nquit\nnever\n", 15), TR_ECLOSED);
    cr_assert_str_eq(out_of(e), "one\n");
    cr_assert_str_eq(log_buf, "O[one][quit]C0", "frames after the close are not delivered");
    cr_assert(tr_embedded_write_shut(e));
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(embedded, close_and_abort_from_the_test)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &handler);
    /* Graceful: queued bytes go out, then the write side shuts. */
    tr_embedded *e = emb_new(&cfg);
    tr_conn *c = tr_embedded_conn(e);
    cr_assert_eq(tr_conn_write(c, "bye", 3), 0);
    cr_assert_eq(tr_conn_close(c), 0);
    cr_assert(tr_conn_is_closed(c), "closing counts as closed");
    tr_embedded_flush(e);
    cr_assert(tr_embedded_is_closed(e));
    cr_assert_eq(tr_embedded_close_reason(e), 0);
    cr_assert_str_eq(out_of(e), "bye\n");
    cr_assert_eq(tr_conn_write(c, "late", 4), TR_ECLOSED);
    cr_assert_eq(tr_conn_close(c), TR_ECLOSED);
    tr_embedded_free(e);
    /* Abort: unsent bytes are dropped. */
    log_reset();
    e = emb_new(&cfg);
    c = tr_embedded_conn(e);
    cr_assert_eq(tr_conn_write(c, "dropped", 7), 0);
    cr_assert_eq(tr_conn_abort(c), 0);
    tr_embedded_flush(e);
    cr_assert(tr_embedded_is_closed(e));
    cr_assert_eq(tr_embedded_pending(e), 0);
    cr_assert_str_eq(log_buf, "OC0");
    cr_assert_eq(tr_conn_abort(c), TR_ECLOSED);
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

/* Echoes, and notes a refused echo without failing the frame. */
static int echo_noting(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    tlog("[%.*s]", (int)len, (const char *)data);
    int rc = tr_conn_write(c, data, len);
    if (rc == TR_ECLOSED) {
        tlog("=closed");
    }
    return 0;
}

static const tr_handler half_handler = {
    .on_open = h_open, .on_frame = echo_noting, .on_close = h_close};

Test(embedded, shutdown_write_flushes_then_shuts_and_reading_goes_on)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &half_handler);
    tr_embedded *e = emb_new(&cfg);
    tr_conn *c = tr_embedded_conn(e);
    cr_assert_eq(tr_conn_write(c, "before", 6), 0);
    cr_assert_eq(tr_conn_shutdown_write(c), 0);
    tr_embedded_flush(e);
    cr_assert(tr_embedded_write_shut(e));
    cr_assert_not(tr_embedded_is_closed(e));
    cr_assert_str_eq(out_of(e), "before\n");
    /* Input is still decoded; the handler's echo is refused. */
    cr_assert_eq(tr_embedded_feed(e, "in\n", 3), 0);
    cr_assert_str_eq(log_buf, "O[in]=closed");
    cr_assert_eq(tr_embedded_pending(e), 0, "nothing written after the write side shut");
    cr_assert_eq(tr_conn_write(c, "after", 5), TR_ECLOSED);
    cr_assert_eq(tr_embedded_feed_eof(e), 0);
    cr_assert(tr_embedded_is_closed(e));
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(embedded, write_larger_than_max_frame_is_emsgsize)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &handler);
    cfg.conn.max_frame_bytes = 4;
    tr_embedded *e = emb_new(&cfg);
    tr_conn *c = tr_embedded_conn(e);
    cr_assert_eq(tr_conn_write(c, "12345", 5), TR_EMSGSIZE);
    cr_assert_eq(tr_conn_write(c, "1234", 4), 0);
    tr_embedded_flush(e);
    cr_assert_str_eq(out_of(e), "1234\n");
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}
