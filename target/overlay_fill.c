/*
 * Making a failover's overlay standalone (overlay.h, tgt_ov_fill): every
 * block still the base's is copied into the file, beside the export's own
 * reads and writes, then the map says so, durably.
 *
 * Each 1 MiB step reads the clear blocks from the base with no lock held
 * (the base is a fixed point: nothing changes it), then, under the write
 * lock, stores those still clear: a block a client wrote meanwhile holds
 * the client's bytes and is left alone. A block the base reads as zeroes
 * is punched rather than written (a no-op on a hole; and it clears what
 * an unflushed write may have left there before a crash), so the file
 * stays as sparse as the disk.
 */
#include "target/overlay_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"

#define TGT_FILL_STEP (16u * TGT_OV_BLOCK)
/* Flushed this often, so a long fill cut short (a stop, a crash) keeps
 * what it copied, and the page cache does not fill with it. */
#define TGT_FILL_SYNC (1ull << 30)

static const uint8_t tgt__fill_zeros[TGT_OV_BLOCK];

/* The blocks of [first, first + n) whose bit is clear, as a mask. */
static uint32_t tgt__clear_mask(tgt_ov_t *ov, uint64_t first, unsigned n, bool count_base)
{
    uint32_t mask = 0;
    pthread_mutex_lock(&ov->mu);
    for (unsigned i = 0; i < n; i++)
        if (!tgt__ov_test(ov, first + i))
            mask |= 1u << i;
    if (mask && count_base)
        ov->base_busy++;
    pthread_mutex_unlock(&ov->mu);
    return mask;
}

/* Store the blocks of mask from buf (the step's bytes from off): runs of
 * data written, runs of zeroes punched; then their bits. Under wmu. */
static int tgt__store(tgt_ov_t *ov, uint64_t off, uint64_t first, unsigned n, uint32_t mask, const uint8_t *buf,
                      char *err, size_t errlen)
{
    for (unsigned i = 0; i < n;) {
        if (!(mask & (1u << i))) {
            i++;
            continue;
        }
        uint64_t blen = tgt__ov_block_len(ov, first + i);
        bool zero = memcmp(buf + (size_t)i * TGT_OV_BLOCK, tgt__fill_zeros, (size_t)blen) == 0;
        unsigned j = i + 1;
        while (j < n && (mask & (1u << j)) &&
               (memcmp(buf + (size_t)j * TGT_OV_BLOCK, tgt__fill_zeros, (size_t)tgt__ov_block_len(ov, first + j)) ==
                0) == zero)
            j++;
        uint64_t start = (first + i) * TGT_OV_BLOCK;
        uint64_t len = (first + j - 1) * TGT_OV_BLOCK + tgt__ov_block_len(ov, first + j - 1) - start;
        int rc = zero ? tgt__ov_zero_file(ov, start, len, false)
                      : tgt__ov_pwrite_full(ov->fd, buf + (start - off), (size_t)len, start);
        if (rc)
            return tgt__ov_io_err(rc, ov, zero ? "fill (a hole)" : "fill", start, len, err, errlen);
        tgt__ov_set_range(ov, first + i, first + j - 1);
        i = j;
    }
    return 0;
}

/* One step: [off, off + len), len at most TGT_FILL_STEP, off a multiple. */
static int tgt__fill_step(tgt_ov_t *ov, uint64_t off, uint64_t len, uint8_t *buf, char *err, size_t errlen)
{
    uint64_t first = off / TGT_OV_BLOCK;
    unsigned n = (unsigned)((len + TGT_OV_BLOCK - 1) / TGT_OV_BLOCK);
    uint32_t mask = tgt__clear_mask(ov, first, n, true);
    if (!mask)
        return 0;
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0;) {
        if (!(mask & (1u << i))) {
            i++;
            continue;
        }
        unsigned j = i + 1;
        while (j < n && (mask & (1u << j)))
            j++;
        uint64_t start = (first + i) * TGT_OV_BLOCK;
        uint64_t end = (first + j - 1) * TGT_OV_BLOCK + tgt__ov_block_len(ov, first + j - 1);
        rc = ov->base(ov->base_arg, start, buf + (start - off), (size_t)(end - start), err, errlen);
        i = j;
    }
    tgt__ov_base_done(ov);
    if (rc)
        return rc;
    pthread_mutex_lock(&ov->wmu);
    /* what a client wrote since is the client's */
    mask &= tgt__clear_mask(ov, first, n, false);
    rc = tgt__store(ov, off, first, n, mask, buf, err, errlen);
    pthread_mutex_unlock(&ov->wmu);
    return rc;
}

int tgt_ov_fill(tgt_ov_t *ov, const atomic_bool *stop, char *err, size_t errlen)
{
    if (ov->map_fd < 0) {
        snprintf(err, errlen, "overlay %s is a test's: it is never filled", ov->path);
        return TM_EINVAL;
    }
    if (tgt_ov_standalone(ov)) {
        atomic_store(&ov->filled, ov->size);
        return 0;
    }
    if (!ov->base) {
        snprintf(err, errlen, "overlay %s: no point to fill it from", ov->path);
        return TM_EINVAL;
    }
    uint8_t *buf = tm_malloc(TGT_FILL_STEP);
    if (!buf) {
        snprintf(err, errlen, "overlay %s: out of memory", ov->path);
        return -ENOMEM;
    }
    atomic_store(&ov->filled, 0);
    int rc = 0;
    uint64_t unsynced = 0;
    for (uint64_t off = 0; off < ov->size && rc == 0; off += TGT_FILL_STEP) {
        if (stop && atomic_load(stop)) {
            snprintf(err, errlen, "overlay %s: the fill was stopped at byte %" PRIu64 " of %" PRIu64, ov->path, off,
                     ov->size);
            rc = -ECANCELED;
            break;
        }
        uint64_t len = ov->size - off < TGT_FILL_STEP ? ov->size - off : TGT_FILL_STEP;
        rc = tgt__fill_step(ov, off, len, buf, err, errlen);
        if (rc)
            break;
        atomic_store(&ov->filled, off + len);
        if ((unsynced += len) >= TGT_FILL_SYNC) {
            rc = tgt_ov_flush(ov, err, errlen);
            unsynced = 0;
        }
    }
    tm_free(buf);
    /* every bit durable first: a standalone map with a clear bit is refused */
    if (rc == 0)
        rc = tgt_ov_flush(ov, err, errlen);
    if (rc == 0)
        rc = tgt__ov_map_standalone(ov, err, errlen);
    if (rc)
        return rc;
    /* Readers that saw a clear bit before the last step may still be in
     * the base: once they are out, nothing reads it again, and the point
     * under it may go. */
    pthread_mutex_lock(&ov->mu);
    ov->standalone = true;
    while (ov->base_busy > 0)
        pthread_cond_wait(&ov->base_idle, &ov->mu);
    pthread_mutex_unlock(&ov->mu);
    return 0;
}
