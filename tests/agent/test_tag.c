/*
 * Tags the appliance asks for, at the real `tidemark agent` (tap and
 * replay) driven by a scripted appliance (fsv.c) that sends TAG_REQUEST when
 * the test says: an app tag runs the pre-script, holds new writes, appends
 * the tag after every write completed before, runs the post-script, then
 * lets the held writes go on; a failed or timed-out pre-script gives no app
 * tag and holds nothing; requests are taken one at a time.
 *
 * Order is checked through the records' order and through what the scripts
 * see (the post-script reads the disk image where a held write goes), never
 * through wall-clock time. A script that must wait for the test blocks on a
 * FIFO the test writes to.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/clean.h"
#include "base/mem.h"
#include "tests/agent/at.h"
#include "tests/agent/fsv.h"
#include "wire/msg.h"

#define WAIT_MS 60000
#define HELD_OFF (1u << 20) /* where the write made during a hold goes */

static fsv_t *srv;

static void setup(void)
{
    at_setup();
    srv = fsv_start();
}

static void teardown(void)
{
    at_teardown();
    if (srv)
        fsv_stop(srv);
    srv = NULL;
}

TestSuite(agent_tag, .init = setup, .fini = teardown, .timeout = 120);

/* Start a tap agent on a fresh 16 MiB image against the fake appliance,
 * with the scripts (NULL: none) and time limit (NULL: default); its NBD
 * URL into url. */
static void start_tap(at_child_t *tap, const char *pre, const char *post, const char *timeout, char *url,
                      size_t urllen)
{
    const char *img = at_path("disk.img"), *secret = at_path("secret");
    FILE *f = fopen(img, "w");
    cr_assert_not_null(f);
    cr_assert_eq(ftruncate(fileno(f), 16 << 20), 0);
    /* The fake appliance says it holds the disk (stream empty): a
     * clean-shutdown marker at sequence 0 says the image is that copy, so
     * the agent asks for no resync, which the fake does not answer. */
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
    if (pre) {
        args[n++] = "--pre-script";
        args[n++] = pre;
    }
    if (post) {
        args[n++] = "--post-script";
        args[n++] = post;
    }
    if (timeout) {
        args[n++] = "--script-timeout";
        args[n++] = timeout;
    }
    args[n] = NULL;
    at_spawn(tap, args);
    cr_assert(at_wait(tap, false, "tap: listening on 127.0.0.1:", WAIT_MS), "%s", tap->err);
    const char *p = strstr(tap->out, "127.0.0.1:") + strlen("127.0.0.1:");
    snprintf(url, urllen, "nbd://127.0.0.1:%d/d0", atoi(p));
    cr_assert(fsv_wait_connected(srv, WAIT_MS), "the tap did not connect: %s", tap->err);
}

/* qemu-io with one command, to its end: exit 0 expected. */
static void qemu_write(const char *url, const char *cmd)
{
    at_child_t q;
    at_spawn(&q, (const char *[]){"qemu-io", "-f", "raw", url, "-c", cmd, NULL});
    cr_assert_eq(at_finish(&q, WAIT_MS), 0, "qemu-io %s:\n%s\n%s", cmd, q.out, q.err);
    at_child_free(&q);
}

/* ---- predicates on the records the appliance got ---- */

static bool has_write_fill(const fsv_rec_t *r, size_t n, void *arg)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == WIRE_R_WRITE && r[i].fill == *(uint8_t *)arg)
            return true;
    return false;
}

static size_t count_kind(const fsv_rec_t *r, size_t n, uint8_t kind)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += r[i].kind == kind;
    return c;
}

static bool has_tags(const fsv_rec_t *r, size_t n, void *arg)
{
    return count_kind(r, n, WIRE_R_TAG) >= *(size_t *)arg;
}

/* Everything but flushes (qemu-io flushes when it closes the disk). */
static fsv_rec_t *records_no_flush(size_t *n)
{
    size_t all;
    fsv_rec_t *r = fsv_records(srv, &all);
    size_t k = 0;
    for (size_t i = 0; i < all; i++)
        if (r[i].kind != WIRE_R_FLUSH)
            r[k++] = r[i];
    *n = k;
    return r;
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

static void expect_write(const fsv_rec_t *r, uint64_t off, uint32_t len, uint8_t fill)
{
    cr_assert_eq(r->kind, WIRE_R_WRITE, "seq %llu: kind %u, a write expected", (unsigned long long)r->seq,
                 r->kind);
    cr_assert_eq(r->offset, off, "seq %llu: offset %llu", (unsigned long long)r->seq,
                 (unsigned long long)r->offset);
    cr_assert_eq(r->length, len);
    cr_assert(r->uniform && r->fill == fill, "seq %llu: fill 0x%02x, 0x%02x expected", (unsigned long long)r->seq,
              r->fill, fill);
}

static void expect_tag(const fsv_rec_t *r, uint8_t kind, uint64_t id, const char *name)
{
    cr_assert_eq(r->kind, WIRE_R_TAG, "seq %llu: kind %u, a tag expected", (unsigned long long)r->seq, r->kind);
    cr_assert_eq(r->tag_kind, kind, "tag %s: kind %u", r->name, r->tag_kind);
    cr_assert_eq(r->id, id);
    cr_assert_str_eq(r->name, name);
}

/* True once pid is gone or a zombie (killed, not reaped yet), polled for
 * up to 10 s (the kill is asynchronous; the process would live 600 s). */
static bool process_ends(int pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(path, "r");
        if (!f)
            return true;
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = '\0';
        const char *p = strrchr(stat, ')');
        if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* ---- the tests ---- */

Test(agent_tag, app_tag_runs_pre_holds_tags_runs_post_then_releases)
{
    const char *marks = at_path("marks"), *go = at_path("go"), *img = at_path("disk.img");
    char pre[PATH_MAX * 2], post[PATH_MAX * 4], url[128];
    cr_assert_eq(mkfifo(go, 0600), 0);
    /* Kept open for reading and writing so the line written later waits in
     * the FIFO for the post-script, whenever it opens it. */
    int gofd = open(go, O_RDWR | O_CLOEXEC);
    cr_assert_geq(gofd, 0);
    snprintf(pre, sizeof pre, "printf 'pre %%s %%s\\n' \"$TIDEMARK_TAG_NAME\" \"$TIDEMARK_TAG_ID\" >> '%s'", marks);
    /* Waits for the test, then records what the image holds where the held
     * write goes: 00 while it is held (not yet applied to the file). */
    snprintf(post, sizeof post,
             "read line < '%s'; printf 'post %%s %%s\\n' \"$TIDEMARK_TAG_NAME\" "
             "\"$(od -An -tx1 -N1 -j %u '%s' | tr -d ' ')\" >> '%s'",
             go, HELD_OFF, img, marks);
    setenv("TIDEMARK_LOG", "debug", 1); /* the tap says when it holds a write */
    at_child_t tap, q;
    start_tap(&tap, pre, post, "30", url, sizeof url);
    unsetenv("TIDEMARK_LOG");

    /* Completed before the request: the tag must come after these. */
    qemu_write(url, "write -P 0x11 0 64k");
    qemu_write(url, "write -P 0x12 64k 64k");
    uint8_t fill = 0x12;
    cr_assert(fsv_wait(srv, has_write_fill, &fill, WAIT_MS));

    fsv_tag(srv, WIRE_TAG_APP, 42, "t1");
    cr_assert(at_wait(&tap, true, "tag 't1' (id 42): holding new writes", WAIT_MS), "%s", tap.err);
    /* A write made now is held; the post-script waits until it is. */
    char cmd[64];
    snprintf(cmd, sizeof cmd, "write -P 0x22 %u 64k", HELD_OFF);
    at_spawn(&q, (const char *[]){"qemu-io", "-f", "raw", url, "-c", cmd, NULL});
    cr_assert(at_wait(&tap, true, "is held until the app tag is in the stream", WAIT_MS), "%s", tap.err);
    cr_assert_eq(write(gofd, "go\n", 3), 3);
    cr_assert_eq(at_finish(&q, WAIT_MS), 0, "qemu-io:\n%s\n%s", q.out, q.err);
    fill = 0x22;
    cr_assert(fsv_wait(srv, has_write_fill, &fill, WAIT_MS), "the held write never reached the appliance");

    cr_assert_str_eq(slurp(marks), "pre t1 42\npost t1 00\n", "the post-script ran while the write was held");
    size_t n;
    fsv_rec_t *r = records_no_flush(&n);
    cr_assert_eq(n, 4, "records: %zu", n);
    expect_write(&r[0], 0, 64 << 10, 0x11);
    expect_write(&r[1], 64 << 10, 64 << 10, 0x12);
    expect_tag(&r[2], WIRE_TAG_APP, 42, "t1");
    expect_write(&r[3], HELD_OFF, 64 << 10, 0x22);
    tm_free(r);
    cr_assert(at_wait(&tap, true, "releasing 1 write(s) held during the app tag", WAIT_MS), "%s", tap.err);
    close(gofd);
    at_kill(&tap, SIGKILL);
    at_child_free(&q);
    at_child_free(&tap);
}

Test(agent_tag, failing_pre_script_gives_no_app_tag_and_writes_go_on)
{
    const char *marks = at_path("marks");
    char pre[PATH_MAX + 64], post[PATH_MAX + 64], url[128];
    snprintf(pre, sizeof pre, "echo \"pre $TIDEMARK_TAG_NAME\" >> '%s'; exit 3", marks);
    snprintf(post, sizeof post, "echo \"post $TIDEMARK_TAG_NAME\" >> '%s'", marks);
    at_child_t tap;
    start_tap(&tap, pre, post, NULL, url, sizeof url);
    fsv_tag(srv, WIRE_TAG_APP, 7, "bad");
    cr_assert(at_wait(&tap, true, "tag 'bad' (id 7): no app tag", WAIT_MS), "%s", tap.err);
    cr_assert(strstr(tap.err, "tag 'bad' (id 7): the pre-script exited with status 3"), "%s", tap.err);
    cr_assert_str_eq(slurp(marks), "pre bad\npost bad\n", "the post-script runs to thaw");
    qemu_write(url, "write -P 0x33 0 4k");
    uint8_t fill = 0x33;
    cr_assert(fsv_wait(srv, has_write_fill, &fill, WAIT_MS));
    size_t n;
    fsv_rec_t *r = records_no_flush(&n);
    cr_assert_eq(n, 1, "only the write: %zu records", n);
    expect_write(&r[0], 0, 4096, 0x33);
    tm_free(r);
    at_kill(&tap, SIGKILL);
    at_child_free(&tap);
}

Test(agent_tag, pre_script_past_its_time_limit_is_killed_and_gives_no_tag)
{
    const char *marks = at_path("marks"), *pidf = at_path("sleep.pid");
    char pre[PATH_MAX * 3], post[PATH_MAX + 64], url[128];
    /* The shell's child must die too: the whole process group is killed. */
    snprintf(pre, sizeof pre, "echo pre >> '%s'; sleep 600 & echo $! > '%s'; wait; echo after-sleep >> '%s'", marks,
             pidf, marks);
    snprintf(post, sizeof post, "echo post >> '%s'", marks);
    at_child_t tap;
    start_tap(&tap, pre, post, "0.5", url, sizeof url);
    fsv_tag(srv, WIRE_TAG_APP, 8, "slow");
    cr_assert(at_wait(&tap, true, "tag 'slow' (id 8): no app tag", WAIT_MS), "%s", tap.err);
    cr_assert(strstr(tap.err, "the pre-script is still running after 0.5 s, its time limit; killing it"), "%s",
              tap.err);
    cr_assert(strstr(tap.err, "the pre-script timed out after 0.5 s and was killed"), "%s", tap.err);
    cr_assert_str_eq(slurp(marks), "pre\npost\n");
    int pid = atoi(slurp(pidf));
    cr_assert_gt(pid, 1, "no pid of the script's sleep");
    cr_assert(process_ends(pid), "the pre-script's child (pid %d) outlived its time limit", pid);
    qemu_write(url, "write -P 0x44 8k 4k");
    uint8_t fill = 0x44;
    cr_assert(fsv_wait(srv, has_write_fill, &fill, WAIT_MS));
    size_t n;
    fsv_rec_t *r = records_no_flush(&n);
    cr_assert_eq(n, 1, "only the write: %zu records", n);
    tm_free(r);
    at_kill(&tap, SIGKILL);
    at_child_free(&tap);
}

Test(agent_tag, post_script_past_its_time_limit_keeps_the_tag_and_releases)
{
    char url[128];
    at_child_t tap;
    start_tap(&tap, NULL, "sleep 60", "0.5", url, sizeof url);
    qemu_write(url, "write -P 0x55 0 4k");
    fsv_tag(srv, WIRE_TAG_APP, 9, "thaw-slow");
    cr_assert(at_wait(&tap, true, "tag 'thaw-slow' (id 9): the post-script timed out after 0.5 s", WAIT_MS), "%s",
              tap.err);
    /* Writes are not held any more: this one completes. */
    qemu_write(url, "write -P 0x66 4k 4k");
    uint8_t fill = 0x66;
    cr_assert(fsv_wait(srv, has_write_fill, &fill, WAIT_MS));
    size_t n;
    fsv_rec_t *r = records_no_flush(&n);
    cr_assert_eq(n, 3, "records: %zu", n);
    expect_write(&r[0], 0, 4096, 0x55);
    expect_tag(&r[1], WIRE_TAG_APP, 9, "thaw-slow");
    expect_write(&r[2], 4096, 4096, 0x66);
    tm_free(r);
    at_kill(&tap, SIGKILL);
    at_child_free(&tap);
}

Test(agent_tag, overlapping_requests_are_taken_one_at_a_time_crash_at_once)
{
    const char *marks = at_path("marks");
    char pre[PATH_MAX + 64], post[PATH_MAX + 64], url[128];
    snprintf(pre, sizeof pre, "echo \"pre $TIDEMARK_TAG_NAME $TIDEMARK_TAG_PHASE\" >> '%s'", marks);
    snprintf(post, sizeof post, "echo \"post $TIDEMARK_TAG_NAME $TIDEMARK_TAG_PHASE\" >> '%s'", marks);
    at_child_t tap;
    start_tap(&tap, pre, post, NULL, url, sizeof url);
    fsv_tag(srv, WIRE_TAG_APP, 1, "a1");
    fsv_tag(srv, WIRE_TAG_CRASH, 2, "c1");
    fsv_tag(srv, WIRE_TAG_APP, 3, "a2");
    size_t want = 3;
    cr_assert(fsv_wait(srv, has_tags, &want, WAIT_MS), "%s", tap.err);
    cr_assert(at_wait(&tap, true, "tag 'a2' (id 3): the post-script succeeded", WAIT_MS), "%s", tap.err);
    cr_assert(strstr(tap.err, "tag 'a2' (id 3): waits until tag 'a1' is done"), "%s", tap.err);
    cr_assert_str_eq(slurp(marks), "pre a1 pre\npost a1 post\npre a2 pre\npost a2 post\n");
    size_t n;
    fsv_rec_t *r = records_no_flush(&n);
    cr_assert_eq(n, 3);
    int a1 = -1, a2 = -1, c1 = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].name, "a1") == 0)
            a1 = (int)i, expect_tag(&r[i], WIRE_TAG_APP, 1, "a1");
        else if (strcmp(r[i].name, "a2") == 0)
            a2 = (int)i, expect_tag(&r[i], WIRE_TAG_APP, 3, "a2");
        else
            c1 = (int)i, expect_tag(&r[i], WIRE_TAG_CRASH, 2, "c1");
    }
    cr_assert(a1 >= 0 && a2 > a1 && c1 >= 0, "a1 %d a2 %d c1 %d", a1, a2, c1);
    tm_free(r);
    /* A clean stop after tags: everything acknowledged, nothing left open
     * (under the sanitizers, nothing leaked). */
    kill(tap.pid, SIGTERM);
    cr_assert_eq(at_finish(&tap, WAIT_MS), 0, "tap:\n%s", tap.err);
    at_child_free(&tap);
}

static bool write_after_tag(const fsv_rec_t *r, size_t n, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == WIRE_R_TAG)
            for (size_t j = i + 1; j < n; j++)
                if (r[j].kind == WIRE_R_WRITE)
                    return true;
    return false;
}

Test(agent_tag, replay_pauses_for_an_app_tag_and_goes_on)
{
    const char *marks = at_path("marks"), *secret = at_path("secret");
    char pre[PATH_MAX + 64], post[PATH_MAX + 64];
    snprintf(pre, sizeof pre, "echo \"pre $TIDEMARK_TAG_NAME\" >> '%s'", marks);
    snprintf(post, sizeof post, "echo \"post $TIDEMARK_TAG_NAME\" >> '%s'", marks);
    FILE *f = fopen(secret, "w");
    cr_assert_not_null(f);
    fprintf(f, "%064d\n", 0);
    fclose(f);
    at_child_t ag;
    at_spawn(&ag, (const char *[]){"agent", "replay", "--server", fsv_addr(srv), "--machine", "web1",
                                   "--secret-file", secret, "--workload", "disks=1,size=64M,bs=4k,rate=512k,count=100000",
                                   "--pre-script", pre, "--post-script", post, NULL});
    cr_assert(fsv_wait_connected(srv, WAIT_MS), "%s", ag.err);
    cr_assert(fsv_wait_count(srv, 10, WAIT_MS), "%s", ag.err);
    fsv_tag(srv, WIRE_TAG_APP, 5, "r1");
    cr_assert(fsv_wait(srv, write_after_tag, NULL, WAIT_MS), "generation did not go on after the tag: %s", ag.err);
    cr_assert_str_eq(slurp(marks), "pre r1\npost r1\n");
    size_t n;
    fsv_rec_t *r = fsv_records(srv, &n);
    size_t tags = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].kind == WIRE_R_TAG)
            tags++, expect_tag(&r[i], WIRE_TAG_APP, 5, "r1");
    cr_assert_eq(tags, 1);
    tm_free(r);
    at_kill(&ag, SIGKILL);
    at_child_free(&ag);
}
