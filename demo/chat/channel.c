/* troupe-chat: a channel actor. It owns the member list, the operator
 * marks and the topic; every line for the channel is built once into a
 * shared buffer and queued on each member's connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

typedef struct member {
    chat_who who;
    bool op;
} member;

typedef struct channel {
    chat *ch;
    tr_actor_id self;
    char name[IRC_CHANNELLEN + 1];
    char topic[IRC_TOPICLEN + 1];
    member *m;
    size_t n, cap;
    tr_conn_id *ids; /* scratch for a broadcast: cap entries */
    uint64_t joins;
} channel;

typedef struct channel_arg {
    chat *ch;
    char name[IRC_CHANNELLEN + 1];
} channel_arg;

static member *find_conn(channel *c, tr_conn_id id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].who.conn.bits == id.bits) {
            return &c->m[i];
        }
    }
    return NULL;
}

static member *find_nick(channel *c, const char *nick)
{
    char want[IRC_NICKLEN + 1], have[IRC_NICKLEN + 1];
    irc_casefold(nick, want, sizeof(want));
    for (size_t i = 0; i < c->n; i++) {
        irc_casefold(c->m[i].who.nick, have, sizeof(have));
        if (strcmp(want, have) == 0) {
            return &c->m[i];
        }
    }
    return NULL;
}

/* One buffer for everyone (except `skip`, when nonzero). The IRC users
 * get it in one call, one message per worker however many they are; each
 * WebSocket user needs it framed, through its own connection. */
static void broadcast(channel *c, const char *line, size_t len, tr_conn_id skip)
{
    tr_buf *b = tr_buf_copy(line, len);
    if (b == NULL) {
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].who.conn.bits == skip.bits) {
            continue;
        }
        if (c->m[i].who.ws) {
            chat_deliver(c->ch, chat_dest_of(&c->m[i].who), b);
        } else {
            c->ids[n++] = c->m[i].who.conn;
        }
    }
    /* Those not queued were refused by a full send queue (that user is
     * closed) or had gone already; the call does not say which. */
    int sent = tr_conn_send_buf_many(c->ids, n, b);
    size_t queued = sent > 0 ? (size_t)sent : 0;
    chat_stat_add(&c->ch->st.deliveries, (int64_t)queued);
    chat_stat_add(&c->ch->st.delivery_drops, (int64_t)(n - queued));
}

static void tell_registry(channel *c, uint32_t type)
{
    r_chan_info info = {.members = (uint32_t)c->n, .joins = c->joins};
    snprintf(info.name, sizeof(info.name), "%s", c->name);
    snprintf(info.topic, sizeof(info.topic), "%s", c->topic);
    tr_send_copy(c->ch->registry, type, &info, sizeof(info));
}

static void removed(channel *c, member *gone)
{
    *gone = c->m[--c->n];
    tell_registry(c, c->n == 0 ? R_CHAN_EMPTY : R_CHAN_INFO);
}

static void names(channel *c, const chat_who *to)
{
    char line[IRC_MAX_LINE];
    size_t head = chat_numeric(c->ch, line, 353, to->nick, "= %s :", c->name);
    size_t len = head;
    for (size_t i = 0; i < c->n; i++) {
        size_t need = strlen(c->m[i].who.nick) + 2;
        if (len + need > IRC_MAX_LINE - 2 && len > head) {
            chat_send_text(chat_dest_of(to), line, len - 1); /* without the trailing space */
            len = head;
        }
        len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s ", c->m[i].op ? "@" : "",
                                c->m[i].who.nick);
    }
    if (len > head) {
        chat_send_text(chat_dest_of(to), line, len - 1);
    }
    chat_send_numeric(c->ch, chat_dest_of(to), 366, to->nick, "%s :End of /NAMES list.", c->name);
}

static void joined_reply(channel *c, tr_conn_id to)
{
    s_joined sj = {.chan = c->self};
    snprintf(sj.name, sizeof(sj.name), "%s", c->name);
    tr_send_copy(tr_conn_actor(to), S_JOINED, &sj, sizeof(sj));
}

static void join(channel *c, const c_join *j)
{
    if (find_conn(c, j->who.conn) != NULL) {
        joined_reply(c, j->who.conn); /* the session counts on an answer */
        return;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        member *m = realloc(c->m, cap * sizeof(*m));
        if (m == NULL) {
            return;
        }
        c->m = m;
        tr_conn_id *ids = realloc(c->ids, cap * sizeof(*ids));
        if (ids == NULL) {
            return;
        }
        c->ids = ids;
        c->cap = cap;
    }
    bool first = c->n == 0; /* the first member is the channel's operator */
    c->m[c->n++] = (member){.who = j->who, .op = first};
    c->joins++;
    char prefix[128], line[IRC_MAX_LINE];
    chat_prefix(&j->who, prefix, sizeof(prefix));
    int n = snprintf(line, sizeof(line), "%s JOIN %s", prefix, c->name);
    broadcast(c, line, (size_t)n, (tr_conn_id){0});
    if (c->topic[0] != '\0') {
        chat_send_numeric(c->ch, chat_dest_of(&j->who), 332, j->who.nick, "%s :%s", c->name,
                          c->topic);
    }
    names(c, &j->who);
    joined_reply(c, j->who.conn);
    tell_registry(c, R_CHAN_INFO);
}

static void topic(channel *c, const c_topic *t)
{
    if (!t->set) {
        if (c->topic[0] == '\0') {
            chat_send_numeric(c->ch, chat_dest_of(&t->who), 331, t->who.nick, "%s :No topic is set",
                              c->name);
        } else {
            chat_send_numeric(c->ch, chat_dest_of(&t->who), 332, t->who.nick, "%s :%s", c->name,
                              c->topic);
        }
        return;
    }
    if (find_conn(c, t->who.conn) == NULL) {
        chat_send_numeric(c->ch, chat_dest_of(&t->who), 442, t->who.nick,
                          "%s :You're not on that channel", c->name);
        return;
    }
    snprintf(c->topic, sizeof(c->topic), "%s", t->topic);
    char prefix[128], line[IRC_MAX_LINE];
    chat_prefix(&t->who, prefix, sizeof(prefix));
    int n = snprintf(line, sizeof(line), "%s TOPIC %s :%s", prefix, c->name, c->topic);
    broadcast(c, line, (size_t)(n < IRC_MAX_LINE - 2 ? n : IRC_MAX_LINE - 2), (tr_conn_id){0});
    tell_registry(c, R_CHAN_INFO);
}

static void kick(channel *c, const c_kick *k)
{
    member *by = find_conn(c, k->who.conn);
    if (by == NULL) {
        chat_send_numeric(c->ch, chat_dest_of(&k->who), 442, k->who.nick,
                          "%s :You're not on that channel", c->name);
        return;
    }
    if (!by->op) {
        chat_send_numeric(c->ch, chat_dest_of(&k->who), 482, k->who.nick,
                          "%s :You're not channel operator", c->name);
        return;
    }
    member *target = find_nick(c, k->target);
    if (target == NULL) {
        chat_send_numeric(c->ch, chat_dest_of(&k->who), 441, k->who.nick,
                          "%s %s :They aren't on that channel", k->target, c->name);
        return;
    }
    char prefix[128], line[IRC_MAX_LINE];
    chat_prefix(&k->who, prefix, sizeof(prefix));
    int n = snprintf(line, sizeof(line), "%s KICK %s %s :%s", prefix, c->name, target->who.nick,
                     k->reason);
    broadcast(c, line, (size_t)(n < IRC_MAX_LINE - 2 ? n : IRC_MAX_LINE - 2), (tr_conn_id){0});
    s_joined sk = {.chan = c->self};
    snprintf(sk.name, sizeof(sk.name), "%s", c->name);
    tr_send_copy(tr_conn_actor(target->who.conn), S_KICKED, &sk, sizeof(sk));
    removed(c, target);
}

static void who(channel *c, const chat_who *to)
{
    for (size_t i = 0; i < c->n; i++) {
        const chat_who *w = &c->m[i].who;
        chat_send_numeric(c->ch, chat_dest_of(to), 352, to->nick, "%s %s %s %s %s H%s :0 %s",
                          c->name, w->user, w->host, c->ch->cfg.name, w->nick,
                          c->m[i].op ? "@" : "", w->nick);
    }
    chat_send_numeric(c->ch, chat_dest_of(to), 315, to->nick, "%s :End of /WHO list.", c->name);
}

/* A member quits or changes nick: the registry gathers who must hear it. */
static void leave(channel *c, const c_leave *l)
{
    member *m = find_conn(c, l->conn);
    if (m != NULL && !l->quit) {
        snprintf(m->who.nick, sizeof(m->who.nick), "%s", l->nick);
    }
    size_t n = c->n;
    r_gathered *g = malloc(sizeof(*g) + n * sizeof(chat_dest));
    if (g == NULL) {
        return;
    }
    g->event = l->event;
    g->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (c->m[i].who.conn.bits != l->conn.bits) {
            g->members[g->n++] = chat_dest_of(&c->m[i].who);
        }
    }
    tr_send_copy(c->ch->registry, R_GATHERED, g, sizeof(*g) + g->n * sizeof(chat_dest));
    free(g);
    if (m != NULL && l->quit) {
        removed(c, m);
    }
}

static void on_line(channel *c, tr_msg *msg, bool part)
{
    const c_line *cl = (const c_line *)tr_msg_data(msg);
    const char *line = (const char *)tr_msg_data(msg) + sizeof(*cl);
    size_t len = tr_msg_len(msg) - sizeof(*cl);
    member *m = find_conn(c, cl->from);
    if (m == NULL) {
        return; /* not (or no longer) a member: the session checked */
    }
    broadcast(c, line, len, part ? (tr_conn_id){0} : cl->from);
    if (part) {
        removed(c, m);
    }
}

static int channel_init(tr_actor *self, void *arg)
{
    channel_arg *a = arg;
    channel *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        free(a);
        return TR_ENOMEM;
    }
    c->ch = a->ch;
    c->self = tr_self(self);
    snprintf(c->name, sizeof(c->name), "%s", a->name);
    free(a);
    tr_actor_set_state(self, c);
    chat_stat_add(&c->ch->st.channels, 1);
    chat_chan_set_add(&c->ch->chans, c->self); /* on failure: only missing from /metrics */
    return 0;
}

static void channel_receive(tr_actor *self, tr_msg *msg)
{
    channel *c = tr_actor_state(self);
    const void *p = tr_msg_data(msg);
    size_t len = tr_msg_len(msg);
    switch (tr_msg_type(msg)) {
    case C_JOIN:
        if (len == sizeof(c_join)) {
            join(c, p);
        }
        break;
    case C_PART:
    case C_MSG:
        if (len >= sizeof(c_line)) {
            on_line(c, msg, tr_msg_type(msg) == C_PART);
        }
        break;
    case C_TOPIC:
        if (len == sizeof(c_topic)) {
            topic(c, p);
        }
        break;
    case C_KICK:
        if (len == sizeof(c_kick)) {
            kick(c, p);
        }
        break;
    case C_NAMES:
        if (len == sizeof(chat_who)) {
            names(c, p);
        }
        break;
    case C_WHO:
        if (len == sizeof(chat_who)) {
            who(c, p);
        }
        break;
    case C_LEAVE:
        if (len == sizeof(c_leave)) {
            leave(c, p);
        }
        break;
    case C_STOP:
        tr_exit(self, TR_EXIT_NORMAL);
        break;
    default:
        break;
    }
}

static void channel_terminate(tr_actor *self, int reason)
{
    (void)reason;
    channel *c = tr_actor_state(self);
    chat_stat_add(&c->ch->st.channels, -1);
    chat_chan_set_remove(&c->ch->chans, c->self);
    free(c->m);
    free(c->ids);
    free(c);
}

static const tr_behavior channel_behavior = {.name = "chat-channel",
                                             .init = channel_init,
                                             .receive = channel_receive,
                                             .terminate = channel_terminate};

/* The registry spawns channels through this (the arg's layout is ours). */
int chat_channel_spawn(chat *ch, const char *name, unsigned worker, tr_actor_id *out)
{
    channel_arg *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return TR_ENOMEM;
    }
    a->ch = ch;
    snprintf(a->name, sizeof(a->name), "%s", name);
    tr_spawn_opts o;
    tr_spawn_opts_defaults(&o);
    o.worker = (int)worker;
    int rc = tr_spawn(ch->rt, &channel_behavior, a, &o, out);
    if (rc < 0) {
        free(a);
    }
    return rc;
}
