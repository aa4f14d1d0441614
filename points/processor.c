/*
 * The processor: tails the durable journal and turns ingest's records
 * (docs/ingest-records.md) into index entries and points. Each cycle reads
 * up to PTS_CYCLE_RECORDS records into one RocksDB write batch together with
 * the position after them, so a crash anywhere resumes exactly where the
 * last committed cycle ended: no hole, no entry twice.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/endian.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ingest/record.h"
#include "points/pts_int.h"

/* A cycle is one RocksDB write batch. Big cycles make long sorted runs of
 * extent keys (see pts__flush_pending); the ops bound caps the memory a
 * cycle holds (about 100 bytes per key, twice: pending, then the batch). */
#define PTS_CYCLE_RECORDS 4096u
#define PTS_CYCLE_OPS 262144u
/* How long the idle processor waits on the journal before it looks for
 * points to cut and for a stop request. */
#define PTS_IDLE_WAIT_MS 100

static int pts__grow(pts_t *p)
{
    if (p->nmach < p->cap)
        return 0;
    size_t cap = p->cap ? p->cap * 2 : 16;
    /* readers look names up in priv under mu */
    pthread_mutex_lock(&p->mu);
    pts_mrec_t *priv = tm_realloc(p->priv, cap * sizeof *priv);
    if (priv)
        p->priv = priv;
    pthread_mutex_unlock(&p->mu);
    if (!priv)
        return -ENOMEM;
    bool *dirty = tm_realloc(p->dirty, cap * sizeof *dirty);
    if (!dirty)
        return -ENOMEM;
    p->dirty = dirty;
    p->cap = cap;
    return 0;
}

/* The machine named `name`, created (with a new id) if the index has none. */
static int pts__machine(pts_t *p, const char *name, pts_mrec_t **out)
{
    pthread_mutex_lock(&p->mu);
    uint32_t id = pts__name_find(p, name);
    pthread_mutex_unlock(&p->mu);
    if (id) {
        *out = &p->priv[id - 1];
        return 0;
    }
    int rc = pts__grow(p);
    if (rc)
        return rc;
    id = p->next_id++;
    if (id != p->nmach + 1) {
        tm_log(TM_LOG_ERROR, "points: machine ids out of step (%u after %zu machines)", id, p->nmach);
        return TM_ECORRUPT;
    }
    pts_mrec_t *r = &p->priv[p->nmach++];
    memset(r, 0, sizeof *r);
    snprintf(r->m.name, sizeof r->m.name, "%s", name);
    r->m.id = id;
    r->m.first_seq = 1;
    /* nothing copied yet: inconsistent from the first record on */
    r->unsafe_since = 1;
    r->m.unsafe_since = 1;
    p->dirty[id - 1] = true;
    /* The name map is shared with readers; they only find the machine
     * after its record is published (pts_machine checks npub). */
    pthread_mutex_lock(&p->mu);
    rc = pts__name_add(p, id, name);
    pthread_mutex_unlock(&p->mu);
    if (rc)
        return rc;
    uint8_t k[1 + WIRE_MAX_NAME], v[4], ik[1] = {PTS_K_NEXT_ID}, iv[4];
    size_t n = strlen(name);
    k[0] = PTS_K_NAME;
    memcpy(k + 1, name, n);
    tm_put32(v, id);
    pts_wb_put(p->wb, k, 1 + n, v, sizeof v);
    tm_put32(iv, p->next_id);
    pts_wb_put(p->wb, ik, sizeof ik, iv, sizeof iv);
    *out = r;
    return 0;
}

bool pts__consistent(const pts_mrec_t *r)
{
    uint64_t all = r->m.ndisks >= 64 ? UINT64_MAX : (UINT64_C(1) << r->m.ndisks) - 1;
    return r->m.ndisks > 0 && (r->synced_mask & all) == all && r->resync_mask == 0;
}

/* After a record changed what the machine's disks hold: open or close a
 * window of inconsistency at seq. */
static void pts__consistency(pts_t *p, pts_mrec_t *r, uint64_t seq)
{
    bool ok = pts__consistent(r);
    r->m.consistent = ok;
    if (!ok && r->unsafe_since == 0) {
        r->unsafe_since = seq;
    } else if (ok && r->unsafe_since) {
        /* positions unsafe_since .. seq - 1 can never be a point */
        uint8_t k[PTS_POINT_KEY_LEN], v[8];
        pts_key_unsafe(k, r->m.id, r->unsafe_since);
        tm_put64(v, seq);
        pts_wb_put(p->wb, k, sizeof k, v, sizeof v);
        r->unsafe_since = 0;
    }
    r->m.unsafe_since = r->unsafe_since;
}

bool pts__cut(pts_t *p, pts_mrec_t *r, pts_kind_t kind, const char *tag, uint64_t tag_id, uint64_t seq,
              uint64_t time_ns)
{
    /* A disk still in its initial copy or in a resync holds blocks in copy
     * order, not in write order: no point is cut then. */
    if (!pts__consistent(r))
        return false;
    /* A committed machine has no points any more, and gets none. */
    if (r->m.failover == PTS_FO_COMMITTED)
        return false;
    /* A point already there stays: an app point is never turned into a
     * crash point by the cadence cutting at the same place. */
    if (seq == 0 || (r->latest_seq && seq <= r->latest_seq))
        return false;
    pts_point_t pt = {.seq = seq, .time_ns = time_ns, .kind = kind, .tag_id = tag_id};
    snprintf(pt.tag, sizeof pt.tag, "%s", tag ? tag : "");
    uint8_t k[PTS_POINT_KEY_LEN], v[PTS_POINT_VAL_MAX];
    pts_key_point(k, r->m.id, seq);
    size_t n = pts_val_point(v, &pt);
    pts_wb_put(p->wb, k, sizeof k, v, n);
    r->latest_seq = seq;
    r->m.latest = pt;
    r->m.has_point = true;
    pts__touch(p, r);
    p->c_points++;
    return true;
}

/* A type-2 record: the machine's disks. */
static int pts__disks(pts_t *p, const jnl_record_t *rec)
{
    char name[WIRE_MAX_NAME + 1];
    wire_disk_t disks[WIRE_MAX_DISKS];
    uint16_t nd;
    int rc = ingest_rec_disks_parse(rec->data, rec->len, name, disks, &nd);
    if (rc) {
        tm_log(TM_LOG_ERROR, "points: journal record %" PRIu64 " (disks) does not parse: %s", rec->lsn,
               tm_strerror(rc));
        return rc;
    }
    pts_mrec_t *r;
    rc = pts__machine(p, name, &r);
    if (rc)
        return rc;
    if (r->m.failover == PTS_FO_COMMITTED)
        return 0; /* its replication has ended */
    bool same = r->m.ndisks == nd;
    for (unsigned i = 0; same && i < nd; i++)
        same = strcmp(r->m.disks[i].name, disks[i].name) == 0 && r->m.disks[i].size == disks[i].size;
    if (same)
        return 0;
    r->m.ndisks = nd;
    for (unsigned i = 0; i < nd; i++) {
        memcpy(r->m.disks[i].name, disks[i].name, sizeof r->m.disks[i].name);
        r->m.disks[i].size = disks[i].size;
        r->m.disks[i].synced = (r->synced_mask >> i) & 1u;
    }
    pts__touch(p, r);
    return 0;
}

/* One write, zero or trim: a piece per chunk it touches. */
static int pts__extent(pts_t *p, pts_mrec_t *r, const jnl_record_t *rec, size_t hdr_len, const wire_entry_t *e,
                       uint64_t seq)
{
    if (e->disk >= r->m.ndisks || e->offset + e->length > r->m.disks[e->disk].size) {
        tm_log(TM_LOG_ERROR,
               "points: journal record %" PRIu64 ": machine %s sequence %" PRIu64 " is outside its disks",
               rec->lsn, r->m.name, seq);
        return TM_ECORRUPT;
    }
    pts_extent_t x = {
        .seq = seq,
        .kind = e->kind == WIRE_R_WRITE ? PTS_EXT_WRITE : e->kind == WIRE_R_ZERO ? PTS_EXT_ZERO : PTS_EXT_TRIM,
        .codec = e->kind == WIRE_R_WRITE ? e->codec : 0,
        .w_off = e->offset,
        .w_len = e->length,
        .data_off = e->kind == WIRE_R_WRITE ? (uint32_t)(hdr_len + e->stored_off) : 0,
        .stored = e->stored,
        .lsn = rec->lsn,
        .pos = rec->pos,
        .hash = e->hash,
    };
    uint64_t end = e->offset + e->length;
    for (uint64_t off = e->offset; off < end;) {
        uint64_t chunk = off >> PTS_CHUNK_SHIFT;
        uint64_t stop = (chunk + 1) << PTS_CHUNK_SHIFT;
        if (stop > end)
            stop = end;
        x.off = off;
        x.len = (uint32_t)(stop - off);
        if (p->npend == p->pend_cap &&
            tm_grow((void **)&p->pend, &p->pend_cap, p->npend + 1, sizeof *p->pend) != 0)
            return -ENOMEM;
        pts_pending_t *q = &p->pend[p->npend++];
        pts_key_extent(q->k, r->m.id, e->disk, chunk, seq);
        pts_val_extent(q->v, &x);
        off = stop;
    }
    p->c_extents++;
    p->c_bytes += e->length;
    return 0;
}

/* A type-1 record: a batch of a machine's stream. */
static int pts__batch(pts_t *p, const jnl_record_t *rec)
{
    ingest_batch_rec_t b;
    int rc = ingest_rec_batch_parse(rec->data, rec->len, &b);
    char reason[160];
    if (rc == 0 && wire_dec_records_entries(b.body, b.body_len, p->recs, reason, sizeof reason) != 0)
        rc = TM_ECORRUPT;
    else
        snprintf(reason, sizeof reason, "%s", rc ? tm_strerror(rc) : "");
    if (rc) {
        tm_log(TM_LOG_ERROR, "points: journal record %" PRIu64 " (stream batch) does not parse: %s", rec->lsn,
               reason);
        return rc;
    }
    pts_mrec_t *r;
    rc = pts__machine(p, b.machine, &r);
    if (rc)
        return rc;
    if (r->m.failover == PTS_FO_COMMITTED)
        return 0; /* its replication has ended: ingest no longer takes its writes */
    const wire_records_t *m = p->recs;
    if (m->first_seq != r->m.seq + 1) {
        tm_log(TM_LOG_ERROR,
               "points: journal record %" PRIu64 ": machine %s's batch starts at sequence %" PRIu64
               " but %" PRIu64 " was expected",
               rec->lsn, r->m.name, m->first_seq, r->m.seq + 1);
        return TM_ECORRUPT;
    }
    size_t hdr_len = (size_t)(b.body - rec->data);
    for (unsigned i = 0; i < m->count; i++) {
        const wire_entry_t *e = &m->entries[i];
        uint64_t seq = m->first_seq + i;
        switch (e->kind) {
        case WIRE_R_WRITE:
        case WIRE_R_ZERO:
        case WIRE_R_TRIM:
            rc = pts__extent(p, r, rec, hdr_len, e, seq);
            if (rc)
                return rc;
            break;
        case WIRE_R_TAG:
            /* A group tag becomes a crash point of its own; the consistency
             * stage marks it multi-VM (and app) once every member's tag of
             * the round is processed (pts_group_point_add). */
            if ((e->tag_kind == WIRE_TAG_APP || e->tag_kind == WIRE_TAG_CRASH || e->tag_kind == WIRE_TAG_GROUP) &&
                !pts__consistent(r)) {
                tm_warn("points: machine %s: tag at sequence %" PRIu64 " skipped: a disk is being copied or "
                        "resynced, so no point can be cut there",
                        r->m.name, seq);
            } else if (e->tag_kind == WIRE_TAG_APP || e->tag_kind == WIRE_TAG_CRASH || e->tag_kind == WIRE_TAG_GROUP) {
                char name[WIRE_MAX_NAME + 1];
                memcpy(name, e->stored_data, e->length);
                name[e->length] = '\0';
                r->m.seq = seq;
                pts__cut(p, r, e->tag_kind == WIRE_TAG_APP ? PTS_KIND_APP : PTS_KIND_CRASH, name, e->id, seq,
                         b.recv_ns);
            }
            break;
        case WIRE_R_SYNCED:
            if (e->disk < r->m.ndisks) {
                bool was = r->unsafe_since == 0; /* consistent before this record */
                r->synced_mask |= UINT64_C(1) << e->disk;
                r->resync_mask &= ~(UINT64_C(1) << e->disk);
                r->m.disks[e->disk].synced = true;
                r->m.disks[e->disk].resync = false;
                pts__consistency(p, r, seq);
                /* consistent again: a point right there, the first after the copy */
                if (!was && r->unsafe_since == 0)
                    pts__cut(p, r, PTS_KIND_CRASH, NULL, 0, seq, b.recv_ns);
            }
            break;
        case WIRE_R_RESYNC:
            if (e->disk < r->m.ndisks) {
                r->resync_mask |= UINT64_C(1) << e->disk;
                r->m.disks[e->disk].resync = true;
                pts__consistency(p, r, seq);
            }
            break;
        default: /* flush: ordering only */
            break;
        }
    }
    uint64_t last = m->first_seq + m->count - 1u;
    r->m.seq = last;
    r->m.seq_ns = b.recv_ns;
    uint8_t tk[PTS_TIME_KEY_LEN], tv[PTS_TIME_VAL_LEN];
    pts_key_time(tk, r->m.id, b.recv_ns, last);
    pts_tbatch_t tb = {.first_seq = m->first_seq, .lsn = rec->lsn, .pos = rec->pos};
    pts_val_time(tv, &tb);
    pts_wb_put(p->wb, tk, sizeof tk, tv, sizeof tv);
    if (!r->m.has_point || b.recv_ns >= r->m.latest.time_ns + p->cadence_ns)
        pts__cut(p, r, PTS_KIND_CRASH, NULL, 0, last, b.recv_ns);
    pts__touch(p, r);
    return 0;
}

static int pts__record(pts_t *p, const jnl_record_t *rec)
{
    switch (rec->type) {
    case INGEST_REC_BATCH:
        return pts__batch(p, rec);
    case INGEST_REC_DISKS:
        return pts__disks(p, rec);
    default:
        /* records of later stages, nothing to index */
        return 0;
    }
}

static int pts__by_key(const void *a, const void *b)
{
    return memcmp(((const pts_pending_t *)a)->k, ((const pts_pending_t *)b)->k, PTS_EXTENT_KEY_LEN);
}

/* The cycle's extent pieces into the batch, in key order: RocksDB's
 * memtable skip list goes on from where the previous insert ended, so keys
 * in order cost a short walk each instead of a descent from the top (small
 * random writes: most of the processor's time). Keys are unique (a
 * machine's sequence numbers are). */
static void pts__flush_pending(pts_t *p)
{
    if (!p->npend)
        return;
    qsort(p->pend, p->npend, sizeof *p->pend, pts__by_key);
    for (size_t i = 0; i < p->npend; i++)
        pts_wb_put(p->wb, p->pend[i].k, PTS_EXTENT_KEY_LEN, p->pend[i].v, PTS_EXTENT_VAL_LEN);
    p->npend = 0;
}

int pts__commit(pts_t *p)
{
    pts__flush_pending(p);
    /* each machine changed in the cycle: its record once */
    for (size_t i = 0; i < p->nmach; i++) {
        if (!p->dirty[i])
            continue;
        uint8_t k[PTS_MACHINE_KEY_LEN], v[PTS_MACHINE_VAL_MAX];
        pts_key_machine(k, p->priv[i].m.id);
        pts_wb_put(p->wb, k, sizeof k, v, pts_val_machine(v, &p->priv[i]));
    }
    uint8_t pk[1] = {PTS_K_POS}, pv[32];
    tm_put64(pv, p->next_lsn);
    tm_put64(pv + 8, p->last_ns);
    tm_put64(pv + 16, p->next_pos.seg);
    tm_put64(pv + 24, p->next_pos.off);
    pts_wb_put(p->wb, pk, sizeof pk, pv, sizeof pv);
    if (!p->have_version) {
        jnl_stats_t st;
        jnl_get_stats(p->jnl, &st);
        /* A journal's id is only fixed once its first segment exists. */
        if (st.segments) {
            uint8_t vk[1] = {PTS_K_VERSION}, vv[12];
            tm_put32(vv, PTS_LAYOUT_VERSION);
            tm_put64(vv + 4, st.journal_id);
            pts_wb_put(p->wb, vk, sizeof vk, vv, sizeof vv);
            p->have_version = true;
            p->journal_id = st.journal_id;
        }
    }
    int rc = pts_index_write(p->ix, p->wb);
    pts_wb_clear(p->wb);
    if (rc)
        return rc;
    pthread_mutex_lock(&p->mu);
    if (p->npub < p->nmach) {
        pts_mrec_t *pub = tm_realloc(p->pub, p->cap * sizeof *pub);
        if (!pub) {
            pthread_mutex_unlock(&p->mu);
            return -ENOMEM;
        }
        p->pub = pub;
    }
    for (size_t i = 0; i < p->nmach; i++) {
        if (p->dirty[i] || i >= p->npub) {
            p->pub[i] = p->priv[i];
            p->dirty[i] = false;
        }
    }
    p->npub = p->nmach;
    p->stats.next_lsn = p->next_lsn;
    p->pub_pos = p->next_pos;
    p->pub_last_ns = p->last_ns;
    p->stats.records += p->c_records;
    p->stats.extents += p->c_extents;
    p->stats.bytes += p->c_bytes;
    p->stats.points += p->c_points;
    p->c_records = p->c_extents = p->c_bytes = p->c_points = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* Caught up: a machine whose last writes have no point yet gets one once
 * a cadence has passed since its last point, so writes that stop are
 * covered within about a cadence. */
static bool pts__idle_cuts(pts_t *p)
{
    uint64_t now = tm_now_ns();
    bool any = false;
    for (size_t i = 0; i < p->nmach; i++) {
        pts_mrec_t *r = &p->priv[i];
        if (r->m.seq > r->latest_seq && (!r->m.has_point || now >= r->m.latest.time_ns + p->cadence_ns))
            any |= pts__cut(p, r, PTS_KIND_CRASH, NULL, 0, r->m.seq, r->m.seq_ns);
    }
    return any;
}

bool pts__low_space(pts_t *p)
{
    uint64_t free_bytes = pts_index_free_bytes(p->ix);
    bool low = free_bytes < p->reserve_bytes;
    pthread_mutex_lock(&p->mu);
    bool was = p->stats.paused;
    p->stats.paused = low;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (low && !was)
        tm_log(TM_LOG_ERROR,
               "points: processing paused: %" PRIu64 " MiB free where the index is, under the %" PRIu64
               " MiB it keeps in reserve; it goes on by itself once space is freed",
               free_bytes >> 20, p->reserve_bytes >> 20);
    else if (!low && was)
        tm_log(TM_LOG_INFO, "points: processing resumed: %" PRIu64 " MiB free where the index is", free_bytes >> 20);
    return low;
}

static void pts__fail(pts_t *p, int rc)
{
    pthread_mutex_lock(&p->mu);
    p->stats.error = rc;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    tm_log(TM_LOG_ERROR, "points: processing stopped at journal record %" PRIu64 ": %s", p->next_lsn,
           tm_strerror(rc));
}

/* One cycle under wmu: 1 when caught up, 0 when there is more, <0 error. */
static int pts__cycle(pts_t *p)
{
    unsigned n = 0;
    int rc = 0;
    bool caught_up = false;
    while (n < PTS_CYCLE_RECORDS && pts_wb_count(p->wb) + p->npend < PTS_CYCLE_OPS) {
        jnl_record_t rec;
        rc = jnl_reader_next(p->rd, &rec);
        if (rc == -EAGAIN) {
            rc = 0;
            caught_up = true;
            break;
        }
        if (rc)
            break;
        rc = pts__record(p, &rec);
        if (rc)
            break;
        p->next_lsn = rec.lsn + 1;
        p->last_ns = rec.time_ns;
        p->next_pos = (jnl_pos_t){rec.pos.seg, rec.pos.off + JNL_REC_OVERHEAD + rec.stored_len};
        p->c_records++;
        n++;
    }
    if (rc) {
        pts_wb_clear(p->wb); /* the failed record's partial entries */
        p->npend = 0;
        return rc;
    }
    if (caught_up)
        pts__idle_cuts(p);
    {
        /* also under a steady load that never lets the processor idle */
        uint64_t now = tm_now_ns();
        if (p->auto_retain && now >= p->last_retain_ns + p->retain_every_ns) {
            p->last_retain_ns = now;
            if (n || pts_wb_count(p->wb)) {
                rc = pts__commit(p);
                if (rc)
                    return rc;
                n = 0;
            }
            /* a retention failure is logged and tried again next time:
             * it never stops processing */
            pts__retain_locked(p, now);
        }
    }
    if (n || pts_wb_count(p->wb) || p->npend) {
        rc = pts__commit(p);
        if (rc)
            return rc;
    }
    return caught_up ? 1 : 0;
}

void *pts__run(void *arg)
{
    pts_t *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool stop = p->stop, failed = p->stats.error != 0;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        if (failed) {
            /* Nothing more is processed; wait to be closed. */
            pthread_mutex_lock(&p->mu);
            while (!p->stop)
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (pts__low_space(p)) {
            /* Paused, not failed: RocksDB must never meet a full disk (it
             * cannot be written again after a failed write), so nothing is
             * written until space comes back; the journal keeps the data. */
            pthread_mutex_lock(&p->mu);
            struct timespec dl;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            dl.tv_sec += 1;
            if (!p->stop)
                pthread_cond_timedwait(&p->cv, &p->mu, &dl);
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        pthread_mutex_lock(&p->wmu);
        int rc = pts__cycle(p);
        uint64_t next = p->next_lsn;
        pthread_mutex_unlock(&p->wmu);
        if (rc < 0) {
            pts__fail(p, rc);
            continue;
        }
        if (rc == 1) {
            jnl_stats_t st;
            jnl_get_stats(p->jnl, &st);
            pthread_mutex_lock(&p->mu);
            p->stats.durable_lsn = st.durable_lsn;
            pthread_mutex_unlock(&p->mu);
            /* next is durable once the journal's writer synced it */
            int w = jnl_wait_durable(p->jnl, next, PTS_IDLE_WAIT_MS);
            if (w == TM_ECLOSED)
                break;
        }
    }
    return NULL;
}
