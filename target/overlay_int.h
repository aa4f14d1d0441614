/*
 * What the overlay's files share: overlay.c (life, bits, I/O), overlay_map.c
 * (the stored map of a failover's overlay, docs/failover-overlay.md) and
 * overlay_fill.c (copying the base in). Internal to the target stage.
 */
#ifndef TM_TARGET_OVERLAY_INT_H
#define TM_TARGET_OVERLAY_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "target/overlay.h"
#include "wire/wire.h"

/* The stored map (docs/failover-overlay.md): a 4096-byte header region,
 * then records of 512 bytes, each holding TGT_OV_REC_WORDS words of bits.
 * A record is one sector: written in place, it is either the old or the
 * new one after a crash (the assumption PostgreSQL makes of pg_control);
 * its checksum tells damage from either. */
#define TGT_OV_MAP_VERSION 1u
#define TGT_OV_HDR_LEN 512u
#define TGT_OV_HDR_REGION 4096u
#define TGT_OV_REC_LEN 512u
#define TGT_OV_REC_WORDS 60u
#define TGT_OV_REC_BLOCKS (TGT_OV_REC_WORDS * 64u)
#define TGT_OV_FLAG_STANDALONE 0x1u

struct tgt_ov {
    int fd;
    char path[PATH_MAX];
    uint64_t size;
    uint64_t nblocks;
    tgt_ov_base_fn base;
    void *base_arg;

    pthread_mutex_t mu; /* bits, nset, dirty, base_busy, standalone */
    pthread_cond_t base_idle;
    uint64_t *bits;     /* nrec * TGT_OV_REC_WORDS words */
    uint64_t nset;
    unsigned base_busy; /* base reads in flight */
    bool standalone;    /* every bit set and stored: the base is never read again */

    pthread_mutex_t wmu; /* one write, zero, trim or fill step at a time; owns tmp */
    uint8_t *tmp;        /* one block, for copies from the base */

    /* The stored map; map_fd < 0 for a test's overlay (bits in memory only). */
    int map_fd;
    char map_path[PATH_MAX + 8];
    uint64_t nrec;
    uint8_t *dirty;      /* under mu: one byte per record changed since the last flush */
    uint64_t map_id;
    uint64_t seq;        /* the point the overlay was made over */
    uint64_t created_ns;
    unsigned disk_ix;
    char machine[WIRE_MAX_NAME + 1];
    char disk[WIRE_MAX_NAME + 1];

    pthread_mutex_t fmu; /* one flush at a time; owns recbuf, flush_err */
    uint8_t *recbuf;     /* nrec records, encoded for a flush */
    uint64_t *pending;   /* the records a flush writes */
    int flush_err;       /* sticky: a failed fdatasync leaves nothing known */
    bool dropped;        /* the files were removed: closing flushes nothing */

    _Atomic uint64_t filled; /* bytes of the disk the fill has covered */
};

/* Allocate ov for a disk of size bytes over base (fds closed, no file). */
int tgt__ov_alloc(const char *path, uint64_t size, tgt_ov_base_fn base, void *base_arg, tgt_ov_t **out);
/* Close the fds, free everything. */
void tgt__ov_free(tgt_ov_t *ov);

bool tgt__ov_test(const tgt_ov_t *ov, uint64_t b); /* under mu */
/* Set the bits of blocks first..last (once their bytes are in the file);
 * marks their records dirty. */
void tgt__ov_set_range(tgt_ov_t *ov, uint64_t first, uint64_t last);
uint64_t tgt__ov_block_len(const tgt_ov_t *ov, uint64_t b);

/* A base read that a clear bit seen under mu allowed (base_busy counted
 * then): read, then give the count back (tgt__ov_base_done). */
int tgt__ov_base_read(tgt_ov_t *ov, uint64_t off, void *buf, size_t len, char *err, size_t errlen);
void tgt__ov_base_done(tgt_ov_t *ov);

int tgt__ov_pread_full(int fd, void *buf, size_t len, uint64_t off);
int tgt__ov_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* [off, off + len) of the data file reads as zeroes (a hole unless no_hole). */
int tgt__ov_zero_file(tgt_ov_t *ov, uint64_t off, uint64_t len, bool no_hole);
int tgt__ov_io_err(int rc, const tgt_ov_t *ov, const char *what, uint64_t off, uint64_t len, char *err,
                   size_t errlen);

/* overlay_map.c: write the records marked dirty before the data file's
 * fdatasync (under fmu; the caller syncs the data in between). */
void tgt__ov_map_collect(tgt_ov_t *ov, size_t *n);
int tgt__ov_map_write(tgt_ov_t *ov, size_t n, char *err, size_t errlen);
/* Rewrite the header with the standalone flag, durably. */
int tgt__ov_map_standalone(tgt_ov_t *ov, char *err, size_t errlen);

#endif
