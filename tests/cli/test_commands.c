/* `tidemark` dispatch: version, help, and the exit codes of bad commands. */
#include <criterion/criterion.h>
#include <string.h>

#include "tests/cli/helpers.h"

TestSuite(commands, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

Test(commands, version_prints_the_project_version)
{
    tc_child_t c;
    int code = tc_run(&c, (const char *[]){"version", NULL});
    cr_assert_eq(code, 0, "stderr: %s", c.err);
    cr_assert_str_eq(c.out, "tidemark " TM_VERSION "\n");
    tc_child_free(&c);
}

Test(commands, help_prints_usage_on_stdout)
{
    const char *forms[] = {"help", "--help", "-h"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        tc_child_t c;
        int code = tc_run(&c, (const char *[]){forms[i], NULL});
        cr_assert_eq(code, 0, "%s: exit %d", forms[i], code);
        cr_assert(strstr(c.out, "usage: tidemark"), "%s: stdout: %s", forms[i], c.out);
        cr_assert(strstr(c.out, "serve") && strstr(c.out, "journal dump"));
        cr_assert_str_eq(c.err, "");
        tc_child_free(&c);
    }
}

Test(commands, no_command_is_a_usage_error)
{
    tc_child_t c;
    cr_assert_eq(tc_run(&c, (const char *[]){NULL}), 2);
    cr_assert(strstr(c.err, "usage: tidemark"), "stderr: %s", c.err);
    cr_assert_str_eq(c.out, "");
    tc_child_free(&c);
}

Test(commands, unknown_command_is_a_usage_error)
{
    tc_child_t c;
    cr_assert_eq(tc_run(&c, (const char *[]){"frobnicate", "--now", NULL}), 2);
    cr_assert(strstr(c.err, "unknown command 'frobnicate'"), "stderr: %s", c.err);
    cr_assert(strstr(c.err, "usage: tidemark"), "stderr: %s", c.err);
    cr_assert_str_eq(c.out, "");
    tc_child_free(&c);
}

Test(commands, journal_usage_errors)
{
    const char *const *cases[] = {
        (const char *[]){"journal", NULL},
        (const char *[]){"journal", "shred", NULL},
        (const char *[]){"journal", "dump", NULL},
        (const char *[]){"journal", "dump", "a", "b", NULL},
        (const char *[]){"journal", "dump", "--frob", ".", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_child_t c;
        int code = tc_run(&c, cases[i]);
        cr_assert_eq(code, 2, "case %zu: exit %d, stderr: %s", i, code, c.err);
        cr_assert(strstr(c.err, "usage: tidemark journal dump"), "case %zu: stderr: %s", i, c.err);
        tc_child_free(&c);
    }
}

Test(commands, journal_dump_of_a_missing_folder_fails)
{
    tc_child_t c;
    const char *missing = tc_path("nothing-here");
    cr_assert_eq(tc_run(&c, (const char *[]){"journal", "dump", missing, NULL}), 1);
    cr_assert(strstr(c.err, "nothing-here") && strstr(c.err, "No such file"), "stderr: %s", c.err);
    tc_child_free(&c);
}
