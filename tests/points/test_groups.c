/*
 * Group points of the points stage (points.h, "Replication groups"): two
 * machines' group tags become multi-VM points once the round is recorded,
 * the multi-VM selectors pick the newest whole group point for members
 * and fall back for others, a partial round is never one, and retention
 * keeps the same rounds on every member and forgets a group point whose
 * member point is gone; all of it across a restart.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "pm.h"
#include "points/points.h"

#define MIN_NS (60ull * 1000000000ull)
#define HOUR_NS (60 * MIN_NS)

typedef struct fx {
    char dir[PATH_MAX];
    char jdir[PATH_MAX + 16], idir[PATH_MAX + 16], bdir[PATH_MAX + 16];
    jnl_t *j;
    pts_t *p;
    pm_t a, b;
} fx_t;

static void fx_open(fx_t *f)
{
    jnl_options_t jo = {.segment_size = 1u << 20, .max_record = (1u << 20) - 8192};
    cr_assert_eq(jnl_open(f->jdir, &jo, &f->j), 0);
    char err[256];
    pts_options_t o = {.base_dir = f->bdir, .no_auto_retain = true, .retention_ns = 30 * 24 * HOUR_NS};
    cr_assert_eq(pts_open(f->idir, f->j, &o, &f->p, err, sizeof err), 0, "%s", err);
    const char *members[] = {"db1", "app1"};
    pts_group_def_t g = {"shop", members, 2};
    cr_assert_eq(pts_set_groups(f->p, &g, 1), 0);
}

static void fx_close(fx_t *f)
{
    pts_close(f->p);
    jnl_destroy(f->j);
}

/* A round: both machines write, then each its group tag; the members. */
static void round_tags(fx_t *f, uint64_t round, pts_group_member_t mem[2])
{
    char name[32];
    snprintf(name, sizeof name, "g-%llu", (unsigned long long)round);
    pm_append_batch(&f->a, f->j, 4);
    pm_append_batch(&f->b, f->j, 4);
    snprintf(mem[0].machine, sizeof mem[0].machine, "db1");
    mem[0].seq = pm_append_tag(&f->a, f->j, WIRE_TAG_GROUP, round, name);
    snprintf(mem[1].machine, sizeof mem[1].machine, "app1");
    mem[1].seq = pm_append_tag(&f->b, f->j, WIRE_TAG_GROUP, round, name);
}

static pts_point_t resolve(fx_t *f, const char *machine, const char *sel, int want_rc)
{
    pts_point_t pt = {0};
    char why[256];
    int rc = pts_resolve(f->p, machine, sel, &pt, why, sizeof why);
    cr_assert_eq(rc, want_rc, "%s@%s: %s (%s)", machine, sel, tm_strerror(rc), why);
    return pt;
}

Test(points_groups, group_points_selectors_and_retention)
{
    fx_t f = {0};
    tmt_mkdtemp(f.dir, "points-groups");
    snprintf(f.jdir, sizeof f.jdir, "%s/journal", f.dir);
    snprintf(f.idir, sizeof f.idir, "%s/index", f.dir);
    snprintf(f.bdir, sizeof f.bdir, "%s/base", f.dir);
    uint64_t t0 = tm_now_ns() - 50 * HOUR_NS;
    fx_open(&f);
    pm_init(&f.a, 0x6a0u, "db1", t0, 2 * MIN_NS);
    pm_init(&f.b, 0x6a1u, "app1", t0, 2 * MIN_NS);
    pm_append_disks(&f.a, f.j);
    pm_append_disks(&f.b, f.j);
    /* and a machine in no group */
    pm_t c;
    pm_init(&c, 0x6a2u, "solo", t0, 2 * MIN_NS);
    pm_append_disks(&c, f.j);
    pm_append_batch(&c, f.j, 4);

    /* no group point yet: members get none, the solo machine its own */
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    resolve(&f, "db1", "latest-multivm-processed", TM_ENOPOINT);
    pts_point_t solo = resolve(&f, "solo", "latest-multivm-processed", 0);
    cr_assert_eq(solo.seq, resolve(&f, "solo", "latest-processed", 0).seq);

    /* 30 rounds an hour apart (round id = its time); every 5th is app;
     * round 17 is partial (only db1's tag is recorded) */
    pts_group_member_t last_whole[2] = {{"", 0}}, last_app[2] = {{"", 0}};
    char why[256];
    for (int i = 0; i < 30; i++) {
        uint64_t round = t0 + (uint64_t)i * HOUR_NS + 1;
        f.a.next_ns = f.b.next_ns = round;
        pts_group_member_t mem[2];
        round_tags(&f, round, mem);
        cr_assert_eq(pts_sync(f.p, 30000), 0);
        pts_kind_t kind = i % 5 == 0 ? PTS_KIND_APP : PTS_KIND_CRASH;
        if (i == 17) {
            /* app1's tag never came: a round recorded with a point that is not its tag */
            pts_group_member_t bad[2] = {mem[0], mem[1]};
            bad[1].seq = mem[1].seq - 1;
            cr_assert_eq(pts_group_point_add(f.p, "shop", round, kind, round, bad, 2, why, sizeof why), TM_ENOPOINT);
            cr_assert(strstr(why, "app1"), "%s", why);
            continue;
        }
        cr_assert_eq(pts_group_point_add(f.p, "shop", round, kind, round, mem, 2, why, sizeof why), 0, "%s", why);
        memcpy(last_whole, mem, sizeof mem);
        if (kind == PTS_KIND_APP)
            memcpy(last_app, mem, sizeof mem);
    }
    /* more writes after the last round: latest-processed moves on, the multi-VM selectors do not */
    pm_append_batch(&f.a, f.j, 4);
    pm_append_batch(&f.b, f.j, 4);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    for (int restart = 0; restart < 2; restart++) {
        pts_point_t pa = resolve(&f, "db1", "latest-multivm-processed", 0);
        pts_point_t pb = resolve(&f, "app1", "latest-multivm-processed", 0);
        cr_assert(pa.seq == last_whole[0].seq && pb.seq == last_whole[1].seq && pa.multivm && pb.multivm);
        cr_assert_lt(pa.seq, resolve(&f, "db1", "latest-processed", 0).seq);
        pa = resolve(&f, "db1", "latest-multivm-app", 0);
        pb = resolve(&f, "app1", "latest-multivm-app", 0);
        cr_assert(pa.seq == last_app[0].seq && pb.seq == last_app[1].seq && pa.kind == PTS_KIND_APP);
        pts_group_point_t *gv;
        size_t gn;
        cr_assert_eq(pts_group_points(f.p, "shop", 0, &gv, &gn), 0);
        cr_assert_eq(gn, 29, "29 group points (round 17 is none), got %zu", gn);
        for (size_t i = 0; i < gn; i++)
            cr_assert(gv[i].whole && gv[i].nmembers == 2);
        pts_group_points_free(gv, gn);
        fx_close(&f);
        fx_open(&f);
    }

    /* retention a day after the last round: thinning keeps the same rounds
     * on both members, and every group point left is whole */
    cr_assert_eq(pts_retain(f.p, t0 + 30 * HOUR_NS + 26 * HOUR_NS), 0);
    pts_group_point_t *gv;
    size_t gn;
    cr_assert_eq(pts_group_points(f.p, "shop", 0, &gv, &gn), 0);
    cr_assert_gt(gn, 0);
    cr_assert_lt(gn, 29, "retention thinned no group point");
    for (size_t i = 0; i < gn; i++)
        cr_assert(gv[i].whole, "group point of round %llu is partial after retention", (unsigned long long)gv[i].round);
    pts_group_points_free(gv, gn);
    resolve(&f, "db1", "latest-multivm-processed", 0);
    fx_close(&f);
    pm_free(&f.a);
    pm_free(&f.b);
    pm_free(&c);
    tmt_rmtree(f.dir);
}

/* After a change of members every member's multi-VM point is of one
 * round: a member that joins has none until a round with it is recorded
 * (the others do not fall back to rounds without it), and a round made
 * before a member left still serves the rest. */
Test(points_groups, a_change_of_members_keeps_every_member_on_one_round)
{
    fx_t f = {0};
    tmt_mkdtemp(f.dir, "points-groups-change");
    snprintf(f.jdir, sizeof f.jdir, "%s/journal", f.dir);
    snprintf(f.idir, sizeof f.idir, "%s/index", f.dir);
    snprintf(f.bdir, sizeof f.bdir, "%s/base", f.dir);
    uint64_t t0 = tm_now_ns() - 5 * HOUR_NS;
    fx_open(&f);
    pm_init(&f.a, 0x7a0u, "db1", t0, MIN_NS);
    pm_init(&f.b, 0x7a1u, "app1", t0, MIN_NS);
    pm_t c;
    pm_init(&c, 0x7a2u, "web1", t0, MIN_NS);
    pm_append_disks(&f.a, f.j);
    pm_append_disks(&f.b, f.j);
    pm_append_disks(&c, f.j);
    char why[256];
    /* a round of {db1, app1} */
    uint64_t r1 = t0 + HOUR_NS;
    f.a.next_ns = f.b.next_ns = c.next_ns = r1;
    pts_group_member_t mem[3];
    round_tags(&f, r1, mem);
    pm_append_batch(&c, f.j, 4);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    cr_assert_eq(pts_group_point_add(f.p, "shop", r1, PTS_KIND_CRASH, r1, mem, 2, why, sizeof why), 0, "%s", why);
    cr_assert_eq(resolve(&f, "db1", "latest-multivm-processed", 0).seq, mem[0].seq);

    /* web1 joins: nobody has a group point of all three yet */
    const char *three[] = {"db1", "app1", "web1"};
    pts_group_def_t g3 = {"shop", three, 3};
    cr_assert_eq(pts_set_groups(f.p, &g3, 1), 0);
    resolve(&f, "db1", "latest-multivm-processed", TM_ENOPOINT);
    resolve(&f, "web1", "latest-multivm-processed", TM_ENOPOINT);
    /* a round of all three: each lands on it */
    uint64_t r2 = t0 + 2 * HOUR_NS;
    f.a.next_ns = f.b.next_ns = c.next_ns = r2;
    round_tags(&f, r2, mem);
    snprintf(mem[2].machine, sizeof mem[2].machine, "web1");
    mem[2].seq = pm_append_tag(&c, f.j, WIRE_TAG_GROUP, r2, "g-r2");
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    cr_assert_eq(pts_group_point_add(f.p, "shop", r2, PTS_KIND_CRASH, r2, mem, 3, why, sizeof why), 0, "%s", why);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(resolve(&f, mem[i].machine, "latest-multivm-processed", 0).seq, mem[i].seq);

    /* app1 leaves: db1 and web1 stay on r2; app1 falls back to its own latest point */
    const char *two[] = {"db1", "web1"};
    pts_group_def_t g2 = {"shop", two, 2};
    cr_assert_eq(pts_set_groups(f.p, &g2, 1), 0);
    cr_assert_eq(resolve(&f, "db1", "latest-multivm-processed", 0).seq, mem[0].seq);
    cr_assert_eq(resolve(&f, "web1", "latest-multivm-processed", 0).seq, mem[2].seq);
    cr_assert_eq(resolve(&f, "app1", "latest-multivm-processed", 0).seq,
                 resolve(&f, "app1", "latest-processed", 0).seq);
    fx_close(&f);
    pm_free(&f.a);
    pm_free(&f.b);
    pm_free(&c);
    tmt_rmtree(f.dir);
}
