/*
 * A real full disk: the journal lives on a tmpfs mounted with a small size,
 * so segment preallocation fails with the kernel's own ENOSPC. Needs the
 * right to mount (root, as in CI); elsewhere the test says why it skipped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>

#include "base/err.h"
#include "support/tmt.h"
#include "support/tmt_jnl.h"

#define SEG (1u << 20)
#define REC (60u << 10)

static char mnt[PATH_MAX];
static bool mounted;

static void setup(void)
{
    tmt_mkdtemp(mnt, "diskfull");
    /* Room for three 1 MiB segments and a little more, never a fourth. */
    mounted = mount("tidemark-test", mnt, "tmpfs", 0, "size=3600k") == 0;
}

static void teardown(void)
{
    if (mounted)
        umount2(mnt, MNT_DETACH);
    tmt_rmtree(mnt);
}

TestSuite(diskfull, .init = setup, .fini = teardown, .timeout = 60);

Test(diskfull, full_then_retire_then_resume)
{
    if (!mounted)
        cr_skip_test("cannot mount a small tmpfs here (%s): run as root to test a real full disk", strerror(errno));
    tmt_log_capture();
    char dir[PATH_MAX + 16]; /* room for the suffix, so the name is never cut */
    snprintf(dir, sizeof dir, "%s/journal", mnt);
    jnl_options_t o = {.segment_size = SEG, .max_record = REC, .spare_segments = 1};
    jnl_t *j = tmt_open(dir, &o);

    static uint8_t buf[REC];
    uint64_t acked = 0;
    int rc = 0;
    for (uint64_t i = 1; i < 1000; i++) {
        tmt_fill(buf, sizeof buf, 7, i, false);
        uint64_t lsn;
        rc = jnl_append_wait(j, 1, buf, sizeof buf, 0, &lsn);
        if (rc)
            break;
        cr_assert_eq(lsn, i);
        acked = lsn;
    }
    /* Fourth segment: the kernel says the disk is full. */
    cr_assert_eq(rc, -ENOSPC, "first failure is %s, want ENOSPC", tm_strerror(rc));
    cr_assert_gt(acked, 30);
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    cr_assert_eq(st.error, -ENOSPC);
    cr_assert_eq(st.durable_lsn, acked);
    /* Refused at once while the disk stays full, and the journal says so. */
    cr_assert_eq(jnl_append_wait(j, 1, buf, sizeof buf, 0, NULL), TM_EFAILED);
    cr_assert_eq(jnl_recover(j), -ENOSPC);

    /* Free space: retire all but the segment being written. */
    unsigned dropped;
    cr_assert_eq(jnl_retire(j, acked, &dropped), 0);
    cr_assert_geq(dropped, 2);
    cr_assert_eq(jnl_recover(j), 0);
    uint64_t lsn;
    tmt_fill(buf, sizeof buf, 7, acked + 1, false);
    cr_assert_eq(jnl_append_wait(j, 1, buf, sizeof buf, 0, &lsn), 0);
    cr_assert_eq(lsn, acked + 1, "LSNs stay gapless across the failure");
    jnl_get_stats(j, &st);
    uint64_t first = st.first_lsn;
    jnl_destroy(j);

    /* Everything acknowledged and still held comes back, and nothing else. */
    j = tmt_open(dir, &o);
    tmt_rec_t *recs;
    size_t n = tmt_read_all(j, first, &recs);
    cr_assert_eq(n, acked + 1 - first + 1);
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(recs[k].lsn, first + k);
        tmt_fill(buf, sizeof buf, 7, recs[k].lsn, false);
        cr_assert_eq(recs[k].len, sizeof buf);
        cr_assert(memcmp(recs[k].data, buf, sizeof buf) == 0, "LSN %llu differs", (unsigned long long)recs[k].lsn);
    }
    tmt_recs_free(recs, n);
    jnl_destroy(j);
}

Test(diskfull, recovers_by_itself_once_space_frees)
{
    if (!mounted)
        cr_skip_test("cannot mount a small tmpfs here (%s): run as root to test a real full disk", strerror(errno));
    tmt_log_capture();
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/journal", mnt);
    /* retry_ms: the writer retries on its own this often while failed. */
    jnl_options_t o = {.segment_size = SEG, .max_record = REC, .spare_segments = 1, .retry_ms = 20};
    jnl_t *j = tmt_open(dir, &o);
    static uint8_t buf[REC];
    uint64_t acked = 0;
    int rc = 0;
    for (uint64_t i = 1; i < 1000 && rc == 0; i++) {
        tmt_fill(buf, sizeof buf, 9, i, false);
        rc = jnl_append_wait(j, 1, buf, sizeof buf, 0, NULL);
        if (rc == 0)
            acked = i;
    }
    cr_assert_eq(rc, -ENOSPC);
    unsigned dropped;
    cr_assert_eq(jnl_retire(j, acked, &dropped), 0);
    /* No append and no jnl_recover(): the writer's own retry must clear it. */
    jnl_stats_t st;
    for (int k = 0; k < 500; k++) {
        jnl_get_stats(j, &st);
        if (st.error == 0)
            break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(st.error, 0, "still failed after 5 s: %s", tm_strerror(st.error));
    uint64_t lsn;
    cr_assert_eq(jnl_append_wait(j, 1, buf, sizeof buf, 0, &lsn), 0, "the first append after the space came back works");
    cr_assert_eq(lsn, acked + 1);
    jnl_destroy(j);
}
