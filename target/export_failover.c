/*
 * Failovers (export.h): a session (export_session.c) serving a machine's
 * disks writable as MACHINE/DISK@failover over overlays with a stored
 * bitmap (overlay.h), which outlive the process. Starting pins the point
 * and makes the overlays, or reopens them after a restart, or (a committed
 * machine, no point) reopens the standalone overlays it finds, without a
 * look at the index; a commit fills them on the fill pool and lets the
 * point go.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "target/export_int.h"

#define TGT_OV_SUFFIX ".overlay"
#define TGT_MAP_SUFFIX ".overlay.map"

/* ---- starting, on an open thread ------------------------------------------ */

/* Disk d's overlay at the session's point: reopened when keep finds its
 * map, made new (a stale one truncated) otherwise. */
static int tgt__fo_disk(tgt_session_t *t, unsigned d, const char *disk, uint32_t mid, uint64_t size)
{
    tgt_export_t *ex = tgt__session_add(t, d, disk, mid, size, t->seq);
    if (!ex)
        return -ENOMEM;
    char path[PATH_MAX + WIRE_MAX_NAME + 16], map[PATH_MAX + WIRE_MAX_NAME + 32], why[TGT_SESSION_MSG - 256];
    snprintf(path, sizeof path, "%s/%s" TGT_OV_SUFFIX, t->dir, disk);
    snprintf(map, sizeof map, "%s.map", path);
    tgt_ov_info_t info = {.machine = t->machine, .disk = disk, .disk_ix = d, .size = size, .seq = t->seq};
    int rc = 0;
    struct stat st;
    bool reopen = t->keep && stat(map, &st) == 0;
    if (t->keep && !reopen && errno != ENOENT) {
        rc = -errno;
        snprintf(why, sizeof why, "overlay map %.600s: %s", map, tm_strerror(rc));
    } else if (reopen) {
        rc = tgt_ov_open(path, &info, tgt__session_base, ex, &ex->ov, why, sizeof why);
    } else {
        /* keep without a map: its making never finished (the map comes
         * last), so nothing was ever written through it */
        rc = tgt_ov_create_stored(path, &info, tgt__session_base, ex, &ex->ov, why, sizeof why);
    }
    if (rc)
        snprintf(t->msg, sizeof t->msg, "failover of %s: %s", t->machine, why);
    return rc;
}

static bool tgt__ends_with(const char *s, const char *suffix, size_t *stem)
{
    size_t n = strlen(s), k = strlen(suffix);
    if (n <= k || strcmp(s + n - k, suffix) != 0)
        return false;
    *stem = n - k;
    return true;
}

/* One file of a committed machine's folder: an overlay's map is opened
 * (it must be standalone), an overlay's data file must have a map. */
static int tgt__fo_found(tgt_session_t *t, const char *name)
{
    char path[PATH_MAX + 512], why[TGT_SESSION_MSG - 256];
    char disk[WIRE_MAX_NAME + 1];
    size_t stem;
    struct stat st;
    if (tgt__ends_with(name, TGT_OV_SUFFIX, &stem)) {
        snprintf(path, sizeof path, "%s/%s.map", t->dir, name);
        if (stat(path, &st) == 0)
            return 0; /* opened with its map */
        snprintf(t->msg, sizeof t->msg,
                 "failover of %s: the overlay %.300s/%.200s has no map (%s): its blocks are unknown", t->machine,
                 t->dir, name, tm_strerror(-errno));
        return TM_ECORRUPT;
    }
    if (!tgt__ends_with(name, TGT_MAP_SUFFIX, &stem) || stem > WIRE_MAX_NAME)
        return 0;
    memcpy(disk, name, stem);
    disk[stem] = '\0';
    if (!wire_name_ok(disk))
        return 0;
    snprintf(path, sizeof path, "%s/%s" TGT_OV_SUFFIX, t->dir, disk);
    tgt_ov_info_t want = {.machine = t->machine, .disk = disk};
    tgt_ov_t *ov;
    int rc = tgt_ov_open(path, &want, NULL, NULL, &ov, why, sizeof why);
    if (rc) {
        snprintf(t->msg, sizeof t->msg, "failover of %s (committed): %s", t->machine, why);
        return rc;
    }
    tgt_ov_info_t info;
    tgt_ov_info(ov, &info);
    if (info.disk_ix >= WIRE_MAX_DISKS || t->ex[info.disk_ix]) {
        snprintf(t->msg, sizeof t->msg, "failover of %s (committed): overlay map %.500s.map says it is disk %u, %s",
                 t->machine, path, info.disk_ix,
                 info.disk_ix >= WIRE_MAX_DISKS ? "past the last one a machine may have" : "as another one does");
        tgt_ov_close(ov);
        return TM_ECORRUPT;
    }
    tgt_export_t *ex = tgt__session_add(t, info.disk_ix, disk, 0, info.size, 0);
    if (!ex) {
        tgt_ov_close(ov);
        return -ENOMEM;
    }
    ex->ov = ov;
    return 0;
}

/* A committed machine: the standalone overlays in its folder, in the
 * order of its disks, with no point and nothing asked of the index. */
static int tgt__fo_committed(tgt_session_t *t)
{
    DIR *dir = opendir(t->dir);
    if (!dir) {
        int rc = -errno;
        snprintf(t->msg, sizeof t->msg, "failover of %s (committed): cannot read the overlay folder %.300s: %s",
                 t->machine, t->dir, tm_strerror(rc));
        return rc == -ENOENT ? TM_ENOTFOUND : rc;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(dir)) != NULL)
        rc = tgt__fo_found(t, de->d_name);
    closedir(dir);
    if (rc)
        return rc;
    if (t->ndisks == 0) {
        snprintf(t->msg, sizeof t->msg, "failover of %s (committed): no overlay in %.300s", t->machine, t->dir);
        return TM_ENOTFOUND;
    }
    for (unsigned d = 0; d < t->ndisks; d++) {
        if (!t->ex[d]) {
            snprintf(t->msg, sizeof t->msg,
                     "failover of %s (committed): the overlay of disk %u of %u is missing from %.300s", t->machine, d,
                     t->ndisks, t->dir);
            return TM_ECORRUPT;
        }
    }
    return 0;
}

static void tgt__fo_work(tgt_job_t *job)
{
    tgt_session_t *t = tgt__container_of(job, tgt_session_t, job);
    if (t->seq == 0) {
        t->rc = tgt__fo_committed(t);
        return;
    }
    pts_t *pts = t->x->pts;
    pts_machine_t m;
    int rc = pts_machine(pts, t->machine, &m);
    if (rc) {
        snprintf(t->msg, sizeof t->msg, "failover of %s: %s", t->machine,
                 rc == TM_ENOTFOUND ? "no machine of that name has sent data to this appliance" : tm_strerror(rc));
        t->rc = rc;
        return;
    }
    rc = pts_pin(pts, m.id, t->seq);
    if (rc) {
        snprintf(t->msg, sizeof t->msg, "failover of %s: point %" PRIu64 " %s", t->machine, t->seq,
                 rc == TM_ENOPOINT ? "is past the retention horizon" : "cannot be kept for reading");
        t->rc = rc;
        return;
    }
    t->pinned = true;
    t->mid = m.id;
    if ((t->rc = tgt__session_mkdir(t)) != 0)
        return;
    for (unsigned d = 0; d < m.ndisks; d++)
        if ((t->rc = tgt__fo_disk(t, d, m.disks[d].name, m.id, m.disks[d].size)) != 0)
            return;
    t->rc = 0;
}

/* ---- committing, on a fill thread ------------------------------------------ */

static void tgt__commit_work(tgt_job_t *job)
{
    tgt_session_t *t = tgt__container_of(job, tgt_session_t, commit);
    char why[TGT_SESSION_MSG - 256];
    for (unsigned d = 0; d < t->ndisks; d++) {
        int rc = tgt_ov_fill(t->ex[d]->ov, &t->stop, why, sizeof why);
        if (rc) {
            snprintf(t->commit_msg, sizeof t->commit_msg, "commit of the failover of %s: %s", t->machine, why);
            t->commit_rc = rc;
            return;
        }
    }
    t->commit_rc = 0;
}

/* ---- on the loop ------------------------------------------------------------ */

static void tgt__commit_done(tgt_job_t *job)
{
    tgt_session_t *t = tgt__container_of(job, tgt_session_t, commit);
    tgt_exports_t *x = t->x;
    t->committing = false;
    int rc = job->cancelled ? -ECANCELED : t->commit_rc;
    if (t->ended) {
        rc = -ECANCELED;
        snprintf(t->commit_msg, sizeof t->commit_msg,
                 "commit of the failover of %s: the failover was stopped before the commit finished", t->machine);
    } else if (rc && x->stopping) {
        rc = -ESHUTDOWN;
        snprintf(t->commit_msg, sizeof t->commit_msg,
                 "commit of the failover of %s: the NBD exports are stopping (what was copied is kept)", t->machine);
    }
    uint64_t seq = t->seq;
    if (rc == 0) {
        /* Every overlay is standalone and no base read is in flight: the
         * point may go, and the readers with it. */
        if (t->pinned)
            pts_unpin(x->pts, t->mid, t->seq);
        t->pinned = false;
        t->seq = 0;
        for (unsigned d = 0; d < t->ndisks; d++) {
            t->ex[d]->seq = 0;
            tgt__export_drop_readers(t->ex[d]);
        }
        tm_info("target: failover of %s committed: its %u overlays are standalone; point %" PRIu64 " let go",
                t->machine, t->ndisks, seq);
    } else {
        tm_warn("target: %s", t->commit_msg);
    }
    tgt_test_cb cb = t->commit_cb;
    void *arg = t->commit_arg;
    char msg[TGT_SESSION_MSG];
    snprintf(msg, sizeof msg, "%s", rc ? t->commit_msg : "");
    if (t->ended)
        tgt__session_unref_all(t); /* may free t */
    if (cb)
        cb(arg, rc, 0, msg);
}

int tgt_failover_start(tgt_exports_t *x, const char *machine, uint64_t seq, const char *dir, bool keep,
                       tgt_test_cb cb, void *arg, char *err, size_t errlen)
{
    if (seq == 0 && !keep) {
        snprintf(err, errlen, "a failover of %s at no point can only reopen committed overlays (keep)", machine);
        return TM_EINVAL;
    }
    int rc;
    tgt_session_t *t = tgt__session_new(x, TGT_SESSION_FAILOVER, machine, dir, cb, arg, &rc, err, errlen);
    if (!t)
        return rc;
    t->seq = seq;
    t->keep = keep;
    t->job.work = tgt__fo_work;
    tgt_workers_submit(x->openers, &t->job);
    return 0;
}

/* The running failover of machine, or NULL with err and *rc. */
static tgt_session_t *tgt__fo_running(const tgt_exports_t *x, const char *machine, int *rc, char *err, size_t errlen)
{
    tgt_session_t *t = tgt__session_find(x, TGT_SESSION_FAILOVER, machine);
    if (!t) {
        snprintf(err, errlen, "no failover of %s is running", machine);
        *rc = TM_ENOTFOUND;
        return NULL;
    }
    if (!t->running) {
        snprintf(err, errlen, "the failover of %s is still starting: wait for its start to finish", machine);
        *rc = -EBUSY;
        return NULL;
    }
    *rc = 0;
    return t;
}

int tgt_failover_stop(tgt_exports_t *x, const char *machine, bool remove, char *err, size_t errlen)
{
    int rc;
    tgt_session_t *t = tgt__fo_running(x, machine, &rc, err, errlen);
    if (t)
        tgt__session_end(x, t, remove);
    return rc;
}

int tgt_failover_point(const tgt_exports_t *x, const char *machine, uint64_t *seq)
{
    const tgt_session_t *t = tgt__session_find(x, TGT_SESSION_FAILOVER, machine);
    if (!t)
        return TM_ENOTFOUND;
    if (!t->running)
        return -EBUSY;
    *seq = t->seq;
    return 0;
}

int tgt_failover_commit(tgt_exports_t *x, const char *machine, tgt_test_cb cb, void *arg, char *err, size_t errlen)
{
    if (x->stopping) {
        snprintf(err, errlen, "the NBD exports are stopping");
        return -ESHUTDOWN;
    }
    int rc;
    tgt_session_t *t = tgt__fo_running(x, machine, &rc, err, errlen);
    if (!t)
        return rc;
    if (t->committing) {
        snprintf(err, errlen, "the failover of %s is already being committed", machine);
        return -EBUSY;
    }
    t->committing = true;
    t->commit_cb = cb;
    t->commit_arg = arg;
    t->commit_rc = 0;
    t->commit_msg[0] = '\0';
    atomic_store(&t->stop, false);
    t->commit.work = tgt__commit_work;
    t->commit.done = tgt__commit_done;
    tgt_workers_submit(x->fillers, &t->commit);
    return 0;
}

int tgt_failover_progress(const tgt_exports_t *x, const char *machine, uint64_t *done, uint64_t *total)
{
    const tgt_session_t *t = tgt__session_find(x, TGT_SESSION_FAILOVER, machine);
    if (!t)
        return TM_ENOTFOUND;
    if (!t->running)
        return -EBUSY;
    *done = *total = 0;
    for (unsigned d = 0; d < t->ndisks; d++) {
        *done += tgt_ov_filled(t->ex[d]->ov);
        *total += tgt_ov_size(t->ex[d]->ov);
    }
    return 0;
}
