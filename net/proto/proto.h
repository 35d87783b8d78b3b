/* Internal: the state of one connection served by the HTTP layer, shared
 * by http.c (the handler, requests, responses) and ws.c (the WebSocket
 * half the connection may switch to). It is the connection's user
 * pointer (tr_conn_set_user); everything here is owning worker only. */
#ifndef TROUPE_NET_PROTO_PROTO_H
#define TROUPE_NET_PROTO_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "http_parse.h"
#include "troupe/http.h"
#include "troupe/ws.h"
#include "ws_session.h"

/* The layer's own message types (see TR_MSG_PROTO in troupe/http.h). */
enum {
    TR__MSG_HTTP_TIMEOUT = TR_MSG_PROTO + 1, /* ref: the timer; a request took too long */
    TR__MSG_WS_TICK = TR_MSG_PROTO + 2,      /* ping interval */
    TR__MSG_WS_SEND = TR_MSG_PROTO + 3,      /* reason: opcode; payload: the message */
    TR__MSG_WS_CLOSE = TR_MSG_PROTO + 4,     /* reason: code; payload: the reason */
    TR__MSG_WS_CLOSE_TIMEOUT = TR_MSG_PROTO + 5
};

struct tr_http {
    tr_http_config cfg;
};

enum { MODE_HTTP = 0, MODE_WS = 1, MODE_DONE = 2 };

struct tr_ws {
    tr__ws_session s;
    const tr_ws_config *cfg;
    struct tr__proto_conn *pc;
    void *user;
    char protocol[64];
    bool opened;            /* on_open ran */
    bool heard;             /* something arrived since the last tick */
    bool ping_out;          /* a ping is unanswered */
    bool close_timer;       /* the close timeout runs */
    uint16_t code;          /* the close code for on_close, once known */
};

typedef struct tr__proto_conn {
    const tr_http *http;
    tr_conn *c;
    int mode;
    tr__http_parser hp;
    uint64_t timer;         /* the request timer, when timer_on */
    bool timer_on;
    bool answered;          /* the current request got its response */
    bool close_after;       /* close once the current response is written */
    void *user;             /* tr_http_conn_user */
    tr_ws *ws;              /* set by tr_ws_accept; live in MODE_WS */
} tr__proto_conn;

/* The request handed to on_request: the connection and its parser. */
struct tr_http_req {
    tr__proto_conn *pc;
    char *path;        /* a copy of the target up to '?' */
    const char *query; /* inside the target, after '?' */
};

/* ---- ws.c, for http.c ---- */

/* Switches pc to WebSocket: feeds the bytes after the handshake, runs
 * on_open. */
void tr__ws_start(tr__proto_conn *pc, const unsigned char *rest, size_t len);
void tr__ws_input(tr__proto_conn *pc, const unsigned char *data, size_t len);
void tr__ws_message(tr__proto_conn *pc, tr_msg *m);
void tr__ws_shutdown(tr__proto_conn *pc);
void tr__ws_closed(tr__proto_conn *pc);
/* Frees a handshake accepted but never started (the connection closed). */
void tr__ws_free(tr_ws *ws);

/* ---- http.c, for ws.c ---- */

/* The connection's actor (for its timers), or NULL on an embedded
 * connection. */
tr_actor *tr__proto_actor(tr_conn *c);
/* Writes a short error response with "Connection: close" and closes. */
void tr__http_fail(tr__proto_conn *pc, int status, const char *why, const char *extra_header);

#endif
