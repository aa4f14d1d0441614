/*
 * Recovery at open: find the segments, check their headers and how they
 * chain, and find where the log ends in the last one.
 *
 * The last known-good position is the start of the last segment: every
 * sealed segment (one with a successor) was synced whole before its
 * successor's header was written, and that header pins where its records end
 * (prev_end). So only the last segment's records are scanned, unless
 * verify_all asks for all of them. The rules are in format.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "journal/journal_int.h"

static bool jnl__hdr_usable(const jnl_seg_file_t *f)
{
    return f->verdict == JNL_HDR_OK && f->hdr.seq == f->seq;
}

static const char *jnl__hdr_problem(const jnl_seg_file_t *f)
{
    if (f->verdict != JNL_HDR_OK)
        return jnl_hdr_verdict_str(f->verdict);
    return "header sequence number differs from the file name";
}

static int jnl__open_seg(jnl_t *j, uint64_t seq, int *fd)
{
    char *path = jnl__path(j->dir, JNL_SEG_NAME_FMT, seq);
    if (!path)
        return -ENOMEM;
    *fd = j->io.open(path, O_RDONLY, 0);
    int rc = *fd < 0 ? -errno : 0;
    tm_free(path);
    return rc;
}

/* Check every record of a sealed segment: they must chain from its
 * first_lsn and end exactly at end with next_first - 1. */
static int jnl__verify_sealed(jnl_t *j, const jnl_seg_t *s, uint64_t file_size, uint64_t next_first)
{
    int fd;
    int rc = jnl__open_seg(j, s->seq, &fd);
    if (rc)
        return rc;
    jnl_win_t w;
    jnl__win_init(&w, &j->io, fd, s->end < file_size ? s->end : file_size);
    uint64_t off = JNL_SEG_DATA_OFF, expect = s->first_lsn;
    while (off < s->end) {
        jnl_rec_hdr_t h;
        const uint8_t *rec;
        int err;
        jnl_rec_verdict_t v = jnl__check_at(&w, s, off, expect, &h, &rec, &err);
        if (err) {
            rc = err;
            goto out;
        }
        if (v != JNL_REC_OK) {
            tm_error("journal: corruption in sealed segment %llu at offset %llu (%s); refusing to open",
                     (unsigned long long)s->seq, (unsigned long long)off, jnl_rec_verdict_str(v));
            rc = TM_ECORRUPT;
            goto out;
        }
        off += h.length;
        expect++;
    }
    if (off != s->end || expect != next_first) {
        tm_error("journal: corruption in sealed segment %llu at offset %llu (%s); refusing to open",
                 (unsigned long long)s->seq, (unsigned long long)off, "records do not end where the next segment says");
        rc = TM_ECORRUPT;
    }
out:
    jnl__win_free(&w);
    j->io.close(fd);
    return rc;
}

/* Find the end of the log in the last segment; sets s->end and *last_lsn. */
static int jnl__scan_last(jnl_t *j, jnl_seg_t *s, uint64_t file_size, uint64_t *last_lsn)
{
    int fd;
    int rc = jnl__open_seg(j, s->seq, &fd);
    if (rc)
        return rc;
    jnl_win_t w;
    uint64_t limit = s->size < file_size ? s->size : file_size;
    jnl__win_init(&w, &j->io, fd, limit);
    uint64_t off = JNL_SEG_DATA_OFF, expect = s->first_lsn;
    jnl_rec_verdict_t v = JNL_REC_OK;
    for (;;) {
        jnl_rec_hdr_t h;
        const uint8_t *rec;
        int err;
        if (off >= limit)
            break;
        v = jnl__check_at(&w, s, off, expect, &h, &rec, &err);
        if (err) {
            rc = err;
            goto out;
        }
        if (v != JNL_REC_OK)
            break;
        off += h.length;
        expect++;
    }

    s->end = off;
    *last_lsn = expect - 1;
    j->end_pos = (jnl_pos_t){s->seq, off};
    jnl__end_info_t e;
    if ((rc = jnl__classify_end(&w, s, off, expect, v, &e)) != 0)
        goto out;
    snprintf(j->end_reason, sizeof j->end_reason, "%s", e.reason);
    switch (e.kind) {
    case JNL__END_CORRUPT:
        tm_error("journal: corruption in segment %llu at offset %llu (%s): durable records follow at offset %llu; "
                 "refusing to open (inspect with: tidemark journal dump %s)",
                 (unsigned long long)s->seq, (unsigned long long)off, e.reason, (unsigned long long)e.later_off,
                 j->dir);
        rc = TM_ECORRUPT;
        break;
    case JNL__END_CLEAN:
        j->end_kind = JNL_END_CLEAN;
        tm_info("journal: log ends in segment %llu at offset %llu (%s), last LSN %llu", (unsigned long long)s->seq,
                (unsigned long long)off, e.reason, (unsigned long long)*last_lsn);
        break;
    case JNL__END_TORN:
        j->end_kind = JNL_END_TORN;
        j->torn_records = e.same_batch;
        tm_warn("journal: torn tail in segment %llu at offset %llu (%s); the log ends at LSN %llu; "
                "%llu record(s) of the unfinished batch dropped",
                (unsigned long long)s->seq, (unsigned long long)off, e.reason, (unsigned long long)*last_lsn,
                (unsigned long long)e.same_batch);
        break;
    }
out:
    jnl__win_free(&w);
    j->io.close(fd);
    return rc;
}

/* A file left by a roll that did not finish becomes a spare. */
static int jnl__reclaim_leftover(jnl_t *j, const jnl_seg_file_t *f)
{
    char name[64];
    snprintf(name, sizeof name, JNL_SEG_NAME_FMT, (unsigned long long)f->seq);
    tm_info("journal: segment file %s was never finished (%s); it will be reused", name, jnl__hdr_problem(f));
    if (j->opt.read_only)
        return 0;
    char *from = jnl__path(j->dir, JNL_SEG_NAME_FMT, f->seq);
    char *to = jnl__path(j->dir, JNL_SPARE_NAME_FMT, j->next_spare_id);
    int rc = 0;
    if (!from || !to)
        rc = -ENOMEM;
    else if (j->io.rename(from, to) < 0)
        rc = -errno;
    tm_free(from);
    tm_free(to);
    if (rc)
        return rc;
    if (tm_grow((void **)&j->spares, &j->spares_cap, j->nspares + 1, sizeof *j->spares))
        return -ENOMEM;
    j->spares[j->nspares++] = j->next_spare_id++;
    return 0;
}

static int jnl__corrupt_chain(const jnl_seg_file_t *a, const jnl_seg_file_t *b, const char *why)
{
    tm_error("journal: segments %llu and %llu do not chain (%s); refusing to open", (unsigned long long)a->seq,
             (unsigned long long)b->seq, why);
    return TM_ECORRUPT;
}

int jnl__recover(jnl_t *j)
{
    jnl_seg_file_t *files = NULL;
    uint64_t *spares = NULL;
    size_t n = 0, nspares = 0;
    int rc = jnl__list(&j->io, j->dir, &files, &n, &spares, &nspares);
    if (rc) {
        tm_error("journal: cannot list %s: %s", j->dir, tm_strerror(rc));
        return rc;
    }
    j->spares = spares;
    j->nspares = j->spares_cap = nspares;
    for (size_t i = 0; i < nspares; i++)
        if (spares[i] >= j->next_spare_id)
            j->next_spare_id = spares[i] + 1;

    char name[64];
    for (size_t i = 0; i < n; i++) {
        if (files[i].verdict == JNL_HDR_BAD_VERSION) {
            snprintf(name, sizeof name, JNL_SEG_NAME_FMT, (unsigned long long)files[i].seq);
            tm_error("journal: segment %s has format version %u; this build reads version %u; refusing to open",
                     name, files[i].hdr.version, JNL_FORMAT_VERSION);
            rc = TM_EVERSION;
            goto out;
        }
    }

    size_t nvalid = 0;
    while (nvalid < n && jnl__hdr_usable(&files[nvalid]))
        nvalid++;
    for (size_t i = nvalid; i < n; i++) {
        if (jnl__hdr_usable(&files[i])) {
            snprintf(name, sizeof name, JNL_SEG_NAME_FMT, (unsigned long long)files[nvalid].seq);
            tm_error("journal: segment %s has a bad header (%s) but later segments follow; refusing to open", name,
                     jnl__hdr_problem(&files[nvalid]));
            rc = TM_ECORRUPT;
            goto out;
        }
    }
    for (size_t i = nvalid; i < n; i++)
        if ((rc = jnl__reclaim_leftover(j, &files[i])) != 0)
            goto out;

    if (nvalid == 0) {
        j->journal_id = tm_random_u64();
        j->end_kind = JNL_END_EMPTY;
        snprintf(j->end_reason, sizeof j->end_reason, "new journal");
        j->durable_lsn = 0;
        j->next_lsn = 1;
        j->alloc_seq = 0;
        j->alloc_off = 0;
        j->need_roll = true;
        tm_info("journal: %s holds no segments; starting a new journal", j->dir);
        goto out;
    }

    j->journal_id = files[0].hdr.journal_id;
    for (size_t i = 0; i + 1 < nvalid; i++) {
        const jnl_seg_file_t *a = &files[i], *b = &files[i + 1];
        if (b->hdr.journal_id != j->journal_id) {
            snprintf(name, sizeof name, JNL_SEG_NAME_FMT, (unsigned long long)b->seq);
            tm_error("journal: segment %s belongs to journal %016llx, not %016llx; refusing to open", name,
                     (unsigned long long)b->hdr.journal_id, (unsigned long long)j->journal_id);
            rc = TM_EFOREIGN;
            goto out;
        }
        if (b->seq != a->seq + 1) {
            rc = jnl__corrupt_chain(a, b, "a segment is missing between them");
            goto out;
        }
        if (b->hdr.first_lsn < a->hdr.first_lsn)
            rc = jnl__corrupt_chain(a, b, "LSNs go backwards");
        else if (b->hdr.prev_end < JNL_SEG_DATA_OFF || b->hdr.prev_end > a->hdr.segment_size ||
                 b->hdr.prev_end > a->file_size)
            rc = jnl__corrupt_chain(a, b, "the end of the first lies outside it");
        if (rc)
            goto out;
    }

    j->segs = tm_calloc(nvalid, sizeof *j->segs);
    if (!j->segs) {
        rc = -ENOMEM;
        goto out;
    }
    j->nsegs = j->segs_cap = nvalid;
    for (size_t i = 0; i < nvalid; i++) {
        jnl_seg_t *s = &j->segs[i];
        s->seq = files[i].seq;
        s->first_lsn = files[i].hdr.first_lsn;
        s->salt = files[i].hdr.salt;
        s->size = files[i].hdr.segment_size;
        s->end = i + 1 < nvalid ? files[i + 1].hdr.prev_end : JNL_SEG_DATA_OFF;
    }
    if (j->opt.verify_all) {
        for (size_t i = 0; i + 1 < nvalid; i++)
            if ((rc = jnl__verify_sealed(j, &j->segs[i], files[i].file_size, files[i + 1].hdr.first_lsn)) != 0)
                goto out;
    }

    jnl_seg_t *last = &j->segs[nvalid - 1];
    uint64_t last_lsn;
    rc = jnl__scan_last(j, last, files[nvalid - 1].file_size, &last_lsn);
    if (rc)
        goto out;
    j->durable_lsn = last_lsn;
    j->next_lsn = last_lsn + 1;
    j->alloc_seq = last->seq;
    j->alloc_off = last->end;
    /* The first batch after open always starts a new segment, so the
     * recovered tail is never written over (see docs/journal-format.md). */
    j->need_roll = true;
out:
    tm_free(files);
    return rc;
}
