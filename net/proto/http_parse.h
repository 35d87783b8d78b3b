/* Internal: HTTP/1.1 request reading over Debian's http_parser (2.9), with
 * troupe's limits. No connection and no runtime here, so the libFuzzer
 * target drives exactly the code the server runs.
 *
 * tr__http_parse consumes bytes until one request is complete, an error
 * is found, or the input runs out; the caller looks at `state`, handles a
 * complete request (tr__http_req_* below), calls tr__http_next and feeds
 * the rest. Requests therefore come out one at a time, in order, which is
 * what keeps pipelined responses in order. Owning worker only. */
#ifndef TROUPE_NET_PROTO_HTTP_PARSE_H
#define TROUPE_NET_PROTO_HTTP_PARSE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum tr__http_state {
    TR__HTTP_MORE = 0,     /* all input consumed; waiting for more */
    TR__HTTP_REQUEST = 1,  /* a request is complete: handle it, then tr__http_next */
    TR__HTTP_ERROR = 2     /* status says which (400, 413, 431); nothing more is parsed */
} tr__http_state;

typedef struct tr__http_limits {
    size_t max_header_bytes; /* request line and headers as counted below */
    size_t max_body_bytes;
    unsigned max_headers;
} tr__http_limits;

typedef struct tr__http_hdr {
    uint32_t name, name_len, value, value_len; /* offsets into head */
} tr__http_hdr;

typedef struct tr__http_parser {
    http_parser p;
    tr__http_limits lim;
    tr__http_state state;
    int status;          /* with TR__HTTP_ERROR: the status to answer */
    const char *why;     /* with TR__HTTP_ERROR: a short reason, static */
    bool started;        /* a request's first byte was seen (not yet complete) */
    bool head_done;      /* its headers are complete */
    bool want_continue;  /* "Expect: 100-continue" with a body to come */
    bool keep_alive;     /* valid with TR__HTTP_REQUEST */
    bool upgrade;        /* valid with TR__HTTP_REQUEST: an Upgrade request */
    int last;            /* 0 nothing, 1 url, 2 field, 3 value: which callback came last */
    /* Request line and headers, each string NUL-terminated, in one buffer
     * that grows to at most max_header_bytes plus the terminators. */
    char *head;
    size_t head_len, head_cap;
    size_t head_count;   /* bytes counted against max_header_bytes */
    uint32_t url, url_len;
    tr__http_hdr *hdrs;
    unsigned nhdrs, hdrs_cap;
    unsigned char *body;
    size_t body_len, body_cap;
} tr__http_parser;

/* Sets up hp for a new connection. Returns 0 (it allocates nothing yet). */
int tr__http_parser_init(tr__http_parser *hp, const tr__http_limits *lim);
/* Frees what hp holds. */
void tr__http_parser_fini(tr__http_parser *hp);

/* Parses from data[0..len); returns the bytes consumed (<= len) and sets
 * hp->state. With TR__HTTP_REQUEST the request ends at the returned
 * offset; bytes after it belong to the next request (or, after an
 * upgrade, to the next protocol). */
size_t tr__http_parse(tr__http_parser *hp, const char *data, size_t len);

/* Forgets the complete request and gets ready for the next one. */
void tr__http_next(tr__http_parser *hp);

/* Views of the complete request (valid until tr__http_next). */
const char *tr__http_method(const tr__http_parser *hp);
const char *tr__http_target(const tr__http_parser *hp);
int tr__http_version(const tr__http_parser *hp); /* 10, 11 */
const char *tr__http_header(const tr__http_parser *hp, const char *name); /* case-insensitive */
size_t tr__http_header_count(const tr__http_parser *hp);
void tr__http_header_at(const tr__http_parser *hp, size_t i, const char **name, const char **value);

/* True if the comma-separated header value list contains token
 * (case-insensitive), as "Connection: keep-alive, Upgrade". */
bool tr__http_list_has(const char *list, const char *token);

#endif
