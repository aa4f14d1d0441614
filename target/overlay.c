/*
 * The copy-on-write overlay of a writable export (overlay.h): a sparse
 * file, a bitmap of written blocks, copies of whole blocks from the base
 * before a write covers part of one, and flushes. The stored map of a
 * failover's overlay is overlay_map.c's, the fill overlay_fill.c's.
 */
#include "target/overlay_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

static const uint8_t tgt__zeros[TGT_OV_BLOCK];

/* ---- bits -------------------------------------------------------------- */

bool tgt__ov_test(const tgt_ov_t *ov, uint64_t b)
{
    return (ov->bits[b / 64] >> (b % 64)) & 1u;
}

void tgt__ov_set_range(tgt_ov_t *ov, uint64_t first, uint64_t last)
{
    pthread_mutex_lock(&ov->mu);
    for (uint64_t b = first; b <= last; b++) {
        if (!tgt__ov_test(ov, b)) {
            ov->bits[b / 64] |= UINT64_C(1) << (b % 64);
            ov->nset++;
            ov->dirty[b / TGT_OV_REC_BLOCKS] = 1;
        }
    }
    pthread_mutex_unlock(&ov->mu);
}

uint64_t tgt__ov_block_len(const tgt_ov_t *ov, uint64_t b)
{
    uint64_t start = b * TGT_OV_BLOCK;
    return ov->size - start < TGT_OV_BLOCK ? ov->size - start : TGT_OV_BLOCK;
}

/* ---- the base ------------------------------------------------------------ */

int tgt__ov_base_read(tgt_ov_t *ov, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    int rc = -EIO;
    if (ov->base)
        rc = ov->base(ov->base_arg, off, buf, len, err, errlen);
    else
        snprintf(err, errlen, "overlay %s: a block at %" PRIu64 " is not in the file and there is no point under it",
                 ov->path, off);
    tgt__ov_base_done(ov);
    return rc;
}

void tgt__ov_base_done(tgt_ov_t *ov)
{
    pthread_mutex_lock(&ov->mu);
    if (--ov->base_busy == 0)
        pthread_cond_broadcast(&ov->base_idle);
    pthread_mutex_unlock(&ov->mu);
}

/* ---- file I/O ------------------------------------------------------------ */

int tgt__ov_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* the file was truncated: dropped */
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int tgt__ov_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int tgt__write_zeros(int fd, uint64_t off, uint64_t len)
{
    while (len > 0) {
        size_t n = len < sizeof tgt__zeros ? (size_t)len : sizeof tgt__zeros;
        int rc = tgt__ov_pwrite_full(fd, tgt__zeros, n, off);
        if (rc)
            return rc;
        off += n;
        len -= n;
    }
    return 0;
}

/* Zeroes through fallocate: a hole, or allocated zeroes; written out where
 * the file system can do neither. */
int tgt__ov_zero_file(tgt_ov_t *ov, uint64_t off, uint64_t len, bool no_hole)
{
    int mode = FALLOC_FL_KEEP_SIZE | (no_hole ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
    if (fallocate(ov->fd, mode, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return -errno;
    return tgt__write_zeros(ov->fd, off, len);
}

int tgt__ov_io_err(int rc, const tgt_ov_t *ov, const char *what, uint64_t off, uint64_t len, char *err,
                   size_t errlen)
{
    snprintf(err, errlen, "overlay %s: %s of %" PRIu64 " bytes at %" PRIu64 " failed: %s", ov->path, what, len, off,
             tm_strerror(rc));
    return rc;
}

/* ---- life ---------------------------------------------------------------- */

int tgt__ov_alloc(const char *path, uint64_t size, tgt_ov_base_fn base, void *base_arg, tgt_ov_t **out)
{
    *out = NULL;
    tgt_ov_t *ov = tm_calloc(1, sizeof *ov);
    if (!ov)
        return -ENOMEM;
    ov->fd = -1;
    ov->map_fd = -1;
    ov->size = size;
    ov->nblocks = (size + TGT_OV_BLOCK - 1) / TGT_OV_BLOCK;
    ov->nrec = ov->nblocks ? (ov->nblocks + TGT_OV_REC_BLOCKS - 1) / TGT_OV_REC_BLOCKS : 1;
    ov->base = base;
    ov->base_arg = base_arg;
    snprintf(ov->path, sizeof ov->path, "%s", path);
    snprintf(ov->map_path, sizeof ov->map_path, "%s.map", path);
    ov->bits = tm_calloc((size_t)ov->nrec * TGT_OV_REC_WORDS, sizeof *ov->bits);
    ov->dirty = tm_calloc((size_t)ov->nrec, 1);
    ov->tmp = tm_malloc(TGT_OV_BLOCK);
    if (!ov->bits || !ov->dirty || !ov->tmp) {
        tm_free(ov->bits);
        tm_free(ov->dirty);
        tm_free(ov->tmp);
        tm_free(ov);
        return -ENOMEM;
    }
    pthread_mutex_init(&ov->mu, NULL);
    pthread_cond_init(&ov->base_idle, NULL);
    pthread_mutex_init(&ov->wmu, NULL);
    pthread_mutex_init(&ov->fmu, NULL);
    *out = ov;
    return 0;
}

void tgt__ov_free(tgt_ov_t *ov)
{
    if (ov->fd >= 0)
        close(ov->fd);
    if (ov->map_fd >= 0)
        close(ov->map_fd);
    pthread_mutex_destroy(&ov->mu);
    pthread_cond_destroy(&ov->base_idle);
    pthread_mutex_destroy(&ov->wmu);
    pthread_mutex_destroy(&ov->fmu);
    tm_free(ov->bits);
    tm_free(ov->dirty);
    tm_free(ov->tmp);
    tm_free(ov->recbuf);
    tm_free(ov->pending);
    tm_free(ov);
}

int tgt_ov_create(const char *path, uint64_t size, tgt_ov_base_fn base, void *base_arg, tgt_ov_t **out)
{
    tgt_ov_t *ov;
    int rc = tgt__ov_alloc(path, size, base, base_arg, &ov);
    if (rc)
        return rc;
    /* O_TRUNC: a file left by a crashed run holds nothing of this test */
    ov->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (ov->fd < 0) {
        rc = -errno;
        tgt__ov_free(ov);
        return rc;
    }
    if (ftruncate(ov->fd, (off_t)size) != 0) {
        rc = -errno;
        unlink(path);
        tgt__ov_free(ov);
        return rc;
    }
    *out = ov;
    return 0;
}

int tgt_ov_drop(tgt_ov_t *ov)
{
    int rc = 0;
    /* The map first: data without a map is an overlay whose making did not
     * finish (made again); a map without its data would be refused. */
    if (ov->map_fd >= 0) {
        if (unlink(ov->map_path) != 0 && errno != ENOENT)
            rc = -errno;
        if (ftruncate(ov->map_fd, 0) != 0 && rc == 0)
            rc = -errno;
        /* I/O in flight may still flush into the removed files (harmless);
         * closing has nothing to keep. */
        pthread_mutex_lock(&ov->fmu);
        ov->dropped = true;
        pthread_mutex_unlock(&ov->fmu);
    }
    if (unlink(ov->path) != 0 && errno != ENOENT && rc == 0)
        rc = -errno;
    /* The fds stay open until the last connection goes; their blocks need
     * not stay with them. */
    if (ftruncate(ov->fd, 0) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

void tgt_ov_close(tgt_ov_t *ov)
{
    if (!ov)
        return;
    if (ov->map_fd >= 0 && !ov->dropped) {
        char err[512];
        if (tgt_ov_flush(ov, err, sizeof err) != 0)
            tm_error("target: closing an overlay: %s", err);
    }
    tgt__ov_free(ov);
}

void tgt_ov_info(const tgt_ov_t *ov, tgt_ov_info_t *out)
{
    *out = (tgt_ov_info_t){
        .machine = ov->machine, .disk = ov->disk, .disk_ix = ov->disk_ix, .size = ov->size, .seq = ov->seq};
}

uint64_t tgt_ov_blocks(tgt_ov_t *ov)
{
    pthread_mutex_lock(&ov->mu);
    uint64_t n = ov->nset;
    pthread_mutex_unlock(&ov->mu);
    return n;
}

bool tgt_ov_standalone(tgt_ov_t *ov)
{
    pthread_mutex_lock(&ov->mu);
    bool s = ov->standalone;
    pthread_mutex_unlock(&ov->mu);
    return s;
}

uint64_t tgt_ov_size(const tgt_ov_t *ov)
{
    return ov->size;
}

uint64_t tgt_ov_filled(tgt_ov_t *ov)
{
    return atomic_load(&ov->filled);
}

/* ---- I/O ------------------------------------------------------------------- */

/* The longest run from pos (to at most end) of blocks in the same state;
 * a run of clear blocks counts a base read (tgt__ov_base_read gives it
 * back), in the same hold of mu as the bits were read, so a fill that
 * ends in between waits for it. */
static uint64_t tgt__run(tgt_ov_t *ov, uint64_t pos, uint64_t end, bool *set)
{
    pthread_mutex_lock(&ov->mu);
    bool s = tgt__ov_test(ov, pos / TGT_OV_BLOCK);
    uint64_t run_end = (pos / TGT_OV_BLOCK + 1) * TGT_OV_BLOCK;
    while (run_end < end && tgt__ov_test(ov, run_end / TGT_OV_BLOCK) == s)
        run_end += TGT_OV_BLOCK;
    if (!s)
        ov->base_busy++;
    pthread_mutex_unlock(&ov->mu);
    *set = s;
    return run_end < end ? run_end : end;
}

int tgt_ov_read(tgt_ov_t *ov, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    uint8_t *out = buf;
    uint64_t pos = off, end = off + len;
    while (pos < end) {
        bool set;
        uint64_t run_end = tgt__run(ov, pos, end, &set);
        size_t n = (size_t)(run_end - pos);
        int rc;
        if (set) {
            rc = tgt__ov_pread_full(ov->fd, out + (pos - off), n, pos);
            if (rc)
                return tgt__ov_io_err(rc, ov, "read", pos, n, err, errlen);
        } else if ((rc = tgt__ov_base_read(ov, pos, out + (pos - off), n, err, errlen)) != 0) {
            return rc;
        }
        pos = run_end;
    }
    return 0;
}

/* Before a write of [off, end) that covers block b in part: bring the
 * block's bytes from the base into the file, unless they are there. Under
 * wmu. */
static int tgt__copy_in(tgt_ov_t *ov, uint64_t b, uint64_t off, uint64_t end, char *err, size_t errlen)
{
    uint64_t start = b * TGT_OV_BLOCK, blen = tgt__ov_block_len(ov, b);
    if (off <= start && end >= start + blen)
        return 0;
    pthread_mutex_lock(&ov->mu);
    bool set = tgt__ov_test(ov, b);
    if (!set)
        ov->base_busy++;
    pthread_mutex_unlock(&ov->mu);
    if (set)
        return 0;
    int rc = tgt__ov_base_read(ov, start, ov->tmp, (size_t)blen, err, errlen);
    if (rc)
        return rc;
    rc = tgt__ov_pwrite_full(ov->fd, ov->tmp, (size_t)blen, start);
    return rc ? tgt__ov_io_err(rc, ov, "copy from the point", start, blen, err, errlen) : 0;
}

static int tgt__copy_edges(tgt_ov_t *ov, uint64_t off, uint64_t end, char *err, size_t errlen)
{
    uint64_t first = off / TGT_OV_BLOCK, last = (end - 1) / TGT_OV_BLOCK;
    int rc = tgt__copy_in(ov, first, off, end, err, errlen);
    if (rc == 0 && last != first)
        rc = tgt__copy_in(ov, last, off, end, err, errlen);
    return rc;
}

/* FUA after the write lock is given back: the flush covers the write
 * (its bits are set by then), and other writes need not wait for it. */
static int tgt__fua(tgt_ov_t *ov, int rc, bool fua, char *err, size_t errlen)
{
    return rc == 0 && fua ? tgt_ov_flush(ov, err, errlen) : rc;
}

int tgt_ov_write(tgt_ov_t *ov, uint64_t off, const void *buf, size_t len, bool fua, char *err, size_t errlen)
{
    if (len == 0)
        return 0;
    uint64_t end = off + len;
    pthread_mutex_lock(&ov->wmu);
    int rc = tgt__copy_edges(ov, off, end, err, errlen);
    if (rc == 0 && (rc = tgt__ov_pwrite_full(ov->fd, buf, len, off)) != 0)
        tgt__ov_io_err(rc, ov, "write", off, len, err, errlen);
    if (rc == 0)
        tgt__ov_set_range(ov, off / TGT_OV_BLOCK, (end - 1) / TGT_OV_BLOCK);
    pthread_mutex_unlock(&ov->wmu);
    return tgt__fua(ov, rc, fua, err, errlen);
}

int tgt_ov_zero(tgt_ov_t *ov, uint64_t off, uint64_t len, bool no_hole, bool fua, char *err, size_t errlen)
{
    if (len == 0)
        return 0;
    uint64_t end = off + len;
    pthread_mutex_lock(&ov->wmu);
    int rc = tgt__copy_edges(ov, off, end, err, errlen);
    if (rc == 0 && (rc = tgt__ov_zero_file(ov, off, len, no_hole)) != 0)
        tgt__ov_io_err(rc, ov, "write of zeroes", off, len, err, errlen);
    if (rc == 0)
        tgt__ov_set_range(ov, off / TGT_OV_BLOCK, (end - 1) / TGT_OV_BLOCK);
    pthread_mutex_unlock(&ov->wmu);
    return tgt__fua(ov, rc, fua, err, errlen);
}

int tgt_ov_trim(tgt_ov_t *ov, uint64_t off, uint64_t len, bool fua, char *err, size_t errlen)
{
    uint64_t end = off + len;
    uint64_t first = (off + TGT_OV_BLOCK - 1) / TGT_OV_BLOCK;
    /* the disk's short last block counts as whole when the range reaches
     * the end */
    uint64_t stop = end == ov->size ? ov->nblocks : end / TGT_OV_BLOCK;
    if (first >= stop)
        return tgt__fua(ov, 0, fua, err, errlen);
    uint64_t start = first * TGT_OV_BLOCK, zend = stop * TGT_OV_BLOCK < ov->size ? stop * TGT_OV_BLOCK : ov->size;
    pthread_mutex_lock(&ov->wmu);
    int rc = tgt__ov_zero_file(ov, start, zend - start, false);
    if (rc)
        tgt__ov_io_err(rc, ov, "trim", start, zend - start, err, errlen);
    if (rc == 0)
        tgt__ov_set_range(ov, first, stop - 1);
    pthread_mutex_unlock(&ov->wmu);
    return tgt__fua(ov, rc, fua, err, errlen);
}

/*
 * The order is the point: the map records to write are taken (copied,
 * under mu) before the data file's fdatasync, so every bit they hold was
 * set after its block's bytes were written, and so is made durable by that
 * fdatasync before the map's. A bit set after they were taken waits for
 * the next flush. Flushes run one at a time: one that found nothing to
 * take must not return while another still writes records it relies on.
 */
int tgt_ov_flush(tgt_ov_t *ov, char *err, size_t errlen)
{
    pthread_mutex_lock(&ov->fmu);
    int rc = ov->flush_err;
    if (rc) {
        tgt__ov_io_err(rc, ov, "flush (an earlier flush failed)", 0, ov->size, err, errlen);
        goto out;
    }
    size_t n = 0;
    if (ov->map_fd >= 0)
        tgt__ov_map_collect(ov, &n);
    if (fdatasync(ov->fd) != 0) {
        rc = tgt__ov_io_err(-errno, ov, "flush", 0, ov->size, err, errlen);
    } else if (n > 0) {
        rc = tgt__ov_map_write(ov, n, err, errlen);
    }
    if (rc && ov->map_fd >= 0)
        ov->flush_err = rc;
out:
    pthread_mutex_unlock(&ov->fmu);
    return rc;
}
