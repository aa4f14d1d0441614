/*
 * Reading durable records: a tailing reader from any LSN, and one record by
 * position. Readers never look past the durable end, so they run while
 * appends go on without locks on the data: bytes below the durable end never
 * change. Every record returned has passed the full check of format.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "journal/journal_int.h"

struct jnl_reader {
    jnl_t *j;
    uint64_t want;   /* the next LSN to return */
    uint64_t expect; /* the LSN of the record at off */
    uint64_t seq;    /* 0 until the journal has a segment */
    uint64_t off;
    int fd;
    jnl_win_t win;
    uint8_t *dbuf;
    size_t dcap;
};

static int jnl__open_seg_rd(jnl_t *j, uint64_t seq)
{
    char *path = jnl__path(j->dir, JNL_SEG_NAME_FMT, seq);
    if (!path)
        return -ENOMEM;
    int fd = j->io.open(path, O_RDONLY, 0);
    int rc = fd < 0 ? -errno : fd;
    tm_free(path);
    return rc;
}

static int jnl__payload(const uint8_t *rec, const jnl_rec_hdr_t *h, uint8_t **buf, size_t *cap,
                        const uint8_t **data)
{
    if ((h->flags & JNL_FLAG_LZ4) && h->raw_len > *cap) {
        uint8_t *p = tm_realloc(*buf, h->raw_len);
        if (!p)
            return -ENOMEM;
        *buf = p;
        *cap = h->raw_len;
    }
    return jnl_rec_payload(rec, h, *buf, data);
}

static void jnl__fill(jnl_record_t *out, const jnl_rec_hdr_t *h, uint64_t seq, uint64_t off, const uint8_t *data)
{
    out->lsn = h->lsn;
    out->time_ns = h->time_ns;
    out->type = h->type;
    out->pos = (jnl_pos_t){seq, off};
    out->stored_len = h->length - JNL_REC_OVERHEAD;
    out->compressed = (h->flags & JNL_FLAG_LZ4) != 0;
    out->data = data;
    out->len = h->raw_len;
}

static int jnl__corrupt(uint64_t seq, uint64_t off, const char *why)
{
    tm_error("journal: corrupt record in segment %llu at offset %llu (%s)", (unsigned long long)seq,
             (unsigned long long)off, why);
    return TM_ECORRUPT;
}

int jnl_reader_open(jnl_t *j, uint64_t from_lsn, jnl_reader_t **out)
{
    jnl_reader_t *r = tm_calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->j = j;
    r->fd = -1;
    pthread_mutex_lock(&j->mu);
    int rc = 0;
    if (j->closed) {
        rc = TM_ECLOSED;
    } else if (j->nsegs == 0) {
        r->want = from_lsn ? from_lsn : 1;
    } else {
        if (from_lsn == 0)
            from_lsn = j->segs[0].first_lsn;
        if (from_lsn < j->segs[0].first_lsn) {
            rc = TM_ERETIRED;
        } else {
            size_t i = j->nsegs - 1;
            while (i > 0 && j->segs[i].first_lsn > from_lsn)
                i--;
            r->seq = j->segs[i].seq;
            r->expect = j->segs[i].first_lsn;
            r->off = JNL_SEG_DATA_OFF;
            r->want = from_lsn;
        }
    }
    pthread_mutex_unlock(&j->mu);
    if (rc) {
        tm_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Under j->mu: r's segment, or an error if it is gone. */
static int jnl__reader_seg(jnl_reader_t *r, jnl_seg_t *seg, bool *has_next, uint64_t *durable)
{
    jnl_t *j = r->j;
    if (j->closed)
        return TM_ECLOSED;
    if (r->seq == 0) {
        if (j->nsegs == 0)
            return -EAGAIN;
        r->seq = j->segs[0].seq;
        r->expect = j->segs[0].first_lsn;
        r->off = JNL_SEG_DATA_OFF;
    }
    if (r->seq < j->segs[0].seq)
        return TM_ERETIRED;
    size_t idx = (size_t)(r->seq - j->segs[0].seq);
    if (idx >= j->nsegs)
        return -EAGAIN;
    *seg = j->segs[idx];
    *has_next = idx + 1 < j->nsegs;
    *durable = j->durable_lsn;
    return 0;
}

int jnl_reader_next(jnl_reader_t *r, jnl_record_t *rec)
{
    jnl_t *j = r->j;
    for (;;) {
        jnl_seg_t seg;
        bool has_next;
        uint64_t durable;
        pthread_mutex_lock(&j->mu);
        int rc = jnl__reader_seg(r, &seg, &has_next, &durable);
        pthread_mutex_unlock(&j->mu);
        if (rc)
            return rc;
        if (r->off >= seg.end) {
            if (!has_next)
                return -EAGAIN;
            if (r->fd >= 0) {
                j->io.close(r->fd);
                r->fd = -1;
            }
            jnl__win_free(&r->win);
            r->seq++;
            r->off = JNL_SEG_DATA_OFF;
            continue;
        }
        if (r->expect > durable)
            return -EAGAIN;
        if (r->fd < 0) {
            int fd = jnl__open_seg_rd(j, r->seq);
            if (fd < 0)
                return fd == -ENOENT ? TM_ERETIRED : fd;
            r->fd = fd;
            jnl__win_init(&r->win, &j->io, fd, seg.end);
        }
        r->win.limit = seg.end;

        jnl_rec_hdr_t h;
        const uint8_t *p;
        int err;
        jnl_rec_verdict_t v = jnl__check_at(&r->win, &seg, r->off, r->expect, &h, &p, &err);
        if (err)
            return err;
        if (v != JNL_REC_OK) {
            /* A segment retired (and perhaps reused) under the reader reads
             * as garbage; that is not corruption. */
            pthread_mutex_lock(&j->mu);
            bool retired = j->nsegs == 0 || r->seq < j->segs[0].seq;
            pthread_mutex_unlock(&j->mu);
            return retired ? TM_ERETIRED : jnl__corrupt(r->seq, r->off, jnl_rec_verdict_str(v));
        }
        uint64_t off = r->off;
        r->off += h.length;
        r->expect++;
        if (h.lsn < r->want)
            continue;
        const uint8_t *data;
        rc = jnl__payload(p, &h, &r->dbuf, &r->dcap, &data);
        if (rc == TM_ECORRUPT)
            return jnl__corrupt(r->seq, off, "payload does not decompress");
        if (rc)
            return rc;
        jnl__fill(rec, &h, r->seq, off, data);
        r->want = h.lsn + 1;
        return 0;
    }
}

void jnl_reader_close(jnl_reader_t *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        r->j->io.close(r->fd);
    jnl__win_free(&r->win);
    tm_free(r->dbuf);
    tm_free(r);
}

/* The segment a record position names, and its file open for reading:
 * the fd, or TM_ECLOSED, TM_ENOTFOUND (no record can start there),
 * TM_ERETIRED, -errno. */
static int jnl__open_at(jnl_t *j, jnl_pos_t pos, jnl_seg_t *seg)
{
    pthread_mutex_lock(&j->mu);
    int rc = 0;
    if (j->closed)
        rc = TM_ECLOSED;
    else if (j->nsegs == 0 || pos.seg > j->segs[j->nsegs - 1].seq)
        rc = TM_ENOTFOUND;
    else if (pos.seg < j->segs[0].seq)
        rc = TM_ERETIRED;
    else
        *seg = j->segs[pos.seg - j->segs[0].seq];
    pthread_mutex_unlock(&j->mu);
    if (rc)
        return rc;
    if (pos.off < JNL_SEG_DATA_OFF || pos.off + JNL_REC_OVERHEAD > seg->end)
        return TM_ENOTFOUND;
    int fd = jnl__open_seg_rd(j, pos.seg);
    return fd == -ENOENT ? TM_ERETIRED : fd;
}

int jnl_read_at(jnl_t *j, jnl_pos_t pos, jnl_record_t *rec, uint8_t **buf, size_t *cap)
{
    jnl_seg_t seg;
    int fd = jnl__open_at(j, pos, &seg);
    if (fd < 0)
        return fd;
    int rc;
    uint8_t hdr[JNL_REC_HDR_LEN];
    uint64_t avail = seg.end - pos.off;
    rc = jnl__pread_full(&j->io, fd, hdr, sizeof hdr, pos.off);
    if (rc)
        goto out_close;
    jnl_rec_hdr_t h;
    uint32_t length = tm_get32(hdr);
    if (length < JNL_REC_OVERHEAD || length > avail || length > JNL_HARD_MAX_RECORD + JNL_REC_OVERHEAD) {
        rc = jnl__corrupt(pos.seg, pos.off, "bad length");
        goto out_close;
    }
    /* The record first, then room for its decompressed payload. */
    size_t need = length;
    uint32_t raw_len = tm_get32(hdr + 24);
    if ((hdr[5] & JNL_FLAG_LZ4) && raw_len <= JNL_HARD_MAX_RECORD)
        need += raw_len;
    if (need > *cap) {
        uint8_t *p = tm_realloc(*buf, need);
        if (!p) {
            rc = -ENOMEM;
            goto out_close;
        }
        *buf = p;
        *cap = need;
    }
    rc = jnl__pread_full(&j->io, fd, *buf, length, pos.off);
    if (rc)
        goto out_close;
    jnl_rec_verdict_t v = jnl_rec_check(*buf, length, seg.salt, seg.first_lsn, 0, JNL_HARD_MAX_RECORD, &h);
    if (v != JNL_REC_OK) {
        rc = jnl__corrupt(pos.seg, pos.off, jnl_rec_verdict_str(v));
        goto out_close;
    }
    const uint8_t *data;
    if (jnl_rec_payload(*buf, &h, *buf + length, &data) != 0) {
        rc = jnl__corrupt(pos.seg, pos.off, "payload does not decompress");
        goto out_close;
    }
    jnl__fill(rec, &h, pos.seg, pos.off, data);
out_close:
    j->io.close(fd);
    return rc;
}

int jnl_read_part(jnl_t *j, jnl_pos_t pos, uint64_t lsn, uint32_t at, void *buf, uint32_t len)
{
    jnl_seg_t seg;
    int fd = jnl__open_at(j, pos, &seg);
    if (fd < 0)
        return fd;
    int rc;
    uint8_t hdr[JNL_REC_HDR_LEN];
    rc = jnl__pread_full(&j->io, fd, hdr, sizeof hdr, pos.off);
    if (rc)
        goto out_close;
    /* The header must be the record the caller indexed: its LSN, this
     * segment life's salt (a recycled file has another), stored raw, and
     * long enough for the range. The range itself is the caller's to check. */
    uint32_t length = tm_get32(hdr);
    if (length < JNL_REC_OVERHEAD || length > seg.end - pos.off || tm_get64(hdr + 8) != lsn ||
        tm_get32(hdr + 32) != (uint32_t)seg.salt) {
        rc = jnl__corrupt(pos.seg, pos.off, "the record there is not the one expected");
        goto out_close;
    }
    if (hdr[5] & JNL_FLAG_LZ4) {
        rc = TM_EINVAL;
        goto out_close;
    }
    if ((uint64_t)at + len > length - JNL_REC_OVERHEAD) {
        rc = jnl__corrupt(pos.seg, pos.off, "range past the end of the record's payload");
        goto out_close;
    }
    rc = jnl__pread_full(&j->io, fd, buf, len, pos.off + JNL_REC_HDR_LEN + at);
out_close:
    j->io.close(fd);
    /* A segment retired (and its file perhaps reused) while it was read
     * reads as another record or garbage: retired, not corrupt. Checked
     * after the data too: the caller's checksum would otherwise fail. */
    pthread_mutex_lock(&j->mu);
    bool retired = j->nsegs == 0 || pos.seg < j->segs[0].seq;
    pthread_mutex_unlock(&j->mu);
    return retired ? TM_ERETIRED : rc;
}

uint64_t jnl_bytes_after(jnl_t *j, jnl_pos_t pos)
{
    uint64_t n = 0;
    pthread_mutex_lock(&j->mu);
    for (size_t i = 0; i < j->nsegs; i++) {
        const jnl_seg_t *s = &j->segs[i];
        if (s->seq < pos.seg)
            continue;
        uint64_t from = s->seq == pos.seg ? pos.off : JNL_SEG_DATA_OFF;
        if (from < JNL_SEG_DATA_OFF)
            from = JNL_SEG_DATA_OFF;
        if (s->end > from)
            n += s->end - from;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}
