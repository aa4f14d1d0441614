/*
 * Retention against the model: a workload spread over hours of (recorded)
 * time, then retention as of a chosen instant. The catalog must be the
 * model's points thinned by the documented policy, the horizon the oldest
 * point kept, and every point kept (and any position after the horizon)
 * must still rebuild byte for byte, from the replica base plus what is
 * left of the index. Then more writes, another pass, a restart, and with
 * journal retirement on, the journal's old segments gone.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "pm.h"
#include "points/points.h"
#include "target/reader.h"

#define CADENCE_MS 1000u
#define MIN_NS (60ull * 1000000000ull)
#define HOUR_NS (60 * MIN_NS)
#define WINDOW_NS (3 * HOUR_NS)

typedef struct fx {
    char dir[PATH_MAX];
    char jdir[PATH_MAX + 16], idir[PATH_MAX + 16], bdir[PATH_MAX + 16];
    jnl_t *j;
    pts_t *p;
    pm_t m;
    bool retire;
} fx_t;

static void fx_open(fx_t *f)
{
    jnl_options_t jo = {.segment_size = 1u << 20, .max_record = (1u << 20) - 8192};
    cr_assert_eq(jnl_open(f->jdir, &jo, &f->j), 0);
}

static void fx_points(fx_t *f)
{
    char err[256];
    pts_retention_t per = {"web1", WINDOW_NS};
    pts_options_t o = {.cadence_ms = CADENCE_MS, .base_dir = f->bdir, .per_machine = &per, .nper_machine = 1,
                       .no_auto_retain = true, .retire_journal = f->retire};
    cr_assert_eq(pts_open(f->idir, f->j, &o, &f->p, err, sizeof err), 0, "%s", err);
}

/* The documented thinning policy, applied to the model's points in place. */
static size_t thin(pts_point_t *v, size_t n, uint64_t now, uint64_t window)
{
    uint64_t last_slot[4] = {0}, last_w[4] = {0};
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t age = now - v[i].time_ns;
        bool keep;
        if (i == n - 1) {
            keep = true;
        } else if (age > window) {
            keep = false;
        } else {
            uint64_t w;
            if (v[i].kind == PTS_KIND_APP)
                w = age <= 24 * HOUR_NS ? 0 : HOUR_NS;
            else
                w = age <= HOUR_NS ? 0 : age <= 24 * HOUR_NS ? 15 * MIN_NS : 4 * HOUR_NS;
            keep = w == 0 || !(last_w[v[i].kind] == w && last_slot[v[i].kind] == v[i].time_ns / w);
            if (keep && w) {
                last_w[v[i].kind] = w;
                last_slot[v[i].kind] = v[i].time_ns / w;
            }
        }
        if (keep)
            v[k++] = v[i];
    }
    return k;
}

static void rebuild_all(fx_t *f, uint64_t seq)
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
        int rc = tgt_read(r, 0, got, size, NULL);
        cr_assert_eq(rc, 0, "rebuild at %llu: %s", (unsigned long long)seq, tgt_error(r));
        tgt_close(r);
        cr_assert(memcmp(got, want, size) == 0, "disk %u at seq %llu differs from the model (seed %#llx)", d,
                  (unsigned long long)seq, (unsigned long long)f->m.seed);
        free(want);
        free(got);
    }
}

/* Retain as of now and check the catalog, the horizon and every rebuild. */
static void retain_and_check(fx_t *f, uint64_t now)
{
    cr_assert_eq(pts_sync(f->p, 30000), 0);
    /* the catalog before (test_model.c checks how points are cut), oldest
     * first, thinned by the policy */
    pts_point_t *before, *got;
    size_t nbefore, ngot;
    cr_assert_eq(pts_points(f->p, "web1", NULL, &before, &nbefore), 0);
    pts_point_t *want = calloc(nbefore + 1, sizeof *want);
    for (size_t i = 0; i < nbefore; i++)
        want[i] = before[nbefore - 1 - i];
    tm_free(before);
    size_t nwant = thin(want, nbefore, now, WINDOW_NS);
    cr_assert_lt(nwant, nbefore, "the policy should drop some points here");
    cr_assert_eq(pts_retain(f->p, now), 0);
    cr_assert_eq(pts_points(f->p, "web1", NULL, &got, &ngot), 0);
    cr_assert_eq(ngot, nwant, "kept %zu points, the policy keeps %zu", ngot, nwant);
    for (size_t i = 0; i < ngot; i++) {
        const pts_point_t *g = &got[ngot - 1 - i];
        cr_assert(g->seq == want[i].seq && g->kind == want[i].kind, "point %zu: seq %llu %s, policy %llu %s", i,
                  (unsigned long long)g->seq, pts_kind_name(g->kind), (unsigned long long)want[i].seq,
                  pts_kind_name(want[i].kind));
    }
    pts_machine_t pm;
    cr_assert_eq(pts_machine(f->p, "web1", &pm), 0);
    cr_assert_eq(pm.first_seq, want[0].seq, "the horizon is the oldest point kept");
    cr_assert_eq(pm.base_seq, want[0].seq, "everything before the horizon is folded");
    for (size_t i = 0; i < ngot; i++)
        rebuild_all(f, got[i].seq);
    /* positions between points, after the horizon */
    tmt_rng_t rng;
    tmt_rng_seed(&rng, now);
    for (int i = 0; i < 5; i++)
        rebuild_all(f, tmt_rng_range(&rng, pm.first_seq, f->m.nops));
    /* before the horizon: gone */
    char why[256];
    pts_point_t pt;
    if (pm.first_seq > 1) {
        char id[32];
        snprintf(id, sizeof id, "%llu", (unsigned long long)(pm.first_seq - 1));
        cr_assert_eq(pts_resolve(f->p, "web1", id, &pt, why, sizeof why), TM_ENOPOINT);
        cr_assert_eq(pts_pin(f->p, pm.id, pm.first_seq - 1), TM_ENOPOINT);
    }
    tm_free(got);
    free(want);
}

static void run(bool retire)
{
    fx_t f = {.retire = retire};
    tmt_mkdtemp(f.dir, retire ? "points-retire" : "points-retain");
    snprintf(f.jdir, sizeof f.jdir, "%s/journal", f.dir);
    snprintf(f.idir, sizeof f.idir, "%s/index", f.dir);
    snprintf(f.bdir, sizeof f.bdir, "%s/base", f.dir);
    fx_open(&f);
    uint64_t t0 = tm_now_ns() - 8 * HOUR_NS;
    pm_init(&f.m, tmt_env_u64("TIDEMARK_POINTS_SEED", 0x5eed0007) + retire, "web1", t0, 7 * MIN_NS);
    pm_append_disks(&f.m, f.j);
    for (int i = 0; i < 60; i++)
        pm_append_batch(&f.m, f.j, 8);
    fx_points(&f);
    /* an hour and a bit after the last batch */
    uint64_t now = t0 + 60 * 7 * MIN_NS + 10 * MIN_NS;
    retain_and_check(&f, now);

    /* more writes later on, another pass: the horizon moves, the base grows */
    f.m.next_ns = now;
    for (int i = 0; i < 30; i++)
        pm_append_batch(&f.m, f.j, 8);
    now += 30 * 7 * MIN_NS + 10 * MIN_NS;
    retain_and_check(&f, now);

    jnl_stats_t st;
    jnl_get_stats(f.j, &st);
    if (retire)
        cr_assert_gt(st.first_lsn, 2, "no journal segment was retired (first LSN %llu)",
                     (unsigned long long)st.first_lsn);
    else
        cr_assert_leq(st.first_lsn, 1);

    /* a restart: the index, the base and what is left of the journal */
    pts_close(f.p);
    jnl_destroy(f.j);
    fx_open(&f);
    fx_points(&f);
    for (int i = 0; i < 10; i++)
        pm_append_batch(&f.m, f.j, 8);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    pts_point_t lp;
    cr_assert_eq(pts_cut_latest(f.p, "web1", 30000, &lp), 0);
    rebuild_all(&f, lp.seq);
    pts_machine_t pm;
    cr_assert_eq(pts_machine(f.p, "web1", &pm), 0);
    rebuild_all(&f, pm.first_seq);

    pts_close(f.p);
    jnl_destroy(f.j);
    pm_free(&f.m);
    tmt_rmtree(f.dir);
}

Test(points_retention, thins_folds_and_every_kept_point_rebuilds, .timeout = 240)
{
    run(false);
}

Test(points_retention, retires_folded_journal_segments, .timeout = 240)
{
    run(true);
}
