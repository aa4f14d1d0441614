/*
 * Test failovers (export.h): a machine's disks at one point, writable as
 * MACHINE/DISK@test over one overlay per disk (overlay.h). Starting
 * resolves and pins on an open thread and makes the overlays there; the
 * test then holds one reference to each of its exports, and connections
 * hold the others; cleanup refuses their I/O, removes the files and drops
 * the test's references; the pin goes with the last export.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "target/export_int.h"

#define TGT_TEST_SELECTOR 127u
#define TGT_TEST_MSG 512u

typedef struct tgt_test {
    tgt_job_t job; /* the start */
    tgt_exports_t *x;
    struct tgt_test *next; /* in x->tests, until cleaned up */
    char machine[WIRE_MAX_NAME + 1];
    char selector[TGT_TEST_SELECTOR + 1];
    char dir[PATH_MAX]; /* dir/MACHINE: the overlays */
    tgt_test_cb cb;
    void *cb_arg;
    bool running;  /* started; false while starting */
    bool pinned;
    uint32_t mid;
    uint64_t seq;
    unsigned ndisks;
    tgt_export_t *ex[WIRE_MAX_DISKS];
    unsigned live; /* exports not freed yet */
    int rc;        /* the start's */
    char msg[TGT_TEST_MSG];
} tgt_test_t;

static tgt_test_t *tgt__test_find(const tgt_exports_t *x, const char *machine)
{
    for (tgt_test_t *t = x->tests; t; t = t->next)
        if (strcmp(t->machine, machine) == 0)
            return t;
    return NULL;
}

static void tgt__test_unlink(tgt_exports_t *x, tgt_test_t *t)
{
    for (tgt_test_t **p = &x->tests; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            return;
        }
    }
}

/* The overlay's base: the disk at the point. */
static int tgt__ov_base(void *arg, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    return tgt__rebuild(arg, off, buf, len, err, errlen);
}

static void tgt__export_free(tgt_export_t *ex)
{
    tgt__export_drop_readers(ex);
    tgt_ov_close(ex->ov);
    pthread_mutex_destroy(&ex->mu);
    tm_free(ex);
}

/* Free what is left of t once no export of it remains: the pin, the
 * machine's overlay folder (if empty), t itself. */
static void tgt__test_free(tgt_test_t *t)
{
    if (t->pinned)
        pts_unpin(t->x->pts, t->mid, t->seq);
    if (t->dir[0])
        rmdir(t->dir); /* best effort: only when empty */
    tm_free(t);
}

/* Undo a start that made some exports: remove their overlays, free them. */
static void tgt__test_undo(tgt_test_t *t)
{
    for (unsigned d = 0; d < t->ndisks; d++) {
        if (!t->ex[d])
            continue;
        if (t->ex[d]->ov)
            tgt_ov_drop(t->ex[d]->ov);
        tgt__export_free(t->ex[d]);
        t->ex[d] = NULL;
    }
    tgt__test_free(t);
}

/* ---- starting, on an open thread ------------------------------------------ */

static int tgt__mkdir(const char *path)
{
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -errno;
}

static void tgt__test_work(tgt_job_t *job)
{
    tgt_test_t *t = tgt__container_of(job, tgt_test_t, job);
    pts_t *pts = t->x->pts;
    pts_machine_t m;
    pts_point_t pt;
    char why[256] = "";
    int rc = pts_machine(pts, t->machine, &m);
    if (rc) {
        snprintf(t->msg, sizeof t->msg, "test failover of %s: %s", t->machine,
                 rc == TM_ENOTFOUND ? "no machine of that name has sent data to this appliance" : tm_strerror(rc));
        t->rc = rc;
        return;
    }
    rc = pts_resolve(pts, t->machine, t->selector, &pt, why, sizeof why);
    if (rc) {
        snprintf(t->msg, sizeof t->msg, "test failover of %s at %s: %s", t->machine, t->selector,
                 why[0] ? why : tm_strerror(rc));
        t->rc = rc;
        return;
    }
    rc = pts_pin(pts, m.id, pt.seq);
    if (rc) {
        snprintf(t->msg, sizeof t->msg, "test failover of %s at %s: point %" PRIu64 " %s", t->machine, t->selector,
                 pt.seq, rc == TM_ENOPOINT ? "has just passed the retention horizon" : "cannot be kept for reading");
        t->rc = rc;
        return;
    }
    t->pinned = true;
    t->mid = m.id;
    t->seq = pt.seq;
    /* t->dir is DIR/MACHINE: DIR first */
    char *slash = strrchr(t->dir, '/');
    *slash = '\0';
    rc = tgt__mkdir(t->dir);
    *slash = '/';
    if (rc == 0)
        rc = tgt__mkdir(t->dir);
    if (rc) {
        snprintf(t->msg, sizeof t->msg, "test failover of %s: cannot make the overlay folder %.300s: %s", t->machine,
                 t->dir, tm_strerror(rc));
        t->rc = rc;
        return;
    }
    for (unsigned d = 0; d < m.ndisks; d++) {
        tgt_export_t *ex = tm_calloc(1, sizeof *ex);
        if (!ex) {
            snprintf(t->msg, sizeof t->msg, "test failover of %s: out of memory", t->machine);
            t->rc = -ENOMEM;
            return;
        }
        tgt__export_init(ex, t->x, t->machine, m.disks[d].name, m.id, (uint16_t)d, m.disks[d].size, pt.seq);
        ex->test = t;
        ex->refs = 1; /* the test's own */
        t->ex[d] = ex;
        t->ndisks = d + 1;
        char path[PATH_MAX + WIRE_MAX_NAME + 16];
        snprintf(path, sizeof path, "%s/%s.overlay", t->dir, m.disks[d].name);
        rc = tgt_ov_create(path, m.disks[d].size, tgt__ov_base, ex, &ex->ov);
        if (rc) {
            snprintf(t->msg, sizeof t->msg, "test failover of %s: cannot make the overlay %.300s: %s", t->machine, path,
                     tm_strerror(rc));
            t->rc = rc;
            return;
        }
    }
    t->rc = 0;
}

/* ---- on the loop ------------------------------------------------------------ */

static void tgt__test_done(tgt_job_t *job)
{
    tgt_test_t *t = tgt__container_of(job, tgt_test_t, job);
    tgt_exports_t *x = t->x;
    int rc = job->cancelled || x->stopping ? -ESHUTDOWN : t->rc;
    if (rc == -ESHUTDOWN)
        snprintf(t->msg, sizeof t->msg, "test failover of %s: the NBD exports are stopping", t->machine);
    tgt_test_cb cb = t->cb;
    void *arg = t->cb_arg;
    if (rc) {
        char msg[TGT_TEST_MSG];
        snprintf(msg, sizeof msg, "%s", t->msg);
        tgt__test_unlink(x, t);
        tgt__test_undo(t);
        tm_warn("target: %s", msg);
        if (cb)
            cb(arg, rc, 0, msg);
        return;
    }
    t->running = true;
    t->live = t->ndisks;
    tm_info("target: test failover of %s at point %" PRIu64 " (%s): %u disks writable as %s/DISK@test, overlays in %s",
            t->machine, t->seq, t->selector, t->ndisks, t->machine, t->dir);
    if (cb)
        cb(arg, 0, t->seq, "");
}

int tgt_test_start(tgt_exports_t *x, const char *machine, const char *selector, const char *dir, tgt_test_cb cb,
                   void *arg, char *err, size_t errlen)
{
    if (x->stopping) {
        snprintf(err, errlen, "the NBD exports are stopping");
        return -ESHUTDOWN;
    }
    if (!wire_name_ok(machine) || strlen(selector) > TGT_TEST_SELECTOR || !dir[0]) {
        snprintf(err, errlen, "'%s' is not a machine name, or '%s' not a selector", machine, selector);
        return TM_EINVAL;
    }
    tgt_test_t *t = tgt__test_find(x, machine);
    if (t) {
        if (t->running)
            snprintf(err, errlen,
                     "a test failover of %s is already running at point %" PRIu64 " (selector %s): clean it up first",
                     machine, t->seq, t->selector);
        else
            snprintf(err, errlen, "a test failover of %s is already starting (selector %s)", machine, t->selector);
        return -EBUSY;
    }
    t = tm_calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int n = snprintf(t->dir, sizeof t->dir, "%s/%s", dir, machine);
    if (n < 0 || (size_t)n >= sizeof t->dir) {
        tm_free(t);
        snprintf(err, errlen, "the overlay folder '%s' is too long", dir);
        return TM_EINVAL;
    }
    t->x = x;
    snprintf(t->machine, sizeof t->machine, "%s", machine);
    snprintf(t->selector, sizeof t->selector, "%s", selector);
    t->cb = cb;
    t->cb_arg = arg;
    t->next = x->tests;
    x->tests = t;
    t->job.work = tgt__test_work;
    t->job.done = tgt__test_done;
    tgt_workers_submit(x->openers, &t->job);
    return 0;
}

/* Drop the test's own reference to its export d. */
static void tgt__test_unref(tgt_test_t *t, unsigned d)
{
    tgt_export_t *ex = t->ex[d];
    t->ex[d] = NULL;
    if (--ex->refs == 0)
        tgt__test_export_released(ex);
}

static void tgt__test_end(tgt_exports_t *x, tgt_test_t *t)
{
    tgt__test_unlink(x, t);
    uint64_t blocks = 0;
    unsigned ndisks = t->ndisks;
    for (unsigned d = 0; d < ndisks; d++) {
        tgt_export_t *ex = t->ex[d];
        ex->dead = true;
        blocks += tgt_ov_blocks(ex->ov);
        int rc = tgt_ov_drop(ex->ov);
        if (rc)
            tm_error("target: test failover of %s: cannot remove the overlay of %s: %s", t->machine, ex->disk_name,
                     tm_strerror(rc));
    }
    tm_info("target: test failover of %s at point %" PRIu64 " cleaned up (%" PRIu64 " blocks of %u KiB written)",
            t->machine, t->seq, blocks, TGT_OV_BLOCK >> 10);
    /* clients still connected to @test lose it now, not at their next read */
    if (x->srv)
        for (unsigned d = 0; d < ndisks; d++)
            nbd_server_drop_export(x->srv, t->ex[d]);
    /* the last unref may free t */
    for (unsigned d = 0; d < ndisks; d++)
        tgt__test_unref(t, d);
}

int tgt_test_cleanup(tgt_exports_t *x, const char *machine, char *err, size_t errlen)
{
    tgt_test_t *t = tgt__test_find(x, machine);
    if (!t) {
        snprintf(err, errlen, "no test failover of %s is running", machine);
        return TM_ENOTFOUND;
    }
    if (!t->running) {
        snprintf(err, errlen, "the test failover of %s is still starting: clean it up once it has started", machine);
        return -EBUSY;
    }
    tgt__test_end(x, t);
    return 0;
}

int tgt_test_point(const tgt_exports_t *x, const char *machine, uint64_t *seq)
{
    const tgt_test_t *t = tgt__test_find(x, machine);
    if (!t)
        return TM_ENOTFOUND;
    if (!t->running)
        return -EBUSY;
    *seq = t->seq;
    return 0;
}

int tgt__test_open(tgt_exports_t *x, const char *machine, const char *disk, nbd_open_t *op, char *msg, size_t len)
{
    tgt_test_t *t = tgt__test_find(x, machine);
    if (!t || !t->running) {
        snprintf(msg, len, "no test failover of machine %s is %s: %s/%s@test exists only while one runs", machine,
                 t ? "running yet (one is starting)" : "running", machine, disk);
        return -ENOENT;
    }
    unsigned d = 0;
    while (d < t->ndisks && strcmp(t->ex[d]->disk_name, disk) != 0)
        d++;
    if (d == t->ndisks) {
        int n = snprintf(msg, len, "the test failover of %s has no disk named '%s' (its disks:", machine, disk);
        for (unsigned i = 0; i < t->ndisks && n > 0 && (size_t)n < len; i++)
            n += snprintf(msg + n, len - (size_t)n, " %s", t->ex[i]->disk_name);
        if (n > 0 && (size_t)n < len)
            snprintf(msg + n, len - (size_t)n, ")");
        return -ENOENT;
    }
    tgt_export_t *ex = t->ex[d];
    ex->refs++;
    tm_info("target: %s is the test failover of %s at point %" PRIu64 ", %" PRIu64 " bytes, writable", op->name,
            machine, t->seq, ex->size);
    op->export = ex;
    op->size = ex->size;
    op->read_only = false;
    /* A flush syncs the one overlay file every connection writes to, but
     * multi-conn is a promise not needed for a test: keep it simple. */
    op->multi_conn = false;
    return 0;
}

void tgt__test_export_released(tgt_export_t *ex)
{
    tgt_test_t *t = ex->test;
    tgt__export_free(ex);
    if (--t->live == 0)
        tgt__test_free(t);
}

void tgt__tests_drop_all(tgt_exports_t *x)
{
    /* Starts completed before the pools closed (as failures: stopping). */
    while (x->tests) {
        tgt_test_t *t = x->tests;
        if (!t->running) {
            tm_error("target: a test failover of %s was still starting at stop (a bug)", t->machine);
            tgt__test_unlink(x, t);
            continue;
        }
        tgt__test_end(x, t);
    }
}
