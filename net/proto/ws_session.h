/* Internal: one WebSocket session (server side) over Debian's wslay, with
 * no connection and no runtime: bytes in through tr__ws_session_input,
 * bytes out and whole messages through the sink. ws.c puts it on a troupe
 * connection; the libFuzzer target drives it directly.
 *
 * wslay reads through a callback; here that callback serves the bytes of
 * the current input call and then says "would block", so wslay parses
 * exactly what arrived and keeps partial frames itself. What it writes
 * goes straight to the sink, which never blocks (a troupe send queue), so
 * wslay's own queue is empty between calls, except while a message is
 * being delivered: sends made from inside a delivery are flushed when the
 * input call returns. Owning worker only. */
#ifndef TROUPE_NET_PROTO_WS_SESSION_H
#define TROUPE_NET_PROTO_WS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

typedef struct tr__ws_sink {
    /* Writes bytes out. Returns 0 or a negative TR_E* code. */
    int (*write)(void *arg, const void *data, size_t len);
    /* One whole text (1) or binary (2) message. */
    void (*message)(void *arg, int opcode, const unsigned char *data, size_t len);
} tr__ws_sink;

typedef struct tr__ws_session {
    wslay_event_context_ptr ctx;
    const tr__ws_sink *sink;
    void *arg;
    const unsigned char *in; /* the input being parsed */
    size_t in_len;
    int write_err;           /* the sink's first failure, 0 if none */
    uint64_t frames_in;      /* frames seen, control frames included */
} tr__ws_session;

/* Returns 0 or TR_ENOMEM. */
int tr__ws_session_init(tr__ws_session *s, size_t max_message, const tr__ws_sink *sink, void *arg);
void tr__ws_session_fini(tr__ws_session *s);

/* Parses data[0..len): delivers messages, answers pings and a close, and
 * flushes. After a protocol error wslay has queued (and this flushed) the
 * close frame and reads nothing more. Returns 0, or the sink's write
 * error, or TR_ENOMEM. */
int tr__ws_session_input(tr__ws_session *s, const unsigned char *data, size_t len);

/* Queues a frame (opcode 1 text, 2 binary, 9 ping) and flushes. Returns 0, TR_ECLOSED (a close was sent), TR_ENOMEM
 * or the sink's write error. */
int tr__ws_session_send(tr__ws_session *s, int opcode, const void *data, size_t len);

/* Queues a close with code (0: none) and reason, and flushes.
 * Returns 0 (also when one was already sent), TR_EINVAL (bad code or a
 * reason over 123 bytes), TR_ENOMEM or the write error. */
int tr__ws_session_close(tr__ws_session *s, uint16_t code, const char *reason, size_t len);

/* Nothing is queued inside wslay and writing is still allowed: a frame
 * written around wslay (tr__ws_frame_header + payload) keeps the order. */
bool tr__ws_session_can_write_raw(const tr__ws_session *s);

bool tr__ws_session_close_sent(const tr__ws_session *s);
bool tr__ws_session_close_received(const tr__ws_session *s);
/* Neither reading nor writing anything more: close the connection. */
bool tr__ws_session_done(const tr__ws_session *s);
/* The code received (1005 when the close had none), else the code sent,
 * else 1006. */
uint16_t tr__ws_session_code(const tr__ws_session *s);

/* A valid code for a close we send. */
bool tr__ws_close_code_ok(uint16_t code);

/* Writes an unmasked, final frame header for a payload of len bytes;
 * returns its length (2, 4 or 10). */
size_t tr__ws_frame_header(unsigned char hdr[10], int opcode, uint64_t len);

#endif
