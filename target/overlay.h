/*
 * A copy-on-write overlay over a read-only disk: what a test failover's
 * writable export (`MACHINE/DISK@test`, export.h) writes to, so the point
 * under it never changes.
 *
 * The overlay is a sparse file as large as the disk plus a bitmap of
 * TGT_OV_BLOCK-byte blocks, kept in memory: a set bit says the block's
 * bytes are in the file, a clear one that they are the base's (the disk at
 * the point, read through a callback). A write covering part of a block
 * whose bit is clear first copies the whole block from the base into the
 * file, then writes its part; the bit is set only once the bytes are in
 * the file, so a read never sees a half-copied block. Nothing is written
 * anywhere but the file.
 *
 * Why the bitmap is not stored: a test failover lives as long as the
 * process (its jobs are not persisted), so an overlay is never reopened;
 * a stale file of a crashed run is truncated when the next test starts.
 *
 * Why 64 KiB blocks: the bitmap of a 1 TiB disk is 2 MiB (4 KiB blocks
 * would make it 32 MiB per disk), and the base reader rebuilds whole 1 MiB
 * chunks anyway, so copying 64 KiB for a 4 KiB write costs about what
 * copying 4 KiB would.
 *
 * Threads: reads run at once with each other and with one write; writes,
 * zeroes and trims of one overlay are serialised (a partial-block copy
 * must not race another write into the same block), flushes are not.
 */
#ifndef TM_TARGET_OVERLAY_H
#define TM_TARGET_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TGT_OV_BLOCK (64u << 10)

typedef struct tgt_ov tgt_ov_t;

/* Read [off, off + len) of the base into buf; 0 or a negative error with
 * a sentence in err. Called from the thread doing the overlay's I/O. */
typedef int (*tgt_ov_base_fn)(void *arg, uint64_t off, void *buf, size_t len, char *err, size_t errlen);

/* Create (or truncate) the file at path as an empty overlay of size bytes
 * over base. 0, -ENOMEM or the -errno of open/ftruncate. */
int tgt_ov_create(const char *path, uint64_t size, tgt_ov_base_fn base, void *base_arg, tgt_ov_t **out);

/* Remove the file and give its space back at once (truncate): I/O after
 * this fails or reads nothing meaningful; the caller refuses it first.
 * Returns the -errno of unlink, if any. */
int tgt_ov_drop(tgt_ov_t *ov);

/* Close and free (the file stays unless tgt_ov_drop removed it). NULL ok. */
void tgt_ov_close(tgt_ov_t *ov);

/* The range must lie inside the disk (the NBD server checks it). Errors are
 * negative; err holds a sentence for the log. fua: fdatasync before
 * returning. */
int tgt_ov_read(tgt_ov_t *ov, uint64_t off, void *buf, size_t len, char *err, size_t errlen);
int tgt_ov_write(tgt_ov_t *ov, uint64_t off, const void *buf, size_t len, bool fua, char *err, size_t errlen);
/* Make the range read as zeroes; a hole in the file unless no_hole. */
int tgt_ov_zero(tgt_ov_t *ov, uint64_t off, uint64_t len, bool no_hole, bool fua, char *err, size_t errlen);
/* Advisory: the whole blocks inside the range become holes that read as
 * zeroes; the parts of blocks at its edges are left as they are. */
int tgt_ov_trim(tgt_ov_t *ov, uint64_t off, uint64_t len, bool fua, char *err, size_t errlen);
/* fdatasync the file: every write completed before is durable. */
int tgt_ov_flush(tgt_ov_t *ov, char *err, size_t errlen);

/* Blocks written so far (for logs and tests). */
uint64_t tgt_ov_blocks(tgt_ov_t *ov);

#endif
