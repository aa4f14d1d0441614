/*
 * The processor, the catalog, the selectors and the rebuild reader against
 * an independent model: a seeded workload written into a real journal the
 * way ingest writes it; every named point and many other positions are
 * rebuilt, disk by disk, and compared with the model byte for byte.
 * TIDEMARK_POINTS_SEED picks the workload.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "pm.h"
#include "points/points.h"
#include "target/reader.h"

#define CADENCE_MS 1000u
#define STEP_NS 100000000ull /* batches 100 ms apart: a crash point every 10 */

typedef struct fx {
    char dir[PATH_MAX];
    char jdir[PATH_MAX + 16];
    char idir[PATH_MAX + 16];
    jnl_t *j;
    pts_t *p;
    pm_t m;
} fx_t;

static uint64_t seed_of(void)
{
    uint64_t s = tmt_env_u64("TIDEMARK_POINTS_SEED", 0);
    return s ? s : 0x5eed0001;
}

static void fx_open_points(fx_t *f)
{
    char err[256];
    pts_options_t o = {.cadence_ms = CADENCE_MS};
    int rc = pts_open(f->idir, f->j, &o, &f->p, err, sizeof err);
    cr_assert_eq(rc, 0, "pts_open: %s", err);
}

static void fx_init(fx_t *f, const char *tag, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    tmt_mkdtemp(f->dir, tag);
    snprintf(f->jdir, sizeof f->jdir, "%s/journal", f->dir);
    snprintf(f->idir, sizeof f->idir, "%s/index", f->dir);
    cr_assert_eq(jnl_open(f->jdir, NULL, &f->j), 0);
    /* an hour ago, so that every batch time is in the past for @TIME */
    pm_init(&f->m, seed, "web1", tm_now_ns() - 3600ull * 1000000000ull, STEP_NS);
    pm_append_disks(&f->m, f->j);
}

static void fx_fini(fx_t *f)
{
    pts_close(f->p);
    jnl_destroy(f->j);
    pm_free(&f->m);
    tmt_rmtree(f->dir);
}

/* The catalog the model predicts: a crash point where the machine becomes
 * consistent (the last disk's SYNCED), app points at app tags, crash points
 * at the end of a batch a cadence after the last point, and one at the very
 * end (the processor cuts it when it is idle; the batches are an hour old). */
static size_t expected_points(const pm_t *m, size_t idle_after, pts_point_t *out)
{
    size_t n = 0;
    bool have = false;
    uint64_t last_ns = 0, last_seq = 0;
    for (size_t b = 0; b < m->nbatches; b++) {
        const pm_batch_t *bt = &m->batches[b];
        for (uint64_t s = bt->first_seq; s <= bt->last_seq; s++) {
            const pm_op_t *op = &m->ops[s - 1];
            /* the last disk's SYNCED makes the machine consistent: its first point */
            if (op->kind == WIRE_R_SYNCED && s == m->ndisks) {
                out[n++] = (pts_point_t){.seq = s, .time_ns = bt->recv_ns, .kind = PTS_KIND_CRASH};
                have = true;
                last_ns = bt->recv_ns;
                last_seq = s;
            }
            if (op->kind == WIRE_R_TAG) {
                out[n] = (pts_point_t){.seq = s, .time_ns = bt->recv_ns, .kind = PTS_KIND_APP, .tag_id = s};
                snprintf(out[n].tag, sizeof out[n].tag, "%s", op->tag);
                n++;
                have = true;
                last_ns = bt->recv_ns;
                last_seq = s;
            }
        }
        if ((!have || bt->recv_ns >= last_ns + CADENCE_MS * 1000000ull) && bt->last_seq > last_seq) {
            out[n++] = (pts_point_t){.seq = bt->last_seq, .time_ns = bt->recv_ns, .kind = PTS_KIND_CRASH};
            have = true;
            last_ns = bt->recv_ns;
            last_seq = bt->last_seq;
        }
        if (b == idle_after && bt->last_seq > last_seq) {
            /* the processor was idle here: it cut the end */
            out[n++] = (pts_point_t){.seq = bt->last_seq, .time_ns = bt->recv_ns, .kind = PTS_KIND_CRASH};
            last_ns = bt->recv_ns;
            last_seq = bt->last_seq;
        }
    }
    if (m->nops > last_seq)
        out[n++] = (pts_point_t){.seq = m->nops, .time_ns = m->batches[m->nbatches - 1].recv_ns,
                                 .kind = PTS_KIND_CRASH};
    return n;
}

/* idle_after: the batch after which the processor caught up and was idle
 * (SIZE_MAX: only at the end). */
static void check_catalog(fx_t *f, size_t idle_after)
{
    pts_point_t *want = calloc(PM_MAX_OPS, sizeof *want);
    size_t nwant = expected_points(&f->m, idle_after, want);
    pts_point_t *got;
    size_t ngot;
    cr_assert_eq(pts_points(f->p, "web1", NULL, &got, &ngot), 0);
    if (ngot != nwant) {
        char got_s[4096] = "", want_s[4096] = "";
        for (size_t i = 0; i < ngot; i++)
            snprintf(got_s + strlen(got_s), sizeof got_s - strlen(got_s), " %llu%c",
                     (unsigned long long)got[ngot - 1 - i].seq, got[ngot - 1 - i].kind == PTS_KIND_APP ? 'a' : 'c');
        for (size_t i = 0; i < nwant; i++)
            snprintf(want_s + strlen(want_s), sizeof want_s - strlen(want_s), " %llu%c",
                     (unsigned long long)want[i].seq, want[i].kind == PTS_KIND_APP ? 'a' : 'c');
        cr_assert_fail("catalog holds %zu points, the model %zu (seed %#llx)\ngot: %s\nmodel:%s", ngot, nwant,
                       (unsigned long long)f->m.seed, got_s, want_s);
    }
    for (size_t i = 0; i < ngot; i++) {
        const pts_point_t *g = &got[ngot - 1 - i], *w = &want[i]; /* got is newest first */
        cr_assert(g->seq == w->seq && g->kind == w->kind && g->time_ns == w->time_ns && strcmp(g->tag, w->tag) == 0,
                  "point %zu: got seq %llu %s '%s' at %llu, model seq %llu %s '%s' at %llu", i,
                  (unsigned long long)g->seq, pts_kind_name(g->kind), g->tag, (unsigned long long)g->time_ns,
                  (unsigned long long)w->seq, pts_kind_name(w->kind), w->tag, (unsigned long long)w->time_ns);
    }
    tm_free(got);
    free(want);
}

/* Rebuild every disk at seq and compare with the model; reads in pieces of
 * random sizes so chunk and write boundaries fall everywhere. */
static void check_rebuild(fx_t *f, uint64_t seq, tmt_rng_t *rng)
{
    pts_machine_t pm;
    cr_assert_eq(pts_machine(f->p, "web1", &pm), 0);
    for (unsigned d = 0; d < f->m.ndisks; d++) {
        uint64_t size = f->m.disks[d].size;
        uint8_t *want = malloc(size), *got = malloc(size);
        pm_disk_at(&f->m, d, seq, want);
        tgt_view_t v = {.ix = pts_index(f->p), .jnl = f->j, .machine = "web1", .mid = pm.id, .disk = (uint16_t)d,
                        .disk_name = f->m.disks[d].name, .size = size, .seq = seq};
        tgt_reader_t *r;
        cr_assert_eq(tgt_open(&v, &r), 0);
        for (uint64_t off = 0; off < size;) {
            uint64_t n = tmt_rng_range(rng, 1, 700 * 1024);
            if (n > size - off)
                n = size - off;
            int rc = tgt_read(r, off, got + off, n, NULL);
            cr_assert_eq(rc, 0, "read at %llu: %s", (unsigned long long)off, tgt_error(r));
            off += n;
        }
        tgt_close(r);
        for (uint64_t i = 0; i < size; i++)
            if (got[i] != want[i])
                cr_assert_fail("disk %u at seq %llu differs from the model at byte %llu (seed %#llx)", d,
                               (unsigned long long)seq, (unsigned long long)i, (unsigned long long)f->m.seed);
        free(want);
        free(got);
    }
}

static void check_all_points(fx_t *f, tmt_rng_t *rng)
{
    pts_point_t *pts;
    size_t n;
    cr_assert_eq(pts_points(f->p, "web1", NULL, &pts, &n), 0);
    for (size_t i = 0; i < n; i++)
        check_rebuild(f, pts[i].seq, rng);
    tm_free(pts);
}

Test(points_model, every_point_and_position_rebuilds, .timeout = 240)
{
    fx_t f;
    fx_init(&f, "points-model", seed_of());
    for (int i = 0; i < 60; i++)
        pm_append_batch(&f.m, f.j, 12);
    fx_open_points(&f);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    /* the idle cut of the last point comes right after catching up */
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    pts_point_t lp;
    cr_assert_eq(pts_cut_latest(f.p, "web1", 30000, &lp), 0);
    cr_assert_eq(lp.seq, f.m.nops);

    pts_machine_t pm;
    cr_assert_eq(pts_machine(f.p, "web1", &pm), 0);
    cr_assert_eq(pm.seq, f.m.nops);
    cr_assert_eq(pm.ndisks, 3);
    cr_assert_eq(pm.disks[1].size, f.m.disks[1].size);
    check_catalog(&f, SIZE_MAX);

    tmt_rng_t rng;
    tmt_rng_seed(&rng, f.m.seed ^ 0xabc);
    check_all_points(&f, &rng);
    for (int i = 0; i < 15; i++)
        check_rebuild(&f, tmt_rng_range(&rng, 0, f.m.nops), &rng);
    fx_fini(&f);
}

/* A @TIME selector for instant t. */
static void time_sel(uint64_t t, char *sel, size_t len)
{
    time_t secs = (time_t)(t / 1000000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(sel, len, "@%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned long long)(t % 1000000000u));
}

Test(points_model, selectors_resolve_as_the_model_says, .timeout = 120)
{
    fx_t f;
    fx_init(&f, "points-sel", seed_of() + 1);
    for (int i = 0; i < 40; i++)
        pm_append_batch(&f.m, f.j, 10);
    fx_open_points(&f);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    char why[256];
    pts_point_t pt, *all;
    size_t n;
    cr_assert_eq(pts_points(f.p, "web1", NULL, &all, &n), 0);
    cr_assert_gt(n, 2);

    cr_assert_eq(pts_resolve(f.p, "web1", "latest", &pt, why, sizeof why), 0, "%s", why);
    cr_assert_eq(pt.seq, f.m.nops);
    cr_assert_eq(pts_resolve(f.p, "web1", "latest-processed", &pt, why, sizeof why), 0, "%s", why);
    cr_assert_eq(pt.seq, f.m.nops);

    /* latest-app: the newest app tag of the model */
    uint64_t app = 0;
    for (uint64_t s = 1; s <= f.m.nops; s++)
        if (f.m.ops[s - 1].kind == WIRE_R_TAG)
            app = s;
    int rc = pts_resolve(f.p, "web1", "latest-app", &pt, why, sizeof why);
    if (app) {
        cr_assert_eq(rc, 0, "%s", why);
        cr_assert_eq(pt.seq, app);
        cr_assert_eq(pt.kind, PTS_KIND_APP);
    } else {
        cr_assert_eq(rc, TM_ENOPOINT);
    }

    /* a point id */
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)all[n / 2].seq);
    cr_assert_eq(pts_resolve(f.p, "web1", id, &pt, why, sizeof why), 0, "%s", why);
    cr_assert_eq(pt.seq, all[n / 2].seq);
    cr_assert_eq(pts_resolve(f.p, "web1", "999999999", &pt, why, sizeof why), TM_ENOPOINT);

    /* @TIME: the last batch received at or before it */
    for (size_t b = 0; b < f.m.nbatches; b += 7) {
        char sel[64];
        time_sel(f.m.batches[b].recv_ns + STEP_NS / 2, sel, sizeof sel);
        cr_assert_eq(pts_resolve(f.p, "web1", sel, &pt, why, sizeof why), 0, "%s: %s", sel, why);
        cr_assert_eq(pt.seq, f.m.batches[b].last_seq, "%s", sel);
        cr_assert_eq(pt.kind, PTS_KIND_CUSTOM);
    }
    cr_assert_eq(pts_resolve(f.p, "web1", "@2000-01-01T00:00:00Z", &pt, why, sizeof why), TM_ENOPOINT);
    cr_assert_eq(pts_resolve(f.p, "web1", "@2999-01-01T00:00:00Z", &pt, why, sizeof why), TM_ENOPOINT);

    /* not selectors */
    static const char *const bad[] = {"newest", "@yesterday", "@2026-02-31T00:00:00Z", "12x", "0", "-3", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(pts_resolve(f.p, "web1", bad[i], &pt, why, sizeof why), TM_EINVAL, "'%s'", bad[i]);
    cr_assert_eq(pts_resolve(f.p, "nosuch", "latest", &pt, why, sizeof why), TM_ENOTFOUND);

    /* kind filter and limit */
    pts_point_t *v;
    size_t k;
    size_t ncrash = 0;
    for (size_t i = 0; i < n; i++)
        ncrash += all[i].kind == PTS_KIND_CRASH;
    cr_assert_geq(ncrash, 2);
    pts_query_t q = {.kinds = 1u << PTS_KIND_CRASH, .limit = 2};
    cr_assert_eq(pts_points(f.p, "web1", &q, &v, &k), 0);
    cr_assert_eq(k, 2, "%zu crash points of %zu", k, n);
    for (size_t i = 0; i < k; i++)
        cr_assert_eq(v[i].kind, PTS_KIND_CRASH);
    cr_assert_gt(v[0].seq, v[1].seq);
    tm_free(v);
    tm_free(all);
    fx_fini(&f);
}

Test(points_model, restart_resumes_without_hole_or_duplicate, .timeout = 120)
{
    fx_t f;
    fx_init(&f, "points-restart", seed_of() + 2);
    for (int i = 0; i < 25; i++)
        pm_append_batch(&f.m, f.j, 10);
    fx_open_points(&f);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    pts_close(f.p);
    f.p = NULL;
    for (int i = 0; i < 25; i++)
        pm_append_batch(&f.m, f.j, 10);
    fx_open_points(&f);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    pts_point_t lp;
    cr_assert_eq(pts_cut_latest(f.p, "web1", 30000, &lp), 0);
    check_catalog(&f, 24);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, 7);
    check_rebuild(&f, f.m.nops, &rng);
    check_rebuild(&f, f.m.batches[24].last_seq, &rng);
    fx_fini(&f);
}

Test(points_model, too_little_space_pauses_processing_without_writing, .timeout = 60)
{
    fx_t f;
    fx_init(&f, "points-space", seed_of() + 3);
    for (int i = 0; i < 5; i++)
        pm_append_batch(&f.m, f.j, 6);
    /* a reserve no file system here has: processing must wait, not fail */
    char err[256];
    pts_options_t o = {.cadence_ms = CADENCE_MS, .reserve_bytes = UINT64_MAX / 2};
    cr_assert_eq(pts_open(f.idir, f.j, &o, &f.p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(pts_sync(f.p, 10000), -ENOSPC);
    pts_stats_t st;
    pts_get_stats(f.p, &st);
    cr_assert(st.paused);
    cr_assert_eq(st.error, 0);
    cr_assert_eq(st.next_lsn, 1, "nothing may be processed while paused");
    pts_point_t pt;
    char why[128];
    cr_assert_eq(pts_resolve(f.p, "web1", "latest", &pt, why, sizeof why), -ENOSPC);
    pts_close(f.p);
    /* with room again, everything is processed */
    fx_open_points(&f);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    cr_assert_eq(pts_cut_latest(f.p, "web1", 30000, &pt), 0);
    cr_assert_eq(pt.seq, f.m.nops);
    fx_fini(&f);
}

Test(points_model, no_point_while_a_disk_is_copied_or_resynced, .timeout = 120)
{
    fx_t f;
    fx_init(&f, "points-consistency", seed_of() + 4);
    f.m.no_synced = true;
    for (int i = 0; i < 5; i++)
        pm_append_batch(&f.m, f.j, 6);
    uint64_t copy_mid_ns = f.m.batches[3].recv_ns;
    for (uint16_t d = 0; d < f.m.ndisks; d++)
        pm_append_marker(&f.m, f.j, WIRE_R_SYNCED, d);
    uint64_t consistent_from = f.m.nops; /* the last SYNCED */
    for (int i = 0; i < 5; i++)
        pm_append_batch(&f.m, f.j, 6);
    pm_append_marker(&f.m, f.j, WIRE_R_RESYNC, 1);
    uint64_t resync_begin = f.m.nops;
    size_t resync_batch = f.m.nbatches;
    for (int i = 0; i < 4; i++)
        pm_append_batch(&f.m, f.j, 6);
    pm_append_marker(&f.m, f.j, WIRE_R_SYNCED, 1);
    uint64_t resync_end = f.m.nops;
    for (int i = 0; i < 3; i++)
        pm_append_batch(&f.m, f.j, 6);

    fx_open_points(&f);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    pts_point_t *pts, pt;
    size_t n;
    cr_assert_eq(pts_points(f.p, "web1", NULL, &pts, &n), 0);
    cr_assert_gt(n, 0);
    for (size_t i = 0; i < n; i++) {
        cr_assert_geq(pts[i].seq, consistent_from, "point %llu cut during the initial copy",
                      (unsigned long long)pts[i].seq);
        cr_assert(pts[i].seq < resync_begin || pts[i].seq >= resync_end, "point %llu cut during the resync",
                  (unsigned long long)pts[i].seq);
    }
    tm_free(pts);

    char sel[64], why[256];
    /* an instant inside the resync: the position just before it began */
    time_sel(f.m.batches[resync_batch + 2].recv_ns, sel, sizeof sel);
    cr_assert_eq(pts_resolve(f.p, "web1", sel, &pt, why, sizeof why), 0, "%s: %s", sel, why);
    cr_assert_eq(pt.seq, resync_begin - 1);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, 9);
    check_rebuild(&f, pt.seq, &rng);
    /* an instant inside the initial copy: nothing consistent before it */
    time_sel(copy_mid_ns, sel, sizeof sel);
    cr_assert_eq(pts_resolve(f.p, "web1", sel, &pt, why, sizeof why), TM_ENOPOINT, "%s", sel);
    cr_assert(strstr(why, "crash-consistent"), "%s", why);
    cr_assert_eq(pts_resolve(f.p, "web1", "latest", &pt, why, sizeof why), 0, "%s", why);
    cr_assert_eq(pt.seq, f.m.nops);
    check_rebuild(&f, pt.seq, &rng);

    /* restart: the window is remembered */
    pts_close(f.p);
    fx_open_points(&f);
    time_sel(f.m.batches[resync_batch + 1].recv_ns, sel, sizeof sel);
    cr_assert_eq(pts_resolve(f.p, "web1", sel, &pt, why, sizeof why), 0, "%s: %s", sel, why);
    cr_assert_eq(pt.seq, resync_begin - 1);
    fx_fini(&f);
}

Test(points_model, latest_during_a_copy_is_the_newest_consistent_point, .timeout = 60)
{
    fx_t f;
    fx_init(&f, "points-copying", seed_of() + 5);
    f.m.no_synced = true;
    for (int i = 0; i < 3; i++)
        pm_append_batch(&f.m, f.j, 6);
    fx_open_points(&f);
    cr_assert_eq(pts_sync(f.p, 30000), 0);
    pts_point_t pt;
    char why[256];
    cr_assert_eq(pts_resolve(f.p, "web1", "latest", &pt, why, sizeof why), TM_ENOPOINT);
    pts_machine_t pm;
    cr_assert_eq(pts_machine(f.p, "web1", &pm), 0);
    cr_assert(!pm.consistent);
    cr_assert_eq(pm.unsafe_since, 1);
    fx_fini(&f);
}
