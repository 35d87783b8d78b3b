/* libFuzzer target for HTTP request heads (and bodies): net/proto's
 * request reader over http_parser, as the HTTP layer drives it.
 *
 * Input: [flags][header limit byte][seed] then the byte stream a client
 * sends. Checks, beyond "no crash": the requests and the error found are
 * the same whether the stream comes in one read, one byte per read, or
 * reads of random sizes; no request exceeds the limits it was given; an
 * error status is one of 400, 413, 431; header lookup finds every header
 * it lists, in any case. Which error status comes first may depend on the
 * split (see feed), so transcripts compare errors by their presence. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "http_parse.h"

static void check_request(const tr__http_parser *hp, tr_test_log *log)
{
    if (hp->body_len > hp->lim.max_body_bytes) {
        fuzz_fail("body %zu over the limit %zu", hp->body_len, hp->lim.max_body_bytes);
    }
    if (hp->head_count > hp->lim.max_header_bytes || hp->nhdrs > hp->lim.max_headers) {
        fuzz_fail("head %zu bytes / %u headers over the limits", hp->head_count, hp->nhdrs);
    }
    tr_test_log_printf(log, "[%s %s v%d ka%d up%d", tr__http_method(hp), tr__http_target(hp),
                       tr__http_version(hp), hp->keep_alive, hp->upgrade);
    for (size_t i = 0; i < tr__http_header_count(hp); i++) {
        const char *name, *value;
        tr__http_header_at(hp, i, &name, &value);
        tr_test_log_printf(log, " %s=%s", name, value);
        char upper[256];
        size_t n = strlen(name);
        if (n < sizeof(upper)) {
            for (size_t k = 0; k <= n; k++) {
                upper[k] = (char)toupper((unsigned char)name[k]);
            }
            const char *found = tr__http_header(hp, upper);
            if (found == NULL) {
                fuzz_fail("header %s not found as %s", name, upper);
            }
        }
    }
    tr_test_log_printf(log, " body%zu]", hp->body_len);
    tr_test_log_frame(log, hp->body, hp->body_len);
}

/* Feeds s in reads of the sizes `next` gives, the way http.c does. */
static void feed(const tr__http_limits *lim, const uint8_t *s, size_t len, uint32_t seed, int mode,
                 tr_test_log *log)
{
    tr__http_parser hp;
    tr__http_parser_init(&hp, lim);
    size_t pos = 0;
    bool stop = false;
    while (pos < len && !stop) {
        size_t chunk = len - pos;
        if (mode == 1) {
            chunk = 1;
        } else if (mode == 2) {
            size_t r = 1 + fuzz_rand(&seed) % 64;
            chunk = r < chunk ? r : chunk;
        }
        /* An exact-size copy: an over-read is an ASan report. */
        char *buf = malloc(chunk);
        memcpy(buf, s + pos, chunk);
        size_t off = 0;
        while (!stop) {
            size_t n = tr__http_parse(&hp, buf + off, chunk - off);
            if (n > chunk - off) {
                fuzz_fail("consumed %zu of %zu", n, chunk - off);
            }
            off += n;
            if (hp.state == TR__HTTP_MORE) {
                if (off != chunk) {
                    fuzz_fail("MORE with %zu bytes left", chunk - off);
                }
                break;
            }
            if (hp.state == TR__HTTP_ERROR) {
                if (hp.status != 400 && hp.status != 413 && hp.status != 431) {
                    fuzz_fail("error status %d", hp.status);
                }
                /* Which error comes first may depend on the split:
                 * http_parser reports a header's bytes when the header or
                 * the read ends, so a read ending inside an overlong name
                 * finds 431 where one whole read first finds a bad byte
                 * (400). Only the fact of an error is compared. */
                tr_test_log_printf(log, "!error");
                stop = true;
                break;
            }
            check_request(&hp, log);
            if (hp.upgrade || !hp.keep_alive) {
                stop = true; /* the rest is another protocol, or unread */
                break;
            }
            tr__http_next(&hp);
            if (off == chunk) {
                break;
            }
        }
        free(buf);
        pos += chunk;
    }
    tr__http_parser_fini(&hp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    uint8_t hbyte = fuzz_u8(&in);
    uint32_t seed = fuzz_u8(&in) | 1u;
    tr__http_limits lim = {8192, 1024 * 1024, 100};
    if (flags & 1) {
        lim.max_header_bytes = 16 + (size_t)hbyte * 4; /* small limits hit every edge */
        lim.max_headers = 1 + (flags >> 4);
        lim.max_body_bytes = (size_t)hbyte;
    }
    tr_test_log one, bytes, random;
    tr_test_log_init(&one);
    tr_test_log_init(&bytes);
    tr_test_log_init(&random);
    feed(&lim, in.p, in.len, seed, 0, &one);
    if (in.len <= 4096) {
        feed(&lim, in.p, in.len, seed, 1, &bytes);
        if (strcmp(one.s, bytes.s) != 0) {
            fuzz_fail("one read and byte reads differ:\n one: %s\n byte: %s", one.s, bytes.s);
        }
    }
    feed(&lim, in.p, in.len, seed, 2, &random);
    if (strcmp(one.s, random.s) != 0) {
        fuzz_fail("one read and random reads differ:\n one: %s\n rand: %s", one.s, random.s);
    }
    tr_test_log_fini(&one);
    tr_test_log_fini(&bytes);
    tr_test_log_fini(&random);
    return 0;
}
