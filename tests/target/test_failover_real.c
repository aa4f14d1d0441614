/*
 * Failover: MACHINE/DISK@failover writable over overlays whose bitmap is
 * stored (docs/failover-overlay.md). Written with qemu-io and a raw client,
 * read back with qemu-img and compared with the model at the point plus the
 * writes: flushed writes survive the exports and the points stage closed
 * and opened again, and a crash right after the flush (the files as they
 * were then); damaged maps are refused by name; a change of point
 * shows the new point and none of the old writes; a commit beside a
 * writing client leaves overlays that need no point (served again over a
 * new, empty index); a stop during a commit cancels it. TIDEMARK_TARGET_SEED
 * picks the workload.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/mem.h"
#include "target/overlay.h"
#include "tt.h"

static char text[65536];

static bool tt_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* qemu-io with one -c per command (then a flush) on name, asserting it
 * succeeds. */
static void qio(tt_t *t, const char *name, const char *const *cmds)
{
    const char *argv[64] = {"qemu-io", "-f", "raw", tt_uri(t, name)};
    size_t n = 4;
    for (size_t i = 0; cmds[i]; i++) {
        cr_assert_lt(n + 4, sizeof argv / sizeof argv[0]);
        argv[n++] = "-c";
        argv[n++] = cmds[i];
    }
    argv[n++] = "-c";
    argv[n++] = "flush";
    argv[n] = NULL;
    int rc = nbdt_run(text, sizeof text, argv);
    cr_assert_eq(rc, 0, "qemu-io on %s exited %d:\n%s", name, rc, text);
    cr_assert_null(strstr(text, "failed"), "qemu-io on %s:\n%s", name, text);
}

static void assert_bytes(const uint8_t *got, const uint8_t *want, uint64_t size, const char *what, uint64_t seed)
{
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != want[i])
            cr_assert_fail("%s differs from the point plus the writes at byte %llu: %02x, not %02x (seed %#llx)", what,
                           (unsigned long long)i, got[i], want[i], (unsigned long long)seed);
}

/* qemu-img convert the export, compare with want. */
static void check_export(tt_t *t, const char *name, const uint8_t *want, uint64_t size)
{
    static unsigned n;
    char rel[64];
    snprintf(rel, sizeof rel, "out-%u.raw", n++);
    const char *out = tt_path(t, rel);
    int rc = NBDT_RUN(text, "qemu-img", "convert", "-f", "raw", "-O", "raw", tt_uri(t, name), out);
    cr_assert_eq(rc, 0, "qemu-img convert %s exited %d:\n%s", name, rc, text);
    cr_assert_eq((uint64_t)tmt_file_size(out), size, "%s: %lld bytes", name, (long long)tmt_file_size(out));
    uint8_t *got = malloc(size);
    cr_assert(got);
    tmt_file_read(out, 0, got, size);
    assert_bytes(got, want, size, name, t->m.seed);
    free(got);
    unlink(out);
}

/* A raw client with name open. */
static int raw_open(tt_t *t, const char *name)
{
    char msg[1024];
    int fd = nbdt_connect(t->port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint32_t type = tt_go(fd, name, NULL, NULL, msg, sizeof msg);
    cr_assert_eq(type, NBD_REP_ACK, "%s: reply 0x%x: %s", name, type, msg);
    return fd;
}

static void raw_read_all(int fd, uint8_t *buf, uint64_t size)
{
    for (uint64_t o = 0; o < size; o += 1u << 20) {
        uint32_t l = size - o < (1u << 20) ? (uint32_t)(size - o) : 1u << 20;
        cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, o, l, NULL, buf + o), 0);
    }
}

static uint8_t *model_at(tt_t *t, unsigned d, uint64_t seq)
{
    uint8_t *m = malloc(t->m.disks[d].size);
    cr_assert(m);
    pm_disk_at(&t->m, d, seq, m);
    return m;
}

static const char *ov_path(tt_t *t, unsigned d, bool map)
{
    char rel[64];
    snprintf(rel, sizeof rel, "failover/web1/disk%u.overlay%s", d, map ? ".map" : "");
    return tt_path(t, rel);
}

static void name_of(char *out, size_t len, unsigned d, const char *sel)
{
    snprintf(out, len, "web1/disk%u@%s", d, sel);
}

Test(target_failover_real, flushed_writes_survive_a_restart, .timeout = 240)
{
    nbdt_need("qemu-io", "qemu-utils");
    nbdt_need("qemu-img", "qemu-utils");
    nbdt_need("nbdinfo", "libnbd-bin");
    tt_t t;
    tt_init(&t, "tgt-fo", tt_seed(0xf0a1), 60, 12);
    tt_start(&t);
    uint64_t mid = tt_middle_point(&t);
    char msg[1024], name[64];
    int rc = tt_failover_start(&t, "web1", mid, false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    for (unsigned d = 0; d < t.m.ndisks; d++) {
        cr_assert(tt_exists(ov_path(&t, d, false)) && tt_exists(ov_path(&t, d, true)), "disk%u's overlay", d);
        cr_assert_eq((uint64_t)tmt_file_size(ov_path(&t, d, false)), t.m.disks[d].size);
    }
    uint64_t seq = 0;
    cr_assert_eq(tt_failover_point(&t, "web1", &seq), 0);
    cr_assert_eq(seq, mid);
    uint8_t *model[3];
    for (unsigned d = 0; d < 3; d++)
        model[d] = model_at(&t, d, mid);

    /* disk1: qemu-io writes inside a block, across blocks at odd places,
     * zeroes, a trim of whole blocks, then a flush */
    qio(&t, "web1/disk1@failover",
        (const char *const[]){"write -P 0xab 4096 8192", "write -P 0xcd 100001 70000", "write -P 0x5a 1048576 131072",
                              "write -z 2500000 200000", "discard 2097152 131072", "write -P 0x77 2100000 1000",
                              NULL});
    memset(model[1] + 4096, 0xab, 8192);
    memset(model[1] + 100001, 0xcd, 70000);
    memset(model[1] + 1048576, 0x5a, 131072);
    memset(model[1] + 2500000, 0, 200000);
    memset(model[1] + 2097152, 0, 131072);
    memset(model[1] + 2100000, 0x77, 1000);

    /* disk2: writes with FUA and no flush, the last bytes of the disk too */
    uint64_t size2 = t.m.disks[2].size;
    uint8_t buf[5000];
    memset(buf, 0x3c, sizeof buf);
    int fd = raw_open(&t, "web1/disk2@failover");
    cr_assert_eq(nbdt_roundtrip(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, size2 - 100, 100, buf, NULL), 0);
    cr_assert_eq(nbdt_roundtrip(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 70000, 5000, buf, NULL), 0);
    memset(model[2] + size2 - 100, 0x3c, 100);
    memset(model[2] + 70000, 0x3c, 5000);
    close(fd);

    /* the files as a crash right now would leave them: what the flushes
     * made durable; then a write that no flush covers */
    size_t snap_len[4];
    uint8_t *snap[4];
    for (unsigned i = 0; i < 4; i++) {
        const char *p = ov_path(&t, 1 + i / 2, i % 2);
        snap_len[i] = (size_t)tmt_file_size(p);
        snap[i] = malloc(snap_len[i]);
        tmt_file_read(p, 0, snap[i], snap_len[i]);
    }
    uint8_t *flushed1 = malloc(t.m.disks[1].size);
    memcpy(flushed1, model[1], t.m.disks[1].size);
    fd = raw_open(&t, "web1/disk1@failover");
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, 3 * TGT_OV_BLOCK + 10, sizeof buf, buf, NULL), 0);
    memset(model[1] + 3 * TGT_OV_BLOCK + 10, 0x3c, sizeof buf);
    close(fd);

    /* listed while the failover runs */
    rc = NBDT_RUN(text, "nbdinfo", "--list", tt_uri(&t, ""));
    cr_assert_eq(rc, 0, "nbdinfo --list exited %d:\n%s", rc, text);
    for (unsigned d = 0; d < 3; d++) {
        name_of(name, sizeof name, d, "failover");
        cr_assert(strstr(text, name), "nbdinfo --list does not name %s:\n%s", name, text);
    }
    cr_assert(strstr(text, "web1/disk0@latest-processed"), "%s", text);

    /* a test failover of the machine beside it, written too */
    uint64_t tseq;
    rc = tt_test_start(&t, "web1", "latest-processed", &tseq, msg, sizeof msg);
    cr_assert_eq(rc, 0, "test failover beside the failover: %s: %s", tmt_errname(rc), msg);
    qio(&t, "web1/disk1@test", (const char *const[]){"write -P 0x11 0 65536", NULL});
    check_export(&t, "web1/disk1@failover", model[1], t.m.disks[1].size);
    cr_assert_eq(tt_test_cleanup(&t, "web1", msg, sizeof msg), 0, "%s", msg);

    /* a second start is refused while one runs */
    rc = tt_failover_start(&t, "web1", mid, true, msg, sizeof msg);
    cr_assert_eq(rc, -EBUSY, "%s", tmt_errname(rc));
    char want[128];
    snprintf(want, sizeof want, "a failover of web1 is already running at point %llu", (unsigned long long)mid);
    cr_assert(strstr(msg, want), "'%s' does not say '%s'", msg, want);

    /* the appliance restarts: exports stopped, journal and points closed
     * and opened again, new exports */
    tt_stop(&t);
    cr_assert(tt_exists(ov_path(&t, 1, true)), "stopping the exports removed a failover's map");
    tt_reopen(&t, false);
    tt_start(&t);
    fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint32_t type = tt_go(fd, "web1/disk1@failover", NULL, NULL, msg, sizeof msg);
    cr_assert_eq(type, NBD_REP_ERR_UNKNOWN, "0x%x %s", type, msg);
    cr_assert(strstr(msg, "no failover of machine web1 is running"), "%s", msg);
    close(fd);
    rc = tt_failover_start(&t, "web1", mid, true, msg, sizeof msg);
    cr_assert_eq(rc, 0, "reopening: %s: %s", tmt_errname(rc), msg);
    for (unsigned d = 0; d < 3; d++) {
        name_of(name, sizeof name, d, "failover");
        check_export(&t, name, model[d], t.m.disks[d].size);
    }
    /* the point itself never changed */
    snprintf(name, sizeof name, "web1/disk1@%llu", (unsigned long long)mid);
    tt_convert_and_check(&t, name, 1, mid, "point1.raw");

    /* the crash: what was flushed is there, the unflushed write is not */
    cr_assert_eq(tt_failover_stop(&t, "web1", false, msg, sizeof msg), 0, "%s", msg);
    tt_stop(&t);
    for (unsigned i = 0; i < 4; i++) {
        const char *p = ov_path(&t, 1 + i / 2, i % 2);
        tmt_file_create(p, 0);
        tmt_file_write(p, 0, snap[i], snap_len[i]);
        free(snap[i]);
    }
    tt_reopen(&t, false);
    tt_start(&t);
    rc = tt_failover_start(&t, "web1", mid, true, msg, sizeof msg);
    cr_assert_eq(rc, 0, "reopening after the crash: %s: %s", tmt_errname(rc), msg);
    check_export(&t, "web1/disk1@failover", flushed1, t.m.disks[1].size);
    check_export(&t, "web1/disk2@failover", model[2], t.m.disks[2].size);
    free(flushed1);

    /* stop keeping the files; then there is none to stop */
    rc = tt_failover_stop(&t, "web1", false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    cr_assert(tt_exists(ov_path(&t, 1, false)) && tt_exists(ov_path(&t, 1, true)));
    rc = tt_failover_stop(&t, "web1", false, msg, sizeof msg);
    cr_assert_eq(rc, TM_ENOTFOUND, "%s", tmt_errname(rc));
    cr_assert(strstr(msg, "no failover of web1 is running"), "%s", msg);
    cr_assert_eq(tt_failover_point(&t, "web1", &seq), TM_ENOTFOUND);
    for (unsigned d = 0; d < 3; d++)
        free(model[d]);
    tt_fini(&t);
}

/* Restore a saved file whole (content and length). */
static void restore(const char *path, const uint8_t *saved, size_t len)
{
    tmt_file_create(path, 0);
    tmt_file_write(path, 0, saved, len);
}

static void expect_refused(tt_t *t, uint64_t seq, int want_rc, const char *file, const char *says)
{
    char msg[1024];
    int rc = tt_failover_start(t, "web1", seq, true, msg, sizeof msg);
    cr_assert_eq(rc, want_rc, "%s (want %s): %s", tmt_errname(rc), tmt_errname(want_rc), msg);
    cr_assert(strstr(msg, file), "'%s' does not name %s", msg, file);
    cr_assert(strstr(msg, says), "'%s' does not say '%s'", msg, says);
    /* nothing is left of the failed start */
    uint64_t s;
    cr_assert_eq(tt_failover_point(t, "web1", &s), TM_ENOTFOUND);
}

Test(target_failover_real, damaged_maps_are_refused_by_name, .timeout = 120)
{
    tt_t t;
    tt_init(&t, "tgt-fobad", tt_seed(0xf0a2), 30, 10);
    tt_start(&t);
    uint64_t lp = tt_seq_of(&t, "latest-processed"), mid = tt_middle_point(&t);
    cr_assert_neq(lp, mid);
    char msg[1024];
    int rc = tt_failover_start(&t, "web1", lp, false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    uint64_t size = t.m.disks[1].size;
    uint8_t *model = model_at(&t, 1, lp);
    static uint8_t data[200000];
    tmt_fill(data, sizeof data, t.m.seed, 77, false);
    int fd = raw_open(&t, "web1/disk1@failover");
    cr_assert_eq(nbdt_roundtrip(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 1000, sizeof data, data, NULL), 0);
    memcpy(model + 1000, data, sizeof data);
    close(fd);
    cr_assert_eq(tt_failover_stop(&t, "web1", false, msg, sizeof msg), 0, "%s", msg);

    const char *map = ov_path(&t, 1, true), *dat = ov_path(&t, 1, false);
    char map_s[PATH_MAX], dat_s[PATH_MAX];
    snprintf(map_s, sizeof map_s, "%s", map);
    snprintf(dat_s, sizeof dat_s, "%s", dat);
    size_t mlen = (size_t)tmt_file_size(map_s);
    cr_assert_geq(mlen, 4096u + 512u);
    uint8_t *saved = malloc(mlen);
    tmt_file_read(map_s, 0, saved, mlen);

    /* a bit of a record's bitmap */
    tmt_file_flip_bit(map_s, 4096 + 3, 2);
    expect_refused(&t, lp, TM_ECORRUPT, map_s, "record 0 (bytes 4096..4607) does not verify");
    restore(map_s, saved, mlen);
    /* a bit of the header */
    tmt_file_flip_bit(map_s, 20, 5);
    expect_refused(&t, lp, TM_ECORRUPT, map_s, "the header's checksum does not verify");
    restore(map_s, saved, mlen);
    /* the magic */
    tmt_file_flip_bit(map_s, 0, 0);
    expect_refused(&t, lp, TM_ECORRUPT, map_s, "is not an overlay map");
    restore(map_s, saved, mlen);
    /* another version: refused by its version, not as damage */
    uint8_t v[4];
    tm_put32(v, 2);
    tmt_file_write(map_s, 8, v, 4);
    expect_refused(&t, lp, TM_EVERSION, map_s, "format version 2; this build reads version 1");
    restore(map_s, saved, mlen);
    /* torn short: a record missing, or the header */
    tmt_file_truncate(map_s, (off_t)mlen - 512);
    expect_refused(&t, lp, TM_ECORRUPT, map_s, "its header says");
    tmt_file_truncate(map_s, 100);
    expect_refused(&t, lp, TM_ECORRUPT, map_s, "too short for its header");
    restore(map_s, saved, mlen);
    /* the data file cut short */
    tmt_file_truncate(dat_s, (off_t)size - 4096);
    expect_refused(&t, lp, TM_ECORRUPT, dat_s, "its map says the disk is");
    tmt_file_truncate(dat_s, (off_t)size); /* only unwritten blocks were cut */
    /* another point than the overlay's */
    char want[128];
    snprintf(want, sizeof want, "was made over point %llu, not %llu", (unsigned long long)lp,
             (unsigned long long)mid);
    expect_refused(&t, mid, TM_EINVAL, "failover/web1/disk0.overlay.map", want); /* disk0 comes first */
    /* a committed machine's start wants standalone overlays */
    expect_refused(&t, 0, TM_EINVAL, "failover/web1/disk", "is not standalone (a commit did not finish)");
    rc = tt_failover_start(&t, "web1", 0, false, msg, sizeof msg);
    cr_assert_eq(rc, TM_EINVAL, "%s", tmt_errname(rc));

    /* whole again: it reopens, with the write */
    rc = tt_failover_start(&t, "web1", lp, true, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    fd = raw_open(&t, "web1/disk1@failover");
    uint8_t *got = malloc(size);
    raw_read_all(fd, got, size);
    assert_bytes(got, model, size, "web1/disk1@failover", t.m.seed);
    close(fd);
    cr_assert_eq(tt_failover_stop(&t, "web1", false, msg, sizeof msg), 0, "%s", msg);

    /* a data file with no map is an overlay whose making did not finish:
     * made again, empty */
    unlink(map_s);
    rc = tt_failover_start(&t, "web1", lp, true, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    tt_convert_and_check(&t, "web1/disk1@failover", 1, lp, "remade1.raw");
    free(got);
    free(saved);
    free(model);
    tt_fini(&t);
}

Test(target_failover_real, a_change_of_point_shows_the_new_point_only, .timeout = 180)
{
    nbdt_need("qemu-io", "qemu-utils");
    nbdt_need("qemu-img", "qemu-utils");
    tt_t t;
    tt_init(&t, "tgt-focp", tt_seed(0xf0a3), 60, 12);
    tt_start(&t);
    uint64_t mid = tt_middle_point(&t), lp = tt_seq_of(&t, "latest-processed");
    char msg[1024];
    int rc = tt_failover_start(&t, "web1", mid, false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    qio(&t, "web1/disk0@failover", (const char *const[]){"write -P 0xee 0 65536", "write -P 0xef 500000 3000", NULL});
    rc = tt_failover_start(&t, "web1", lp, false, msg, sizeof msg);
    cr_assert_eq(rc, -EBUSY, "%s", tmt_errname(rc));

    /* the change: stop removing the overlays, start at the other point */
    rc = tt_failover_stop(&t, "web1", true, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    cr_assert(!tt_exists(ov_path(&t, 0, false)) && !tt_exists(ov_path(&t, 0, true)), "the overlays are left");
    rc = tt_failover_start(&t, "web1", lp, false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    uint64_t seq;
    cr_assert_eq(tt_failover_point(&t, "web1", &seq), 0);
    cr_assert_eq(seq, lp);
    for (unsigned d = 0; d < 2; d++) {
        uint8_t *want = model_at(&t, d, lp);
        char name[64];
        name_of(name, sizeof name, d, "failover");
        check_export(&t, name, want, t.m.disks[d].size);
        free(want);
    }

    /* a new failover (keep false) truncates what a stopped one kept */
    qio(&t, "web1/disk0@failover", (const char *const[]){"write -P 0x99 0 4096", NULL});
    cr_assert_eq(tt_failover_stop(&t, "web1", false, msg, sizeof msg), 0, "%s", msg);
    rc = tt_failover_start(&t, "web1", lp, false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    tt_convert_and_check(&t, "web1/disk0@failover", 0, lp, "fresh0.raw");
    cr_assert_eq(tt_failover_stop(&t, "web1", true, msg, sizeof msg), 0, "%s", msg);
    tt_fini(&t);
}

Test(target_failover_real, a_commit_beside_a_writer_needs_no_point_after, .timeout = 240)
{
    nbdt_need("qemu-io", "qemu-utils");
    nbdt_need("qemu-img", "qemu-utils");
    nbdt_need("nbdinfo", "libnbd-bin");
    tt_t t;
    tt_init(&t, "tgt-focommit", tt_seed(0xf0a4), 60, 12);
    tt_start(&t);
    uint64_t mid = tt_middle_point(&t);
    char msg[1024];
    int rc = tt_failover_commit(&t, "web1", false, NULL, msg, sizeof msg);
    cr_assert_eq(rc, TM_ENOTFOUND, "%s", tmt_errname(rc));
    rc = tt_failover_start(&t, "web1", mid, false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    uint8_t *model[3];
    uint64_t total = 0;
    for (unsigned d = 0; d < 3; d++) {
        model[d] = model_at(&t, d, mid);
        total += t.m.disks[d].size;
    }
    uint64_t done, tot;
    cr_assert_eq(tt_failover_progress(&t, "web1", &done, &tot), 0);
    cr_assert_eq(done, 0);
    cr_assert_eq(tot, total);

    /* the commit starts; a client writes all along, FUA now and then */
    uint64_t size = t.m.disks[1].size;
    int fd = raw_open(&t, "web1/disk1@failover");
    rc = tt_failover_commit(&t, "web1", false, NULL, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    rc = tt_failover_commit(&t, "web1", false, NULL, msg, sizeof msg);
    cr_assert_eq(rc, -EBUSY, "%s", tmt_errname(rc));
    cr_assert(strstr(msg, "already being committed"), "%s", msg);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, t.m.seed);
    static uint8_t data[100000];
    for (unsigned i = 0; i < 200; i++) {
        uint32_t len = (uint32_t)tmt_rng_range(&rng, 1, sizeof data);
        uint64_t off = tmt_rng_range(&rng, 0, size - len);
        tmt_fill(data, len, t.m.seed, 1000 + i, i % 2 == 0);
        uint16_t flags = i % 10 == 0 ? NBD_CMD_FLAG_FUA : 0;
        cr_assert_eq(nbdt_roundtrip(fd, flags, NBD_CMD_WRITE, off, len, data, NULL), 0);
        memcpy(model[1] + off, data, len);
    }
    rc = tt_failover_commit_wait(&t, msg, sizeof msg);
    cr_assert_eq(rc, 0, "the commit: %s: %s", tmt_errname(rc), msg);
    cr_assert_eq(tt_failover_progress(&t, "web1", &done, &tot), 0);
    cr_assert_eq(done, total, "progress %llu of %llu", (unsigned long long)done, (unsigned long long)total);
    uint64_t seq = 1;
    cr_assert_eq(tt_failover_point(&t, "web1", &seq), 0);
    cr_assert_eq(seq, 0, "a committed failover still names point %llu", (unsigned long long)seq);
    /* and after it */
    for (unsigned i = 0; i < 20; i++) {
        uint32_t len = (uint32_t)tmt_rng_range(&rng, 1, 70000);
        uint64_t off = tmt_rng_range(&rng, 0, size - len);
        tmt_fill(data, len, t.m.seed, 5000 + i, false);
        cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, off, len, data, NULL), 0);
        memcpy(model[1] + off, data, len);
    }
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_FLUSH, 0, 0, NULL, NULL), 0);
    uint8_t *got = malloc(size);
    raw_read_all(fd, got, size);
    assert_bytes(got, model[1], size, "web1/disk1@failover after the commit", t.m.seed);
    close(fd);
    for (unsigned d = 0; d < 3; d += 2) {
        char name[64];
        name_of(name, sizeof name, d, "failover");
        check_export(&t, name, model[d], t.m.disks[d].size);
    }

    /* the point is no longer needed: a new, empty journal and index, and
     * the committed failover served again from its overlays alone */
    cr_assert_eq(tt_failover_stop(&t, "web1", false, msg, sizeof msg), 0, "%s", msg);
    tt_stop(&t);
    tt_reopen(&t, true);
    pts_machine_t pm;
    cr_assert_eq(pts_machine(t.p, "web1", &pm), TM_ENOTFOUND, "the new index knows web1");
    tt_start(&t);
    rc = tt_failover_start(&t, "web1", 0, true, msg, sizeof msg);
    cr_assert_eq(rc, 0, "the committed failover: %s: %s", tmt_errname(rc), msg);
    cr_assert_eq(tt_failover_point(&t, "web1", &seq), 0);
    cr_assert_eq(seq, 0);
    for (unsigned d = 0; d < 3; d++) {
        char name[64];
        name_of(name, sizeof name, d, "failover");
        check_export(&t, name, model[d], t.m.disks[d].size);
    }
    cr_assert_eq(tt_failover_progress(&t, "web1", &done, &tot), 0);
    cr_assert_eq(done, total);
    /* listed, writable, and a commit again has nothing to do */
    rc = NBDT_RUN(text, "nbdinfo", "--list", tt_uri(&t, ""));
    cr_assert_eq(rc, 0, "nbdinfo --list exited %d:\n%s", rc, text);
    cr_assert(strstr(text, "web1/disk2@failover"), "%s", text);
    cr_assert(strstr(text, "committed"), "%s", text);
    qio(&t, "web1/disk2@failover", (const char *const[]){"write -P 0x42 1000 70000", NULL});
    memset(model[2] + 1000, 0x42, 70000);
    check_export(&t, "web1/disk2@failover", model[2], t.m.disks[2].size);
    rc = tt_failover_commit(&t, "web1", false, NULL, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    rc = tt_failover_commit_wait(&t, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);

    /* blocks the point held as zeroes and nobody wrote stayed holes */
    unsigned holes = 0, zero_blocks = 0;
    int ofd = open(ov_path(&t, 0, false), O_RDONLY);
    cr_assert_geq(ofd, 0);
    for (uint64_t b = 0; b * TGT_OV_BLOCK < t.m.disks[0].size; b++) {
        uint64_t start = b * TGT_OV_BLOCK, len = t.m.disks[0].size - start;
        if (len > TGT_OV_BLOCK)
            len = TGT_OV_BLOCK;
        bool zero = true;
        for (uint64_t i = 0; i < len && zero; i++)
            zero = model[0][start + i] == 0;
        if (!zero)
            continue;
        zero_blocks++;
        /* the file system keeps a partial 4 KiB block at the end allocated */
        off_t at = lseek(ofd, (off_t)start, SEEK_DATA);
        holes += at < 0 || (uint64_t)at >= ((start + len) & ~UINT64_C(4095));
    }
    close(ofd);
    cr_assert_eq(holes, zero_blocks, "%u of the %u blocks of zeroes of disk0 were written out", zero_blocks - holes,
                 zero_blocks);
    fprintf(stderr, "disk0: %u blocks of zeroes, left holes\n", zero_blocks);
    for (unsigned d = 0; d < 3; d++)
        free(model[d]);
    free(got);
    tt_fini(&t);
}

Test(target_failover_real, a_stop_during_a_commit_cancels_it, .timeout = 120)
{
    tt_t t;
    tt_init(&t, "tgt-focancel", tt_seed(0xf0a5), 30, 10);
    tt_start(&t);
    uint64_t lp = tt_seq_of(&t, "latest-processed");
    char msg[1024];
    int rc = tt_failover_start(&t, "web1", lp, false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    int stop_rc = -1;
    rc = tt_failover_commit(&t, "web1", true, &stop_rc, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    cr_assert_eq(stop_rc, 0, "the stop: %s", tmt_errname(stop_rc));
    rc = tt_failover_commit_wait(&t, msg, sizeof msg);
    cr_assert_eq(rc, -ECANCELED, "%s: %s", tmt_errname(rc), msg);
    cr_assert(strstr(msg, "the failover was stopped before the commit finished"), "%s", msg);
    cr_assert(!tt_exists(ov_path(&t, 0, true)), "the stop kept the overlays");
    /* nothing is left: a new failover starts, and is the point */
    rc = tt_failover_start(&t, "web1", lp, false, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    tt_convert_and_check(&t, "web1/disk2@failover", 2, lp, "again2.raw");
    /* the exports stop with the failover running: its files stay */
    tt_stop(&t);
    cr_assert(tt_exists(ov_path(&t, 2, true)));
    tt_fini(&t);
}
