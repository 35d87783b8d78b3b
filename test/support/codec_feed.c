#include "codec_feed.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n == 0 ? 1 : n);
    if (p == NULL) {
        abort(); /* a test helper has no better answer to OOM */
    }
    return p;
}

void tr_test_log_init(tr_test_log *l)
{
    l->cap = 64;
    l->len = 0;
    l->s = xrealloc(NULL, l->cap);
    l->s[0] = '\0';
}

void tr_test_log_fini(tr_test_log *l)
{
    free(l->s);
    l->s = NULL;
}

static void log_append(tr_test_log *l, const char *p, size_t n)
{
    if (l->len + n + 1 > l->cap) {
        while (l->len + n + 1 > l->cap) {
            l->cap *= 2;
        }
        l->s = xrealloc(l->s, l->cap);
    }
    memcpy(l->s + l->len, p, n);
    l->len += n;
    l->s[l->len] = '\0';
}

void tr_test_log_printf(tr_test_log *l, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0) {
        log_append(l, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
    }
}

void tr_test_log_frame(tr_test_log *l, const unsigned char *p, size_t n)
{
    log_append(l, "[", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char b = p[i];
        if (b >= 0x20 && b < 0x7f && b != '[' && b != ']' && b != '\\') {
            log_append(l, (const char *)&b, 1);
        } else {
            tr_test_log_printf(l, "\\x%02x", b);
        }
    }
    log_append(l, "]", 1);
}

void tr_test_log_error(tr_test_log *l, char mark, int code)
{
    switch (code) {
    case TR_EMSGSIZE:
        tr_test_log_printf(l, "%cEMSGSIZE", mark);
        break;
    case TR_ECODEC:
        tr_test_log_printf(l, "%cECODEC", mark);
        break;
    default:
        tr_test_log_printf(l, "%cE%d", mark, code);
        break;
    }
}

static void breach(tr_test_feed *f, const char *what)
{
    f->broken = true;
    tr_test_log_printf(&f->log, "?%s", what);
}

/* The bytes a connection holds: what decode has not consumed yet. */
typedef struct held {
    unsigned char *p;
    size_t len;
} held;

static void drop(held *h, size_t n)
{
    memmove(h->p, h->p + n, h->len - n);
    h->len -= n;
}

/* Checks one successful decode against the contract in codec.h. */
static bool frame_ok(tr_test_feed *f, const tr_test_feed_opts *o, const unsigned char *in,
                     size_t len, ssize_t r, const tr_frame *fr)
{
    size_t limit = o->frame_limit != 0 ? o->frame_limit : o->max_frame;
    if ((size_t)r > len) {
        breach(f, "consumed>len");
        return false;
    }
    if (fr->data == NULL && fr->len > 0) {
        breach(f, "frame-null");
        return false;
    }
    /* Compared as integers: the frame may point anywhere if the codec is
     * broken, and relational operators on unrelated pointers are undefined. */
    uintptr_t at = (uintptr_t)fr->data, base = (uintptr_t)in;
    if (fr->len > 0 && (fr->len > (size_t)r || at < base || at - base > (size_t)r - fr->len)) {
        breach(f, "frame-outside-consumed");
        return false;
    }
    if (fr->len > limit) {
        breach(f, "frame>limit");
        return false;
    }
    return true;
}

/* g has room for len bytes. */
static void feed(tr_test_guard *g, const tr_codec *c, const tr_test_feed_opts *o,
                 const unsigned char *stream, size_t len, const size_t *cuts, size_t ncuts,
                 tr_test_feed *out)
{
    memset(out, 0, sizeof(*out));
    tr_test_log_init(&out->log);
    out->bytes = xrealloc(NULL, len);
    held h = {xrealloc(NULL, len), 0};
    tr_codec_state st;
    memset(&st, 0, sizeof(st));
    bool resyncing = false, first_resync = false;
    size_t start = 0;

    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        if (end < start || end > len) {
            fprintf(stderr, "tr_test_codec_feed: bad cut %zu\n", end);
            abort();
        }
        memcpy(h.p + h.len, stream + start, end - start);
        h.len += end - start;
        start = end;
        while (h.len > 0) {
            const unsigned char *in = tr_test_guard_put(g, h.p, h.len);
            out->calls++;
            if (resyncing) {
                ssize_t r = c->ops->resync != NULL ? c->ops->resync(c, &st, in, h.len) : TR_ECODEC;
                if (r < 0) {
                    tr_test_log_error(&out->log, '|', (int)r);
                    goto stop;
                }
                if ((size_t)r > h.len) {
                    breach(out, "resync>len");
                    goto stop;
                }
                /* The first call after an error must skip something, or a
                 * connection following CONTINUE would loop forever. */
                if (first_resync && r == 0) {
                    breach(out, "resync-no-progress");
                    goto stop;
                }
                first_resync = false;
                size_t before = h.len;
                drop(&h, (size_t)r);
                if ((size_t)r < before) {
                    resyncing = false;
                }
                continue;
            }
            tr_frame fr = {NULL, 0};
            ssize_t r = c->ops->decode(c, &st, in, h.len, o->max_frame, &fr);
            if (r == 0) {
                break;
            }
            if (r > 0) {
                if (!frame_ok(out, o, in, h.len, r, &fr)) {
                    goto stop;
                }
                tr_test_log_frame(&out->log, fr.data, fr.len);
                if (fr.len > 0) {
                    memcpy(out->bytes + out->bytes_len, fr.data, fr.len);
                }
                out->bytes_len += fr.len;
                out->frames++;
                drop(&h, (size_t)r);
                continue;
            }
            out->errors++;
            tr_test_log_error(&out->log, '!', (int)r);
            if (r != TR_EMSGSIZE && r != TR_ECODEC) {
                breach(out, "unexpected-code");
                goto stop;
            }
            if (!o->resync) {
                tr_test_log_printf(&out->log, ".");
                goto stop;
            }
            resyncing = true;
            first_resync = true;
        }
    }
    if (h.len > 0) {
        tr_test_log_printf(&out->log, "+%zu", h.len);
    }
stop:
    free(h.p);
}

/* One mapping serves every feed of the process, grown when a stream does
 * not fit: mapping and unmapping pages per feed cost more than the feed
 * itself (the fuzzers run thousands of feeds a second). Test helpers run on
 * one thread, so no lock. */
static tr_test_guard *guard_for(size_t len)
{
    static tr_test_guard *cached;
    static size_t cached_cap;
    if (cached == NULL || cached_cap < len) {
        tr_test_guard_free(cached);
        cached_cap = len > 65536 ? len : 65536;
        cached = tr_test_guard_new(cached_cap);
    }
    return cached;
}

void tr_test_codec_feed(const tr_codec *c, const tr_test_feed_opts *o, const unsigned char *stream,
                        size_t len, const size_t *cuts, size_t ncuts, tr_test_feed *out)
{
    feed(guard_for(len), c, o, stream, len, cuts, ncuts, out);
}

void tr_test_feed_fini(tr_test_feed *f)
{
    tr_test_log_fini(&f->log);
    free(f->bytes);
    f->bytes = NULL;
}

/* Runs one split; returns a message if its transcript is not `expected`. */
static char *check_one(tr_test_guard *g, const tr_codec *c, const tr_test_feed_opts *o,
                       const unsigned char *stream, size_t len, const size_t *cuts, size_t ncuts,
                       const char *expected)
{
    tr_test_feed f;
    feed(g, c, o, stream, len, cuts, ncuts, &f);
    char *msg = NULL;
    if (strcmp(f.log.s, expected) != 0) {
        tr_test_log m;
        tr_test_log_init(&m);
        tr_test_log_printf(&m, "split into %zu reads, cuts {", ncuts + 1);
        for (size_t i = 0; i < ncuts && i < 8; i++) {
            tr_test_log_printf(&m, "%s%zu", i ? "," : "", cuts[i]);
        }
        tr_test_log_printf(&m, "%s}: got \"", ncuts > 8 ? ",..." : "");
        log_append(&m, f.log.s, f.log.len);
        tr_test_log_printf(&m, "\" want \"");
        log_append(&m, expected, strlen(expected));
        tr_test_log_printf(&m, "\"");
        msg = m.s;
    }
    tr_test_feed_fini(&f);
    return msg;
}

char *tr_test_codec_check_splits(const tr_codec *c, const tr_test_feed_opts *o,
                                 const unsigned char *stream, size_t len, const char *expected)
{
    tr_test_guard *g = guard_for(len);
    char *msg = check_one(g, c, o, stream, len, NULL, 0, expected);
    for (size_t i = 1; msg == NULL && i < len; i++) {
        msg = check_one(g, c, o, stream, len, &i, 1, expected);
    }
    for (size_t i = 1; msg == NULL && len <= 96 && i < len; i++) {
        for (size_t j = i + 1; msg == NULL && j < len; j++) {
            size_t cuts[2] = {i, j};
            msg = check_one(g, c, o, stream, len, cuts, 2, expected);
        }
    }
    if (msg == NULL && len > 1) {
        size_t *cuts = xrealloc(NULL, (len - 1) * sizeof(*cuts));
        for (size_t i = 0; i < len - 1; i++) {
            cuts[i] = i + 1;
        }
        msg = check_one(g, c, o, stream, len, cuts, len - 1, expected);
        free(cuts);
    }
    return msg;
}
