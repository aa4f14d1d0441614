/*
 * Retention: thinning the catalog, moving the horizon, folding what lies
 * before it into the replica base, and retiring the journal behind it.
 *
 * Thinning policy (absolute time slots, so a point kept once stays kept
 * until its slot widens, and the choice does not depend on when retention
 * runs):
 *   - the newest point of a machine is always kept;
 *   - points older than the machine's window are dropped;
 *   - crash points: all from the last hour; the oldest of each 15-minute
 *     slot up to a day; the oldest of each 4-hour slot beyond;
 *   - app points: all from the last day; the oldest of each hour beyond.
 *
 * The horizon H is then the oldest point kept. In three steps, each safe
 * to cut short by a crash:
 *   1. commit: the dropped points go, first_seq = H (nothing before H can
 *      be selected or pinned from now on);
 *   2. fold: the journal batches up to H are applied, in stream order, to
 *      the sparse base image of each disk (writes verified by their XXH3),
 *      then the images are synced. Applying them again after a crash gives
 *      the same images, and a reader of any point at or after H never reads
 *      a base byte that an extent up to H covers: the extents are still in
 *      the index and it finds them first;
 *   3. commit: their extents and time keys go, base_seq = the last folded.
 * Then every journal record below the oldest one an index entry still
 * names is retired.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/endian.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/record.h"
#include "points/pts_int.h"

#define NS_MIN (60ull * 1000000000ull)
#define NS_HOUR (60ull * NS_MIN)
#define NS_DAY (24ull * NS_HOUR)
/* Journal bytes folded per machine per pass: retention never holds the
 * processor for long. */
#define PTS_FOLD_BUDGET (256u << 20)

uint64_t pts__window(const pts_t *p, const char *machine)
{
    for (size_t i = 0; i < p->nper; i++)
        if (strcmp(p->per[i].machine, machine) == 0)
            return p->per[i].window_ns;
    return p->retention_ns;
}

void pts_base_path(const pts_t *p, const char *machine, const char *disk, char *buf, size_t len)
{
    if (!p->base_dir) {
        buf[0] = '\0'; /* no retention, no base */
        return;
    }
    snprintf(buf, len, "%s/%s/%s.img", p->base_dir, machine, disk);
}

/* The slot width for a point of this kind and age; 0 keeps it outright. */
static uint64_t pts__slot(pts_kind_t kind, uint64_t age)
{
    if (kind == PTS_KIND_APP)
        return age <= NS_DAY ? 0 : NS_HOUR;
    if (age <= NS_HOUR)
        return 0;
    return age <= NS_DAY ? 15 * NS_MIN : 4 * NS_HOUR;
}

/* Step 1's decisions: the dropped points into wb; *oldest gets the oldest
 * point kept (0: none). Under wmu. */
static int pts__thin(pts_t *p, pts_mrec_t *r, uint64_t now, uint64_t *oldest)
{
    uint64_t window = pts__window(p, r->m.name);
    uint8_t lo[5], hi[5];
    pts_key_prefix(lo, PTS_K_POINT, r->m.id);
    pts_key_prefix(hi, PTS_K_POINT, r->m.id + 1);
    pts_iter_t *it = pts_iter_new(p->ix, lo, sizeof lo, hi, sizeof hi);
    if (!it)
        return -ENOMEM;
    /* per kind: the slot of the last point kept, with its width */
    uint64_t last_slot[4] = {0}, last_width[4] = {0};
    *oldest = 0;
    int rc = 0;
    for (pts_iter_first(it); pts_iter_valid(it); pts_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *v = pts_iter_value(it, &vl);
        uint32_t mid;
        uint64_t seq;
        pts_point_t pt;
        if (pts_key_point_parse(k, kl, &mid, &seq) != 0 || pts_val_point_parse(v, vl, seq, &pt) != 0) {
            rc = TM_ECORRUPT;
            break;
        }
        bool keep;
        /* A group point is thinned by its round's time (its tag id), the
         * same on every member, so that every member keeps the same rounds
         * (class 3: its own slots, apart from the machine's own points). */
        uint64_t t = pt.multivm ? pt.tag_id : pt.time_ns;
        unsigned cls = pt.multivm ? 3u : (unsigned)pt.kind;
        uint64_t age = now > t ? now - t : 0;
        if (seq == r->latest_seq) {
            keep = true; /* never drop a point before a newer one exists */
        } else if (age > window) {
            keep = false;
        } else {
            uint64_t w = pts__slot(pt.kind, age);
            if (w == 0) {
                keep = true;
            } else {
                uint64_t slot = t / w;
                keep = !(last_width[cls] == w && last_slot[cls] == slot);
                if (keep) {
                    last_slot[cls] = slot;
                    last_width[cls] = w;
                }
            }
        }
        if (keep) {
            if (!*oldest)
                *oldest = seq;
        } else {
            pts_wb_delete(p->wb, k, kl);
        }
    }
    if (rc == 0)
        rc = pts_iter_status(it);
    pts_iter_free(it);
    return rc;
}

/* The lowest pinned sequence of mid, UINT64_MAX if none. Under mu. */
static uint64_t pts__min_pin(const pts_t *p, uint32_t mid)
{
    uint64_t m = UINT64_MAX;
    for (size_t i = 0; i < p->npins; i++)
        if (p->pins[i].mid == mid && p->pins[i].seq < m)
            m = p->pins[i].seq;
    return m;
}

int pts_pin(pts_t *p, uint32_t mid, uint64_t seq)
{
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    if (mid == 0 || mid > p->npub || seq < p->pub[mid - 1].m.first_seq) {
        rc = TM_ENOPOINT;
    } else if (p->npins == p->pins_cap &&
               tm_grow((void **)&p->pins, &p->pins_cap, p->npins + 1, sizeof *p->pins) != 0) {
        rc = -ENOMEM;
    } else {
        p->pins[p->npins++] = (pts_pin_t){mid, seq};
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void pts_unpin(pts_t *p, uint32_t mid, uint64_t seq)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->npins; i++) {
        if (p->pins[i].mid == mid && p->pins[i].seq == seq) {
            p->pins[i] = p->pins[--p->npins];
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

/* mkdir -p of base_dir/machine; 0 or -errno. */
static int pts__mkdirs(const pts_t *p, const char *machine)
{
    char d[PATH_MAX];
    if (mkdir(p->base_dir, 0700) != 0 && errno != EEXIST)
        return -errno;
    snprintf(d, sizeof d, "%s/%s", p->base_dir, machine);
    if (mkdir(d, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

typedef struct pts_fold {
    int fds[WIRE_MAX_DISKS];
    uint8_t *rec_buf;
    size_t rec_cap;
    uint8_t *scratch;
} pts_fold_t;

static int pts__base_fd(pts_t *p, pts_mrec_t *r, pts_fold_t *f, unsigned d)
{
    if (f->fds[d] >= 0)
        return f->fds[d];
    int rc = pts__mkdirs(p, r->m.name);
    if (rc)
        return rc;
    char path[PATH_MAX];
    pts_base_path(p, r->m.name, r->m.disks[d].name, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)r->m.disks[d].size) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    f->fds[d] = fd;
    return fd;
}

static int pts__pwrite_all(int fd, const uint8_t *b, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int pts__zero(int fd, uint64_t off, uint64_t len)
{
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    /* a file system without hole punching: write the zeros */
    static const uint8_t zeros[65536];
    while (len) {
        size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;
        int rc = pts__pwrite_all(fd, zeros, n, off);
        if (rc)
            return rc;
        off += n;
        len -= n;
    }
    return 0;
}

/* Delete the extent pieces of entry e (seq) from the index. */
static void pts__delete_pieces(pts_t *p, uint32_t mid, const wire_entry_t *e, uint64_t seq)
{
    uint64_t end = e->offset + e->length;
    for (uint64_t c = e->offset >> PTS_CHUNK_SHIFT; (c << PTS_CHUNK_SHIFT) < end; c++) {
        uint8_t k[PTS_EXTENT_KEY_LEN];
        pts_key_extent(k, mid, e->disk, c, seq);
        pts_wb_delete(p->wb, k, sizeof k);
    }
}

/* Apply one batch's entries in (from, to] to the base images. */
static int pts__fold_batch(pts_t *p, pts_mrec_t *r, pts_fold_t *f, const pts_tbatch_t *tb, uint64_t from,
                           uint64_t to, size_t *bytes)
{
    jnl_record_t rec;
    int rc = jnl_read_at(p->jnl, tb->pos, &rec, &f->rec_buf, &f->rec_cap);
    if (rc == 0 && (rec.lsn != tb->lsn || rec.type != INGEST_REC_BATCH))
        rc = TM_ECORRUPT;
    ingest_batch_rec_t b;
    char why[160] = "";
    if (rc == 0 && (rc = ingest_rec_batch_parse(rec.data, rec.len, &b)) == 0 &&
        wire_dec_records(b.body, b.body_len, p->recs, f->scratch, why, sizeof why) != 0)
        rc = TM_ECORRUPT;
    if (rc) {
        tm_log(TM_LOG_ERROR, "points: retention of %s stopped: its batch at journal record %" PRIu64 " cannot be read: %s%s%s",
               r->m.name, tb->lsn, tm_strerror(rc), why[0] ? ": " : "", why);
        return rc;
    }
    *bytes += rec.len;
    const wire_records_t *m = p->recs;
    for (unsigned i = 0; i < m->count; i++) {
        const wire_entry_t *e = &m->entries[i];
        uint64_t seq = m->first_seq + i;
        if (seq <= from || seq > to)
            continue;
        if (e->kind != WIRE_R_WRITE && e->kind != WIRE_R_ZERO && e->kind != WIRE_R_TRIM)
            continue;
        if (e->disk >= r->m.ndisks)
            return TM_ECORRUPT;
        int fd = pts__base_fd(p, r, f, e->disk);
        if (fd < 0) {
            tm_log(TM_LOG_ERROR, "points: the replica base of %s/%s cannot be opened: %s", r->m.name,
                   r->m.disks[e->disk].name, tm_strerror(fd));
            return fd;
        }
        rc = e->kind == WIRE_R_WRITE ? pts__pwrite_all(fd, e->data, e->length, e->offset)
                                     : pts__zero(fd, e->offset, e->length);
        if (rc) {
            tm_log(TM_LOG_ERROR, "points: the replica base of %s/%s cannot be written: %s", r->m.name,
                   r->m.disks[e->disk].name, tm_strerror(rc));
            return rc;
        }
        pts__delete_pieces(p, r->m.id, e, seq);
    }
    return 0;
}

/* Windows of inconsistency that end at or before seq: folded away. */
static void pts__drop_windows(pts_t *p, uint32_t mid, uint64_t seq)
{
    uint8_t lo[5], hi[5];
    pts_key_prefix(lo, PTS_K_UNSAFE, mid);
    pts_key_prefix(hi, PTS_K_UNSAFE, mid + 1);
    pts_iter_t *it = pts_iter_new(p->ix, lo, sizeof lo, hi, sizeof hi);
    if (!it)
        return; /* they only cost a few bytes: next time */
    for (pts_iter_first(it); pts_iter_valid(it); pts_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *v = pts_iter_value(it, &vl);
        if (vl != 8 || tm_get64(v) > seq)
            break;
        pts_wb_delete(p->wb, k, kl);
    }
    pts_iter_free(it);
}

/* Step 2 and 3 for one machine: fold up to `to`. Under wmu. */
static int pts__fold(pts_t *p, pts_mrec_t *r, uint64_t to)
{
    pts_fold_t f = {.scratch = tm_malloc(WIRE_MAX_BATCH_DATA)};
    for (unsigned d = 0; d < WIRE_MAX_DISKS; d++)
        f.fds[d] = -1;
    if (!f.scratch)
        return -ENOMEM;
    uint8_t lo[5], hi[5];
    pts_key_prefix(lo, PTS_K_TIME, r->m.id);
    pts_key_prefix(hi, PTS_K_TIME, r->m.id + 1);
    pts_iter_t *it = pts_iter_new(p->ix, lo, sizeof lo, hi, sizeof hi);
    int rc = it ? 0 : -ENOMEM;
    uint64_t done = r->m.base_seq;
    size_t bytes = 0;
    for (pts_iter_first(it); rc == 0 && it && pts_iter_valid(it) && bytes < PTS_FOLD_BUDGET; pts_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *v = pts_iter_value(it, &vl);
        uint32_t mid;
        pts_tbatch_t tb;
        if (pts_time_parse(k, kl, v, vl, &mid, &tb) != 0) {
            rc = TM_ECORRUPT;
            break;
        }
        if (tb.first_seq > to)
            break;
        if (tb.last_seq > done) {
            rc = pts__fold_batch(p, r, &f, &tb, done, to, &bytes);
            if (rc)
                break;
            done = tb.last_seq < to ? tb.last_seq : to;
        }
        if (tb.last_seq <= done)
            pts_wb_delete(p->wb, k, kl);
    }
    if (rc == 0 && it)
        rc = pts_iter_status(it);
    pts_iter_free(it);
    for (unsigned d = 0; d < WIRE_MAX_DISKS; d++) {
        if (f.fds[d] < 0)
            continue;
        if (rc == 0 && fdatasync(f.fds[d]) != 0)
            rc = -errno;
        close(f.fds[d]);
    }
    tm_free(f.rec_buf);
    tm_free(f.scratch);
    if (rc) {
        pts_wb_clear(p->wb);
        return rc;
    }
    if (done > r->m.base_seq) {
        pts__drop_windows(p, r->m.id, done);
        r->m.base_seq = done;
        pts__touch(p, r);
    }
    return pts__commit(p);
}

/* The LSN of the oldest batch of mid still indexed; 0 when none. */
static int pts__oldest_lsn(pts_t *p, uint32_t mid, uint64_t *lsn)
{
    uint8_t lo[5], hi[5];
    pts_key_prefix(lo, PTS_K_TIME, mid);
    pts_key_prefix(hi, PTS_K_TIME, mid + 1);
    pts_iter_t *it = pts_iter_new(p->ix, lo, sizeof lo, hi, sizeof hi);
    if (!it)
        return -ENOMEM;
    *lsn = 0;
    int rc = 0;
    pts_iter_first(it);
    if (pts_iter_valid(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *v = pts_iter_value(it, &vl);
        uint32_t m;
        pts_tbatch_t tb;
        rc = pts_time_parse(k, kl, v, vl, &m, &tb);
        if (rc == 0)
            *lsn = tb.lsn;
    } else {
        rc = pts_iter_status(it);
    }
    pts_iter_free(it);
    return rc;
}

int pts__retire(pts_t *p)
{
    uint64_t below = p->next_lsn;
    for (size_t i = 0; i < p->nmach; i++) {
        uint64_t l;
        int rc = pts__oldest_lsn(p, p->priv[i].m.id, &l);
        if (rc)
            return rc;
        if (l && l < below)
            below = l;
    }
    jnl_stats_t st;
    jnl_get_stats(p->jnl, &st);
    if (st.segments < 2 || below <= st.first_lsn)
        return 0; /* nothing could go: the segment being written never does */
    /* The index must be durable before the records it replaced go. */
    int rc = pts_index_flush(p->ix);
    if (rc)
        return rc;
    unsigned dropped = 0;
    rc = jnl_retire(p->jnl, below, &dropped);
    if (rc == 0 && dropped)
        tm_log(TM_LOG_INFO, "points: retired %u journal segment%s (records below %" PRIu64 " are folded)", dropped,
               dropped == 1 ? "" : "s", below);
    return rc;
}

/* Retention of one machine. Under wmu. */
static int pts__retain_one(pts_t *p, pts_mrec_t *r, uint64_t now)
{
    uint64_t oldest;
    int rc = pts__thin(p, r, now, &oldest);
    if (rc)
        return rc;
    bool changed = pts_wb_count(p->wb) > 0;
    pthread_mutex_lock(&p->mu);
    uint64_t h = oldest ? oldest : r->m.first_seq;
    uint64_t pin = pts__min_pin(p, r->m.id);
    if (pin < h)
        h = pin;
    if (h > r->m.first_seq) {
        r->m.first_seq = h;
        /* pins and selectors see the new horizon before anything moves */
        p->pub[r->m.id - 1].m.first_seq = h;
        changed = true;
    }
    pthread_mutex_unlock(&p->mu);
    if (changed) {
        pts__touch(p, r);
        rc = pts__commit(p);
        if (rc)
            return rc;
    }
    if (!p->base_dir || r->m.first_seq <= r->m.base_seq + 1 || r->m.ndisks == 0)
        return 0;
    if (pts__low_space(p))
        return 0; /* folding writes base images and the index: later */
    /* base holds the disks as of the horizon point itself */
    return pts__fold(p, r, r->m.first_seq);
}

int pts__retain_locked(pts_t *p, uint64_t now)
{
    int first = 0;
    for (size_t i = 0; i < p->nmach && first != -EIO; i++) {
        if (p->priv[i].m.failover == PTS_FO_COMMITTED)
            continue; /* nothing of it is kept */
        int rc = pts__retain_one(p, &p->priv[i], now);
        if (rc && !first)
            first = rc;
    }
    if (first == 0)
        first = pts__groups_retain(p);
    if (first == 0 && p->base_dir && p->retire_journal)
        first = pts__retire(p);
    return first;
}

int pts_retain(pts_t *p, uint64_t now_ns)
{
    pthread_mutex_lock(&p->wmu);
    int rc = pts__retain_locked(p, now_ns);
    pthread_mutex_unlock(&p->wmu);
    return rc;
}
