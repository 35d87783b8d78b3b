/* Tests for runtime/error.c: TR_E* codes and tr_strerror. */
#include <criterion/criterion.h>
#include <limits.h>
#include <string.h>

#include "troupe/error.h"
#include "tsan_criterion.h"

TestSuite(error, .timeout = 5.0);

typedef struct code_entry {
    int code;
    const char *name;
    const char *text;
} code_entry;

#define ENTRY(name, value, text) {name, #name, text},
static const code_entry codes[] = {TR_ERROR_MAP(ENTRY)};
#undef ENTRY
#define NCODES (sizeof(codes) / sizeof(codes[0]))

Test(error, strerror_names_every_code_with_its_table_text)
{
    cr_assert_eq(NCODES, 24, "the table has grown: extend the checks below");
    for (size_t i = 0; i < NCODES; i++) {
        const char *s = tr_strerror(codes[i].code);
        cr_assert_not_null(s, "%s", codes[i].name);
        cr_assert_str_eq(s, codes[i].text, "%s", codes[i].name);
    }
}

Test(error, codes_are_negative_and_distinct)
{
    for (size_t i = 0; i < NCODES; i++) {
        cr_assert_lt(codes[i].code, 0, "%s", codes[i].name);
        for (size_t j = i + 1; j < NCODES; j++) {
            cr_assert_neq(codes[i].code, codes[j].code, "%s == %s", codes[i].name, codes[j].name);
        }
    }
}

Test(error, system_codes_are_negated_errno_and_own_codes_sit_below_minus_4000)
{
    cr_assert_eq(TR_EINVAL, -EINVAL);
    cr_assert_eq(TR_ENOMEM, -ENOMEM);
    cr_assert_eq(TR_ETIMEDOUT, -ETIMEDOUT);
    cr_assert_eq(TR_EDEADLK, -EDEADLK);
    cr_assert_eq(TR_EAGAIN, -EAGAIN);
    cr_assert_eq(TR_EPIPE, -EPIPE);
    cr_assert_eq(TR_ECLOSED, -4001);
    cr_assert_eq(TR_EBUFFULL, -4002);
    cr_assert_eq(TR_EADDR, -4009);
    cr_assert_eq(TR_ENOTSUP, -EOPNOTSUPP);
    cr_assert_eq(TR_ETLSTRUNC, -4012);
    cr_assert_eq(TR_ENOBUFS, -ENOBUFS);
    cr_assert_eq(TR_ENONAME, -4010);
    for (size_t i = 0; i < NCODES; i++) {
        int c = codes[i].code;
        /* errno values are small; troupe's own codes start at -4001. */
        cr_assert(c < -4000 || c >= -200, "%s=%d is in neither range", codes[i].name, c);
    }
}

Test(error, strerror_zero_is_success)
{
    cr_assert_str_eq(tr_strerror(0), "success");
    cr_assert_eq(TR_OK, 0);
}

Test(error, strerror_unknown_codes_say_unknown_error_never_null)
{
    const int unknown[] = {-4000, -4011, -4999, -5000, -99999, 1, 7, 12345, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        const char *s = tr_strerror(unknown[i]);
        cr_assert_not_null(s, "%d", unknown[i]);
        cr_assert_str_eq(s, "unknown error", "%d", unknown[i]);
    }
    /* An errno number the C library does not know. */
    cr_assert_str_eq(tr_strerror(-3999), "unknown error");
}

Test(error, strerror_negated_errno_uses_the_system_text)
{
    cr_assert_str_eq(tr_strerror(-ENOENT), strerror(ENOENT));
    cr_assert_str_eq(tr_strerror(-EINTR), strerror(EINTR));
    cr_assert_str_eq(tr_strerror(-EBADF), strerror(EBADF));
}
