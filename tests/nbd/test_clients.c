/*
 * The NBD server against real clients from Debian packages: qemu-io and
 * qemu-img (qemu-utils), nbdinfo and nbdcopy (libnbd-bin), each run as a
 * child process and waited for. The server runs on a thread of the test over
 * the file backend; what the clients did is checked in the backing files.
 */
#include <string.h>

#include "nbdt.h"

#define MiB (1u << 20)

static char out[64 << 10];

static void need_qemu(void)
{
    nbdt_need("qemu-io", "qemu-utils");
    nbdt_need("qemu-img", "qemu-utils");
}

static void need_libnbd(void)
{
    nbdt_need("nbdinfo", "libnbd-bin");
    nbdt_need("nbdcopy", "libnbd-bin");
}

#define assert_has(text, needle)                                                                              \
    cr_assert(strstr((text), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle), (text))

Test(clients, qemu_io_write_then_read, .timeout = 60)
{
    need_qemu();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-qemu-io");
    const char *img = nbdt_image(&t, "disk0", 8 * MiB, 0, false);
    nbdt_start(&t);

    int rc = NBDT_RUN(out, "qemu-io", "-f", "raw", nbdt_uri(&t, "disk0"), "-c", "write -P 0xab 0 64k", "-c",
                      "read -P 0xab 0 64k", "-c", "write -P 0x11 5M 1M", "-c", "read -P 0x11 5M 1M");
    cr_assert_eq(rc, 0, "qemu-io exited %d:\n%s", rc, out);
    assert_has(out, "wrote 65536/65536 bytes at offset 0");
    assert_has(out, "read 65536/65536 bytes at offset 0");
    assert_has(out, "read 1048576/1048576 bytes at offset 5242880");
    cr_assert(strstr(out, "Pattern verification failed") == NULL, "%s", out);

    /* The writes are in the backing file, and nothing else changed. */
    cr_assert(nbdt_file_all(img, 0, 64 << 10, 0xab));
    cr_assert(nbdt_file_all(img, 64 << 10, 64 << 10, 0));
    cr_assert(nbdt_file_all(img, 5 * MiB, MiB, 0x11));
    cr_assert(nbdt_file_all(img, 6 * MiB, 2 * MiB, 0));
    cr_assert_eq(tmt_file_size(img), 8 * MiB);
    nbdt_stop(&t);
    cr_assert_eq(t.stats.conns_dropped, 0);
    cr_assert_eq(t.stats.request_errors, 0);
    cr_assert_geq(t.stats.bytes_written, (64u << 10) + MiB);
}

Test(clients, qemu_img_convert_reads_every_byte, .timeout = 60)
{
    need_qemu();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-convert");
    const char *src = nbdt_image(&t, "src", 16 * MiB, 0x5eed, true);
    /* Names as the appliance makes them: slashes and '@'. */
    const char *src2 = nbdt_image(&t, "web1/disk0@latest", 3 * MiB, 0xd15c, true);
    nbdt_start(&t);

    int rc = NBDT_RUN(out, "qemu-img", "convert", "-f", "raw", "-O", "raw", nbdt_uri(&t, "src"),
                      nbdt_path(&t, "out.img"));
    cr_assert_eq(rc, 0, "qemu-img exited %d:\n%s", rc, out);
    cr_assert(nbdt_files_equal(src, nbdt_path(&t, "out.img")), "the converted image differs from the export");

    rc = NBDT_RUN(out, "qemu-img", "convert", "-f", "raw", "-O", "raw", nbdt_uri(&t, "web1/disk0@latest"),
                  nbdt_path(&t, "out2.img"));
    cr_assert_eq(rc, 0, "qemu-img exited %d:\n%s", rc, out);
    cr_assert(nbdt_files_equal(src2, nbdt_path(&t, "out2.img")));
    nbdt_stop(&t);
}

Test(clients, qemu_img_convert_writes_an_export, .timeout = 60)
{
    need_qemu();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-convert-in");
    const char *dst = nbdt_image(&t, "dst", 8 * MiB, 0x1234, false);
    nbdt_start(&t);

    /* A source with data, a zero run and a hole, so that qemu-img uses
     * WRITE and WRITE_ZEROES both. */
    const char *in = nbdt_path(&t, "in.img");
    tmt_file_create(in, 8 * MiB);
    static uint8_t buf[2 * MiB];
    nbdt_expected(buf, 0, sizeof buf, 8 * MiB, 0xabcd);
    tmt_file_write(in, 0, buf, sizeof buf);
    tmt_file_write(in, 5 * MiB, buf, MiB);

    int rc = NBDT_RUN(out, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", in, nbdt_uri(&t, "dst"));
    cr_assert_eq(rc, 0, "qemu-img exited %d:\n%s", rc, out);
    cr_assert(nbdt_files_equal(in, dst), "the export's file differs from what qemu-img wrote");
    nbdt_stop(&t);
}

Test(clients, nbdinfo_lists_every_export, .timeout = 60)
{
    need_libnbd();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-list");
    nbdt_image(&t, "alpha", MiB, 0, false);
    nbdt_image(&t, "beta", 2 * MiB, 0, true);
    nbdt_image(&t, "web1/disk0@latest", 3 * MiB, 0, true);
    nbdt_start(&t);

    int rc = NBDT_RUN(out, "nbdinfo", "--list", nbdt_uri(&t, NULL));
    cr_assert_eq(rc, 0, "nbdinfo --list exited %d:\n%s", rc, out);
    assert_has(out, "export=\"alpha\":\n\texport-size: 1048576");
    assert_has(out, "export=\"beta\":\n\texport-size: 2097152");
    assert_has(out, "export=\"web1/disk0@latest\":\n\texport-size: 3145728");

    rc = NBDT_RUN(out, "nbdinfo", "--list", "--json", nbdt_uri(&t, NULL));
    cr_assert_eq(rc, 0, "nbdinfo --list --json exited %d:\n%s", rc, out);
    assert_has(out, "\"export-name\": \"alpha\"");
    assert_has(out, "\"export-name\": \"beta\"");
    assert_has(out, "\"export-name\": \"web1/disk0@latest\"");
    nbdt_stop(&t);
    cr_assert_eq(t.stats.conns_dropped, 0);
}

Test(clients, nbdinfo_shows_size_and_flags, .timeout = 60)
{
    need_libnbd();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-info");
    nbdt_image(&t, "rw", 4 * MiB + 123, 0, false);
    nbdt_image(&t, "ro", MiB, 0, true);
    nbdt_start(&t);

    int rc = NBDT_RUN(out, "nbdinfo", "--size", nbdt_uri(&t, "rw"));
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_str_eq(out, "4194427\n");

    rc = NBDT_RUN(out, "nbdinfo", nbdt_uri(&t, "rw"));
    cr_assert_eq(rc, 0, "%s", out);
    assert_has(out, "export-size: 4194427");
    assert_has(out, "is_read_only: false");
    assert_has(out, "can_flush: true");
    assert_has(out, "can_fua: true");
    assert_has(out, "can_trim: true");
    assert_has(out, "can_zero: true");
    assert_has(out, "can_multi_conn: true");
    assert_has(out, "block_size_minimum: 1\n");
    assert_has(out, "block_size_preferred: 4096\n");
    assert_has(out, "block_size_maximum: 33554432\n");
    assert_has(out, "using simple packets");

    rc = NBDT_RUN(out, "nbdinfo", nbdt_uri(&t, "ro"));
    cr_assert_eq(rc, 0, "%s", out);
    assert_has(out, "is_read_only: true");
    assert_has(out, "can_trim: false");
    assert_has(out, "can_zero: false");
    nbdt_stop(&t);
}

Test(clients, nbdcopy_both_ways, .timeout = 120)
{
    need_libnbd();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-copy");
    const char *src = nbdt_image(&t, "src", 24 * MiB, 0xc0ffee, true);
    const char *odd = nbdt_image(&t, "odd", MiB + 4097, 0xface, true);
    const char *dst = nbdt_image(&t, "dst", 24 * MiB, 0x77, false);
    nbdt_start(&t);

    /* nbdcopy opens several connections (the exports allow multi-conn) with
     * many requests in flight on each. */
    int rc = NBDT_RUN(out, "nbdcopy", nbdt_uri(&t, "src"), nbdt_path(&t, "copy.img"));
    cr_assert_eq(rc, 0, "nbdcopy from the server exited %d:\n%s", rc, out);
    cr_assert(nbdt_files_equal(src, nbdt_path(&t, "copy.img")));

    rc = NBDT_RUN(out, "nbdcopy", nbdt_uri(&t, "odd"), nbdt_path(&t, "odd.img"));
    cr_assert_eq(rc, 0, "nbdcopy of an odd size exited %d:\n%s", rc, out);
    cr_assert(nbdt_files_equal(odd, nbdt_path(&t, "odd.img")));

    /* And into the server: a different image over dst's old content. */
    const char *in = nbdt_path(&t, "in.img");
    tmt_file_create(in, 24 * MiB);
    static uint8_t buf[MiB];
    for (unsigned i = 0; i < 24; i += 3) {
        nbdt_expected(buf, (uint64_t)i * MiB, MiB, 24 * MiB, 0x99);
        tmt_file_write(in, (off_t)i * MiB, buf, MiB);
    }
    rc = NBDT_RUN(out, "nbdcopy", in, nbdt_uri(&t, "dst"));
    cr_assert_eq(rc, 0, "nbdcopy to the server exited %d:\n%s", rc, out);
    cr_assert(nbdt_files_equal(in, dst), "the export's file differs from what nbdcopy wrote");
    nbdt_stop(&t);
    cr_assert_eq(t.stats.conns_dropped, 0);
    cr_assert_eq(t.stats.request_errors, 0);
}

Test(clients, qemu_io_trim_zero_fua_flush, .timeout = 60)
{
    need_qemu();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-trim");
    const uint64_t size = 2 * MiB, seed = 0xbeef;
    const char *img = nbdt_image(&t, "disk", size, seed, false);
    nbdt_start(&t);

    int rc = NBDT_RUN(out, "qemu-io", "-f", "raw", nbdt_uri(&t, "disk"),
                      "-c", "discard 0 64k",
                      "-c", "write -z 64k 64k",     /* WRITE_ZEROES with NO_HOLE */
                      "-c", "write -z -u 128k 64k", /* WRITE_ZEROES that may punch */
                      "-c", "read -P 0 64k 128k",
                      "-c", "write -f -P 0x5a 192k 4k", /* FUA */
                      "-c", "flush");
    cr_assert_eq(rc, 0, "qemu-io exited %d:\n%s", rc, out);
    assert_has(out, "discard 65536/65536 bytes at offset 0");
    assert_has(out, "wrote 65536/65536 bytes at offset 65536");
    assert_has(out, "wrote 65536/65536 bytes at offset 131072");
    assert_has(out, "wrote 4096/4096 bytes at offset 196608");
    cr_assert(strstr(out, "failed") == NULL, "%s", out);

    /* The trim punched a hole (the data was noise, it reads as zeroes now),
     * both zeroings happened, the FUA write landed, the rest is untouched
     * and the size did not move. */
    cr_assert(nbdt_file_all(img, 0, 64 << 10, 0), "the TRIM did not reach the file");
    cr_assert(nbdt_file_all(img, 64 << 10, 128 << 10, 0));
    cr_assert(nbdt_file_all(img, 192 << 10, 4 << 10, 0x5a));
    static uint8_t want[2 * MiB], got[2 * MiB];
    size_t rest = size - (196u << 10);
    nbdt_expected(want, 196u << 10, rest, size, seed);
    tmt_file_read(img, 196 << 10, got, rest);
    cr_assert(memcmp(want, got, rest) == 0, "bytes past the written ranges changed");
    cr_assert_eq(tmt_file_size(img), (off_t)size);
    nbdt_stop(&t);
    cr_assert_eq(t.stats.request_errors, 0);
}

Test(clients, read_only_export_refuses_writes, .timeout = 60)
{
    need_qemu();
    need_libnbd();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-ro");
    const char *img = nbdt_image(&t, "ro", MiB, 0x42, true);
    nbdt_start(&t);

    /* qemu sees NBD_FLAG_READ_ONLY and refuses to open the export writable. */
    int rc = NBDT_RUN(out, "qemu-io", "-f", "raw", nbdt_uri(&t, "ro"), "-c", "write -P 0xcd 0 4k");
    cr_assert_neq(rc, 0, "qemu-io wrote to a read-only export:\n%s", out);
    assert_has(out, "Permission denied");

    /* nbdcopy tries anyway and fails. */
    const char *in = nbdt_path(&t, "in.img");
    tmt_file_create(in, MiB);
    rc = NBDT_RUN(out, "nbdcopy", in, nbdt_uri(&t, "ro"));
    cr_assert_neq(rc, 0, "nbdcopy wrote to a read-only export:\n%s", out);

    /* A client that sends the commands anyway gets EPERM for each. */
    uint16_t tflags;
    int fd = nbdt_open(t.port, "ro", NULL, &tflags);
    cr_assert(tflags & NBD_FLAG_READ_ONLY);
    cr_assert_eq(tflags & (NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES), 0);
    uint8_t data[4096];
    memset(data, 0xcd, sizeof data);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE, 0, sizeof data, data, NULL), NBD_EPERM);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_TRIM, 0, 4096, NULL, NULL), NBD_EPERM);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_WRITE_ZEROES, 0, 4096, NULL, NULL), NBD_EPERM);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_FLUSH, 0, 0, NULL, NULL), 0); /* nothing to flush */
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, 0, sizeof data, NULL, data), 0);
    uint8_t want[4096];
    nbdt_expected(want, 0, sizeof want, MiB, 0x42);
    cr_assert(memcmp(want, data, sizeof want) == 0);
    nbdt_send_req(fd, 0, NBD_CMD_DISC, 1, 0, 0);
    cr_assert(nbdt_at_eof(fd));
    close(fd);

    uint8_t file[4096];
    tmt_file_read(img, 0, file, sizeof file);
    cr_assert(memcmp(want, file, sizeof want) == 0, "the read-only image changed");
    nbdt_stop(&t);
}

Test(clients, unknown_export_fails_cleanly, .timeout = 60)
{
    need_qemu();
    need_libnbd();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-unknown");
    nbdt_image(&t, "disk", MiB, 0, false);
    nbdt_start(&t);

    int rc = NBDT_RUN(out, "qemu-io", "-f", "raw", nbdt_uri(&t, "nope"), "-c", "read 0 4k");
    cr_assert_neq(rc, 0, "%s", out);
    assert_has(out, "server reported: unknown export 'nope'");

    rc = NBDT_RUN(out, "nbdinfo", nbdt_uri(&t, "nope"));
    cr_assert_neq(rc, 0, "%s", out);

    rc = NBDT_RUN(out, "qemu-img", "convert", "-f", "raw", "-O", "raw", nbdt_uri(&t, "disk/"),
                  nbdt_path(&t, "x.img"));
    cr_assert_neq(rc, 0, "%s", out);

    nbdt_assert_serving(&t, "disk");
    nbdt_stop(&t);
    cr_assert_eq(t.stats.conns_dropped, 0);
}

Test(clients, many_clients_at_once, .timeout = 120)
{
    need_qemu();
    nbdt_server_t t;
    nbdt_init(&t, "nbd-many");
    enum { EXPORTS = 4, PER_EXPORT = 3 };
    const char *imgs[EXPORTS];
    char names[EXPORTS][16];
    for (int e = 0; e < EXPORTS; e++) {
        snprintf(names[e], sizeof names[e], "disk%d", e);
        imgs[e] = nbdt_image(&t, names[e], 4 * MiB, 0, false);
    }
    nbdt_start(&t);

    /* All at once: each client writes its own MiB with its own pattern and
     * reads it back, while the others do the same. */
    nbdt_proc_t procs[EXPORTS * PER_EXPORT];
    char cmds[EXPORTS * PER_EXPORT][2][64];
    for (int e = 0; e < EXPORTS; e++) {
        for (int k = 0; k < PER_EXPORT; k++) {
            int i = e * PER_EXPORT + k;
            snprintf(cmds[i][0], sizeof cmds[i][0], "write -P %d %dM 1M", 0x20 + i, k);
            snprintf(cmds[i][1], sizeof cmds[i][1], "read -P %d %dM 1M", 0x20 + i, k);
            nbdt_spawn(&procs[i], (const char *const[]){"qemu-io", "-f", "raw", nbdt_uri(&t, names[e]), "-c",
                                                         cmds[i][0], "-c", cmds[i][1], NULL});
        }
    }
    for (int i = 0; i < EXPORTS * PER_EXPORT; i++) {
        int rc = nbdt_wait(&procs[i], out, sizeof out);
        cr_assert_eq(rc, 0, "client %d exited %d:\n%s", i, rc, out);
        cr_assert(strstr(out, "Pattern verification failed") == NULL, "client %d:\n%s", i, out);
    }
    for (int e = 0; e < EXPORTS; e++) {
        for (int k = 0; k < PER_EXPORT; k++)
            cr_assert(nbdt_file_all(imgs[e], (uint64_t)k * MiB, MiB, (uint8_t)(0x20 + e * PER_EXPORT + k)),
                      "export %d, MiB %d", e, k);
        cr_assert(nbdt_file_all(imgs[e], 3 * MiB, MiB, 0));
    }
    nbdt_stop(&t);
    cr_assert_eq(t.stats.conns_accepted, EXPORTS * PER_EXPORT);
    cr_assert_eq(t.stats.conns_open, 0);
}
