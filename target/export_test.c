/*
 * Test failovers (export.h): a session (export_session.c) whose start
 * resolves the selector, pins the point and makes one overlay per disk with
 * its bitmap in memory (overlay.h), on an open thread; cleanup ends it,
 * removing the overlays.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "target/export_int.h"

/* ---- starting, on an open thread ------------------------------------------ */

static void tgt__test_work(tgt_job_t *job)
{
    tgt_session_t *t = tgt__container_of(job, tgt_session_t, job);
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
    if ((t->rc = tgt__session_mkdir(t)) != 0)
        return;
    for (unsigned d = 0; d < m.ndisks; d++) {
        tgt_export_t *ex = tgt__session_add(t, d, m.disks[d].name, m.id, m.disks[d].size, pt.seq);
        if (!ex) {
            t->rc = -ENOMEM;
            return;
        }
        char path[PATH_MAX + WIRE_MAX_NAME + 16];
        snprintf(path, sizeof path, "%s/%s.overlay", t->dir, m.disks[d].name);
        rc = tgt_ov_create(path, m.disks[d].size, tgt__session_base, ex, &ex->ov);
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

int tgt_test_start(tgt_exports_t *x, const char *machine, const char *selector, const char *dir, tgt_test_cb cb,
                   void *arg, char *err, size_t errlen)
{
    if (strlen(selector) > TGT_SESSION_SELECTOR && !x->stopping) {
        snprintf(err, errlen, "'%.*s...' is not a selector", 40, selector);
        return TM_EINVAL;
    }
    int rc;
    tgt_session_t *t = tgt__session_new(x, TGT_SESSION_TEST, machine, dir, cb, arg, &rc, err, errlen);
    if (!t) {
        if (rc == TM_EINVAL)
            snprintf(err, errlen, "'%s' is not a machine name, or '%s' not a selector", machine, selector);
        return rc;
    }
    snprintf(t->selector, sizeof t->selector, "%s", selector);
    t->job.work = tgt__test_work;
    tgt_workers_submit(x->openers, &t->job);
    return 0;
}

int tgt_test_cleanup(tgt_exports_t *x, const char *machine, char *err, size_t errlen)
{
    tgt_session_t *t = tgt__session_find(x, TGT_SESSION_TEST, machine);
    if (!t) {
        snprintf(err, errlen, "no test failover of %s is running", machine);
        return TM_ENOTFOUND;
    }
    if (!t->running) {
        snprintf(err, errlen, "the test failover of %s is still starting: clean it up once it has started", machine);
        return -EBUSY;
    }
    tgt__session_end(x, t, true);
    return 0;
}

int tgt_test_point(const tgt_exports_t *x, const char *machine, uint64_t *seq)
{
    const tgt_session_t *t = tgt__session_find(x, TGT_SESSION_TEST, machine);
    if (!t)
        return TM_ENOTFOUND;
    if (!t->running)
        return -EBUSY;
    *seq = t->seq;
    return 0;
}
