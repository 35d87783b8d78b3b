/* HTTP/1.1 request reading: http_parser does the parsing; this file keeps
 * what a request handler needs (the target, headers, body) and enforces
 * the limits, so a peer cannot make a connection hold more than
 * max_header_bytes + max_body_bytes however it splits its bytes.
 *
 * http_parser calls back with pieces of the URL and of each header name
 * and value, split wherever the reads split; `last` tells a new piece from
 * a continued one. The parser is paused at the end of every message, so
 * exactly one request is handed out at a time. */
#include "http_parse.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { LAST_NONE = 0, LAST_URL = 1, LAST_FIELD = 2, LAST_VALUE = 3 };

static tr__http_parser *of(http_parser *p)
{
    return (tr__http_parser *)((char *)p - offsetof(tr__http_parser, p));
}

/* Stops parsing with an error status; returning nonzero from a callback
 * makes http_parser stop at once. */
static int fail(tr__http_parser *hp, int status, const char *why)
{
    if (hp->status == 0) {
        hp->status = status;
        hp->why = why;
    }
    return 1;
}

static int head_put(tr__http_parser *hp, const char *at, size_t len)
{
    if (hp->head_len + len + 1 > hp->head_cap) {
        size_t cap = hp->head_cap ? hp->head_cap : 256;
        while (cap < hp->head_len + len + 1) {
            cap *= 2;
        }
        char *grown = realloc(hp->head, cap);
        if (grown == NULL) {
            return fail(hp, 503, "out of memory");
        }
        hp->head = grown;
        hp->head_cap = cap;
    }
    memcpy(hp->head + hp->head_len, at, len);
    hp->head_len += len;
    return 0;
}

/* Ends the string being built (the URL, a name or a value). */
static int head_end(tr__http_parser *hp)
{
    if (hp->last == LAST_NONE) {
        return 0;
    }
    if (head_put(hp, "", 0) != 0) {
        return 1;
    }
    hp->head[hp->head_len++] = '\0';
    return 0;
}

static int count(tr__http_parser *hp, size_t n)
{
    hp->head_count += n;
    if (hp->head_count > hp->lim.max_header_bytes) {
        return fail(hp, 431, "request header fields too large");
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    tr__http_parser *hp = of(p);
    hp->started = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    tr__http_parser *hp = of(p);
    if (hp->last != LAST_URL) {
        /* The request line's other bytes: method, spaces, version, CRLF. */
        if (count(hp, strlen(http_method_str((enum http_method)p->method)) + 12) != 0) {
            return 1;
        }
        hp->url = (uint32_t)hp->head_len;
        hp->last = LAST_URL;
    }
    if (count(hp, len) != 0 || head_put(hp, at, len) != 0) {
        return 1;
    }
    hp->url_len += (uint32_t)len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    tr__http_parser *hp = of(p);
    if (hp->last != LAST_FIELD) {
        if (hp->nhdrs >= hp->lim.max_headers) {
            return fail(hp, 431, "too many header fields");
        }
        if (hp->nhdrs == hp->hdrs_cap) {
            unsigned cap = hp->hdrs_cap ? hp->hdrs_cap * 2 : 16;
            tr__http_hdr *grown = realloc(hp->hdrs, cap * sizeof(*grown));
            if (grown == NULL) {
                return fail(hp, 503, "out of memory");
            }
            hp->hdrs = grown;
            hp->hdrs_cap = cap;
        }
        if (head_end(hp) != 0 || count(hp, 4) != 0) { /* ": " and CRLF */
            return 1;
        }
        hp->hdrs[hp->nhdrs++] = (tr__http_hdr){(uint32_t)hp->head_len, 0, 0, 0};
        hp->last = LAST_FIELD;
    }
    if (count(hp, len) != 0 || head_put(hp, at, len) != 0) {
        return 1;
    }
    hp->hdrs[hp->nhdrs - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    tr__http_parser *hp = of(p);
    tr__http_hdr *h = &hp->hdrs[hp->nhdrs - 1];
    if (hp->last != LAST_VALUE) {
        if (head_end(hp) != 0) {
            return 1;
        }
        h->value = (uint32_t)hp->head_len;
        hp->last = LAST_VALUE;
    }
    if (count(hp, len) != 0 || head_put(hp, at, len) != 0) {
        return 1;
    }
    h->value_len += (uint32_t)len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    tr__http_parser *hp = of(p);
    /* Here 1 would mean "no body" to http_parser: errors are -1. */
    if (head_end(hp) != 0) {
        return -1;
    }
    if (hp->last == LAST_FIELD) {
        /* http_parser ends a header line only after its value, so a name
         * without one cannot happen; keep the table consistent anyway. */
        hp->hdrs[hp->nhdrs - 1].value = (uint32_t)hp->head_len - 1;
    }
    hp->last = LAST_NONE;
    hp->head_done = true;
    bool has_length = p->content_length != ULLONG_MAX;
    if (has_length && p->content_length > hp->lim.max_body_bytes) {
        fail(hp, 413, "request body too large");
        return -1;
    }
    const char *expect = tr__http_header(hp, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
        ((has_length && p->content_length > 0) || (p->flags & F_CHUNKED))) {
        hp->want_continue = p->http_major == 1 && p->http_minor >= 1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    tr__http_parser *hp = of(p);
    if (len > hp->lim.max_body_bytes - hp->body_len) {
        return fail(hp, 413, "request body too large");
    }
    if (hp->body_len + len > hp->body_cap) {
        size_t cap = hp->body_cap ? hp->body_cap : 1024;
        while (cap < hp->body_len + len) {
            cap *= 2;
        }
        /* The body never needs more than the limit. */
        if (cap > hp->lim.max_body_bytes) {
            cap = hp->lim.max_body_bytes;
        }
        unsigned char *grown = realloc(hp->body, cap);
        if (grown == NULL) {
            return fail(hp, 503, "out of memory");
        }
        hp->body = grown;
        hp->body_cap = cap;
    }
    memcpy(hp->body + hp->body_len, at, len);
    hp->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    tr__http_parser *hp = of(p);
    /* Trailers of a chunked body come as headers after on_headers_complete:
     * end the last one here. */
    if (head_end(hp) != 0) {
        return -1;
    }
    hp->last = LAST_NONE;
    hp->state = TR__HTTP_REQUEST;
    hp->keep_alive = http_should_keep_alive(p) != 0;
    hp->upgrade = p->upgrade != 0;
    http_parser_pause(p, 1); /* one request at a time */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int tr__http_parser_init(tr__http_parser *hp, const tr__http_limits *lim)
{
    memset(hp, 0, sizeof(*hp));
    hp->lim = *lim;
    http_parser_init(&hp->p, HTTP_REQUEST);
    return 0;
}

void tr__http_parser_fini(tr__http_parser *hp)
{
    free(hp->head);
    free(hp->hdrs);
    free(hp->body);
    memset(hp, 0, sizeof(*hp));
}

size_t tr__http_parse(tr__http_parser *hp, const char *data, size_t len)
{
    if (hp->state != TR__HTTP_MORE) {
        return 0; /* a request waits for tr__http_next, or parsing stopped */
    }
    size_t n = http_parser_execute(&hp->p, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&hp->p);
    if (hp->state == TR__HTTP_REQUEST) {
        if (e == HPE_PAUSED) {
            http_parser_pause(&hp->p, 0);
        }
        return n;
    }
    if (e != HPE_OK || n != len) {
        if (hp->status == 0) {
            hp->status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
            hp->why = e == HPE_HEADER_OVERFLOW ? "request header fields too large"
                                               : http_errno_description(e);
        }
        hp->state = TR__HTTP_ERROR;
    }
    return n;
}

void tr__http_next(tr__http_parser *hp)
{
    hp->state = TR__HTTP_MORE;
    hp->started = hp->head_done = hp->want_continue = false;
    hp->keep_alive = hp->upgrade = false;
    hp->last = LAST_NONE;
    hp->head_len = hp->head_count = 0;
    hp->url = hp->url_len = 0;
    hp->nhdrs = 0;
    hp->body_len = 0;
    /* A large body is not kept for the next request of the connection. */
    if (hp->body_cap > 64 * 1024) {
        free(hp->body);
        hp->body = NULL;
        hp->body_cap = 0;
    }
}

const char *tr__http_method(const tr__http_parser *hp)
{
    return http_method_str((enum http_method)hp->p.method);
}

const char *tr__http_target(const tr__http_parser *hp)
{
    return hp->head != NULL && hp->url_len > 0 ? hp->head + hp->url : "";
}

int tr__http_version(const tr__http_parser *hp)
{
    return hp->p.http_major * 10 + hp->p.http_minor;
}

const char *tr__http_header(const tr__http_parser *hp, const char *name)
{
    for (unsigned i = 0; i < hp->nhdrs; i++) {
        if (strcasecmp(hp->head + hp->hdrs[i].name, name) == 0) {
            return hp->head + hp->hdrs[i].value;
        }
    }
    return NULL;
}

size_t tr__http_header_count(const tr__http_parser *hp)
{
    return hp->nhdrs;
}

void tr__http_header_at(const tr__http_parser *hp, size_t i, const char **name, const char **value)
{
    *name = hp->head + hp->hdrs[i].name;
    *value = hp->head + hp->hdrs[i].value;
}

bool tr__http_list_has(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *s = list;
    while (s != NULL && *s != '\0') {
        while (*s == ' ' || *s == '\t' || *s == ',') {
            s++;
        }
        const char *end = strchr(s, ',');
        size_t n = end != NULL ? (size_t)(end - s) : strlen(s);
        size_t m = n;
        while (m > 0 && (s[m - 1] == ' ' || s[m - 1] == '\t')) {
            m--;
        }
        if (m == tl && strncasecmp(s, token, tl) == 0) {
            return true;
        }
        s = end;
    }
    return false;
}
