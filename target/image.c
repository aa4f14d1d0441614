/*
 * Sparse raw images (image.h). Pieces of TGT_IMAGE_PIECE bytes: big enough
 * that the per-read cost disappears, small enough for steady progress.
 */
#include "target/image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/mem.h"

#define TGT_IMAGE_PIECE (4u << 20)

/* True when n bytes at p are all zero. */
static bool tgt__zero(const uint8_t *p, size_t n)
{
    if (n == 0)
        return true;
    return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

static int tgt__pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int tgt_write_image(const tgt_view_t *v, const char *path, tgt_progress_fn progress, void *arg,
                    const atomic_bool *cancel, char *err, size_t errlen)
{
    char *part = NULL;
    uint8_t *buf = NULL;
    tgt_reader_t *r = NULL;
    int fd = -1;
    int rc = -ENOMEM;
    size_t plen = strlen(path) + sizeof ".part";
    part = tm_malloc(plen);
    buf = tm_malloc(TGT_IMAGE_PIECE);
    if (!part || !buf) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(part, plen, "%s.part", path);
    rc = tgt_open(v, &r);
    if (rc) {
        snprintf(err, errlen, "cannot open the disk's replica base: %s", tm_strerror(rc));
        goto out;
    }
    fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot create %s: %s", part, strerror(errno));
        goto out;
    }
    if (ftruncate(fd, (off_t)v->size) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot size %s: %s", part, strerror(errno));
        goto out_unlink;
    }
    for (uint64_t off = 0; off < v->size;) {
        if (cancel && atomic_load(cancel)) {
            rc = TM_ECLOSED;
            snprintf(err, errlen, "cancelled");
            goto out_unlink;
        }
        size_t n = v->size - off < TGT_IMAGE_PIECE ? (size_t)(v->size - off) : TGT_IMAGE_PIECE;
        int hole;
        rc = tgt_read(r, off, buf, n, &hole);
        if (rc) {
            snprintf(err, errlen, "%s", tgt_error(r)[0] ? tgt_error(r) : tm_strerror(rc));
            goto out_unlink;
        }
        if (!hole && !tgt__zero(buf, n)) {
            rc = tgt__pwrite_all(fd, buf, n, off);
            if (rc) {
                snprintf(err, errlen, "cannot write %s: %s", part, strerror(-rc));
                goto out_unlink;
            }
        }
        off += n;
        if (progress)
            progress(arg, off);
    }
    if (fsync(fd) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot sync %s: %s", part, strerror(errno));
        goto out_unlink;
    }
    if (rename(part, path) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot rename %s to %s: %s", part, path, strerror(errno));
        goto out_unlink;
    }
    rc = 0;
    goto out;
out_unlink:
    unlink(part);
out:
    if (fd >= 0)
        close(fd);
    tgt_close(r);
    tm_free(buf);
    tm_free(part);
    return rc;
}
