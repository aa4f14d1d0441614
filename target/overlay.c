/*
 * The copy-on-write overlay of a test failover's export (overlay.h): a
 * sparse file, a bitmap of written blocks, and copies of whole blocks from
 * the base before a write covers part of one.
 */
#include "target/overlay.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/mem.h"

struct tgt_ov {
    int fd;
    char path[PATH_MAX];
    uint64_t size;
    uint64_t nblocks;
    tgt_ov_base_fn base;
    void *base_arg;
    pthread_mutex_t mu; /* bits and nset */
    uint64_t *bits;
    uint64_t nset;
    pthread_mutex_t wmu; /* one write, zero or trim at a time; owns tmp */
    uint8_t *tmp;        /* one block, for copies from the base */
};

static const uint8_t tgt__zeros[TGT_OV_BLOCK];

/* ---- bits -------------------------------------------------------------- */

static bool tgt__test(const tgt_ov_t *ov, uint64_t b)
{
    return (ov->bits[b / 64] >> (b % 64)) & 1u;
}

static bool tgt__is_set(tgt_ov_t *ov, uint64_t b)
{
    pthread_mutex_lock(&ov->mu);
    bool set = tgt__test(ov, b);
    pthread_mutex_unlock(&ov->mu);
    return set;
}

/* Only once the blocks' bytes are in the file. */
static void tgt__set_range(tgt_ov_t *ov, uint64_t first, uint64_t last)
{
    pthread_mutex_lock(&ov->mu);
    for (uint64_t b = first; b <= last; b++) {
        if (!tgt__test(ov, b)) {
            ov->bits[b / 64] |= UINT64_C(1) << (b % 64);
            ov->nset++;
        }
    }
    pthread_mutex_unlock(&ov->mu);
}

/* The bytes block b spans (the last one may be short). */
static uint64_t tgt__block_len(const tgt_ov_t *ov, uint64_t b)
{
    uint64_t start = b * TGT_OV_BLOCK;
    return ov->size - start < TGT_OV_BLOCK ? ov->size - start : TGT_OV_BLOCK;
}

/* ---- file I/O ------------------------------------------------------------ */

static int tgt__pread_full(int fd, void *buf, size_t len, uint64_t off)
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

static int tgt__pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
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
        int rc = tgt__pwrite_full(fd, tgt__zeros, n, off);
        if (rc)
            return rc;
        off += n;
        len -= n;
    }
    return 0;
}

/* ---- life ---------------------------------------------------------------- */

int tgt_ov_create(const char *path, uint64_t size, tgt_ov_base_fn base, void *base_arg, tgt_ov_t **out)
{
    *out = NULL;
    tgt_ov_t *ov = tm_calloc(1, sizeof *ov);
    if (!ov)
        return -ENOMEM;
    ov->size = size;
    ov->nblocks = (size + TGT_OV_BLOCK - 1) / TGT_OV_BLOCK;
    ov->base = base;
    ov->base_arg = base_arg;
    snprintf(ov->path, sizeof ov->path, "%s", path);
    int rc = -ENOMEM;
    ov->bits = tm_calloc((size_t)(ov->nblocks / 64 + 1), sizeof *ov->bits);
    ov->tmp = tm_malloc(TGT_OV_BLOCK);
    if (!ov->bits || !ov->tmp)
        goto out_free;
    /* O_TRUNC: a file left by a crashed run holds nothing of this test */
    ov->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (ov->fd < 0) {
        rc = -errno;
        goto out_free;
    }
    if (ftruncate(ov->fd, (off_t)size) != 0) {
        rc = -errno;
        goto out_unlink;
    }
    pthread_mutex_init(&ov->mu, NULL);
    pthread_mutex_init(&ov->wmu, NULL);
    *out = ov;
    return 0;

out_unlink:
    close(ov->fd);
    unlink(path);
out_free:
    tm_free(ov->bits);
    tm_free(ov->tmp);
    tm_free(ov);
    return rc;
}

int tgt_ov_drop(tgt_ov_t *ov)
{
    int rc = unlink(ov->path) == 0 || errno == ENOENT ? 0 : -errno;
    /* The fd stays open until the last connection goes; its blocks need
     * not stay with it. */
    if (ftruncate(ov->fd, 0) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

void tgt_ov_close(tgt_ov_t *ov)
{
    if (!ov)
        return;
    close(ov->fd);
    pthread_mutex_destroy(&ov->mu);
    pthread_mutex_destroy(&ov->wmu);
    tm_free(ov->bits);
    tm_free(ov->tmp);
    tm_free(ov);
}

uint64_t tgt_ov_blocks(tgt_ov_t *ov)
{
    pthread_mutex_lock(&ov->mu);
    uint64_t n = ov->nset;
    pthread_mutex_unlock(&ov->mu);
    return n;
}

/* ---- I/O ------------------------------------------------------------------- */

static int tgt__io_err(int rc, const tgt_ov_t *ov, const char *what, uint64_t off, uint64_t len, char *err,
                       size_t errlen)
{
    snprintf(err, errlen, "overlay %s: %s of %" PRIu64 " bytes at %" PRIu64 " failed: %s", ov->path, what, len, off,
             tm_strerror(rc));
    return rc;
}

int tgt_ov_read(tgt_ov_t *ov, uint64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    uint8_t *out = buf;
    uint64_t pos = off, end = off + len;
    while (pos < end) {
        /* the longest run of blocks in the same state */
        bool set = tgt__is_set(ov, pos / TGT_OV_BLOCK);
        uint64_t run_end = (pos / TGT_OV_BLOCK + 1) * TGT_OV_BLOCK;
        while (run_end < end && tgt__is_set(ov, run_end / TGT_OV_BLOCK) == set)
            run_end += TGT_OV_BLOCK;
        if (run_end > end)
            run_end = end;
        size_t n = (size_t)(run_end - pos);
        int rc;
        if (set) {
            rc = tgt__pread_full(ov->fd, out + (pos - off), n, pos);
            if (rc)
                return tgt__io_err(rc, ov, "read", pos, n, err, errlen);
        } else if ((rc = ov->base(ov->base_arg, pos, out + (pos - off), n, err, errlen)) != 0) {
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
    uint64_t start = b * TGT_OV_BLOCK, blen = tgt__block_len(ov, b);
    if ((off <= start && end >= start + blen) || tgt__is_set(ov, b))
        return 0;
    int rc = ov->base(ov->base_arg, start, ov->tmp, (size_t)blen, err, errlen);
    if (rc)
        return rc;
    rc = tgt__pwrite_full(ov->fd, ov->tmp, (size_t)blen, start);
    return rc ? tgt__io_err(rc, ov, "copy from the point", start, blen, err, errlen) : 0;
}

static int tgt__copy_edges(tgt_ov_t *ov, uint64_t off, uint64_t end, char *err, size_t errlen)
{
    uint64_t first = off / TGT_OV_BLOCK, last = (end - 1) / TGT_OV_BLOCK;
    int rc = tgt__copy_in(ov, first, off, end, err, errlen);
    if (rc == 0 && last != first)
        rc = tgt__copy_in(ov, last, off, end, err, errlen);
    return rc;
}

static int tgt__fua(tgt_ov_t *ov, bool fua, char *err, size_t errlen)
{
    return fua ? tgt_ov_flush(ov, err, errlen) : 0;
}

int tgt_ov_write(tgt_ov_t *ov, uint64_t off, const void *buf, size_t len, bool fua, char *err, size_t errlen)
{
    if (len == 0)
        return 0;
    uint64_t end = off + len;
    pthread_mutex_lock(&ov->wmu);
    int rc = tgt__copy_edges(ov, off, end, err, errlen);
    if (rc == 0 && (rc = tgt__pwrite_full(ov->fd, buf, len, off)) != 0)
        tgt__io_err(rc, ov, "write", off, len, err, errlen);
    if (rc == 0)
        rc = tgt__fua(ov, fua, err, errlen);
    if (rc == 0)
        tgt__set_range(ov, off / TGT_OV_BLOCK, (end - 1) / TGT_OV_BLOCK);
    pthread_mutex_unlock(&ov->wmu);
    return rc;
}

/* [off, off + len) of the file reads as zeroes: a hole, or allocated
 * zeroes; written out where the file system cannot do either. */
static int tgt__zero_file(tgt_ov_t *ov, uint64_t off, uint64_t len, bool no_hole)
{
    int mode = FALLOC_FL_KEEP_SIZE | (no_hole ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
    if (fallocate(ov->fd, mode, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return -errno;
    return tgt__write_zeros(ov->fd, off, len);
}

int tgt_ov_zero(tgt_ov_t *ov, uint64_t off, uint64_t len, bool no_hole, bool fua, char *err, size_t errlen)
{
    if (len == 0)
        return 0;
    uint64_t end = off + len;
    pthread_mutex_lock(&ov->wmu);
    int rc = tgt__copy_edges(ov, off, end, err, errlen);
    if (rc == 0 && (rc = tgt__zero_file(ov, off, len, no_hole)) != 0)
        tgt__io_err(rc, ov, "write of zeroes", off, len, err, errlen);
    if (rc == 0)
        rc = tgt__fua(ov, fua, err, errlen);
    if (rc == 0)
        tgt__set_range(ov, off / TGT_OV_BLOCK, (end - 1) / TGT_OV_BLOCK);
    pthread_mutex_unlock(&ov->wmu);
    return rc;
}

int tgt_ov_trim(tgt_ov_t *ov, uint64_t off, uint64_t len, bool fua, char *err, size_t errlen)
{
    uint64_t end = off + len;
    uint64_t first = (off + TGT_OV_BLOCK - 1) / TGT_OV_BLOCK;
    /* the disk's short last block counts as whole when the range reaches
     * the end */
    uint64_t stop = end == ov->size ? ov->nblocks : end / TGT_OV_BLOCK;
    if (first >= stop)
        return 0;
    uint64_t start = first * TGT_OV_BLOCK, zend = stop * TGT_OV_BLOCK < ov->size ? stop * TGT_OV_BLOCK : ov->size;
    pthread_mutex_lock(&ov->wmu);
    int rc = tgt__zero_file(ov, start, zend - start, false);
    if (rc)
        tgt__io_err(rc, ov, "trim", start, zend - start, err, errlen);
    if (rc == 0)
        rc = tgt__fua(ov, fua, err, errlen);
    if (rc == 0)
        tgt__set_range(ov, first, stop - 1);
    pthread_mutex_unlock(&ov->wmu);
    return rc;
}

int tgt_ov_flush(tgt_ov_t *ov, char *err, size_t errlen)
{
    if (fdatasync(ov->fd) == 0)
        return 0;
    return tgt__io_err(-errno, ov, "flush", 0, ov->size, err, errlen);
}
