/* troupe-chat: numerics, prefixes and deliveries shared by the actors. */
#include <stdarg.h>
#include <stdio.h>

#include "chat.h"

void chat_stat_add(uint64_t *p, int64_t v)
{
    __atomic_fetch_add(p, (uint64_t)v, __ATOMIC_RELAXED);
}

uint64_t chat_stat_get(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Lines carry no CR LF: the line codec adds it (and a WebSocket frame
 * needs none), so a line is at most IRC_MAX_LINE - 2 bytes. */
static size_t vnumeric(const chat *ch, char *buf, int num, const char *nick, const char *fmt,
                       va_list ap)
{
    const size_t max = IRC_MAX_LINE - 2;
    int n = snprintf(buf, max + 1, ":%s %03d %s ", ch->cfg.name, num, nick[0] != '\0' ? nick : "*");
    if (n < 0 || (size_t)n > max) {
        n = (int)max;
    } else {
        int m = vsnprintf(buf + n, max + 1 - (size_t)n, fmt, ap);
        n = m < 0 ? n : (size_t)(n + m) > max ? (int)max : n + m;
    }
    buf[n] = '\0';
    return (size_t)n;
}

size_t chat_numeric(const chat *ch, char *buf, int num, const char *nick, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = vnumeric(ch, buf, num, nick, fmt, ap);
    va_end(ap);
    return n;
}

void chat_send_text(chat_dest to, const char *line, size_t len)
{
    if (to.ws) {
        tr_ws_send_id(to.conn, TR_WS_TEXT, line, len);
    } else {
        tr_conn_send(to.conn, line, len);
    }
}

void chat_send_numeric(const chat *ch, chat_dest to, int num, const char *nick, const char *fmt,
                       ...)
{
    char buf[IRC_MAX_LINE + 1];
    va_list ap;
    va_start(ap, fmt);
    size_t n = vnumeric(ch, buf, num, nick, fmt, ap);
    va_end(ap);
    chat_send_text(to, buf, n);
}

void chat_deliver(chat *ch, chat_dest to, tr_buf *b)
{
    int rc = to.ws ? tr_ws_send_buf_id(to.conn, TR_WS_TEXT, tr_buf_retain(b))
                   : tr_conn_send_buf(to.conn, tr_buf_retain(b));
    chat_stat_add(rc == 0 ? &ch->st.deliveries : &ch->st.delivery_drops, 1);
}

void chat_prefix(const chat_who *w, char *buf, size_t len)
{
    snprintf(buf, len, ":%s!%s@%s", w->nick, w->user, w->host);
}
