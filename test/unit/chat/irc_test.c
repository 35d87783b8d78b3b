/* Tests for demo/chat/irc.c: parsing, RFC 1459 case mapping, the name
 * rules and the flood bucket. */
#include <criterion/criterion.h>
#include <string.h>

#include "irc.h"

TestSuite(irc, .timeout = 10.0);

static irc_msg parse(char *buf, const char *line)
{
    strcpy(buf, line);
    irc_msg m;
    cr_assert_eq(irc_parse(buf, strlen(buf), &m), 0, "%s", line);
    return m;
}

Test(irc, prefix_command_params_and_trailing)
{
    char buf[600];
    irc_msg m = parse(buf, ":nick!u@h privmsg #chan :hello  there :)");
    cr_assert_str_eq(m.prefix, "nick!u@h");
    cr_assert_str_eq(m.command, "PRIVMSG", "commands are upper-cased");
    cr_assert_eq(m.nparams, 2);
    cr_assert_str_eq(m.params[0], "#chan");
    cr_assert_str_eq(m.params[1], "hello  there :)");
    m = parse(buf, "USER  guest 0  * :Real Name");
    cr_assert_null(m.prefix);
    cr_assert_eq(m.nparams, 4);
    cr_assert_str_eq(m.params[1], "0");
    cr_assert_str_eq(m.params[3], "Real Name");
    m = parse(buf, "@time=x;y :srv 001 me :Welcome");
    cr_assert_str_eq(m.command, "001", "tags skipped");
    m = parse(buf, "PRIVMSG #c :");
    cr_assert_eq(m.nparams, 2);
    cr_assert_str_eq(m.params[1], "", "an empty trailing is a parameter");
}

Test(irc, at_most_fifteen_params_the_last_keeps_the_rest)
{
    char buf[600];
    irc_msg m = parse(buf, "CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17");
    cr_assert_eq(m.nparams, IRC_MAX_PARAMS);
    cr_assert_str_eq(m.params[14], "15 16 17");
}

Test(irc, empty_and_prefix_only_lines_are_refused)
{
    char buf[64];
    irc_msg m;
    strcpy(buf, "");
    cr_assert_eq(irc_parse(buf, 0, &m), -1);
    strcpy(buf, "   ");
    cr_assert_eq(irc_parse(buf, 3, &m), -1);
    strcpy(buf, ":only.a.prefix");
    cr_assert_eq(irc_parse(buf, strlen(buf), &m), -1);
}

Test(irc, rfc1459_casemapping)
{
    char out[32];
    irc_casefold("Nick[A]\\~", out, sizeof(out));
    cr_assert_str_eq(out, "nick{a}|^");
    irc_casefold("abcdef", out, 4);
    cr_assert_str_eq(out, "abc", "cut to the room given");
}

Test(irc, nick_and_channel_rules)
{
    cr_assert(irc_nick_valid("alice"));
    cr_assert(irc_nick_valid("[b]-0^`_{|}"));
    cr_assert_not(irc_nick_valid(""));
    cr_assert_not(irc_nick_valid("1abc"), "no digit first");
    cr_assert_not(irc_nick_valid("-abc"), "no dash first");
    cr_assert_not(irc_nick_valid("a b"));
    cr_assert_not(irc_nick_valid("a:b"));
    cr_assert_not(irc_nick_valid("abcdefghijabcdefghijabcdefghij1"), "31 > NICKLEN");
    cr_assert(irc_channel_valid("#troupe"));
    cr_assert(irc_channel_valid("#a.b-c_d"));
    cr_assert_not(irc_channel_valid("#"));
    cr_assert_not(irc_channel_valid("troupe"));
    cr_assert_not(irc_channel_valid("#a,b"));
    cr_assert_not(irc_channel_valid("#a b"));
    cr_assert_not(irc_channel_valid("#a\x07"));
    cr_assert_not(irc_channel_valid("#a:b"));
}

Test(irc, the_bucket_allows_a_burst_then_a_rate)
{
    irc_bucket b;
    irc_bucket_init(&b, 5, 2, 100.0);
    for (int i = 0; i < 5; i++) {
        cr_assert(irc_bucket_take(&b, 100.0), "burst line %d", i);
    }
    cr_assert_not(irc_bucket_take(&b, 100.0), "the sixth at once is over");
    cr_assert(irc_bucket_take(&b, 100.5), "half a second buys one at 2/s");
    cr_assert_not(irc_bucket_take(&b, 100.5));
    cr_assert(irc_bucket_take(&b, 200.0));
    for (int i = 0; i < 4; i++) {
        cr_assert(irc_bucket_take(&b, 200.0));
    }
    cr_assert_not(irc_bucket_take(&b, 200.0), "never more than the burst saved up");
}
