/* troupe-chat: what the session (session.c), the registry (registry.c)
 * and the channels (channel.c) share: settings, counters, the messages
 * between them.
 *
 * Data flow. Each user is a connection actor running session.c's
 * handler. The registry actor keeps nicks unique (RFC 1459 case mapping)
 * and the channel directory; it creates a channel actor on the first
 * JOIN and stops it once it is empty and no JOIN is on its way. A line to
 * a channel goes from the session straight to the channel's actor, which
 * builds one reference-counted buffer and queues it on every other
 * member's connection (no copy per member). NICK and QUIT reach every
 * user who shares a channel exactly once: the registry asks each of the
 * user's channels for its members, merges the answers and sends once. */
#ifndef TROUPE_CHAT_H
#define TROUPE_CHAT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "irc.h"
#include "troupe/troupe.h"

#define CHAT_MAX_CHANS 20 /* CHANLIMIT per user */
#define CHAT_USERLEN 16
#define CHAT_HOSTLEN 64

typedef struct chat_config {
    const char *name;          /* the server's name in prefixes */
    const char *password;      /* PASS required when set */
    const char *const *motd;   /* lines, or NULL (422) */
    size_t motd_n;
    uint32_t max_clients;
    uint32_t ping_timeout_ms;  /* silence before PING, and again before the drop */
    double flood_burst, flood_per_s;
    size_t sendq_bytes;        /* a user's send queue; past it: closed */
    const char *created;
} chat_config;

/* Counters for /metrics (atomics: relaxed adds, relaxed reads). */
typedef struct chat_stats {
    uint64_t connections;    /* open connections */
    uint64_t users;          /* registered users */
    uint64_t channels;
    uint64_t lines_in;
    uint64_t deliveries;     /* lines queued to users */
    uint64_t delivery_drops; /* not queued: a full queue (the user is closed), or gone */
    uint64_t flood_kills;
    uint64_t sendq_kills;
    uint64_t registrations;
} chat_stats;

typedef struct chat_listener chat_listener;

/* The channel actors alive, for /metrics (their mailbox depths): each
 * channel adds itself in init and removes itself in terminate; a scrape
 * copies the ids (metrics.c says why a lock and not the registry). */
typedef struct chat_chan_set {
    pthread_mutex_t lock;
    tr_actor_id *ids; /* under lock */
    size_t n, cap;    /* under lock */
} chat_chan_set;

typedef struct chat {
    chat_config cfg;
    tr_runtime *rt;
    tr_actor_id registry;
    chat_stats st;
    chat_chan_set chans;
    /* The listeners /metrics reports on: set before the HTTP server starts,
     * read-only after. */
    const chat_listener *listeners;
    size_t nlisteners;
} chat;

void chat_stat_add(uint64_t *p, int64_t v);
uint64_t chat_stat_get(const uint64_t *p);

/* Who a user is: enough to build ":nick!user@host" and reach them. */
typedef struct chat_who {
    tr_conn_id conn;
    bool ws;                    /* a WebSocket user: lines go as text frames */
    char nick[IRC_NICKLEN + 1];
    char user[CHAT_USERLEN + 1];
    char host[CHAT_HOSTLEN];
} chat_who;

/* Message types. R_*: to the registry; C_*: to a channel; S_*: to a
 * session (a connection actor's on_message). */
enum {
    R_NICK = TR_MSG_USER + 100, /* r_nick */
    R_QUIT,                     /* r_quit */
    R_JOIN,                     /* r_target: join or create the channel */
    R_PRIVMSG,                  /* r_target + the line: to a nick */
    R_NAMES,                    /* r_target */
    R_WHO,                      /* r_target */
    R_LIST,                     /* r_target (target unused) */
    R_CHAN_INFO,                /* r_chan_info: members and topic, for LIST */
    R_CHAN_EMPTY,               /* r_chan_info: no members left */
    R_GATHERED,                 /* r_gathered: a channel's members for an event */
    C_JOIN = TR_MSG_USER + 200, /* c_join */
    C_PART,                     /* c_line: the PART line, already built */
    C_MSG,                      /* c_line: PRIVMSG / NOTICE */
    C_TOPIC,                    /* c_topic */
    C_KICK,                     /* c_kick */
    C_NAMES,                    /* chat_who: 353 / 366 to them */
    C_WHO,                      /* chat_who: 352 / 315 to them */
    C_LEAVE,                    /* c_leave: quit or rename; answer R_GATHERED */
    C_STOP,                     /* the registry saw it empty: exit */
    S_NICK = TR_MSG_USER + 300, /* s_nick: the registry's answer */
    S_JOINED,                   /* s_joined: a channel took us */
    S_KICKED                    /* s_joined: a channel removed us */
};

typedef struct r_nick {
    chat_who who;               /* who.nick: the old nick, "" before registration */
    char nick[IRC_NICKLEN + 1]; /* the new one */
    uint32_t nchans;
    tr_actor_id chans[CHAT_MAX_CHANS];
} r_nick;

typedef struct r_quit {
    chat_who who;
    char reason[256];
    uint32_t nchans;
    tr_actor_id chans[CHAT_MAX_CHANS];
} r_quit;

typedef struct r_target {
    chat_who who;
    char target[IRC_CHANNELLEN + 1];
    /* R_PRIVMSG: the line to deliver follows the struct */
} r_target;

typedef struct r_chan_info {
    char name[IRC_CHANNELLEN + 1];
    uint32_t members;
    uint64_t joins;             /* joins the channel has taken so far */
    char topic[IRC_TOPICLEN + 1];
} r_chan_info;

/* Where a line goes: a connection, and how it frames lines. */
typedef struct chat_dest {
    tr_conn_id conn;
    bool ws;
} chat_dest;

static inline chat_dest chat_dest_of(const chat_who *w)
{
    chat_dest d = {w->conn, w->ws};
    return d;
}

typedef struct r_gathered {
    uint64_t event;
    uint32_t n;
    chat_dest members[];        /* n of them */
} r_gathered;

typedef struct c_join {
    chat_who who;
    char name[IRC_CHANNELLEN + 1]; /* as the first joiner wrote it */
} c_join;

typedef struct c_line {
    tr_conn_id from;
    /* the line (no CR LF) follows */
} c_line;

typedef struct c_topic {
    chat_who who;
    bool set;
    char topic[IRC_TOPICLEN + 1];
} c_topic;

typedef struct c_kick {
    chat_who who;
    char target[IRC_NICKLEN + 1];
    char reason[IRC_KICKLEN + 1];
} c_kick;

typedef struct c_leave {
    uint64_t event;
    tr_conn_id conn;
    bool quit;                   /* else a rename to nick */
    char nick[IRC_NICKLEN + 1];
} c_leave;

typedef struct s_nick {
    bool ok;
    char nick[IRC_NICKLEN + 1];  /* the nick asked for */
} s_nick;

typedef struct s_joined {
    tr_actor_id chan;
    char name[IRC_CHANNELLEN + 1];
} s_joined;

/* The registry actor (registry.c): started once, before any server. */
int chat_registry_start(chat *ch);
/* A channel actor on `worker` (channel.c; the registry's to call). */
int chat_channel_spawn(chat *ch, const char *name, unsigned worker, tr_actor_id *out);

/* The connection handler of an IRC session (session.c); user = the chat. */
extern const tr_handler chat_session_handler;

/* Formats a numeric reply ":server NNN nick <text>" into buf (at least
 * IRC_MAX_LINE bytes); returns its length (cut to IRC_MAX_LINE - 2: the
 * codec adds the CR LF). Lines here never carry CR LF. */
size_t chat_numeric(const chat *ch, char *buf, int num, const char *nick, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Sends a numeric / a line (a copy) to a user by id. */
void chat_send_numeric(const chat *ch, chat_dest to, int num, const char *nick, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));
void chat_send_text(chat_dest to, const char *line, size_t len);

/* Queues one shared line on a user's connection, counting the delivery
 * (or the drop: a full queue closes that user). Takes a reference of b. */
void chat_deliver(chat *ch, chat_dest to, tr_buf *b);

/* The WebSocket side of a session (session.c): an IRC user over /ws. */
extern const tr_ws_handler chat_ws_handler;

/* A listening server and its name in /metrics ("irc", "ircs", "http"). */
struct chat_listener {
    const char *name;
    tr_server *srv;
};

/* The HTTP listener (http.c): GET /, /healthz, /metrics. Returns the
 * started server (and its tr_http in *out) or NULL with *err. */
struct tr_http;
tr_server *chat_http_start(chat *ch, const char *listen, struct tr_http **out, int *err);

/* Writes the Prometheus text exposition of the chat's counters, the
 * listeners' stats, the workers' load and the mailbox depths into buf;
 * returns the length of the whole text, which buf holds (NUL-terminated)
 * only if that is less than cap: call again with more room otherwise. */
size_t chat_metrics(chat *ch, const chat_listener *ls, size_t nls, char *buf, size_t cap);

/* The set of live channels (metrics.c). add returns 0 or TR_ENOMEM (the
 * channel then goes uncounted); remove ignores an id not in the set.
 * Any thread. */
void chat_chan_set_init(chat_chan_set *s);
void chat_chan_set_fini(chat_chan_set *s);
int chat_chan_set_add(chat_chan_set *s, tr_actor_id id);
void chat_chan_set_remove(chat_chan_set *s, tr_actor_id id);

/* ":nick!user@host" into buf. */
void chat_prefix(const chat_who *w, char *buf, size_t len);

#endif
