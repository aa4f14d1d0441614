/*
 * I/O of the NBD exports (export.h): each READ goes to a read thread,
 * which rebuilds the range straight into the request's buffer with a reader
 * of the export's (reused; a new one only when every kept one is busy), and
 * the reply follows on the loop. A session's export's requests (writes,
 * flushes, trims and zeroes too) go the same way, through its overlay.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "target/export_int.h"

typedef struct tgt_read_job {
    tgt_job_t job;
    nbd_io_t *io;
    int rc;
    char err[400];
} tgt_read_job_t;

/* ---- on a read thread ------------------------------------------------- */

/* Whether the replica base exists now; remembered once it does. */
static bool tgt__base_exists(tgt_export_t *ex)
{
    pthread_mutex_lock(&ex->mu);
    bool seen = ex->base_seen;
    pthread_mutex_unlock(&ex->mu);
    if (seen)
        return true;
    struct stat st;
    if (stat(ex->base_path, &st) != 0)
        return false;
    pthread_mutex_lock(&ex->mu);
    ex->base_seen = true;
    pthread_mutex_unlock(&ex->mu);
    return true;
}

/* A reader for one read: a kept one, or a new one. NULL with *rc set. */
static tgt_slot_t *tgt__take(tgt_export_t *ex, int *rc)
{
    pthread_mutex_lock(&ex->mu);
    tgt_slot_t *s = ex->idle;
    if (s)
        ex->idle = s->next;
    bool base = ex->base_seen;
    pthread_mutex_unlock(&ex->mu);
    if (s && (s->with_base || !base))
        return s;
    if (s) {
        tgt_close(s->r); /* opened before the base existed */
        s->r = NULL;
    } else if (!(s = tm_malloc(sizeof *s))) {
        *rc = -ENOMEM;
        return NULL;
    }
    /* Looked at before tgt_open: a base that appears in between is
     * opened but not counted, which costs a needless replacement only. */
    s->with_base = tgt__base_exists(ex);
    tgt_view_t v = {
        .ix = pts_index(ex->x->pts),
        .jnl = ex->x->jnl,
        .machine = ex->machine,
        .mid = ex->mid,
        .disk = ex->disk,
        .disk_name = ex->disk_name,
        .size = ex->size,
        .seq = ex->seq,
        .base_path = ex->base_path,
        .chunks = ex->chunks,
    };
    *rc = tgt_open(&v, &s->r);
    if (*rc) {
        tm_free(s);
        return NULL;
    }
    return s;
}

static void tgt__put(tgt_export_t *ex, tgt_slot_t *s)
{
    pthread_mutex_lock(&ex->mu);
    s->next = ex->idle;
    ex->idle = s;
    pthread_mutex_unlock(&ex->mu);
}

/*
 * Rebuild [off, off + len) of ex into buf. Done twice at most: when a
 * reader without a base finds the base made by the read's end (retention
 * may have moved data from the index into it meanwhile), and when the
 * journal record a scan named was retired before it was read (the same
 * fold, seen from the other side); the second try reads the base.
 */
int tgt__rebuild(tgt_export_t *ex, uint64_t off, uint8_t *buf, size_t len, char *err, size_t errlen)
{
    for (int attempt = 0;; attempt++) {
        int rc;
        tgt_slot_t *s = tgt__take(ex, &rc);
        if (!s) {
            snprintf(err, errlen, "machine %s disk %s at point %" PRIu64 ": cannot open a reader: %s", ex->machine,
                     ex->disk_name, ex->seq, tm_strerror(rc));
            return rc;
        }
        rc = tgt_read(s->r, off, buf, len, NULL);
        if (rc) {
            const char *why = tgt_error(s->r);
            snprintf(err, errlen, "%s", why[0] ? why : tm_strerror(rc));
        }
        bool stale = !s->with_base && tgt__base_exists(ex);
        tgt__put(ex, s);
        if (attempt == 0 && (stale || rc == TM_ERETIRED))
            continue;
        return rc;
    }
}

/* A session's export's request, through its overlay. */
static int tgt__overlay_io(tgt_export_t *ex, nbd_io_t *io, char *err, size_t errlen)
{
    bool fua = io->flags & NBD_IO_FUA;
    switch (io->kind) {
    case NBD_IO_READ:
        return tgt_ov_read(ex->ov, io->offset, io->buf, io->length, err, errlen);
    case NBD_IO_WRITE:
        return tgt_ov_write(ex->ov, io->offset, io->buf, io->length, fua, err, errlen);
    case NBD_IO_FLUSH:
        return tgt_ov_flush(ex->ov, err, errlen);
    case NBD_IO_TRIM:
        return tgt_ov_trim(ex->ov, io->offset, io->length, fua, err, errlen);
    case NBD_IO_ZERO:
        return tgt_ov_zero(ex->ov, io->offset, io->length, io->flags & NBD_IO_NO_HOLE, fua, err, errlen);
    }
    return -EINVAL;
}

static void tgt__read_work(tgt_job_t *job)
{
    tgt_read_job_t *rj = tgt__container_of(job, tgt_read_job_t, job);
    nbd_io_t *io = rj->io;
    tgt_export_t *ex = io->export;
    if (ex->ov)
        rj->rc = tgt__overlay_io(ex, io, rj->err, sizeof rj->err);
    else
        rj->rc = tgt__rebuild(ex, io->offset, io->buf, io->length, rj->err, sizeof rj->err);
}

/* ---- on the loop ------------------------------------------------------ */

/* What the client is told: verification failures and retired records are
 * I/O errors; nbd maps the errnos it knows. */
static int tgt__nbd_status(int rc)
{
    if (rc == TM_ECORRUPT || rc == TM_ERETIRED || rc <= TM_E__BASE)
        return -EIO;
    return rc;
}

static const char *tgt__kind_name(nbd_io_kind_t k)
{
    switch (k) {
    case NBD_IO_READ:
        return "read";
    case NBD_IO_WRITE:
        return "write";
    case NBD_IO_FLUSH:
        return "flush";
    case NBD_IO_TRIM:
        return "trim";
    case NBD_IO_ZERO:
        return "write of zeroes";
    }
    return "request";
}

static void tgt__read_done(tgt_job_t *job)
{
    tgt_read_job_t *rj = tgt__container_of(job, tgt_read_job_t, job);
    nbd_io_t *io = rj->io;
    tgt_export_t *ex = io->export;
    int rc = job->cancelled ? -ECANCELED : rj->rc;
    if (rc && !job->cancelled)
        tm_error("target: %s of %" PRIu32 " bytes at %" PRIu64 " of %s/%s%s at point %" PRIu64
                 " failed (the client gets %s): %s",
                 tgt__kind_name(io->kind), io->length, io->offset, ex->machine, ex->disk_name,
                 ex->session ? (ex->session->kind == TGT_SESSION_TEST ? "@test" : "@failover") : "",
                 ex->seq, tm_errname(tgt__nbd_status(rc)), rj->err);
    io->data = NULL;
    tm_free(rj);
    nbd_io_done(io, tgt__nbd_status(rc));
}

void tgt__export_io(nbd_io_t *io)
{
    tgt_export_t *ex = io->export;
    /* An ended session: its overlay is gone or closing. Exports at points
     * are opened read-only, so nbd never hands them anything but READ. */
    if (ex->dead || (io->kind != NBD_IO_READ && !ex->ov)) {
        nbd_io_done(io, ex->dead ? -ESHUTDOWN : -EPERM);
        return;
    }
    tgt_read_job_t *rj = tm_malloc(sizeof *rj);
    if (!rj) {
        nbd_io_done(io, -ENOMEM);
        return;
    }
    rj->job.work = tgt__read_work;
    rj->job.done = tgt__read_done;
    rj->io = io;
    rj->rc = 0;
    rj->err[0] = '\0';
    io->data = rj;
    tgt_workers_submit(ex->x->readers, &rj->job);
}

void tgt__export_cancel(nbd_io_t *io)
{
    tgt_read_job_t *rj = io->data;
    tgt_export_t *ex = io->export;
    if (rj)
        tgt_workers_cancel(ex->x->readers, &rj->job);
}

void tgt__export_drop_readers(tgt_export_t *ex)
{
    while (ex->idle) {
        tgt_slot_t *s = ex->idle;
        ex->idle = s->next;
        tgt_close(s->r);
        tm_free(s);
    }
    /* after its readers: they point at it */
    tgt_chunks_free(ex->chunks);
    ex->chunks = NULL;
}
