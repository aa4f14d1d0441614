/*
 * The chunk cache of one disk at one pinned point: for each 1 MiB chunk
 * (PTS_CHUNK_SHIFT) read so far, the index's extents that can still show
 * through at the point, newest first, so that a read needs no index scan
 * (a RocksDB iterator, a SeekForPrev and its Prev steps) once its chunk was
 * read. The NBD exports keep one per export, shared by its readers
 * (reader.h, tgt_view_t.chunks); a miss scans the index as a reader with
 * no cache always does.
 *
 * Bounded: at most `cap` bytes of lists (and a bucket array of at most
 * cap/16 bytes); past it the least recently used lists go. A list larger
 * than the cap by itself is not kept.
 *
 * Why a list loaded once stays right (the reader relies on this): the
 * point is pinned, so
 *   - no extent at or below its sequence can appear later (the processor
 *     only indexes sequences past every point), and
 *   - the only change to the extents at or below it is retention folding
 *     the oldest of them into the replica base, in stream order, and
 *     deleting them from the index in one commit (points/retention.c), and
 *     then retiring the journal records they named.
 * So a list is the index's answer of some earlier moment: the same extents
 * plus some that were folded since. Bytes an old list resolves to a folded
 * extent are still right if its journal record can be read (the XXH3 check
 * says so), and its record being retired is seen as TM_ERETIRED: the reader
 * then forgets the list and scans again. Bytes no extent of the list covers
 * were covered by no extent since its scan, so fold never wrote them: the
 * base holds them as it did. Lists are pruned (an extent wholly hidden by
 * newer ones, or older than the chunk's full coverage, is left out): they
 * resolve every byte as the full list would.
 *
 * Threads: every call may come from any thread. A list is immutable once
 * made and counted (tgt_chunks_get's reference): eviction or forgetting
 * never frees it under a reader. One lock per cache, held for a lookup or
 * an insertion only, never over I/O.
 */
#ifndef TM_TARGET_CHUNKS_H
#define TM_TARGET_CHUNKS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "points/keys.h"

/* The default cap of one export's cache: lists of chunks with few extents
 * cost about 150 bytes, so 16 MiB covers some 100 000 chunks (100 GiB of
 * disk); a disk with many changes per chunk, fewer. */
#define TGT_CHUNKS_DEFAULT_CAP (16u << 20)

typedef struct tgt_chunks tgt_chunks_t;

/* One chunk's extents, newest first. Read-only once made. */
typedef struct tgt_clist {
    atomic_uint refs;       /* the cache's (while linked) and the readers' */
    uint32_t n;
    uint64_t chunk;
    size_t bytes;           /* what it costs, allocation included */
    struct tgt_clist *hnext; /* the cache's: hash chain and LRU, under its lock */
    struct tgt_clist *prev, *next;
    bool linked;
    pts_extent_t e[];
} tgt_clist_t;

/* Counters shared by every cache of a set of exports (export.h); atomics,
 * read from any thread. */
typedef struct tgt_chunk_counters {
    atomic_uint_fast64_t hits;      /* reads of a chunk served by a kept list */
    atomic_uint_fast64_t misses;    /* index scans made for want of one */
    atomic_uint_fast64_t evictions; /* lists let go for room */
    atomic_uint_fast64_t stale;     /* kept lists forgotten after a read through them failed (a retired record) */
    atomic_uint_fast64_t entries;   /* lists kept now */
    atomic_uint_fast64_t bytes;     /* what they cost now */
} tgt_chunk_counters_t;

/* A cache for a disk of `size` bytes holding at most cap bytes (0: none is
 * made), counting into cnt (may be NULL). NULL on -ENOMEM. */
tgt_chunks_t *tgt_chunks_new(uint64_t size, size_t cap, tgt_chunk_counters_t *cnt);
/* Free c and every list it keeps (lists still referenced go at their
 * release). Nothing may use c meanwhile. */
void tgt_chunks_free(tgt_chunks_t *c);

/* chunk's list, referenced (tgt_chunks_release), and made the most
 * recently used; NULL when it is not kept. */
tgt_clist_t *tgt_chunks_get(tgt_chunks_t *c, uint64_t chunk);
/* Keep a copy of chunk's n extents (newest first), making room by letting
 * the least recently used go. Nothing happens when a list of chunk is kept
 * already (another reader loaded it meanwhile), when the list alone is
 * larger than the cap, or when memory is short: the cache is only a
 * shortcut. */
void tgt_chunks_add(tgt_chunks_t *c, uint64_t chunk, const pts_extent_t *e, uint32_t n);
/* Stop keeping l (a list of c's, from tgt_chunks_get), if it still is:
 * it is stale. The caller's reference stays. */
void tgt_chunks_forget(tgt_chunks_t *c, tgt_clist_t *l);
/* Drop a reference of tgt_chunks_get; the last frees l. */
void tgt_clist_release(tgt_clist_t *l);

#endif
