/*
 * Resync, end to end with the real binaries: a tap agent streams qemu-io's
 * writes; the server dies, the client writes on (applied to the image, held
 * in the agent's memory), the agent is SIGKILLed, so those writes never
 * reach the appliance; then the image is changed behind everyone's back. A
 * new agent finds no clean-shutdown marker, asks for the block sums of the
 * appliance's copy, and sends only the blocks that differ, while qemu-io
 * writes again. Afterwards `tidemark materialize` at latest gives the image
 * byte for byte, and a clean stop leaves a marker so that the next start
 * compares nothing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/clean.h"
#include "agent/resync.h"
#include "base/mem.h"
#include "tests/agent/at.h"

#define WAIT_MS 60000
#define MIB (1u << 20)
#define IMG_SIZE (16u * MIB)
#define BLOCK AGENT_RESYNC_BLOCK
#define SEED 0x7e5ca1u

TestSuite(resync, .init = at_setup, .fini = at_teardown, .timeout = 240);

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)(x | 1);
    }
}

static uint8_t *read_file(const char *path, size_t n)
{
    uint8_t *p = tm_malloc(n);
    FILE *f = fopen(path, "rb");
    cr_assert(p && f, "%s", path);
    cr_assert_eq(fread(p, 1, n, f), n, "%s is short", path);
    fclose(f);
    return p;
}

static void start_tap(at_child_t *c, const char *addr, const char *secret, const char *img, char *url, size_t len)
{
    static char disk_arg[PATH_MAX + 8];
    snprintf(disk_arg, sizeof disk_arg, "d0=%s", img);
    at_spawn(c, (const char *[]){"agent", "tap", "--server", addr, "--machine", "vm1", "--secret-file", secret,
                                 "--disk", disk_arg, "--listen", "127.0.0.1:0", NULL});
    cr_assert(at_wait(c, false, "tap: listening on 127.0.0.1:", WAIT_MS), "%s", c->err);
    const char *p = strstr(c->out, "127.0.0.1:") + strlen("127.0.0.1:");
    snprintf(url, len, "nbd://127.0.0.1:%d/d0", atoi(p));
}

/* Cache mode writeback: no FUA writes (qemu-io's default, writethrough,
 * waits for the appliance on every write); flushes as asked, and at exit. */
static void qemu_io_spawn(at_child_t *q, const char *url, const char *const *cmds)
{
    const char *args[32] = {"qemu-io", "-f", "raw", "-t", "writeback", url};
    unsigned n = 6;
    for (unsigned i = 0; cmds[i]; i++) {
        args[n++] = "-c";
        args[n++] = cmds[i];
    }
    args[n] = NULL;
    at_spawn(q, args);
}

static void qemu_io(const char *url, const char *const *cmds)
{
    at_child_t q;
    qemu_io_spawn(&q, url, cmds);
    cr_assert_eq(at_finish(&q, WAIT_MS), 0, "qemu-io:\n%s\n%s", q.out, q.err);
    at_child_free(&q);
}

/* True when n bytes at off of the file are all v. */
static bool file_holds(const char *path, uint64_t off, size_t n, uint8_t v)
{
    uint8_t buf[128 << 10];
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    bool ok = n <= sizeof buf && pread(fd, buf, n, (off_t)off) == (ssize_t)n;
    close(fd);
    for (size_t i = 0; ok && i < n; i++)
        ok = buf[i] == v;
    return ok;
}

static void stop(at_child_t *c)
{
    kill(c->pid, SIGTERM);
    cr_assert_eq(at_finish(c, WAIT_MS), 0, "stdout:\n%s\nstderr:\n%s", c->out, c->err);
}

/* A block of BLOCK bytes touched by [off, off + len): mark it. */
static void touch(bool *blocks, uint64_t off, uint64_t len)
{
    for (uint64_t b = off / BLOCK; b <= (off + len - 1) / BLOCK; b++)
        blocks[b] = true;
}

static unsigned count(const bool *blocks)
{
    unsigned n = 0;
    for (unsigned i = 0; i < IMG_SIZE / BLOCK; i++)
        n += blocks[i];
    return n;
}

/* "N of M blocks of 64 KiB differed" from the agent's log. */
static unsigned differed(const at_child_t *tap)
{
    const char *p = strstr(tap->err, "resync complete and durable at the appliance: ");
    cr_assert_not_null(p, "%s", tap->err);
    unsigned n = 0, m = 0;
    cr_assert_eq(sscanf(p + strlen("resync complete and durable at the appliance: "), "%u of %u", &n, &m), 2);
    cr_assert_eq(m, IMG_SIZE / BLOCK);
    return n;
}

/* `tidemark materialize vm1 --point latest` into out, then d0.raw against img. */
static void materialize_equals(const at_child_t *srv, const char *data, const char *out, const char *img)
{
    const char *p = strstr(srv->out, "api on ");
    cr_assert_not_null(p, "%s", srv->out);
    char api[64];
    p += strlen("api on ");
    size_t n = strcspn(p, " \n");
    cr_assert_lt(n, sizeof api);
    memcpy(api, p, n);
    api[n] = '\0';
    at_child_t m;
    at_spawn(&m, (const char *[]){"materialize", "vm1", "--point", "latest", "--out", out, "--api", api, "--data",
                                  data, NULL});
    cr_assert_eq(at_finish(&m, WAIT_MS), 0, "materialize:\n%s\n%s", m.out, m.err);
    at_child_free(&m);
    char raw[PATH_MAX];
    snprintf(raw, sizeof raw, "%s/d0.raw", out);
    uint8_t *got = read_file(raw, IMG_SIZE), *want = read_file(img, IMG_SIZE);
    for (size_t i = 0; i < IMG_SIZE; i++)
        cr_assert_eq(got[i], want[i], "seed %#x: byte %zu: the appliance's copy holds %#x, the image %#x", SEED, i,
                     got[i], want[i]);
    tm_free(got);
    tm_free(want);
}

Test(resync, a_killed_tap_agent_resyncs_only_the_blocks_that_differ)
{
    const char *data = at_path("data"), *secret = at_path("secret"), *img = at_path("disk.img");
    char addr[64], url[128], marker[PATH_MAX];
    at_child_t srv, tap, srv2, tap2, srv3, tap3;
    bool lost[IMG_SIZE / BLOCK] = {0};
    snprintf(marker, sizeof marker, "%s%s", img, AGENT_CLEAN_SUFFIX);

    /* An image with data in its first 4 MiB. */
    uint8_t *init = tm_calloc(1, IMG_SIZE);
    cr_assert_not_null(init);
    fill(init, 4 * MIB, SEED);
    FILE *f = fopen(img, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(init, 1, IMG_SIZE, f), IMG_SIZE);
    fclose(f);
    tm_free(init);

    at_machine_add(data, "vm1", secret);
    at_serve(&srv, data, "127.0.0.1:0", addr);
    start_tap(&tap, addr, secret, img, url, sizeof url);
    /* A first start: no marker, but the appliance holds nothing yet, so
     * the disk is copied whole instead (the copy's SYNCED ends the resync). */
    cr_assert(at_wait(&tap, true, "initial copy complete and durable", WAIT_MS), "%s", tap.err);
    qemu_io(url, (const char *[]){"write -P 0x11 1M 64k", "write -P 0x22 9M 8k", "flush", NULL});
    cr_assert_null(strstr(tap.err, "resync:"), "a first start compared blocks: %s", tap.err);

    /* The server dies; the client writes on: applied to the image and held
     * in the agent's memory only (qemu-io's closing flush waits for an
     * appliance that is not there). Once the file holds them the agent is
     * killed: those writes are lost to the appliance. */
    at_kill(&srv, SIGKILL);
    at_child_t q;
    qemu_io_spawn(&q, url, (const char *[]){"write -P 0x33 2M 128k", "write -P 0x44 12M 4k", "write -z 200k 8k", NULL});
    bool applied = false;
    for (int i = 0; i < WAIT_MS / 10 && !applied; i++) {
        applied = file_holds(img, 2 * MIB, 128 << 10, 0x33) && file_holds(img, 12 * MIB, 4096, 0x44) &&
                  file_holds(img, 200 << 10, 8192, 0);
        if (!applied)
            usleep(10000); /* polling the file: no event tells the test */
    }
    cr_assert(applied, "the client's writes never reached the image: %s", tap.err);
    touch(lost, 2 * MIB, 128 << 10);
    touch(lost, 12 * MIB, 4096);
    touch(lost, 200 << 10, 8192);
    at_kill(&tap, SIGKILL);
    at_finish(&q, WAIT_MS); /* its flush failed with the agent */
    at_child_free(&q);
    struct stat st;
    cr_assert_neq(stat(marker, &st), 0, "a killed agent left a clean-shutdown marker");

    /* Changed behind the agent's back: two blocks written in the file. */
    int fd = open(img, O_WRONLY);
    cr_assert_geq(fd, 0);
    uint8_t blk[4096];
    fill(blk, sizeof blk, SEED + 1);
    cr_assert_eq(pwrite(fd, blk, sizeof blk, 6 * MIB + 512), (ssize_t)sizeof blk);
    cr_assert_eq(pwrite(fd, blk, sizeof blk, IMG_SIZE - sizeof blk), (ssize_t)sizeof blk);
    close(fd);
    touch(lost, 6 * MIB + 512, sizeof blk);
    touch(lost, IMG_SIZE - sizeof blk, sizeof blk);
    unsigned want = count(lost);

    /* A new agent: it resyncs, with a client writing meanwhile. */
    at_serve(&srv2, data, "127.0.0.1:0", addr);
    start_tap(&tap2, addr, secret, img, url, sizeof url);
    cr_assert(at_wait(&tap2, true, "resync: asked the appliance", WAIT_MS), "%s", tap2.err);
    qemu_io(url, (const char *[]){"write -P 0x55 2M 4k", "write -P 0x66 14M 64k", "flush", NULL});
    cr_assert(at_wait(&tap2, true, "resync complete and durable", WAIT_MS), "%s", tap2.err);
    cr_assert(at_wait(&srv2, true, "ingest: machine vm1 is protected again: resync complete", WAIT_MS), "%s",
              srv2.err);
    cr_assert(strstr(srv2.err, "resync of disk d0 began"), "%s", srv2.err);
    unsigned n = differed(&tap2);
    cr_log_info("resync sent %u of %u blocks; %u differed before it", n, IMG_SIZE / BLOCK, want);
    /* every lost block, plus at most the two the client wrote during it
     * (a block written by this agent is always sent) */
    cr_assert_geq(n, want, "%u blocks sent, %u differ", n, want);
    cr_assert_leq(n, want + 2, "%u blocks sent, %u differ", n, want);
    cr_assert_null(strstr(tap2.err, "initial copy"), "%s", tap2.err);
    materialize_equals(&srv2, data, at_path("out1"), img);

    /* A clean stop leaves a marker; the next agent compares nothing. */
    stop(&tap2);
    cr_assert_eq(stat(marker, &st), 0, "no clean-shutdown marker after a clean stop");
    stop(&srv2);
    at_serve(&srv3, data, "127.0.0.1:0", addr);
    start_tap(&tap3, addr, secret, img, url, sizeof url);
    cr_assert_neq(stat(marker, &st), 0, "a running agent left its marker in place");
    qemu_io(url, (const char *[]){"write -P 0x77 3M 4k", "flush", NULL});
    cr_assert_null(strstr(tap3.err, "resync"), "a cleanly stopped agent resynced: %s", tap3.err);
    materialize_equals(&srv3, data, at_path("out2"), img);
    stop(&tap3);
    stop(&srv3);
    at_child_free(&tap);
    at_child_free(&tap2);
    at_child_free(&tap3);
    at_child_free(&srv);
    at_child_free(&srv2);
    at_child_free(&srv3);
}
