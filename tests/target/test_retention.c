/*
 * Exports and retention: an open export pins its point, so retention keeps
 * the horizon at or below it while it is open, and moves on once it is
 * closed. Data folded into the replica base under an open export (the base
 * did not exist when its readers opened) still reads as the model says, and
 * so do exports opened after the fold (base plus index). TIDEMARK_TARGET_SEED
 * picks the workload.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "tt.h"

#define FAR_FUTURE_NS (40ull * 24 * 3600 * 1000000000ull)

/* Read the whole export over fd in pieces of seeded sizes; compare. */
static void read_all(int fd, const tt_t *t, unsigned disk, uint64_t seq, tmt_rng_t *rng)
{
    uint64_t size = t->m.disks[disk].size;
    uint8_t *want = malloc(size), *got = malloc(size);
    cr_assert(want && got);
    pm_disk_at(&t->m, disk, seq, want);
    for (uint64_t off = 0; off < size;) {
        uint64_t n = tmt_rng_range(rng, 1, 600 * 1024);
        if (n > size - off)
            n = size - off;
        uint32_t err = nbdt_roundtrip(fd, 0, NBD_CMD_READ, off, (uint32_t)n, NULL, got + off);
        cr_assert_eq(err, 0, "read at %llu+%llu: NBD error %u", (unsigned long long)off, (unsigned long long)n, err);
        off += n;
    }
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != want[i])
            cr_assert_fail("disk%u at point %llu differs from the model at byte %llu (seed %#llx)", disk,
                           (unsigned long long)seq, (unsigned long long)i, (unsigned long long)t->m.seed);
    free(want);
    free(got);
}

Test(target_retention, a_pinned_point_survives_retention_and_reads_through_the_base, .timeout = 240)
{
    nbdt_need("qemu-img", "qemu-utils");
    tt_t t;
    tt_init(&t, "tgt-pin", tt_seed(0x9149), 60, 12);
    pts_point_t *all;
    size_t n;
    cr_assert_eq(pts_points(t.p, "web1", NULL, &all, &n), 0);
    cr_assert_geq(n, 4);
    uint64_t old = all[n - 3].seq; /* points before it are dropped and folded */
    uint64_t newest = all[0].seq;
    tm_free(all);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, t.m.seed);
    tt_start(&t);

    /* opened and read while there is no replica base yet */
    char name[64], msg[512];
    snprintf(name, sizeof name, "web1/disk1@%llu", (unsigned long long)old);
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    cr_assert_eq(tt_go(fd, name, NULL, NULL, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
    read_all(fd, &t, 1, old, &rng);
    /* and one not read yet: its first reader opens after the fold */
    snprintf(name, sizeof name, "web1/disk2@%llu", (unsigned long long)old);
    int fd2 = nbdt_connect(t.port);
    nbdt_handshake(fd2, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    cr_assert_eq(tt_go(fd2, name, NULL, NULL, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
    char base[PATH_MAX + 32];
    pts_base_path(t.p, "web1", "disk1", base, sizeof base);
    cr_assert(!tmt_file_exists(base));

    /* retention as if forty days had passed: every point but the newest is
     * past the window, but the open export holds the horizon at its point */
    cr_assert_eq(pts_retain(t.p, tm_now_ns() + FAR_FUTURE_NS), 0);
    pts_machine_t pm;
    cr_assert_eq(pts_machine(t.p, "web1", &pm), 0);
    cr_assert_eq(pm.first_seq, old, "horizon %llu, pinned point %llu", (unsigned long long)pm.first_seq,
                 (unsigned long long)old);
    cr_assert_eq(pm.base_seq, old);
    cr_assert(tmt_file_exists(base), "nothing was folded into %s", base);

    /* the same connection (readers opened before the base existed): the
     * whole disk in one read first, so that it needs the folded data */
    uint64_t size1 = t.m.disks[1].size;
    uint8_t *want = malloc(size1), *got = malloc(size1);
    pm_disk_at(&t.m, 1, old, want);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, (uint32_t)size1, NULL, got), 0);
    cr_assert(memcmp(got, want, size1) == 0, "disk1 at point %llu read after the fold differs from the model",
              (unsigned long long)old);
    free(want);
    free(got);
    read_all(fd, &t, 1, old, &rng);
    read_all(fd2, &t, 2, old, &rng);
    /* the pinned point left the catalog (only the newest is in the window):
     * its open exports are all that can read it now */
    snprintf(name, sizeof name, "web1/disk0@%llu", (unsigned long long)old);
    int fd3 = nbdt_connect(t.port);
    nbdt_handshake(fd3, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    cr_assert_eq(tt_go(fd3, name, NULL, NULL, msg, sizeof msg), NBD_REP_ERR_UNKNOWN, "%s", msg);
    close(fd3);
    /* a new export at the newest point: base plus index */
    tt_convert_and_check(&t, "web1/disk0@latest-processed", 0, newest, "new0.raw");
    close(fd);
    close(fd2);

    /* closed: nothing holds the horizon back any more */
    uint64_t deadline = tm_now_ns() + 10ull * 1000000000ull;
    for (;;) {
        cr_assert_eq(pts_retain(t.p, tm_now_ns() + FAR_FUTURE_NS), 0);
        cr_assert_eq(pts_machine(t.p, "web1", &pm), 0);
        if (pm.first_seq == newest)
            break;
        /* the server releases the export once it sees the close */
        cr_assert_lt(tm_now_ns(), deadline, "horizon still at %llu after the export closed",
                     (unsigned long long)pm.first_seq);
        usleep(10000);
    }
    fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    snprintf(name, sizeof name, "web1/disk1@%llu", (unsigned long long)old);
    cr_assert_eq(tt_go(fd, name, NULL, NULL, msg, sizeof msg), NBD_REP_ERR_UNKNOWN, "%s", msg);
    cr_assert(strstr(msg, "past the retention horizon"), "%s", msg);
    close(fd);
    for (unsigned d = 0; d < t.m.ndisks; d++) {
        char out[32];
        snprintf(name, sizeof name, "web1/disk%u@latest", d);
        snprintf(out, sizeof out, "folded%u.raw", d);
        tt_convert_and_check(&t, name, d, newest, out);
    }
    tt_fini(&t);
}
