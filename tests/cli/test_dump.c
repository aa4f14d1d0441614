/*
 * `tidemark journal dump`: segment headers, records with -v, and the first
 * bad record with its reason.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/cli/helpers.h"

TestSuite(dump, .init = tc_setup, .fini = tc_teardown, .timeout = TC_TIMEOUT);

/* What a segment header line and a record line of jnl_dump() contain. */
#define TC_SEG_LINE "segment 1 (seg-0000000000000001.jnl): version 1"
#define TC_REC_LINE "  LSN "

Test(dump, prints_segment_header_and_records)
{
    tc_child_t c;
    cr_assert_eq(mkdir(tc_path("data"), 0700), 0);
    tc_make_journal(tc_path("data/journal"), 3);

    /* The data folder form. */
    int code = tc_run(&c, (const char *[]){"journal", "dump", tc_path("data"), NULL});
    cr_assert_eq(code, 0, "exit %d; stdout:\n%s\nstderr:\n%s", code, c.out, c.err);
    cr_assert_eq(tc_count_lines_with(c.out, TC_SEG_LINE), 1, "stdout:\n%s", c.out);
    cr_assert_eq(tc_count_lines_with(c.out, TC_REC_LINE), 0, "stdout:\n%s", c.out);
    tc_child_free(&c);

    /* The journal folder form, verbose: one line per record. */
    code = tc_run(&c, (const char *[]){"journal", "dump", "-v", tc_path("data/journal"), NULL});
    cr_assert_eq(code, 0, "exit %d; stdout:\n%s\nstderr:\n%s", code, c.out, c.err);
    cr_assert_eq(tc_count_lines_with(c.out, TC_SEG_LINE), 1, "stdout:\n%s", c.out);
    cr_assert_eq(tc_count_lines_with(c.out, TC_REC_LINE), 3, "stdout:\n%s", c.out);
    tc_child_free(&c);

    code = tc_run(&c, (const char *[]){"journal", "dump", tc_path("data"), "--verbose", NULL});
    cr_assert_eq(code, 0, "exit %d; stderr:\n%s", code, c.err);
    cr_assert_eq(tc_count_lines_with(c.out, TC_REC_LINE), 3, "stdout:\n%s", c.out);
    tc_child_free(&c);
}

Test(dump, stops_at_a_flipped_bit_before_later_batches)
{
    tc_child_t c;
    const char *jdir = tc_path("journal");
    tc_make_journal(jdir, 4);
    tc_flip_record_bit(jdir, 0);

    int code = tc_run(&c, (const char *[]){"journal", "dump", "-v", jdir, NULL});
    cr_assert_eq(code, 1, "exit %d; stdout:\n%s\nstderr:\n%s", code, c.out, c.err);
    cr_assert(strstr(c.err, "data corrupted"), "stderr:\n%s", c.err);
    cr_assert(strstr(c.out, "CORRUPT at offset 4096: bad checksum"), "stdout:\n%s", c.out);
    /* Nothing of the bad record or after it is printed as a record. */
    cr_assert_eq(tc_count_lines_with(c.out, TC_REC_LINE), 0, "stdout:\n%s", c.out);
    tc_child_free(&c);
}

Test(dump, empty_journal_folder_is_fine)
{
    tc_child_t c;
    cr_assert_eq(mkdir(tc_path("journal"), 0700), 0);
    int code = tc_run(&c, (const char *[]){"journal", "dump", tc_path("journal"), NULL});
    cr_assert_eq(code, 0, "exit %d; stdout:\n%s\nstderr:\n%s", code, c.out, c.err);
    tc_child_free(&c);
}

Test(dump, torn_last_record_is_not_an_error)
{
    tc_child_t c;
    const char *jdir = tc_path("journal");
    char want[128];
    tc_make_journal(jdir, 3);
    tc_flip_record_bit(jdir, 2); /* the last batch: nothing proves it was synced */

    int code = tc_run(&c, (const char *[]){"journal", "dump", "-v", jdir, NULL});
    cr_assert_eq(code, 0, "exit %d; stdout:\n%s\nstderr:\n%s", code, c.out, c.err);
    snprintf(want, sizeof want, "torn tail at offset %u: bad checksum",
             (unsigned)(JNL_SEG_DATA_OFF + 2 * TC_RECORD_BYTES));
    cr_assert(strstr(c.out, want), "want '%s' in stdout:\n%s", want, c.out);
    cr_assert_eq(tc_count_lines_with(c.out, TC_REC_LINE), 2, "stdout:\n%s", c.out);
    tc_child_free(&c);
}
