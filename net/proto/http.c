/* The HTTP/1.1 server layer: connection callbacks that feed each chunk
 * read to the request parser (http_parse.c), hand complete requests to
 * on_request one at a time, write the responses, and enforce the request
 * timeout with one of the connection actor's timers.
 *
 * A connection is in one of three modes: HTTP (requests), WS (switched by
 * tr_ws_accept; ws.c has it from then on), DONE (an error response or the
 * last response is on its way out: input is dropped). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/conn.h"
#include "proto.h"
#include "troupe/actor.h"
#include "troupe/timer.h"

tr_actor *tr__proto_actor(tr_conn *c)
{
    return c->actor;
}

void tr_http_config_defaults(tr_http_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_header_bytes = 8192;
    cfg->max_body_bytes = 1024 * 1024;
    cfg->max_headers = 100;
    cfg->request_timeout_ms = 10000;
}

tr_http *tr_http_new(const tr_http_config *cfg, int *err)
{
    int rc = TR_EINVAL;
    if (cfg == NULL || cfg->on_request == NULL || cfg->max_header_bytes == 0 ||
        cfg->max_headers == 0 || cfg->max_header_bytes > UINT32_MAX / 2) {
        goto fail;
    }
    rc = TR_ENOMEM;
    tr_http *http = calloc(1, sizeof(*http));
    if (http == NULL) {
        goto fail;
    }
    http->cfg = *cfg;
    if (err != NULL) {
        *err = 0;
    }
    return http;
fail:
    if (err != NULL) {
        *err = rc;
    }
    return NULL;
}

void tr_http_free(tr_http *http)
{
    free(http);
}

int tr_http_apply(tr_http *http, tr_conn_settings *conn)
{
    if (http == NULL || conn == NULL) {
        return TR_EINVAL;
    }
    conn->codec = tr_codec_raw_new(NULL);
    conn->handler = tr_http_handler();
    conn->user = http;
    return 0;
}

/* ---- the request timer ---- */

static void timer_stop(tr__proto_conn *pc)
{
    if (pc->timer_on) {
        tr_timer_cancel(tr__proto_actor(pc->c), pc->timer);
        pc->timer_on = false;
    }
}

static void timer_start(tr__proto_conn *pc)
{
    tr_actor *a = tr__proto_actor(pc->c);
    uint32_t ms = pc->http->cfg.request_timeout_ms;
    if (pc->timer_on || a == NULL || ms == 0) {
        return;
    }
    tr_msg *m = tr_msg_new(TR__MSG_HTTP_TIMEOUT, NULL, 0);
    if (m == NULL) {
        return; /* the idle timeout still bounds the request */
    }
    if (tr_send_after(a, tr_conn_actor(tr_conn_get_id(pc->c)), m, ms, &pc->timer) == 0) {
        pc->timer_on = true;
    }
}

/* ---- responses ---- */

const char *tr_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

static bool clean(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}

/* A response head being built: put() counts every byte and writes those
 * that fit, so one pass measures and a second one writes. */
typedef struct head_buf {
    char *p;
    size_t len, cap;
} head_buf;

static void put(head_buf *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(head_buf *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = h->p != NULL && h->len < h->cap ? h->p + h->len : NULL;
    int n = vsnprintf(dst, dst != NULL ? h->cap - h->len : 0, fmt, ap);
    va_end(ap);
    h->len += n > 0 ? (size_t)n : 0;
}

/* Formats the head into h->p (cap bytes; NULL 0 to measure). */
static void format_head(tr__proto_conn *pc, const tr_http_response *r, bool close, head_buf *h)
{
    int status = r->status;
    put(h, "HTTP/1.1 %d %s\r\n", status, tr_http_status_text(status));
    if (pc->http->cfg.server_name != NULL) {
        put(h, "Server: %s\r\n", pc->http->cfg.server_name);
    }
    if (r->content_type != NULL) {
        put(h, "Content-Type: %s\r\n", r->content_type);
    }
    for (size_t i = 0; i < r->nheaders; i++) {
        put(h, "%s: %s\r\n", r->headers[i].name, r->headers[i].value);
    }
    if (status >= 200 && status != 204 && status != 304) {
        put(h, "Content-Length: %zu\r\n", r->body_len);
    }
    if (close) {
        put(h, "Connection: close\r\n");
    } else if (tr__http_version(&pc->hp) == 10) {
        put(h, "Connection: keep-alive\r\n");
    }
    put(h, "\r\n");
}

/* Writes head and body in one shared buffer: one allocation, and the send
 * queue holds it without another copy. */
static int write_response(tr__proto_conn *pc, const tr_http_response *r, bool close, bool body)
{
    head_buf h = {NULL, 0, 0};
    format_head(pc, r, close, &h);
    size_t blen = body ? r->body_len : 0;
    char stack[1024];
    head_buf w = {h.len < sizeof(stack) ? stack : malloc(h.len + 1), 0, h.len + 1};
    if (w.p == NULL) {
        return TR_ENOMEM;
    }
    format_head(pc, r, close, &w);
    tr_buf *b = tr_buf_new(h.len + blen);
    if (b != NULL) {
        memcpy(tr_buf_data(b), w.p, h.len);
        if (blen > 0) {
            memcpy(tr_buf_data(b) + h.len, r->body, blen);
        }
    }
    if (w.p != stack) {
        free(w.p);
    }
    return b != NULL ? tr_conn_write_buf(pc->c, b) : TR_ENOMEM;
}

void tr__http_fail(tr__proto_conn *pc, int status, const char *why, const char *extra_header)
{
    char body[160];
    int n = snprintf(body, sizeof(body), "%s\n", why != NULL ? why : tr_http_status_text(status));
    tr_http_header extra[1];
    char name[64];
    tr_http_response r = {.status = status, .content_type = "text/plain", .body = body,
                          .body_len = n > 0 ? (size_t)n : 0};
    if (extra_header != NULL) {
        /* "Name: value" */
        const char *colon = strchr(extra_header, ':');
        size_t nl = colon != NULL ? (size_t)(colon - extra_header) : 0;
        if (nl > 0 && nl < sizeof(name)) {
            memcpy(name, extra_header, nl);
            name[nl] = '\0';
            extra[0] = (tr_http_header){name, colon + 2};
            r.headers = extra;
            r.nheaders = 1;
        }
    }
    timer_stop(pc);
    pc->answered = true;
    pc->close_after = true;
    pc->mode = MODE_DONE;
    write_response(pc, &r, true, true);
    tr_conn_close(pc->c);
}

int tr_http_respond_ex(tr_http_req *req, const tr_http_response *resp)
{
    tr__proto_conn *pc = req->pc;
    if (pc->answered) {
        return TR_ESTATE;
    }
    if (resp == NULL || resp->status < 100 || resp->status > 599 || resp->status == 101 ||
        !clean(resp->content_type) || (resp->body_len > 0 && resp->body == NULL)) {
        return TR_EINVAL;
    }
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (resp->headers[i].name == NULL || resp->headers[i].value == NULL ||
            !clean(resp->headers[i].name) || !clean(resp->headers[i].value) ||
            strchr(resp->headers[i].name, ':') != NULL) {
            return TR_EINVAL;
        }
    }
    pc->answered = true;
    if (resp->close) {
        pc->close_after = true;
    }
    bool body = strcmp(tr__http_method(&pc->hp), "HEAD") != 0 && resp->status >= 200 &&
                resp->status != 204 && resp->status != 304;
    int rc = write_response(pc, resp, pc->close_after || pc->hp.upgrade, body);
    if (rc < 0) {
        pc->close_after = true;
    }
    return rc;
}

int tr_http_respond(tr_http_req *req, int status, const char *content_type, const void *body,
                    size_t len)
{
    tr_http_response r = {.status = status, .content_type = content_type, .body = body,
                          .body_len = len};
    return tr_http_respond_ex(req, &r);
}

/* ---- the request ---- */

const char *tr_http_req_method(const tr_http_req *req)
{
    return tr__http_method(&req->pc->hp);
}

const char *tr_http_req_target(const tr_http_req *req)
{
    return tr__http_target(&req->pc->hp);
}

const char *tr_http_req_path(const tr_http_req *req)
{
    return req->path != NULL ? req->path : "";
}

const char *tr_http_req_query(const tr_http_req *req)
{
    return req->query;
}

int tr_http_req_version(const tr_http_req *req)
{
    return tr__http_version(&req->pc->hp);
}

const char *tr_http_req_header(const tr_http_req *req, const char *name)
{
    return tr__http_header(&req->pc->hp, name);
}

size_t tr_http_req_header_count(const tr_http_req *req)
{
    return tr__http_header_count(&req->pc->hp);
}

void tr_http_req_header_at(const tr_http_req *req, size_t i, const char **name, const char **value)
{
    tr__http_header_at(&req->pc->hp, i, name, value);
}

const void *tr_http_req_body(const tr_http_req *req, size_t *len)
{
    *len = req->pc->hp.body_len;
    return req->pc->hp.body != NULL ? (const void *)req->pc->hp.body : (const void *)"";
}

bool tr_http_req_keep_alive(const tr_http_req *req)
{
    return !req->pc->close_after;
}

bool tr_http_req_is_upgrade(const tr_http_req *req)
{
    return req->pc->hp.upgrade;
}

tr_conn *tr_http_req_conn(const tr_http_req *req)
{
    return req->pc->c;
}

void *tr_http_conn_user(const tr_http_req *req)
{
    return req->pc->user;
}

void tr_http_conn_set_user(tr_http_req *req, void *user)
{
    req->pc->user = user;
}

/* ---- the connection callbacks ---- */

static void dispatch(tr__proto_conn *pc)
{
    const char *target = tr__http_target(&pc->hp);
    const char *q = strchr(target, '?');
    size_t plen = q != NULL ? (size_t)(q - target) : strlen(target);
    tr_http_req req = {pc, malloc(plen + 1), q != NULL ? q + 1 : ""};
    if (req.path == NULL) {
        tr__http_fail(pc, 503, "out of memory", NULL);
        return;
    }
    memcpy(req.path, target, plen);
    req.path[plen] = '\0';
    pc->answered = false;
    pc->close_after = !pc->hp.keep_alive;
    int rc = pc->http->cfg.on_request(&req, pc->http->cfg.user);
    free(req.path);
    if (!pc->answered) {
        tr_http_response r = {.status = 500, .content_type = "text/plain",
                              .body = "no response\n", .body_len = 12};
        tr_http_respond_ex(&req, &r);
    }
    if (rc < 0 || (pc->hp.upgrade && pc->ws == NULL)) {
        pc->close_after = true;
    }
    if (pc->ws != NULL && pc->close_after) {
        tr__ws_free(pc->ws); /* accepted, but the application closes anyway */
        pc->ws = NULL;
    }
}

static void http_input(tr__proto_conn *pc, const unsigned char *data, size_t len)
{
    while (pc->mode == MODE_HTTP) {
        size_t n = tr__http_parse(&pc->hp, (const char *)data, len);
        data += n;
        len -= n;
        switch (pc->hp.state) {
        case TR__HTTP_MORE:
            if (pc->hp.started) {
                timer_start(pc);
            }
            if (pc->hp.want_continue) {
                pc->hp.want_continue = false;
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                tr_conn_write(pc->c, cont, sizeof(cont) - 1);
            }
            return;
        case TR__HTTP_ERROR:
            tr__http_fail(pc, pc->hp.status, pc->hp.why, NULL);
            return;
        case TR__HTTP_REQUEST:
        default:
            timer_stop(pc);
            dispatch(pc);
            if (pc->mode != MODE_HTTP) {
                return; /* dispatch failed */
            }
            if (pc->ws != NULL) {
                pc->mode = MODE_WS;
                tr__ws_start(pc, data, len);
                return;
            }
            if (pc->close_after) {
                pc->mode = MODE_DONE;
                tr_conn_close(pc->c);
                return;
            }
            tr__http_next(&pc->hp);
            if (len == 0) {
                return;
            }
            break;
        }
    }
}

static int on_open(tr_conn *c, void *user)
{
    tr_http *http = user;
    tr__proto_conn *pc = calloc(1, sizeof(*pc));
    if (pc == NULL) {
        return TR_ENOMEM;
    }
    pc->http = http;
    pc->c = c;
    tr__http_limits lim = {http->cfg.max_header_bytes, http->cfg.max_body_bytes,
                           http->cfg.max_headers};
    tr__http_parser_init(&pc->hp, &lim);
    tr_conn_set_user(c, pc);
    return 0;
}

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    tr__proto_conn *pc = tr_conn_user(c);
    if (pc == NULL) {
        return 0;
    }
    switch (pc->mode) {
    case MODE_HTTP:
        http_input(pc, data, len);
        break;
    case MODE_WS:
        tr__ws_input(pc, data, len);
        break;
    default:
        break; /* closing: input is dropped */
    }
    return 0;
}

static void on_message(tr_conn *c, tr_msg *m, void *user)
{
    (void)user;
    tr__proto_conn *pc = tr_conn_user(c);
    if (pc == NULL) {
        return;
    }
    uint32_t type = tr_msg_type(m);
    if (type == TR__MSG_HTTP_TIMEOUT) {
        if (pc->mode == MODE_HTTP && pc->timer_on && tr_msg_ref(m) == pc->timer) {
            pc->timer_on = false;
            tr__http_fail(pc, 408, "request timeout", NULL);
        }
        return;
    }
    if (pc->mode == MODE_WS) {
        tr__ws_message(pc, m);
    } else if (type < TR_MSG_PROTO && pc->mode == MODE_HTTP && pc->http->cfg.on_message != NULL) {
        pc->http->cfg.on_message(c, m, pc->http->cfg.user);
    }
}

static tr_error_action on_error(tr_conn *c, tr_error_class cls, int err, void *user)
{
    (void)err;
    (void)user;
    tr__proto_conn *pc = tr_conn_user(c);
    if (pc != NULL && cls == TR_ERR_IDLE_TIMEOUT) {
        if (pc->mode == MODE_HTTP && pc->hp.started) {
            tr__http_fail(pc, 408, "request timeout", NULL);
        } else if (pc->mode == MODE_WS && pc->ws != NULL && pc->ws->cfg->ping_interval_ms > 0) {
            return TR_CONTINUE; /* the ping timer decides */
        }
    }
    return TR_DISCONNECT;
}

static void on_shutdown(tr_conn *c, void *user)
{
    (void)user;
    tr__proto_conn *pc = tr_conn_user(c);
    if (pc != NULL && pc->mode == MODE_WS) {
        tr__ws_shutdown(pc);
    }
}

static void on_close(tr_conn *c, int reason, void *user)
{
    (void)reason;
    (void)user;
    tr__proto_conn *pc = tr_conn_user(c);
    if (pc == NULL) {
        return;
    }
    timer_stop(pc);
    if (pc->ws != NULL) {
        tr__ws_closed(pc);
    }
    tr__http_parser_fini(&pc->hp);
    tr_conn_set_user(c, NULL);
    free(pc);
}

static const tr_handler http_handler = {
    .on_open = on_open,
    .on_frame = on_frame,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .on_error = on_error,
    .on_message = on_message,
};

const tr_handler *tr_http_handler(void)
{
    return &http_handler;
}
