/* troupe-chat: parsing and the name rules (see irc.h). */
#include "irc.h"

#include <string.h>

static char *skip_spaces(char *p, char *end)
{
    while (p < end && *p == ' ') {
        p++;
    }
    return p;
}

int irc_parse(char *line, size_t len, irc_msg *out)
{
    memset(out, 0, sizeof(*out));
    char *p = line, *end = line + len;
    *end = '\0';
    if (p < end && *p == '@') { /* IRCv3 message tags: not used here */
        while (p < end && *p != ' ') {
            p++;
        }
    }
    p = skip_spaces(p, end);
    if (p < end && *p == ':') {
        out->prefix = ++p;
        while (p < end && *p != ' ') {
            p++;
        }
        if (p < end) {
            *p++ = '\0';
        }
        p = skip_spaces(p, end);
    }
    if (p == end) {
        return -1;
    }
    out->command = p;
    while (p < end && *p != ' ') {
        if (*p >= 'a' && *p <= 'z') {
            *p = (char)(*p - 32);
        }
        p++;
    }
    if (p < end) {
        *p++ = '\0';
    }
    while (out->nparams < IRC_MAX_PARAMS) {
        p = skip_spaces(p, end);
        if (p == end) {
            break;
        }
        if (*p == ':' || out->nparams == IRC_MAX_PARAMS - 1) {
            out->params[out->nparams++] = *p == ':' ? p + 1 : p; /* the rest of the line */
            break;
        }
        out->params[out->nparams++] = p;
        while (p < end && *p != ' ') {
            p++;
        }
        if (p < end) {
            *p++ = '\0';
        }
    }
    return 0;
}

static char fold(char c)
{
    if (c >= 'A' && c <= ']') { /* A-Z [ \ ] */
        return (char)(c + 32);
    }
    return c == '~' ? '^' : c;
}

void irc_casefold(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < cap; i++) {
        out[i] = fold(in[i]);
    }
    if (cap > 0) {
        out[i] = '\0';
    }
}

static bool nick_special(char c)
{
    return strchr("[]\\`_^{|}", c) != NULL && c != '\0';
}

bool irc_nick_valid(const char *nick)
{
    size_t n = strlen(nick);
    if (n == 0 || n > IRC_NICKLEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = nick[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool ok = letter || nick_special(c) || (i > 0 && ((c >= '0' && c <= '9') || c == '-'));
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool irc_channel_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 2 || n > IRC_CHANNELLEN || name[0] != '#') {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c == ',' || c == ':' || c == 0x7f) {
            return false;
        }
    }
    return true;
}

void irc_bucket_init(irc_bucket *b, double burst, double per_s, double now_s)
{
    b->tokens = burst;
    b->burst = burst;
    b->per_s = per_s;
    b->last_s = now_s;
}

bool irc_bucket_take(irc_bucket *b, double now_s)
{
    b->tokens += (now_s - b->last_s) * b->per_s;
    b->last_s = now_s;
    if (b->tokens > b->burst) {
        b->tokens = b->burst;
    }
    if (b->tokens < 1) {
        return false;
    }
    b->tokens -= 1;
    return true;
}
