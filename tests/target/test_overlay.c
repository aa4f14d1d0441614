/*
 * A failover's overlay on its own (target/overlay.h), over an in-memory
 * base: a fill beside writers and readers on threads of the test, then the
 * base never read again and zero blocks left holes; a crash after a flush
 * (the files as they were right after it) reopens with what was flushed;
 * crafted maps that verify but cannot be right are refused. Seeded
 * (TIDEMARK_TARGET_SEED).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/endian.h"
#include "base/err.h"
#include "support/tmt.h"
#include "target/overlay.h"

typedef struct base {
    uint8_t *bytes;
    uint64_t size;
    atomic_uint calls;
    atomic_bool forbid;
    atomic_uint forbidden;
} base_t;

static int base_read(void *arg, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    base_t *b = arg;
    atomic_fetch_add(&b->calls, 1);
    if (atomic_load(&b->forbid))
        atomic_fetch_add(&b->forbidden, 1);
    if (off > b->size || len > b->size - off) {
        snprintf(err, errlen, "base read past the end");
        return -EINVAL;
    }
    memcpy(buf, b->bytes + off, len);
    return 0;
}

static uint64_t seed_of(uint64_t def)
{
    uint64_t s = tmt_env_u64("TIDEMARK_TARGET_SEED", 0);
    if (!s)
        s = def;
    fprintf(stderr, "overlay test seed %#llx (TIDEMARK_TARGET_SEED)\n", (unsigned long long)s);
    return s;
}

/* Block b of the base is zeroes when zero_every divides it, else noise. */
static void base_make(base_t *b, uint64_t size, uint64_t seed, unsigned zero_every)
{
    memset(b, 0, sizeof *b);
    b->size = size;
    b->bytes = calloc(1, size);
    cr_assert(b->bytes);
    for (uint64_t blk = 0; blk * TGT_OV_BLOCK < size; blk++) {
        if (zero_every && blk % zero_every == 0)
            continue;
        uint64_t start = blk * TGT_OV_BLOCK, len = size - start < TGT_OV_BLOCK ? size - start : TGT_OV_BLOCK;
        tmt_fill(b->bytes + start, (size_t)len, seed, blk, false);
    }
}

static void read_all(tgt_ov_t *ov, uint8_t *out, uint64_t size)
{
    char err[512];
    for (uint64_t o = 0; o < size; o += 1u << 20) {
        size_t l = size - o < (1u << 20) ? (size_t)(size - o) : 1u << 20;
        int rc = tgt_ov_read(ov, o, out + o, l, err, sizeof err);
        cr_assert_eq(rc, 0, "read at %llu: %s", (unsigned long long)o, err);
    }
}

static void assert_same(const uint8_t *got, const uint8_t *want, uint64_t size, const char *what, uint64_t seed)
{
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != want[i])
            cr_assert_fail("%s: byte %llu is %02x, not %02x (seed %#llx)", what, (unsigned long long)i, got[i],
                           want[i], (unsigned long long)seed);
}

/* ---- a fill beside writers and readers ------------------------------------ */

enum { NWRITES = 150, MAXLEN = 60000 };

typedef struct writer {
    pthread_t th;
    tgt_ov_t *ov;
    uint64_t seed, lo, hi; /* writes inside [lo, hi) only */
    uint8_t *model;        /* shared; this writer's bytes only */
    uint8_t *touched;      /* per block, this writer's */
    int rc;
    char err[512];
} writer_t;

static void *writer_run(void *arg)
{
    writer_t *w = arg;
    tmt_rng_t rng;
    tmt_rng_seed(&rng, w->seed);
    uint8_t *buf = malloc(MAXLEN);
    for (unsigned i = 0; i < NWRITES && w->rc == 0; i++) {
        uint64_t len = tmt_rng_range(&rng, 1, MAXLEN);
        if (len > w->hi - w->lo)
            len = w->hi - w->lo;
        uint64_t off = tmt_rng_range(&rng, w->lo, w->hi - len);
        bool fua = i % 25 == 0;
        if (i % 7 == 3) {
            w->rc = tgt_ov_zero(w->ov, off, len, i % 2, fua, w->err, sizeof w->err);
            memset(w->model + off, 0, (size_t)len);
        } else {
            tmt_fill(buf, (size_t)len, w->seed, i, i % 3 == 0);
            w->rc = tgt_ov_write(w->ov, off, buf, (size_t)len, fua, w->err, sizeof w->err);
            memcpy(w->model + off, buf, (size_t)len);
        }
        for (uint64_t b = off / TGT_OV_BLOCK; b <= (off + len - 1) / TGT_OV_BLOCK; b++)
            w->touched[b] = 1;
        if (i % 50 == 0 && w->rc == 0)
            w->rc = tgt_ov_flush(w->ov, w->err, sizeof w->err);
    }
    free(buf);
    return NULL;
}

typedef struct reader {
    pthread_t th;
    tgt_ov_t *ov;
    uint64_t seed, size;
    atomic_bool *done;
    int rc;
    unsigned reads;
    char err[512];
} reader_t;

static void *reader_run(void *arg)
{
    reader_t *r = arg;
    tmt_rng_t rng;
    tmt_rng_seed(&rng, r->seed);
    uint8_t *buf = malloc(1u << 20);
    while (!atomic_load(r->done) && r->rc == 0) {
        uint64_t len = tmt_rng_range(&rng, 1, 1u << 20);
        if (len > r->size)
            len = r->size;
        uint64_t off = tmt_rng_range(&rng, 0, r->size - len);
        r->rc = tgt_ov_read(r->ov, off, buf, (size_t)len, r->err, sizeof r->err);
        r->reads++;
    }
    free(buf);
    return NULL;
}

Test(target_overlay, a_fill_beside_writers_and_readers, .timeout = 120)
{
    uint64_t seed = seed_of(0x0f11);
    char dir[PATH_MAX], path[PATH_MAX + 32], err[512];
    tmt_mkdtemp(dir, "tgt-ovfill");
    snprintf(path, sizeof path, "%s/d0.overlay", dir);
    uint64_t size = (24u << 20) + 12345;
    uint64_t nblocks = (size + TGT_OV_BLOCK - 1) / TGT_OV_BLOCK;
    base_t base;
    base_make(&base, size, seed, 3);
    tgt_ov_info_t info = {.machine = "m1", .disk = "d0", .disk_ix = 0, .size = size, .seq = 42};
    tgt_ov_t *ov;
    int rc = tgt_ov_create_stored(path, &info, base_read, &base, &ov, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    uint8_t *model = malloc(size);
    memcpy(model, base.bytes, size);

    writer_t w[2];
    for (unsigned i = 0; i < 2; i++) {
        w[i] = (writer_t){.ov = ov, .seed = tmt_mix(seed, i), .lo = i * (size / 2), .hi = i ? size : size / 2,
                          .model = model, .touched = calloc(nblocks, 1)};
        cr_assert_eq(pthread_create(&w[i].th, NULL, writer_run, &w[i]), 0);
    }
    atomic_bool done;
    atomic_init(&done, false);
    reader_t r = {.ov = ov, .seed = tmt_mix(seed, 7), .size = size, .done = &done};
    cr_assert_eq(pthread_create(&r.th, NULL, reader_run, &r), 0);

    atomic_bool stop;
    atomic_init(&stop, false);
    rc = tgt_ov_fill(ov, &stop, err, sizeof err);
    cr_assert_eq(rc, 0, "fill: %s", err);
    cr_assert(tgt_ov_standalone(ov));
    cr_assert_eq(tgt_ov_filled(ov), size);
    for (unsigned i = 0; i < 2; i++) {
        pthread_join(w[i].th, NULL);
        cr_assert_eq(w[i].rc, 0, "writer %u: %s", i, w[i].err);
    }
    atomic_store(&done, true);
    pthread_join(r.th, NULL);
    cr_assert_eq(r.rc, 0, "reader: %s", r.err);
    fprintf(stderr, "%u reads beside the fill, %u base reads\n", r.reads, atomic_load(&base.calls));
    cr_assert_eq(tgt_ov_blocks(ov), nblocks);

    /* the base is never read again, and the disk is the base plus the writes */
    atomic_store(&base.forbid, true);
    uint8_t *got = malloc(size);
    read_all(ov, got, size);
    assert_same(got, model, size, "after the fill", seed);

    /* blocks of zeroes nobody wrote are holes */
    unsigned holes = 0, zero = 0;
    int fd = open(path, O_RDONLY);
    for (uint64_t b = 0; b < nblocks; b++) {
        if (b % 3 != 0 || w[0].touched[b] || w[1].touched[b])
            continue;
        zero++;
        /* the file system keeps a partial 4 KiB block at the end allocated */
        uint64_t end = (b + 1) * TGT_OV_BLOCK < size ? (b + 1) * TGT_OV_BLOCK : size & ~UINT64_C(4095);
        off_t at = lseek(fd, (off_t)(b * TGT_OV_BLOCK), SEEK_DATA);
        holes += at < 0 || (uint64_t)at >= end;
    }
    close(fd);
    fprintf(stderr, "%u blocks of zeroes nobody wrote\n", zero);
    cr_assert_gt(zero, 0);
    cr_assert_eq(holes, zero, "%u of %u blocks of zeroes were written out", zero - holes, zero);
    cr_assert_eq(tgt_ov_write(ov, 5, "abc", 3, true, err, sizeof err), 0, "%s", err);
    memcpy(model + 5, "abc", 3);
    cr_assert_eq(atomic_load(&base.forbidden), 0, "the base was read after the fill");

    /* reopened with no base: standalone, the same bytes */
    tgt_ov_close(ov);
    tgt_ov_info_t want = {.machine = "m1", .disk = "d0"};
    rc = tgt_ov_open(path, &want, NULL, NULL, &ov, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    tgt_ov_info(ov, &info);
    cr_assert_eq(info.seq, 42);
    cr_assert_eq(info.size, size);
    cr_assert_str_eq(info.disk, "d0");
    read_all(ov, got, size);
    assert_same(got, model, size, "reopened", seed);
    tgt_ov_close(ov);
    want.seq = 43;
    rc = tgt_ov_open(path, &want, base_read, &base, &ov, err, sizeof err);
    cr_assert_eq(rc, TM_EINVAL, "%s: %s", tmt_errname(rc), err);
    cr_assert(strstr(err, "was made over point 42, not 43"), "%s", err);

    free(got);
    free(model);
    free(w[0].touched);
    free(w[1].touched);
    free(base.bytes);
    tmt_rmtree(dir);
}

/* ---- a crash right after a flush ------------------------------------------ */

static uint8_t *slurp(const char *path, size_t *len)
{
    *len = (size_t)tmt_file_size(path);
    uint8_t *b = malloc(*len ? *len : 1);
    tmt_file_read(path, 0, b, *len);
    return b;
}

static void put_back(const char *path, const uint8_t *b, size_t len)
{
    tmt_file_create(path, 0);
    tmt_file_write(path, 0, b, len);
}

Test(target_overlay, a_crash_after_a_flush_keeps_what_was_flushed, .timeout = 60)
{
    uint64_t seed = seed_of(0x0f12);
    char dir[PATH_MAX], path[PATH_MAX + 32], map[PATH_MAX + 64], err[512];
    tmt_mkdtemp(dir, "tgt-ovcrash");
    snprintf(path, sizeof path, "%s/d1.overlay", dir);
    snprintf(map, sizeof map, "%s.map", path);
    uint64_t size = (4u << 20) + 100;
    base_t base;
    base_make(&base, size, seed, 0);
    tgt_ov_info_t info = {.machine = "m1", .disk = "d1", .disk_ix = 1, .size = size, .seq = 7};
    tgt_ov_t *ov;
    cr_assert_eq(tgt_ov_create_stored(path, &info, base_read, &base, &ov, err, sizeof err), 0, "%s", err);
    uint8_t *flushed = malloc(size), *all = malloc(size), *got = malloc(size);
    memcpy(flushed, base.bytes, size);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, seed);
    uint8_t buf[100000];
    for (unsigned i = 0; i < 40; i++) {
        size_t len = (size_t)tmt_rng_range(&rng, 1, sizeof buf);
        uint64_t off = tmt_rng_range(&rng, 0, size - len);
        tmt_fill(buf, len, seed, i, false);
        cr_assert_eq(tgt_ov_write(ov, off, buf, len, false, err, sizeof err), 0, "%s", err);
        memcpy(flushed + off, buf, len);
    }
    cr_assert_eq(tgt_ov_flush(ov, err, sizeof err), 0, "%s", err);
    /* the files as a crash right now would leave them (what the flush made
     * durable, and nothing after) */
    size_t dlen, mlen;
    uint8_t *dsnap = slurp(path, &dlen), *msnap = slurp(map, &mlen);
    memcpy(all, flushed, size);
    for (unsigned i = 0; i < 40; i++) {
        size_t len = (size_t)tmt_rng_range(&rng, 1, sizeof buf);
        uint64_t off = tmt_rng_range(&rng, 0, size - len);
        tmt_fill(buf, len, seed, 100 + i, false);
        cr_assert_eq(tgt_ov_write(ov, off, buf, len, false, err, sizeof err), 0, "%s", err);
        memcpy(all + off, buf, len);
    }
    /* a clean close flushes the rest */
    tgt_ov_close(ov);
    tgt_ov_info_t want = {.machine = "m1", .disk = "d1", .size = size, .seq = 7};
    cr_assert_eq(tgt_ov_open(path, &want, base_read, &base, &ov, err, sizeof err), 0, "%s", err);
    read_all(ov, got, size);
    assert_same(got, all, size, "after a clean close", seed);
    tgt_ov_close(ov);
    /* the crash: the unflushed writes' blocks are the base's again, or the
     * flushed bytes where a flushed write had them */
    put_back(path, dsnap, dlen);
    put_back(map, msnap, mlen);
    cr_assert_eq(tgt_ov_open(path, &want, base_read, &base, &ov, err, sizeof err), 0, "%s", err);
    read_all(ov, got, size);
    assert_same(got, flushed, size, "after a crash right after the flush", seed);
    tgt_ov_close(ov);
    free(dsnap);
    free(msnap);
    free(flushed);
    free(all);
    free(got);
    free(base.bytes);
    tmt_rmtree(dir);
}

/* ---- maps that verify but cannot be right ---------------------------------- */

Test(target_overlay, crafted_maps_are_refused, .timeout = 60)
{
    char dir[PATH_MAX], path[PATH_MAX + 32], map[PATH_MAX + 64], err[512];
    tmt_mkdtemp(dir, "tgt-ovcraft");
    snprintf(path, sizeof path, "%s/d2.overlay", dir);
    snprintf(map, sizeof map, "%s.map", path);
    uint64_t size = 100u << 10; /* two blocks, the second short */
    base_t base;
    base_make(&base, size, 1, 0);
    tgt_ov_info_t info = {.machine = "m1", .disk = "d2", .size = size, .seq = 9};
    tgt_ov_t *ov;
    cr_assert_eq(tgt_ov_create_stored(path, &info, base_read, &base, &ov, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tgt_ov_write(ov, 10, "x", 1, true, err, sizeof err), 0, "%s", err);
    tgt_ov_close(ov);
    uint8_t hdr[256], rec[512];
    tmt_file_read(map, 0, hdr, sizeof hdr);
    tmt_file_read(map, 4096, rec, sizeof rec);
    cr_assert_eq(tm_get64(rec), 1, "record 0 holds block 0 only");

    /* marked standalone, with a block not in the file */
    uint8_t h[256];
    memcpy(h, hdr, sizeof h);
    tm_put32(h + 12, 1);
    tm_put64(h + 248, XXH3_64bits(h, 248));
    tmt_file_write(map, 0, h, sizeof h);
    tgt_ov_info_t any = {0};
    int rc = tgt_ov_open(path, &any, NULL, NULL, &ov, err, sizeof err);
    cr_assert_eq(rc, TM_ECORRUPT, "%s: %s", tmt_errname(rc), err);
    cr_assert(strstr(err, "says standalone, but 1 of its 2 blocks are not in the file"), "%s", err);
    tmt_file_write(map, 0, hdr, sizeof hdr);

    /* a block past the disk's end */
    uint8_t r[512];
    memcpy(r, rec, sizeof r);
    tm_put64(r, 1u | 1u << 5);
    tm_put64(r + 504, XXH3_64bits_withSeed(r, 504, tm_get64(hdr + 40)));
    tmt_file_write(map, 4096, r, sizeof r);
    any.seq = 9;
    rc = tgt_ov_open(path, &any, base_read, &base, &ov, err, sizeof err);
    cr_assert_eq(rc, TM_ECORRUPT, "%s: %s", tmt_errname(rc), err);
    cr_assert(strstr(err, "block 5 is marked written, past the disk's end"), "%s", err);
    cr_assert(strstr(err, map), "%s", err);
    tmt_file_write(map, 4096, rec, sizeof rec);

    /* another disk's map */
    tgt_ov_info_t other = {.machine = "m1", .disk = "d3", .seq = 9};
    rc = tgt_ov_open(path, &other, base_read, &base, &ov, err, sizeof err);
    cr_assert_eq(rc, TM_EINVAL, "%s: %s", tmt_errname(rc), err);
    cr_assert(strstr(err, "is of machine m1 disk d2, not m1 d3"), "%s", err);

    /* whole again: it opens, with the write */
    cr_assert_eq(tgt_ov_open(path, &any, base_read, &base, &ov, err, sizeof err), 0, "%s", err);
    char c;
    cr_assert_eq(tgt_ov_read(ov, 10, &c, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c, 'x');
    cr_assert_eq(tgt_ov_blocks(ov), 1);
    tgt_ov_close(ov);

    /* a test's overlay has no map and is never filled */
    snprintf(path, sizeof path, "%s/t.overlay", dir);
    cr_assert_eq(tgt_ov_create(path, size, base_read, &base, &ov), 0);
    snprintf(map, sizeof map, "%s.map", path);
    cr_assert(!tmt_file_exists(map));
    rc = tgt_ov_fill(ov, NULL, err, sizeof err);
    cr_assert_eq(rc, TM_EINVAL, "%s", tmt_errname(rc));
    tgt_ov_close(ov);
    free(base.bytes);
    tmt_rmtree(dir);
}
