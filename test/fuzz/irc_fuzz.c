/* libFuzzer target for the chat's IRC line parser (demo/chat/irc.c).
 *
 * Input: one line as a client could send it (any bytes; the codec has
 * already cut it at the newline and to 510 bytes). Checks, beyond "no
 * crash": the command is non-empty and upper-cased; every parameter lies
 * inside the line; there are at most 15; case mapping is idempotent and
 * keeps the length; the name rules never accept a name with a space, a
 * comma or a control character. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "irc.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_name_rules(const char *s)
{
    bool bad = strpbrk(s, " ,\a\r\n:") != NULL;
    if (irc_nick_valid(s)) {
        CHECK(!bad && strlen(s) <= IRC_NICKLEN);
    }
    if (irc_channel_valid(s)) {
        CHECK(s[0] == '#' && strpbrk(s, " ,\a\r\n:") == NULL && strlen(s) <= IRC_CHANNELLEN);
    }
    char once[IRC_MAX_LINE + 1], twice[IRC_MAX_LINE + 1];
    irc_casefold(s, once, sizeof(once));
    irc_casefold(once, twice, sizeof(twice));
    CHECK(strcmp(once, twice) == 0);
    CHECK(strlen(once) == strlen(s) || strlen(s) >= sizeof(once));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > IRC_MAX_LINE - 2) {
        size = IRC_MAX_LINE - 2;
    }
    char line[IRC_MAX_LINE + 1];
    memcpy(line, data, size);
    if (memchr(line, '\0', size) != NULL) {
        return 0; /* NUL never reaches the parser as part of a line: C strings */
    }
    irc_msg m;
    if (irc_parse(line, size, &m) != 0) {
        return 0;
    }
    CHECK(m.command != NULL && m.command[0] != '\0');
    CHECK(m.command >= line && m.command < line + size + 1);
    for (const char *p = m.command; *p; p++) {
        CHECK(!(*p >= 'a' && *p <= 'z'));
    }
    CHECK(m.nparams >= 0 && m.nparams <= IRC_MAX_PARAMS);
    for (int i = 0; i < m.nparams; i++) {
        CHECK(m.params[i] >= line && m.params[i] <= line + size);
        check_name_rules(m.params[i]);
    }
    return 0;
}
