/*
 * STOP and RESUME (planned failover) at the real `tidemark agent`, tap and
 * replay, streaming to the real ingest server and journal running in this
 * process (tests/ingest/its.c), which sends STOP and RESUME when the test
 * says, as the failover jobs will.
 *
 * The tap: writes made with qemu-io before the STOP, including ones
 * accepted and still waiting for room in the agent's stream (the journal
 * held back, so nothing is acknowledged), all complete as usual and are in
 * the stream before the final tag, and the disk rebuilt from the journal up
 * to that tag is the image, byte for byte, as it was when the agent
 * stopped; new writes fail with EPERM ("Operation not permitted") at once
 * while stopped, flushes do not; a second STOP gives a second tag with nothing between; RESUME lets
 * writes through again. A STOP during the initial copy: the final tag waits
 * for the copy, so it still names the whole disk. The replay agent: nothing
 * is generated between the final tag and the RESUME. A retired machine's
 * tap says so in those words, with the appliance's reason.
 *
 * Every wait is for a log line or a state, bounded; nothing sleeps for time
 * to pass.
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
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "tests/agent/at.h"
#include "tests/ingest/its.h"
#include "wire/msg.h"

#define WAIT_MS 60000

static its_t *srv;
/* The agents and background qemu-io: at file scope, because at_teardown
 * still looks at them after a failed assertion has left the test. */
static at_child_t tap, bg, ag;

static void setup(void)
{
    at_setup();
}

static void teardown(void)
{
    at_teardown(); /* the agents go first: the server's stop waits for no one */
    if (srv)
        its_stop(srv);
    srv = NULL;
}

TestSuite(agent_stop, .init = setup, .fini = teardown, .timeout = 240);

/* The server on at_path("data") with machine registered; its secret file
 * into secret_path. */
static void start_server_opts(const char *machine, const char *secret_path, const its_opts_t *o)
{
    const char *data = at_path("data");
    cr_assert_eq(mkdir(data, 0700), 0);
    uint8_t secret[32];
    char hex[65];
    its_add_machine(data, machine, secret, hex);
    FILE *f = fopen(secret_path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", hex);
    fclose(f);
    srv = its_start(data, o);
}

static void start_server(const char *machine, const char *secret_path)
{
    start_server_opts(machine, secret_path, NULL);
}

/* A file of size bytes; fill(off) gives each 4 KiB block's byte (0: a hole). */
static void make_image(const char *path, uint64_t size, uint8_t (*fill)(uint64_t off))
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)size), 0);
    static uint8_t block[4096];
    for (uint64_t off = 0; fill && off < size; off += sizeof block) {
        uint8_t v = fill(off);
        if (!v)
            continue;
        for (size_t i = 0; i < sizeof block; i++)
            block[i] = (uint8_t)(v + i * 7);
        cr_assert_eq(pwrite(fd, block, sizeof block, (off_t)off), (ssize_t)sizeof block);
    }
    close(fd);
}

static uint8_t *read_image(const char *path, uint64_t size)
{
    uint8_t *buf = tm_malloc(size);
    cr_assert_not_null(buf);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, buf, size, 0), (ssize_t)size);
    close(fd);
    return buf;
}

/* The tap on image as disk d0 of machine, with extra arguments (NULL:
 * none); its NBD URL into url. */
static void start_tap(at_child_t *c, const char *machine, const char *secret, const char *image,
                      const char *const *extra, char *url, size_t urllen)
{
    static char disk_arg[PATH_MAX + 8];
    snprintf(disk_arg, sizeof disk_arg, "d0=%s", image);
    const char *args[20] = {"agent",  "tap",        "--server", its_addr(srv), "--machine",   machine,
                            "--secret-file", secret, "--disk",  disk_arg,      "--listen",    "127.0.0.1:0"};
    unsigned n = 12;
    for (; extra && *extra; extra++) {
        cr_assert_lt(n, 18);
        args[n++] = *extra;
    }
    args[n] = NULL;
    at_spawn(c, args);
    cr_assert(at_wait(c, false, "tap: listening on 127.0.0.1:", WAIT_MS), "%s", c->err);
    const char *p = strstr(c->out, "127.0.0.1:") + strlen("127.0.0.1:");
    snprintf(url, urllen, "nbd://127.0.0.1:%d/d0", atoi(p));
}

/* qemu-io with up to 16 commands; its exit code, its output into out (may
 * be NULL; tm_free it). */
static int qemu_io(const char *url, const char *const *cmds, char **out)
{
    const char *args[40] = {"qemu-io", "-f", "raw", url};
    unsigned n = 4;
    for (; *cmds; cmds++) {
        cr_assert_lt(n, 36);
        args[n++] = "-c";
        args[n++] = *cmds;
    }
    args[n] = NULL;
    static at_child_t q; /* static: at_teardown may look at it after a failed assertion */
    at_spawn(&q, args);
    int code = at_finish(&q, WAIT_MS);
    if (out) {
        size_t a = strlen(q.out), b = strlen(q.err);
        *out = tm_malloc(a + b + 2);
        cr_assert_not_null(*out);
        snprintf(*out, a + b + 2, "%s\n%s", q.out, q.err);
    }
    at_child_free(&q);
    return code;
}

static void qemu_ok(const char *url, const char *const *cmds)
{
    char *out;
    int code = qemu_io(url, cmds, &out);
    cr_assert_eq(code, 0, "qemu-io %s: exit %d:\n%s", cmds[0], code, out);
    tm_free(out);
}

/* Poll (bounded) until ingest has every record of machine up to seq durable. */
static void wait_durable(const char *machine, uint64_t seq)
{
    uint64_t deadline = tm_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
    ingest_machine_info_t mi = {0};
    for (;;) {
        if (its_machine(srv, machine, &mi) == 0 && mi.durable_seq >= seq)
            return;
        cr_assert_lt(tm_mono_ns(), deadline, "machine %s durable only up to %llu, %llu expected", machine,
                     (unsigned long long)mi.durable_seq, (unsigned long long)seq);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a state, with a deadline */
    }
}

/* Ask for the STOP once the agent is connected (polled, bounded). */
static void stop_when_connected(const char *machine, uint64_t id, const char *name, const char *reason)
{
    uint64_t deadline = tm_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
    int rc;
    while ((rc = its_request_stop(srv, machine, id, name, reason)) == -ENOTCONN && tm_mono_ns() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling for the agent's session, with a deadline */
    }
    cr_assert_eq(rc, 0, "ingest_request_stop: %s", tm_errname(rc));
}

/* The sequence in the agent's "final tag 'NAME' (id ID) added to the stream
 * at sequence S" line, once it is there. */
static uint64_t wait_final_tag(at_child_t *c, const char *name, uint64_t id)
{
    char needle[160];
    snprintf(needle, sizeof needle, "final tag '%s' (id %llu) added to the stream at sequence ", name,
             (unsigned long long)id);
    cr_assert(at_wait(c, true, needle, WAIT_MS), "no final tag %s:\n%s", name, c->err);
    return strtoull(strstr(c->err, needle) + strlen(needle), NULL, 10);
}

/* ---- rebuilding the disk from the journal ---- */

typedef struct rebuild {
    uint8_t *disk;
    uint64_t size;
    /* the image as it must be at each final tag */
    uint64_t tag_id[2];
    const uint8_t *want[2];
    uint64_t tag_seq[2];
    bool seen[2];
    uint64_t synced_seq;   /* the disk's SYNCED (its initial copy done) */
    uint64_t writes_between; /* write, zero, trim records between the two tags */
    uint64_t last_seq;
} rebuild_t;

static void first_difference(const uint8_t *a, const uint8_t *b, uint64_t size, const char *what)
{
    for (uint64_t i = 0; i < size; i++)
        cr_assert_eq(a[i], b[i], "%s: byte %llu is 0x%02x, the image has 0x%02x", what, (unsigned long long)i, a[i],
                     b[i]);
}

static void rebuild_rec(uint64_t seq, const wire_entry_t *e, void *arg)
{
    rebuild_t *r = arg;
    r->last_seq = seq;
    if (e->kind == WIRE_R_SYNCED)
        r->synced_seq = seq;
    if (e->kind == WIRE_R_WRITE || e->kind == WIRE_R_ZERO || e->kind == WIRE_R_TRIM) {
        if (r->seen[0] && !r->seen[1])
            r->writes_between++;
        at_apply(r->disk, r->size, e);
        return;
    }
    if (e->kind != WIRE_R_TAG)
        return;
    for (unsigned k = 0; k < 2; k++) {
        if (!r->want[k] || e->id != r->tag_id[k])
            continue;
        cr_assert(!r->seen[k], "final tag %llu twice", (unsigned long long)e->id);
        cr_assert_eq(e->tag_kind, WIRE_TAG_CRASH, "the final tag is a crash tag");
        r->seen[k] = true;
        r->tag_seq[k] = seq;
        char what[64];
        snprintf(what, sizeof what, "at final tag %llu", (unsigned long long)e->id);
        first_difference(r->disk, r->want[k], r->size, what);
    }
}

/* ---- the tests ---- */

static uint8_t pre_content(uint64_t off)
{
    /* 256 KiB of data at 2 MiB before the agent starts: its initial copy */
    return off >= (2u << 20) && off < (2u << 20) + (256u << 10) ? (uint8_t)(0x50 + off / 4096 % 16) : 0;
}

Test(agent_stop, tap_final_tag_then_eperm_until_resume)
{
    const uint64_t size = 16u << 20;
    const char *secret = at_path("secret"), *img = at_path("disk.img");
    its_opts_t o = {.gated = true};
    start_server_opts("vm1", secret, &o);
    make_image(img, size, pre_content);
    char url[128];
    /* A small stream (256 KiB) and the debug log, which says when a write
     * waits for room in it. */
    setenv("TIDEMARK_LOG", "debug", 1);
    start_tap(&tap, "vm1", secret, img, (const char *const[]){"--queue", "256K", NULL}, url, sizeof url);
    unsetenv("TIDEMARK_LOG");
    cr_assert(at_wait(&tap, true, "initial copy complete and durable at the appliance", WAIT_MS), "%s", tap.err);

    /* Writes of every kind, completed before the STOP: aligned, unaligned
     * (streamed as the aligned range read back), write-zeroes. */
    qemu_ok(url, (const char *const[]){"write -P 0x11 0 64k", "write -P 0x22 1M 128k", "write -P 0x33 5000 1000",
                                       "write -z 2M 64k", NULL});

    /* Writes accepted but not done when the STOP comes: the journal holds
     * its next batch back, so nothing is acknowledged, the 256 KiB stream
     * fills, and the rest of 16 concurrent writes (1 MiB) wait for room. */
    its_gate_arm();
    const char *burst[18];
    char cmds[16][48];
    for (int k = 0; k < 16; k++) {
        snprintf(cmds[k], sizeof cmds[k], "aio_write -P %d %dk 64k", 0x60 + k, 8192 + 64 * k);
        burst[k] = cmds[k];
    }
    burst[16] = "aio_flush";
    burst[17] = NULL;
    const char *args[40] = {"qemu-io", "-f", "raw", url};
    unsigned n = 4;
    for (int k = 0; burst[k]; k++) {
        args[n++] = "-c";
        args[n++] = burst[k];
    }
    args[n] = NULL;
    at_spawn(&bg, args);
    char last[96];
    snprintf(last, sizeof last, "a write to d0 at %u waits for room in the stream", (8192u + 64u * 15u) << 10);
    cr_assert(at_wait(&tap, true, last, WAIT_MS), "the last write never waited for room:\n%s", tap.err);
    its_gate_wait();

    cr_assert_eq(its_request_stop(srv, "vm1", 501, "final-501", "planned failover test"), 0);
    cr_assert(at_wait(&tap, true, "final tag 'final-501' (id 501): waiting until every write accepted", WAIT_MS),
              "%s", tap.err);
    cr_assert_null(strstr(tap.err, "final tag 'final-501' (id 501) added"), "the tag came before the writes:\n%s",
                   tap.err);
    /* A write made now is refused at once, whatever waits. (This qemu-io
     * ends only once the journal goes on: it flushes when it closes the
     * disk, and a flush waits for the appliance's acknowledgement.) */
    static at_child_t refused;
    at_spawn(&refused, (const char *const[]){"qemu-io", "-f", "raw", url, "-c", "write -P 0x77 6M 64k", NULL});
    cr_assert(at_wait(&tap, true, "tap: refusing writes (EPERM): replication of this machine is stopped by the "
                                  "appliance (planned failover test)", WAIT_MS), "%s", tap.err);

    /* The journal goes on: every write accepted before completes as usual,
     * then the final tag comes. */
    its_gate_open();
    cr_assert_neq(at_finish(&refused, WAIT_MS), 0, "a write went through while stopped:\n%s", refused.out);
    cr_assert(strstr(refused.out, "write failed: Operation not permitted"), "qemu-io says:\n%s\n%s", refused.out,
              refused.err);
    at_child_free(&refused);
    cr_assert_eq(at_finish(&bg, WAIT_MS), 0, "an accepted write failed:\n%s\n%s", bg.out, bg.err);
    unsigned wrote = 0;
    for (const char *p = bg.out; (p = strstr(p, "wrote 65536/65536 bytes")); p++)
        wrote++;
    cr_assert_eq(wrote, 16, "%s", bg.out);
    wait_final_tag(&tap, "final-501", 501);
    /* Stopped: the image is what the appliance holds at the tag. */
    uint8_t *at_stop = read_image(img, size);

    char *out;
    int code = qemu_io(url, (const char *const[]){"write -z 7M 4k", "discard 7M 4k", NULL}, &out);
    cr_assert_neq(code, 0, "write-zeroes went through while stopped:\n%s", out);
    tm_free(out);
    /* Flushes are not writes. */
    qemu_ok(url, (const char *const[]){"flush", NULL});
    uint8_t *now = read_image(img, size);
    first_difference(now, at_stop, size, "while stopped");
    tm_free(now);

    /* A second STOP while stopped: another tag, nothing between. */
    cr_assert_eq(its_request_stop(srv, "vm1", 502, "final-502", "again"), 0);
    wait_final_tag(&tap, "final-502", 502);
    ingest_machine_info_t mi;
    cr_assert_eq(its_machine(srv, "vm1", &mi), 0);
    cr_assert(mi.stopped && mi.connected);

    cr_assert_eq(its_request_resume(srv, "vm1"), 0);
    cr_assert(at_wait(&tap, true, "tap: taking writes again", WAIT_MS), "%s", tap.err);
    qemu_ok(url, (const char *const[]){"write -P 0x44 6M 64k", NULL});

    /* A clean stop: everything acknowledged. */
    kill(tap.pid, SIGTERM);
    cr_assert_eq(at_finish(&tap, WAIT_MS), 0, "tap:\n%s", tap.err);
    its_stop(srv);
    srv = NULL;

    rebuild_t r = {.size = size, .tag_id = {501, 502}, .want = {at_stop, at_stop}};
    r.disk = tm_calloc(1, size);
    cr_assert_not_null(r.disk);
    at_walk_journal(at_path("data"), "vm1", rebuild_rec, &r);
    cr_assert(r.seen[0] && r.seen[1], "final tags in the journal: %d %d", r.seen[0], r.seen[1]);
    cr_assert(r.synced_seq && r.synced_seq < r.tag_seq[0], "the copy's SYNCED at %llu, the tag at %llu",
              (unsigned long long)r.synced_seq, (unsigned long long)r.tag_seq[0]);
    cr_assert(r.tag_seq[1] > r.tag_seq[0]);
    cr_assert_eq(r.writes_between, 0, "%llu writes between the two final tags", (unsigned long long)r.writes_between);
    uint8_t *end = read_image(img, size);
    first_difference(r.disk, end, size, "at the end of the stream");
    tm_free(end);
    tm_free(r.disk);
    tm_free(at_stop);
    at_child_free(&bg);
    at_child_free(&tap);
}

static uint8_t everywhere(uint64_t off)
{
    return (uint8_t)(1 + off / 4096 % 251);
}

Test(agent_stop, final_tag_waits_for_the_initial_copy)
{
    const uint64_t size = 24u << 20;
    const char *secret = at_path("secret"), *img = at_path("disk.img");
    start_server("vm2", secret);
    make_image(img, size, everywhere);
    char url[128];
    /* A slow copy (about 3 s): the STOP comes in the middle of it. */
    start_tap(&tap, "vm2", secret, img, (const char *const[]){"--copy-rate", "8M", NULL}, url, sizeof url);
    stop_when_connected("vm2", 7, "final-7", "planned failover during the copy");
    /* The agent took it (it may come right after the WELCOME): from here
     * on every write is refused. */
    cr_assert(at_wait(&tap, true, "stops replication of machine vm2", WAIT_MS), "%s", tap.err);
    char *out;
    int code = qemu_io(url, (const char *const[]){"write -P 0x99 0 4k", NULL}, &out);
    cr_assert_neq(code, 0, "a write went through while stopped:\n%s", out);
    tm_free(out);
    wait_final_tag(&tap, "final-7", 7);
    /* In the log: the STOP, the end of the copy, the tag. */
    const char *stop = strstr(tap.err, "stops replication of machine vm2");
    const char *copied = strstr(tap.err, "initial copy read");
    const char *tag = strstr(tap.err, "final tag 'final-7' (id 7) added");
    cr_assert(stop && copied && tag && stop < copied && copied < tag, "out of order:\n%s", tap.err);
    cr_assert_null(strstr(tap.err, "final tag 'final-7' (id 7): dropped"), "%s", tap.err);
    uint8_t *image = read_image(img, size);
    kill(tap.pid, SIGTERM);
    cr_assert_eq(at_finish(&tap, WAIT_MS), 0, "tap:\n%s", tap.err);
    its_stop(srv);
    srv = NULL;

    rebuild_t r = {.size = size, .tag_id = {7}, .want = {image}};
    r.disk = tm_calloc(1, size);
    cr_assert_not_null(r.disk);
    at_walk_journal(at_path("data"), "vm2", rebuild_rec, &r);
    cr_assert(r.seen[0], "no final tag in the journal");
    cr_assert(r.synced_seq && r.synced_seq < r.tag_seq[0], "SYNCED at %llu, the final tag at %llu",
              (unsigned long long)r.synced_seq, (unsigned long long)r.tag_seq[0]);
    tm_free(r.disk);
    tm_free(image);
    at_child_free(&tap);
}

/* ---- replay ---- */

typedef struct replay_walk {
    const agent_workload_t *w;
    agent_wl_gen_t gen;
    uint8_t *buf;
    uint64_t next;
    uint64_t stop_seq; /* the final tag's; the probe tag follows it */
} replay_walk_t;

static void replay_rec(uint64_t seq, const wire_entry_t *e, void *arg)
{
    replay_walk_t *c = arg;
    cr_assert_eq(seq, c->next, "sequence %llu where %llu was due", (unsigned long long)seq,
                 (unsigned long long)c->next);
    c->next++;
    if (seq == c->stop_seq || seq == c->stop_seq + 1) {
        cr_assert_eq(e->kind, WIRE_R_TAG, "seq %llu: kind %u, a tag expected (nothing is generated while stopped)",
                     (unsigned long long)seq, e->kind);
        cr_assert_eq(e->tag_kind, WIRE_TAG_CRASH);
        cr_assert_eq(e->id, seq == c->stop_seq ? 601u : 602u, "seq %llu: tag id %llu", (unsigned long long)seq,
                     (unsigned long long)e->id);
        return;
    }
    wire_entry_t want;
    char name[WIRE_MAX_NAME + 1];
    agent_workload_record(c->w, &c->gen, seq, &want, c->buf, name);
    cr_assert_eq(e->kind, want.kind, "seq %llu kind", (unsigned long long)seq);
    cr_assert_eq(e->offset, want.offset, "seq %llu offset", (unsigned long long)seq);
    cr_assert_eq(e->length, want.length, "seq %llu length", (unsigned long long)seq);
    if (want.kind == WIRE_R_WRITE)
        cr_assert_eq(memcmp(e->data, want.data, want.length), 0, "seq %llu content", (unsigned long long)seq);
}

Test(agent_stop, replay_generates_nothing_while_stopped)
{
    const char *secret = at_path("secret");
    const char *spec = "disks=1,size=64M,bs=4k,rate=1M,count=1000000";
    start_server("rp1", secret);
    at_spawn(&ag, (const char *const[]){"agent", "replay", "--server", its_addr(srv), "--machine", "rp1",
                                        "--secret-file", secret, "--workload", spec, NULL});
    wait_durable("rp1", 50);
    cr_assert_eq(its_request_stop(srv, "rp1", 601, "final-601", "planned failover"), 0);
    uint64_t s = wait_final_tag(&ag, "final-601", 601);
    cr_assert_gt(s, 50);
    /* Stopped: the next record is whatever the appliance asks for next. */
    cr_assert_eq(its_request_tag(srv, "rp1", WIRE_TAG_CRASH, 602, "probe"), 0);
    cr_assert(at_wait(&ag, true, "tag 'probe' (id 602) added to the stream", WAIT_MS), "%s", ag.err);
    wait_durable("rp1", s + 1);
    cr_assert_eq(its_request_resume(srv, "rp1"), 0);
    cr_assert(at_wait(&ag, true, "replay: generating again", WAIT_MS), "%s", ag.err);
    wait_durable("rp1", s + 50);
    at_kill(&ag, SIGKILL);
    its_stop(srv);
    srv = NULL;

    agent_workload_t w;
    char err[256];
    cr_assert_eq(agent_workload_parse(spec, &w, err, sizeof err), 0, "%s", err);
    replay_walk_t c = {.w = &w, .buf = tm_malloc(w.bs_max), .next = 1, .stop_seq = s};
    cr_assert_not_null(c.buf);
    at_walk_journal(at_path("data"), "rp1", replay_rec, &c);
    cr_assert_geq(c.next, s + 51, "the journal ends at %llu", (unsigned long long)c.next - 1);
    tm_free(c.buf);
    at_child_free(&ag);
}

Test(agent_stop, tap_says_why_when_its_machine_is_retired)
{
    const char *secret = at_path("secret"), *img = at_path("disk.img");
    start_server("vm3", secret);
    make_image(img, 4u << 20, NULL);
    char url[128];
    start_tap(&tap, "vm3", secret, img, NULL, url, sizeof url);
    cr_assert(at_wait(&tap, true, "initial copy complete and durable at the appliance", WAIT_MS), "%s", tap.err);
    qemu_ok(url, (const char *const[]){"write -P 0x21 0 64k", NULL});
    cr_assert_eq(its_retire(srv, "vm3", "failover committed by job 4"), 0);
    char want[160];
    snprintf(want, sizeof want, "server %s: replication of this machine (vm3) was stopped on the appliance: "
             "failover committed by job 4; retrying every", its_addr(srv));
    cr_assert(at_wait(&tap, true, want, WAIT_MS), "%s", tap.err);
    at_kill(&tap, SIGKILL);
    at_child_free(&tap);
}
