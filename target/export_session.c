/*
 * Sessions (export_int.h): a machine's disks writable over one overlay
 * each on top of one point, for a test failover (export_test.c) or a
 * failover (export_failover.c). What both share: the list, starting on an
 * open thread and finishing on the loop, opens of MACHINE/DISK@KIND, the
 * end (connections closed, overlays removed or kept), and the life of the
 * exports: the session holds one reference to each, connections hold the
 * others; the pin goes with the session, once its last export is freed.
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

const char *tgt__session_what(tgt_session_kind_t kind)
{
    return kind == TGT_SESSION_TEST ? "test failover" : "failover";
}

const char *tgt__session_suffix(tgt_session_kind_t kind)
{
    return kind == TGT_SESSION_TEST ? "test" : "failover";
}

/* Any session of that kind and machine, ended or not. */
static tgt_session_t *tgt__session_any(const tgt_exports_t *x, tgt_session_kind_t kind, const char *machine)
{
    for (tgt_session_t *t = x->sessions; t; t = t->next)
        if (t->kind == kind && strcmp(t->machine, machine) == 0)
            return t;
    return NULL;
}

tgt_session_t *tgt__session_find(const tgt_exports_t *x, tgt_session_kind_t kind, const char *machine)
{
    for (tgt_session_t *t = x->sessions; t; t = t->next)
        if (t->kind == kind && !t->ended && strcmp(t->machine, machine) == 0)
            return t;
    return NULL;
}

static void tgt__session_unlink(tgt_exports_t *x, tgt_session_t *t)
{
    for (tgt_session_t **p = &x->sessions; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            return;
        }
    }
}

tgt_session_t *tgt__session_new(tgt_exports_t *x, tgt_session_kind_t kind, const char *machine, const char *dir,
                                tgt_test_cb cb, void *arg, int *rc, char *err, size_t errlen)
{
    const char *what = tgt__session_what(kind);
    if (x->stopping) {
        snprintf(err, errlen, "the NBD exports are stopping");
        *rc = -ESHUTDOWN;
        return NULL;
    }
    if (!wire_name_ok(machine) || !dir[0]) {
        snprintf(err, errlen, "'%s' is not a machine name, or the overlay folder is empty", machine);
        *rc = TM_EINVAL;
        return NULL;
    }
    tgt_session_t *t = tgt__session_any(x, kind, machine);
    if (t) {
        if (t->ended)
            snprintf(err, errlen,
                     "the %s of %s is still stopping (its connections are closing and its overlays are being "
                     "flushed): start it again in a moment",
                     what, machine);
        else if (t->running && kind == TGT_SESSION_TEST)
            snprintf(err, errlen,
                     "a test failover of %s is already running at point %" PRIu64 " (selector %s): clean it up first",
                     machine, t->seq, t->selector);
        else if (t->running)
            snprintf(err, errlen, "a failover of %s is already running at point %" PRIu64 "%s: stop it first",
                     machine, t->seq, t->seq ? "" : " (committed)");
        else if (kind == TGT_SESSION_TEST)
            snprintf(err, errlen, "a test failover of %s is already starting (selector %s)", machine, t->selector);
        else
            snprintf(err, errlen, "a failover of %s is already starting", machine);
        *rc = -EBUSY;
        return NULL;
    }
    t = tm_calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        *rc = -ENOMEM;
        return NULL;
    }
    int n = snprintf(t->dir, sizeof t->dir, "%s/%s", dir, machine);
    if (n < 0 || (size_t)n >= sizeof t->dir - WIRE_MAX_NAME - 16) {
        tm_free(t);
        snprintf(err, errlen, "the overlay folder '%s' is too long", dir);
        *rc = TM_EINVAL;
        return NULL;
    }
    t->x = x;
    t->kind = kind;
    snprintf(t->machine, sizeof t->machine, "%s", machine);
    t->cb = cb;
    t->cb_arg = arg;
    atomic_init(&t->stop, false);
    t->next = x->sessions;
    x->sessions = t;
    t->job.done = tgt__session_started;
    *rc = 0;
    return t;
}

/* ---- on the start's thread -------------------------------------------------- */

static int tgt__mkdir(const char *path)
{
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -errno;
}

int tgt__session_mkdir(tgt_session_t *t)
{
    /* t->dir is DIR/MACHINE: DIR first */
    char *slash = strrchr(t->dir, '/');
    *slash = '\0';
    int rc = tgt__mkdir(t->dir);
    *slash = '/';
    if (rc == 0)
        rc = tgt__mkdir(t->dir);
    if (rc)
        snprintf(t->msg, sizeof t->msg, "%s of %s: cannot make the overlay folder %.300s: %s",
                 tgt__session_what(t->kind), t->machine, t->dir, tm_strerror(rc));
    return rc;
}

tgt_export_t *tgt__session_add(tgt_session_t *t, unsigned d, const char *disk, uint32_t mid, uint64_t size,
                               uint64_t seq)
{
    tgt_export_t *ex = tm_calloc(1, sizeof *ex);
    if (!ex) {
        snprintf(t->msg, sizeof t->msg, "%s of %s: out of memory", tgt__session_what(t->kind), t->machine);
        return NULL;
    }
    tgt__export_init(ex, t->x, t->machine, disk, mid, (uint16_t)d, size, seq);
    ex->session = t;
    ex->refs = 1; /* the session's own */
    t->ex[d] = ex;
    if (d + 1 > t->ndisks)
        t->ndisks = d + 1;
    return ex;
}

int tgt__session_base(void *arg, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    return tgt__rebuild(arg, off, buf, len, err, errlen);
}

/* ---- freeing ----------------------------------------------------------------- */

static void tgt__export_free(tgt_export_t *ex)
{
    tgt__export_drop_readers(ex);
    tgt_ov_close(ex->ov); /* a failover's: flushed first */
    pthread_mutex_destroy(&ex->mu);
    tm_free(ex);
}

/* Free what is left of t once no export of it remains: the pin, the
 * machine's overlay folder (if empty), t itself. */
static void tgt__session_free(tgt_session_t *t)
{
    tgt__session_unlink(t->x, t);
    if (t->pinned)
        pts_unpin(t->x->pts, t->mid, t->seq);
    if (t->dir[0])
        rmdir(t->dir); /* best effort: only when empty */
    tm_free(t);
}

/* Undo a start that made some exports: a test's overlays removed, a
 * failover's closed (they may hold what a client wrote before a restart). */
static void tgt__session_undo(tgt_session_t *t)
{
    for (unsigned d = 0; d < t->ndisks; d++) {
        if (!t->ex[d])
            continue;
        if (t->ex[d]->ov && t->kind == TGT_SESSION_TEST)
            tgt_ov_drop(t->ex[d]->ov);
        tgt__export_free(t->ex[d]);
        t->ex[d] = NULL;
    }
    tgt__session_free(t);
}

/* ---- on the loop ------------------------------------------------------------- */

/* "point N", or what a committed failover has instead. */
static const char *tgt__at(const tgt_session_t *t, char *buf, size_t len)
{
    if (t->seq)
        snprintf(buf, len, "point %" PRIu64, t->seq);
    else
        snprintf(buf, len, "no point (committed)");
    return buf;
}

/* Answer the opens that waited for t's start: rc 0, each opens as any
 * would now; else each fails with why. Takes the list off t. */
static void tgt__session_unpark(tgt_session_t *t, int rc, const char *why)
{
    tgt_parked_open_t *p = t->parked;
    t->parked = NULL;
    while (p) {
        tgt_parked_open_t *next = p->next;
        char msg[TGT_SESSION_MSG] = "";
        int r = rc;
        if (r == 0)
            r = tgt__session_open(t->x, t->kind, t->machine, p->disk, p->op, msg, sizeof msg);
        else
            snprintf(msg, sizeof msg, "%s", why);
        if (r && msg[0])
            p->op->message = msg; /* copied by nbd_open_done */
        nbd_open_done(p->op, r);
        tm_free(p);
        p = next;
    }
}

void tgt__session_started(tgt_job_t *job)
{
    tgt_session_t *t = tgt__container_of(job, tgt_session_t, job);
    tgt_exports_t *x = t->x;
    const char *what = tgt__session_what(t->kind);
    int rc = job->cancelled || x->stopping ? -ESHUTDOWN : t->rc;
    if (rc == -ESHUTDOWN)
        snprintf(t->msg, sizeof t->msg, "%s of %s: the NBD exports are stopping", what, t->machine);
    tgt_test_cb cb = t->cb;
    void *arg = t->cb_arg;
    if (rc) {
        char msg[TGT_SESSION_MSG];
        snprintf(msg, sizeof msg, "%s", t->msg);
        tgt__session_unpark(t, rc == -ESHUTDOWN ? -ESHUTDOWN : -ENOENT, msg);
        tgt__session_undo(t);
        tm_warn("target: %s", msg);
        if (cb)
            cb(arg, rc, 0, msg);
        return;
    }
    t->running = true;
    t->live = t->ndisks;
    char at[48];
    uint64_t blocks = 0;
    for (unsigned d = 0; d < t->ndisks; d++)
        blocks += tgt_ov_blocks(t->ex[d]->ov);
    if (t->kind == TGT_SESSION_TEST)
        tm_info("target: test failover of %s at point %" PRIu64 " (%s): %u disks writable as %s/DISK@test, overlays "
                "in %s",
                t->machine, t->seq, t->selector, t->ndisks, t->machine, t->dir);
    else
        tm_info("target: failover of %s at %s: %u disks writable as %s/DISK@failover, overlays in %s (%s, "
                "%" PRIu64 " blocks of %u KiB written before)",
                t->machine, tgt__at(t, at, sizeof at), t->ndisks, t->machine, t->dir, t->keep ? "reopened" : "new",
                blocks, TGT_OV_BLOCK >> 10);
    tgt__session_unpark(t, 0, NULL);
    if (cb)
        cb(arg, 0, t->seq, "");
}

/* Drop the session's own reference to its export d. */
static void tgt__session_unref(tgt_session_t *t, unsigned d)
{
    tgt_export_t *ex = t->ex[d];
    t->ex[d] = NULL;
    if (--ex->refs == 0)
        tgt__session_export_released(ex);
}

void tgt__session_unref_all(tgt_session_t *t)
{
    /* the last unref may free t */
    unsigned ndisks = t->ndisks;
    for (unsigned d = 0; d < ndisks; d++)
        tgt__session_unref(t, d);
}

void tgt__session_end(tgt_exports_t *x, tgt_session_t *t, bool remove)
{
    if (t->kind == TGT_SESSION_TEST)
        remove = true;
    t->ended = true;
    char at[48];
    /* Kept files stay the session's until its last export is closed (and
     * flushed): a new start of the machine waits for that, so two overlays
     * never write one file. Removed ones are gone now: a new start makes
     * new files. */
    if (remove)
        tgt__session_unlink(x, t);
    uint64_t blocks = 0;
    unsigned ndisks = t->ndisks;
    for (unsigned d = 0; d < ndisks; d++) {
        tgt_export_t *ex = t->ex[d];
        ex->dead = true;
        blocks += tgt_ov_blocks(ex->ov);
        int rc = remove ? tgt_ov_drop(ex->ov) : 0;
        if (rc)
            tm_error("target: %s of %s: cannot remove the overlay of %s: %s", tgt__session_what(t->kind), t->machine,
                     ex->disk_name, tm_strerror(rc));
    }
    if (t->kind == TGT_SESSION_TEST)
        tm_info("target: test failover of %s at point %" PRIu64 " cleaned up (%" PRIu64 " blocks of %u KiB written)",
                t->machine, t->seq, blocks, TGT_OV_BLOCK >> 10);
    else
        tm_info("target: failover of %s at %s stopped, its overlays %s (%" PRIu64 " blocks of %u KiB written)",
                t->machine, tgt__at(t, at, sizeof at), remove ? "removed" : "kept", blocks, TGT_OV_BLOCK >> 10);
    /* clients still connected lose the export now, not at their next request */
    if (x->srv)
        for (unsigned d = 0; d < ndisks; d++)
            nbd_server_drop_export(x->srv, t->ex[d]);
    if (t->committing) {
        /* the fill uses the overlays: its done drops the references */
        atomic_store(&t->stop, true);
        return;
    }
    tgt__session_unref_all(t);
}

int tgt__session_open(tgt_exports_t *x, tgt_session_kind_t kind, const char *machine, const char *disk,
                      nbd_open_t *op, char *msg, size_t len)
{
    const char *what = tgt__session_what(kind), *suffix = tgt__session_suffix(kind);
    tgt_session_t *t = tgt__session_find(x, kind, machine);
    if (t && !t->running && !t->ended && op) {
        tgt_parked_open_t *p = tm_calloc(1, sizeof *p);
        if (!p) {
            snprintf(msg, len, "out of memory");
            return -ENOMEM;
        }
        p->op = op;
        snprintf(p->disk, sizeof p->disk, "%s", disk);
        p->next = t->parked;
        t->parked = p;
        return TGT_OPEN_PARKED;
    }
    if (!t || !t->running) {
        snprintf(msg, len, "no %s of machine %s is %s: %s/%s@%s exists only while one runs", what, machine,
                 t ? "running yet (one is starting)" : "running", machine, disk, suffix);
        return -ENOENT;
    }
    unsigned d = 0;
    while (d < t->ndisks && strcmp(t->ex[d]->disk_name, disk) != 0)
        d++;
    if (d == t->ndisks) {
        int n = snprintf(msg, len, "the %s of %s has no disk named '%s' (its disks:", what, machine, disk);
        for (unsigned i = 0; i < t->ndisks && n > 0 && (size_t)n < len; i++)
            n += snprintf(msg + n, len - (size_t)n, " %s", t->ex[i]->disk_name);
        if (n > 0 && (size_t)n < len)
            snprintf(msg + n, len - (size_t)n, ")");
        return -ENOENT;
    }
    tgt_export_t *ex = t->ex[d];
    ex->refs++;
    char at[48];
    tm_info("target: %s is the %s of %s at %s, %" PRIu64 " bytes, writable", op->name, what, machine,
            tgt__at(t, at, sizeof at), ex->size);
    op->export = ex;
    op->size = ex->size;
    op->read_only = false;
    /* Every connection to a disk writes the one overlay, and a flush
     * covers all it holds, so a failover promises multi-conn (a client
     * may copy a disk over several connections). A test keeps it simple. */
    op->multi_conn = kind == TGT_SESSION_FAILOVER;
    return 0;
}

void tgt__session_export_released(tgt_export_t *ex)
{
    tgt_session_t *t = ex->session;
    tgt__export_free(ex);
    if (--t->live == 0)
        tgt__session_free(t);
}

int tgt__sessions_list(tgt_exports_t *x, nbd_list_t *op)
{
    for (tgt_session_t *t = x->sessions; t; t = t->next) {
        if (t->kind != TGT_SESSION_FAILOVER || !t->running || t->ended)
            continue;
        for (unsigned d = 0; d < t->ndisks; d++) {
            const tgt_export_t *ex = t->ex[d];
            char name[2 * WIRE_MAX_NAME + 16], desc[2 * WIRE_MAX_NAME + 160];
            snprintf(name, sizeof name, "%s/%s@failover", t->machine, ex->disk_name);
            if (t->seq)
                snprintf(desc, sizeof desc, "machine %s disk %s (%" PRIu64 " bytes) failed over at point %" PRIu64
                         ", writable", t->machine, ex->disk_name, ex->size, t->seq);
            else
                snprintf(desc, sizeof desc, "machine %s disk %s (%" PRIu64 " bytes) failed over, committed, writable",
                         t->machine, ex->disk_name, ex->size);
            int rc = nbd_list_add(op, name, desc);
            if (rc)
                return rc;
        }
    }
    return 0;
}

void tgt__sessions_stopping(tgt_exports_t *x)
{
    for (tgt_session_t *t = x->sessions; t; t = t->next)
        atomic_store(&t->stop, true);
}

void tgt__sessions_drop_all(tgt_exports_t *x)
{
    /* Starts and commits completed before the pools closed (as failures:
     * stopping), and every connection is gone. */
    tgt_session_t *t = x->sessions;
    while (t) {
        tgt_session_t *next = t->next;
        if (!t->running || t->ended || t->committing) {
            tm_error("target: a %s of %s was still %s at stop (a bug)", tgt__session_what(t->kind), t->machine,
                     !t->running ? "starting" : t->ended ? "closing" : "committing");
            tgt__session_unlink(x, t);
        } else {
            tgt__session_end(x, t, false); /* may free t */
        }
        t = next;
    }
}
