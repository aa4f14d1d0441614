/*
 * The index: one RocksDB database (through its C API) holding the extent
 * index, the point catalog and the processing position (layout in keys.h).
 * This file is the only one that speaks RocksDB; the rest of points/ and
 * target/ use these wrappers.
 *
 * Writes are not synced: RocksDB's write-ahead log keeps each write batch
 * whole across a process crash, and the processed position travels in the
 * same batch as the index entries it covers, so a batch lost to a power cut
 * is simply processed again from the journal. pts_index_flush() makes
 * everything written durable (before journal segments may be retired).
 *
 * Threads: RocksDB is thread-safe; an iterator is used by one thread.
 */
#ifndef TM_POINTS_INDEX_H
#define TM_POINTS_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "points/keys.h"

typedef struct pts_wb pts_wb_t;
typedef struct pts_iter pts_iter_t;

/* Open or create the database in dir. 0, or -EIO with err saying why. */
int pts_index_open(const char *dir, pts_index_t **out, char *err, size_t errlen);
void pts_index_close(pts_index_t *ix);

/* Bytes free (to an unprivileged writer) on the index's file system;
 * UINT64_MAX when it cannot be told. */
uint64_t pts_index_free_bytes(pts_index_t *ix);

/* Point read into val (cap bytes). 0, TM_ENOTFOUND, TM_ETOOBIG (the value is
 * larger than cap), -EIO. */
int pts_index_get(pts_index_t *ix, const void *key, size_t klen, void *val, size_t cap, size_t *vlen);

pts_wb_t *pts_wb_new(void);
void pts_wb_free(pts_wb_t *wb);
void pts_wb_put(pts_wb_t *wb, const void *k, size_t kl, const void *v, size_t vl);
void pts_wb_delete(pts_wb_t *wb, const void *k, size_t kl);
/* Delete every key in [from, to). */
void pts_wb_delete_range(pts_wb_t *wb, const void *from, size_t fl, const void *to, size_t tl);
size_t pts_wb_count(pts_wb_t *wb);
void pts_wb_clear(pts_wb_t *wb);
/* Apply the batch atomically. 0 or -EIO (logged). After a failed write or
 * sync every later one fails with -EIO without reaching RocksDB, which may
 * not be written again after an I/O error. */
int pts_index_write(pts_index_t *ix, pts_wb_t *wb);
/* Make every write so far durable. 0 or -EIO. */
int pts_index_flush(pts_index_t *ix);

/* An iterator over keys in [lower, upper). */
pts_iter_t *pts_iter_new(pts_index_t *ix, const void *lower, size_t ll, const void *upper, size_t ul);
void pts_iter_free(pts_iter_t *it);
void pts_iter_seek(pts_iter_t *it, const void *k, size_t kl);
void pts_iter_seek_for_prev(pts_iter_t *it, const void *k, size_t kl);
void pts_iter_first(pts_iter_t *it);
void pts_iter_last(pts_iter_t *it);
bool pts_iter_valid(pts_iter_t *it);
void pts_iter_next(pts_iter_t *it);
void pts_iter_prev(pts_iter_t *it);
const uint8_t *pts_iter_key(pts_iter_t *it, size_t *len);
const uint8_t *pts_iter_value(pts_iter_t *it, size_t *len);
/* 0, or -EIO when the iteration stopped on an error (logged). */
int pts_iter_status(pts_iter_t *it);

/*
 * The extents of a machine's disk that touch chunk `chunk`, newest first,
 * from stream sequence max_seq down: fn gets each; it returns 0 to go on,
 * 1 to stop, or a negative error that is returned. 0 at the end, -EIO,
 * TM_ECORRUPT (a value that does not parse; logged with its key).
 */
typedef int (*pts_extent_fn)(void *arg, const pts_extent_t *e);
int pts_index_scan_chunk(pts_index_t *ix, uint32_t mid, uint16_t disk, uint64_t chunk, uint64_t max_seq,
                         pts_extent_fn fn, void *arg);

#endif
