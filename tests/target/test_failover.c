/*
 * Test failover: MACHINE/DISK@test writable over a copy-on-write overlay on
 * top of one point. Written with qemu-io, read back with qemu-img and
 * compared with the model at the point plus the writes; the point itself
 * (web1/DISK@ID) never changes; cleanup removes the overlays and @test is
 * refused after; one test per machine; writes past the end refused; stop
 * with a test running removes its overlays. TIDEMARK_TARGET_SEED picks the
 * workload.
 */
#include <criterion/criterion.h>
#include <errno.h>
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

static bool tt_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* qemu-io -c CMD on name, asserting it succeeds; its output in text. */
static void qio(tt_t *t, const char *name, const char *cmd, char *text, size_t len)
{
    int rc = nbdt_run(text, len, (const char *const[]){"qemu-io", "-f", "raw", tt_uri(t, name), "-c", cmd, NULL});
    cr_assert_eq(rc, 0, "qemu-io -c '%s' %s exited %d:\n%s", cmd, name, rc, text);
    cr_assert_null(strstr(text, "failed"), "qemu-io -c '%s' %s:\n%s", cmd, name, text);
}

Test(target_failover, writes_go_to_the_overlay_and_never_to_the_point, .timeout = 240)
{
    nbdt_need("qemu-io", "qemu-utils");
    nbdt_need("qemu-img", "qemu-utils");
    tt_t t;
    tt_init(&t, "tgt-tf", tt_seed(0x7e57), 60, 12);
    tt_start(&t);
    uint64_t mid = tt_middle_point(&t);
    uint64_t lp = tt_seq_of(&t, "latest-processed");
    pts_point_t *before;
    size_t nbefore;
    cr_assert_eq(pts_points(t.p, "web1", NULL, &before, &nbefore), 0);

    char id[32], msg[1024];
    snprintf(id, sizeof id, "%llu", (unsigned long long)mid);
    uint64_t seq = 0;
    int rc = tt_test_start(&t, "web1", id, &seq, msg, sizeof msg);
    cr_assert_eq(rc, 0, "tt_test_start: %s: %s", tmt_errname(rc), msg);
    cr_assert_eq(seq, mid);
    for (unsigned d = 0; d < t.m.ndisks; d++) {
        char rel[64];
        snprintf(rel, sizeof rel, "test/web1/disk%u.overlay", d);
        cr_assert(tt_exists(tt_path(&t, rel)), "no %s", rel);
        cr_assert_eq(tmt_file_size(tt_path(&t, rel)), (off_t)t.m.disks[d].size);
    }

    /* one test per machine */
    rc = tt_test_start(&t, "web1", "latest-processed", NULL, msg, sizeof msg);
    cr_assert_eq(rc, -EBUSY, "second start: %s", tmt_errname(rc));
    char want[256];
    snprintf(want, sizeof want, "a test failover of web1 is already running at point %llu (selector %s)",
             (unsigned long long)mid, id);
    cr_assert(strstr(msg, want), "'%s' does not say '%s'", msg, want);

    /* writes: inside one block, across blocks at odd places, zeroes, a
     * trim of whole blocks, then a flush */
    uint64_t size = t.m.disks[1].size;
    cr_assert_geq(size, 3u << 20);
    uint8_t *model = malloc(size);
    cr_assert(model);
    pm_disk_at(&t.m, 1, mid, model);
    static char text[16384];
    struct {
        const char *cmd;
        uint64_t off, len;
        int fill; /* -1: zeroes by trim */
    } w[] = {
        {"write -P 0xab 4096 8192", 4096, 8192, 0xab},
        {"write -P 0xcd 100001 70000", 100001, 70000, 0xcd},
        {"write -P 0x5a 1048576 131072", 1048576, 131072, 0x5a},
        {"write -z 2500000 200000", 2500000, 200000, 0},
        {"discard 2097152 131072", 2097152, 131072, -1},
        {"write -P 0x77 2100000 1000", 2100000, 1000, 0x77},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        qio(&t, "web1/disk1@test", w[i].cmd, text, sizeof text);
        memset(model + w[i].off, w[i].fill < 0 ? 0 : w[i].fill, w[i].len);
    }
    qio(&t, "web1/disk1@test", "flush", text, sizeof text);
    qio(&t, "web1/disk1@test", "read -P 0xab 4096 8192", text, sizeof text);
    /* a write past the end: qemu-io refuses it or the server does */
    char past[64];
    snprintf(past, sizeof past, "write -P 2 %llu 8192", (unsigned long long)(size - 4096));
    rc = NBDT_RUN(text, "qemu-io", "-f", "raw", tt_uri(&t, "web1/disk1@test"), "-c", "write -P 1 0 8192", "-c", past);
    cr_assert(rc != 0 || strstr(text, "failed") || strstr(text, "rror"), "a write past the end:\n%s", text);

    /* the write at 0 of that qemu-io went through; then read back the
     * written and the unwritten regions */
    memset(model, 1, 8192);
    memset(model + 4096, 0xab, 4096);
    qio(&t, "web1/disk1@test", "write -P 0xab 4096 4096", text, sizeof text);
    const char *out = tt_path(&t, "test1.raw");
    rc = NBDT_RUN(text, "qemu-img", "convert", "-f", "raw", "-O", "raw", tt_uri(&t, "web1/disk1@test"), out);
    cr_assert_eq(rc, 0, "qemu-img convert exited %d:\n%s", rc, text);
    cr_assert_eq((uint64_t)tmt_file_size(out), size);
    uint8_t *got = malloc(size);
    tmt_file_read(out, 0, got, size);
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != model[i])
            cr_assert_fail("web1/disk1@test differs from the point plus the writes at byte %llu: %02x, not %02x "
                           "(seed %#llx)",
                           (unsigned long long)i, got[i], model[i], (unsigned long long)t.m.seed);

    /* an unwritten disk reads as the point */
    tt_convert_and_check(&t, "web1/disk0@test", 0, mid, "test0.raw");
    /* the point itself is unchanged, and so is the catalog */
    char name[64];
    snprintf(name, sizeof name, "web1/disk1@%llu", (unsigned long long)mid);
    tt_convert_and_check(&t, name, 1, mid, "point1.raw");
    cr_assert_eq(tt_seq_of(&t, "latest-processed"), lp);
    pts_point_t *after;
    size_t nafter;
    cr_assert_eq(pts_points(t.p, "web1", NULL, &after, &nafter), 0);
    cr_assert_eq(nafter, nbefore);
    for (size_t i = 0; i < nafter; i++)
        cr_assert_eq(after[i].seq, before[i].seq);

    /* cleanup: overlays gone, @test refused, a second cleanup has nothing */
    rc = tt_test_cleanup(&t, "web1", msg, sizeof msg);
    cr_assert_eq(rc, 0, "cleanup: %s: %s", tmt_errname(rc), msg);
    cr_assert(!tt_exists(tt_path(&t, "test/web1/disk0.overlay")));
    cr_assert(!tt_exists(tt_path(&t, "test/web1")), "the machine's overlay folder is left");
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint32_t type = tt_go(fd, "web1/disk0@test", NULL, NULL, msg, sizeof msg);
    cr_assert_eq(type, NBD_REP_ERR_UNKNOWN, "reply 0x%x: %s", type, msg);
    cr_assert(strstr(msg, "no test failover of machine web1 is running"), "%s", msg);
    close(fd);
    rc = NBDT_RUN(text, "qemu-io", "-f", "raw", "-r", tt_uri(&t, "web1/disk0@test"), "-c", "read 0 4k");
    cr_assert_neq(rc, 0, "qemu-io opened @test after cleanup:\n%s", text);
    cr_assert(strstr(text, "no test failover of machine web1 is running"), "qemu-io said:\n%s", text);
    rc = tt_test_cleanup(&t, "web1", msg, sizeof msg);
    cr_assert_eq(rc, TM_ENOTFOUND, "%s", tmt_errname(rc));
    cr_assert(strstr(msg, "no test failover of web1 is running"), "%s", msg);

    /* a new test starts from the point again, without the old writes */
    rc = tt_test_start(&t, "web1", id, &seq, msg, sizeof msg);
    cr_assert_eq(rc, 0, "restart: %s: %s", tmt_errname(rc), msg);
    tt_convert_and_check(&t, "web1/disk1@test", 1, mid, "again1.raw");
    cr_assert_eq(tt_test_cleanup(&t, "web1", msg, sizeof msg), 0, "%s", msg);
    free(got);
    free(model);
    tm_free(before);
    tm_free(after);
    tt_fini(&t);
}

Test(target_failover, raw_client_flags_bounds_and_cleanup_under_a_connection, .timeout = 120)
{
    tt_t t;
    tt_init(&t, "tgt-tfraw", tt_seed(0x7e58), 30, 10);
    tt_start(&t);
    char msg[1024];
    uint64_t seq = 0;
    int rc = tt_test_start(&t, "web1", "latest", &seq, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    cr_assert_eq(seq, t.m.nops);
    uint64_t size = t.m.disks[2].size;
    uint8_t *model = malloc(size);
    pm_disk_at(&t.m, 2, seq, model);

    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint64_t got = 0;
    uint16_t tflags = 0;
    cr_assert_eq(tt_go(fd, "web1/disk2@test", &got, &tflags, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
    cr_assert_eq(got, size);
    cr_assert_eq(tflags & NBD_FLAG_READ_ONLY, 0, "flags 0x%x", tflags);
    cr_assert_eq(tflags & NBD_FLAG_CAN_MULTI_CONN, 0, "flags 0x%x", tflags);
    uint16_t need = NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
    cr_assert_eq(tflags & need, need, "flags 0x%x", tflags);

    /* past the end: refused, and the connection goes on */
    uint8_t buf[3 * TGT_OV_BLOCK];
    memset(buf, 0x3c, sizeof buf);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, size - 4096, 8192, buf, NULL), NBD_ENOSPC);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, size, 1, buf, NULL), NBD_ENOSPC);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE_ZEROES, size - 1, 2, NULL, NULL), NBD_ENOSPC);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, size - 1, 2, NULL, buf), NBD_EINVAL);

    /* the last bytes of the disk (a partial block when the size is not a
     * multiple), with FUA; then a read across the written and the unwritten */
    cr_assert_eq(nbdt_roundtrip(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, size - 100, 100, buf, NULL), 0);
    memset(model + size - 100, 0x3c, 100);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, TGT_OV_BLOCK - 10, 20, buf, NULL), 0);
    memset(model + TGT_OV_BLOCK - 10, 0x3c, 20);
    cr_assert_eq(nbdt_roundtrip(fd, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE_ZEROES, 5, 10, NULL, NULL), 0);
    memset(model + 5, 0, 10);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_FLUSH, 0, 0, NULL, NULL), 0);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, sizeof buf, NULL, buf), 0);
    cr_assert(memcmp(buf, model, sizeof buf) == 0, "the first blocks differ from the point plus the writes");
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, size - sizeof buf, sizeof buf, NULL, buf), 0);
    cr_assert(memcmp(buf, model + size - sizeof buf, sizeof buf) == 0, "the last blocks differ");

    /* cleanup with the connection open: the server closes it (the export
     * is gone), so nothing more can be written to the dropped overlay */
    cr_assert_eq(tt_test_cleanup(&t, "web1", msg, sizeof msg), 0, "%s", msg);
    cr_assert(!tt_exists(tt_path(&t, "test/web1/disk2.overlay")));
    cr_assert(nbdt_at_eof(fd), "the connection to @test stayed open after clean-up");
    close(fd);
    /* and a new test may start at once */
    rc = tt_test_start(&t, "web1", "latest-processed", &seq, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);

    /* stop with the test running: its overlays are removed */
    cr_assert(tt_exists(tt_path(&t, "test/web1/disk0.overlay")));
    tt_stop(&t);
    cr_assert(!tt_exists(tt_path(&t, "test/web1/disk0.overlay")));
    cr_assert(!tt_exists(tt_path(&t, "test/web1")));
    free(model);
    tt_fini(&t);
}

Test(target_failover, starts_that_fail_say_why_and_leave_nothing, .timeout = 120)
{
    tt_t t;
    tt_init(&t, "tgt-tfbad", tt_seed(0x7e59), 20, 8);
    tt_start(&t);
    char msg[1024];
    int rc = tt_test_start(&t, "nosuch", "latest-processed", NULL, msg, sizeof msg);
    cr_assert_eq(rc, TM_ENOTFOUND, "%s: %s", tmt_errname(rc), msg);
    cr_assert(strstr(msg, "test failover of nosuch"), "%s", msg);
    char late[32];
    snprintf(late, sizeof late, "%llu", (unsigned long long)(t.m.nops + 1000));
    rc = tt_test_start(&t, "web1", late, NULL, msg, sizeof msg);
    cr_assert_eq(rc, TM_ENOPOINT, "%s: %s", tmt_errname(rc), msg);
    cr_assert(strstr(msg, "has no point"), "%s", msg);
    rc = tt_test_start(&t, "web1", "newest", NULL, msg, sizeof msg);
    cr_assert_eq(rc, TM_EINVAL, "%s: %s", tmt_errname(rc), msg);
    cr_assert(strstr(msg, "'newest' is not a point selector"), "%s", msg);
    rc = tt_test_start(&t, "web 1", "latest", NULL, msg, sizeof msg);
    cr_assert_eq(rc, TM_EINVAL, "%s: %s", tmt_errname(rc), msg);
    cr_assert(!tt_exists(tt_path(&t, "test/web1")), "a failed start left its folder");
    /* nothing left registered: a good start works, and opens */
    uint64_t seq;
    rc = tt_test_start(&t, "web1", "latest-processed", &seq, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint32_t type = tt_go(fd, "web1/disk9@test", NULL, NULL, msg, sizeof msg);
    cr_assert_eq(type, NBD_REP_ERR_UNKNOWN, "0x%x %s", type, msg);
    cr_assert(strstr(msg, "the test failover of web1 has no disk named 'disk9' (its disks: disk0 disk1 disk2)"), "%s",
              msg);
    type = tt_go(fd, "db2/disk0@test", NULL, NULL, msg, sizeof msg);
    cr_assert_eq(type, NBD_REP_ERR_UNKNOWN, "0x%x %s", type, msg);
    cr_assert(strstr(msg, "no test failover of machine db2 is running"), "%s", msg);
    close(fd);
    tt_fini(&t);
}

/* Up to 64 writes in flight on one connection, in disjoint ranges that share
 * overlay blocks (so partial-block copies from the point run side by side),
 * then the whole disk read back and compared, and
 * the exports stopped with the connection and the test still open. */
Test(target_failover, pipelined_writes_sharing_blocks, .timeout = 120)
{
    tt_t t;
    tt_init(&t, "tgt-tfpipe", tt_seed(0x7e5a), 40, 12);
    tt_start(&t);
    char msg[1024];
    uint64_t seq;
    int rc = tt_test_start(&t, "web1", "latest-processed", &seq, msg, sizeof msg);
    cr_assert_eq(rc, 0, "%s: %s", tmt_errname(rc), msg);
    uint64_t size = t.m.disks[0].size;
    uint8_t *model = malloc(size), *point = malloc(size);
    cr_assert(model && point);
    pm_disk_at(&t.m, 0, seq, model);
    memcpy(point, model, size);

    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    cr_assert_eq(tt_go(fd, "web1/disk0@test", NULL, NULL, msg, sizeof msg), NBD_REP_ACK, "%s", msg);

    enum { N = 64 };
    tmt_rng_t rng;
    tmt_rng_seed(&rng, t.m.seed);
    /* N disjoint ranges: cut [0, size) at 2N sorted points, keep every other piece */
    uint64_t cut[2 * N];
    for (unsigned i = 0; i < 2 * N; i++)
        cut[i] = tmt_rng_range(&rng, 0, size - 1);
    for (unsigned i = 1; i < 2 * N; i++)
        for (unsigned k = i; k > 0 && cut[k - 1] > cut[k]; k--) {
            uint64_t c = cut[k];
            cut[k] = cut[k - 1];
            cut[k - 1] = c;
        }
    static uint8_t data[N][256 * 1024];
    uint64_t off[N];
    uint32_t len[N];
    unsigned nw = 0;
    for (unsigned i = 0; i < N; i++) {
        uint64_t a = cut[2 * i], b = cut[2 * i + 1];
        if (b - a > sizeof data[0])
            b = a + sizeof data[0];
        if (b == a)
            continue;
        off[nw] = a;
        len[nw] = (uint32_t)(b - a);
        for (uint32_t k = 0; k < len[nw]; k++)
            data[nw][k] = (uint8_t)tmt_rng_range(&rng, 0, 255);
        memcpy(model + a, data[nw], len[nw]);
        nw++;
    }
    /* all the writes at once, then their replies in any order */
    uint8_t hdr[28];
    for (unsigned i = 0; i < nw; i++) {
        tm_put_be32(hdr, NBD_REQUEST_MAGIC);
        tm_put_be16(hdr + 4, 0);
        tm_put_be16(hdr + 6, NBD_CMD_WRITE);
        tm_put_be64(hdr + 8, i);
        tm_put_be64(hdr + 16, off[i]);
        tm_put_be32(hdr + 24, len[i]);
        nbdt_send(fd, hdr, sizeof hdr);
        nbdt_send(fd, data[i], len[i]);
    }
    for (unsigned k = 0; k < nw; k++) {
        uint32_t err;
        uint64_t h;
        cr_assert(nbdt_recv_reply(fd, &err, &h));
        cr_assert_lt(h, nw);
        cr_assert_eq(err, 0, "write %llu at %llu+%u failed: %u", (unsigned long long)h, (unsigned long long)off[h],
                     len[h], err);
    }
    uint8_t *got = malloc(size);
    for (uint64_t o = 0; o < size; o += 1u << 20) {
        uint32_t l = size - o < (1u << 20) ? (uint32_t)(size - o) : 1u << 20;
        cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, o, l, NULL, got + o), 0);
    }
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != model[i])
            cr_assert_fail("byte %llu: %02x, not %02x (seed %#llx)", (unsigned long long)i, got[i], model[i],
                           (unsigned long long)t.m.seed);
    /* the point under it is as it was */
    char name[64];
    snprintf(name, sizeof name, "web1/disk0@%llu", (unsigned long long)seq);
    int fd2 = nbdt_connect(t.port);
    nbdt_handshake(fd2, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    cr_assert_eq(tt_go(fd2, name, NULL, NULL, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
    for (uint64_t o = 0; o < size; o += 1u << 20) {
        uint32_t l = size - o < (1u << 20) ? (uint32_t)(size - o) : 1u << 20;
        cr_assert_eq(nbdt_roundtrip(fd2, 0, NBD_CMD_READ, o, l, NULL, got + o), 0);
    }
    cr_assert(memcmp(got, point, size) == 0, "the point changed");
    close(fd2);

    /* stop with the connection and the test open */
    tt_stop(&t);
    cr_assert(!tt_exists(tt_path(&t, "test/web1/disk0.overlay")));
    close(fd);
    free(got);
    free(model);
    free(point);
    tt_fini(&t);
}
