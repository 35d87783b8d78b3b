/* libFuzzer target for WebSocket frames: net/proto's WebSocket session
 * over wslay, as the WebSocket layer drives it (server side).
 *
 * Input: [max message byte][seed][flags] then the byte stream a client
 * sends after the handshake. Checks, beyond "no crash": what comes out
 * (messages delivered, bytes written) is the same for one read, one byte
 * per read and random reads; every message is within the limit and every
 * text message valid UTF-8; what the server writes is a sequence of
 * whole, unmasked, final frames with nothing after a close frame; and a
 * message sent from inside a delivery comes out framed. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "ws_session.h"

static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xc0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += k + 1;
    }
    return true;
}

typedef struct run {
    tr__ws_session s;
    tr_test_log log;
    unsigned char *out;
    size_t out_len, out_cap;
    size_t max;
    bool echo;
} run;

static int sink_write(void *arg, const void *data, size_t len)
{
    run *r = arg;
    if (r->out_len + len > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap * 2 : 1024;
        while (cap < r->out_len + len) {
            cap *= 2;
        }
        r->out = realloc(r->out, cap);
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, data, len);
    r->out_len += len;
    return 0;
}

static void sink_message(void *arg, int opcode, const unsigned char *data, size_t len)
{
    run *r = arg;
    if (len > r->max) {
        fuzz_fail("message of %zu bytes over the limit %zu", len, r->max);
    }
    if (opcode == 1 && !utf8_ok(data, len)) {
        fuzz_fail("text message of %zu bytes is not UTF-8", len);
    }
    tr_test_log_printf(&r->log, "m%d:", opcode);
    tr_test_log_frame(&r->log, data, len);
    if (r->echo) {
        tr__ws_session_send(&r->s, opcode, data, len);
    }
}

static const tr__ws_sink sink = {sink_write, sink_message};

/* Walks the server's output: whole frames, unmasked, final, nothing after
 * a close; logs each frame but closes. wslay 1.1 checks a close reason's
 * UTF-8 per read from the third byte of each read (lib/wslay_event.c), so
 * whether a bad reason is seen, and so whether (and with 1002 or 1007) the
 * server closes, depends on how reads split the close frame. Nothing can
 * follow a close frame, so what is compared is everything else: messages
 * delivered and frames written. */
static void check_output(const unsigned char *p, size_t n, tr_test_log *log)
{
    size_t i = 0;
    bool closed = false;
    while (i < n) {
        if (closed) {
            fuzz_fail("bytes after a close frame");
        }
        if (n - i < 2) {
            fuzz_fail("a truncated frame header");
        }
        if (!(p[i] & 0x80) || (p[i] & 0x70) || (p[i + 1] & 0x80)) {
            fuzz_fail("frame bits %02x %02x", p[i], p[i + 1]);
        }
        int op = p[i] & 0x0f;
        uint64_t len = p[i + 1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (n - i < 4) {
                fuzz_fail("truncated length");
            }
            len = (uint64_t)p[i + 2] << 8 | p[i + 3];
            h = 4;
        } else if (len == 127) {
            if (n - i < 10) {
                fuzz_fail("truncated length");
            }
            len = 0;
            for (int k = 0; k < 8; k++) {
                len = len << 8 | p[i + 2 + k];
            }
            h = 10;
        }
        if (len > n - i - h) {
            fuzz_fail("a truncated frame");
        }
        if (op == 8) {
            closed = true;
        } else {
            tr_test_log_printf(log, "f%d:", op);
            tr_test_log_frame(log, p + i + h, (size_t)len);
        }
        i += h + (size_t)len;
    }
}

static void feed(const uint8_t *s, size_t len, size_t max, bool echo, uint32_t seed, int mode,
                 tr_test_log *log)
{
    run r;
    memset(&r, 0, sizeof(r));
    r.max = max;
    r.echo = echo;
    tr_test_log_init(&r.log);
    if (tr__ws_session_init(&r.s, max, &sink, &r) != 0) {
        fuzz_fail("session init");
    }
    size_t pos = 0;
    while (pos < len && !tr__ws_session_done(&r.s)) {
        size_t chunk = len - pos;
        if (mode == 1) {
            chunk = 1;
        } else if (mode == 2) {
            size_t k = 1 + fuzz_rand(&seed) % 64;
            chunk = k < chunk ? k : chunk;
        }
        unsigned char *buf = malloc(chunk);
        memcpy(buf, s + pos, chunk);
        if (tr__ws_session_input(&r.s, buf, chunk) != 0) {
            fuzz_fail("input failed");
        }
        free(buf);
        pos += chunk;
    }
    tr_test_log_printf(log, "%s|", r.log.s);
    check_output(r.out, r.out_len, log);
    tr__ws_session_fini(&r.s);
    tr_test_log_fini(&r.log);
    free(r.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    size_t max = 1 + (size_t)fuzz_u8(&in) * 16;
    uint32_t seed = fuzz_u8(&in) | 1u;
    bool echo = fuzz_u8(&in) & 1;
    tr_test_log one, bytes, random;
    tr_test_log_init(&one);
    tr_test_log_init(&bytes);
    tr_test_log_init(&random);
    feed(in.p, in.len, max, echo, seed, 0, &one);
    if (in.len <= 4096) {
        feed(in.p, in.len, max, echo, seed, 1, &bytes);
        if (strcmp(one.s, bytes.s) != 0) {
            fuzz_fail("one read and byte reads differ:\n one: %s\n byte: %s", one.s, bytes.s);
        }
    }
    feed(in.p, in.len, max, echo, seed, 2, &random);
    if (strcmp(one.s, random.s) != 0) {
        fuzz_fail("one read and random reads differ:\n one: %s\n rand: %s", one.s, random.s);
    }
    tr_test_log_fini(&one);
    tr_test_log_fini(&bytes);
    tr_test_log_fini(&random);
    return 0;
}
