/*
 * A copy-on-write overlay over a read-only disk: what the writable exports
 * of a test failover (`MACHINE/DISK@test`) and of a failover
 * (`MACHINE/DISK@failover`, export.h) write to, so the point under them
 * never changes.
 *
 * The overlay is a sparse file as large as the disk plus a bitmap of
 * TGT_OV_BLOCK-byte blocks: a set bit says the block's bytes are in the
 * file, a clear one that they are the base's (the disk at the point, read
 * through a callback). A write covering part of a block whose bit is clear
 * first copies the whole block from the base into the file, then writes its
 * part; the bit is set only once the bytes are in the file, so a read never
 * sees a half-copied block. Nothing is written anywhere but the file. Bits
 * only ever go from 0 to 1.
 *
 * Two kinds:
 *   - a test's (tgt_ov_create): the bitmap lives in memory. A test failover
 *     lasts as long as the process (its job is not persisted), so its
 *     overlay is never reopened; a stale file of a crashed run is truncated
 *     when the next test starts.
 *   - a failover's (tgt_ov_create_stored, tgt_ov_open): what is written is
 *     production data, so the bitmap is also stored, in PATH.map beside the
 *     data file (docs/failover-overlay.md, version 1). A flush (FLUSH, or a
 *     write with FUA) fdatasyncs the data file first, then writes the map
 *     records changed since the last flush and fdatasyncs the map: a bit
 *     that is durable always means its block's bytes are. tgt_ov_open
 *     reopens one after a restart and refuses a damaged map by name. A fill
 *     (tgt_ov_fill) copies in every block still the base's, after which the
 *     overlay is standalone: it never reads the base again, and the point
 *     under it may go.
 *
 * Why 64 KiB blocks: the bitmap of a 1 TiB disk is 2 MiB (4 KiB blocks
 * would make it 32 MiB per disk), and the base reader rebuilds whole 1 MiB
 * chunks anyway, so copying 64 KiB for a 4 KiB write costs about what
 * copying 4 KiB would.
 *
 * Threads: reads run at once with each other and with one write; writes,
 * zeroes, trims and the fill's steps of one overlay are serialised (a
 * partial-block copy must not race another write into the same block);
 * flushes are serialised with each other only.
 */
#ifndef TM_TARGET_OVERLAY_H
#define TM_TARGET_OVERLAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TGT_OV_BLOCK (64u << 10)

typedef struct tgt_ov tgt_ov_t;

/* Read [off, off + len) of the base into buf; 0 or a negative error with
 * a sentence in err. Called from the thread doing the overlay's I/O. */
typedef int (*tgt_ov_base_fn)(void *arg, uint64_t off, void *buf, size_t len, char *err, size_t errlen);

/* Create (or truncate) the file at path as an empty test overlay of size
 * bytes over base, its bitmap in memory. 0, -ENOMEM or the -errno of
 * open/ftruncate. */
int tgt_ov_create(const char *path, uint64_t size, tgt_ov_base_fn base, void *base_arg, tgt_ov_t **out);

/* What a stored map records of its overlay (and what tgt_ov_open checks). */
typedef struct tgt_ov_info {
    const char *machine; /* open: NULL takes any */
    const char *disk;    /* open: NULL takes any */
    unsigned disk_ix;    /* the disk's position in the machine (open: not checked) */
    uint64_t size;       /* the disk's bytes (open: 0 takes any) */
    uint64_t seq;        /* the point (create: not 0; open: 0 wants a standalone overlay) */
} tgt_ov_info_t;

/*
 * Create (or truncate) a failover's overlay at path, with its stored map at
 * path.map (replaced whole: written beside as path.map.new, synced, renamed,
 * the folder synced), empty, over base. 0 or the error of the step that
 * failed, with err naming the file.
 */
int tgt_ov_create_stored(const char *path, const tgt_ov_info_t *info, tgt_ov_base_fn base, void *base_arg,
                         tgt_ov_t **out, char *err, size_t errlen);

/*
 * Reopen a failover's overlay after a restart: path and path.map. The map's
 * magic, version, checksums and fields are checked, then what want says
 * (machine, disk, size) and the point: a map of another point is refused;
 * want->seq 0 accepts only a standalone overlay (of any point: it never
 * reads it), and base may then be NULL. Errors, err naming the file and what is wrong: -ENOENT (the
 * map, or the data file, is missing), TM_EVERSION (another map version),
 * TM_ECORRUPT (a bad magic, checksum or field, a truncated map or data
 * file), TM_EINVAL (an overlay of another disk, size or point), -errno.
 */
int tgt_ov_open(const char *path, const tgt_ov_info_t *want, tgt_ov_base_fn base, void *base_arg, tgt_ov_t **out,
                char *err, size_t errlen);

/* What the stored map says (names point into ov); zeros and "" for a
 * test's overlay, but for the size. */
void tgt_ov_info(const tgt_ov_t *ov, tgt_ov_info_t *out);

/* Remove the files (data and map) and give their space back at once
 * (truncate): I/O after this fails or reads nothing meaningful; the caller
 * refuses it first. Returns the -errno of unlink, if any. */
int tgt_ov_drop(tgt_ov_t *ov);

/* Close and free (the files stay unless tgt_ov_drop removed them). A
 * stored map is flushed first (a failure is logged): a closed overlay
 * reopens with every write it completed. NULL ok. */
void tgt_ov_close(tgt_ov_t *ov);

/* The range must lie inside the disk (the NBD server checks it). Errors are
 * negative; err holds a sentence for the log. fua: flush before
 * returning. */
int tgt_ov_read(tgt_ov_t *ov, uint64_t off, void *buf, size_t len, char *err, size_t errlen);
int tgt_ov_write(tgt_ov_t *ov, uint64_t off, const void *buf, size_t len, bool fua, char *err, size_t errlen);
/* Make the range read as zeroes; a hole in the file unless no_hole. */
int tgt_ov_zero(tgt_ov_t *ov, uint64_t off, uint64_t len, bool no_hole, bool fua, char *err, size_t errlen);
/* Advisory: the whole blocks inside the range become holes that read as
 * zeroes; the parts of blocks at its edges are left as they are. */
int tgt_ov_trim(tgt_ov_t *ov, uint64_t off, uint64_t len, bool fua, char *err, size_t errlen);
/* Every write completed before is durable: fdatasync of the data file,
 * then (stored map) of the changed map records. A failure is sticky for a
 * stored map (after a failed fdatasync nothing is known of the file). */
int tgt_ov_flush(tgt_ov_t *ov, char *err, size_t errlen);

/*
 * Make a failover's overlay standalone: copy every block whose bit is
 * clear from the base into the file (a block the base reads as zeroes is
 * left a hole, or punched to one), 1 MiB at a time, beside the export's
 * reads and writes (a block written meanwhile is not copied over), flushed
 * every GiB and at the end; then mark the map standalone, durably, and wait
 * for base reads still in flight. From then on the base is never read. On
 * a pool thread. 0, -ECANCELED (*stop became true; what was copied stays,
 * a later fill goes on from there), or the base's or the file's error with
 * err. A standalone overlay returns 0 at once.
 */
int tgt_ov_fill(tgt_ov_t *ov, const atomic_bool *stop, char *err, size_t errlen);

/* Bytes of the disk the running or last fill has gone over (the size once
 * standalone). Any thread. */
uint64_t tgt_ov_filled(tgt_ov_t *ov);
bool tgt_ov_standalone(tgt_ov_t *ov);
uint64_t tgt_ov_size(const tgt_ov_t *ov);

/* Blocks written so far (for logs and tests). */
uint64_t tgt_ov_blocks(tgt_ov_t *ov);

#endif
