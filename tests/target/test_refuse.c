/*
 * What the exports refuse, and that they carry on after: names that are not
 * MACHINE/DISK@SELECTOR, unknown machines and disks, selectors that are not
 * one or name no point (each with the right NBD error and a sentence saying
 * what is wrong), reads past the end, writes, trims and zeroes (read-only).
 * A flipped bit in the journal fails the reads that need the damaged write
 * with EIO, logged with the reader's message, and never returns its bytes.
 * Stopping with reads in flight; starting on a bad or busy address.
 * TIDEMARK_TARGET_SEED picks the workload.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/endian.h"
#include "base/err.h"
#include "journal/format.h"
#include "points/index.h"
#include "tt.h"

typedef struct refusal {
    const char *name;
    uint32_t type;
    const char *says; /* in the message */
} refusal_t;

Test(target_refuse, bad_names_get_the_right_error_and_the_server_carries_on, .timeout = 120)
{
    nbdt_need("qemu-io", "qemu-utils");
    tt_t t;
    tt_init(&t, "tgt-names", tt_seed(0xbad), 30, 10);
    tt_start(&t);
    char late[64];
    snprintf(late, sizeof late, "web1/disk0@%llu", (unsigned long long)(t.m.nops + 1000));
    static const char long_sel[] = "web1/disk0@xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    const refusal_t cases[] = {
        {"web1disk0@latest", NBD_REP_ERR_INVALID, "'web1disk0@latest' is not an export name: use MACHINE/DISK@SELECTOR"},
        {"web1/disk0", NBD_REP_ERR_INVALID, "'web1/disk0' is not an export name"},
        {"", NBD_REP_ERR_INVALID, "'' is not an export name"},
        {"/disk0@latest", NBD_REP_ERR_INVALID, "the machine and the disk are 1 to 63 characters"},
        {"web 1/disk0@latest", NBD_REP_ERR_INVALID, "machine and disk names are made of A-Z a-z 0-9 . _ -"},
        {"nosuch/disk0@latest", NBD_REP_ERR_UNKNOWN, "no machine named 'nosuch' has sent data to this appliance"},
        {"web1/disk9@latest", NBD_REP_ERR_UNKNOWN, "machine web1 has no disk named 'disk9' (its disks: disk0 disk1 disk2)"},
        {"web1/disk0@newest", NBD_REP_ERR_INVALID, "'newest' is not a point selector"},
        {"web1/disk0@@yesterday", NBD_REP_ERR_INVALID, "'yesterday' is not an RFC 3339 time"},
        {"web1/disk0@0", NBD_REP_ERR_INVALID, "is not a point id"},
        {long_sel, NBD_REP_ERR_INVALID, "is not a point selector"},
        {late, NBD_REP_ERR_UNKNOWN, "names no point: machine web1 has no point"},
        {"web1/disk0@@2000-01-01T00:00:00Z", NBD_REP_ERR_UNKNOWN, "web1/disk0@@2000-01-01T00:00:00Z names no point"},
        {"web1/disk0@@2999-01-01T00:00:00Z", NBD_REP_ERR_UNKNOWN, "that instant is in the future"},
    };
    /* all on one connection: a refused NBD_OPT_GO leaves the client haggling */
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[1024];
        uint32_t type = tt_go(fd, cases[i].name, NULL, NULL, msg, sizeof msg);
        cr_assert_eq(type, cases[i].type, "'%s': reply 0x%x, expected 0x%x (%s)", cases[i].name, type,
                     cases[i].type, msg);
        cr_assert(strstr(msg, cases[i].says), "'%s': the message '%s' does not say '%s'", cases[i].name, msg,
                  cases[i].says);
    }
    /* and the same connection still opens a good one */
    uint64_t size = 0;
    char msg[512];
    cr_assert_eq(tt_go(fd, "web1/disk2@latest-processed", &size, NULL, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
    cr_assert_eq(size, t.m.disks[2].size);
    close(fd);

    /* a real client shows the server's sentence */
    char text[8192];
    int rc = NBDT_RUN(text, "qemu-io", "-f", "raw", "-r", tt_uri(&t, "nosuch/disk0@latest"), "-c", "read 0 4k");
    cr_assert_neq(rc, 0, "qemu-io opened an unknown machine:\n%s", text);
    cr_assert(strstr(text, "no machine named 'nosuch'"), "qemu-io said:\n%s", text);

    /* NBD_OPT_EXPORT_NAME has no error reply: the connection is closed */
    fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    nbdt_send_opt(fd, NBD_OPT_EXPORT_NAME, "web1/disk0@nope", 15);
    cr_assert(nbdt_at_eof(fd));
    close(fd);

    rc = NBDT_RUN(text, "qemu-io", "-f", "raw", "-r", tt_uri(&t, "web1/disk0@latest"), "-c", "read 0 4k");
    cr_assert_eq(rc, 0, "the server stopped serving:\n%s", text);
    cr_assert(strstr(text, "read 4096/4096 bytes at offset 0"), "qemu-io said:\n%s", text);
    tt_fini(&t);
}

Test(target_refuse, reads_past_the_end_and_writes_are_refused, .timeout = 120)
{
    nbdt_need("qemu-io", "qemu-utils");
    tt_t t;
    tt_init(&t, "tgt-ro", tt_seed(0x40), 30, 10);
    tt_start(&t);
    uint64_t seq = tt_seq_of(&t, "latest-processed");
    uint64_t size = t.m.disks[0].size;
    uint8_t *want = malloc(size);
    pm_disk_at(&t.m, 0, seq, want);

    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint64_t got = 0;
    uint16_t tflags = 0;
    char msg[512];
    cr_assert_eq(tt_go(fd, "web1/disk0@latest-processed", &got, &tflags, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
    cr_assert_eq(got, size);
    cr_assert(tflags & NBD_FLAG_READ_ONLY, "flags 0x%x", tflags);
    cr_assert_eq(tflags & (NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FLUSH), 0, "flags 0x%x",
                 tflags);

    uint8_t buf[8192];
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, size - 4096, 8192, NULL, buf), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, size, 1, NULL, buf), NBD_EINVAL);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, UINT64_MAX - 100, 512, NULL, buf), NBD_EINVAL);
    memset(buf, 0xab, sizeof buf);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, 0, 4096, buf, NULL), NBD_EPERM);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_TRIM, 0, 4096, NULL, NULL), NBD_EPERM);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE_ZEROES, 0, 4096, NULL, NULL), NBD_EPERM);
    /* the last bytes, and nothing was written */
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, size - 4096, 4096, NULL, buf), 0);
    cr_assert(memcmp(buf, want + size - 4096, 4096) == 0);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, 4096, NULL, buf), 0);
    cr_assert(memcmp(buf, want, 4096) == 0);
    close(fd);

    char text[8192];
    int rc = NBDT_RUN(text, "qemu-io", "-f", "raw", tt_uri(&t, "web1/disk0@latest-processed"), "-c",
                      "write -P 0x55 0 4k");
    cr_assert_neq(rc, 0, "qemu-io wrote to a read-only export:\n%s", text);
    rc = NBDT_RUN(text, "qemu-io", "-f", "raw", "-r", tt_uri(&t, "web1/disk0@latest-processed"), "-c", "read 0 4k");
    cr_assert_eq(rc, 0, "the server stopped serving:\n%s", text);
    free(want);
    tt_fini(&t);
}

Test(target_refuse, a_flipped_bit_fails_the_read_with_eio, .timeout = 120)
{
    nbdt_need("qemu-img", "qemu-utils");
    tt_t t;
    tt_init(&t, "tgt-flip", tt_seed(0xf11b), 30, 10);
    /* the last write of the stream that no later operation touches (its
     * bytes are all on the disk at latest), of noise: stored as sent, so
     * any flipped bit changes what it reads as. (In an LZ4 stream of runs a
     * flip may not: a match offset moved within a run decodes the same.) */
    uint64_t victim = 0;
    for (uint64_t s = t.m.nops; s >= 1 && !victim; s--) {
        const pm_op_t *op = &t.m.ops[s - 1];
        if (op->kind != WIRE_R_WRITE || op->compressible)
            continue;
        bool hidden = false;
        for (uint64_t k = s + 1; k <= t.m.nops && !hidden; k++) {
            const pm_op_t *o = &t.m.ops[k - 1];
            hidden = (o->kind == WIRE_R_WRITE || o->kind == WIRE_R_ZERO || o->kind == WIRE_R_TRIM) &&
                     o->disk == op->disk && o->off < op->off + op->len && op->off < o->off + o->len;
        }
        if (!hidden)
            victim = s;
    }
    cr_assert(victim);
    const pm_op_t *op = &t.m.ops[victim - 1];
    pm_flip_stored_bit(t.p, t.jdir, &t.m, victim);

    tmt_log_capture();
    tt_start(&t);
    uint64_t seq = tt_seq_of(&t, "latest");
    char name[64];
    snprintf(name, sizeof name, "web1/disk%u@latest", op->disk);
    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    char msg[512];
    cr_assert_eq(tt_go(fd, name, NULL, NULL, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
    uint8_t *buf = malloc(op->len > 4096 ? op->len : 4096);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, op->off, op->len, NULL, buf), NBD_EIO,
                 "a read of the damaged write did not fail with EIO");
    /* a piece of it, too: the whole write is verified */
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, op->off, 512, NULL, buf), NBD_EIO);
    /* what it does not cover reads as the model says */
    uint64_t size = t.m.disks[op->disk].size;
    uint8_t *want = malloc(size);
    pm_disk_at(&t.m, op->disk, seq, want);
    if (op->off >= 4096) {
        cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, op->off - 4096, 4096, NULL, buf), 0);
        cr_assert(memcmp(buf, want + op->off - 4096, 4096) == 0);
    }
    close(fd);

    char want_log[256];
    snprintf(want_log, sizeof want_log,
             "target: read of %u bytes at %llu of web1/disk%u at point %llu failed (the client gets EIO): machine "
             "web1 disk disk%u at point %llu: the write at offset %llu",
             op->len, (unsigned long long)op->off, op->disk, (unsigned long long)seq, op->disk,
             (unsigned long long)seq, (unsigned long long)op->off);
    const char *log = tmt_log_text();
    cr_assert(strstr(log, want_log), "no log line starting '%s':\n%s", want_log, log);

    /* qemu-img cannot copy the damaged disk; the others copy whole */
    char text[8192];
    int rc = NBDT_RUN(text, "qemu-img", "convert", "-f", "raw", "-O", "raw", tt_uri(&t, name),
                      tt_path(&t, "damaged.raw"));
    cr_assert_neq(rc, 0, "qemu-img copied a disk with a damaged write:\n%s", text);
    cr_assert(strstr(text, "Input/output error"), "qemu-img said:\n%s", text);
    for (unsigned d = 0; d < t.m.ndisks; d++) {
        if (d == op->disk)
            continue;
        snprintf(name, sizeof name, "web1/disk%u@latest", d);
        tt_convert_and_check(&t, name, d, seq, "other.raw");
    }
    free(want);
    free(buf);
    tt_fini(&t);
}

Test(target_refuse, stop_with_reads_in_flight, .timeout = 120)
{
    tt_t t;
    tt_init(&t, "tgt-stop", tt_seed(0x5709), 30, 10);
    tt_start(&t);
    int fds[4];
    for (unsigned c = 0; c < 4; c++) {
        fds[c] = nbdt_connect(t.port);
        nbdt_handshake(fds[c], NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
        char msg[512], name[64];
        snprintf(name, sizeof name, "web1/disk%u@latest-processed", c % 3);
        cr_assert_eq(tt_go(fds[c], name, NULL, NULL, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
        for (uint64_t h = 0; h < 48; h++)
            nbdt_send_req(fds[c], 0, NBD_CMD_READ, h, (h * 65536) % (512 * 1024), 256 * 1024);
    }
    /* one more connection in the middle of opening */
    int half = nbdt_connect(t.port);
    nbdt_handshake(half, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint8_t data[128];
    size_t dl = nbdt_go_data(data, "web1/disk1@latest", NULL, 0);
    nbdt_send_opt(half, NBD_OPT_GO, data, (uint32_t)dl);
    tt_stop(&t); /* asserts every handle closed */
    for (unsigned c = 0; c < 4; c++)
        close(fds[c]);
    close(half);
    /* every pin was given back: retention may fold up to the newest point */
    cr_assert_eq(pts_retain(t.p, tm_now_ns() + 40ull * 24 * 3600 * 1000000000ull), 0);
    pts_machine_t pm;
    cr_assert_eq(pts_machine(t.p, "web1", &pm), 0);
    cr_assert_eq(pm.first_seq, pm.latest.seq, "horizon %llu, newest point %llu", (unsigned long long)pm.first_seq,
                 (unsigned long long)pm.latest.seq);
    tt_fini(&t);
}

Test(target_refuse, start_fails_cleanly_on_a_bad_or_busy_address, .timeout = 60)
{
    tt_t t;
    tt_init(&t, "tgt-start", tt_seed(0x57a7), 2, 4);
    tt_start(&t);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    tgt_exports_t *x = NULL;
    char err[256];
    int rc = tgt_exports_start(&loop, t.p, t.j, "nowhere:10809", &x, err, sizeof err);
    cr_assert_eq(rc, TM_EINVAL);
    cr_assert_null(x);
    cr_assert(strstr(err, "'nowhere:10809' is not an address to listen on for NBD"), "%s", err);
    char busy[64];
    snprintf(busy, sizeof busy, "127.0.0.1:%d", t.port);
    rc = tgt_exports_start(&loop, t.p, t.j, busy, &x, err, sizeof err);
    cr_assert_eq(rc, -EADDRINUSE, "%s", tmt_errname(rc));
    cr_assert_null(x);
    cr_assert(strstr(err, "cannot listen for NBD on "), "%s", err);
    /* what was made closes on the loop's next run */
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    tt_fini(&t);
}
