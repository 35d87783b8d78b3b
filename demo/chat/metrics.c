/* troupe-chat: the Prometheus text for GET /metrics, and the set of live
 * channels it reads mailbox depths from.
 *
 * Why channels register themselves in a set under a lock: the registry's
 * channel directory is the registry actor's own state, and an HTTP
 * handler cannot wait for an actor's answer (on_request responds before
 * it returns). A snapshot the registry published on a timer would be
 * stale, and would stop moving when the registry is swamped, which is
 * when someone looks. So each channel actor adds its id here in init and
 * removes it in terminate; a scrape copies the ids under the lock, then
 * reads each depth with tr_actor_mailbox_depth, which is safe from any
 * thread (an id whose channel has exited since answers TR_ECLOSED). The
 * lock covers an append, a search and swap-remove, or one memcpy of the
 * ids: short enough to take on a worker, and channels come and go far
 * less often than lines. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

void chat_chan_set_init(chat_chan_set *s)
{
    pthread_mutex_init(&s->lock, NULL);
    s->ids = NULL;
    s->n = s->cap = 0;
}

void chat_chan_set_fini(chat_chan_set *s)
{
    free(s->ids);
    s->ids = NULL;
    s->n = s->cap = 0;
    pthread_mutex_destroy(&s->lock);
}

int chat_chan_set_add(chat_chan_set *s, tr_actor_id id)
{
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        tr_actor_id *ids = realloc(s->ids, cap * sizeof(*ids));
        if (ids == NULL) {
            rc = TR_ENOMEM;
            goto out;
        }
        s->ids = ids;
        s->cap = cap;
    }
    s->ids[s->n++] = id;
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void chat_chan_set_remove(chat_chan_set *s, tr_actor_id id)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++) {
        if (tr_actor_id_eq(s->ids[i], id)) {
            s->ids[i] = s->ids[--s->n];
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* The deepest channel mailbox and the total over all channels. */
static void channel_depths(chat_chan_set *s, uint64_t *max, uint64_t *sum)
{
    *max = *sum = 0;
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    tr_actor_id *ids = n > 0 ? malloc(n * sizeof(*ids)) : NULL;
    if (ids != NULL) {
        memcpy(ids, s->ids, n * sizeof(*ids));
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; ids != NULL && i < n; i++) {
        uint32_t d;
        if (tr_actor_mailbox_depth(ids[i], &d) == 0) {
            *max = d > *max ? d : *max;
            *sum += d;
        }
    }
    free(ids);
}

/* len: what the whole text needs; the buffer holds it while len < cap. */
typedef struct out {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room > 0 ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    o->len += n > 0 ? (size_t)n : 0;
}

static void metric(out *o, const char *name, const char *type, const char *help, uint64_t v)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
        (unsigned long long)v);
}

/* One series per worker, from tr_runtime_worker_stats. */
static void per_worker(out *o, tr_runtime *rt)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } per[] = {
        {"troupe_worker_busy_seconds_total", "counter",
         "Time the worker thread was awake (not waiting in its event loop); its rate is the load.",
         offsetof(tr_worker_stats, busy_ns)},
        {"troupe_worker_turns_total", "counter", "Actor turns run.",
         offsetof(tr_worker_stats, turns)},
        {"troupe_worker_messages_total", "counter",
         "Messages its actors took from their mailboxes.", offsetof(tr_worker_stats, messages)},
        {"troupe_worker_sleeps_total", "counter", "Times it went to sleep in its event loop.",
         offsetof(tr_worker_stats, sleeps)},
        {"troupe_worker_actors", "gauge",
         "Started actors living on the worker (connections included).",
         offsetof(tr_worker_stats, actors)},
    };
    unsigned nw = tr_runtime_workers(rt);
    for (size_t k = 0; k < sizeof(per) / sizeof(per[0]); k++) {
        put(o, "# HELP %s %s\n# TYPE %s %s\n", per[k].name, per[k].help, per[k].name, per[k].type);
        for (unsigned w = 0; w < nw; w++) {
            tr_worker_stats st;
            if (tr_runtime_worker_stats(rt, w, &st) < 0) {
                continue;
            }
            uint64_t v = *(const uint64_t *)((const char *)&st + per[k].off);
            if (per[k].off == offsetof(tr_worker_stats, busy_ns)) {
                put(o, "%s{worker=\"%u\"} %llu.%09llu\n", per[k].name, w,
                    (unsigned long long)(v / 1000000000u), (unsigned long long)(v % 1000000000u));
            } else {
                put(o, "%s{worker=\"%u\"} %llu\n", per[k].name, w, (unsigned long long)v);
            }
        }
    }
}

static void mailbox_depths(out *o, chat *ch)
{
    put(o, "# HELP troupe_chat_mailbox_depth User messages waiting in an actor's mailbox.\n"
           "# TYPE troupe_chat_mailbox_depth gauge\n");
    uint32_t d;
    if (tr_actor_mailbox_depth(ch->registry, &d) == 0) {
        put(o, "troupe_chat_mailbox_depth{actor=\"registry\"} %u\n", d);
    }
    uint64_t max, sum;
    channel_depths(&ch->chans, &max, &sum);
    metric(o, "troupe_chat_channel_mailbox_depth_max", "gauge",
           "User messages waiting in the deepest channel mailbox.", max);
    metric(o, "troupe_chat_channel_mailbox_depth_sum", "gauge",
           "User messages waiting in all channel mailboxes.", sum);
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
           "Deliveries not queued: a full send queue (that user is closed) or a user gone.",
           chat_stat_get(&st->delivery_drops));
    metric(&o, "troupe_chat_flood_disconnects_total", "counter", "Users closed for Excess Flood.",
           chat_stat_get(&st->flood_kills));
    metric(&o, "troupe_chat_sendq_disconnects_total", "counter", "Users closed for SendQ exceeded.",
           chat_stat_get(&st->sendq_kills));
    metric(&o, "troupe_actors", "gauge", "Live actors in the runtime (connections included).",
           tr_runtime_actor_count(ch->rt));
    metric(&o, "troupe_workers", "gauge", "Worker threads.", tr_runtime_workers(ch->rt));
    per_worker(&o, ch->rt);
    mailbox_depths(&o, ch);
    static const struct {
        const char *name, *help;
        size_t off;
    } per[] = {
        {"troupe_server_accepted_total", "Connections accepted.",
         offsetof(tr_server_stats, accepted)},
        {"troupe_server_active", "Connections open.", offsetof(tr_server_stats, active)},
        {"troupe_server_bytes_in_total", "Bytes read.", offsetof(tr_server_stats, bytes_in)},
        {"troupe_server_bytes_out_total", "Bytes written.", offsetof(tr_server_stats, bytes_out)},
        {"troupe_server_frames_in_total", "Frames (lines) decoded.",
         offsetof(tr_server_stats, frames_in)},
        {"troupe_server_frames_out_total", "Frames (lines) queued.",
         offsetof(tr_server_stats, frames_out)},
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
