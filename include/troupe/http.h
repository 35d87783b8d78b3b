/* troupe: an HTTP/1.1 server layer on troupe connections.
 *
 * Parsing is Debian's http_parser (libhttp-parser-dev, 2.9); this layer
 * runs it inside a server's connection callbacks and turns what it finds
 * into one call per request. Set a server up with it in three lines:
 *
 *     tr_http *http = tr_http_new(&hcfg, &err);   // on_request and limits
 *     tr_server_config_defaults(&cfg);
 *     tr_http_apply(http, &cfg.conn);             // codec, handler, user
 *
 * Every connection then reads requests in order: request line, headers
 * (case-insensitive lookup), a body by Content-Length or chunked;
 * keep-alive (HTTP/1.1 by default, HTTP/1.0 with "Connection:
 * keep-alive"), pipelining (answered in order, since each request is
 * handed out only after the one before it was answered), "Connection:
 * close", "Expect: 100-continue". The handler answers with
 * tr_http_respond before it returns.
 *
 * Limits, each answered with a status and a close: request line and
 * header bytes (431), header count (431), body bytes (413; at once when
 * Content-Length says so), the time from a request's first byte to its
 * last (408), malformed input (400). A connection idle between requests
 * closes after the server's conn.idle_timeout_ms.
 *
 * A request with "Upgrade: websocket" may be turned into a WebSocket
 * connection by tr_ws_accept (troupe/ws.h) from inside on_request. */
#ifndef TROUPE_HTTP_H
#define TROUPE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/conn.h"
#include "troupe/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_http tr_http;
typedef struct tr_http_req tr_http_req;

/* Message types from here up are reserved for troupe's protocol layers
 * (timers, WebSocket sends by id): an application sending its own
 * messages to an HTTP or WebSocket connection numbers them from
 * TR_MSG_USER up to below this. */
#define TR_MSG_PROTO 0x7fff0000u

typedef struct tr_http_config {
    /* Required. One complete request (head and body). Answer it with
     * tr_http_respond (or tr_ws_accept) before returning; a request left
     * unanswered gets a 500. Return 0, or a negative code to close the
     * connection after the answer. Runs on the connection's worker;
     * `req` is valid only during the call. */
    int (*on_request)(tr_http_req *req, void *user);
    /* Optional: an application message (type >= TR_MSG_USER and below
     * TR_MSG_PROTO) reached a connection still speaking HTTP. The runtime
     * frees m after the call unless it is claimed. */
    void (*on_message)(tr_conn *c, tr_msg *m, void *user);
    void *user;               /* handed to the callbacks above */
    size_t max_header_bytes;  /* request line + headers; default 8192 (431) */
    size_t max_body_bytes;    /* default 1 MiB (413) */
    unsigned max_headers;     /* default 100 (431) */
    uint32_t request_timeout_ms; /* first byte to last of a request; default 10000 (408); 0 off */
    const char *server_name;  /* "Server:" header in responses; default NULL = none */
} tr_http_config;

/* Fills cfg with the defaults above (on_request unset).
 * Threads: any thread. */
TR_API void tr_http_config_defaults(tr_http_config *cfg);

/* Creates the layer (shared, read-only, by every connection of the servers
 * it is applied to). cfg is copied; the strings it points to must outlive
 * the layer. Returns NULL with *err = TR_EINVAL (no on_request, a zero
 * limit) or TR_ENOMEM. Threads: any thread. */
TR_API tr_http *tr_http_new(const tr_http_config *cfg, int *err);

/* Frees the layer; NULL is a no-op. Call it after every server using it
 * is freed. Threads: any thread. */
TR_API void tr_http_free(tr_http *http);

/* Points conn at the layer: the raw codec, tr_http_handler() and `user` =
 * http. A connection's own user pointer (tr_conn_set_user) then belongs
 * to the layer: keep per-connection state in tr_http_conn_set_user or
 * tr_ws_set_user. Returns 0, or TR_EINVAL if an argument is NULL.
 * Threads: any thread. */
TR_API int tr_http_apply(tr_http *http, tr_conn_settings *conn);

/* The connection callbacks of the layer (for a hand-made config: codec
 * raw, user = the tr_http). Never NULL. Threads: any thread. */
TR_API const tr_handler *tr_http_handler(void);

/* ---- the request, inside on_request ----
 * Threads: the connection's worker, inside on_request. Strings are
 * NUL-terminated and valid during the call. None of these fail. */

TR_API const char *tr_http_req_method(const tr_http_req *req);  /* "GET", "POST", ... */
TR_API const char *tr_http_req_target(const tr_http_req *req);  /* as sent: "/a/b?x=1" */
TR_API const char *tr_http_req_path(const tr_http_req *req);    /* "/a/b" */
TR_API const char *tr_http_req_query(const tr_http_req *req);   /* "x=1", or "" */
TR_API int tr_http_req_version(const tr_http_req *req);         /* 10 or 11 */
/* The first header of that name (any case), or NULL. */
TR_API const char *tr_http_req_header(const tr_http_req *req, const char *name);
/* All headers in the order received: count, then name and value of one. */
TR_API size_t tr_http_req_header_count(const tr_http_req *req);
TR_API void tr_http_req_header_at(const tr_http_req *req, size_t i, const char **name,
                                  const char **value);
/* The body (chunked bodies are joined); *len gets its length. Never NULL. */
TR_API const void *tr_http_req_body(const tr_http_req *req, size_t *len);
/* The connection stays open after this request (keep-alive). */
TR_API bool tr_http_req_keep_alive(const tr_http_req *req);
/* The request asks to switch protocol ("Connection: upgrade" with an
 * "Upgrade:" header). Unless tr_ws_accept takes it, the connection closes
 * after the answer. */
TR_API bool tr_http_req_is_upgrade(const tr_http_req *req);
/* The connection, e.g. for tr_conn_peer or tr_conn_get_id. */
TR_API tr_conn *tr_http_req_conn(const tr_http_req *req);
/* Per-connection state for the application, kept across the requests of
 * one connection (NULL at first). The layer never frees it. */
TR_API void *tr_http_conn_user(const tr_http_req *req);
TR_API void tr_http_conn_set_user(tr_http_req *req, void *user);

/* One response header. */
typedef struct tr_http_header {
    const char *name;
    const char *value;
} tr_http_header;

typedef struct tr_http_response {
    int status;                   /* 100..599 except 101 (tr_ws_accept sends that) */
    const char *content_type;     /* NULL: no Content-Type */
    const tr_http_header *headers; /* extra headers; not Content-Length nor Connection */
    size_t nheaders;
    const void *body;
    size_t body_len;              /* sent as Content-Length (no body for HEAD, 204, 304) */
    bool close;                   /* close the connection after this response */
} tr_http_response;

/* Writes the response (tr_conn_write: status line, headers, Content-Length,
 * "Connection: close" when the connection ends here, and the body). Once
 * per request. Returns 0, TR_ESTATE (already answered), TR_EINVAL (bad
 * status, a header with CR or LF) or what tr_conn_write returns
 * (TR_EBUFFULL, TR_ECLOSED, TR_ENOMEM: the connection is then closed).
 * Threads: the connection's worker, inside on_request. */
TR_API int tr_http_respond_ex(tr_http_req *req, const tr_http_response *resp);

/* tr_http_respond_ex with a content type and body only. Same returns.
 * Threads: the connection's worker, inside on_request. */
TR_API int tr_http_respond(tr_http_req *req, int status, const char *content_type,
                           const void *body, size_t len);

/* The reason phrase of a status ("Not Found"); "" for an unknown one.
 * Threads: any thread. */
TR_API const char *tr_http_status_text(int status);

#ifdef __cplusplus
}
#endif

#endif
