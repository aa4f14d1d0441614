/*
 * The RocksDB wrappers of index.h. RocksDB's C API reports errors as
 * malloc'ed strings; each is logged here once and becomes -EIO.
 */
#include "points/index.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

struct pts_index {
    char *dir;
    /* Set by the first failed write or sync: RocksDB may not be written
     * again after one (Debian's build asserts on it), so every later write
     * is refused here; the appliance must restart to write again. */
    atomic_bool failed;
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_writeoptions_t *sync_wopts;
    rocksdb_readoptions_t *ropts;
    rocksdb_flushoptions_t *fopts;
};

struct pts_wb {
    rocksdb_writebatch_t *b;
};

struct pts_iter {
    rocksdb_iterator_t *it;
    rocksdb_readoptions_t *ro;
    /* RocksDB keeps pointers to the bounds: they live here */
    uint8_t lower[32], upper[32];
};

/* Log and free a RocksDB error string; -EIO. */
static int pts__rdb_err(const char *what, char *e)
{
    tm_log(TM_LOG_ERROR, "index: %s: %s", what, e);
    free(e);
    return -EIO;
}

int pts_index_open(const char *dir, pts_index_t **out, char *err, size_t errlen)
{
    pts_index_t *ix = tm_calloc(1, sizeof *ix);
    if (!ix) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ix->dir = tm_strdup(dir);
    ix->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(ix->opts, 1);
    rocksdb_options_increase_parallelism(ix->opts, 2);
    /* Extent keys of one chunk share a 15-byte prefix and their values
     * repeat journal positions: lz4 keeps the index small at little CPU. */
    rocksdb_options_set_compression(ix->opts, rocksdb_lz4_compression);
    rocksdb_options_set_write_buffer_size(ix->opts, 64u << 20);
    rocksdb_options_set_max_open_files(ix->opts, 256);
    ix->wopts = rocksdb_writeoptions_create();
    ix->sync_wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(ix->sync_wopts, 1);
    ix->ropts = rocksdb_readoptions_create();
    ix->fopts = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(ix->fopts, 1);
    char *e = NULL;
    ix->db = rocksdb_open(ix->opts, dir, &e);
    if (e) {
        snprintf(err, errlen, "cannot open the index in %s: %s", dir, e);
        free(e);
        ix->db = NULL;
        pts_index_close(ix);
        return -EIO;
    }
    *out = ix;
    return 0;
}

void pts_index_close(pts_index_t *ix)
{
    if (!ix)
        return;
    if (ix->db)
        rocksdb_close(ix->db);
    rocksdb_flushoptions_destroy(ix->fopts);
    rocksdb_readoptions_destroy(ix->ropts);
    rocksdb_writeoptions_destroy(ix->wopts);
    rocksdb_writeoptions_destroy(ix->sync_wopts);
    rocksdb_options_destroy(ix->opts);
    tm_free(ix->dir);
    tm_free(ix);
}

uint64_t pts_index_free_bytes(pts_index_t *ix)
{
    struct statvfs sv;
    if (!ix->dir || statvfs(ix->dir, &sv) != 0)
        return UINT64_MAX;
    return (uint64_t)sv.f_bavail * sv.f_frsize;
}

int pts_index_get(pts_index_t *ix, const void *key, size_t klen, void *val, size_t cap, size_t *vlen)
{
    char *e = NULL;
    size_t n = 0;
    char *v = rocksdb_get(ix->db, ix->ropts, key, klen, &n, &e);
    if (e)
        return pts__rdb_err("get", e);
    if (!v)
        return TM_ENOTFOUND;
    int rc = 0;
    if (n > cap) {
        rc = TM_ETOOBIG;
    } else {
        memcpy(val, v, n);
        *vlen = n;
    }
    rocksdb_free(v);
    return rc;
}

pts_wb_t *pts_wb_new(void)
{
    pts_wb_t *wb = tm_malloc(sizeof *wb);
    if (wb)
        wb->b = rocksdb_writebatch_create();
    return wb;
}

void pts_wb_free(pts_wb_t *wb)
{
    if (!wb)
        return;
    rocksdb_writebatch_destroy(wb->b);
    tm_free(wb);
}

void pts_wb_put(pts_wb_t *wb, const void *k, size_t kl, const void *v, size_t vl)
{
    rocksdb_writebatch_put(wb->b, k, kl, v, vl);
}

void pts_wb_delete(pts_wb_t *wb, const void *k, size_t kl)
{
    rocksdb_writebatch_delete(wb->b, k, kl);
}

void pts_wb_delete_range(pts_wb_t *wb, const void *from, size_t fl, const void *to, size_t tl)
{
    rocksdb_writebatch_delete_range(wb->b, from, fl, to, tl);
}

size_t pts_wb_count(pts_wb_t *wb)
{
    return (size_t)rocksdb_writebatch_count(wb->b);
}

void pts_wb_clear(pts_wb_t *wb)
{
    rocksdb_writebatch_clear(wb->b);
}

int pts_index_write(pts_index_t *ix, pts_wb_t *wb)
{
    if (atomic_load(&ix->failed))
        return -EIO;
    char *e = NULL;
    rocksdb_write(ix->db, ix->wopts, wb->b, &e);
    if (!e)
        return 0;
    atomic_store(&ix->failed, true);
    return pts__rdb_err("write", e);
}

int pts_index_flush(pts_index_t *ix)
{
    if (atomic_load(&ix->failed))
        return -EIO;
    /* A synced write syncs the log and everything before it. Not
     * rocksdb_flush_wal(sync): RocksDB 7.8 asserts when its flush fails
     * and it then syncs, which a full disk makes happen. */
    static const char key[] = {PTS_K_SYNC};
    char *e = NULL;
    rocksdb_put(ix->db, ix->sync_wopts, key, sizeof key, "", 0, &e);
    if (!e)
        return 0;
    atomic_store(&ix->failed, true);
    return pts__rdb_err("sync", e);
}

pts_iter_t *pts_iter_new(pts_index_t *ix, const void *lower, size_t ll, const void *upper, size_t ul)
{
    if (ll > sizeof ((pts_iter_t *)0)->lower || ul > sizeof ((pts_iter_t *)0)->upper)
        return NULL;
    pts_iter_t *it = tm_malloc(sizeof *it);
    if (!it)
        return NULL;
    memcpy(it->lower, lower, ll);
    memcpy(it->upper, upper, ul);
    it->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_lower_bound(it->ro, (const char *)it->lower, ll);
    rocksdb_readoptions_set_iterate_upper_bound(it->ro, (const char *)it->upper, ul);
    it->it = rocksdb_create_iterator(ix->db, it->ro);
    return it;
}

void pts_iter_free(pts_iter_t *it)
{
    if (!it)
        return;
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ro);
    tm_free(it);
}

void pts_iter_seek(pts_iter_t *it, const void *k, size_t kl)
{
    rocksdb_iter_seek(it->it, k, kl);
}

void pts_iter_seek_for_prev(pts_iter_t *it, const void *k, size_t kl)
{
    rocksdb_iter_seek_for_prev(it->it, k, kl);
}

void pts_iter_first(pts_iter_t *it)
{
    rocksdb_iter_seek_to_first(it->it);
}

void pts_iter_last(pts_iter_t *it)
{
    rocksdb_iter_seek_to_last(it->it);
}

bool pts_iter_valid(pts_iter_t *it)
{
    return rocksdb_iter_valid(it->it) != 0;
}

void pts_iter_next(pts_iter_t *it)
{
    rocksdb_iter_next(it->it);
}

void pts_iter_prev(pts_iter_t *it)
{
    rocksdb_iter_prev(it->it);
}

const uint8_t *pts_iter_key(pts_iter_t *it, size_t *len)
{
    return (const uint8_t *)rocksdb_iter_key(it->it, len);
}

const uint8_t *pts_iter_value(pts_iter_t *it, size_t *len)
{
    return (const uint8_t *)rocksdb_iter_value(it->it, len);
}

int pts_iter_status(pts_iter_t *it)
{
    char *e = NULL;
    rocksdb_iter_get_error(it->it, &e);
    return e ? pts__rdb_err("iterate", e) : 0;
}

int pts_index_scan_chunk(pts_index_t *ix, uint32_t mid, uint16_t disk, uint64_t chunk, uint64_t max_seq,
                         pts_extent_fn fn, void *arg)
{
    uint8_t lo[PTS_EXTENT_KEY_LEN], hi[PTS_EXTENT_KEY_LEN], at[PTS_EXTENT_KEY_LEN];
    pts_key_extent(lo, mid, disk, chunk, 0);
    /* the bound is exclusive: the key after (chunk, UINT64_MAX) */
    pts_key_extent(hi, mid, disk, chunk + 1, 0);
    pts_key_extent(at, mid, disk, chunk, max_seq);
    pts_iter_t *it = pts_iter_new(ix, lo, sizeof lo, hi, sizeof hi);
    if (!it)
        return -ENOMEM;
    int rc = 0;
    for (pts_iter_seek_for_prev(it, at, sizeof at); pts_iter_valid(it); pts_iter_prev(it)) {
        size_t kl, vl;
        const uint8_t *k = pts_iter_key(it, &kl);
        const uint8_t *v = pts_iter_value(it, &vl);
        uint32_t kmid;
        uint16_t kdisk;
        uint64_t kchunk, seq;
        pts_extent_t e;
        if (pts_key_extent_parse(k, kl, &kmid, &kdisk, &kchunk, &seq) != 0 ||
            pts_val_extent_parse(v, vl, seq, &e) != 0) {
            tm_log(TM_LOG_ERROR, "index: extent of machine %u disk %u chunk %llu does not parse", mid, disk,
                   (unsigned long long)chunk);
            rc = TM_ECORRUPT;
            break;
        }
        rc = fn(arg, &e);
        if (rc) {
            if (rc > 0)
                rc = 0;
            break;
        }
    }
    if (rc == 0)
        rc = pts_iter_status(it);
    pts_iter_free(it);
    return rc;
}
