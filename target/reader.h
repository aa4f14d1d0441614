/*
 * Rebuilding a disk at a point: any byte range of one disk of one machine as
 * it was at stream sequence `seq`. Each byte comes from the newest indexed
 * write, zero or trim at or before seq that covers it, else from the
 * replica base image (the disk at the horizon), else it is zero.
 *
 * Every write is verified when read: its stored bytes are read from the
 * journal, decompressed, and their XXH3-64 compared with the one the agent
 * sent. A mismatch (or a journal record that is not there) fails the read
 * with TM_ECORRUPT and a message naming the point, the disk and the
 * position; wrong bytes are never returned.
 *
 * A reader may take each chunk's extents from a chunk cache (chunks.h)
 * shared with other readers of the same disk at the same pinned point,
 * instead of scanning the index for every chunk it reads. A list from the
 * cache that fails a read (a journal record retired since it was loaded,
 * or a check that fails) is forgotten and the chunk read again from a new
 * scan, whose outcome stands: the cache never changes what a read returns
 * or how a failure is named.
 *
 * Threads: a reader is used by one thread at a time; several readers may
 * run at once over the same index and journal (and chunk cache).
 */
#ifndef TM_TARGET_READER_H
#define TM_TARGET_READER_H

#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "target/chunks.h"
#include "points/points.h"

typedef struct tgt_reader tgt_reader_t;

typedef struct tgt_view {
    pts_index_t *ix;
    jnl_t *jnl;
    const char *machine;   /* for messages */
    uint32_t mid;          /* pts_machine_t.id */
    uint16_t disk;
    const char *disk_name; /* for messages */
    uint64_t size;         /* the disk's size */
    uint64_t seq;          /* the point */
    const char *base_path; /* the replica base image; NULL, "" or missing: zeros */
    tgt_chunks_t *chunks;  /* NULL: the index is scanned for every chunk read. Else a cache for
                            * exactly this mid, disk and seq, with seq pinned (pts_pin) for as
                            * long as the cache lives; it must outlive the reader. */
} tgt_view_t;

/* 0 or -ENOMEM; -errno when the base image exists but cannot be opened. */
int tgt_open(const tgt_view_t *v, tgt_reader_t **out);
void tgt_close(tgt_reader_t *r);

/*
 * Read [off, off + len) into buf. The range must lie inside the disk
 * (TM_EINVAL). *hole (may be NULL) is set when the whole range is zeros
 * that nothing wrote (no extent, no base data): a caller writing a sparse
 * image may skip it. 0, TM_ECORRUPT, TM_ERETIRED (the journal no longer
 * holds a record the index names), -errno.
 */
int tgt_read(tgt_reader_t *r, uint64_t off, void *buf, size_t len, int *hole);

/* The same, but when *hole is set on return buf was not written at all:
 * for callers that skip holes (sparse images) and would only throw the
 * zeros away. */
int tgt_read_sparse(tgt_reader_t *r, uint64_t off, void *buf, size_t len, int *hole);

/* The message of the last failure ("" if none). */
const char *tgt_error(const tgt_reader_t *r);

#endif
