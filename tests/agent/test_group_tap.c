/*
 * Group rounds at the real tap agent (`tidemark agent tap`), driven by a
 * scripted appliance (fsv.c) that sends GROUP_PREPARE, GROUP_COMMIT and
 * GROUP_ABORT when the test says, with qemu-io writing to the tap's NBD
 * export from a session the test feeds command by command (its stdin).
 *
 * A write issued during the hold completes only after the decision: after
 * COMMIT it lands after the group tag in the stream, and the tag follows
 * every write completed before the hold with no write between the PREPARED
 * position and the tag; GROUP_ABORT and the hold limit release it without
 * a tag, and a COMMIT after the limit is ignored; an app round runs the
 * pre-script before the hold and the post-script after the tag; a round is
 * refused while another is open, while stopped, during a resync; an app
 * tag asked during a round waits for it; a session that ends releases.
 *
 * Every wait is for a frame, a record, a log line or qemu-io's answer,
 * bounded; the hold limit test waits for the agent's own timer.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/clean.h"
#include "base/mem.h"
#include "tests/agent/at.h"
#include "tests/agent/fsv.h"
#include "wire/msg.h"

#define WAIT_MS 60000
#define LONG_HOLD 60000u /* a hold the test ends itself */

static fsv_t *srv;
static at_child_t tap, qio;
static int qin = -1; /* qemu-io's stdin */

static void setup(void)
{
    at_setup();
    srv = fsv_start();
}

static void teardown(void)
{
    if (qin >= 0)
        close(qin);
    qin = -1;
    at_teardown();
    if (srv)
        fsv_stop(srv);
    srv = NULL;
}

TestSuite(agent_group_tap, .init = setup, .fini = teardown, .timeout = 180);

/* A tap on a fresh 16 MiB image against the fake appliance, with extra
 * arguments (NULL-terminated, may be NULL); clean: with a clean-shutdown
 * marker (no resync). Its NBD URL into url. Debug logs: the tap says when
 * it holds a write. */
static void start_tap(bool clean, const char *const *extra, char *url, size_t urllen)
{
    const char *img = at_path("disk.img"), *secret = at_path("secret");
    FILE *f = fopen(img, "w");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), 16 << 20), 0);
    /* The fake appliance holds the disk with an empty stream: a marker at
     * sequence 0 says the image is that copy. */
    if (clean)
        cr_assert_eq(agent_clean_put(img, fileno(f), "vm1", "d0", 16 << 20, 0), 0);
    fclose(f);
    f = fopen(secret, "w");
    cr_assert_not_null(f);
    fprintf(f, "%064d\n", 0);
    fclose(f);
    static char disk_arg[PATH_MAX + 8];
    snprintf(disk_arg, sizeof disk_arg, "d0=%s", img);
    const char *args[24] = {"agent", "tap", "--server", fsv_addr(srv), "--machine", "vm1", "--secret-file", secret,
                            "--disk", disk_arg, "--listen", "127.0.0.1:0"};
    unsigned n = 12;
    for (; extra && *extra; extra++)
        args[n++] = *extra;
    args[n] = NULL;
    setenv("TIDEMARK_LOG", "debug", 1);
    at_spawn(&tap, args);
    unsetenv("TIDEMARK_LOG");
    cr_assert(at_wait(&tap, false, "tap: listening on 127.0.0.1:", WAIT_MS), "%s", tap.err);
    const char *p = strstr(tap.out, "127.0.0.1:") + strlen("127.0.0.1:");
    snprintf(url, urllen, "nbd://127.0.0.1:%d/d0", atoi(p));
    cr_assert(fsv_wait_connected(srv, WAIT_MS), "the tap did not connect: %s", tap.err);
}

/* qemu-io on url, reading commands from the test; waits until it is
 * connected (its first prompt). */
static void start_qemu_io(const char *url)
{
    at_spawn_in(&qio, (const char *[]){"qemu-io", "-f", "raw", url, NULL}, &qin);
    cr_assert(at_wait(&qio, false, "qemu-io> ", WAIT_MS), "qemu-io did not start:\n%s\n%s", qio.out, qio.err);
}

static const char *done_line(uint64_t off)
{
    static char b[80];
    snprintf(b, sizeof b, "wrote 4096/4096 bytes at offset %llu\n", (unsigned long long)off);
    return b;
}

static char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    if (!f)
        return strcpy(buf, "(no file)");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void qemu_cmd(const char *cmd)
{
    char line[256];
    int n = snprintf(line, sizeof line, "%s\n", cmd);
    cr_assert_eq(write(qin, line, (size_t)n), n);
}

/* "write -P FILL OFF 4k", its answer awaited unless wait is false. */
static void qemu_write(uint8_t fill, uint64_t off, bool wait)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "write -P 0x%02x %llu 4k", fill, (unsigned long long)off);
    qemu_cmd(cmd);
    if (wait)
        cr_assert(at_wait(&qio, false, done_line(off), WAIT_MS), "%s:\n%s\n%s", cmd, qio.out, qio.err);
}

static void qemu_end(void)
{
    close(qin);
    qin = -1;
    cr_assert_eq(at_finish(&qio, WAIT_MS), 0, "qemu-io:\n%s\n%s", qio.out, qio.err);
    at_child_free(&qio);
}

/* ---- the records the appliance got ---- */

typedef struct want_rec {
    uint8_t kind;
    uint64_t id;
} want_rec_t;

/* The record of a write of fill at off, or NULL. */
static const fsv_rec_t *find_write(const fsv_rec_t *r, size_t n, uint8_t fill, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == WIRE_R_WRITE && r[i].offset == off && r[i].uniform && r[i].fill == fill)
            return &r[i];
    return NULL;
}

static const fsv_rec_t *find_tag(const fsv_rec_t *r, size_t n, uint8_t tag_kind, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == WIRE_R_TAG && r[i].tag_kind == tag_kind && r[i].id == id)
            return &r[i];
    return NULL;
}

static bool has_group_tag(const fsv_rec_t *r, size_t n, void *arg)
{
    return find_tag(r, n, WIRE_TAG_GROUP, *(uint64_t *)arg) != NULL;
}

/* Nothing between seq a and b (exclusive) changes the disk. */
static void nothing_written_between(const fsv_rec_t *r, size_t n, uint64_t a, uint64_t b)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].seq > a && r[i].seq < b)
            cr_assert(r[i].kind == WIRE_R_FLUSH || (r[i].kind == WIRE_R_TAG && r[i].tag_kind == WIRE_TAG_CRASH),
                      "record %llu (kind %u) between the hold's position %llu and the group tag at %llu",
                      (unsigned long long)r[i].seq, r[i].kind, (unsigned long long)a, (unsigned long long)b);
}

static fsv_prepared_t prepared(uint64_t round)
{
    fsv_prepared_t p;
    cr_assert(fsv_wait_prepared(srv, round, WAIT_MS, &p), "no PREPARED for round %llu:\n%s",
              (unsigned long long)round, tap.err);
    return p;
}

static const char *held_line(uint64_t round)
{
    static char b[96];
    snprintf(b, sizeof b, "is held until group round %llu is decided", (unsigned long long)round);
    return b;
}

/* ---- the tests ---- */

Test(agent_group_tap, a_write_during_the_hold_completes_after_commit_and_lands_after_the_tag)
{
    char url[128];
    start_tap(true, NULL, url, sizeof url);
    start_qemu_io(url);
    qemu_write(0x11, 0, true);

    fsv_group_prepare(srv, 1, WIRE_TAG_CRASH, LONG_HOLD, "grp-1");
    fsv_prepared_t p = prepared(1);
    cr_assert(p.held, "round 1 failed: %s", p.reason);
    /* PREPARED may overtake the batch that carries the records before it */
    cr_assert(fsv_wait_count(srv, p.seq, WAIT_MS));
    size_t n;
    fsv_rec_t *r = fsv_records(srv, &n);
    const fsv_rec_t *a = find_write(r, n, 0x11, 0);
    cr_assert_not_null(a, "the write completed before the hold is not in the stream");
    cr_assert_geq(p.seq, a->seq, "PREPARED's position %llu is before the write at %llu", (unsigned long long)p.seq,
                  (unsigned long long)a->seq);
    tm_free(r);

    /* issued during the hold: held, not applied, not answered */
    qemu_write(0x22, 8192, false);
    cr_assert(at_wait(&tap, true, held_line(1), WAIT_MS), "%s", tap.err);
    cr_assert(!at_has(&qio, false, "at offset 8192"), "a held write was answered:\n%s", qio.out);

    fsv_group_decide(srv, 1, true);
    cr_assert(at_wait(&qio, false, done_line(8192), WAIT_MS), "%s\n%s", qio.out, qio.err);
    uint64_t id = 1;
    cr_assert(fsv_wait(srv, has_group_tag, &id, WAIT_MS));
    cr_assert(at_wait(&tap, true, "releasing 1 write(s) held during group round 1", WAIT_MS), "%s", tap.err);
    qemu_write(0x33, 16384, true);
    qemu_end();

    r = fsv_records(srv, &n);
    const fsv_rec_t *t = find_tag(r, n, WIRE_TAG_GROUP, 1);
    cr_assert_not_null(t);
    cr_assert_str_eq(t->name, "grp-1");
    cr_assert_gt(t->seq, p.seq);
    nothing_written_between(r, n, p.seq, t->seq);
    const fsv_rec_t *b = find_write(r, n, 0x22, 8192), *c = find_write(r, n, 0x33, 16384);
    cr_assert(b && c, "the held write or the one after is missing");
    cr_assert_gt(b->seq, t->seq, "the held write (%llu) is not after the group tag (%llu)",
                 (unsigned long long)b->seq, (unsigned long long)t->seq);
    cr_assert_gt(c->seq, b->seq);
    tm_free(r);
    cr_assert_eq(fsv_prepared_count(srv, 1), 1);
}

Test(agent_group_tap, the_hold_limit_releases_without_a_tag_and_a_late_commit_is_ignored)
{
    char url[128];
    start_tap(true, NULL, url, sizeof url);
    start_qemu_io(url);
    qemu_write(0x11, 0, true);
    /* The limit is time: the agent's own timer is what the test waits for. */
    fsv_group_prepare(srv, 2, WIRE_TAG_CRASH, 1500, "grp-2");
    fsv_prepared_t p = prepared(2);
    cr_assert(p.held, "%s", p.reason);
    qemu_write(0x22, 8192, false);
    cr_assert(at_wait(&tap, true, held_line(2), WAIT_MS), "the write came after the limit?\n%s", tap.err);
    cr_assert(at_wait(&qio, false, done_line(8192), WAIT_MS), "%s\n%s", qio.out, qio.err);
    cr_assert(at_wait(&tap, true, "group round 2: no decision within the hold limit of 1500 ms", WAIT_MS), "%s",
              tap.err);
    fsv_group_decide(srv, 2, true);
    cr_assert(at_wait(&tap, true, "group round 2: COMMIT ignored: the round had timed out here", WAIT_MS), "%s",
              tap.err);
    /* the next round works */
    fsv_group_prepare(srv, 3, WIRE_TAG_CRASH, LONG_HOLD, "grp-3");
    cr_assert(prepared(3).held);
    fsv_group_decide(srv, 3, true);
    uint64_t id = 3;
    cr_assert(fsv_wait(srv, has_group_tag, &id, WAIT_MS));
    qemu_end();
    size_t n;
    fsv_rec_t *r = fsv_records(srv, &n);
    cr_assert_null(find_tag(r, n, WIRE_TAG_GROUP, 2), "a timed-out round left a tag");
    const fsv_rec_t *b = find_write(r, n, 0x22, 8192);
    cr_assert(b && b->seq > p.seq);
    tm_free(r);
}

Test(agent_group_tap, abort_releases_without_a_tag_and_so_does_the_session_ending)
{
    char url[128];
    start_tap(true, NULL, url, sizeof url);
    start_qemu_io(url);
    fsv_group_prepare(srv, 4, WIRE_TAG_CRASH, LONG_HOLD, "grp-4");
    cr_assert(prepared(4).held);
    qemu_write(0x44, 0, false);
    cr_assert(at_wait(&tap, true, held_line(4), WAIT_MS), "%s", tap.err);
    fsv_group_decide(srv, 4, false);
    cr_assert(at_wait(&qio, false, done_line(0), WAIT_MS), "%s\n%s", qio.out, qio.err);
    cr_assert(at_wait(&tap, true, "group round 4: aborted by the appliance", WAIT_MS), "%s", tap.err);

    /* held, then the session ends: the decision cannot come any more */
    fsv_group_prepare(srv, 5, WIRE_TAG_CRASH, LONG_HOLD, "grp-5");
    cr_assert(prepared(5).held);
    qemu_write(0x55, 8192, false);
    cr_assert(at_wait(&tap, true, held_line(5), WAIT_MS), "%s", tap.err);
    unsigned sessions = fsv_sessions(srv);
    fsv_drop_agent(srv);
    cr_assert(at_wait(&qio, false, done_line(8192), WAIT_MS), "%s\n%s", qio.out, qio.err);
    cr_assert(at_wait(&tap, true, "group round 5: the session with the appliance ended", WAIT_MS), "%s", tap.err);
    cr_assert(fsv_wait_sessions(srv, sessions + 1, WAIT_MS), "the tap did not reconnect:\n%s", tap.err);
    /* a COMMIT of it on the new session is ignored */
    fsv_group_decide(srv, 5, true);
    cr_assert(at_wait(&tap, true, "group round 5: COMMIT ignored: the round had aborted here", WAIT_MS), "%s",
              tap.err);
    qemu_end();
    size_t n;
    fsv_rec_t *r = fsv_records(srv, &n);
    cr_assert_null(find_tag(r, n, WIRE_TAG_GROUP, 4));
    cr_assert_null(find_tag(r, n, WIRE_TAG_GROUP, 5));
    cr_assert_not_null(find_write(r, n, 0x44, 0));
    cr_assert_not_null(find_write(r, n, 0x55, 8192));
    tm_free(r);
}

Test(agent_group_tap, app_rounds_run_the_scripts_in_order)
{
    const char *marks = at_path("marks");
    char pre[PATH_MAX + 128], post[PATH_MAX + 128], url[128];
    /* the pre-script fails for round 7 */
    snprintf(pre, sizeof pre, "echo \"pre $TIDEMARK_TAG_ID $TIDEMARK_TAG_NAME\" >> '%s'; [ $TIDEMARK_TAG_ID != 7 ]",
             marks);
    snprintf(post, sizeof post, "echo \"post $TIDEMARK_TAG_ID\" >> '%s'", marks);
    start_tap(true, (const char *[]){"--pre-script", pre, "--post-script", post, NULL}, url, sizeof url);
    start_qemu_io(url);
    qemu_write(0x11, 0, true);

    fsv_group_prepare(srv, 6, WIRE_TAG_APP, LONG_HOLD, "grp-app-6");
    fsv_prepared_t p = prepared(6);
    cr_assert(p.held, "%s", p.reason);
    /* the pre-script ran before the hold; the post-script waits for the tag */
    cr_assert_str_eq(slurp(marks), "pre 6 grp-app-6\n");
    qemu_write(0x66, 8192, false);
    cr_assert(at_wait(&tap, true, held_line(6), WAIT_MS), "%s", tap.err);
    fsv_group_decide(srv, 6, true);
    cr_assert(at_wait(&qio, false, done_line(8192), WAIT_MS), "%s\n%s", qio.out, qio.err);
    cr_assert_str_eq(slurp(marks), "pre 6 grp-app-6\npost 6\n", "the post-script had not run at the release");

    /* a failed pre-script: PREPARED failed with why, the post-script thaws, nothing held */
    fsv_group_prepare(srv, 7, WIRE_TAG_APP, LONG_HOLD, "grp-app-7");
    fsv_prepared_t p7 = prepared(7);
    cr_assert(!p7.held);
    cr_assert(strstr(p7.reason, "the pre-script exited with status 1"), "%s", p7.reason);
    cr_assert(at_wait(&tap, true, "group round 7 (tag 'grp-app-7'): the post-script succeeded", WAIT_MS), "%s",
              tap.err);
    cr_assert_str_eq(slurp(marks), "pre 6 grp-app-6\npost 6\npre 7 grp-app-7\npost 7\n");
    qemu_write(0x77, 16384, true);
    qemu_end();

    size_t n;
    fsv_rec_t *r = fsv_records(srv, &n);
    const fsv_rec_t *t = find_tag(r, n, WIRE_TAG_GROUP, 6);
    cr_assert_not_null(t);
    cr_assert_str_eq(t->name, "grp-app-6");
    nothing_written_between(r, n, p.seq, t->seq);
    cr_assert_gt(find_write(r, n, 0x66, 8192)->seq, t->seq);
    cr_assert_null(find_tag(r, n, WIRE_TAG_GROUP, 7));
    tm_free(r);
}

Test(agent_group_tap, refused_rounds_and_an_app_tag_that_waits_for_the_round)
{
    char url[128];
    start_tap(true, NULL, url, sizeof url);
    start_qemu_io(url);
    qemu_write(0x11, 0, true);

    /* one round at a time */
    fsv_group_prepare(srv, 8, WIRE_TAG_CRASH, LONG_HOLD, "grp-8");
    cr_assert(prepared(8).held);
    fsv_group_prepare(srv, 9, WIRE_TAG_CRASH, LONG_HOLD, "grp-9");
    fsv_prepared_t p = prepared(9);
    cr_assert(!p.held);
    cr_assert_str_eq(p.reason, "group round 8 is still open here");
    /* an app tag asked meanwhile waits for the round */
    fsv_tag(srv, WIRE_TAG_APP, 80, "app-80");
    cr_assert(at_wait(&tap, true, "tag 'app-80' (id 80): waits until group round 8 is done", WAIT_MS), "%s",
              tap.err);
    /* a COMMIT of another round changes nothing */
    fsv_group_decide(srv, 77, true);
    cr_assert(at_wait(&tap, true, "group round 77: COMMIT ignored: no such round is open here", WAIT_MS), "%s",
              tap.err);
    fsv_group_decide(srv, 8, true);
    uint64_t id = 8;
    cr_assert(fsv_wait(srv, has_group_tag, &id, WAIT_MS));
    cr_assert(at_wait(&tap, true, "tag 'app-80' (id 80): app tag added to the stream", WAIT_MS), "%s", tap.err);

    /* stopped: the STOP's final tag is the point */
    fsv_stop_agent(srv, 90, "final-90");
    cr_assert(at_wait(&tap, true, "final tag 'final-90' (id 90) added to the stream", WAIT_MS), "%s", tap.err);
    fsv_group_prepare(srv, 10, WIRE_TAG_CRASH, LONG_HOLD, "grp-10");
    p = prepared(10);
    cr_assert(!p.held);
    cr_assert_str_eq(p.reason, "stopped");
    fsv_resume_agent(srv);
    cr_assert(at_wait(&tap, true, "tap: taking writes again", WAIT_MS), "%s", tap.err);
    fsv_group_prepare(srv, 11, WIRE_TAG_CRASH, LONG_HOLD, "grp-11");
    cr_assert(prepared(11).held);
    fsv_group_decide(srv, 11, false);
    qemu_write(0x22, 8192, true);
    qemu_end();

    size_t n;
    fsv_rec_t *r = fsv_records(srv, &n);
    const fsv_rec_t *g = find_tag(r, n, WIRE_TAG_GROUP, 8), *app = find_tag(r, n, WIRE_TAG_APP, 80);
    cr_assert(g && app);
    cr_assert_gt(app->seq, g->seq, "the app tag did not wait for the round");
    cr_assert_null(find_tag(r, n, WIRE_TAG_GROUP, 9));
    cr_assert_null(find_tag(r, n, WIRE_TAG_GROUP, 10));
    cr_assert_null(find_tag(r, n, WIRE_TAG_GROUP, 11));
    tm_free(r);
}

Test(agent_group_tap, a_round_during_a_resync_is_refused)
{
    char url[128];
    /* no clean-shutdown marker: the disk is resynced, and the fake
     * appliance never sends the sums, so the resync stays open */
    start_tap(false, NULL, url, sizeof url);
    cr_assert(at_wait(&tap, true, "resync", WAIT_MS), "%s", tap.err);
    fsv_group_prepare(srv, 12, WIRE_TAG_CRASH, LONG_HOLD, "grp-12");
    fsv_prepared_t p = prepared(12);
    cr_assert(!p.held);
    cr_assert_str_eq(p.reason, "disk d0: its resync is running: no consistent point can be cut there");
}
