/* A WebSocket session over wslay: see ws_session.h for the design. wslay
 * already enforces what RFC 6455 asks of a server reading client frames
 * (masking: 1002; UTF-8 of text and close reasons: 1007; the message size
 * limit: 1009; control frame rules) and answers pings and a close; this
 * file feeds it and collects what it says. */
#include "ws_session.h"

#include <string.h>

#include "troupe/error.h"

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    (void)flags;
    tr__ws_session *s = user;
    if (s->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < s->in_len ? len : s->in_len;
    memcpy(buf, s->in, n);
    s->in += n;
    s->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)flags;
    tr__ws_session *s = user;
    int rc = s->write_err != 0 ? s->write_err : s->sink->write(s->arg, data, len);
    if (rc < 0) {
        s->write_err = rc;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    (void)ctx;
    (void)arg;
    tr__ws_session *s = user;
    s->frames_in++;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    (void)ctx;
    tr__ws_session *s = user;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        s->sink->message(s->arg, arg->opcode, arg->msg, arg->msg_length);
    }
    /* Pings are answered and closes echoed by wslay itself; write the
     * answer now, before a later frame of the same read can queue a close
     * that would go first and end the writing (as when it came in a read
     * of its own). */
    wslay_event_send(ctx);
}

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_msg_recv_callback = on_msg,
};

int tr__ws_session_init(tr__ws_session *s, size_t max_message, const tr__ws_sink *sink, void *arg)
{
    memset(s, 0, sizeof(*s));
    s->sink = sink;
    s->arg = arg;
    if (wslay_event_context_server_init(&s->ctx, &callbacks, s) != 0) {
        return TR_ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(s->ctx, max_message);
    return 0;
}

void tr__ws_session_fini(tr__ws_session *s)
{
    if (s->ctx != NULL) {
        wslay_event_context_free(s->ctx);
    }
    s->ctx = NULL;
}

/* Writes whatever wslay has queued. Called after every queueing, also
 * from inside a delivery, so a message sent while handling another goes
 * out before anything read later (a close in the same read would
 * otherwise go first and the message never); the output is then the same
 * however the input was split. */
static int flush(tr__ws_session *s)
{
    int r = wslay_event_send(s->ctx);
    if (s->write_err != 0) {
        return s->write_err;
    }
    return r == WSLAY_ERR_NOMEM ? TR_ENOMEM : 0;
}

int tr__ws_session_input(tr__ws_session *s, const unsigned char *data, size_t len)
{
    s->in = data;
    s->in_len = len;
    int r = wslay_event_recv(s->ctx);
    /* Bytes after a close or a protocol error are not read: drop them. */
    s->in = NULL;
    s->in_len = 0;
    int rc = flush(s);
    if (rc == 0 && r == WSLAY_ERR_NOMEM) {
        rc = TR_ENOMEM;
    }
    return rc;
}

static int queued(int r)
{
    switch (r) {
    case 0:
        return 0;
    case WSLAY_ERR_NO_MORE_MSG:
        return TR_ECLOSED;
    case WSLAY_ERR_NOMEM:
        return TR_ENOMEM;
    default:
        return TR_EINVAL;
    }
}

int tr__ws_session_send(tr__ws_session *s, int opcode, const void *data, size_t len)
{
    if (s->write_err != 0) {
        return s->write_err;
    }
    if (tr__ws_session_close_sent(s)) {
        return TR_ECLOSED;
    }
    struct wslay_event_msg m = {(uint8_t)opcode, data, len};
    int rc = queued(wslay_event_queue_msg(s->ctx, &m));
    return rc < 0 ? rc : flush(s);
}

bool tr__ws_close_code_ok(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int tr__ws_session_close(tr__ws_session *s, uint16_t code, const char *reason, size_t len)
{
    if ((code != 0 && !tr__ws_close_code_ok(code)) || len > 123 || (code == 0 && len > 0)) {
        return TR_EINVAL;
    }
    if (tr__ws_session_close_sent(s) || !wslay_event_get_write_enabled(s->ctx)) {
        return 0;
    }
    int rc = queued(wslay_event_queue_close(s->ctx, code, (const uint8_t *)reason, len));
    if (rc == TR_ECLOSED) {
        return 0; /* a close is already queued */
    }
    return rc < 0 ? rc : flush(s);
}

bool tr__ws_session_can_write_raw(const tr__ws_session *s)
{
    return s->write_err == 0 && wslay_event_get_write_enabled(s->ctx) &&
           !wslay_event_want_write(s->ctx) && !tr__ws_session_close_sent(s);
}

bool tr__ws_session_close_sent(const tr__ws_session *s)
{
    return wslay_event_get_close_sent(s->ctx) != 0;
}

bool tr__ws_session_close_received(const tr__ws_session *s)
{
    return wslay_event_get_close_received(s->ctx) != 0;
}

bool tr__ws_session_done(const tr__ws_session *s)
{
    return s->write_err != 0 ||
           (!wslay_event_want_read(s->ctx) && !wslay_event_want_write(s->ctx) &&
            (tr__ws_session_close_sent(s) || !wslay_event_get_write_enabled(s->ctx)));
}

uint16_t tr__ws_session_code(const tr__ws_session *s)
{
    if (tr__ws_session_close_received(s)) {
        return wslay_event_get_status_code_received(s->ctx);
    }
    if (tr__ws_session_close_sent(s)) {
        return wslay_event_get_status_code_sent(s->ctx);
    }
    return 1006;
}

size_t tr__ws_frame_header(unsigned char hdr[10], int opcode, uint64_t len)
{
    hdr[0] = (unsigned char)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        hdr[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (unsigned char)(len >> 8);
        hdr[3] = (unsigned char)len;
        return 4;
    }
    hdr[1] = 127;
    for (int i = 0; i < 8; i++) {
        hdr[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    }
    return 10;
}
