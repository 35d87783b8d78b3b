/* troupe-chat: the HTTP listener. GET / serves the page (demo/chat/web/,
 * embedded at build time), /healthz says ok, /metrics the Prometheus
 * text. */
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "troupe/http.h"
#include "troupe/ws.h"

extern const unsigned char chat_page[];
extern const size_t chat_page_len;

#define METRICS_BYTES (64 * 1024)

static const char *const subprotocols[] = {"text.ircv3.net", NULL};
static tr_ws_config ws_cfg; /* set once by chat_http_start, read-only after */

/* The text grows with the workers and listeners, and may grow between
 * two passes: try again with what the last one needed, a few times. */
static int metrics(tr_http_req *req, chat *ch)
{
    size_t cap = METRICS_BYTES;
    for (int tries = 0; tries < 4; tries++) {
        char *buf = malloc(cap);
        if (buf == NULL) {
            break;
        }
        size_t n = chat_metrics(ch, ch->listeners, ch->nlisteners, buf, cap);
        if (n < cap) {
            int rc = tr_http_respond(req, 200, "text/plain; version=0.0.4", buf, n);
            free(buf);
            return rc;
        }
        free(buf);
        cap = n + n / 4 + 1;
    }
    return tr_http_respond(req, 503, "text/plain", "metrics unavailable\n", 20);
}

static int on_request(tr_http_req *req, void *user)
{
    chat *ch = user;
    const char *path = tr_http_req_path(req);
    if (strcmp(path, "/ws") == 0) {
        return tr_ws_accept(req, &ws_cfg, NULL); /* then chat_ws_handler */
    }
    const char *method = tr_http_req_method(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return tr_http_respond(req, 405, "text/plain", "GET only\n", 9);
    }
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        return tr_http_respond(req, 200, "text/html; charset=utf-8", chat_page, chat_page_len);
    }
    if (strcmp(path, "/healthz") == 0) {
        return tr_http_respond(req, 200, "text/plain", "ok\n", 3);
    }
    if (strcmp(path, "/metrics") == 0) {
        return metrics(req, ch);
    }
    return tr_http_respond(req, 404, "text/plain", "not found\n", 10);
}

tr_server *chat_http_start(chat *ch, const char *listen, tr_http **out, int *err)
{
    tr_ws_config_defaults(&ws_cfg);
    ws_cfg.handler = &chat_ws_handler;
    ws_cfg.user = ch;
    ws_cfg.subprotocols = subprotocols;
    ws_cfg.max_message_bytes = IRC_MAX_LINE * 4;
    ws_cfg.ping_interval_ms = ch->cfg.ping_timeout_ms;
    tr_http_config hc;
    tr_http_config_defaults(&hc);
    hc.on_request = on_request;
    hc.user = ch;
    hc.server_name = "troupe-chat";
    tr_http *http = tr_http_new(&hc, err);
    if (http == NULL) {
        return NULL;
    }
    tr_server_config cfg;
    tr_server_config_defaults(&cfg);
    cfg.listen = listen;
    if ((*err = tr_http_apply(http, &cfg.conn)) < 0) {
        tr_http_free(http);
        return NULL;
    }
    tr_server *srv = tr_server_new(ch->rt, &cfg, err);
    if (srv == NULL || (*err = tr_server_start(srv)) < 0) {
        tr_server_free(srv);
        tr_http_free(http);
        return NULL;
    }
    *out = http;
    return srv;
}
