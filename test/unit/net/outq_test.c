/* Tests for net/outq.c, the per-connection send queue, driven through the
 * embedded connection (the queue is only reachable through a connection):
 * order and coalescing, shared buffers, the byte limit, watermarks and the
 * overflow policies. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leak.h"
#include "net/outq.h"
#include "troupe/troupe.h"

TestSuite(outq, .timeout = 10.0);

/* What the callbacks did: "+" a write taken, "!" refused, "?" another
 * result, "W0"/"W1" writability, "E<class>" an error, "C<reason>" close. */
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

static void h_writable(tr_conn *c, bool writable, void *user)
{
    (void)c;
    (void)user;
    tlog("W%d", writable);
}

static void h_close(tr_conn *c, int reason, void *user)
{
    (void)c;
    (void)user;
    tlog("C%s", reason == 0 ? "0" : tr_strerror(reason));
}

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
    return e;
}

static void config(tr_server_config *cfg, const tr_codec *codec, const tr_handler *h)
{
    tr_server_config_defaults(cfg);
    cfg->conn.codec = codec;
    cfg->conn.handler = h;
}

static const char *out_of(tr_embedded *e)
{
    static char out[8192];
    size_t n = tr_embedded_read(e, out, sizeof(out) - 1);
    out[n] = '\0';
    return out;
}

static int burst_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    /* "N" repeated: write N frames "f0".."fN-1" in one go. */
    int n = atoi((const char *)data);
    (void)len;
    for (int i = 0; i < n; i++) {
        char f[8];
        int k = snprintf(f, sizeof(f), "f%d", i);
        int rc = tr_conn_write(c, f, (size_t)k);
        tlog("%s", rc == 0 ? "+" : rc == TR_EBUFFULL ? "!" : "?");
    }
    return 0;
}

static const tr_handler burst = {.on_frame = burst_frame, .on_writable = h_writable};

Test(outq, writes_past_the_high_watermark_report_unwritable_then_writable)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &burst);
    cfg.conn.send_queue_bytes = 64;
    cfg.conn.high_watermark = 10;
    cfg.conn.low_watermark = 0;
    tr_embedded *e = emb_new(&cfg);
    /* 4 frames of 3 bytes: the 4th passes 10 queued bytes. Flushing
     * empties the queue: writable again. */
    cr_assert_eq(tr_embedded_feed(e, "4\n", 2), 0);
    cr_assert_str_eq(log_buf, "+++W0+W1", "W0 inside the 4th write");
    cr_assert_str_eq(out_of(e), "f0\nf1\nf2\nf3\n");
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(outq, writes_past_the_queue_limit_are_refused_and_counted)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &burst);
    cfg.conn.send_queue_bytes = 10;
    cfg.conn.high_watermark = 10;
    cfg.conn.low_watermark = 5;
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "5\n", 2), 0);
    cr_assert_str_eq(log_buf, "+++!!", "3 + 3 + 3 bytes fit in 10");
    cr_assert_str_eq(out_of(e), "f0\nf1\nf2\n");
    tr_conn_stats cs;
    tr_conn_stats_get(tr_embedded_conn(e), &cs);
    cr_assert_eq(cs.sends_refused, 2);
    cr_assert_eq(cs.frames_out, 3);
    cr_assert_eq(cs.queued_bytes, 0);
    /* Once flushed there is room again. */
    log_reset();
    cr_assert_eq(tr_embedded_feed(e, "2\n", 2), 0);
    cr_assert_str_eq(log_buf, "++");
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(outq, drop_oldest_keeps_the_newest_frames)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &burst);
    cfg.conn.send_queue_bytes = 9;
    cfg.conn.high_watermark = 9;
    cfg.conn.low_watermark = 0;
    cfg.conn.send_overflow = TR_OVERFLOW_DROP_OLDEST;
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "6\n", 2), 0);
    cr_assert_str_eq(log_buf, "++++++", "drop-oldest accepts every write");
    const char *o = out_of(e);
    cr_assert_str_eq(o, "f3\nf4\nf5\n", "the three newest fit in 9 bytes: got \"%s\"", o);
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

static tr_error_action overflow_seen(tr_conn *c, tr_error_class cls, int err, void *user)
{
    (void)c;
    (void)err;
    (void)user;
    tlog("E%s", tr_error_class_name(cls));
    return TR_DISCONNECT;
}

static const tr_handler burst_exit = {
    .on_frame = burst_frame, .on_close = h_close, .on_error = overflow_seen};

Test(outq, overflow_exit_disconnects_with_ebuffull)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &burst_exit);
    cfg.conn.send_queue_bytes = 6;
    cfg.conn.high_watermark = 6;
    cfg.conn.low_watermark = 0;
    cfg.conn.send_overflow = TR_OVERFLOW_EXIT;
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "3\n", 2), TR_ECLOSED);
    cr_assert_str_eq(log_buf, "++Esend_overflow!Cqueue full; try again later");
    cr_assert_eq(tr_embedded_close_reason(e), TR_EBUFFULL);
    cr_assert_str_eq(out_of(e), "f0\nf1\n", "what fit still goes out");
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

static int buf_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    tr_buf *b = user;
    /* The same buffer three times (a copy only when it is short). */
    for (int i = 0; i < 3; i++) {
        if (tr_conn_write_buf(c, tr_buf_retain(b)) != 0) {
            tlog("?");
        }
    }
    tlog("%u", tr_buf_refs(b));
    return 0;
}

static const tr_handler buf_handler = {.on_frame = buf_frame};

Test(outq, write_buf_shares_the_buffer_and_releases_it_once_written)
{
    tr_codec *codec = line_codec();
    /* Past the copy limit (outq.h): shared, not copied. */
    char text[TR__OUTQ_COPY_MAX + 44];
    memset(text, 's', sizeof(text));
    tr_buf *b = tr_buf_copy(text, sizeof(text));
    tr_server_config cfg;
    config(&cfg, codec, &buf_handler);
    cfg.conn.user = b;
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "go\n", 3), 0);
    cr_assert_str_eq(log_buf, "4", "queued: three references besides ours");
    cr_assert_eq(tr_buf_refs(b), 1, "written: references given back");
    char want[3 * (sizeof(text) + 1) + 1], *w = want;
    for (int i = 0; i < 3; i++) {
        memcpy(w, text, sizeof(text));
        w[sizeof(text)] = '\n';
        w += sizeof(text) + 1;
    }
    *w = '\0';
    cr_assert_str_eq(out_of(e), want);
    /* Refused or closed: the reference is taken and released anyway. */
    tr_conn *c = tr_embedded_conn(e);
    cr_assert_eq(tr_conn_write_buf(c, NULL), TR_EINVAL);
    cr_assert_eq(tr_conn_close(c), 0);
    tr_embedded_flush(e);
    cr_assert_eq(tr_conn_write_buf(c, tr_buf_retain(b)), TR_ECLOSED);
    cr_assert_eq(tr_buf_refs(b), 1);
    tr_embedded_free(e);
    tr_buf_release(b);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(outq, a_short_shared_buffer_is_copied_and_released_at_once)
{
    tr_codec *codec = line_codec();
    tr_buf *b = tr_buf_copy("shared", 6);
    tr_server_config cfg;
    config(&cfg, codec, &buf_handler);
    cfg.conn.user = b;
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "go\n", 3), 0);
    cr_assert_str_eq(log_buf, "1", "queued as copies: no reference kept");
    cr_assert_str_eq(out_of(e), "shared\nshared\nshared\n");
    tr_embedded_free(e);
    tr_buf_release(b);
    tr_codec_free(codec);
    tr_test_leak_check();
}

/* Frames of every size around the 4 KiB block, copied and shared, mixed:
 * they leave in the order written, byte for byte. */
static unsigned char *expect;
static size_t expect_len;

static int mixed_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)data;
    (void)len;
    (void)user;
    static unsigned char payload[9000];
    for (size_t i = 0; i < sizeof(payload); i++) {
        payload[i] = (unsigned char)('a' + i % 26);
    }
    size_t sizes[] = {0, 1, 4094, 4095, 4096, 4097, 3, 8191, 8999, 17, 4096};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (int rep = 0; rep < 3; rep++) {
            size_t n = sizes[k];
            int rc;
            if (rep == 1) {
                rc = tr_conn_write_buf(c, tr_buf_copy(payload, n));
            } else {
                rc = tr_conn_write(c, payload, n);
            }
            if (rc != 0) {
                tlog("?");
            }
            memcpy(expect + expect_len, payload, n);
            expect[expect_len + n] = '\n';
            expect_len += n + 1;
        }
    }
    return 0;
}

static const tr_handler mixed = {.on_frame = mixed_frame};

Test(outq, copied_and_shared_frames_leave_in_order_across_block_boundaries)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &mixed);
    expect = malloc(256 * 1024);
    tr_embedded *e = emb_new(&cfg);
    cr_assert_eq(tr_embedded_feed(e, "go\n", 3), 0);
    cr_assert_str_eq(log_buf, "");
    cr_assert_eq(tr_embedded_pending(e), expect_len);
    unsigned char *got = malloc(expect_len);
    cr_assert_eq(tr_embedded_read(e, got, expect_len), expect_len);
    cr_assert_arr_eq(got, expect, expect_len);
    tr_conn_stats cs;
    tr_conn_stats_get(tr_embedded_conn(e), &cs);
    cr_assert_eq(cs.frames_out, 33);
    cr_assert_eq(cs.bytes_out, expect_len);
    cr_assert_eq(cs.queued_bytes, 0);
    free(got);
    free(expect);
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}

Test(outq, drop_oldest_with_shared_buffers_keeps_the_newest)
{
    tr_codec *codec = line_codec();
    tr_server_config cfg;
    config(&cfg, codec, &burst);
    cfg.conn.send_queue_bytes = 4;
    cfg.conn.high_watermark = 4;
    cfg.conn.low_watermark = 0;
    cfg.conn.send_overflow = TR_OVERFLOW_DROP_OLDEST;
    tr_embedded *e = emb_new(&cfg);
    tr_conn *c = tr_embedded_conn(e);
    tr_buf *b = tr_buf_copy("xyz", 3);
    cr_assert_eq(tr_conn_write(c, "abc", 3), 0);
    cr_assert_eq(tr_conn_write_buf(c, tr_buf_retain(b)), 0);
    cr_assert_eq(tr_buf_refs(b), 2);
    cr_assert_eq(tr_conn_write(c, "new", 3), 0);
    cr_assert_eq(tr_buf_refs(b), 1, "the dropped frame gave its reference back");
    tr_embedded_flush(e);
    cr_assert_str_eq(out_of(e), "new\n");
    tr_buf_release(b);
    tr_embedded_free(e);
    tr_codec_free(codec);
    tr_test_leak_check();
}
