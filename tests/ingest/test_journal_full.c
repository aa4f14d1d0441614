/*
 * A journal failure under the server: the data folder is a small tmpfs, a
 * file the test writes fills what the journal's first segment left, and the
 * stream goes on until the journal cannot start its next segment (the
 * kernel's own ENOSPC). The agent whose batch was lost gets ERROR(internal)
 * with the journal's reason and its connection closes; the server keeps
 * running. Once the file is removed, a reconnecting agent is welcomed at
 * exactly one past the last acknowledged sequence and streams again: the
 * journal recovers on its own (serve leaves jnl_options.retry_ms at 0, so
 * each append refused while it is failed makes the writer try again; the
 * first batch after the space came back may be refused that way, and the
 * agent reconnects as it would after any error).
 *
 * Needs the right to mount (root, as in CI); elsewhere it says why it skips.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/ingest/itx.h"

#define DISK_SIZE (64ull << 20)

static bool mounted;
static int mount_errno;

static void setup(void)
{
    tc_setup();
    const char *data = tc_path("data");
    cr_assert_eq(mkdir(data, 0700), 0);
    /* Three 1 MiB segments' worth; the filler takes what the first leaves. */
    mounted = mount("tidemark-test", data, "tmpfs", 0, "size=3M,mode=0700") == 0;
    mount_errno = errno;
}

static void teardown(void)
{
    if (mounted)
        umount2(tc_path("data"), MNT_DETACH);
    tc_teardown();
}

TestSuite(journal_full, .init = setup, .fini = teardown, .timeout = TC_TIMEOUT);

static const wire_disk_t disks[1] = {{"disk0", DISK_SIZE}};

/* Write path until the file system is full; returns the bytes written. */
static size_t fill(const char *path)
{
    static uint8_t chunk[64 << 10];
    memset(chunk, 0x5a, sizeof chunk);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    size_t total = 0;
    for (;;) {
        ssize_t w = write(fd, chunk, sizeof chunk);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            cr_assert_eq(errno, ENOSPC, "filling: %s", strerror(errno));
            break;
        }
        total += (size_t)w;
        cr_assert_lt(total, 64u << 20, "the tmpfs does not fill up");
    }
    close(fd);
    return total;
}

Test(journal_full, enospc_fails_the_session_and_the_server_recovers)
{
    if (!mounted)
        cr_skip_test("cannot mount a small tmpfs here (%s): run as root to test a real full disk",
                     strerror(mount_errno));
    ita_server_t s;
    ita_agent_t a;
    uint8_t secret[32];
    wire_buf_t b = {0};
    wire_error_t e;
    wire_welcome_t w;
    const char *data = tc_path("data");

    ita_add_machine(data, "full", secret);
    ita_start(&s, data, (const char *[]){"--segment-size", "1M", NULL});
    ita_connect(&a, s.port);
    /* WELCOME comes once the disks record is durable: the first segment exists. */
    cr_assert_eq(ita_handshake(&a, "full", secret, disks, 1, &w), 1);
    char filler[PATH_MAX];
    snprintf(filler, sizeof filler, "%s/filler", data);
    cr_assert_gt(fill(filler), 0);

    /* One batch at a time, so the one that fails is the first the journal
     * could not place, and its own completion carries the reason. */
    uint64_t acked = 0;
    bool failed = false;
    for (unsigned i = 0; i < 100 && !failed; i++) {
        uint16_t n = itx_batch_raw(&b, acked + 1, 96u << 10, DISK_SIZE, i);
        ita_send(&a, &b);
        if (!ita_recv(&a)) {
            tc_finish(&s.c);
            cr_assert_fail("closed without ACK or ERROR; server stderr:\n%s", s.c.err);
        }
        if (a.type == WIRE_T_ACK) {
            uint64_t v;
            char r[128];
            cr_assert_eq(wire_dec_ack(a.body, a.body_len, &v, r, sizeof r), 0, "%s", r);
            cr_assert_eq(v, acked + n);
            acked = v;
            continue;
        }
        cr_assert_eq(a.type, WIRE_T_ERROR, "frame type 0x%x", a.type);
        char r[128];
        cr_assert_eq(wire_dec_error(a.body, a.body_len, &e, r, sizeof r), 0, "%s", r);
        cr_assert_eq(e.code, WIRE_E_INTERNAL, "ERROR %s: %s", wire_err_name(e.code), e.text);
        cr_assert(strstr(e.text, "journal") && strstr(e.text, strerror(ENOSPC)), "ERROR text: %s", e.text);
        cr_assert(!ita_recv(&a), "the server sent more after ERROR (type 0x%x)", a.type);
        failed = true;
    }
    cr_assert(failed, "the journal never ran out of space (%lu acked)", (unsigned long)acked);
    cr_assert_gt(acked, 0, "the first segment took no batch at all");
    ita_close(&a);

    /* The server is still up: the agent is welcomed at the durable end, and
     * its batches are refused, with the reason, while the disk is full. */
    cr_assert(itx_err_until(&s.c, "the journal could not keep"), "stderr:\n%s", s.c.err);
    cr_assert_eq(ita_reconnect(&a, s.port, "full", secret, disks, 1, &w), acked + 1);
    itx_batch_raw(&b, acked + 1, 96u << 10, DISK_SIZE, 500);
    ita_send(&a, &b);
    itx_expect_error(&a, WIRE_E_INTERNAL, &e);
    cr_assert(strstr(e.text, "refused after an earlier I/O failure") && strstr(e.text, strerror(ENOSPC)),
              "ERROR text: %s", e.text);
    ita_close(&a);

    cr_assert_eq(unlink(filler), 0);
    unsigned attempts = 0;
    uint64_t first_new = acked + 1;
    for (;;) {
        attempts++;
        cr_assert_leq(attempts, 50, "the journal did not recover; stderr:\n%s", s.c.err);
        cr_assert_eq(ita_reconnect(&a, s.port, "full", secret, disks, 1, &w), acked + 1,
                     "attempt %u: welcomed elsewhere than one past the last acknowledged sequence", attempts);
        uint16_t n = itx_batch_raw(&b, acked + 1, 96u << 10, DISK_SIZE, 1000);
        ita_send(&a, &b);
        if (!ita_recv(&a)) {
            tc_finish(&s.c);
            cr_assert_fail("closed without ACK or ERROR; server stderr:\n%s", s.c.err);
        }
        if (a.type == WIRE_T_ACK) {
            uint64_t v;
            char r[128];
            cr_assert_eq(wire_dec_ack(a.body, a.body_len, &v, r, sizeof r), 0, "%s", r);
            cr_assert_eq(v, acked + n);
            acked = v;
            break;
        }
        /* Refused while the journal was still in its failed state. */
        char r[128];
        cr_assert_eq(a.type, WIRE_T_ERROR, "frame type 0x%x", a.type);
        cr_assert_eq(wire_dec_error(a.body, a.body_len, &e, r, sizeof r), 0, "%s", r);
        cr_assert_eq(e.code, WIRE_E_INTERNAL, "ERROR %s: %s", wire_err_name(e.code), e.text);
        ita_close(&a);
    }
    cr_log_info("%lu sequences acked before the disk was full; streaming again after %u attempt(s)",
                (unsigned long)first_new - 1, attempts);
    ita_close(&a);
    ita_stop(&s);
    cr_assert(strstr(s.c.err, "journal: recovered from the earlier failure"), "stderr:\n%s", s.c.err);

    /* The journal holds every acknowledged batch once, gapless, and nothing
     * of the lost one. */
    ita_journal_t j;
    ita_read_journal(data, &j);
    uint64_t expect = 1;
    for (size_t i = 0; i < j.nb; i++) {
        cr_assert_eq(j.b[i].first_seq, expect, "batch %zu", i);
        expect += j.b[i].count;
    }
    cr_assert_eq(expect, acked + 1, "the journal ends at %lu, the last ack was %lu", (unsigned long)expect - 1,
                 (unsigned long)acked);
    cr_assert_gt(acked, first_new - 1);
    ita_journal_free(&j);
    wire_buf_free(&b);
    tc_child_free(&s.c);
}
