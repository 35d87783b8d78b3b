/* troupe-chat: the IRC client protocol's pure parts (RFC 1459 / 2812):
 * parsing a line, case mapping, name rules, the flood bucket. No I/O, no
 * actors: fuzzable and unit-tested on its own. */
#ifndef TROUPE_CHAT_IRC_H
#define TROUPE_CHAT_IRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IRC_MAX_LINE 512   /* with CRLF (RFC 1459 2.3) */
#define IRC_MAX_PARAMS 15
#define IRC_NICKLEN 30
#define IRC_CHANNELLEN 50
#define IRC_TOPICLEN 390
#define IRC_KICKLEN 390

/* One parsed line; the strings point into the buffer given to irc_parse
 * (which it cuts with NULs). A command is upper-cased; numerics stay. */
typedef struct irc_msg {
    const char *prefix; /* without ':', or NULL */
    const char *command;
    int nparams;
    const char *params[IRC_MAX_PARAMS]; /* the last may hold spaces (trailing) */
} irc_msg;

/* Parses line[0..len) (no CR LF; tags "@..." are skipped). The line is
 * modified in place and must have room for a NUL at line[len]. Returns 0,
 * or -1 for an empty line or one without a command. */
int irc_parse(char *line, size_t len, irc_msg *out);

/* RFC 1459 case mapping: A-Z [ ] \ ~ -> a-z { } | ^ . Writes at most
 * cap - 1 bytes and a NUL. */
void irc_casefold(const char *in, char *out, size_t cap);

/* Name rules: a nick is a letter or one of [ ] \ ` _ ^ { | } and then
 * those, digits and '-', at most IRC_NICKLEN. A channel is '#' then at
 * most IRC_CHANNELLEN - 1 bytes, none of space, comma, BEL, ':' or a
 * control character. */
bool irc_nick_valid(const char *nick);
bool irc_channel_valid(const char *name);

/* A token bucket: `burst` lines at once, then `per_s` lines a second.
 * irc_bucket_take returns false when the line is over the limit. */
typedef struct irc_bucket {
    double tokens;
    double burst, per_s;
    double last_s;
} irc_bucket;

void irc_bucket_init(irc_bucket *b, double burst, double per_s, double now_s);
bool irc_bucket_take(irc_bucket *b, double now_s);

#endif
