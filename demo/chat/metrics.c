/* troupe-chat: the Prometheus text for GET /metrics. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "chat.h"

typedef struct out {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *o, const char *fmt, ...)
{
    if (o->len >= o->cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    o->len = n < 0 ? o->len : o->len + (size_t)n > o->cap ? o->cap : o->len + (size_t)n;
}

static void metric(out *o, const char *name, const char *type, const char *help, uint64_t v)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
        (unsigned long long)v);
}

size_t chat_metrics(chat *ch, const chat_listener *ls, size_t nls, char *buf, size_t cap)
{
    out o = {buf, cap, 0};
    chat_stats *st = &ch->st;
    metric(&o, "troupe_chat_connections", "gauge", "Open IRC connections.",
           chat_stat_get(&st->connections));
    metric(&o, "troupe_chat_users", "gauge", "Registered users.", chat_stat_get(&st->users));
    metric(&o, "troupe_chat_channels", "gauge", "Channels (channel actors).",
           chat_stat_get(&st->channels));
    metric(&o, "troupe_chat_registrations_total", "counter", "Users who completed registration.",
           chat_stat_get(&st->registrations));
    metric(&o, "troupe_chat_lines_in_total", "counter", "IRC lines received.",
           chat_stat_get(&st->lines_in));
    metric(&o, "troupe_chat_deliveries_total", "counter",
           "Lines queued to users by channels and the registry.", chat_stat_get(&st->deliveries));
    metric(&o, "troupe_chat_delivery_drops_total", "counter",
           "Deliveries refused by a full send queue (that user is closed).",
           chat_stat_get(&st->delivery_drops));
    metric(&o, "troupe_chat_flood_disconnects_total", "counter", "Users closed for Excess Flood.",
           chat_stat_get(&st->flood_kills));
    metric(&o, "troupe_chat_sendq_disconnects_total", "counter", "Users closed for SendQ exceeded.",
           chat_stat_get(&st->sendq_kills));
    metric(&o, "troupe_actors", "gauge", "Live actors in the runtime (connections included).",
           tr_runtime_actor_count(ch->rt));
    metric(&o, "troupe_workers", "gauge", "Worker threads.", tr_runtime_workers(ch->rt));
    static const struct {
        const char *name, *help;
        size_t off;
    } per[] = {
        {"troupe_server_accepted_total", "Connections accepted.", offsetof(tr_server_stats, accepted)},
        {"troupe_server_active", "Connections open.", offsetof(tr_server_stats, active)},
        {"troupe_server_bytes_in_total", "Bytes read.", offsetof(tr_server_stats, bytes_in)},
        {"troupe_server_bytes_out_total", "Bytes written.", offsetof(tr_server_stats, bytes_out)},
        {"troupe_server_frames_in_total", "Frames (lines) decoded.", offsetof(tr_server_stats, frames_in)},
        {"troupe_server_frames_out_total", "Frames (lines) queued.", offsetof(tr_server_stats, frames_out)},
        {"troupe_server_sends_refused_total", "Sends refused by a full queue.",
         offsetof(tr_server_stats, sends_refused)},
        {"troupe_server_tls_handshakes_total", "TLS handshakes completed.",
         offsetof(tr_server_stats, tls_handshakes)},
    };
    tr_server_stats ss[8];
    for (size_t i = 0; i < nls && i < 8; i++) {
        tr_server_stats_get(ls[i].srv, &ss[i]);
    }
    for (size_t k = 0; k < sizeof(per) / sizeof(per[0]); k++) {
        bool gauge = k == 1;
        put(&o, "# HELP %s %s\n# TYPE %s %s\n", per[k].name, per[k].help, per[k].name,
            gauge ? "gauge" : "counter");
        for (size_t i = 0; i < nls && i < 8; i++) {
            uint64_t v = *(const uint64_t *)((const char *)&ss[i] + per[k].off);
            put(&o, "%s{listener=\"%s\"} %llu\n", per[k].name, ls[i].name, (unsigned long long)v);
        }
    }
    put(&o, "# HELP troupe_server_errors_total Connection errors by class.\n"
            "# TYPE troupe_server_errors_total counter\n");
    for (size_t i = 0; i < nls && i < 8; i++) {
        for (int c = 0; c < TR_ERR__COUNT; c++) {
            put(&o, "troupe_server_errors_total{listener=\"%s\",class=\"%s\"} %llu\n", ls[i].name,
                tr_error_class_name((tr_error_class)c), (unsigned long long)ss[i].errors[c]);
        }
    }
    return o.len;
}
