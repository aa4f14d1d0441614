/*
 * The rebuild comparison: a disk of --size with --changed percent of it
 * written, rebuilt three ways from three stores of the same writes.
 *
 * The writes: distinct 64 KiB slots, cluster-aligned, picked at random
 * (seeded), in a random order, with random (incompressible) data. They go
 *   - into a journal, as an agent's batches of 16 writes (1 MiB), processed
 *     by the points stage: the source of tgt_write_image;
 *   - into a sparse raw file at their offsets: the source of
 *     `cp --sparse=always`, and the reference every output is compared with;
 *   - into a qcow2 chain: an empty base and 10 overlays, overlay k holding
 *     the k-th tenth of the writes in write order. qemu-io would take one
 *     command per write; instead each tenth is written into a sparse raw
 *     file, `qemu-img convert -O qcow2` turns that into a standalone qcow2
 *     holding only those clusters (holes stay unallocated), and
 *     `qemu-img rebase -u` points it at the previous overlay without
 *     touching its data. Because the slots are whole 64 KiB clusters and
 *     distinct, that is exactly the chain a guest writing through overlays
 *     would leave: `qemu-img convert` of the top must read through all 11
 *     files, and its output is checked against the raw file in round 1.
 *
 * Each timed rebuild starts from the same state: the page cache dropped (when
 * /proc/sys/vm/drop_caches can be written; else everything is warm, having
 * just been written) and then pre-warmed with --size bytes of scratch so the
 * output lands in warm memory (bench/journal/bj_prewarm.c says why). Each
 * is timed to its last write (no sync) and to its data on disk (tidemark
 * syncs inside tgt_write_image; cp and qemu-img get an fsync of their
 * output after they exit; qemu-img runs with -t unsafe so that it does not
 * sync on its own and the two figures mean the same for all three).
 */
#include "bench/points/bp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "points/points.h"
#include "target/image.h"
#include "wire/msg.h"
#include "wire/wire.h"

#define BP_SLOT (64u << 10)
#define BP_REBUILD_PER_BATCH 16u
#define BP_LAYERS 10u
#define BP_SYNC_TIMEOUT_MS (3600 * 1000)

struct bp_rebuild {
    bp_rebuild_cfg_t cfg;
    char dir[PATH_MAX];
    char raw[PATH_MAX];
    char top[PATH_MAX]; /* the last overlay */
    jnl_t *jnl;
    pts_t *pts;
    pts_machine_t m;
};

/* The feed's source: encodes the next 16 writes, and puts the same bytes
 * into the raw reference and the tenth they belong to. */
typedef struct bp_writes {
    const uint32_t *slots;
    uint64_t n, next;
    uint64_t seed;
    int raw_fd;
    int tenth_fd[BP_LAYERS];
    uint8_t *data; /* BP_REBUILD_PER_BATCH slots */
    wire_entry_t e[BP_REBUILD_PER_BATCH];
    wire_buf_t wb;
    int error;
} bp_writes_t;

static int bp__pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
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

static int bp__writes_next(void *arg, uint64_t first_seq, bp_batch_t *out)
{
    bp_writes_t *w = arg;
    if (w->next >= w->n)
        return 1;
    unsigned count = 0;
    for (; count < BP_REBUILD_PER_BATCH && w->next < w->n; count++, w->next++) {
        uint8_t *d = w->data + (size_t)count * BP_SLOT;
        uint64_t off = (uint64_t)w->slots[w->next] * BP_SLOT;
        bj_fill_random(d, BP_SLOT, w->seed ^ (w->next * 0x9e3779b97f4a7c15ull + 1));
        unsigned layer = (unsigned)(w->next * BP_LAYERS / w->n);
        int rc = bp__pwrite_all(w->raw_fd, d, BP_SLOT, off);
        if (rc == 0)
            rc = bp__pwrite_all(w->tenth_fd[layer], d, BP_SLOT, off);
        if (rc) {
            fprintf(stderr, "bench_points: writing the raw images: %s\n", strerror(-rc));
            return rc;
        }
        memset(&w->e[count], 0, sizeof w->e[count]);
        w->e[count].kind = WIRE_R_WRITE;
        w->e[count].offset = off;
        w->e[count].length = BP_SLOT;
        w->e[count].data = d;
    }
    wire_buf_reset(&w->wb);
    /* Agents try lz4 on every write; random data stays raw. */
    if (wire_enc_records(&w->wb, first_seq, w->e, (uint16_t)count, true) != 0)
        return -ENOMEM;
    out->body = w->wb.data + WIRE_HDR_LEN;
    out->len = w->wb.len - WIRE_HDR_LEN;
    out->count = (uint16_t)count;
    out->raw_bytes = (uint64_t)count * BP_SLOT;
    return 0;
}

static int bp__path(char *buf, const char *dir, const char *name)
{
    if (snprintf(buf, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        return -ENAMETOOLONG;
    return 0;
}

static int bp__create_sized(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int rc = -errno;
        fprintf(stderr, "bench_points: create %s: %s\n", path, strerror(errno));
        return rc;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        int rc = -errno;
        fprintf(stderr, "bench_points: size %s: %s\n", path, strerror(errno));
        close(fd);
        return rc;
    }
    return fd;
}

/* The slots written: n distinct ones out of all, in a random order. */
static uint32_t *bp__pick_slots(uint64_t total, uint64_t n, uint64_t seed)
{
    uint32_t *s = tm_malloc((size_t)total * sizeof *s);
    if (!s)
        return NULL;
    for (uint64_t i = 0; i < total; i++)
        s[i] = (uint32_t)i;
    uint64_t x = seed | 1;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t j = i + (x * 0x2545f4914f6cdd1dull) % (total - i);
        uint32_t t = s[i];
        s[i] = s[j];
        s[j] = t;
    }
    return s;
}

/* The journal, the raw reference and the tenths, all from one pass. */
static int bp__make_sources(bp_rebuild_t *r, bp_rebuild_setup_t *su)
{
    char path[PATH_MAX];
    bp_writes_t w;
    int rc;

    memset(&w, 0, sizeof w);
    w.raw_fd = -1;
    for (unsigned k = 0; k < BP_LAYERS; k++)
        w.tenth_fd[k] = -1;
    uint64_t total = r->cfg.size / BP_SLOT;
    w.n = su->writes;
    w.seed = r->cfg.seed;
    uint32_t *slots = bp__pick_slots(total, w.n, r->cfg.seed);
    w.slots = slots;
    w.data = tm_malloc((size_t)BP_REBUILD_PER_BATCH * BP_SLOT);
    if (!slots || !w.data) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = bp__path(r->raw, r->dir, "raw.img")) != 0)
        goto out;
    if ((w.raw_fd = rc = bp__create_sized(r->raw, r->cfg.size)) < 0)
        goto out;
    for (unsigned k = 0; k < BP_LAYERS; k++) {
        char name[32];
        snprintf(name, sizeof name, "tenth-%u.raw", k);
        if ((rc = bp__path(path, r->dir, name)) != 0)
            goto out;
        if ((w.tenth_fd[k] = rc = bp__create_sized(path, r->cfg.size)) < 0)
            goto out;
    }

    if ((rc = bp__path(path, r->dir, "journal")) != 0)
        goto out;
    rc = jnl_open(path, NULL, &r->jnl);
    if (rc) {
        fprintf(stderr, "bench_points: jnl_open %s: %s\n", path, tm_strerror(rc));
        goto out;
    }
    if ((rc = bp_append_disks(r->jnl, BP_MACHINE, BP_DISK_NAME, r->cfg.size)) != 0)
        goto out;
    uint64_t seq = 2; /* 1 is the disk's SYNCED */
    bp_feed_result_t fr;
    rc = bp_feed(r->jnl, BP_MACHINE, r->cfg.inflight, bp__writes_next, &w, &seq, &fr);
    if (rc)
        goto out;
    su->jnl_bytes = fr.jnl_bytes;
    if (fsync(w.raw_fd) != 0) {
        rc = -errno;
        goto out;
    }

    /* Index it, as the processor would have while the writes came. */
    if ((rc = bp__path(path, r->dir, "index")) != 0)
        goto out;
    char err[256];
    uint64_t t0 = tm_mono_ns();
    rc = pts_open(path, r->jnl, NULL, &r->pts, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_points: pts_open: %s\n", err);
        goto out;
    }
    rc = pts_sync(r->pts, BP_SYNC_TIMEOUT_MS);
    su->process_s = (double)(tm_mono_ns() - t0) / 1e9;
    if (rc == 0)
        rc = pts_machine(r->pts, BP_MACHINE, &r->m);
    if (rc) {
        fprintf(stderr, "bench_points: processing the rebuild workload: %s\n", tm_strerror(rc));
        goto out;
    }
    if (r->m.seq != seq - 1) {
        fprintf(stderr, "bench_points: processed up to sequence %" PRIu64 ", expected %" PRIu64 "\n", r->m.seq,
                seq - 1);
        rc = TM_ECORRUPT;
    }
out:
    for (unsigned k = 0; k < BP_LAYERS; k++)
        if (w.tenth_fd[k] >= 0)
            close(w.tenth_fd[k]);
    if (w.raw_fd >= 0)
        close(w.raw_fd);
    wire_buf_free(&w.wb);
    tm_free(w.data);
    tm_free(slots);
    return rc;
}

static int bp__make_chain(bp_rebuild_t *r, bp_rebuild_setup_t *su)
{
    char prev[PATH_MAX], cur[PATH_MAX], tenth[PATH_MAX], size[32];
    int rc;
    uint64_t t0 = tm_mono_ns();

    snprintf(size, sizeof size, "%" PRIu64, r->cfg.size);
    if ((rc = bp__path(prev, r->dir, "base.qcow2")) != 0)
        return rc;
    char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", prev, size, NULL};
    if (bp_run(create, false, NULL) != 0)
        return TM_EFAILED;
    for (unsigned k = 0; k < BP_LAYERS; k++) {
        char name[32];
        snprintf(name, sizeof name, "tenth-%u.raw", k);
        if ((rc = bp__path(tenth, r->dir, name)) != 0)
            return rc;
        snprintf(name, sizeof name, "overlay-%u.qcow2", k);
        if ((rc = bp__path(cur, r->dir, name)) != 0)
            return rc;
        char *conv[] = {"qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", tenth, cur, NULL};
        char *rebase[] = {"qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-F", "qcow2", "-b", prev, cur, NULL};
        if (bp_run(conv, false, NULL) != 0 || bp_run(rebase, false, NULL) != 0)
            return TM_EFAILED;
        unlink(tenth);
        memcpy(prev, cur, sizeof prev);
    }
    memcpy(r->top, prev, sizeof r->top);
    su->chain_bytes = 0;
    for (unsigned k = 0; k < BP_LAYERS; k++) {
        char name[32];
        snprintf(name, sizeof name, "overlay-%u.qcow2", k);
        if (bp__path(cur, r->dir, name) == 0)
            su->chain_bytes += bp_allocated(cur);
    }
    su->chain_s = (double)(tm_mono_ns() - t0) / 1e9;
    return 0;
}

int bp_rebuild_prepare(const bp_rebuild_cfg_t *cfg, bp_rebuild_t **out, bp_rebuild_setup_t *su)
{
    int rc;
    memset(su, 0, sizeof *su);
    if (cfg->size % BP_SLOT || cfg->size / BP_SLOT > UINT32_MAX) {
        fprintf(stderr, "bench_points: --size must be a multiple of 64 KiB (and below 256 TiB)\n");
        return TM_EINVAL;
    }
    bp_rebuild_t *r = tm_calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->cfg = *cfg;
    if (snprintf(r->dir, sizeof r->dir, "%s/rebuild", cfg->dir) >= (int)sizeof r->dir) {
        rc = -ENAMETOOLONG;
        goto fail;
    }
    if (mkdir(r->dir, 0700) != 0) {
        rc = -errno;
        fprintf(stderr, "bench_points: mkdir %s: %s\n", r->dir, strerror(errno));
        goto fail;
    }
    uint64_t total = cfg->size / BP_SLOT;
    su->writes = (uint64_t)((double)total * cfg->changed_pct / 100.0 + 0.5);
    if (su->writes < BP_LAYERS)
        su->writes = BP_LAYERS < total ? BP_LAYERS : total;
    su->changed_bytes = su->writes * BP_SLOT;

    uint64_t t0 = tm_mono_ns();
    if ((rc = bp__make_sources(r, su)) != 0)
        goto fail;
    su->sources_s = (double)(tm_mono_ns() - t0) / 1e9;
    if ((rc = bp__make_chain(r, su)) != 0)
        goto fail;
    su->caches_dropped = cfg->drop_caches && bj_drop_caches();
    *out = r;
    return 0;
fail:
    bp_rebuild_free(r);
    return rc;
}

void bp_rebuild_free(bp_rebuild_t *r)
{
    if (!r)
        return;
    pts_close(r->pts);
    if (r->jnl) {
        jnl_close(r->jnl);
        jnl_destroy(r->jnl);
    }
    tm_free(r);
}

typedef struct bp_progress {
    uint64_t size;
    uint64_t t_done;
} bp_progress_t;

static void bp__on_progress(void *arg, uint64_t done)
{
    bp_progress_t *pg = arg;
    if (done >= pg->size)
        pg->t_done = tm_mono_ns();
}

/*
 * Not tidemark's code path: the same reader, but holes found per 4 KiB
 * block (as cp does) rather than per 4 MiB piece as target/image.c does
 * today. Timed beside it to show what a finer hole check would give; it
 * counts for no target.
 */
#define BP_FINE_PIECE (4u << 20)
#define BP_FINE_BLOCK 4096u

static bool bp__zero(const uint8_t *p, size_t n)
{
    return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

static int bp__fine_image(const tgt_view_t *v, const char *path, uint64_t *t_done)
{
    tgt_reader_t *rd = NULL;
    int rc = -ENOMEM;
    uint8_t *buf = tm_malloc(BP_FINE_PIECE);
    int fd = -1;
    if (!buf)
        goto out;
    if ((rc = tgt_open(v, &rd)) != 0)
        goto out;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)v->size) != 0) {
        rc = -errno;
        goto out;
    }
    for (uint64_t off = 0; off < v->size; off += BP_FINE_PIECE) {
        size_t n = v->size - off < BP_FINE_PIECE ? (size_t)(v->size - off) : BP_FINE_PIECE;
        int hole;
        if ((rc = tgt_read(rd, off, buf, n, &hole)) != 0) {
            fprintf(stderr, "bench_points: tgt_read: %s\n", tgt_error(rd));
            goto out;
        }
        if (hole)
            continue;
        /* write each run of blocks that are not all zero */
        size_t at = 0;
        while (at < n) {
            size_t bl = n - at < BP_FINE_BLOCK ? n - at : BP_FINE_BLOCK;
            if (bp__zero(buf + at, bl)) {
                at += bl;
                continue;
            }
            size_t end = at + bl;
            while (end < n) {
                size_t b2 = n - end < BP_FINE_BLOCK ? n - end : BP_FINE_BLOCK;
                if (bp__zero(buf + end, b2))
                    break;
                end += b2;
            }
            if ((rc = bp__pwrite_all(fd, buf + at, end - at, off + at)) != 0)
                goto out;
            at = end;
        }
    }
    *t_done = tm_mono_ns();
    rc = fsync(fd) == 0 ? 0 : -errno;
out:
    if (fd >= 0)
        close(fd);
    tgt_close(rd);
    tm_free(buf);
    return rc;
}

/* The same start for every timed rebuild (see the top of the file). */
static int bp__settle(bp_rebuild_t *r, bool drop, const bj_pool_t *warm)
{
    if (drop && !bj_drop_caches()) {
        fprintf(stderr, "bench_points: dropping the page cache stopped working\n");
        return -EPERM;
    }
    return warm ? bj_prewarm_in(r->dir, r->cfg.size, warm) : 0;
}

static int bp__cmp(const char *a, const char *b)
{
    char *argv[] = {"cmp", "-s", (char *)a, (char *)b, NULL};
    return bp_run(argv, false, NULL);
}

int bp_rebuild_round(bp_rebuild_t *r, unsigned round, bool drop, const bj_pool_t *warm, bp_rebuild_result_t *res)
{
    char out_tm[PATH_MAX], out_fine[PATH_MAX], out_cp[PATH_MAX], out_q[PATH_MAX], err[512];
    int rc;
    memset(res, 0, sizeof *res);
    if ((rc = bp__path(out_tm, r->dir, "out-tidemark.img")) != 0 ||
        (rc = bp__path(out_fine, r->dir, "out-fine.img")) != 0 || (rc = bp__path(out_cp, r->dir, "out-cp.img")) != 0 || (rc = bp__path(out_q, r->dir, "out-qemu.img")) != 0)
        return rc;

    /* tidemark: the reader over the index and the journal */
    if ((rc = bp__settle(r, drop, warm)) != 0)
        return rc;
    tgt_view_t v = {
        .ix = pts_index(r->pts),
        .jnl = r->jnl,
        .machine = BP_MACHINE,
        .mid = r->m.id,
        .disk = 0,
        .disk_name = BP_DISK_NAME,
        .size = r->cfg.size,
        .seq = r->m.seq,
        .base_path = NULL,
    };
    bp_progress_t pg = {.size = r->cfg.size, .t_done = 0};
    double cpu0 = bp_cpu_secs();
    uint64_t t0 = tm_mono_ns();
    rc = tgt_write_image(&v, out_tm, bp__on_progress, &pg, NULL, err, sizeof err);
    uint64_t t1 = tm_mono_ns();
    res->tm_cpu_s = bp_cpu_secs() - cpu0;
    if (rc) {
        fprintf(stderr, "bench_points: tgt_write_image: %s\n", err);
        return rc;
    }
    res->tm_sync_s = (double)(t1 - t0) / 1e9;
    res->tm_nosync_s = (double)((pg.t_done ? pg.t_done : t1) - t0) / 1e9;
    res->tm_alloc = bp_allocated(out_tm);

    /* the same reader with a finer hole check (not counted for a target) */
    if ((rc = bp__settle(r, drop, warm)) != 0)
        return rc;
    uint64_t t_done = 0;
    t0 = tm_mono_ns();
    rc = bp__fine_image(&v, out_fine, &t_done);
    t1 = tm_mono_ns();
    if (rc) {
        fprintf(stderr, "bench_points: the fine-grained image: %s\n", tm_strerror(rc));
        return rc;
    }
    res->fine_sync_s = (double)(t1 - t0) / 1e9;
    res->fine_nosync_s = (double)(t_done - t0) / 1e9;
    res->fine_alloc = bp_allocated(out_fine);

    /* cp --sparse=always of the raw reference */
    if ((rc = bp__settle(r, drop, warm)) != 0)
        return rc;
    char *cp[] = {"cp", "--sparse=always", r->raw, out_cp, NULL};
    double fs;
    if (bp_run(cp, false, &res->cp_nosync_s) != 0)
        return TM_EFAILED;
    if ((rc = bp_fsync_path(out_cp, &fs)) != 0)
        return rc;
    res->cp_sync_s = res->cp_nosync_s + fs;
    res->cp_alloc = bp_allocated(out_cp);

    /* qemu-img convert of the chain's top */
    if ((rc = bp__settle(r, drop, warm)) != 0)
        return rc;
    char *qi[] = {"qemu-img", "convert", "-t", "unsafe", "-f", "qcow2", "-O", "raw", r->top, out_q, NULL};
    if (bp_run(qi, false, &res->q_nosync_s) != 0)
        return TM_EFAILED;
    if ((rc = bp_fsync_path(out_q, &fs)) != 0)
        return rc;
    res->q_sync_s = res->q_nosync_s + fs;
    res->q_alloc = bp_allocated(out_q);

    /* Only now, so reading them warms nothing a timed run above used. */
    if (bp__cmp(r->raw, out_tm) != 0) {
        fprintf(stderr,
                "bench_points: REBUILD MISMATCH: %s differs from the raw reference %s "
                "(both kept for inspection)\n",
                out_tm, r->raw);
        return TM_ECORRUPT;
    }
    if (bp__cmp(r->raw, out_fine) != 0) {
        fprintf(stderr, "bench_points: REBUILD MISMATCH: %s differs from %s (both kept)\n", out_fine, r->raw);
        return TM_ECORRUPT;
    }
    res->verified = true;
    if (round == 0) {
        if (bp__cmp(r->raw, out_q) != 0) {
            fprintf(stderr, "bench_points: the qcow2 chain does not hold the same disk: %s differs from %s\n",
                    out_q, r->raw);
            return TM_ECORRUPT;
        }
        res->chain_verified = true;
    }
    unlink(out_tm);
    unlink(out_fine);
    unlink(out_cp);
    unlink(out_q);
    return 0;
}
