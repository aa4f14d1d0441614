/*
 * Failover records of the points stage (points.h, "Failovers"): a
 * failed-over point survives retention and restarts (its pin is in the
 * index), a cancelled failover releases it, and a commit deletes the
 * machine's points and extents, survives a restart, and makes the
 * processor skip whatever more of the machine the journal holds.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "pm.h"
#include "points/points.h"
#include "target/reader.h"

#define MIN_NS (60ull * 1000000000ull)
#define HOUR_NS (60 * MIN_NS)

typedef struct fx {
    char dir[PATH_MAX];
    char jdir[PATH_MAX + 16], idir[PATH_MAX + 16], bdir[PATH_MAX + 16];
    jnl_t *j;
    pts_t *p;
    pm_t m;
} fx_t;

static void fx_open(fx_t *f)
{
    jnl_options_t jo = {.segment_size = 1u << 20, .max_record = (1u << 20) - 8192};
    cr_assert_eq(jnl_open(f->jdir, &jo, &f->j), 0);
    char err[256];
    pts_retention_t per = {"web1", 2 * HOUR_NS};
    pts_options_t o = {.base_dir = f->bdir, .per_machine = &per, .nper_machine = 1, .no_auto_retain = true,
                       .retire_journal = true};
    cr_assert_eq(pts_open(f->idir, f->j, &o, &f->p, err, sizeof err), 0, "%s", err);
}

static void fx_close(fx_t *f)
{
    pts_close(f->p);
    jnl_destroy(f->j);
}

/* Every disk at seq against the model. */
static void rebuild(fx_t *f, uint64_t seq)
{
    pts_machine_t pm;
    cr_assert_eq(pts_machine(f->p, "web1", &pm), 0);
    for (unsigned d = 0; d < f->m.ndisks; d++) {
        uint64_t size = f->m.disks[d].size;
        uint8_t *want = malloc(size), *got = malloc(size);
        pm_disk_at(&f->m, d, seq, want);
        char base[PATH_MAX + 64];
        pts_base_path(f->p, "web1", f->m.disks[d].name, base, sizeof base);
        tgt_view_t v = {.ix = pts_index(f->p), .jnl = f->j, .machine = "web1", .mid = pm.id, .disk = (uint16_t)d,
                        .disk_name = f->m.disks[d].name, .size = size, .seq = seq, .base_path = base};
        tgt_reader_t *r;
        cr_assert_eq(tgt_open(&v, &r), 0);
        cr_assert_eq(tgt_read(r, 0, got, size, NULL), 0, "rebuild at %llu: %s", (unsigned long long)seq,
                     tgt_error(r));
        tgt_close(r);
        cr_assert(memcmp(got, want, size) == 0, "disk %u at seq %llu differs from the model", d,
                  (unsigned long long)seq);
        free(want);
        free(got);
    }
}

static pts_machine_t machine(fx_t *f)
{
    pts_machine_t pm;
    cr_assert_eq(pts_machine(f->p, "web1", &pm), 0);
    return pm;
}

Test(points_failover, a_failed_over_point_outlives_retention_and_restarts_and_a_commit_forgets_the_machine)
{
    fx_t f = {0};
    tmt_mkdtemp(f.dir, "points-failover");
    snprintf(f.jdir, sizeof f.jdir, "%s/journal", f.dir);
    snprintf(f.idir, sizeof f.idir, "%s/index", f.dir);
    snprintf(f.bdir, sizeof f.bdir, "%s/base", f.dir);
    uint64_t t0 = tm_now_ns() - 10 * HOUR_NS;
    jnl_options_t jo = {.segment_size = 1u << 20, .max_record = (1u << 20) - 8192};
    cr_assert_eq(jnl_open(f.jdir, &jo, &f.j), 0);
    pm_init(&f.m, tmt_env_u64("TIDEMARK_POINTS_SEED", 0xf0f0f0), "web1", t0, 5 * MIN_NS);
    pm_append_disks(&f.m, f.j);
    for (int i = 0; i < 40; i++)
        pm_append_batch(&f.m, f.j, 8);
    jnl_destroy(f.j);
    fx_open(&f);
    cr_assert_eq(pts_sync(f.p, 30000), 0);

    /* fail over to an early point (the 5th) */
    pts_point_t *pts;
    size_t n;
    cr_assert_eq(pts_points(f.p, "web1", NULL, &pts, &n), 0);
    cr_assert_gt(n, 10);
    uint64_t fo = pts[n - 5].seq;
    tm_free(pts);
    cr_assert_eq(pts_failover_set(f.p, "nosuch", PTS_FO_ACTIVE, fo, 1), TM_ENOTFOUND);
    cr_assert_eq(pts_commit_machine(f.p, "web1", 1), TM_EINVAL, "a commit without a failover");
    cr_assert_eq(pts_failover_set(f.p, "web1", PTS_FO_ACTIVE, fo, 42), 0);
    pts_machine_t pm = machine(&f);
    cr_assert(pm.failover == PTS_FO_ACTIVE && pm.failover_seq == fo && pm.failover_ns == 42);

    /* retention long after: the horizon stops at the failed-over point */
    uint64_t later = t0 + 40 * 5 * MIN_NS + HOUR_NS;
    cr_assert_eq(pts_retain(f.p, later), 0);
    pm = machine(&f);
    cr_assert_leq(pm.first_seq, fo, "retention passed the failed-over point");
    rebuild(&f, fo);

    /* a restart: the record and its pin are back before any retention */
    fx_close(&f);
    fx_open(&f);
    pm = machine(&f);
    cr_assert(pm.failover == PTS_FO_ACTIVE && pm.failover_seq == fo, "the failover was forgotten");
    cr_assert_eq(pts_retain(f.p, later + HOUR_NS), 0);
    cr_assert_leq(machine(&f).first_seq, fo);
    rebuild(&f, fo);

    /* change of point: the old one is released, the new one held */
    uint64_t fo2 = f.m.nops - 3;
    cr_assert_eq(pts_failover_set(f.p, "web1", PTS_FO_ACTIVE, fo2, 43), 0);
    cr_assert_eq(pts_retain(f.p, later + HOUR_NS), 0);
    pm = machine(&f);
    cr_assert_gt(pm.first_seq, fo, "the old failover point is still held");
    cr_assert_leq(pm.first_seq, fo2);
    rebuild(&f, fo2);

    /* a reader's pin blocks the commit; released, it goes through */
    cr_assert_eq(pts_pin(f.p, pm.id, fo2), 0);
    cr_assert_eq(pts_commit_machine(f.p, "web1", 99), -EBUSY);
    pts_unpin(f.p, pm.id, fo2);
    cr_assert_eq(pts_commit_machine(f.p, "web1", 99), 0);
    pm = machine(&f);
    cr_assert(pm.failover == PTS_FO_COMMITTED && !pm.has_point && pm.failover_ns == 99);
    cr_assert_eq(pts_points(f.p, "web1", NULL, &pts, &n), 0);
    cr_assert_eq(n, 0, "a committed machine kept %zu points", n);
    tm_free(pts);
    char why[128];
    pts_point_t pt;
    cr_assert_eq(pts_resolve(f.p, "web1", "latest-processed", &pt, why, sizeof why), TM_ENOPOINT);
    cr_assert_eq(pts_cut_latest(f.p, "web1", 30000, &pt), TM_ENOPOINT);
    cr_assert_eq(pts_failover_set(f.p, "web1", PTS_FO_NONE, 0, 0), TM_EINVAL);
    char base[PATH_MAX + 64];
    pts_base_path(f.p, "web1", f.m.disks[0].name, base, sizeof base);
    cr_assert(access(base, F_OK) != 0, "the replica base %s is still there", base);

    /* more of it in the journal (sent before its agent was refused): skipped */
    uint64_t seq_before = pm.seq;
    for (int i = 0; i < 5; i++)
        pm_append_batch(&f.m, f.j, 8);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    pm = machine(&f);
    cr_assert_eq(pm.seq, seq_before);
    cr_assert(!pm.has_point);
    cr_assert_eq(pts_retain(f.p, later + 2 * HOUR_NS), 0);

    /* and after a restart */
    fx_close(&f);
    fx_open(&f);
    pm = machine(&f);
    cr_assert(pm.failover == PTS_FO_COMMITTED && !pm.has_point);
    cr_assert_eq(pts_points(f.p, "web1", NULL, &pts, &n), 0);
    cr_assert_eq(n, 0);
    tm_free(pts);
    fx_close(&f);
    pm_free(&f.m);
    tmt_rmtree(f.dir);
}
