/* troupe-chat: an IRC session, the handler of one user's connection
 * actor. It registers the user (PASS, NICK, USER, CAP), answers what it
 * can alone (PING, MOTD, numerics for bad input) and sends the rest to the
 * registry or straight to a channel actor it is a member of. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"

#define VERSION "troupe-chat-0.1"

typedef struct joined {
    tr_actor_id id;
    char name[IRC_CHANNELLEN + 1];
    char key[IRC_CHANNELLEN + 1];
} joined;

typedef struct session {
    chat *ch;
    tr_ws *ws;               /* a WebSocket user, or NULL (IRC over TCP/TLS) */
    chat_who who;            /* who.nick: "" until the registry granted one */
    char asked[IRC_NICKLEN + 1]; /* a nick the registry has not answered yet */
    char next[IRC_NICKLEN + 1];  /* asked for meanwhile: sent after the answer */
    bool pass_ok, got_user, cap_open, registered, ping_sent, counted;
    joined chans[CHAT_MAX_CHANS];
    uint32_t nchans;
    irc_bucket flood;
    char quit[256];          /* why it ends, for the QUIT others see */
    /* Answers still to come that later lines depend on (a nick claim
     * before registration, JOINs): lines meanwhile wait here, in order,
     * and run when the last answer is in. */
    uint32_t waiting;
    bool nick_waits;
    char *backlog;
    size_t backlog_len;
} session;

#define BACKLOG_BYTES 8192

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *me(const session *s)
{
    return s->who.nick[0] != '\0' ? s->who.nick : "*";
}

/* One line to this user: a text frame over WebSocket, else through the
 * line codec (which adds the CR LF). */
static void emit(tr_conn *c, const session *s, const char *line, size_t n)
{
    if (s->ws != NULL) {
        tr_ws_send(s->ws, TR_WS_TEXT, line, n);
    } else {
        tr_conn_write(c, line, n);
    }
}

static void reply(tr_conn *c, const session *s, int num, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(tr_conn *c, const session *s, int num, const char *fmt, ...)
{
    char line[IRC_MAX_LINE], text[IRC_MAX_LINE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    size_t n = chat_numeric(s->ch, line, num, me(s), "%s", text);
    emit(c, s, line, n);
}

static void say(tr_conn *c, const session *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(tr_conn *c, const session *s, const char *fmt, ...)
{
    char line[IRC_MAX_LINE];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, IRC_MAX_LINE - 2, fmt, ap);
    va_end(ap);
    if (n > 0) {
        emit(c, s, line, (size_t)n < IRC_MAX_LINE - 3 ? (size_t)n : IRC_MAX_LINE - 3);
    }
}

/* ERROR, then a graceful close (what is queued still leaves). */
static void close_link(tr_conn *c, session *s, const char *why)
{
    snprintf(s->quit, sizeof(s->quit), "%s", why);
    say(c, s, "ERROR :Closing Link: %s (%s)", s->who.host, why);
    if (s->ws != NULL) {
        tr_ws_close(s->ws, TR_WS_NORMAL, NULL);
    } else {
        tr_conn_close(c);
    }
}

static joined *find_chan(session *s, const char *name)
{
    char key[IRC_CHANNELLEN + 1];
    irc_casefold(name, key, sizeof(key));
    for (uint32_t i = 0; i < s->nchans; i++) {
        if (strcmp(s->chans[i].key, key) == 0) {
            return &s->chans[i];
        }
    }
    return NULL;
}

static void drop_chan(session *s, joined *j)
{
    *j = s->chans[--s->nchans];
}

static void copy_chans(const session *s, tr_actor_id *out, uint32_t *n)
{
    *n = s->nchans;
    for (uint32_t i = 0; i < s->nchans; i++) {
        out[i] = s->chans[i].id;
    }
}

/* ---- registration ---- */

static void motd(tr_conn *c, session *s)
{
    const chat_config *cfg = &s->ch->cfg;
    if (cfg->motd == NULL) {
        reply(c, s, 422, ":MOTD File is missing");
        return;
    }
    reply(c, s, 375, ":- %s Message of the day - ", cfg->name);
    for (size_t i = 0; i < cfg->motd_n; i++) {
        reply(c, s, 372, ":- %s", cfg->motd[i]);
    }
    reply(c, s, 376, ":End of /MOTD command.");
}

static void try_register(tr_conn *c, session *s)
{
    if (s->registered || s->who.nick[0] == '\0' || !s->got_user || s->cap_open) {
        return;
    }
    const chat_config *cfg = &s->ch->cfg;
    if (cfg->password != NULL && !s->pass_ok) {
        reply(c, s, 464, ":Password incorrect");
        close_link(c, s, "Bad password");
        return;
    }
    s->registered = true;
    chat_stat_add(&s->ch->st.users, 1);
    chat_stat_add(&s->ch->st.registrations, 1);
    reply(c, s, 1, ":Welcome to the troupe IRC network %s!%s@%s", s->who.nick, s->who.user,
          s->who.host);
    reply(c, s, 2, ":Your host is %s, running version %s", cfg->name, VERSION);
    reply(c, s, 3, ":This server was created %s", cfg->created);
    reply(c, s, 4, "%s %s i nt", cfg->name, VERSION);
    reply(c, s, 5,
          "CASEMAPPING=rfc1459 CHANTYPES=# NICKLEN=%d CHANNELLEN=%d TOPICLEN=%d KICKLEN=%d "
          "CHANLIMIT=#:%d PREFIX=(o)@ NETWORK=troupe :are supported by this server",
          IRC_NICKLEN, IRC_CHANNELLEN, IRC_TOPICLEN, IRC_KICKLEN, CHAT_MAX_CHANS);
    motd(c, s);
}

static void claim_nick(session *s, const char *nick)
{
    r_nick q = {.who = s->who};
    snprintf(q.nick, sizeof(q.nick), "%s", nick);
    snprintf(s->asked, sizeof(s->asked), "%s", nick);
    copy_chans(s, q.chans, &q.nchans);
    if (tr_send_copy(s->ch->registry, R_NICK, &q, sizeof(q)) == 0 && !s->registered) {
        s->nick_waits = true;
        s->waiting++;
    }
}

static void cmd_nick(tr_conn *c, session *s, const irc_msg *m)
{
    if (m->nparams < 1 || m->params[0][0] == '\0') {
        reply(c, s, 431, ":No nickname given");
        return;
    }
    if (!irc_nick_valid(m->params[0])) {
        reply(c, s, 432, "%s :Erroneous nickname", m->params[0]);
        return;
    }
    if (strcmp(m->params[0], s->who.nick) == 0) {
        return;
    }
    if (s->asked[0] != '\0') { /* one claim at a time: the last one wins */
        snprintf(s->next, sizeof(s->next), "%s", m->params[0]);
        return;
    }
    claim_nick(s, m->params[0]);
}

static void cmd_user(tr_conn *c, session *s, const irc_msg *m)
{
    if (s->registered) {
        reply(c, s, 462, ":You may not reregister");
        return;
    }
    if (m->nparams < 4) {
        reply(c, s, 461, "USER :Not enough parameters");
        return;
    }
    /* The user name shows in prefixes: keep it to safe characters. */
    size_t n = 0;
    for (const char *p = m->params[0]; *p && n < CHAT_USERLEN; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.') {
            s->who.user[n++] = *p;
        }
    }
    s->who.user[n] = '\0';
    if (n == 0) {
        snprintf(s->who.user, sizeof(s->who.user), "user");
    }
    s->got_user = true;
    try_register(c, s);
}

static void cmd_cap(tr_conn *c, session *s, const irc_msg *m)
{
    const char *sub = m->nparams > 0 ? m->params[0] : "";
    if (strcmp(sub, "LS") == 0 || strcmp(sub, "ls") == 0) {
        s->cap_open = !s->registered; /* registration waits for CAP END */
        say(c, s, ":%s CAP %s LS :", s->ch->cfg.name, me(s));
    } else if (strcmp(sub, "REQ") == 0 || strcmp(sub, "req") == 0) {
        say(c, s, ":%s CAP %s NAK :%s", s->ch->cfg.name, me(s), m->nparams > 1 ? m->params[1] : "");
    } else if (strcmp(sub, "END") == 0 || strcmp(sub, "end") == 0) {
        s->cap_open = false;
        try_register(c, s);
    } else {
        reply(c, s, 410, "%s :Invalid CAP command", sub);
    }
}

/* ---- channels and messages ---- */

static void cmd_join(tr_conn *c, session *s, const irc_msg *m)
{
    if (m->nparams < 1) {
        reply(c, s, 461, "JOIN :Not enough parameters");
        return;
    }
    if (strcmp(m->params[0], "0") == 0) { /* part them all */
        char prefix[128];
        chat_prefix(&s->who, prefix, sizeof(prefix));
        while (s->nchans > 0) {
            joined *j = &s->chans[s->nchans - 1];
            char buf[sizeof(c_line) + IRC_MAX_LINE];
            int n = snprintf(buf + sizeof(c_line), IRC_MAX_LINE, "%s PART %s", prefix, j->name);
            memcpy(buf, &(c_line){.from = s->who.conn}, sizeof(c_line));
            tr_send_copy(j->id, C_PART, buf, sizeof(c_line) + (size_t)n);
            drop_chan(s, j);
        }
        return;
    }
    char list[IRC_MAX_LINE];
    snprintf(list, sizeof(list), "%s", m->params[0]);
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name != NULL; name = strtok_r(NULL, ",", &save)) {
        if (!irc_channel_valid(name)) {
            reply(c, s, 403, "%s :No such channel", name);
            continue;
        }
        if (find_chan(s, name) != NULL) {
            continue;
        }
        if (s->nchans >= CHAT_MAX_CHANS) {
            reply(c, s, 405, "%s :You have joined too many channels", name);
            continue;
        }
        r_target q = {.who = s->who};
        snprintf(q.target, sizeof(q.target), "%s", name);
        if (tr_send_copy(s->ch->registry, R_JOIN, &q, sizeof(q)) == 0) {
            s->waiting++; /* S_JOINED answers, taken or not */
        }
    }
}

/* A line for a channel actor (PART, PRIVMSG, NOTICE): c_line + text. */
static void to_channel(session *s, tr_actor_id chan, uint32_t type, const char *line, size_t len)
{
    char buf[sizeof(c_line) + IRC_MAX_LINE];
    memcpy(buf, &(c_line){.from = s->who.conn}, sizeof(c_line));
    memcpy(buf + sizeof(c_line), line, len);
    tr_send_copy(chan, type, buf, sizeof(c_line) + len);
}

static void cmd_part(tr_conn *c, session *s, const irc_msg *m)
{
    if (m->nparams < 1) {
        reply(c, s, 461, "PART :Not enough parameters");
        return;
    }
    char list[IRC_MAX_LINE], prefix[128], line[IRC_MAX_LINE];
    snprintf(list, sizeof(list), "%s", m->params[0]);
    chat_prefix(&s->who, prefix, sizeof(prefix));
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name != NULL; name = strtok_r(NULL, ",", &save)) {
        joined *j = find_chan(s, name);
        if (j == NULL) {
            reply(c, s, 442, "%s :You're not on that channel", name);
            continue;
        }
        int n = m->nparams > 1 ? snprintf(line, sizeof(line), "%s PART %s :%s", prefix, j->name,
                                          m->params[1])
                               : snprintf(line, sizeof(line), "%s PART %s", prefix, j->name);
        to_channel(s, j->id, C_PART, line, n < IRC_MAX_LINE - 2 ? (size_t)n : IRC_MAX_LINE - 2);
        drop_chan(s, j);
    }
}

static void cmd_privmsg(tr_conn *c, session *s, const irc_msg *m, bool notice)
{
    const char *cmd = notice ? "NOTICE" : "PRIVMSG";
    if (m->nparams < 1 || m->params[0][0] == '\0') {
        if (!notice) {
            reply(c, s, 411, ":No recipient given (%s)", cmd);
        }
        return;
    }
    if (m->nparams < 2 || m->params[1][0] == '\0') {
        if (!notice) {
            reply(c, s, 412, ":No text to send");
        }
        return;
    }
    char list[IRC_MAX_LINE], prefix[128];
    snprintf(list, sizeof(list), "%s", m->params[0]);
    chat_prefix(&s->who, prefix, sizeof(prefix));
    char *save = NULL;
    int targets = 0;
    for (char *t = strtok_r(list, ",", &save); t != NULL && targets < 4;
         t = strtok_r(NULL, ",", &save), targets++) {
        char line[IRC_MAX_LINE];
        int n = snprintf(line, sizeof(line), "%s %s %s :%s", prefix, cmd, t, m->params[1]);
        size_t len = n < IRC_MAX_LINE - 2 ? (size_t)n : IRC_MAX_LINE - 2;
        if (t[0] == '#') {
            joined *j = find_chan(s, t);
            if (j != NULL) {
                to_channel(s, j->id, C_MSG, line, len);
            } else if (!notice) {
                reply(c, s, 404, "%s :Cannot send to channel", t);
            }
            continue;
        }
        char buf[sizeof(r_target) + IRC_MAX_LINE];
        r_target q = {.who = s->who};
        snprintf(q.target, sizeof(q.target), "%s", t);
        memcpy(buf, &q, sizeof(q));
        memcpy(buf + sizeof(q), line, len);
        tr_send_copy(s->ch->registry, R_PRIVMSG, buf, sizeof(q) + len);
    }
}

static void cmd_topic(tr_conn *c, session *s, const irc_msg *m)
{
    if (m->nparams < 1) {
        reply(c, s, 461, "TOPIC :Not enough parameters");
        return;
    }
    joined *j = find_chan(s, m->params[0]);
    if (j == NULL) {
        reply(c, s, 442, "%s :You're not on that channel", m->params[0]);
        return;
    }
    c_topic t = {.who = s->who, .set = m->nparams > 1};
    if (t.set) {
        snprintf(t.topic, sizeof(t.topic), "%s", m->params[1]);
    }
    tr_send_copy(j->id, C_TOPIC, &t, sizeof(t));
}

static void cmd_kick(tr_conn *c, session *s, const irc_msg *m)
{
    if (m->nparams < 2) {
        reply(c, s, 461, "KICK :Not enough parameters");
        return;
    }
    joined *j = find_chan(s, m->params[0]);
    if (j == NULL) {
        reply(c, s, 442, "%s :You're not on that channel", m->params[0]);
        return;
    }
    c_kick k = {.who = s->who};
    snprintf(k.target, sizeof(k.target), "%s", m->params[1]);
    snprintf(k.reason, sizeof(k.reason), "%s", m->nparams > 2 ? m->params[2] : s->who.nick);
    tr_send_copy(j->id, C_KICK, &k, sizeof(k));
}

static void ask_registry(session *s, uint32_t type, const char *target)
{
    r_target q = {.who = s->who};
    snprintf(q.target, sizeof(q.target), "%s", target);
    tr_send_copy(s->ch->registry, type, &q, sizeof(q));
}

static void cmd_names_who(tr_conn *c, session *s, const irc_msg *m, bool names)
{
    if (m->nparams < 1 || m->params[0][0] != '#') {
        if (names) {
            reply(c, s, 366, "%s :End of /NAMES list.", m->nparams > 0 ? m->params[0] : "*");
        } else {
            reply(c, s, 315, "%s :End of /WHO list.", m->nparams > 0 ? m->params[0] : "*");
        }
        return;
    }
    ask_registry(s, names ? R_NAMES : R_WHO, m->params[0]);
}

static void cmd_mode(tr_conn *c, session *s, const irc_msg *m)
{
    if (m->nparams < 1) {
        reply(c, s, 461, "MODE :Not enough parameters");
    } else if (m->params[0][0] == '#') {
        reply(c, s, 324, "%s +nt", m->params[0]); /* fixed modes, none settable */
    } else if (strcmp(m->params[0], s->who.nick) == 0) {
        reply(c, s, 221, "+i");
    } else {
        reply(c, s, 502, ":Can't change mode for other users");
    }
}

/* ---- dispatch ---- */

static void dispatch(tr_conn *c, session *s, const irc_msg *m)
{
    const char *cmd = m->command;
    if (strcmp(cmd, "PING") == 0) {
        if (m->nparams < 1) {
            reply(c, s, 409, ":No origin specified");
        } else {
            say(c, s, ":%s PONG %s :%s", s->ch->cfg.name, s->ch->cfg.name, m->params[0]);
        }
    } else if (strcmp(cmd, "PONG") == 0) {
        /* any line counts as life; nothing else to do */
    } else if (strcmp(cmd, "QUIT") == 0) {
        char why[256];
        snprintf(why, sizeof(why), "Quit: %.200s", m->nparams > 0 ? m->params[0] : "Client Quit");
        close_link(c, s, why);
    } else if (strcmp(cmd, "CAP") == 0) {
        cmd_cap(c, s, m);
    } else if (strcmp(cmd, "PASS") == 0) {
        if (s->registered) {
            reply(c, s, 462, ":You may not reregister");
        } else if (m->nparams < 1) {
            reply(c, s, 461, "PASS :Not enough parameters");
        } else {
            s->pass_ok = s->ch->cfg.password == NULL || strcmp(m->params[0], s->ch->cfg.password) == 0;
        }
    } else if (strcmp(cmd, "NICK") == 0) {
        cmd_nick(c, s, m);
    } else if (strcmp(cmd, "USER") == 0) {
        cmd_user(c, s, m);
    } else if (!s->registered) {
        reply(c, s, 451, ":You have not registered");
    } else if (strcmp(cmd, "JOIN") == 0) {
        cmd_join(c, s, m);
    } else if (strcmp(cmd, "PART") == 0) {
        cmd_part(c, s, m);
    } else if (strcmp(cmd, "PRIVMSG") == 0 || strcmp(cmd, "NOTICE") == 0) {
        cmd_privmsg(c, s, m, cmd[0] == 'N');
    } else if (strcmp(cmd, "TOPIC") == 0) {
        cmd_topic(c, s, m);
    } else if (strcmp(cmd, "KICK") == 0) {
        cmd_kick(c, s, m);
    } else if (strcmp(cmd, "NAMES") == 0 || strcmp(cmd, "WHO") == 0) {
        cmd_names_who(c, s, m, cmd[0] == 'N');
    } else if (strcmp(cmd, "LIST") == 0) {
        ask_registry(s, R_LIST, "");
    } else if (strcmp(cmd, "MOTD") == 0) {
        motd(c, s);
    } else if (strcmp(cmd, "MODE") == 0) {
        cmd_mode(c, s, m);
    } else {
        reply(c, s, 421, "%s :Unknown command", cmd);
    }
}

/* ---- the connection's callbacks ---- */

/* A new user on connection c (ws: over WebSocket). */
static session *session_new(tr_conn *c, chat *ch, tr_ws *ws)
{
    session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->ch = ch;
    s->ws = ws;
    s->who.conn = tr_conn_get_id(c);
    s->who.ws = ws != NULL;
    char peer[80];
    tr_conn_peer(c, peer, sizeof(peer));
    /* "1.2.3.4:5678" / "[::1]:5678" -> the address alone. */
    char *end = strrchr(peer, ':');
    if (end != NULL && peer[0] != 'u') {
        *end = '\0';
    }
    const char *host = peer[0] == '[' ? peer + 1 : peer;
    snprintf(s->who.host, sizeof(s->who.host), "%.63s", host);
    char *br = strchr(s->who.host, ']');
    if (br != NULL) {
        *br = '\0';
    }
    irc_bucket_init(&s->flood, ch->cfg.flood_burst, ch->cfg.flood_per_s, now_s());
    s->counted = true;
    uint64_t n = __atomic_add_fetch(&ch->st.connections, 1, __ATOMIC_RELAXED);
    if (ch->cfg.max_clients && n > ch->cfg.max_clients) {
        close_link(c, s, "Too many connections");
    }
    return s;
}

static int on_open(tr_conn *c, void *user)
{
    session *s = session_new(c, user, NULL);
    if (s == NULL) {
        return TR_ENOMEM;
    }
    tr_conn_set_user(c, s);
    return 0;
}

static void run_line(tr_conn *c, session *s, const char *data, size_t len)
{
    char line[IRC_MAX_LINE + 1];
    if (len > IRC_MAX_LINE - 2) {
        reply(c, s, 417, ":Input line was too long");
        return;
    }
    memcpy(line, data, len);
    irc_msg m;
    if (irc_parse(line, len, &m) == 0) {
        dispatch(c, s, &m);
    }
}

/* Runs the lines that waited, until one waits again. */
static void run_backlog(tr_conn *c, session *s)
{
    if (s->backlog == NULL) {
        return;
    }
    size_t off = 0;
    while (s->waiting == 0 && off < s->backlog_len && s->quit[0] == '\0') {
        char *nl = memchr(s->backlog + off, '\n', s->backlog_len - off);
        size_t n = (size_t)(nl - (s->backlog + off));
        run_line(c, s, s->backlog + off, n);
        off += n + 1;
    }
    memmove(s->backlog, s->backlog + off, s->backlog_len - off);
    s->backlog_len -= off;
    if (s->backlog_len == 0) {
        free(s->backlog);
        s->backlog = NULL;
    }
}

static void answered(tr_conn *c, session *s)
{
    if (s->waiting > 0 && --s->waiting == 0) {
        run_backlog(c, s);
    }
}

/* One line from the user, however it came. */
static void session_input(tr_conn *c, session *s, const char *data, size_t len)
{
    chat_stat_add(&s->ch->st.lines_in, 1);
    s->ping_sent = false;
    if (s->quit[0] != '\0') {
        return; /* closing: nothing more is read */
    }
    if (!irc_bucket_take(&s->flood, now_s())) {
        chat_stat_add(&s->ch->st.flood_kills, 1);
        close_link(c, s, "Excess Flood");
        return;
    }
    if (s->waiting == 0) {
        run_line(c, s, data, len);
        return;
    }
    if (len > IRC_MAX_LINE - 2) {
        len = IRC_MAX_LINE - 1; /* still too long: 417 when it runs */
    }
    if (s->backlog_len + len + 1 > BACKLOG_BYTES ||
        (s->backlog == NULL && (s->backlog = malloc(BACKLOG_BYTES)) == NULL)) {
        chat_stat_add(&s->ch->st.flood_kills, 1);
        close_link(c, s, "Excess Flood");
        return;
    }
    memcpy(s->backlog + s->backlog_len, data, len);
    s->backlog[s->backlog_len + len] = '\n';
    s->backlog_len += len + 1;
}

static int on_frame(tr_conn *c, const void *data, size_t len, void *user)
{
    (void)user;
    session_input(c, tr_conn_user(c), data, len);
    return 0;
}

static tr_error_action on_error(tr_conn *c, tr_error_class cls, int err, void *user)
{
    (void)err;
    (void)user;
    session *s = tr_conn_user(c);
    switch (cls) {
    case TR_ERR_FRAME_TOO_LARGE: /* the line codec skips to the next line */
        reply(c, s, 417, ":Input line was too long");
        return TR_CONTINUE;
    case TR_ERR_IDLE_TIMEOUT:
        if (!s->ping_sent && s->quit[0] == '\0') {
            s->ping_sent = true;
            say(c, s, "PING :%s", s->ch->cfg.name);
            return TR_CONTINUE; /* the clock starts again */
        }
        snprintf(s->quit, sizeof(s->quit), "Ping timeout");
        say(c, s, "ERROR :Closing Link: %s (Ping timeout)", s->who.host);
        return TR_DISCONNECT;
    case TR_ERR_SEND_OVERFLOW:
        chat_stat_add(&s->ch->st.sendq_kills, 1);
        snprintf(s->quit, sizeof(s->quit), "SendQ exceeded");
        tr_conn_abort(c); /* a queue that does not drain: no linger */
        return TR_DISCONNECT;
    default:
        if (s->quit[0] == '\0') {
            snprintf(s->quit, sizeof(s->quit), "%s", tr_strerror(err));
        }
        return TR_DISCONNECT;
    }
}

/* An answer from the registry or a channel. */
static void session_message(tr_conn *c, session *s, tr_msg *msg)
{
    const void *p = tr_msg_data(msg);
    size_t len = tr_msg_len(msg);
    if (tr_msg_type(msg) == S_NICK && len == sizeof(s_nick)) {
        const s_nick *r = p;
        s->asked[0] = '\0';
        bool counted = s->nick_waits;
        s->nick_waits = false;
        if (!r->ok) {
            reply(c, s, 433, "%s :Nickname is already in use", r->nick);
        } else {
            snprintf(s->who.nick, sizeof(s->who.nick), "%s", r->nick);
            try_register(c, s);
        }
        if (s->next[0] != '\0' && s->quit[0] == '\0') {
            char next[IRC_NICKLEN + 1];
            snprintf(next, sizeof(next), "%s", s->next);
            s->next[0] = '\0';
            if (strcmp(next, s->who.nick) != 0) {
                claim_nick(s, next);
            }
        }
        if (counted) {
            answered(c, s);
        }
    } else if (tr_msg_type(msg) == S_JOINED && len == sizeof(s_joined)) {
        const s_joined *j = p;
        if (j->chan.bits != 0 && find_chan(s, j->name) == NULL && s->nchans < CHAT_MAX_CHANS) {
            joined *n = &s->chans[s->nchans++];
            n->id = j->chan;
            snprintf(n->name, sizeof(n->name), "%s", j->name);
            irc_casefold(j->name, n->key, sizeof(n->key));
        }
        answered(c, s);
    } else if (tr_msg_type(msg) == S_KICKED && len == sizeof(s_joined)) {
        joined *j = find_chan(s, ((const s_joined *)p)->name);
        if (j != NULL) {
            drop_chan(s, j);
        }
    }
}

static void on_message(tr_conn *c, tr_msg *msg, void *user)
{
    (void)user;
    session_message(c, tr_conn_user(c), msg);
}

static void on_shutdown(tr_conn *c, void *user)
{
    (void)user;
    session *s = tr_conn_user(c);
    say(c, s, ":%s NOTICE %s :Server shutting down", s->ch->cfg.name, me(s));
    say(c, s, "ERROR :Closing Link: %s (Server shutting down)", s->who.host);
    snprintf(s->quit, sizeof(s->quit), "Server shutting down");
}

/* The user is gone: the registry and the channels hear it; the session
 * is freed. */
static void session_end(session *s, int reason)
{
    if (s->asked[0] != '\0') {
        /* A claim still on its way: release it whatever the answer. */
        r_quit q = {.who = s->who};
        snprintf(q.who.nick, sizeof(q.who.nick), "%s", s->asked);
        snprintf(q.reason, sizeof(q.reason), "Connection closed");
        tr_send_copy(s->ch->registry, R_QUIT, &q, sizeof(q));
    }
    if (s->who.nick[0] != '\0') {
        r_quit q = {.who = s->who};
        snprintf(q.reason, sizeof(q.reason), "%s",
                 s->quit[0] ? s->quit : reason == 0 ? "Connection closed" : tr_strerror(reason));
        copy_chans(s, q.chans, &q.nchans);
        tr_send_copy(s->ch->registry, R_QUIT, &q, sizeof(q));
    }
    if (s->registered) {
        chat_stat_add(&s->ch->st.users, -1);
    }
    chat_stat_add(&s->ch->st.connections, -1);
    free(s->backlog);
    free(s);
}

static void on_close(tr_conn *c, int reason, void *user)
{
    (void)user;
    session *s = tr_conn_user(c);
    if (s != NULL) {
        tr_conn_set_user(c, NULL);
        session_end(s, reason);
    }
}

const tr_handler chat_session_handler = {.on_open = on_open,
                                         .on_frame = on_frame,
                                         .on_error = on_error,
                                         .on_message = on_message,
                                         .on_shutdown = on_shutdown,
                                         .on_close = on_close};

/* ---- the same session over WebSocket (GET /ws, text.ircv3.net) ---- */

static void ws_open(tr_ws *ws, void *user)
{
    session *s = session_new(tr_ws_conn(ws), user, ws);
    if (s == NULL) {
        tr_ws_close(ws, TR_WS_INTERNAL_ERROR, "out of memory");
        return;
    }
    tr_ws_set_user(ws, s);
}

/* One IRC line per text frame (the IRCv3 convention); CR LF tolerated,
 * several lines in one frame split. */
static void ws_message(tr_ws *ws, tr_ws_opcode op, const void *data, size_t len, void *user)
{
    (void)op;
    (void)user;
    session *s = tr_ws_user(ws);
    const char *p = data, *end = p + len;
    while (s != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl != NULL ? nl : end;
        size_t n = (size_t)(stop - p);
        if (n > 0 && p[n - 1] == '\r') {
            n--;
        }
        if (n > 0) {
            session_input(tr_ws_conn(ws), s, p, n);
        }
        p = stop + (nl != NULL);
    }
}

static void ws_close(tr_ws *ws, uint16_t code, void *user)
{
    (void)code;
    (void)user;
    session *s = tr_ws_user(ws);
    if (s != NULL) {
        tr_ws_set_user(ws, NULL);
        session_end(s, 0);
    }
}

static void ws_app_message(tr_ws *ws, tr_msg *m, void *user)
{
    (void)user;
    session *s = tr_ws_user(ws);
    if (s != NULL) {
        session_message(tr_ws_conn(ws), s, m);
    }
}

const tr_ws_handler chat_ws_handler = {.on_open = ws_open,
                                       .on_message = ws_message,
                                       .on_close = ws_close,
                                       .on_app_message = ws_app_message};
