/*
 * Failover flows end to end with the real binaries (api/failover.h): a
 * `tidemark serve`, tap agents over disk images written by qemu-io, and
 * the `tidemark failover | change-point | commit | jobs` commands, the
 * failed-over disks read and written by qemu-img and qemu-io over NBD.
 *
 *   - failover at latest: the served disk equals the source image; it is
 *     writable; the source keeps replicating; a second failover is refused;
 *     change-point drops what was written and serves the new point; what
 *     was written and flushed survives a SIGKILL of the appliance; commit
 *     makes the disk whole, deletes the points and refuses the agent.
 *   - planned failover: the source refuses writes afterwards, and the
 *     failed-over disk is byte-identical to the source image.
 *   - a planned failover cancelled while the agent cannot answer: the job
 *     ends cancelled, the agent is resumed, and the machine replicates on.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "tests/agent/at.h"

#define WAIT_MS 60000
#define MIB (1u << 20)
#define IMG_SIZE (8u * MIB)

TestSuite(failover, .init = at_setup, .fini = at_teardown, .timeout = 300);

typedef struct fx {
    char data[PATH_MAX]; /* a copy: at_path's buffers are reused */
    at_child_t srv;
    char agents[64], api[64], nbd[64];
} fx_t;

/* "PREFIX ADDR" in the serve's stdout into out. */
static void addr_after(const at_child_t *c, const char *prefix, char *out, size_t len)
{
    const char *p = strstr(c->out, prefix);
    cr_assert_not_null(p, "no '%s' in:\n%s", prefix, c->out);
    p += strlen(prefix);
    size_t n = strcspn(p, " \n");
    cr_assert_lt(n, len);
    memcpy(out, p, n);
    out[n] = '\0';
}

static void serve_up(fx_t *f, const char *agents)
{
    at_spawn(&f->srv, (const char *[]){"serve", "--data", f->data, "--agents", agents, "--api", "127.0.0.1:0",
                                       "--nbd", "127.0.0.1:0", NULL});
    cr_assert(at_wait(&f->srv, false, "serving", 30000), "serve did not start:\n%s\n%s", f->srv.out, f->srv.err);
    addr_after(&f->srv, "agents on ", f->agents, sizeof f->agents);
    addr_after(&f->srv, "api on ", f->api, sizeof f->api);
    addr_after(&f->srv, "nbd on ", f->nbd, sizeof f->nbd);
}

static void make_image(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, IMG_SIZE), 0);
    close(fd);
}

static void start_tap(at_child_t *c, const fx_t *f, const char *machine, const char *secret, const char *img,
                      char *url, size_t len)
{
    static char disk_arg[PATH_MAX + 8];
    snprintf(disk_arg, sizeof disk_arg, "d0=%s", img);
    at_spawn(c, (const char *[]){"agent", "tap", "--server", f->agents, "--machine", machine, "--secret-file", secret,
                                 "--disk", disk_arg, "--listen", "127.0.0.1:0", NULL});
    cr_assert(at_wait(c, false, "tap: listening on 127.0.0.1:", WAIT_MS), "%s", c->err);
    const char *p = strstr(c->out, "127.0.0.1:") + strlen("127.0.0.1:");
    snprintf(url, len, "nbd://127.0.0.1:%d/d0", atoi(p));
}

/* qemu-io with cmds on url; its exit status. */
static int qemu_io(const char *url, const char *const *cmds, at_child_t *keep)
{
    const char *args[32] = {"qemu-io", "-f", "raw", "-t", "none", url};
    unsigned n = 6;
    for (unsigned i = 0; cmds[i]; i++) {
        args[n++] = "-c";
        args[n++] = cmds[i];
    }
    args[n] = NULL;
    static at_child_t q;
    at_spawn(&q, args);
    int code = at_finish(&q, WAIT_MS);
    if (keep)
        *keep = q;
    else
        at_child_free(&q);
    return code;
}

static void qemu_io_ok(const char *url, const char *const *cmds)
{
    static at_child_t q;
    int code = qemu_io(url, cmds, &q);
    cr_assert_eq(code, 0, "qemu-io on %s:\n%s\n%s", url, q.out, q.err);
    cr_assert(!strstr(q.out, "error") && !strstr(q.out, "failed"), "qemu-io on %s:\n%s", url, q.out);
    at_child_free(&q);
}

/* The whole export into a buffer (qemu-img convert to a file). */
static uint8_t *read_export(const fx_t *f, const char *name)
{
    char uri[256], out[PATH_MAX + 16];
    /* not at_path: its few buffers are reused, and the tests keep some */
    snprintf(out, sizeof out, "%s/export.raw", at_dir);
    snprintf(uri, sizeof uri, "nbd://%s/%s", f->nbd, name);
    unlink(out);
    static at_child_t c;
    at_spawn(&c, (const char *[]){"qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out, NULL});
    cr_assert_eq(at_finish(&c, WAIT_MS), 0, "qemu-img convert %s:\n%s", uri, c.err);
    at_child_free(&c);
    uint8_t *p = tm_malloc(IMG_SIZE);
    FILE *fp = fopen(out, "rb");
    cr_assert(p && fp);
    cr_assert_eq(fread(p, 1, IMG_SIZE, fp), IMG_SIZE);
    fclose(fp);
    return p;
}

static uint8_t *read_image(const char *path)
{
    uint8_t *p = tm_malloc(IMG_SIZE);
    FILE *fp = fopen(path, "rb");
    cr_assert(p && fp, "%s", path);
    cr_assert_eq(fread(p, 1, IMG_SIZE, fp), IMG_SIZE);
    fclose(fp);
    return p;
}

static void assert_same(const uint8_t *got, const uint8_t *want, const char *what)
{
    for (size_t i = 0; i < IMG_SIZE; i++)
        cr_assert_eq(got[i], want[i], "%s: byte %zu is %#x, expected %#x", what, i, got[i], want[i]);
}

static bool holds(const uint8_t *p, size_t off, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[off + i] != v)
            return false;
    return true;
}

/* `tidemark CMD... --json --api --data`: its exit status, its last line
 * of stdout as JSON in *out (NULL when none). */
static int cli_json(const fx_t *f, const char *const *args, json_t **out, at_child_t *keep)
{
    const char *argv[40];
    unsigned n = 0;
    for (unsigned i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n++] = "--json";
    argv[n++] = "--api";
    argv[n++] = f->api;
    argv[n++] = "--data";
    argv[n++] = f->data;
    argv[n] = NULL;
    static at_child_t c;
    at_spawn(&c, argv);
    int code = at_finish(&c, 2 * WAIT_MS);
    /* one JSON document (jobs, status, points), or progress lines then the
     * job on the last line (failover, change-point, commit) */
    *out = json_loads(c.out, 0, NULL);
    const char *last = c.out, *p;
    while ((p = strchr(last, '\n')) && p[1])
        last = p + 1;
    if (!*out && *last == '{')
        *out = json_loads(last, 0, NULL);
    if (keep)
        *keep = c;
    else
        at_child_free(&c);
    return code;
}

static const char *jstr(const json_t *o, const char *path0, const char *key)
{
    const json_t *v = path0 ? json_object_get(o, path0) : o;
    return json_string_value(json_object_get(v, key));
}

/* The job's machine 0. */
static const json_t *machine0(const json_t *answer)
{
    return json_array_get(json_object_get(json_object_get(answer, "job"), "machines"), 0);
}

/* Wait until the machine's newest point covers everything the tap sent
 * (GET points/latest via `tidemark points` would cut one; ask for the
 * export at latest instead, which processes first). */
static uint8_t *read_latest(const fx_t *f, const char *machine)
{
    char name[128];
    snprintf(name, sizeof name, "%s/d0@latest", machine);
    return read_export(f, name);
}

Test(failover, failover_change_point_restart_and_commit)
{
    static fx_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.data, sizeof f.data, "%s", at_path("data"));
    const char *secret = at_path("secret"), *img = at_path("disk.img");
    char url[128];
    static at_child_t tap;
    make_image(img);
    at_machine_add(f.data, "vm1", secret);
    serve_up(&f, "127.0.0.1:0");
    start_tap(&tap, &f, "vm1", secret, img, url, sizeof url);
    cr_assert(at_wait(&tap, true, "initial copy complete and durable", WAIT_MS), "%s", tap.err);
    qemu_io_ok(url, (const char *[]){"write -P 0x11 0 1M", "write -P 0x12 3M 512k", "flush", NULL});

    /* failover at latest: the disk as the source wrote it, served at once */
    json_t *j;
    int code = cli_json(&f, (const char *[]){"failover", "vm1", "--point", "latest", NULL}, &j, NULL);
    cr_assert_eq(code, 0, "failover: %s", j ? json_dumps(j, 0) : "no JSON");
    cr_assert_str_eq(jstr(machine0(j), NULL, "state"), "succeeded");
    const char *uri = json_string_value(json_object_get(json_array_get(json_object_get(machine0(j), "exports"), 0), "uri"));
    cr_assert(uri && strstr(uri, "/vm1/d0@failover"), "%s", json_dumps(j, 0));
    json_decref(j);
    uint8_t *src = read_image(img), *got = read_export(&f, "vm1/d0@failover");
    assert_same(got, src, "the failed-over disk against the source");
    tm_free(got);

    /* writable; the source replicates on meanwhile */
    char fo_url[160];
    snprintf(fo_url, sizeof fo_url, "nbd://%s/vm1/d0@failover", f.nbd);
    qemu_io_ok(fo_url, (const char *[]){"write -P 0x5a 2M 64k", "flush", "read -P 0x5a 2M 64k", NULL});
    qemu_io_ok(url, (const char *[]){"write -P 0x22 5M 256k", "flush", NULL});
    got = read_latest(&f, "vm1");
    cr_assert(holds(got, 5 * MIB, 256 << 10, 0x22), "the source's write after the failover was not replicated");
    cr_assert(holds(got, 2 * MIB, 64 << 10, 0), "the failed-over disk's write reached the source's points");
    tm_free(got);

    /* a second failover is refused; the machine shows its failover */
    code = cli_json(&f, (const char *[]){"failover", "vm1", "--point", "latest", NULL}, &j, NULL);
    cr_assert_eq(code, 1);
    cr_assert_str_eq(jstr(machine0(j), "error", "code"), "conflict", "%s", json_dumps(j, 0));
    json_decref(j);

    /* change-point to latest: the new write of the source, none of the failed-over disk's */
    code = cli_json(&f, (const char *[]){"change-point", "vm1", "--point", "latest", NULL}, &j, NULL);
    cr_assert_eq(code, 0, "change-point: %s", j ? json_dumps(j, 0) : "no JSON");
    json_decref(j);
    got = read_export(&f, "vm1/d0@failover");
    cr_assert(holds(got, 5 * MIB, 256 << 10, 0x22));
    cr_assert(holds(got, 2 * MIB, 64 << 10, 0), "a write made before change-point survived it");
    cr_assert(holds(got, 0, MIB, 0x11));
    tm_free(got);

    /* a flushed write survives a SIGKILL of the appliance; the disk is served again */
    qemu_io_ok(fo_url, (const char *[]){"write -P 0x6b 6M 128k", "flush", NULL});
    at_kill(&f.srv, SIGKILL);
    at_finish(&f.srv, WAIT_MS);
    at_child_free(&f.srv);
    serve_up(&f, f.agents);
    snprintf(fo_url, sizeof fo_url, "nbd://%s/vm1/d0@failover", f.nbd);
    got = read_export(&f, "vm1/d0@failover");
    cr_assert(holds(got, 6 * MIB, 128 << 10, 0x6b), "a flushed write to the failed-over disk was lost");
    cr_assert(holds(got, 5 * MIB, 256 << 10, 0x22));
    tm_free(got);

    /* commit: the disk is whole and still served, the points go, the agent is refused */
    code = cli_json(&f, (const char *[]){"commit", "vm1", NULL}, &j, NULL);
    cr_assert_eq(code, 0, "commit: %s", j ? json_dumps(j, 0) : "no JSON");
    json_decref(j);
    uint8_t *before = read_export(&f, "vm1/d0@failover");
    cr_assert(holds(before, 6 * MIB, 128 << 10, 0x6b) && holds(before, 0, MIB, 0x11));
    code = cli_json(&f, (const char *[]){"points", "vm1", NULL}, &j, NULL);
    cr_assert_eq(code, 0);
    cr_assert_eq(json_array_size(json_object_get(j, "points")), 0, "%s", json_dumps(j, 0));
    json_decref(j);
    code = cli_json(&f, (const char *[]){"commit", "vm1", NULL}, &j, NULL);
    cr_assert_eq(code, 1, "a second commit succeeded");
    json_decref(j);
    cr_assert(at_wait(&tap, true, "stopped", WAIT_MS), "the agent was not refused:\n%s", tap.err);
    /* and after a restart too: served, and the agent still refused */
    kill(f.srv.pid, SIGTERM);
    cr_assert_eq(at_finish(&f.srv, WAIT_MS), 0, "%s", f.srv.err);
    at_child_free(&f.srv);
    serve_up(&f, f.agents);
    got = read_export(&f, "vm1/d0@failover");
    assert_same(got, before, "the committed disk after a restart");
    tm_free(got);
    tm_free(before);
    tm_free(src);
    at_kill(&tap, SIGKILL);
    at_finish(&tap, WAIT_MS);
    at_child_free(&tap);
}

Test(failover, planned_failover_is_byte_identical)
{
    static fx_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.data, sizeof f.data, "%s", at_path("data"));
    const char *secret = at_path("secret"), *img = at_path("disk.img");
    char url[128];
    static at_child_t tap;
    make_image(img);
    at_machine_add(f.data, "vm2", secret);
    serve_up(&f, "127.0.0.1:0");
    start_tap(&tap, &f, "vm2", secret, img, url, sizeof url);
    cr_assert(at_wait(&tap, true, "initial copy complete and durable", WAIT_MS), "%s", tap.err);
    /* writeback: writes complete before they are durable anywhere */
    srand(0x9a11);
    for (int i = 0; i < 20; i++) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "write -P %d %d 64k", 1 + rand() % 250, (rand() % 120) * 64 * 1024);
        qemu_io_ok(url, (const char *[]){cmd, NULL});
    }

    /* a writer busy while the source is stopped: what it wrote before the
     * stop must be in the failed-over disk, what came after must fail */
    const char *script = at_path("writer.cmds");
    FILE *sf = fopen(script, "w");
    cr_assert_not_null(sf);
    /* long enough to outlast the failover on a slow machine; killed after it */
    for (int i = 0; i < 3000; i++)
        fprintf(sf, "write -P %d %d 64k\nsleep 10\n", 1 + rand() % 250, (rand() % 120) * 64 * 1024);
    fclose(sf);
    char shell[PATH_MAX + 256];
    snprintf(shell, sizeof shell, "exec qemu-io -f raw -t writeback %s < %s", url, script);
    const char *wargs[] = {"/bin/sh", "-c", shell, NULL};
    static at_child_t writer;
    at_spawn(&writer, wargs);
    cr_assert(at_wait(&writer, false, "wrote 65536/65536 bytes", WAIT_MS), "%s", writer.err);

    json_t *j;
    int code = cli_json(&f, (const char *[]){"failover", "vm2", "--planned", NULL}, &j, NULL);
    cr_assert_eq(code, 0, "planned failover: %s", j ? json_dumps(j, 0) : "no JSON");
    json_decref(j);
    cr_assert(at_wait(&writer, false, "failed", WAIT_MS), "the writer's writes never failed once the source "
              "stopped:\n%s", writer.out);
    at_kill(&writer, SIGKILL);
    at_finish(&writer, WAIT_MS);
    at_child_free(&writer);
    /* the source takes no more writes */
    static at_child_t q;
    code = qemu_io(url, (const char *[]){"write -P 0x77 0 4k", "flush", NULL}, &q);
    cr_assert(code != 0 || strstr(q.out, "failed") || strstr(q.err, "failed") || strstr(q.out, "error"),
              "the stopped source took a write:\n%s\n%s", q.out, q.err);
    at_child_free(&q);
    uint8_t *src = read_image(img), *got = read_export(&f, "vm2/d0@failover");
    assert_same(got, src, "planned failover: the failed-over disk against the source");
    tm_free(got);
    tm_free(src);
}

Test(failover, a_cancelled_planned_failover_leaves_the_machine_replicating)
{
    static fx_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.data, sizeof f.data, "%s", at_path("data"));
    const char *secret = at_path("secret"), *img = at_path("disk.img");
    char url[128];
    static at_child_t tap;
    make_image(img);
    at_machine_add(f.data, "vm3", secret);
    serve_up(&f, "127.0.0.1:0");
    start_tap(&tap, &f, "vm3", secret, img, url, sizeof url);
    cr_assert(at_wait(&tap, true, "initial copy complete and durable", WAIT_MS), "%s", tap.err);
    qemu_io_ok(url, (const char *[]){"write -P 0x31 0 64k", "flush", NULL});

    /* the agent cannot answer: the job waits for its drain */
    kill(tap.pid, SIGSTOP);
    static at_child_t fo;
    at_spawn(&fo, (const char *[]){"failover", "vm3", "--planned", "--json", "--api", f.api, "--data", f.data,
                                   NULL});
    json_t *j = NULL;
    const char *id = NULL;
    for (int i = 0; i < 600 && !id; i++) {
        json_decref(j);
        cr_assert_eq(cli_json(&f, (const char *[]){"jobs", NULL}, &j, NULL), 0);
        const json_t *job0 = json_array_get(json_object_get(j, "jobs"), 0);
        if (job0 && strcmp(jstr(job0, NULL, "action"), "planned-failover") == 0)
            id = jstr(job0, NULL, "id");
        else
            usleep(50 * 1000);
    }
    cr_assert_not_null(id, "no planned-failover job appeared");
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%s", id);
    json_decref(j);
    cr_assert_eq(cli_json(&f, (const char *[]){"jobs", idbuf, "--cancel", NULL}, &j, NULL), 0);
    json_decref(j);
    int code = at_finish(&fo, WAIT_MS);
    cr_assert_eq(code, 1, "the cancelled job's command: %s", fo.out);
    cr_assert(strstr(fo.out, "\"cancelled\""), "%s", fo.out);
    at_child_free(&fo);
    kill(tap.pid, SIGCONT);

    /* not failed over; the agent takes writes and they replicate */
    cr_assert_eq(cli_json(&f, (const char *[]){"status", NULL}, &j, NULL), 0);
    cr_assert(json_is_null(json_object_get(json_array_get(json_object_get(j, "machines"), 0), "failover")), "%s",
              json_dumps(j, 0));
    json_decref(j);
    qemu_io_ok(url, (const char *[]){"write -P 0x32 1M 64k", "flush", NULL});
    uint8_t *got = read_latest(&f, "vm3");
    cr_assert(holds(got, MIB, 64 << 10, 0x32) && holds(got, 0, 64 << 10, 0x31),
              "the machine does not replicate after the cancel");
    tm_free(got);
}

Test(failover, exports_at_several_selectors_equal_the_source_as_it_was)
{
    static fx_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.data, sizeof f.data, "%s", at_path("data"));
    const char *secret = at_path("secret"), *img = at_path("disk.img");
    char url[128];
    static at_child_t tap;
    make_image(img);
    at_machine_add(f.data, "vm4", secret);
    serve_up(&f, "127.0.0.1:0");
    start_tap(&tap, &f, "vm4", secret, img, url, sizeof url);
    cr_assert(at_wait(&tap, true, "initial copy complete and durable", WAIT_MS), "%s", tap.err);

    /* three moments: the image then, and the point `latest` cut there */
    enum { N = 3 };
    uint8_t *then[N];
    char ids[N][24], times[N][64];
    srand(0x5e1ec7);
    for (int k = 0; k < N; k++) {
        for (int w = 0; w < 6; w++) {
            char cmd[64];
            snprintf(cmd, sizeof cmd, "write -P %d %d %dk", 1 + rand() % 250, (rand() % 100) * 64 * 1024,
                     4 << (rand() % 5));
            qemu_io_ok(url, (const char *[]){cmd, "flush", NULL});
        }
        then[k] = read_image(img);
        json_t *j;
        cr_assert_eq(cli_json(&f, (const char *[]){"export", "vm4", "--point", "latest", NULL}, &j, NULL), 0);
        snprintf(ids[k], sizeof ids[k], "%s", jstr(j, "point", "id"));
        snprintf(times[k], sizeof times[k], "%s", jstr(j, "point", "time"));
        json_decref(j);
    }
    for (int k = 0; k < N; k++) {
        char name[128], what[160];
        snprintf(name, sizeof name, "vm4/d0@%s", ids[k]);
        snprintf(what, sizeof what, "%s against the image at moment %d", name, k);
        uint8_t *got = read_export(&f, name);
        assert_same(got, then[k], what);
        tm_free(got);
        /* the same moment by time: the last batch received by then */
        snprintf(name, sizeof name, "vm4/d0@@%s", times[k]);
        snprintf(what, sizeof what, "%s against the image at moment %d", name, k);
        got = read_export(&f, name);
        assert_same(got, then[k], what);
        tm_free(got);
    }
    uint8_t *got = read_export(&f, "vm4/d0@latest-processed");
    assert_same(got, then[N - 1], "latest-processed against the image now");
    tm_free(got);

    /* a job over two machines, one of which cannot fail over (it never sent
     * anything): the other one does, and each is reported */
    at_machine_add(f.data, "idle", at_path("idle.secret"));
    json_t *j;
    int code = cli_json(&f, (const char *[]){"failover", "vm4", "idle", "--point", "latest-processed", NULL}, &j, NULL);
    cr_assert_eq(code, 1, "%s", j ? json_dumps(j, 0) : "no JSON");
    const json_t *jms = json_object_get(json_object_get(j, "job"), "machines");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(jms, 0), "state")), "succeeded", "%s",
                     json_dumps(j, 0));
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(jms, 1), "state")), "failed");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(json_array_get(jms, 1), "error"), "code")),
                     "unknown-machine", "%s", json_dumps(j, 0));
    cr_assert_str_eq(jstr(j, "job", "state"), "failed");
    json_decref(j);
    got = read_export(&f, "vm4/d0@failover");
    assert_same(got, then[N - 1], "vm4 failed over beside a machine that could not");
    tm_free(got);
    for (int k = 0; k < N; k++)
        tm_free(then[k]);
}

/* A failover with --shutdown to an earlier point: the source is stopped
 * first (it refuses writes afterwards), yet the disk served is the point
 * asked for, not the source's final state. */
Test(failover, a_shutdown_failover_goes_to_the_point_asked_for)
{
    static fx_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.data, sizeof f.data, "%s", at_path("data"));
    const char *secret = at_path("secret"), *img = at_path("disk.img");
    char url[128];
    static at_child_t tap;
    make_image(img);
    at_machine_add(f.data, "vm5", secret);
    serve_up(&f, "127.0.0.1:0");
    start_tap(&tap, &f, "vm5", secret, img, url, sizeof url);
    cr_assert(at_wait(&tap, true, "initial copy complete and durable", WAIT_MS), "%s", tap.err);
    qemu_io_ok(url, (const char *[]){"write -P 0x31 0 256k", "flush", NULL});
    uint8_t *then = read_image(img);
    json_t *j;
    cr_assert_eq(cli_json(&f, (const char *[]){"export", "vm5", "--point", "latest", NULL}, &j, NULL), 0);
    char id[24];
    snprintf(id, sizeof id, "%s", jstr(j, "point", "id"));
    json_decref(j);
    /* later writes: in the source, not in the point */
    qemu_io_ok(url, (const char *[]){"write -P 0x32 128k 256k", "flush", NULL});

    int code = cli_json(&f, (const char *[]){"failover", "vm5", "--point", id, "--shutdown", NULL}, &j, NULL);
    cr_assert_eq(code, 0, "failover --shutdown: %s", j ? json_dumps(j, 0) : "no JSON");
    const json_t *m = machine0(j);
    cr_assert_str_eq(jstr(m, "point", "id"), id, "%s", json_dumps(j, 0));
    const json_t *st = json_array_get(json_object_get(m, "steps"), 1);
    cr_assert_str_eq(jstr(st, NULL, "name"), "shutdown", "%s", json_dumps(j, 0));
    cr_assert_str_eq(jstr(st, NULL, "state"), "succeeded", "%s", json_dumps(j, 0));
    json_decref(j);
    static at_child_t q;
    code = qemu_io(url, (const char *[]){"write -P 0x77 0 4k", "flush", NULL}, &q);
    cr_assert(code != 0 || strstr(q.out, "failed") || strstr(q.err, "failed") || strstr(q.out, "error"),
              "the shut-down source took a write:\n%s\n%s", q.out, q.err);
    at_child_free(&q);
    uint8_t *got = read_export(&f, "vm5/d0@failover");
    assert_same(got, then, "failover --shutdown to an earlier point: the disk against the image then");
    tm_free(got);
    tm_free(then);
}
