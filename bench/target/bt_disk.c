/*
 * The served disk, in the shape a failover meets: most of it in the replica
 * base, some of it in the journal.
 *
 *   1. The initial copy: the disks record, then the whole disk as 1 MiB
 *      writes (four to a batch, as an agent copying would send them), then
 *      the disk's SYNCED; the point cut there is A.
 *   2. The changes: changed_pct of the disk rewritten in distinct random
 *      slots of wsize, in batches of about 1 MiB; a point B at the end.
 *   3. Retention as if forty days had passed, with A pinned: every point
 *      but the newest (B) leaves the catalog and the horizon stops at A, so
 *      everything up to A (the copy) is folded into the replica base and its
 *      journal segments are retired; the changes stay in the journal.
 *
 * B is the point served. Every byte is made once, from the seed, and goes
 * both into the journal batch and, at its offset, into the raw twin that
 * qemu-nbd serves: the twin does not come from tidemark's reader, so
 * comparing what the two servers return checks the reader too.
 *
 * Batches are appended the way ingest appends agents' frames (ingest's
 * batch header, then the RECORDS body, journal type 1, flags 0), several
 * outstanding so the journal groups them, stamped with the time now.
 */
#include "bench/target/bt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "ingest/record.h"
#include "wire/msg.h"
#include "wire/wire.h"

#define BT_INFLIGHT 16u
#define BT_COPY_PER_BATCH 4u
#define BT_BATCH_DATA (1u << 20)
#define BT_FRESH_WRITES 16u
#define BT_SYNC_TIMEOUT_MS (3600 * 1000)
#define BT_FOLD_MAX_PASSES 1000u
/* Retention "now": far enough that every point but the newest is past any window. */
#define BT_FAR_FUTURE_NS (40ull * 24 * 3600 * 1000000000ull)

/* ---- appending batches ------------------------------------------------- */

typedef struct bt_slot {
    jnl_append_req_t req; /* req.data points back here */
    struct bt_feeder *f;
    struct bt_slot *next_free;
} bt_slot_t;

typedef struct bt_feeder {
    jnl_t *jnl;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bt_slot_t slots[BT_INFLIGHT];
    bt_slot_t *free; /* under mu */
    unsigned busy;   /* under mu */
    int error;       /* under mu: the first failed append */
    wire_buf_t wb;   /* the batch being encoded */
} bt_feeder_t;

static void bt__on_durable(jnl_append_req_t *req, int status)
{
    bt_slot_t *s = req->data;
    bt_feeder_t *f = s->f;
    pthread_mutex_lock(&f->mu);
    if (status != 0 && f->error == 0)
        f->error = status;
    s->next_free = f->free;
    f->free = s;
    f->busy--;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void bt__feeder_init(bt_feeder_t *f, jnl_t *jnl)
{
    memset(f, 0, sizeof *f);
    f->jnl = jnl;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    for (unsigned i = 0; i < BT_INFLIGHT; i++) {
        f->slots[i].req.data = &f->slots[i];
        f->slots[i].f = f;
        f->slots[i].next_free = f->free;
        f->free = &f->slots[i];
    }
}

/* Wait until every append made is durable; the first error, or 0. */
static int bt__feeder_drain(bt_feeder_t *f)
{
    pthread_mutex_lock(&f->mu);
    while (f->busy > 0)
        pthread_cond_wait(&f->cv, &f->mu);
    int rc = f->error;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void bt__feeder_fini(bt_feeder_t *f)
{
    bt__feeder_drain(f);
    wire_buf_free(&f->wb);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
}

/* Encode entries as one RECORDS body from first_seq and append it behind
 * ingest's batch header, received now. The data may be reused on return
 * (the journal copies the payload). */
static int bt__append(bt_feeder_t *f, uint64_t first_seq, const wire_entry_t *e, uint16_t count)
{
    uint8_t hdr[INGEST_BATCH_HDR_MAX];
    wire_buf_reset(&f->wb);
    /* Agents try lz4 on every write and keep it when smaller. */
    if (wire_enc_records(&f->wb, first_seq, e, count, true) != 0)
        return -ENOMEM;
    pthread_mutex_lock(&f->mu);
    while (!f->free && f->error == 0)
        pthread_cond_wait(&f->cv, &f->mu);
    int rc = f->error;
    bt_slot_t *s = f->free;
    if (rc == 0) {
        f->free = s->next_free;
        f->busy++;
    }
    pthread_mutex_unlock(&f->mu);
    if (rc)
        return rc;
    size_t hl = ingest_rec_batch_header(hdr, tm_now_ns(), BT_MACHINE);
    jnl_buf_t bufs[2] = {{hdr, hl}, {f->wb.data + WIRE_HDR_LEN, f->wb.len - WIRE_HDR_LEN}};
    rc = jnl_append(f->jnl, &s->req, INGEST_REC_BATCH, bufs, 2, 0, bt__on_durable);
    if (rc) {
        pthread_mutex_lock(&f->mu);
        s->next_free = f->free;
        f->free = s;
        f->busy--;
        pthread_mutex_unlock(&f->mu);
        fprintf(stderr, "bench_target: jnl_append: %s\n", tm_strerror(rc));
    }
    return rc;
}

/* ---- the bytes ---------------------------------------------------------- */

/* Half of every 4 KiB random, half a short repeated phrase: lz4 keeps about
 * half, like mixed file-system data (bench/points does the same). The
 * content is a function of (seed, version, offset) only. */
static void bt__fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t version, uint64_t off)
{
    static const char phrase[] = "tidemark-bench-target-";
    for (size_t at = 0; at < len; at += 4096) {
        size_t n = len - at < 4096 ? len - at : 4096;
        size_t r = n / 2;
        uint64_t s = seed ^ (version * 0x9e3779b97f4a7c15ull) ^ ((off + at) * 0xbf58476d1ce4e5b9ull);
        bj_fill_random(buf + at, r, s | 1);
        for (size_t i = r; i < n; i++)
            buf[at + i] = (uint8_t)phrase[(i + (off + at) / 4096) % (sizeof phrase - 1)];
    }
}

static int bt__pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* ---- the steps ---------------------------------------------------------- */

static int bt__append_disks(jnl_t *j, uint64_t size)
{
    uint8_t rec[INGEST_DISKS_MAX];
    wire_disk_t d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", BT_DISK_NAME);
    d.size = size;
    size_t n = ingest_rec_disks_encode(rec, BT_MACHINE, &d, 1);
    int rc = jnl_append_wait(j, INGEST_REC_DISKS, rec, n, 0, NULL);
    if (rc)
        fprintf(stderr, "bench_target: appending the disks record: %s\n", tm_strerror(rc));
    return rc;
}

/* Step 1: the initial copy and its SYNCED; the raw twin gets the same bytes. */
static int bt__copy(bt_disk_t *d, bt_feeder_t *f, int raw_fd, uint8_t *data)
{
    wire_entry_t e[BT_COPY_PER_BATCH + 1];
    uint64_t blocks = d->cfg.size / BT_COPY_WRITE;
    int rc = 0;
    for (uint64_t b = 0; b < blocks && rc == 0 && !bj_interrupted;) {
        unsigned count = 0;
        memset(e, 0, sizeof e);
        for (; count < BT_COPY_PER_BATCH && b < blocks; count++, b++) {
            uint8_t *p = data + (size_t)count * BT_COPY_WRITE;
            uint64_t off = b * BT_COPY_WRITE;
            bt__fill(p, BT_COPY_WRITE, d->cfg.seed, 0, off);
            if ((rc = bt__pwrite_all(raw_fd, p, BT_COPY_WRITE, off)) != 0) {
                fprintf(stderr, "bench_target: writing the raw twin: %s\n", strerror(-rc));
                return rc;
            }
            e[count].kind = WIRE_R_WRITE;
            e[count].offset = off;
            e[count].length = BT_COPY_WRITE;
            e[count].data = p;
        }
        if (b == blocks)
            e[count++] = (wire_entry_t){.kind = WIRE_R_SYNCED, .disk = 0};
        rc = bt__append(f, d->next_seq, e, (uint16_t)count);
        d->next_seq += count;
    }
    return rc ? rc : bj_interrupted ? -EINTR : 0;
}

/* Step 2: the changes, in distinct random slots, batches of about 1 MiB. */
static int bt__changes(bt_disk_t *d, bt_feeder_t *f, int raw_fd, uint8_t *data)
{
    uint32_t ws = d->cfg.wsize;
    unsigned per = BT_BATCH_DATA / ws;
    if (per == 0)
        per = 1;
    if (per > WIRE_MAX_BATCH_RECORDS)
        per = WIRE_MAX_BATCH_RECORDS;
    uint64_t total = d->cfg.size / ws;
    uint64_t n = (uint64_t)((double)total * d->cfg.changed_pct / 100.0 + 0.5);
    if (n > total)
        n = total;
    uint32_t *slots = n ? bt_pick_slots(total, n, d->cfg.seed ^ 0x5107) : NULL;
    wire_entry_t *e = tm_calloc(per, sizeof *e);
    int rc = 0;
    if ((n && !slots) || !e) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < n && rc == 0 && !bj_interrupted;) {
        unsigned count = 0;
        memset(e, 0, per * sizeof *e);
        for (; count < per && i < n; count++, i++) {
            uint8_t *p = data + (size_t)count * ws;
            uint64_t off = (uint64_t)slots[i] * ws;
            bt__fill(p, ws, d->cfg.seed, 1, off);
            if ((rc = bt__pwrite_all(raw_fd, p, ws, off)) != 0) {
                fprintf(stderr, "bench_target: writing the raw twin: %s\n", strerror(-rc));
                goto out;
            }
            e[count].kind = WIRE_R_WRITE;
            e[count].offset = off;
            e[count].length = ws;
            e[count].data = p;
        }
        rc = bt__append(f, d->next_seq, e, (uint16_t)count);
        d->next_seq += count;
    }
    if (rc == 0 && bj_interrupted)
        rc = -EINTR;
    d->changed_writes = n;
    d->changed_bytes = n * ws;
out:
    tm_free(e);
    tm_free(slots);
    return rc;
}

/* pts_cut_latest, printing why not. */
static int bt__cut(bt_disk_t *d, uint64_t *seq)
{
    pts_point_t pt;
    int rc = pts_cut_latest(d->pts, BT_MACHINE, BT_SYNC_TIMEOUT_MS, &pt);
    if (rc) {
        fprintf(stderr, "bench_target: pts_cut_latest: %s\n", tm_strerror(rc));
        return rc;
    }
    if (pt.seq != d->next_seq - 1) {
        fprintf(stderr, "bench_target: the point is at sequence %" PRIu64 ", the last write was %" PRIu64 "\n",
                pt.seq, d->next_seq - 1);
        return TM_ECORRUPT;
    }
    *seq = pt.seq;
    return 0;
}

/* Step 3: fold everything up to A into the replica base. */
static int bt__fold(bt_disk_t *d, uint64_t a)
{
    pts_machine_t m;
    int rc = pts_pin(d->pts, d->mid, a);
    if (rc) {
        fprintf(stderr, "bench_target: pts_pin: %s\n", tm_strerror(rc));
        return rc;
    }
    uint64_t t0 = tm_mono_ns();
    for (;;) {
        if ((rc = pts_retain(d->pts, tm_now_ns() + BT_FAR_FUTURE_NS)) != 0) {
            fprintf(stderr, "bench_target: pts_retain: %s\n", tm_strerror(rc));
            break;
        }
        d->fold_passes++;
        if ((rc = pts_machine(d->pts, BT_MACHINE, &m)) != 0)
            break;
        if (m.base_seq >= a)
            break;
        if (d->fold_passes >= BT_FOLD_MAX_PASSES || bj_interrupted) {
            fprintf(stderr, "bench_target: the replica base is at sequence %" PRIu64 " after %u retention passes, "
                            "not at %" PRIu64 "\n", m.base_seq, d->fold_passes, a);
            rc = bj_interrupted ? -EINTR : TM_EFAILED;
            break;
        }
    }
    d->fold_s = (double)(tm_mono_ns() - t0) / 1e9;
    pts_unpin(d->pts, d->mid, a);
    if (rc)
        return rc;
    if (m.base_seq != a || m.first_seq != a) {
        fprintf(stderr, "bench_target: after retention the base is at %" PRIu64 " and the horizon at %" PRIu64
                        ", expected both at %" PRIu64 "\n", m.base_seq, m.first_seq, a);
        return TM_ECORRUPT;
    }
    d->base_seq = a;
    return 0;
}

static int bt__path(char *buf, size_t len, const char *dir, const char *name)
{
    if (snprintf(buf, len, "%s/%s", dir, name) >= (int)len)
        return -ENAMETOOLONG;
    return 0;
}

int bt_disk_make(const bt_disk_cfg_t *cfg, bt_disk_t **out)
{
    char jdir[PATH_MAX], idir[PATH_MAX], bdir[PATH_MAX], err[256];
    bt_feeder_t f;
    bool feeder = false;
    int raw_fd = -1, rc;
    uint8_t *data = NULL;

    if (cfg->size == 0 || cfg->size % BT_COPY_WRITE || cfg->wsize < 4096 || cfg->wsize > BT_COPY_WRITE ||
        (cfg->wsize & (cfg->wsize - 1)) || cfg->size / cfg->wsize > UINT32_MAX) {
        fprintf(stderr, "bench_target: the disk must be a multiple of 1 MiB, the write size a power of two "
                        "from 4 KiB to 1 MiB\n");
        return TM_EINVAL;
    }
    bt_disk_t *d = tm_calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->cfg = *cfg;
    d->next_seq = 1;
    d->fresh_rng = cfg->seed ^ 0xf7e5;
    if ((rc = bt__path(jdir, sizeof jdir, cfg->dir, "journal")) != 0 ||
        (rc = bt__path(idir, sizeof idir, cfg->dir, "index")) != 0 ||
        (rc = bt__path(bdir, sizeof bdir, cfg->dir, "base")) != 0 ||
        (rc = bt__path(d->raw, sizeof d->raw, cfg->dir, "raw.img")) != 0)
        goto fail;
    if ((rc = jnl_open(jdir, NULL, &d->jnl)) != 0) {
        fprintf(stderr, "bench_target: jnl_open %s: %s\n", jdir, tm_strerror(rc));
        goto fail;
    }
    /* Retention only when asked (pts_retain), the journal retired behind
     * the fold as the appliance does. */
    pts_options_t po = {.base_dir = bdir, .no_auto_retain = true, .retire_journal = true};
    if ((rc = pts_open(idir, d->jnl, &po, &d->pts, err, sizeof err)) != 0) {
        fprintf(stderr, "bench_target: pts_open: %s\n", err);
        goto fail;
    }
    raw_fd = open(d->raw, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (raw_fd < 0 || ftruncate(raw_fd, (off_t)cfg->size) != 0) {
        rc = -errno;
        fprintf(stderr, "bench_target: making %s: %s\n", d->raw, strerror(errno));
        goto fail;
    }
    data = tm_malloc((size_t)BT_COPY_PER_BATCH * BT_COPY_WRITE);
    if (!data) {
        rc = -ENOMEM;
        goto fail;
    }

    uint64_t t0 = tm_mono_ns();
    if ((rc = bt__append_disks(d->jnl, cfg->size)) != 0)
        goto fail;
    bt__feeder_init(&f, d->jnl);
    feeder = true;
    jnl_stats_t s0, s1;
    jnl_get_stats(d->jnl, &s0);
    uint64_t a = 0;
    fprintf(stderr, "  disk: the initial copy (%" PRIu64 " MiB)...\n", cfg->size >> 20);
    if ((rc = bt__copy(d, &f, raw_fd, data)) != 0 || (rc = bt__feeder_drain(&f)) != 0 ||
        (rc = bt__cut(d, &a)) != 0)
        goto fail;
    fprintf(stderr, "  disk: %.1f%% changed in %u KiB writes...\n", cfg->changed_pct, cfg->wsize >> 10);
    if ((rc = bt__changes(d, &f, raw_fd, data)) != 0 || (rc = bt__feeder_drain(&f)) != 0)
        goto fail;
    d->feed_s = (double)(tm_mono_ns() - t0) / 1e9;
    jnl_get_stats(d->jnl, &s1);
    d->jnl_bytes = s1.bytes_written - s0.bytes_written;
    uint64_t t1 = tm_mono_ns();
    if ((rc = bt__cut(d, &d->point)) != 0)
        goto fail;
    d->process_s = (double)(tm_mono_ns() - t1) / 1e9;
    if (fsync(raw_fd) != 0) {
        rc = -errno;
        fprintf(stderr, "bench_target: fsync %s: %s\n", d->raw, strerror(errno));
        goto fail;
    }
    pts_machine_t m;
    if ((rc = pts_machine(d->pts, BT_MACHINE, &m)) != 0)
        goto fail;
    d->mid = m.id;
    fprintf(stderr, "  disk: folding the copy into the replica base...\n");
    if ((rc = bt__fold(d, a)) != 0)
        goto fail;
    pts_base_path(d->pts, BT_MACHINE, BT_DISK_NAME, d->base, sizeof d->base);
    bt__feeder_fini(&f);
    close(raw_fd);
    tm_free(data);
    *out = d;
    return 0;
fail:
    if (feeder)
        bt__feeder_fini(&f);
    if (raw_fd >= 0)
        close(raw_fd);
    tm_free(data);
    bt_disk_free(d);
    return rc;
}

void bt_disk_close_stores(bt_disk_t *d)
{
    pts_close(d->pts);
    d->pts = NULL;
    if (d->jnl) {
        jnl_close(d->jnl);
        jnl_destroy(d->jnl);
        d->jnl = NULL;
    }
}

void bt_disk_free(bt_disk_t *d)
{
    if (!d)
        return;
    pts_close(d->pts);
    if (d->jnl) {
        jnl_close(d->jnl);
        jnl_destroy(d->jnl);
    }
    tm_free(d);
}

int bt_disk_fresh(bt_disk_t *d, uint64_t *point, uint64_t *off)
{
    static const char tag[] = "bench-fresh";
    uint32_t ws = d->cfg.wsize;
    uint64_t total = d->cfg.size / ws;
    wire_entry_t e[BT_FRESH_WRITES + 1];
    uint8_t *data = tm_malloc((size_t)BT_FRESH_WRITES * ws);
    if (!data)
        return -ENOMEM;
    memset(e, 0, sizeof e);
    for (unsigned i = 0; i < BT_FRESH_WRITES; i++) {
        uint8_t *p = data + (size_t)i * ws;
        uint64_t o = bt_rand(&d->fresh_rng) % total * ws;
        bt__fill(p, ws, d->cfg.seed, 2 + d->next_seq, o);
        e[i].kind = WIRE_R_WRITE;
        e[i].offset = o;
        e[i].length = ws;
        e[i].data = p;
    }
    *off = e[bt_rand(&d->fresh_rng) % BT_FRESH_WRITES].offset;
    e[BT_FRESH_WRITES] = (wire_entry_t){.kind = WIRE_R_TAG, .tag_kind = WIRE_TAG_CRASH,
                                        .length = sizeof tag - 1, .data = (const uint8_t *)tag,
                                        .id = d->next_seq};
    bt_feeder_t f;
    bt__feeder_init(&f, d->jnl);
    int rc = bt__append(&f, d->next_seq, e, BT_FRESH_WRITES + 1);
    if (rc == 0)
        rc = bt__feeder_drain(&f);
    bt__feeder_fini(&f);
    tm_free(data);
    if (rc)
        return rc;
    d->next_seq += BT_FRESH_WRITES + 1;
    if ((rc = pts_sync(d->pts, BT_SYNC_TIMEOUT_MS)) != 0) {
        fprintf(stderr, "bench_target: pts_sync: %s\n", tm_strerror(rc));
        return rc;
    }
    pts_point_t pt;
    char why[256];
    if ((rc = pts_resolve(d->pts, BT_MACHINE, "latest-processed", &pt, why, sizeof why)) != 0) {
        fprintf(stderr, "bench_target: latest-processed: %s\n", why);
        return rc;
    }
    if (pt.seq != d->next_seq - 1) {
        fprintf(stderr, "bench_target: latest-processed is %" PRIu64 ", the fresh tag is at %" PRIu64 "\n", pt.seq,
                d->next_seq - 1);
        return TM_ECORRUPT;
    }
    *point = pt.seq;
    return 0;
}
