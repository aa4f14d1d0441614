/*
 * Disks at points served over NBD, read by real clients (qemu-img, qemu-io,
 * nbdcopy, nbdinfo) and compared with the reference model byte for byte:
 * every selector kind, the listing, many clients and many exports at once,
 * and a raw client with many reads in flight. TIDEMARK_TARGET_SEED picks
 * the workload.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/endian.h"
#include "base/mem.h"
#include "tt.h"

Test(target_export, every_selector_reads_as_the_model_says, .timeout = 240)
{
    nbdt_need("qemu-img", "qemu-utils");
    tt_t t;
    tt_init(&t, "tgt-sel", tt_seed(0x7a76e7), 60, 12);
    tt_start(&t);

    /* latest: processes everything and cuts a point at the end */
    tt_convert_and_check(&t, "web1/disk0@latest", 0, t.m.nops, "latest.raw");
    tt_convert_and_check(&t, "web1/disk1@latest-processed", 1, tt_seq_of(&t, "latest-processed"), "lp.raw");

    /* a point id from the middle of the catalog, on every disk */
    uint64_t mid = tt_middle_point(&t);
    char name[128], out[64];
    for (unsigned d = 0; d < t.m.ndisks; d++) {
        snprintf(name, sizeof name, "web1/disk%u@%llu", d, (unsigned long long)mid);
        snprintf(out, sizeof out, "id%u.raw", d);
        tt_convert_and_check(&t, name, d, mid, out);
    }

    /* @TIME: the last batch received by then, at a few instants */
    for (size_t b = 3; b < t.m.nbatches; b += 23) {
        char sel[64];
        tt_time_selector(&t, b, sel, sizeof sel);
        snprintf(name, sizeof name, "web1/disk2@%s", sel);
        snprintf(out, sizeof out, "time%zu.raw", b);
        tt_convert_and_check(&t, name, 2, t.m.batches[b].last_seq, out);
    }

    /* latest-app, when the workload tagged one */
    uint64_t app = 0;
    for (uint64_t s = 1; s <= t.m.nops; s++)
        if (t.m.ops[s - 1].kind == WIRE_R_TAG)
            app = s;
    if (app)
        tt_convert_and_check(&t, "web1/disk1@latest-app", 1, app, "app.raw");

    /* nbdcopy as well, over its several connections */
    nbdt_need("nbdcopy", "libnbd-bin");
    char text[4096];
    snprintf(name, sizeof name, "web1/disk1@%llu", (unsigned long long)mid);
    const char *path = tt_path(&t, "copy.raw");
    int rc = NBDT_RUN(text, "nbdcopy", tt_uri(&t, name), path);
    cr_assert_eq(rc, 0, "nbdcopy exited %d:\n%s", rc, text);
    tt_assert_disk_file(&t, path, 1, mid);
    tt_fini(&t);
}

Test(target_export, listing_names_each_disk_of_each_machine_with_a_point, .timeout = 120)
{
    nbdt_need("nbdinfo", "libnbd-bin");
    tt_t t;
    tt_init(&t, "tgt-list", tt_seed(0x11575), 30, 10);
    /* a second machine that announced its disks and sent nothing: not listed */
    pm_t quiet;
    pm_init(&quiet, 1, "db2", 0, TT_STEP_NS);
    pm_append_disks(&quiet, t.j);
    cr_assert_eq(pts_sync(t.p, 30000), 0);
    bool has_app = false;
    for (uint64_t s = 1; s <= t.m.nops; s++)
        has_app |= t.m.ops[s - 1].kind == WIRE_R_TAG;
    tt_start(&t);

    static char text[65536];
    int rc = NBDT_RUN(text, "nbdinfo", "--list", tt_uri(&t, ""));
    cr_assert_eq(rc, 0, "nbdinfo --list exited %d:\n%s", rc, text);
    uint64_t lp = tt_seq_of(&t, "latest-processed");
    for (unsigned d = 0; d < t.m.ndisks; d++) {
        char want[128];
        snprintf(want, sizeof want, "export=\"web1/disk%u@latest-processed\"", d);
        cr_assert(strstr(text, want), "'%s' is not in the listing:\n%s", want, text);
        snprintf(want, sizeof want, "description: machine web1 disk disk%u (%llu bytes) at its newest processed point, now %llu",
                 d, (unsigned long long)t.m.disks[d].size, (unsigned long long)lp);
        cr_assert(strstr(text, want), "'%s' is not in the listing:\n%s", want, text);
        snprintf(want, sizeof want, "export=\"web1/disk%u@latest-app\"", d);
        cr_assert_eq(strstr(text, want) != NULL, has_app, "'%s' listed: %d, app point: %d:\n%s", want,
                     strstr(text, want) != NULL, has_app, text);
    }
    cr_assert_null(strstr(text, "db2"), "a machine without a point is listed:\n%s", text);
    /* nbdinfo opened every listed export to show its size */
    char size[64];
    snprintf(size, sizeof size, "export-size: %llu", (unsigned long long)t.m.disks[2].size);
    cr_assert(strstr(text, size), "'%s' is not in the listing:\n%s", size, text);
    /* listing opened them as latest-processed: no point was cut */
    cr_assert_eq(tt_seq_of(&t, "latest-processed"), lp);
    pm_free(&quiet);
    tt_fini(&t);
}

Test(target_export, many_clients_and_exports_at_once, .timeout = 240)
{
    nbdt_need("qemu-img", "qemu-utils");
    nbdt_need("nbdcopy", "libnbd-bin");
    tt_t t;
    tt_init(&t, "tgt-many", tt_seed(0x3a4e), 60, 12);
    tt_start(&t);
    pts_point_t *all;
    size_t npts;
    cr_assert_eq(pts_points(t.p, "web1", NULL, &all, &npts), 0);
    cr_assert_geq(npts, 4);

    /* twelve clients at once: three disks at four points, one of them
     * opened by several clients (a shared export) */
    enum { N = 12 };
    nbdt_proc_t procs[N];
    unsigned disk[N];
    uint64_t seq[N];
    char paths[N][PATH_MAX];
    for (unsigned i = 0; i < N; i++) {
        disk[i] = i % 3;
        seq[i] = all[(i / 3) % npts].seq;
        if (i >= 9)
            seq[i] = all[0].seq, disk[i] = 0;
        char name[96], rel[32];
        snprintf(name, sizeof name, "web1/disk%u@%llu", disk[i], (unsigned long long)seq[i]);
        snprintf(rel, sizeof rel, "many%u.raw", i);
        snprintf(paths[i], sizeof paths[i], "%s", tt_path(&t, rel));
        if (i % 2)
            nbdt_spawn(&procs[i], (const char *const[]){"nbdcopy", tt_uri(&t, name), paths[i], NULL});
        else
            nbdt_spawn(&procs[i], (const char *const[]){"qemu-img", "convert", "-f", "raw", "-O", "raw",
                                                         tt_uri(&t, name), paths[i], NULL});
    }
    for (unsigned i = 0; i < N; i++) {
        char text[4096];
        int rc = nbdt_wait(&procs[i], text, sizeof text);
        cr_assert_eq(rc, 0, "client %u exited %d:\n%s", i, rc, text);
    }
    for (unsigned i = 0; i < N; i++)
        tt_assert_disk_file(&t, paths[i], disk[i], seq[i]);
    tm_free(all);
    tt_fini(&t);
}

/* 64 reads in flight on one connection, of random sizes and places
 * (crossing chunk boundaries), answered in any order, each compared. */
Test(target_export, pipelined_reads_on_one_connection, .timeout = 120)
{
    tt_t t;
    tt_init(&t, "tgt-pipe", tt_seed(0x919e), 40, 12);
    tt_start(&t);
    uint64_t seq = tt_seq_of(&t, "latest-processed");
    uint64_t size = t.m.disks[1].size;
    uint8_t *want = malloc(size);
    cr_assert(want);
    pm_disk_at(&t.m, 1, seq, want);

    int fd = nbdt_connect(t.port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    uint64_t got_size = 0;
    uint16_t tflags = 0;
    char msg[512];
    cr_assert_eq(tt_go(fd, "web1/disk1@latest-processed", &got_size, &tflags, msg, sizeof msg), NBD_REP_ACK, "%s", msg);
    cr_assert_eq(got_size, size);
    cr_assert(tflags & NBD_FLAG_READ_ONLY);

    enum { N = 64 };
    uint64_t off[N];
    uint32_t len[N];
    tmt_rng_t rng;
    tmt_rng_seed(&rng, t.m.seed);
    for (unsigned i = 0; i < N; i++) {
        len[i] = (uint32_t)tmt_rng_range(&rng, 1, 300 * 1024);
        off[i] = tmt_rng_range(&rng, 0, size - len[i]);
        nbdt_send_req(fd, 0, NBD_CMD_READ, i, off[i], len[i]);
    }
    uint8_t *buf = malloc(300 * 1024);
    bool seen[N] = {false};
    for (unsigned k = 0; k < N; k++) {
        uint32_t err;
        uint64_t h;
        cr_assert(nbdt_recv_reply(fd, &err, &h));
        cr_assert_lt(h, N);
        cr_assert(!seen[h], "two replies to read %llu", (unsigned long long)h);
        seen[h] = true;
        cr_assert_eq(err, 0, "read %llu at %llu+%u failed: %u", (unsigned long long)h, (unsigned long long)off[h],
                     len[h], err);
        cr_assert(nbdt_recv(fd, buf, len[h]));
        cr_assert(memcmp(buf, want + off[h], len[h]) == 0, "read at %llu+%u differs from the model",
                  (unsigned long long)off[h], len[h]);
    }
    nbdt_send_req(fd, 0, NBD_CMD_DISC, 0, 0, 0);
    cr_assert(nbdt_at_eof(fd));
    close(fd);
    free(buf);
    free(want);
    tt_fini(&t);
}
