/*
 * The rebuild reader (reader.h). A read walks the chunks it touches; in each
 * it takes the extents newest first and fills only the parts of the range
 * that no newer extent filled yet, so it stops as soon as the range is
 * covered and never reads data that a newer write hides.
 */
#include "target/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "points/index.h"
#include "wire/wire.h"

/* The uncovered parts of a range: at most one more than the extents seen,
 * so a small fixed array plus growth. */
typedef struct tgt_gap {
    uint64_t a, b;
} tgt_gap_t;

/* Untouched chunks per read whose zero-filling may be skipped. */
#define TGT_LAZY_MAX 16u

struct tgt_reader {
    tgt_view_t v;
    char machine[WIRE_MAX_NAME + 1];
    char disk_name[WIRE_MAX_NAME + 1];
    int base_fd; /* -1: no base */
    /* the last write read and verified, kept for the next piece of it */
    uint8_t *raw;
    uint8_t *stored;
    uint64_t raw_lsn;
    uint32_t raw_data_off;
    bool raw_valid;
    tgt_gap_t *gaps;
    size_t ngaps, gcap;
    /* the current read */
    uint8_t *buf;
    uint64_t buf_off;
    int rc;
    bool wrote; /* an extent filled some of the range */
    char err[320];
};

int tgt_open(const tgt_view_t *v, tgt_reader_t **out)
{
    tgt_reader_t *r = tm_calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->v = *v;
    snprintf(r->machine, sizeof r->machine, "%s", v->machine ? v->machine : "?");
    snprintf(r->disk_name, sizeof r->disk_name, "%s", v->disk_name ? v->disk_name : "?");
    r->v.machine = r->machine;
    r->v.disk_name = r->disk_name;
    r->v.base_path = NULL;
    r->base_fd = -1;
    r->raw = tm_malloc(WIRE_MAX_WRITE);
    r->stored = tm_malloc(WIRE_MAX_WRITE);
    if (!r->raw || !r->stored) {
        tgt_close(r);
        return -ENOMEM;
    }
    if (v->base_path && v->base_path[0]) {
        r->base_fd = open(v->base_path, O_RDONLY | O_CLOEXEC);
        if (r->base_fd < 0 && errno != ENOENT) {
            int rc = -errno;
            tgt_close(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

void tgt_close(tgt_reader_t *r)
{
    if (!r)
        return;
    if (r->base_fd >= 0)
        close(r->base_fd);
    tm_free(r->raw);
    tm_free(r->stored);
    tm_free(r->gaps);
    tm_free(r);
}

const char *tgt_error(const tgt_reader_t *r)
{
    return r->err;
}

static int tgt__fail(tgt_reader_t *r, int rc, const pts_extent_t *e, const char *what)
{
    snprintf(r->err, sizeof r->err,
             "machine %s disk %s at point %" PRIu64 ": the write at offset %" PRIu64 " (%" PRIu32
             " bytes, sequence %" PRIu64 ", journal record %" PRIu64 " in segment %" PRIu64 " at %" PRIu64 ") %s",
             r->machine, r->disk_name, r->v.seq, e->w_off, e->w_len, e->seq, e->lsn, e->pos.seg, e->pos.off, what);
    tm_log(TM_LOG_ERROR, "target: %s", r->err);
    return rc;
}

/* The raw bytes of e's write, verified, in r->raw. */
static int tgt__load(tgt_reader_t *r, const pts_extent_t *e)
{
    if (r->raw_valid && r->raw_lsn == e->lsn && r->raw_data_off == e->data_off)
        return 0;
    r->raw_valid = false;
    if (e->w_len > WIRE_MAX_WRITE || e->stored > WIRE_MAX_WRITE)
        return tgt__fail(r, TM_ECORRUPT, e, "is larger than any write can be (damaged index)");
    uint8_t *dst = e->codec ? r->stored : r->raw;
    int rc = jnl_read_part(r->v.jnl, e->pos, e->lsn, e->data_off, dst, e->stored);
    if (rc == TM_ERETIRED)
        return tgt__fail(r, rc, e, "is in a journal segment that was retired");
    if (rc == TM_ECORRUPT || rc == TM_ENOTFOUND)
        return tgt__fail(r, TM_ECORRUPT, e, "cannot be found in the journal: corruption");
    if (rc)
        return tgt__fail(r, rc, e, "cannot be read from the journal");
    if (e->codec) {
        int n = LZ4_decompress_safe((const char *)r->stored, (char *)r->raw, (int)e->stored, (int)e->w_len);
        if (n < 0 || (uint32_t)n != e->w_len)
            return tgt__fail(r, TM_ECORRUPT, e, "does not decompress: corruption in the journal");
    }
    if (XXH3_64bits(r->raw, e->w_len) != e->hash)
        return tgt__fail(r, TM_ECORRUPT, e, "fails its checksum: corruption in the journal");
    r->raw_lsn = e->lsn;
    r->raw_data_off = e->data_off;
    r->raw_valid = true;
    return 0;
}

static int tgt__add_gap(tgt_reader_t *r, uint64_t a, uint64_t b)
{
    if (r->ngaps == r->gcap && tm_grow((void **)&r->gaps, &r->gcap, r->ngaps + 1, sizeof *r->gaps) != 0)
        return -ENOMEM;
    r->gaps[r->ngaps++] = (tgt_gap_t){a, b};
    return 0;
}

/* One extent, newest first: fill the gaps it covers, keep the rest. */
static int tgt__extent(void *arg, const pts_extent_t *e)
{
    tgt_reader_t *r = arg;
    uint64_t ea = e->off, eb = e->off + e->len;
    size_t n = r->ngaps;
    for (size_t i = 0; i < n; i++) {
        tgt_gap_t g = r->gaps[i];
        uint64_t a = g.a > ea ? g.a : ea, b = g.b < eb ? g.b : eb;
        if (a >= b)
            continue;
        if (e->kind == PTS_EXT_WRITE) {
            int rc = tgt__load(r, e);
            if (rc)
                return rc;
            memcpy(r->buf + (a - r->buf_off), r->raw + (a - e->w_off), b - a);
        } else {
            memset(r->buf + (a - r->buf_off), 0, b - a);
        }
        r->wrote = true;
        /* what is left of the gap: before a and after b */
        r->gaps[i].b = a;
        if (b < g.b && tgt__add_gap(r, b, g.b) != 0)
            return -ENOMEM;
    }
    /* drop emptied gaps */
    size_t k = 0;
    for (size_t i = 0; i < r->ngaps; i++)
        if (r->gaps[i].a < r->gaps[i].b)
            r->gaps[k++] = r->gaps[i];
    r->ngaps = k;
    return k == 0 ? 1 : 0;
}

/* The base image (or zeros) for what no extent covered. */
static int tgt__fill_base(tgt_reader_t *r, int *hole)
{
    for (size_t i = 0; i < r->ngaps; i++) {
        uint64_t a = r->gaps[i].a, b = r->gaps[i].b;
        uint8_t *dst = r->buf + (a - r->buf_off);
        size_t got = 0;
        while (r->base_fd >= 0 && got < b - a) {
            ssize_t n = pread(r->base_fd, dst + got, b - a - got, (off_t)(a + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                snprintf(r->err, sizeof r->err, "machine %s disk %s: the replica base cannot be read: %s",
                         r->machine, r->disk_name, strerror(errno));
                return -errno;
            }
            if (n == 0)
                break; /* past the base's end: zeros */
            got += (size_t)n;
            *hole = 0; /* cheap to say; holes of the base read as zeros anyway */
        }
        memset(dst + got, 0, b - a - got);
    }
    return 0;
}

int tgt_read(tgt_reader_t *r, uint64_t off, void *buf, size_t len, int *hole)
{
    int h;
    int rc = tgt_read_sparse(r, off, buf, len, &h);
    if (rc == 0 && h)
        memset(buf, 0, len);
    if (hole)
        *hole = h;
    return rc;
}

int tgt_read_sparse(tgt_reader_t *r, uint64_t off, void *buf, size_t len, int *hole)
{
    int dummy;
    if (!hole)
        hole = &dummy;
    *hole = 1;
    /* Chunks nothing covers, with no base: zero-filled at the end, and
     * only when some other part of the range is not a hole. */
    uint64_t lazy_a[TGT_LAZY_MAX], lazy_b[TGT_LAZY_MAX];
    unsigned nlazy = 0;
    r->err[0] = '\0';
    if (off > r->v.size || len > r->v.size - off)
        return TM_EINVAL;
    uint64_t end = off + len;
    for (uint64_t a = off; a < end;) {
        uint64_t chunk = a >> PTS_CHUNK_SHIFT;
        uint64_t b = (chunk + 1) << PTS_CHUNK_SHIFT;
        if (b > end)
            b = end;
        r->ngaps = 0;
        if (tgt__add_gap(r, a, b) != 0)
            return -ENOMEM;
        r->buf = (uint8_t *)buf + (a - off);
        r->buf_off = a;
        r->wrote = false;
        int rc = pts_index_scan_chunk(r->v.ix, r->v.mid, r->v.disk, chunk, r->v.seq, tgt__extent, r);
        if (rc) {
            if (!r->err[0])
                snprintf(r->err, sizeof r->err, "machine %s disk %s: the index cannot be read: %s", r->machine,
                         r->disk_name, tm_strerror(rc));
            return rc;
        }
        if (r->wrote)
            *hole = 0;
        if (!r->wrote && r->base_fd < 0 && nlazy < TGT_LAZY_MAX) {
            lazy_a[nlazy] = a;
            lazy_b[nlazy++] = b;
        } else {
            rc = tgt__fill_base(r, hole);
            if (rc)
                return rc;
        }
        a = b;
    }
    if (!*hole)
        for (unsigned i = 0; i < nlazy; i++)
            memset((uint8_t *)buf + (lazy_a[i] - off), 0, lazy_b[i] - lazy_a[i]);
    return 0;
}
