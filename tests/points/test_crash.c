/*
 * Processing killed at seeded random moments (SIGKILL of a process that
 * has the journal and the index open), then restarted: the catalog and the
 * rebuilds still match the model. And a flipped bit in a journal segment:
 * rebuilding a point that needs the damaged write fails and names it;
 * points that do not need it still rebuild.
 *
 * TIDEMARK_POINTS_CRASH_TRIALS (default 30) and TIDEMARK_POINTS_SEED.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "journal/format.h"
#include "pm.h"
#include "points/index.h"
#include "points/points.h"
#include "target/reader.h"

#define CADENCE_MS 1000u
#define STEP_NS 100000000ull

static uint64_t seed_of(void)
{
    uint64_t s = tmt_env_u64("TIDEMARK_POINTS_SEED", 0);
    return s ? s : 0x5eed0c0de;
}

static pts_t *open_points(const char *idir, jnl_t *j)
{
    char err[256];
    pts_options_t o = {.cadence_ms = CADENCE_MS};
    pts_t *p;
    int rc = pts_open(idir, j, &o, &p, err, sizeof err);
    cr_assert_eq(rc, 0, "pts_open: %s", err);
    return p;
}

/* Rebuild disk d at seq; 0 and equal to the model, or the read's error. */
static int rebuild(pts_t *p, jnl_t *j, const pm_t *m, unsigned d, uint64_t seq, char *err, size_t errlen)
{
    pts_machine_t pm;
    cr_assert_eq(pts_machine(p, m->machine, &pm), 0);
    uint64_t size = m->disks[d].size;
    uint8_t *want = malloc(size), *got = malloc(size);
    pm_disk_at(m, d, seq, want);
    tgt_view_t v = {.ix = pts_index(p), .jnl = j, .machine = m->machine, .mid = pm.id, .disk = (uint16_t)d,
                    .disk_name = m->disks[d].name, .size = size, .seq = seq};
    tgt_reader_t *r;
    cr_assert_eq(tgt_open(&v, &r), 0);
    int rc = tgt_read(r, 0, got, size, NULL);
    snprintf(err, errlen, "%s", tgt_error(r));
    tgt_close(r);
    if (rc == 0 && memcmp(got, want, size) != 0)
        cr_assert_fail("disk %u at seq %llu differs from the model (seed %#llx)", d, (unsigned long long)seq,
                       (unsigned long long)m->seed);
    free(want);
    free(got);
    return rc;
}

static void rmtree_quiet(const char *path)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    cr_assert_eq(system(cmd), 0);
}

Test(points_crash, sigkill_while_processing_then_restart, .timeout = 600)
{
    char dir[PATH_MAX], jdir[PATH_MAX + 16], idir[PATH_MAX + 16];
    tmt_mkdtemp(dir, "points-crash");
    snprintf(jdir, sizeof jdir, "%s/journal", dir);
    snprintf(idir, sizeof idir, "%s/index", dir);
    uint64_t seed = seed_of();
    jnl_t *j;
    cr_assert_eq(jnl_open(jdir, NULL, &j), 0);
    pm_t m;
    pm_init(&m, seed, "db1", tm_now_ns() - 3600ull * 1000000000ull, STEP_NS);
    pm_append_disks(&m, j);
    for (int i = 0; i < 400; i++)
        pm_append_batch(&m, j, 16);
    jnl_destroy(j);

    /* How long a full processing takes here, so that kills land inside it. */
    uint64_t t0 = tm_mono_ns();
    cr_assert_eq(jnl_open(jdir, NULL, &j), 0);
    pts_t *p = open_points(idir, j);
    cr_assert_eq(pts_sync(p, 60000), 0);
    pts_close(p);
    jnl_destroy(j);
    uint64_t full_us = (tm_mono_ns() - t0) / 1000u;

    tmt_rng_t rng;
    tmt_rng_seed(&rng, seed);
    unsigned trials = (unsigned)tmt_env_u64("TIDEMARK_POINTS_CRASH_TRIALS", 30);
    for (unsigned t = 0; t < trials; t++) {
        rmtree_quiet(idir);
        unsigned kills = (unsigned)tmt_rng_range(&rng, 1, 2);
        for (unsigned k = 0; k < kills; k++) {
            uint64_t delay = tmt_rng_range(&rng, 0, full_us + full_us / 4);
            pid_t pid = fork();
            cr_assert_geq(pid, 0);
            if (pid == 0) {
                jnl_t *cj;
                if (jnl_open(jdir, NULL, &cj) != 0)
                    _exit(3);
                char err[256];
                pts_options_t o = {.cadence_ms = CADENCE_MS};
                pts_t *cp;
                if (pts_open(idir, cj, &o, &cp, err, sizeof err) != 0)
                    _exit(4);
                for (;;)
                    pause();
            }
            usleep((useconds_t)delay);
            kill(pid, SIGKILL);
            int st;
            cr_assert_eq(waitpid(pid, &st, 0), pid);
            cr_assert(WIFSIGNALED(st), "trial %u: the child exited by itself (%d) (seed %#llx)", t,
                      WEXITSTATUS(st), (unsigned long long)seed);
        }
        cr_assert_eq(jnl_open(jdir, NULL, &j), 0);
        p = open_points(idir, j);
        cr_assert_eq(pts_sync(p, 60000), 0);
        /* the catalog: every point exactly once, the newest at the end */
        pts_point_t *pts;
        size_t n;
        cr_assert_eq(pts_points(p, "db1", NULL, &pts, &n), 0);
        pts_machine_t pm;
        cr_assert_eq(pts_machine(p, "db1", &pm), 0);
        cr_assert_eq(pm.seq, m.nops, "trial %u (seed %#llx)", t, (unsigned long long)seed);
        for (size_t i = 1; i < n; i++)
            cr_assert_lt(pts[i].seq, pts[i - 1].seq, "trial %u: points out of order or repeated", t);
        char err[512];
        unsigned d = (unsigned)tmt_rng_range(&rng, 0, m.ndisks - 1);
        cr_assert_eq(rebuild(p, j, &m, d, m.nops, err, sizeof err), 0, "%s", err);
        if (n) {
            uint64_t s = pts[tmt_rng_range(&rng, 0, n - 1)].seq;
            cr_assert_eq(rebuild(p, j, &m, d, s, err, sizeof err), 0, "%s", err);
        }
        tm_free(pts);
        pts_close(p);
        jnl_destroy(j);
    }
    pm_free(&m);
    tmt_rmtree(dir);
}

Test(points_crash, flipped_bit_is_named_and_other_points_rebuild, .timeout = 120)
{
    char dir[PATH_MAX], jdir[PATH_MAX + 16], idir[PATH_MAX + 16];
    tmt_mkdtemp(dir, "points-flip");
    snprintf(jdir, sizeof jdir, "%s/journal", dir);
    snprintf(idir, sizeof idir, "%s/index", dir);
    jnl_t *j;
    cr_assert_eq(jnl_open(jdir, NULL, &j), 0);
    pm_t m;
    pm_init(&m, seed_of() + 5, "db1", tm_now_ns() - 3600ull * 1000000000ull, STEP_NS);
    pm_append_disks(&m, j);
    for (int i = 0; i < 30; i++)
        pm_append_batch(&m, j, 10);
    pts_t *p = open_points(idir, j);
    cr_assert_eq(pts_sync(p, 30000), 0);

    /* a write in the middle of the stream, stored raw: a flipped bit in an
     * lz4 block may decode to the same bytes (a match offset moved inside
     * a run), and then there is nothing to detect */
    uint64_t victim = 0;
    for (uint64_t s = m.nops / 2; s <= m.nops && !victim; s++)
        if (m.ops[s - 1].kind == WIRE_R_WRITE && !m.ops[s - 1].compressible)
            victim = s;
    cr_assert(victim);
    const pm_op_t *op = &m.ops[victim - 1];
    /* under the running appliance, as bit rot would */
    pm_flip_stored_bit(p, jdir, &m, victim);

    char err[512], want[256];
    int rc = rebuild(p, j, &m, op->disk, victim, err, sizeof err);
    cr_assert_eq(rc, TM_ECORRUPT, "rebuild at the damaged write: %s", tmt_errname(rc));
    snprintf(want, sizeof want, "machine db1 disk disk%u at point %llu: the write at offset %llu", op->disk,
             (unsigned long long)victim, (unsigned long long)op->off);
    cr_assert(strstr(err, want) && (strstr(err, "fails its checksum") || strstr(err, "does not decompress")),
              "message: %s", err);
    /* before the damaged write: untouched */
    cr_assert_eq(rebuild(p, j, &m, op->disk, victim - 1, err, sizeof err), 0, "%s", err);
    /* the other disks never read it */
    for (unsigned d = 0; d < m.ndisks; d++)
        if (d != op->disk)
            cr_assert_eq(rebuild(p, j, &m, d, m.nops, err, sizeof err), 0, "%s", err);
    pts_close(p);
    jnl_destroy(j);
    pm_free(&m);
    tmt_rmtree(dir);
}
