/* `tidemark machine add`: the secret printed once, duplicates and bad names refused, the file private. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/ingest/ita.h"

TestSuite(machine, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

Test(machine, add_prints_the_secret_once_and_keeps_the_file_private)
{
    tc_child_t c;
    const char *data = tc_path("data");
    int code = tc_run(&c, (const char *[]){"machine", "add", "web-1.example", "--data", data, NULL});
    cr_assert_eq(code, 0, "exit %d: %s", code, c.err);
    cr_assert_eq(strlen(c.out), 65, "stdout: '%s'", c.out);
    for (unsigned i = 0; i < 64; i++)
        cr_assert(isxdigit((unsigned char)c.out[i]) && !isupper((unsigned char)c.out[i]), "stdout: %s", c.out);
    cr_assert_eq(c.out[64], '\n');
    cr_assert(strstr(c.err, "web-1.example"), "stderr: %s", c.err);

    char secret[65];
    memcpy(secret, c.out, 64);
    secret[64] = '\0';
    tc_child_free(&c);

    struct stat st;
    const char *conf = tc_path("data/machines.conf");
    cr_assert_eq(stat(conf, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);

    /* a second machine gets another secret; the first one's is kept */
    code = tc_run(&c, (const char *[]){"machine", "add", "db", "--data", data, NULL});
    cr_assert_eq(code, 0);
    cr_assert(strncmp(c.out, secret, 64) != 0);
    tc_child_free(&c);
    FILE *f = fopen(conf, "r");
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    cr_assert(strstr(text, secret), "%s", text);
    cr_assert_eq(tc_count_lines_with(text, "machine web-1.example "), 1, "%s", text);
    cr_assert_eq(tc_count_lines_with(text, "machine db "), 1, "%s", text);
}

Test(machine, duplicate_is_refused)
{
    tc_child_t c;
    const char *data = tc_path("data");
    cr_assert_eq(tc_run(&c, (const char *[]){"machine", "add", "web1", "--data", data, NULL}), 0);
    tc_child_free(&c);
    int code = tc_run(&c, (const char *[]){"machine", "add", "web1", "--data", data, NULL});
    cr_assert_eq(code, 2);
    cr_assert_eq(c.out[0], '\0', "a secret was printed: %s", c.out);
    cr_assert(strstr(c.err, "already registered"), "stderr: %s", c.err);
    tc_child_free(&c);
}

Test(machine, bad_names_are_refused)
{
    static const char *const names[] = {".hidden", "-x", "a/b", "a b", "",
                                        "0123456789012345678901234567890123456789012345678901234567890123"};
    const char *data = tc_path("data");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        tc_child_t c;
        int code = tc_run(&c, (const char *[]){"machine", "add", names[i], "--data", data, NULL});
        cr_assert_eq(code, 2, "name '%s': exit %d", names[i], code);
        cr_assert_eq(c.out[0], '\0');
        tc_child_free(&c);
    }
    struct stat st;
    cr_assert_neq(stat(tc_path("data/machines.conf"), &st), 0, "nothing is written");
}

Test(machine, usage_errors)
{
    tc_child_t c;
    cr_assert_eq(tc_run(&c, (const char *[]){"machine", NULL}), 2);
    tc_child_free(&c);
    cr_assert_eq(tc_run(&c, (const char *[]){"machine", "add", NULL}), 2);
    tc_child_free(&c);
    cr_assert_eq(tc_run(&c, (const char *[]){"machine", "remove", "x", NULL}), 2);
    tc_child_free(&c);
    cr_assert_eq(tc_run(&c, (const char *[]){"machine", "add", "x", "--bogus", NULL}), 2);
    tc_child_free(&c);
}
