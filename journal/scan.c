/* Reading records out of a segment file: a read window, the per-record
 * check, and the look-ahead that tells a torn tail from corruption. */
#include <errno.h>
#include <string.h>

#include "base/endian.h"
#include "base/mem.h"
#include "journal/journal_int.h"

/* Each refill reads at least this much, so a scan costs few preads. */
#define JNL_WIN_CHUNK (1u << 20)

void jnl__win_init(jnl_win_t *w, const jnl_io_t *io, int fd, uint64_t limit)
{
    memset(w, 0, sizeof *w);
    w->io = io;
    w->fd = fd;
    w->limit = limit;
}

void jnl__win_free(jnl_win_t *w)
{
    tm_free(w->buf);
    w->buf = NULL;
    w->cap = w->len = 0;
}

int jnl__win_get(jnl_win_t *w, uint64_t off, size_t want, const uint8_t **p, size_t *avail)
{
    if (off >= w->limit) {
        *p = NULL;
        *avail = 0;
        return 0;
    }
    uint64_t left = w->limit - off;
    if (want > left)
        want = (size_t)left;
    if (off >= w->start && off + want <= w->start + w->len) {
        *p = w->buf + (off - w->start);
        *avail = want;
        return 0;
    }
    size_t fill = want > JNL_WIN_CHUNK ? want : JNL_WIN_CHUNK;
    if (fill > left)
        fill = (size_t)left;
    if (fill > w->cap) {
        uint8_t *nb = tm_realloc(w->buf, fill);
        if (!nb)
            return -ENOMEM;
        w->buf = nb;
        w->cap = fill;
    }
    w->len = 0;
    int rc = jnl__pread_full(w->io, w->fd, w->buf, fill, off);
    if (rc < 0)
        return rc;
    w->start = off;
    w->len = fill;
    *p = w->buf;
    *avail = want;
    return 0;
}

jnl_rec_verdict_t jnl__check_at(jnl_win_t *w, const jnl_seg_t *s, uint64_t off, uint64_t expect_lsn,
                                jnl_rec_hdr_t *h, const uint8_t **rec, int *err)
{
    const uint8_t *p;
    size_t avail;
    *err = jnl__win_get(w, off, JNL_REC_HDR_LEN, &p, &avail);
    if (*err)
        return JNL_REC_SHORT_HEADER;
    if (avail >= JNL_REC_HDR_LEN) {
        /* Bring in the whole record if its length is within bounds; the
         * check below judges the length again before trusting it. */
        uint32_t length = tm_get32(p);
        if (length >= JNL_REC_OVERHEAD && length <= JNL_HARD_MAX_RECORD + JNL_REC_OVERHEAD) {
            *err = jnl__win_get(w, off, length, &p, &avail);
            if (*err)
                return JNL_REC_SHORT_HEADER;
        }
    }
    *rec = p;
    return jnl_rec_check(p, avail, s->salt, s->first_lsn, expect_lsn, JNL_HARD_MAX_RECORD, h);
}

/* What follows an invalid record at off (expected LSN `expect`) in segment s:
 * *later_off gets the offset of a valid record of a later batch (0 if none),
 * *same_batch the count of valid records of the same unfinished batch. */
static int jnl__look_ahead(jnl_win_t *w, const jnl_seg_t *s, uint64_t off, uint64_t expect, uint64_t *later_off,
                           uint64_t *same_batch)
{
    *later_off = 0;
    *same_batch = 0;
    uint32_t salt32 = (uint32_t)s->salt;
    for (uint64_t o = off + 1; o + JNL_REC_OVERHEAD <= w->limit; o++) {
        const uint8_t *p;
        size_t avail;
        int rc = jnl__win_get(w, o, JNL_REC_HDR_LEN, &p, &avail);
        if (rc)
            return rc;
        if (avail < JNL_REC_HDR_LEN)
            break;
        /* Cheap filters first: this runs at every byte offset. */
        if (tm_get32(p + 32) != salt32 || tm_get64(p + 8) < expect)
            continue;
        jnl_rec_hdr_t h;
        const uint8_t *rec;
        int err;
        if (jnl__check_at(w, s, o, 0, &h, &rec, &err) != JNL_REC_OK) {
            if (err)
                return err;
            continue;
        }
        if (h.lsn - h.batch_back > expect) {
            *later_off = o;
            return 0;
        }
        (*same_batch)++;
        o += h.length - 1;
    }
    return 0;
}

int jnl__classify_end(jnl_win_t *w, const jnl_seg_t *s, uint64_t off, uint64_t expect, jnl_rec_verdict_t v,
                      jnl__end_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (off >= w->limit) {
        out->kind = JNL__END_CLEAN;
        out->reason = "end of segment";
        return 0;
    }
    out->reason = jnl_rec_verdict_str(v);
    int rc = jnl__look_ahead(w, s, off, expect, &out->later_off, &out->same_batch);
    if (rc)
        return rc;
    if (out->later_off)
        out->kind = JNL__END_CORRUPT;
    else if ((v == JNL_REC_ZERO_LENGTH || v == JNL_REC_STALE_SALT) && out->same_batch == 0)
        out->kind = JNL__END_CLEAN; /* space never written in this life of the file */
    else
        out->kind = JNL__END_TORN;
    return 0;
}
