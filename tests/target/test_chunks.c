/*
 * The exports' chunk cache (target/chunks.h): reads served from each
 * chunk's kept extents equal the reference model at several points and
 * random positions; a cache smaller than the disk lets lists go and still
 * reads right (and a cap too small for any list, or none, scans every
 * time); retention folding into the replica base and retiring journal
 * segments under an open export whose chunks are cached, with reads in
 * flight, never serves stale extents; a damaged write behind a cached
 * chunk fails as it does without the cache, logged once. Real NBD
 * connections (tests/nbd/nbdt.h); TIDEMARK_TARGET_SEED picks the workload.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mem.h"
#include "tt.h"

#define FAR_FUTURE_NS (40ull * 24 * 3600 * 1000000000ull)
#define SEC_NS 1000000000ull

static int open_export(tt_t *t, const char *name)
{
    int fd = nbdt_connect(t->port);
    nbdt_handshake(fd, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
    char msg[512];
    cr_assert_eq(tt_go(fd, name, NULL, NULL, msg, sizeof msg), NBD_REP_ACK, "%s: %s", name, msg);
    return fd;
}

static tgt_chunk_stats_t stats(tt_t *t)
{
    tgt_chunk_stats_t s;
    tgt_exports_chunk_stats(t->x, &s);
    return s;
}

/* One read of [off, off + len) compared with want (the disk at the point). */
static void check_read(int fd, const uint8_t *want, uint64_t off, uint32_t len, const char *name)
{
    uint8_t *got = malloc(len);
    cr_assert(got);
    uint32_t err = nbdt_roundtrip(fd, 0, NBD_CMD_READ, off, len, NULL, got);
    cr_assert_eq(err, 0, "%s: read at %llu+%u: NBD error %u", name, (unsigned long long)off, len, err);
    for (uint32_t i = 0; i < len; i++)
        if (got[i] != want[off + i])
            cr_assert_fail("%s differs from the model at byte %llu (a read at %llu+%u)", name,
                           (unsigned long long)(off + i), (unsigned long long)off, len);
    free(got);
}

/* A random range of the disk: mostly small (the bench's 4 KiB), sometimes
 * crossing chunks. */
static void random_range(tmt_rng_t *rng, uint64_t size, uint64_t *off, uint32_t *len)
{
    uint64_t n = tmt_rng_range(rng, 0, 3) == 0 ? tmt_rng_range(rng, 1, 700 * 1024) : tmt_rng_range(rng, 1, 8192);
    if (n > size)
        n = size;
    *off = tmt_rng_range(rng, 0, size - n);
    *len = (uint32_t)n;
}

static void random_reads(int fd, const uint8_t *want, uint64_t size, tmt_rng_t *rng, unsigned n, const char *name)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t off;
        uint32_t len;
        random_range(rng, size, &off, &len);
        check_read(fd, want, off, len, name);
    }
}

/* Every export released (their caches freed): nothing is kept. */
static void wait_nothing_kept(tt_t *t)
{
    uint64_t deadline = tm_now_ns() + 10 * SEC_NS;
    while (stats(t).entries != 0) {
        cr_assert_lt(tm_now_ns(), deadline, "lists still kept 10 s after every connection closed");
        usleep(5000);
    }
    cr_assert_eq(stats(t).bytes, 0);
}

Test(target_chunks, cached_reads_equal_the_model_at_several_points, .timeout = 240)
{
    tt_t t;
    tt_init(&t, "tgt-cache", tt_seed(0xc4c4e), 60, 12);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, t.m.seed);
    pts_point_t *all;
    size_t n;
    cr_assert_eq(pts_points(t.p, "web1", NULL, &all, &n), 0);
    cr_assert_geq(n, 4);
    /* newest, oldest, and two between */
    uint64_t points[4] = {all[0].seq, all[n - 1].seq, all[n / 2].seq, all[n / 3].seq};
    tm_free(all);
    tt_start(&t);

    for (unsigned p = 0; p < 4; p++) {
        for (unsigned d = 0; d < t.m.ndisks; d++) {
            uint64_t size = t.m.disks[d].size;
            uint8_t *want = malloc(size);
            cr_assert(want);
            pm_disk_at(&t.m, d, points[p], want);
            char name[64];
            snprintf(name, sizeof name, "web1/disk%u@%llu", d, (unsigned long long)points[p]);
            int fd = open_export(&t, name);
            tgt_chunk_stats_t before = stats(&t);
            /* the first touches load the chunks, the next are served from them */
            random_reads(fd, want, size, &rng, 150, name);
            tgt_chunk_stats_t after = stats(&t);
            cr_assert_gt(after.misses, before.misses);
            cr_assert_gt(after.hits, before.hits, "%s: no read was served from the cache", name);
            cr_assert_leq(after.misses - before.misses, (size >> 20) + 1, "%s: %llu scans for %llu chunks", name,
                          (unsigned long long)(after.misses - before.misses),
                          (unsigned long long)((size >> 20) + 1));
            /* a second connection shares the export and its lists */
            int fd2 = open_export(&t, name);
            random_reads(fd2, want, size, &rng, 50, name);
            cr_assert_eq(stats(&t).misses, after.misses, "%s: a second connection scanned again", name);
            check_read(fd2, want, 0, (uint32_t)size, name);
            close(fd2);
            close(fd);
            free(want);
        }
    }
    tt_fini(&t);
}

Test(target_chunks, a_cache_smaller_than_the_disk_evicts_and_reads_right, .timeout = 240)
{
    tt_t t;
    tt_init(&t, "tgt-evict", tt_seed(0xe71c7), 60, 12);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, t.m.seed);
    uint64_t seq = tt_seq_of(&t, "latest-processed");
    const unsigned d = 1; /* 3 MiB: three chunks */
    uint64_t size = t.m.disks[d].size;
    uint8_t *want = malloc(size);
    cr_assert(want);
    pm_disk_at(&t.m, d, seq, want);
    char name[64];
    snprintf(name, sizeof name, "web1/disk%u@%llu", d, (unsigned long long)seq);
    tt_start(&t);

    /* the default cap keeps all three: what they cost */
    int fd = open_export(&t, name);
    check_read(fd, want, 0, (uint32_t)size, name);
    tgt_chunk_stats_t s = stats(&t);
    cr_assert_eq(s.entries, 3);
    uint64_t all3 = s.bytes;
    close(fd);
    wait_nothing_kept(&t);

    /* one byte short of all three: the largest still fits, not all */
    tgt_exports_set_chunk_cache(t.x, (size_t)all3 - 1);
    fd = open_export(&t, name);
    tgt_chunk_stats_t before = stats(&t);
    for (unsigned round = 0; round < 6; round++)
        for (uint64_t c = 0; c < 3; c++)
            check_read(fd, want, c << 20, 4096, name);
    random_reads(fd, want, size, &rng, 200, name);
    check_read(fd, want, 0, (uint32_t)size, name);
    s = stats(&t);
    cr_assert_gt(s.evictions, before.evictions, "nothing was let go with a cap below the disk's lists");
    cr_assert_lt(s.entries, 3);
    cr_assert_leq(s.bytes, all3 - 1);
    close(fd);
    wait_nothing_kept(&t);

    /* a cap no list fits: every read scans, and reads right */
    tgt_exports_set_chunk_cache(t.x, 64);
    fd = open_export(&t, name);
    before = stats(&t);
    random_reads(fd, want, size, &rng, 100, name);
    s = stats(&t);
    cr_assert_eq(s.entries, 0);
    cr_assert_eq(s.hits, before.hits);
    cr_assert_gt(s.misses, before.misses);
    close(fd);
    wait_nothing_kept(&t);

    /* no cache at all */
    tgt_exports_set_chunk_cache(t.x, 0);
    fd = open_export(&t, name);
    before = stats(&t);
    random_reads(fd, want, size, &rng, 100, name);
    s = stats(&t);
    cr_assert_eq(s.hits + s.misses, before.hits + before.misses, "an export without a cache counted lookups");
    close(fd);
    free(want);
    tt_fini(&t);
}

/* The disks of web1 at seq, from the model. */
static uint8_t **model_disks(const tt_t *t, uint64_t seq)
{
    uint8_t **want = calloc(t->m.ndisks, sizeof *want);
    cr_assert(want);
    for (unsigned d = 0; d < t->m.ndisks; d++) {
        want[d] = malloc(t->m.disks[d].size);
        cr_assert(want[d]);
        pm_disk_at(&t->m, d, seq, want[d]);
    }
    return want;
}

static void free_disks(const tt_t *t, uint8_t **want)
{
    for (unsigned d = 0; d < t->m.ndisks; d++)
        free(want[d]);
    free(want);
}

static uint64_t first_lsn(const tt_t *t)
{
    jnl_stats_t st;
    jnl_get_stats(t->j, &st);
    return st.first_lsn;
}

Test(target_chunks, retention_under_cached_chunks_never_serves_stale_extents, .timeout = 240)
{
    tt_t t;
    /* segments of 4 MiB: the workload spans several, so folding lets some go */
    tt_init_ex(&t, "tgt-cret", tt_seed(0x5ca1e), 60, 12, 4u << 20, true);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, t.m.seed);
    pts_point_t *all;
    size_t n;
    cr_assert_eq(pts_points(t.p, "web1", NULL, &all, &n), 0);
    cr_assert_geq(n, 4);
    uint64_t old = all[n / 4].seq; /* most of the stream is at or below it */
    tm_free(all);
    uint8_t **want = model_disks(&t, old);
    tt_start(&t);

    /* every chunk of every disk cached before anything is folded (no base) */
    int fds[3];
    char names[3][64];
    for (unsigned d = 0; d < t.m.ndisks; d++) {
        snprintf(names[d], sizeof names[d], "web1/disk%u@%llu", d, (unsigned long long)old);
        fds[d] = open_export(&t, names[d]);
        check_read(fds[d], want[d], 0, (uint32_t)t.m.disks[d].size, names[d]);
    }
    tgt_chunk_stats_t s0 = stats(&t);
    cr_assert_eq(s0.entries, 2 + 3 + 1);
    uint64_t lsn0 = first_lsn(&t);

    /* retention as if forty days had passed: the open exports hold the
     * horizon at their point; everything up to it is folded into the base,
     * its extents leave the index, its journal segments are retired */
    cr_assert_eq(pts_retain(t.p, tm_now_ns() + FAR_FUTURE_NS), 0);
    pts_machine_t pm;
    cr_assert_eq(pts_machine(t.p, "web1", &pm), 0);
    cr_assert_eq(pm.base_seq, old);
    cr_assert_gt(first_lsn(&t), lsn0, "no journal segment was retired: the test proves nothing");

    /* the same connections, the same kept lists: whole disks, then pieces */
    for (unsigned d = 0; d < t.m.ndisks; d++) {
        check_read(fds[d], want[d], 0, (uint32_t)t.m.disks[d].size, names[d]);
        random_reads(fds[d], want[d], t.m.disks[d].size, &rng, 100, names[d]);
    }
    tgt_chunk_stats_t s1 = stats(&t);
    cr_assert_gt(s1.stale, s0.stale, "no kept list met a retired record");
    cr_assert_gt(s1.hits, s0.hits);
    /* the lists scanned again are the index's now: read without a miss */
    for (unsigned d = 0; d < t.m.ndisks; d++)
        check_read(fds[d], want[d], 0, (uint32_t)t.m.disks[d].size, names[d]);
    cr_assert_eq(stats(&t).misses, s1.misses);
    cr_assert_eq(stats(&t).stale, s1.stale);
    for (unsigned d = 0; d < t.m.ndisks; d++)
        close(fds[d]);
    free_disks(&t, want);
    tt_fini(&t);
}

/* A client thread: random reads of one export until told to stop, each
 * compared with the model. */
typedef struct racer {
    pthread_t th;
    int fd;
    const uint8_t *want;
    uint64_t size;
    uint64_t seed;
    atomic_bool *stop;
    atomic_uint reads;
    atomic_uint bad, nbd_err; /* read by the test thread as it waits */
    uint64_t bad_off;
} racer_t;

static void *racer_run(void *arg)
{
    racer_t *r = arg;
    tmt_rng_t rng;
    tmt_rng_seed(&rng, r->seed);
    uint8_t *got = malloc(700 * 1024);
    /* at least a few reads even when the stop comes early */
    while (got && (atomic_load(&r->reads) < 20 || !atomic_load(r->stop)) && !atomic_load(&r->bad) &&
           !atomic_load(&r->nbd_err)) {
        uint64_t off;
        uint32_t len;
        random_range(&rng, r->size, &off, &len);
        uint32_t err = nbdt_roundtrip(r->fd, 0, NBD_CMD_READ, off, len, NULL, got);
        if (err) {
            r->bad_off = off;
            atomic_store(&r->nbd_err, err);
        } else if (memcmp(got, r->want + off, len) != 0) {
            r->bad_off = off;
            atomic_store(&r->bad, 1);
        }
        atomic_fetch_add(&r->reads, 1);
    }
    free(got);
    return NULL;
}

/* Wait until the racers have made n more reads between them (or one
 * failed: its thread stops, and the test fails after the join). */
static void racers_progress(racer_t *rs, unsigned nr, unsigned n)
{
    unsigned from = 0;
    for (unsigned i = 0; i < nr; i++)
        from += atomic_load(&rs[i].reads);
    uint64_t deadline = tm_now_ns() + 60 * SEC_NS;
    for (;;) {
        unsigned now = 0;
        bool failed = false;
        for (unsigned i = 0; i < nr; i++) {
            now += atomic_load(&rs[i].reads);
            failed |= atomic_load(&rs[i].bad) || atomic_load(&rs[i].nbd_err);
        }
        if (now >= from + n || failed)
            return;
        cr_assert_lt(tm_now_ns(), deadline, "the racers made %u reads in 60 s", now - from);
        usleep(2000);
    }
}

Test(target_chunks, reads_in_flight_while_retention_folds_and_retires, .timeout = 240)
{
    tt_t t;
    tt_init_ex(&t, "tgt-crace", tt_seed(0x7ace5), 80, 12, 4u << 20, true);
    pts_point_t *all;
    size_t n;
    cr_assert_eq(pts_points(t.p, "web1", NULL, &all, &n), 0);
    cr_assert_geq(n, 6);
    uint64_t early = all[n - 2].seq, late = all[n / 3].seq;
    tm_free(all);
    uint8_t **want = model_disks(&t, late);
    tt_start(&t);

    /* an export at an early point holds the first fold there */
    char ename[64];
    snprintf(ename, sizeof ename, "web1/disk0@%llu", (unsigned long long)early);
    int efd = open_export(&t, ename);

    atomic_bool stop;
    atomic_init(&stop, false);
    racer_t rs[6];
    for (unsigned i = 0; i < 6; i++) {
        unsigned d = i % t.m.ndisks;
        char name[64];
        snprintf(name, sizeof name, "web1/disk%u@%llu", d, (unsigned long long)late);
        memset(&rs[i], 0, sizeof rs[i]);
        rs[i].fd = open_export(&t, name);
        rs[i].want = want[d];
        rs[i].size = t.m.disks[d].size;
        rs[i].seed = t.m.seed + i;
        rs[i].stop = &stop;
    }
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(pthread_create(&rs[i].th, NULL, racer_run, &rs[i]), 0);

    /* fold to the early point, then (its export closed) to the late one,
     * once the racers have loaded chunks, and until they read on after */
    uint64_t lsn0 = first_lsn(&t);
    racers_progress(rs, 6, 60);
    cr_assert_eq(pts_retain(t.p, tm_now_ns() + FAR_FUTURE_NS), 0);
    pts_machine_t pm;
    cr_assert_eq(pts_machine(t.p, "web1", &pm), 0);
    cr_assert_eq(pm.base_seq, early);
    close(efd);
    uint64_t deadline = tm_now_ns() + 10 * SEC_NS;
    for (;;) {
        cr_assert_eq(pts_retain(t.p, tm_now_ns() + FAR_FUTURE_NS), 0);
        cr_assert_eq(pts_machine(t.p, "web1", &pm), 0);
        if (pm.base_seq == late)
            break;
        /* the server releases the early export once it sees the close */
        cr_assert_lt(tm_now_ns(), deadline, "base at %llu, not %llu", (unsigned long long)pm.base_seq,
                     (unsigned long long)late);
        usleep(10000);
    }
    cr_assert_gt(first_lsn(&t), lsn0, "no journal segment was retired: the test proves nothing");
    racers_progress(rs, 6, 60);
    atomic_store(&stop, true);
    unsigned reads = 0;
    for (unsigned i = 0; i < 6; i++) {
        cr_assert_eq(pthread_join(rs[i].th, NULL), 0);
        cr_assert_eq(atomic_load(&rs[i].nbd_err), 0, "racer %u: NBD error %u at %llu", i,
                     atomic_load(&rs[i].nbd_err), (unsigned long long)rs[i].bad_off);
        cr_assert_eq(atomic_load(&rs[i].bad), 0, "racer %u: wrong bytes at a read at %llu", i, (unsigned long long)rs[i].bad_off);
        reads += atomic_load(&rs[i].reads);
    }
    /* after it all, whole disks through the same connections */
    for (unsigned i = 0; i < 6; i++) {
        check_read(rs[i].fd, rs[i].want, 0, (uint32_t)rs[i].size, "after retention");
        close(rs[i].fd);
    }
    tgt_chunk_stats_t s = stats(&t);
    fprintf(stderr, "%u racing reads; chunk cache: %llu hits, %llu misses, %llu stale\n", reads,
            (unsigned long long)s.hits, (unsigned long long)s.misses, (unsigned long long)s.stale);
    free_disks(&t, want);
    tt_fini(&t);
}

Test(target_chunks, a_damaged_write_behind_a_cached_chunk_is_named_once, .timeout = 120)
{
    tt_t t;
    tt_init(&t, "tgt-cflip", tt_seed(0xf11c), 30, 10);
    /* as test_refuse.c: the last noise write nothing later touches, here
     * one that leaves some of its chunk to read without it */
    uint64_t victim = 0, spare = 0;
    for (uint64_t s = t.m.nops; s >= 1 && !victim; s--) {
        const pm_op_t *op = &t.m.ops[s - 1];
        if (op->kind != WIRE_R_WRITE || op->compressible)
            continue;
        bool hidden = false;
        for (uint64_t k = s + 1; k <= t.m.nops && !hidden; k++) {
            const pm_op_t *o = &t.m.ops[k - 1];
            hidden = (o->kind == WIRE_R_WRITE || o->kind == WIRE_R_ZERO || o->kind == WIRE_R_TRIM) &&
                     o->disk == op->disk && o->off < op->off + op->len && op->off < o->off + o->len;
        }
        uint64_t c0 = op->off >> 20 << 20, c1 = c0 + (1u << 20);
        if (c1 > t.m.disks[op->disk].size)
            c1 = t.m.disks[op->disk].size;
        if (hidden || (op->off + op->len) >> 20 != op->off >> 20)
            continue;
        /* 512 bytes of its chunk outside it */
        if (op->off >= c0 + 512)
            spare = c0;
        else if (op->off + op->len + 512 <= c1)
            spare = op->off + op->len;
        else
            continue;
        victim = s;
    }
    cr_assert(victim);
    const pm_op_t *op = &t.m.ops[victim - 1];
    pm_flip_stored_bit(t.p, t.jdir, &t.m, victim);

    tmt_log_capture();
    tt_start(&t);
    uint64_t seq = tt_seq_of(&t, "latest");
    char name[64];
    snprintf(name, sizeof name, "web1/disk%u@latest", op->disk);
    uint8_t *want = malloc(t.m.disks[op->disk].size);
    pm_disk_at(&t.m, op->disk, seq, want);
    int fd = open_export(&t, name);
    /* the chunk's list loaded by a read that does not need the victim */
    check_read(fd, want, spare, 512, name);
    tgt_chunk_stats_t s0 = stats(&t);
    cr_assert_eq(s0.entries, 1);

    /* the victim through the kept list: EIO, and the damage named once,
     * as without the cache (the quiet try through the list is not logged) */
    tmt_log_clear();
    uint8_t *buf = malloc(op->len);
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, op->off, op->len, NULL, buf), NBD_EIO,
                 "a read of the damaged write did not fail with EIO");
    char want_log[256];
    snprintf(want_log, sizeof want_log,
             "target: machine web1 disk disk%u at point %llu: the write at offset %llu (%u bytes, sequence %llu", op->disk,
             (unsigned long long)seq, (unsigned long long)op->off, op->len, (unsigned long long)victim);
    cr_assert_eq(tmt_log_count_prefix(want_log), 1, "the reader's line '%s' is not there once:\n%s", want_log,
                 tmt_log_text());
    cr_assert(strstr(tmt_log_text(), "fails its checksum: corruption in the journal"), "%s", tmt_log_text());
    snprintf(want_log, sizeof want_log, "target: read of %u bytes at %llu of web1/disk%u at point %llu failed", op->len,
             (unsigned long long)op->off, op->disk, (unsigned long long)seq);
    cr_assert_eq(tmt_log_count_prefix(want_log), 1, "%s", tmt_log_text());
    tgt_chunk_stats_t s1 = stats(&t);
    cr_assert_eq(s1.hits, s0.hits + 1);
    cr_assert_eq(s1.stale, s0.stale + 1, "the list that failed is still kept");
    /* again, from a new scan (not kept after a failure): the same */
    cr_assert_eq(nbdt_roundtrip(fd, 0, NBD_CMD_READ, op->off, 512, NULL, buf), NBD_EIO);
    /* and the rest of the chunk still reads */
    check_read(fd, want, spare, 512, name);
    close(fd);
    free(buf);
    free(want);
    tt_fini(&t);
}
