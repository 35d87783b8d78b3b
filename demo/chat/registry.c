/* troupe-chat: the registry actor. Nicks (unique under RFC 1459 case
 * mapping), the channel directory (name -> channel actor, members and
 * topic for LIST), private messages to a nick, and the NICK / QUIT
 * fan-out: every user who shares a channel hears it exactly once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "map.h"

typedef struct nick_entry {
    chat_dest to;
} nick_entry;

typedef struct chan_entry {
    tr_actor_id id;
    char name[IRC_CHANNELLEN + 1];
    char topic[IRC_TOPICLEN + 1];
    uint32_t members;
    uint64_t joins_sent;
} chan_entry;

/* A NICK or QUIT waiting for its channels' member lists. */
typedef struct event {
    struct event *next;
    uint64_t id;
    uint32_t pending;
    tr_buf *line;
    chat_dest *ids;
    size_t n, cap;
} event;

typedef struct registry {
    chat *ch;
    map nicks;
    map chans;
    map byid; /* the channel actors in chans, by id: "%016llx" */
    event *events;
    uint64_t next_event;
} registry;

static void fold(const char *in, char *out, size_t cap)
{
    irc_casefold(in, out, cap);
}

static void id_key(tr_actor_id id, char *buf, size_t len)
{
    snprintf(buf, len, "%016llx", (unsigned long long)id.bits);
}

/* A channel still in the directory has not been told to stop, so it will
 * answer a C_LEAVE. */
static bool chan_alive(const registry *r, tr_actor_id id)
{
    char k[24];
    id_key(id, k, sizeof(k));
    return map_get(&r->byid, k) != NULL;
}

static bool add_id(event *e, chat_dest id)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        chat_dest *v = realloc(e->ids, cap * sizeof(*v));
        if (v == NULL) {
            return false;
        }
        e->ids = v;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return true;
}

static int cmp_id(const void *a, const void *b)
{
    uint64_t x = ((const chat_dest *)a)->conn.bits, y = ((const chat_dest *)b)->conn.bits;
    return x < y ? -1 : x > y;
}

/* Everyone gathered hears the line once. */
static void finish_event(registry *r, event *e)
{
    if (e->n > 1) {
        qsort(e->ids, e->n, sizeof(*e->ids), cmp_id);
    }
    for (size_t i = 0; i < e->n; i++) {
        if (i == 0 || e->ids[i].conn.bits != e->ids[i - 1].conn.bits) {
            chat_deliver(r->ch, e->ids[i], e->line);
        }
    }
    for (event **p = &r->events; *p != NULL; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    tr_buf_release(e->line);
    free(e->ids);
    free(e);
}

/* Starts a fan-out of `line` over the channels; `self` (if nonzero) hears
 * it too. */
static void fan_out(registry *r, const char *line, size_t len, const tr_actor_id *chans,
                    uint32_t nchans, chat_dest self, const c_leave *tmpl)
{
    event *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->line = tr_buf_copy(line, len)) == NULL) {
        free(e);
        return;
    }
    e->id = ++r->next_event;
    if (self.conn.bits != 0) {
        add_id(e, self);
    }
    e->next = r->events;
    r->events = e;
    c_leave l = *tmpl;
    l.event = e->id;
    for (uint32_t i = 0; i < nchans && i < CHAT_MAX_CHANS; i++) {
        if (chan_alive(r, chans[i]) && tr_send_copy(chans[i], C_LEAVE, &l, sizeof(l)) == 0) {
            e->pending++;
        }
    }
    if (e->pending == 0) {
        finish_event(r, e);
    }
}

static void gathered(registry *r, const r_gathered *g, size_t len)
{
    if (len < sizeof(*g) || len != sizeof(*g) + g->n * sizeof(chat_dest)) {
        return;
    }
    for (event *e = r->events; e != NULL; e = e->next) {
        if (e->id == g->event) {
            for (uint32_t i = 0; i < g->n; i++) {
                add_id(e, g->members[i]);
            }
            if (--e->pending == 0) {
                finish_event(r, e);
            }
            return;
        }
    }
}

static void nick(registry *r, const r_nick *q)
{
    char key[IRC_NICKLEN + 1], old[IRC_NICKLEN + 1];
    fold(q->nick, key, sizeof(key));
    nick_entry *have = map_get(&r->nicks, key);
    s_nick reply = {.ok = have == NULL || have->to.conn.bits == q->who.conn.bits};
    snprintf(reply.nick, sizeof(reply.nick), "%s", q->nick);
    if (reply.ok && have == NULL) {
        nick_entry *e = malloc(sizeof(*e));
        if (e == NULL || map_put(&r->nicks, key, e) < 0) {
            free(e);
            reply.ok = false;
        } else {
            e->to = chat_dest_of(&q->who);
        }
    }
    if (reply.ok && q->who.nick[0] != '\0') {
        fold(q->who.nick, old, sizeof(old));
        if (strcmp(old, key) != 0) {
            nick_entry *prev = map_get(&r->nicks, old);
            if (prev != NULL && prev->to.conn.bits == q->who.conn.bits) {
                free(map_del(&r->nicks, old));
            }
        }
    }
    tr_send_copy(tr_conn_actor(q->who.conn), S_NICK, &reply, sizeof(reply));
    if (reply.ok && q->who.nick[0] != '\0' && strcmp(q->who.nick, q->nick) != 0) {
        char prefix[128], line[IRC_MAX_LINE];
        chat_prefix(&q->who, prefix, sizeof(prefix));
        int n = snprintf(line, sizeof(line), "%s NICK :%s", prefix, q->nick);
        c_leave l = {.conn = q->who.conn, .quit = false};
        snprintf(l.nick, sizeof(l.nick), "%s", q->nick);
        fan_out(r, line, (size_t)n, q->chans, q->nchans, chat_dest_of(&q->who), &l);
    }
}

static void quit(registry *r, const r_quit *q)
{
    char key[IRC_NICKLEN + 1];
    fold(q->who.nick, key, sizeof(key));
    nick_entry *have = map_get(&r->nicks, key);
    if (have != NULL && have->to.conn.bits == q->who.conn.bits) {
        free(map_del(&r->nicks, key));
    }
    char prefix[128], line[IRC_MAX_LINE];
    chat_prefix(&q->who, prefix, sizeof(prefix));
    int n = snprintf(line, sizeof(line), "%s QUIT :%s", prefix, q->reason);
    c_leave l = {.conn = q->who.conn, .quit = true};
    fan_out(r, line, (size_t)(n < IRC_MAX_LINE - 2 ? n : IRC_MAX_LINE - 2), q->chans, q->nchans,
            (chat_dest){{0}, false}, &l);
}

static void join(registry *r, const r_target *q)
{
    char key[IRC_CHANNELLEN + 1];
    fold(q->target, key, sizeof(key));
    chan_entry *e = map_get(&r->chans, key);
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        uint64_t h = 0;
        for (const char *p = key; *p; p++) {
            h = h * 31 + (unsigned char)*p;
        }
        unsigned worker = (unsigned)(h % tr_runtime_workers(r->ch->rt));
        if (e == NULL || chat_channel_spawn(r->ch, q->target, worker, &e->id) < 0 ||
            map_put(&r->chans, key, e) < 0) {
            free(e);
            chat_send_numeric(r->ch, chat_dest_of(&q->who), 403, q->who.nick, "%s :No such channel",
                              q->target);
            s_joined none = {.chan = {0}}; /* the session counts on an answer */
            snprintf(none.name, sizeof(none.name), "%s", q->target);
            tr_send_copy(tr_conn_actor(q->who.conn), S_JOINED, &none, sizeof(none));
            return;
        }
        snprintf(e->name, sizeof(e->name), "%s", q->target);
        char k[24];
        id_key(e->id, k, sizeof(k));
        map_put(&r->byid, k, e);
    }
    c_join j = {.who = q->who};
    snprintf(j.name, sizeof(j.name), "%s", e->name);
    if (tr_send_copy(e->id, C_JOIN, &j, sizeof(j)) == 0) {
        e->joins_sent++;
    } else {
        s_joined none = {.chan = {0}};
        snprintf(none.name, sizeof(none.name), "%s", q->target);
        tr_send_copy(tr_conn_actor(q->who.conn), S_JOINED, &none, sizeof(none));
    }
}

static void privmsg(registry *r, tr_msg *m)
{
    const r_target *q = (const r_target *)tr_msg_data(m);
    const char *line = (const char *)tr_msg_data(m) + sizeof(*q);
    size_t len = tr_msg_len(m) - sizeof(*q);
    char key[IRC_NICKLEN + 1];
    fold(q->target, key, sizeof(key));
    nick_entry *e = map_get(&r->nicks, key);
    if (e == NULL) {
        chat_send_numeric(r->ch, chat_dest_of(&q->who), 401, q->who.nick, "%s :No such nick/channel",
                          q->target);
        return;
    }
    tr_buf *b = tr_buf_copy(line, len);
    if (b != NULL) {
        chat_deliver(r->ch, e->to, b);
        tr_buf_release(b);
    }
}

/* NAMES / WHO: the channel answers, or we say it is empty. */
static void ask_channel(registry *r, const r_target *q, uint32_t type)
{
    char key[IRC_CHANNELLEN + 1];
    fold(q->target, key, sizeof(key));
    chan_entry *e = map_get(&r->chans, key);
    if (e != NULL && tr_send_copy(e->id, type, &q->who, sizeof(q->who)) == 0) {
        return;
    }
    if (type == C_NAMES) {
        chat_send_numeric(r->ch, chat_dest_of(&q->who), 366, q->who.nick, "%s :End of /NAMES list.",
                          q->target);
    } else {
        chat_send_numeric(r->ch, chat_dest_of(&q->who), 315, q->who.nick, "%s :End of /WHO list.",
                          q->target);
    }
}

typedef struct list_ctx {
    registry *r;
    const chat_who *to;
} list_ctx;

static void list_one(const char *key, void *value, void *arg)
{
    (void)key;
    list_ctx *x = arg;
    chan_entry *e = value;
    if (e->members > 0) {
        chat_send_numeric(x->r->ch, chat_dest_of(x->to), 322, x->to->nick, "%s %u :%s", e->name,
                          e->members, e->topic);
    }
}

static void list(registry *r, const r_target *q)
{
    chat_send_numeric(r->ch, chat_dest_of(&q->who), 321, q->who.nick, "Channel :Users  Name");
    list_ctx x = {r, &q->who};
    map_each(&r->chans, list_one, &x);
    chat_send_numeric(r->ch, chat_dest_of(&q->who), 323, q->who.nick, ":End of /LIST");
}

static void chan_info(registry *r, const r_chan_info *info, bool empty)
{
    char key[IRC_CHANNELLEN + 1];
    fold(info->name, key, sizeof(key));
    chan_entry *e = map_get(&r->chans, key);
    if (e == NULL) {
        return;
    }
    e->members = info->members;
    snprintf(e->topic, sizeof(e->topic), "%s", info->topic);
    /* Stop it only if no JOIN is on its way to it. */
    if (empty && e->joins_sent == info->joins) {
        tr_send_copy(e->id, C_STOP, NULL, 0);
        char k[24];
        id_key(e->id, k, sizeof(k));
        map_del(&r->byid, k);
        free(map_del(&r->chans, key));
    }
}

static void registry_receive(tr_actor *self, tr_msg *m)
{
    registry *r = tr_actor_state(self);
    const void *p = tr_msg_data(m);
    size_t len = tr_msg_len(m);
    switch (tr_msg_type(m)) {
    case R_NICK:
        if (len == sizeof(r_nick)) {
            nick(r, p);
        }
        break;
    case R_QUIT:
        if (len == sizeof(r_quit)) {
            quit(r, p);
        }
        break;
    case R_JOIN:
        if (len == sizeof(r_target)) {
            join(r, p);
        }
        break;
    case R_PRIVMSG:
        if (len > sizeof(r_target)) {
            privmsg(r, m);
        }
        break;
    case R_NAMES:
    case R_WHO:
        if (len == sizeof(r_target)) {
            ask_channel(r, p, tr_msg_type(m) == R_NAMES ? C_NAMES : C_WHO);
        }
        break;
    case R_LIST:
        if (len == sizeof(r_target)) {
            list(r, p);
        }
        break;
    case R_CHAN_INFO:
    case R_CHAN_EMPTY:
        if (len == sizeof(r_chan_info)) {
            chan_info(r, p, tr_msg_type(m) == R_CHAN_EMPTY);
        }
        break;
    case R_GATHERED:
        gathered(r, p, len);
        break;
    default:
        break;
    }
}

static int registry_init(tr_actor *self, void *arg)
{
    registry *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return TR_ENOMEM;
    }
    r->ch = arg;
    map_init(&r->nicks);
    map_init(&r->chans);
    map_init(&r->byid);
    tr_actor_set_state(self, r);
    return 0;
}

static void free_value(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    free(value);
}

static void registry_terminate(tr_actor *self, int reason)
{
    (void)reason;
    registry *r = tr_actor_state(self);
    map_each(&r->nicks, free_value, NULL);
    map_each(&r->chans, free_value, NULL);
    map_free(&r->nicks);
    map_free(&r->chans);
    map_free(&r->byid);
    while (r->events != NULL) {
        event *e = r->events;
        r->events = e->next;
        tr_buf_release(e->line);
        free(e->ids);
        free(e);
    }
    free(r);
}

static const tr_behavior registry_behavior = {.name = "chat-registry",
                                              .init = registry_init,
                                              .receive = registry_receive,
                                              .terminate = registry_terminate};

int chat_registry_start(chat *ch)
{
    return tr_spawn(ch->rt, &registry_behavior, ch, NULL, &ch->registry);
}
