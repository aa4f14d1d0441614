/*
 * The rebuild reader (reader.h). A read walks the chunks it touches; in each
 * it takes the extents newest first and fills only the parts of the range
 * that no newer extent filled yet, so it stops as soon as the range is
 * covered and never reads data that a newer write hides.
 *
 * With a chunk cache (chunks.h) the extents come from the chunk's kept
 * list; a miss scans the whole chunk once (not only the range read),
 * leaving out what can never show, and keeps the list for the next reads.
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

typedef struct tgt_gaps {
    tgt_gap_t *g;
    size_t n, cap;
} tgt_gaps_t;

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
    tgt_gaps_t gaps; /* of the range of the current chunk not filled yet */
    /* a chunk's scan for the cache: the extents kept, and what of the
     * chunk no newer one covers */
    pts_extent_t *col;
    size_t ncol, colcap;
    tgt_gaps_t cgaps;
    /* the current read */
    uint8_t *buf;
    uint64_t buf_off;
    bool wrote; /* an extent filled some of the range */
    bool quiet; /* a failure through a kept list is retried: not logged */
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
    tm_free(r->gaps.g);
    tm_free(r->cgaps.g);
    tm_free(r->col);
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
    if (!r->quiet)
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

static int tgt__add_gap(tgt_gaps_t *gs, uint64_t a, uint64_t b)
{
    if (gs->n == gs->cap && tm_grow((void **)&gs->g, &gs->cap, gs->n + 1, sizeof *gs->g) != 0)
        return -ENOMEM;
    gs->g[gs->n++] = (tgt_gap_t){a, b};
    return 0;
}

/*
 * Take [ea, eb) out of the gaps: fill(r, e, a, b) (when not NULL) for each
 * piece of it that was still a gap, before that piece goes. 1 when no gap
 * is left, 0 when some are, or fill's error. *hit (may be NULL) tells
 * whether any piece was a gap.
 */
static int tgt__cut(tgt_reader_t *r, tgt_gaps_t *gs, const pts_extent_t *e, bool *hit,
                    int (*fill)(tgt_reader_t *r, const pts_extent_t *e, uint64_t a, uint64_t b))
{
    uint64_t ea = e->off, eb = e->off + e->len;
    size_t n = gs->n;
    for (size_t i = 0; i < n; i++) {
        tgt_gap_t g = gs->g[i];
        uint64_t a = g.a > ea ? g.a : ea, b = g.b < eb ? g.b : eb;
        if (a >= b)
            continue;
        if (fill) {
            int rc = fill(r, e, a, b);
            if (rc)
                return rc;
        }
        if (hit)
            *hit = true;
        /* what is left of the gap: before a and after b */
        gs->g[i].b = a;
        if (b < g.b && tgt__add_gap(gs, b, g.b) != 0)
            return -ENOMEM;
    }
    /* drop emptied gaps */
    size_t k = 0;
    for (size_t i = 0; i < gs->n; i++)
        if (gs->g[i].a < gs->g[i].b)
            gs->g[k++] = gs->g[i];
    gs->n = k;
    return k == 0 ? 1 : 0;
}

/* One piece of the range an extent covers: its bytes into the buffer. */
static int tgt__fill(tgt_reader_t *r, const pts_extent_t *e, uint64_t a, uint64_t b)
{
    if (e->kind == PTS_EXT_WRITE) {
        int rc = tgt__load(r, e);
        if (rc)
            return rc;
        memcpy(r->buf + (a - r->buf_off), r->raw + (a - e->w_off), b - a);
    } else {
        memset(r->buf + (a - r->buf_off), 0, b - a);
    }
    r->wrote = true;
    return 0;
}

/* One extent, newest first: fill the gaps it covers, keep the rest. */
static int tgt__extent(void *arg, const pts_extent_t *e)
{
    tgt_reader_t *r = arg;
    return tgt__cut(r, &r->gaps, e, NULL, tgt__fill);
}

/* One extent of a chunk's scan for the cache, newest first: kept only if
 * some of it still shows; the scan stops once the chunk is covered (older
 * extents can never show at this point). */
static int tgt__collect(void *arg, const pts_extent_t *e)
{
    tgt_reader_t *r = arg;
    bool shows = false;
    int rc = tgt__cut(r, &r->cgaps, e, &shows, NULL);
    if (rc < 0 || !shows)
        return rc;
    if (r->ncol == r->colcap && tm_grow((void **)&r->col, &r->colcap, r->ncol + 1, sizeof *r->col) != 0)
        return -ENOMEM;
    r->col[r->ncol++] = *e;
    return rc;
}

/* The base image (or zeros) for what no extent covered. */
static int tgt__fill_base(tgt_reader_t *r, int *hole)
{
    for (size_t i = 0; i < r->gaps.n; i++) {
        uint64_t a = r->gaps.g[i].a, b = r->gaps.g[i].b;
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

/* Start filling [a, b) of one chunk at dst: all of it a gap. */
static int tgt__chunk_start(tgt_reader_t *r, uint64_t a, uint64_t b, uint8_t *dst)
{
    r->gaps.n = 0;
    r->buf = dst;
    r->buf_off = a;
    r->wrote = false;
    return tgt__add_gap(&r->gaps, a, b);
}

/* Fill [a, b) (inside chunk) from n extents, newest first. */
static int tgt__apply(tgt_reader_t *r, const pts_extent_t *e, size_t n, uint64_t a, uint64_t b, uint8_t *dst)
{
    int rc = tgt__chunk_start(r, a, b, dst);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = tgt__extent(r, &e[i]);
    return rc > 0 ? 0 : rc;
}

/* Scan the index for the extents of chunk that can show at the point,
 * into r->col. */
static int tgt__scan(tgt_reader_t *r, uint64_t chunk)
{
    uint64_t ca = chunk << PTS_CHUNK_SHIFT, cb = (chunk + 1) << PTS_CHUNK_SHIFT;
    if (cb > r->v.size)
        cb = r->v.size;
    r->ncol = 0;
    r->cgaps.n = 0;
    int rc = tgt__add_gap(&r->cgaps, ca, cb);
    if (rc == 0)
        rc = pts_index_scan_chunk(r->v.ix, r->v.mid, r->v.disk, chunk, r->v.seq, tgt__collect, r);
    return rc;
}

/*
 * Fill [a, b) of chunk through the cache. A kept list that fails (a
 * journal record retired since the list was loaded: retention folded it
 * into the base, see chunks.h; or any failed check) is forgotten and the
 * chunk done again from a new scan, whose result stands: a failure then is
 * reported (and logged) exactly as without the cache. A new scan's list is
 * kept unless its read failed.
 */
static int tgt__chunk_cached(tgt_reader_t *r, uint64_t chunk, uint64_t a, uint64_t b, uint8_t *dst)
{
    tgt_chunks_t *c = r->v.chunks;
    tgt_clist_t *l = tgt_chunks_get(c, chunk);
    if (l) {
        r->quiet = true;
        int rc = tgt__apply(r, l->e, l->n, a, b, dst);
        r->quiet = false;
        if (rc == 0 || (rc != TM_ERETIRED && rc != TM_ECORRUPT)) {
            tgt_clist_release(l);
            return rc;
        }
        tgt_chunks_forget(c, l);
        tgt_clist_release(l);
        r->err[0] = '\0';
    }
    int rc = tgt__scan(r, chunk);
    if (rc)
        return rc;
    rc = tgt__apply(r, r->col, r->ncol, a, b, dst);
    if (rc == 0)
        tgt_chunks_add(c, chunk, r->col, (uint32_t)r->ncol);
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
        uint8_t *dst = (uint8_t *)buf + (a - off);
        int rc;
        if (r->v.chunks) {
            rc = tgt__chunk_cached(r, chunk, a, b, dst);
        } else {
            rc = tgt__chunk_start(r, a, b, dst);
            if (rc == 0)
                rc = pts_index_scan_chunk(r->v.ix, r->v.mid, r->v.disk, chunk, r->v.seq, tgt__extent, r);
        }
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
