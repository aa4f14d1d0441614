/*
 * Processing rate and `latest`: the ingest side appends a workload into a
 * journal (bp_feed.c), then the points stage indexes it. Both read and
 * write the same journal files in the page cache, as they would on a
 * running appliance where processing trails ingest by seconds.
 */
#include "bench/points/bp.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/err.h"
#include "points/points.h"

#define BP_TIMEOUT_MS (3600 * 1000)

typedef struct bp_paths {
    char dir[PATH_MAX], jnl[PATH_MAX], index[PATH_MAX];
} bp_paths_t;

static int bp__paths(bp_paths_t *p, const char *dir, const char *name)
{
    if (snprintf(p->dir, sizeof p->dir, "%s/%s", dir, name) >= (int)sizeof p->dir ||
        snprintf(p->jnl, sizeof p->jnl, "%s/journal", p->dir) >= (int)sizeof p->jnl ||
        snprintf(p->index, sizeof p->index, "%s/index", p->dir) >= (int)sizeof p->index)
        return -ENAMETOOLONG;
    if (mkdir(p->dir, 0700) != 0) {
        int rc = -errno;
        fprintf(stderr, "bench_points: mkdir %s: %s\n", p->dir, strerror(errno));
        return rc;
    }
    return 0;
}

static int bp__open_jnl(const bp_paths_t *p, jnl_t **j)
{
    int rc = jnl_open(p->jnl, NULL, j);
    if (rc)
        fprintf(stderr, "bench_points: jnl_open %s: %s\n", p->jnl, tm_strerror(rc));
    return rc;
}

static int bp__open_pts(const bp_paths_t *p, jnl_t *j, pts_t **out)
{
    char err[256];
    int rc = pts_open(p->index, j, NULL, out, err, sizeof err);
    if (rc)
        fprintf(stderr, "bench_points: pts_open: %s\n", err);
    return rc;
}

int bp_proc_run(const char *dir, const char *name, const bp_pool_cfg_t *cfg, unsigned inflight,
                const bj_pool_t *warm, bp_proc_result_t *out)
{
    bp_paths_t p;
    bp_pool_t *pool = NULL;
    jnl_t *j = NULL;
    pts_t *pts = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = bp__paths(&p, dir, name)) != 0)
        return rc;
    if ((rc = bp_pool_new(cfg, &pool)) != 0)
        goto out;
    if ((rc = bp__open_jnl(&p, &j)) != 0)
        goto out;
    if ((rc = bp_append_disks(j, BP_MACHINE, BP_DISK_NAME, cfg->disk_size)) != 0)
        goto out;
    if (warm && (rc = bj_prewarm_in(p.dir, cfg->total, warm)) != 0)
        goto out;
    uint64_t seq = 2; /* 1 is the disk's SYNCED */
    if ((rc = bp_feed(j, BP_MACHINE, inflight, bp_pool_next, pool, &seq, &out->feed)) != 0)
        goto out;

    double cpu0 = bp_cpu_secs();
    uint64_t t0 = tm_mono_ns();
    if ((rc = bp__open_pts(&p, j, &pts)) != 0)
        goto out;
    rc = pts_sync(pts, BP_TIMEOUT_MS);
    out->proc_s = (double)(tm_mono_ns() - t0) / 1e9;
    out->proc_cpu_s = bp_cpu_secs() - cpu0;
    if (rc) {
        fprintf(stderr, "bench_points: pts_sync: %s\n", tm_strerror(rc));
        goto out;
    }
    pts_stats_t st;
    pts_get_stats(pts, &st);
    out->extents = st.extents;
    out->records = st.records;
    if (st.extents != out->feed.writes) {
        fprintf(stderr, "bench_points: %" PRIu64 " extents indexed for %" PRIu64 " writes\n", st.extents,
                out->feed.writes);
        rc = TM_ECORRUPT;
    }
out:
    pts_close(pts);
    if (j) {
        jnl_close(j);
        jnl_destroy(j);
    }
    bp_pool_free(pool);
    int rm = bj_rmtree(p.dir);
    return rc ? rc : rm;
}

int bp_latest_run(const char *dir, const char *name, const bp_pool_cfg_t *cfg, unsigned inflight,
                  const bj_pool_t *warm, bp_latest_result_t *out)
{
    bp_paths_t p;
    bp_pool_t *first = NULL, *pool = NULL;
    jnl_t *j = NULL;
    pts_t *pts = NULL;
    bp_feed_result_t fr;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = bp__paths(&p, dir, name)) != 0)
        return rc;
    bp_pool_cfg_t one = *cfg;
    one.total = (uint64_t)cfg->wsize * cfg->per_batch;
    if ((rc = bp_pool_new(&one, &first)) != 0 || (rc = bp_pool_new(cfg, &pool)) != 0)
        goto out;
    if ((rc = bp__open_jnl(&p, &j)) != 0)
        goto out;

    /* The machine, known to the index: its disks and a first batch
     * processed, then the processor stopped (a restart, or one that fell
     * behind). */
    if ((rc = bp_append_disks(j, BP_MACHINE, BP_DISK_NAME, cfg->disk_size)) != 0)
        goto out;
    uint64_t seq = 2; /* 1 is the disk's SYNCED */
    if ((rc = bp_feed(j, BP_MACHINE, inflight, bp_pool_next, first, &seq, &fr)) != 0)
        goto out;
    if ((rc = bp__open_pts(&p, j, &pts)) != 0)
        goto out;
    if ((rc = pts_sync(pts, BP_TIMEOUT_MS)) != 0) {
        fprintf(stderr, "bench_points: pts_sync: %s\n", tm_strerror(rc));
        goto out;
    }
    pts_close(pts);
    pts = NULL;

    /* The backlog: received and durable, not processed. */
    if (warm && (rc = bj_prewarm_in(p.dir, cfg->total, warm)) != 0)
        goto out;
    if ((rc = bp_feed(j, BP_MACHINE, inflight, bp_pool_next, pool, &seq, &out->feed)) != 0)
        goto out;

    uint64_t t0 = tm_mono_ns();
    if ((rc = bp__open_pts(&p, j, &pts)) != 0)
        goto out;
    uint64_t t1 = tm_mono_ns();
    pts_point_t pt;
    rc = pts_cut_latest(pts, BP_MACHINE, BP_TIMEOUT_MS, &pt);
    uint64_t t2 = tm_mono_ns();
    if (rc) {
        fprintf(stderr, "bench_points: pts_cut_latest: %s\n", tm_strerror(rc));
        goto out;
    }
    out->open_s = (double)(t1 - t0) / 1e9;
    out->latest_s = (double)(t2 - t1) / 1e9;
    if (pt.seq != seq - 1) {
        fprintf(stderr, "bench_points: latest is at sequence %" PRIu64 ", the last write was %" PRIu64 "\n",
                pt.seq, seq - 1);
        rc = TM_ECORRUPT;
    }
out:
    pts_close(pts);
    if (j) {
        jnl_close(j);
        jnl_destroy(j);
    }
    bp_pool_free(pool);
    bp_pool_free(first);
    int rm = bj_rmtree(p.dir);
    return rc ? rc : rm;
}
