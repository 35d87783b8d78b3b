/* The WebSocket layer: the handshake (from inside an HTTP request), and a
 * WebSocket session (ws_session.c) put on the connection: its output goes
 * to tr_conn_write, its messages to the application, its liveness to the
 * connection actor's timers, and sends by id arrive as messages to the
 * connection actor, so they are framed on the owning worker in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto.h"
#include "troupe/timer.h"
#include "ws_key.h"

void tr_ws_config_defaults(tr_ws_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_message_bytes = 1024 * 1024;
    cfg->ping_interval_ms = 30000;
    cfg->close_timeout_ms = 5000;
}

/* ---- the session's sink ---- */

static int sink_write(void *arg, const void *data, size_t len)
{
    tr_ws *ws = arg;
    return tr_conn_write(ws->pc->c, data, len);
}

static void sink_message(void *arg, int opcode, const unsigned char *data, size_t len)
{
    tr_ws *ws = arg;
    if (ws->pc->mode == MODE_WS) {
        ws->cfg->handler->on_message(ws, (tr_ws_opcode)opcode, data, len, ws->cfg->user);
    }
}

static const tr__ws_sink sink = {sink_write, sink_message};

/* ---- the handshake ---- */

static bool key_ok(const char *key)
{
    /* 16 bytes in base64: 22 characters and "==". */
    if (key == NULL || strlen(key) != 24 || strcmp(key + 22, "==") != 0) {
        return false;
    }
    for (int i = 0; i < 22; i++) {
        char ch = key[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/')) {
            return false;
        }
    }
    return true;
}

/* The first of our subprotocols that any Sec-WebSocket-Protocol header
 * offers; *offered says whether the client offered any at all. */
static const char *pick_protocol(const tr__http_parser *hp, const tr_ws_config *cfg, bool *offered)
{
    *offered = false;
    size_t n = tr__http_header_count(hp);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        tr__http_header_at(hp, i, &name, &value);
        if (strcasecmp(name, "Sec-WebSocket-Protocol") == 0 && value[0] != '\0') {
            *offered = true;
        }
    }
    for (const char *const *p = cfg->subprotocols; p != NULL && *p != NULL; p++) {
        for (size_t i = 0; i < n; i++) {
            const char *name, *value;
            tr__http_header_at(hp, i, &name, &value);
            if (strcasecmp(name, "Sec-WebSocket-Protocol") == 0 && tr__http_list_has(value, *p)) {
                return *p;
            }
        }
    }
    return NULL;
}

int tr_ws_accept(tr_http_req *req, const tr_ws_config *cfg, void *conn_user)
{
    tr__proto_conn *pc = req->pc;
    const tr__http_parser *hp = &pc->hp;
    if (pc->answered || pc->ws != NULL) {
        return TR_ESTATE;
    }
    if (cfg == NULL || cfg->handler == NULL || cfg->handler->on_message == NULL ||
        cfg->max_message_bytes == 0) {
        tr__http_fail(pc, 500, "websocket layer misconfigured", NULL);
        return TR_EINVAL;
    }
    const char *upgrade = tr__http_header(hp, "Upgrade");
    const char *connection = tr__http_header(hp, "Connection");
    const char *version = tr__http_header(hp, "Sec-WebSocket-Version");
    const char *key = tr__http_header(hp, "Sec-WebSocket-Key");
    if (strcmp(tr__http_method(hp), "GET") != 0 || tr__http_version(hp) < 11 ||
        upgrade == NULL || !tr__http_list_has(upgrade, "websocket") || connection == NULL ||
        !tr__http_list_has(connection, "upgrade")) {
        tr__http_fail(pc, 400, "not a websocket handshake", NULL);
        return TR_EINVAL;
    }
    if (version == NULL || strcmp(version, "13") != 0) {
        tr__http_fail(pc, 426, "websocket version 13 only", "Sec-WebSocket-Version: 13");
        return TR_EINVAL;
    }
    if (!key_ok(key)) {
        tr__http_fail(pc, 400, "bad Sec-WebSocket-Key", NULL);
        return TR_EINVAL;
    }
    bool offered;
    const char *proto = pick_protocol(hp, cfg, &offered);
    if (proto == NULL && offered && cfg->require_subprotocol) {
        tr__http_fail(pc, 400, "no common subprotocol", NULL);
        return TR_EINVAL;
    }
    char accept[29];
    if (tr__ws_accept_key(key, strlen(key), accept) < 0) {
        tr__http_fail(pc, 501, "websocket needs a build with BoringSSL", NULL);
        return TR_ENOTSUP;
    }
    tr_ws *ws = calloc(1, sizeof(*ws));
    if (ws == NULL || tr__ws_session_init(&ws->s, cfg->max_message_bytes, &sink, ws) < 0) {
        free(ws);
        tr__http_fail(pc, 503, "out of memory", NULL);
        return TR_ENOMEM;
    }
    ws->cfg = cfg;
    ws->pc = pc;
    ws->user = conn_user;
    if (proto != NULL) {
        snprintf(ws->protocol, sizeof(ws->protocol), "%s", proto);
    }
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     accept, proto != NULL ? "Sec-WebSocket-Protocol: " : "", ws->protocol,
                     proto != NULL ? "\r\n" : "");
    pc->answered = true;
    int rc = n > 0 && (size_t)n < sizeof(head) ? tr_conn_write(pc->c, head, (size_t)n) : TR_EINVAL;
    if (rc < 0) {
        tr__ws_free(ws);
        pc->close_after = true;
        return rc;
    }
    pc->ws = ws;
    pc->close_after = false;
    return 0;
}

void tr__ws_free(tr_ws *ws)
{
    if (ws != NULL) {
        tr__ws_session_fini(&ws->s);
        free(ws);
    }
}

/* ---- the session on the connection ---- */

static void send_self_after(tr_ws *ws, uint32_t type, uint32_t ms, bool every)
{
    tr_actor *a = tr__proto_actor(ws->pc->c);
    tr_msg *m = a != NULL && ms > 0 ? tr_msg_new(type, NULL, 0) : NULL;
    if (m == NULL) {
        return;
    }
    tr_actor_id self = tr_conn_actor(tr_conn_get_id(ws->pc->c));
    if (every) {
        tr_send_every(a, self, m, ms, NULL);
    } else {
        tr_send_after(a, self, m, ms, NULL);
    }
}

/* After anything that may have moved the session on: close the connection
 * once the session is over, or bound the wait for the peer's close. */
static void after_io(tr_ws *ws, int rc)
{
    tr__proto_conn *pc = ws->pc;
    if (pc->mode != MODE_WS) {
        return;
    }
    if (rc < 0) {
        /* A frame may be half written: the stream cannot go on. */
        pc->mode = MODE_DONE;
        tr_conn_abort(pc->c);
        return;
    }
    if (tr__ws_session_done(&ws->s)) {
        pc->mode = MODE_DONE;
        tr_conn_close(pc->c);
        return;
    }
    if (tr__ws_session_close_sent(&ws->s) && !ws->close_timer) {
        ws->close_timer = true;
        send_self_after(ws, TR__MSG_WS_CLOSE_TIMEOUT, ws->cfg->close_timeout_ms, false);
    }
}

void tr__ws_start(tr__proto_conn *pc, const unsigned char *rest, size_t len)
{
    tr_ws *ws = pc->ws;
    ws->opened = true;
    if (ws->cfg->handler->on_open != NULL) {
        ws->cfg->handler->on_open(ws, ws->cfg->user);
    }
    send_self_after(ws, TR__MSG_WS_TICK, ws->cfg->ping_interval_ms, true);
    if (len > 0 && pc->mode == MODE_WS) {
        tr__ws_input(pc, rest, len);
    }
}

void tr__ws_input(tr__proto_conn *pc, const unsigned char *data, size_t len)
{
    tr_ws *ws = pc->ws;
    ws->heard = true;
    ws->ping_out = false;
    after_io(ws, tr__ws_session_input(&ws->s, data, len));
}

static void on_tick(tr_ws *ws)
{
    if (ws->ping_out) {
        /* Silent for a whole interval after our ping: gone. */
        tr__ws_session_close(&ws->s, TR_WS_INTERNAL_ERROR, "ping timeout", 12);
        ws->pc->mode = MODE_DONE;
        tr_conn_close(ws->pc->c);
        return;
    }
    if (!ws->heard && !tr__ws_session_close_sent(&ws->s)) {
        ws->ping_out = true;
        after_io(ws, tr__ws_session_send(&ws->s, WSLAY_PING, "troupe", 6));
    }
    ws->heard = false;
}

void tr__ws_message(tr__proto_conn *pc, tr_msg *m)
{
    tr_ws *ws = pc->ws;
    uint32_t type = tr_msg_type(m);
    if (ws == NULL || pc->mode != MODE_WS) {
        return;
    }
    switch (type) {
    case TR__MSG_WS_TICK:
        on_tick(ws);
        break;
    case TR__MSG_WS_SEND: {
        tr_ws_opcode op = (tr_ws_opcode)tr_msg_reason(m);
        tr_buf *b = tr_msg_buf(m);
        if (b != NULL) {
            tr_ws_send_buf(ws, op, tr_buf_retain(b));
        } else {
            tr_ws_send(ws, op, tr_msg_data(m), tr_msg_len(m));
        }
        break;
    }
    case TR__MSG_WS_CLOSE: {
        char reason[124];
        size_t n = tr_msg_len(m) < 123 ? tr_msg_len(m) : 123;
        memcpy(reason, tr_msg_data(m), n);
        reason[n] = '\0';
        tr_ws_close(ws, (uint16_t)tr_msg_reason(m), reason);
        break;
    }
    case TR__MSG_WS_CLOSE_TIMEOUT:
        pc->mode = MODE_DONE;
        tr_conn_close(pc->c);
        break;
    default:
        if (type < TR_MSG_PROTO && ws->cfg->handler->on_app_message != NULL) {
            ws->cfg->handler->on_app_message(ws, m, ws->cfg->user);
        }
        break;
    }
}

void tr__ws_shutdown(tr__proto_conn *pc)
{
    tr_ws_close(pc->ws, TR_WS_GOING_AWAY, "server shutting down");
}

void tr__ws_closed(tr__proto_conn *pc)
{
    tr_ws *ws = pc->ws;
    if (ws->opened && ws->cfg->handler->on_close != NULL) {
        ws->cfg->handler->on_close(ws, tr__ws_session_code(&ws->s), ws->cfg->user);
    }
    pc->ws = NULL;
    tr__ws_free(ws);
}

/* ---- sending ---- */

static bool op_ok(tr_ws_opcode op)
{
    return op == TR_WS_TEXT || op == TR_WS_BINARY;
}

int tr_ws_send(tr_ws *ws, tr_ws_opcode op, const void *data, size_t len)
{
    if (!op_ok(op) || (data == NULL && len > 0)) {
        return TR_EINVAL;
    }
    if (ws->pc->mode != MODE_WS) {
        return TR_ECLOSED;
    }
    int rc = tr__ws_session_send(&ws->s, op, data, len);
    if (rc == TR_ECLOSED || rc == TR_EINVAL) {
        return rc;
    }
    after_io(ws, rc);
    return rc;
}

int tr_ws_send_buf(tr_ws *ws, tr_ws_opcode op, tr_buf *b)
{
    if (b == NULL || !op_ok(op)) {
        tr_buf_release(b);
        return TR_EINVAL;
    }
    if (ws->pc->mode != MODE_WS) {
        tr_buf_release(b);
        return TR_ECLOSED;
    }
    if (!tr__ws_session_can_write_raw(&ws->s)) {
        /* Something is queued inside wslay: keep the order, copy. */
        int rc = tr_ws_send(ws, op, tr_buf_data(b), tr_buf_len(b));
        tr_buf_release(b);
        return rc;
    }
    unsigned char hdr[10];
    size_t hl = tr__ws_frame_header(hdr, op, tr_buf_len(b));
    int rc = tr_conn_write(ws->pc->c, hdr, hl);
    if (rc < 0) {
        tr_buf_release(b);
        return rc; /* nothing written */
    }
    rc = tr_conn_write_buf(ws->pc->c, b);
    if (rc < 0) {
        after_io(ws, rc); /* the header went out alone */
    }
    return rc;
}

int tr_ws_close(tr_ws *ws, uint16_t code, const char *reason)
{
    size_t len = reason != NULL ? strlen(reason) : 0;
    if (!tr__ws_close_code_ok(code) || len > 123) {
        return TR_EINVAL;
    }
    if (ws->pc->mode != MODE_WS) {
        return 0;
    }
    int rc = tr__ws_session_close(&ws->s, code, reason, len);
    after_io(ws, rc);
    return rc < 0 && rc != TR_EINVAL ? 0 : rc;
}

tr_conn *tr_ws_conn(const tr_ws *ws)
{
    return ws->pc->c;
}

tr_conn_id tr_ws_id(const tr_ws *ws)
{
    return tr_conn_get_id(ws->pc->c);
}

const char *tr_ws_protocol(const tr_ws *ws)
{
    return ws->protocol[0] != '\0' ? ws->protocol : NULL;
}

void *tr_ws_user(const tr_ws *ws)
{
    return ws->user;
}

void tr_ws_set_user(tr_ws *ws, void *user)
{
    ws->user = user;
}

/* ---- by id ---- */

int tr_ws_send_id(tr_conn_id id, tr_ws_opcode op, const void *data, size_t len)
{
    if (!op_ok(op) || (data == NULL && len > 0)) {
        return TR_EINVAL;
    }
    tr_msg *m = tr_msg_new(TR__MSG_WS_SEND, data, len);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    tr_msg_set_reason(m, op);
    return tr_send(tr_conn_actor(id), m);
}

int tr_ws_send_buf_id(tr_conn_id id, tr_ws_opcode op, tr_buf *b)
{
    if (b == NULL || !op_ok(op)) {
        tr_buf_release(b);
        return TR_EINVAL;
    }
    tr_msg *m = tr_msg_new_buf(TR__MSG_WS_SEND, b);
    if (m == NULL) {
        return TR_ENOMEM; /* b was released */
    }
    tr_msg_set_reason(m, op);
    return tr_send(tr_conn_actor(id), m);
}

int tr_ws_close_id(tr_conn_id id, uint16_t code, const char *reason)
{
    if (!tr__ws_close_code_ok(code)) {
        return TR_EINVAL;
    }
    size_t len = reason != NULL ? strlen(reason) : 0;
    tr_msg *m = tr_msg_new(TR__MSG_WS_CLOSE, reason, len < 123 ? len : 123);
    if (m == NULL) {
        return TR_ENOMEM;
    }
    tr_msg_set_reason(m, code);
    return tr_send(tr_conn_actor(id), m);
}
