/*
 * `tidemark serve`: the real binary starts, reports its journal, serves until
 * a signal and exits 0; settings come from defaults, a config file and flags.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/cli/helpers.h"

#define TC_SERVING "tidemark: serving (journal open); stop with Ctrl-C or SIGTERM\n"

TestSuite(serve, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

/* Start serve with args, wait for the serving line, stop it with sig, and
 * check it exited 0. c holds the output afterwards. */
static void tc_serve_and_stop(tc_child_t *c, const char *cwd, const char *const *args, int sig)
{
    /* Tests run in parallel: agents and the API listen on ports of the
     * kernel's choice, not on the default ones. */
    const char *all[32];
    size_t n = 0;
    for (; args[n]; n++) {
        cr_assert_lt(n, 30);
        all[n] = args[n];
    }
    all[n++] = "--agents=127.0.0.1:0";
    all[n++] = "--api=127.0.0.1:0";
    all[n++] = "--nbd=127.0.0.1:0";
    all[n] = NULL;
    tc_spawn(c, cwd, all);
    bool up = tc_read_until(c, TC_SERVING);
    cr_assert(up, "serve never reported serving; stdout:\n%s\nstderr:\n%s", c->out, c->err);
    cr_assert_eq(kill(c->pid, sig), 0);
    int code = tc_finish(c);
    cr_assert_eq(code, 0, "exit %d after signal %d; stdout:\n%s\nstderr:\n%s", code, sig, c->out, c->err);
    cr_assert(strstr(c->out, "tidemark: stopped"), "stdout:\n%s", c->out);
}

static void tc_assert_private_dir(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s is missing", path);
    cr_assert(S_ISDIR(st.st_mode), "%s is not a folder", path);
    cr_assert_eq(st.st_mode & 0777, 0700, "%s has mode %o", path, st.st_mode & 0777);
}

Test(serve, new_data_folder_reports_and_stops_on_sigterm)
{
    tc_child_t c;
    const char *data = tc_path("data");
    tc_serve_and_stop(&c, NULL, (const char *[]){"serve", "--data", data, NULL}, SIGTERM);

    tc_assert_private_dir(data);
    cr_assert(tc_is_dir(tc_path("data/journal")));
    cr_assert(strstr(c.out, "data folder:"), "stdout:\n%s", c.out);
    cr_assert(strstr(c.out, "journal:") && strstr(c.out, "(id "), "stdout:\n%s", c.out);
    cr_assert(strstr(c.out, "segments:"), "stdout:\n%s", c.out);
    cr_assert(strstr(c.out, "records:     none yet"), "stdout:\n%s", c.out);
    cr_assert(strstr(c.out, "disk use:"), "stdout:\n%s", c.out);
    cr_assert(strstr(c.out, "recovery:    empty"), "stdout:\n%s", c.out);
    cr_assert(strstr(c.err, "received SIGTERM"), "stderr:\n%s", c.err);
    tc_child_free(&c);
}

Test(serve, stops_on_sigint)
{
    tc_child_t c;
    char flag[4200];
    snprintf(flag, sizeof flag, "--data=%s", tc_path("data")); /* the joined form */
    tc_serve_and_stop(&c, NULL, (const char *[]){"serve", flag, NULL}, SIGINT);
    cr_assert(tc_is_dir(tc_path("data/journal")));
    cr_assert(strstr(c.err, "received SIGINT"), "stderr:\n%s", c.err);
    tc_child_free(&c);
}

Test(serve, default_data_folder_is_in_the_working_folder)
{
    tc_child_t c;
    tc_serve_and_stop(&c, tc_dir, (const char *[]){"serve", NULL}, SIGINT);
    tc_assert_private_dir(tc_path("tidemark-data"));
    cr_assert(tc_is_dir(tc_path("tidemark-data/journal")));
    cr_assert(strstr(c.err, "received SIGINT"), "stderr:\n%s", c.err);
    tc_child_free(&c);
}

Test(serve, reports_an_existing_journal)
{
    tc_child_t c;
    cr_assert_eq(mkdir(tc_path("data"), 0700), 0);
    tc_make_journal(tc_path("data/journal"), 3);

    tc_serve_and_stop(&c, NULL, (const char *[]){"serve", "--data", tc_path("data"), NULL}, SIGTERM);
    cr_assert(strstr(c.out, "first LSN 1, durable LSN 3 (next 4)"), "stdout:\n%s", c.out);
    cr_assert(strstr(c.out, "recovery:    clean end at segment"), "stdout:\n%s", c.out);
    tc_child_free(&c);

    /* Serving appended nothing, so a second start sees the same journal. */
    tc_serve_and_stop(&c, NULL, (const char *[]){"serve", "--data", tc_path("data"), NULL}, SIGTERM);
    cr_assert(strstr(c.out, "first LSN 1, durable LSN 3 (next 4)"), "stdout:\n%s", c.out);
    tc_child_free(&c);
}

Test(serve, reports_a_torn_tail)
{
    tc_child_t c;
    char want[160];
    cr_assert_eq(mkdir(tc_path("data"), 0700), 0);
    tc_make_journal(tc_path("data/journal"), 3);
    tc_flip_record_bit(tc_path("data/journal"), 2);

    tc_serve_and_stop(&c, NULL, (const char *[]){"serve", "--data", tc_path("data"), NULL}, SIGTERM);
    snprintf(want, sizeof want, "recovery:    torn tail cut at segment 1, offset %u: ",
             (unsigned)(JNL_SEG_DATA_OFF + 2 * TC_RECORD_BYTES));
    cr_assert(strstr(c.out, want), "want '%s' in stdout:\n%s", want, c.out);
    cr_assert(strstr(c.out, "first LSN 1, durable LSN 2 (next 3)"), "stdout:\n%s", c.out);
    tc_child_free(&c);
}

Test(serve, config_file_sets_data_and_segment_size)
{
    tc_child_t c;
    char text[4200];
    const char *conf = tc_path("tidemark.conf");
    snprintf(text, sizeof text,
             "# a test config\n"
             "\n"
             "data = %s\n"
             "   journal.segment_size=1M   # one MiB\n",
             tc_path("from-config"));
    tc_write_file(conf, text);

    tc_serve_and_stop(&c, NULL, (const char *[]){"serve", "--config", conf, NULL}, SIGTERM);
    cr_assert(tc_is_dir(tc_path("from-config/journal")));
    cr_assert(strstr(c.out, "new segments 1.0 MiB each"), "stdout:\n%s", c.out);
    tc_child_free(&c);
}

Test(serve, flags_override_the_config_file)
{
    tc_child_t c;
    char text[4200];
    const char *conf = tc_path("tidemark.conf");
    snprintf(text, sizeof text, "data = %s\njournal.segment_size = 1M\n", tc_path("from-config"));
    tc_write_file(conf, text);

    tc_serve_and_stop(&c, NULL,
                      (const char *[]){"serve", "--config", conf, "--data", tc_path("from-flag"), "--segment-size",
                                       "2m", NULL},
                      SIGTERM);
    cr_assert(tc_is_dir(tc_path("from-flag/journal")));
    cr_assert(!tc_is_dir(tc_path("from-config")));
    cr_assert(strstr(c.out, "new segments 2.0 MiB each"), "stdout:\n%s", c.out);
    tc_child_free(&c);
}

Test(serve, relative_data_in_config_is_relative_to_the_file)
{
    tc_child_t c;
    cr_assert_eq(mkdir(tc_path("etc"), 0700), 0);
    tc_write_file(tc_path("etc/tidemark.conf"), "data = ../var\n");
    tc_serve_and_stop(&c, NULL, (const char *[]){"serve", "--config", tc_path("etc/tidemark.conf"), NULL},
                      SIGTERM);
    cr_assert(tc_is_dir(tc_path("var/journal")), "stdout:\n%s", c.out);
    tc_child_free(&c);
}

Test(serve, bad_config_lines_name_file_and_line)
{
    static const struct {
        const char *text;
        const char *line; /* ":N:" expected in stderr */
        const char *why;
    } cases[] = {
        {"# ok\ndata = x\njournal.segment_size = 12X\n", ":3:", "not a byte count"},
        {"journal.segment_size = 1K\n", ":1:", "below the minimum"},
        {"journal.segment_size = 99999999999G\n", ":1:", "above the maximum"},
        {"\n\nexports = 127.0.0.1:7000\n", ":3:", "unknown key 'exports'"},
        {"nbd = nowhere\n", ":1:", "not an address"},
        {"points.retention = 31d\n", ":1:", "outside 1m to 30d"},
        {"points.retention.web1 = soon\n", ":1:", "not a duration"},
        {"points.cadence = 5ms\n", ":1:", "below the minimum"},
        {"tags.every = 1s\n", ":1:", "outside 10s to 7d"},
        {"tags.every.-x = 1h\n", ":1:", "not a machine name"},
        {"api = nowhere\n", ":1:", "not an address"},
        {"agents = nowhere\n", ":1:", "not an address"},
        {"agents = 127.0.0.1:70000\n", ":1:", "not an address"},
        {"ingest.window = 1K\n", ":1:", "below the minimum"},
        {"data\n", ":1:", "expected 'key = value'"},
        {"data =\n", ":1:", "the value is empty"},
        {"= x\n", ":1:", "the key is empty"},
    };
    const char *conf = tc_path("bad.conf");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_child_t c;
        char expect[4200];
        tc_write_file(conf, cases[i].text);
        int code = tc_run(&c, (const char *[]){"serve", "--config", conf, "--data", tc_path("data"), NULL});
        cr_assert_eq(code, 2, "case %zu: exit %d; stderr:\n%s", i, code, c.err);
        snprintf(expect, sizeof expect, "%s%s", conf, cases[i].line);
        cr_assert(strstr(c.err, expect), "case %zu: want '%s' in stderr:\n%s", i, expect, c.err);
        cr_assert(strstr(c.err, cases[i].why), "case %zu: want '%s' in stderr:\n%s", i, cases[i].why, c.err);
        cr_assert(!tc_is_dir(tc_path("data")), "case %zu: a bad config still created the data folder", i);
        tc_child_free(&c);
    }
}

Test(serve, missing_config_file_is_an_error)
{
    tc_child_t c;
    int code = tc_run(&c, (const char *[]){"serve", "--config", tc_path("absent.conf"), NULL});
    cr_assert_eq(code, 2, "stderr:\n%s", c.err);
    cr_assert(strstr(c.err, "absent.conf") && strstr(c.err, "No such file"), "stderr:\n%s", c.err);
    tc_child_free(&c);
}

Test(serve, bad_flags_are_usage_errors)
{
    const char *const *cases[] = {
        (const char *[]){"serve", "--agents", "nowhere", NULL},
        (const char *[]){"serve", "--api", "nowhere", NULL},
        (const char *[]){"serve", "--nbd", "nowhere", NULL},
        (const char *[]){"serve", "--database", "x", NULL},
        (const char *[]){"serve", "stray", NULL},
        (const char *[]){"serve", "--data", NULL},
        (const char *[]){"serve", "--segment-size", "lots", NULL},
        (const char *[]){"serve", "--segment-size", "4K", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_child_t c;
        int code = tc_run(&c, cases[i]);
        cr_assert_eq(code, 2, "case %zu: exit %d; stderr:\n%s", i, code, c.err);
        cr_assert(strstr(c.err, "usage: tidemark serve"), "case %zu: stderr:\n%s", i, c.err);
        cr_assert_str_eq(c.out, "", "case %zu", i);
        tc_child_free(&c);
    }
}

Test(serve, corrupt_journal_refuses_with_a_hint)
{
    tc_child_t c;
    cr_assert_eq(mkdir(tc_path("data"), 0700), 0);
    tc_make_journal(tc_path("data/journal"), 4);
    tc_flip_record_bit(tc_path("data/journal"), 0);

    int code = tc_run(&c, (const char *[]){"serve", "--data", tc_path("data"), NULL});
    cr_assert_eq(code, 1, "exit %d; stdout:\n%s\nstderr:\n%s", code, c.out, c.err);
    cr_assert(strstr(c.err, "tidemark: cannot open the journal in"), "stderr:\n%s", c.err);
    cr_assert(strstr(c.err, "data corrupted"), "stderr:\n%s", c.err);
    cr_assert(strstr(c.err, "tidemark journal dump"), "stderr:\n%s", c.err);
    cr_assert(!strstr(c.out, "serving"), "stdout:\n%s", c.out);
    tc_child_free(&c);
}
