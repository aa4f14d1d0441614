/*
 * Sparse raw images (image.h). The disk is cut in pieces of TGT_IMAGE_PIECE
 * bytes that TGT_IMAGE_THREADS workers take in turn, each with a reader of
 * its own: reads of the journal are random, and several in flight keep the
 * storage busy where one at a time would wait on each. Inside a piece only
 * the 4 KiB blocks that are not zero are written, so the image is as sparse
 * as the disk (what `cp --sparse=always` does).
 */
#include "target/image.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/mem.h"

#define TGT_IMAGE_PIECE (4u << 20)
#define TGT_IMAGE_THREADS 8u
#define TGT_IMAGE_BLOCK 4096u

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

/* Write the runs of non-zero blocks of buf (n bytes at disk offset off). */
static int tgt__write_runs(int fd, const uint8_t *buf, size_t n, uint64_t off)
{
    size_t i = 0;
    while (i < n) {
        size_t b = n - i < TGT_IMAGE_BLOCK ? n - i : TGT_IMAGE_BLOCK;
        if (tgt__zero(buf + i, b)) {
            i += b;
            continue;
        }
        size_t start = i;
        while (i < n) {
            b = n - i < TGT_IMAGE_BLOCK ? n - i : TGT_IMAGE_BLOCK;
            if (tgt__zero(buf + i, b))
                break;
            i += b;
        }
        int rc = tgt__pwrite_all(fd, buf + start, i - start, off + start);
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct tgt_image_job {
    const tgt_view_t *v;
    int fd;
    const char *part;
    tgt_progress_fn progress;
    void *arg;
    const atomic_bool *cancel;
    pthread_mutex_t mu;
    uint64_t next;  /* the next piece's offset */
    uint64_t done;  /* bytes of pieces finished */
    int rc;         /* the first failure */
    char err[512];
} tgt_image_job_t;

static void tgt__job_fail(tgt_image_job_t *j, int rc, const char *msg)
{
    pthread_mutex_lock(&j->mu);
    if (!j->rc) {
        j->rc = rc;
        snprintf(j->err, sizeof j->err, "%s", msg);
    }
    pthread_mutex_unlock(&j->mu);
}

static void *tgt__worker(void *arg)
{
    tgt_image_job_t *j = arg;
    tgt_reader_t *r = NULL;
    uint8_t *buf = tm_malloc(TGT_IMAGE_PIECE);
    int rc = buf ? tgt_open(j->v, &r) : -ENOMEM;
    if (rc) {
        tgt__job_fail(j, rc, rc == -ENOMEM ? "out of memory" : "cannot open the disk's replica base");
        tm_free(buf);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&j->mu);
        bool stop = j->rc != 0 || j->next >= j->v->size;
        uint64_t off = j->next;
        if (!stop)
            j->next += TGT_IMAGE_PIECE;
        pthread_mutex_unlock(&j->mu);
        if (stop)
            break;
        if (j->cancel && atomic_load(j->cancel)) {
            tgt__job_fail(j, TM_ECLOSED, "cancelled");
            break;
        }
        size_t n = j->v->size - off < TGT_IMAGE_PIECE ? (size_t)(j->v->size - off) : TGT_IMAGE_PIECE;
        int hole;
        rc = tgt_read_sparse(r, off, buf, n, &hole);
        if (rc) {
            tgt__job_fail(j, rc, tgt_error(r)[0] ? tgt_error(r) : tm_strerror(rc));
            break;
        }
        if (!hole && (rc = tgt__write_runs(j->fd, buf, n, off)) != 0) {
            char m[512];
            snprintf(m, sizeof m, "cannot write %.400s: %s", j->part, strerror(-rc));
            tgt__job_fail(j, rc, m);
            break;
        }
        pthread_mutex_lock(&j->mu);
        j->done += n;
        uint64_t done = j->done;
        if (j->progress)
            j->progress(j->arg, done);
        pthread_mutex_unlock(&j->mu);
    }
    tgt_close(r);
    tm_free(buf);
    return NULL;
}

int tgt_write_image(const tgt_view_t *v, const char *path, tgt_progress_fn progress, void *arg,
                    const atomic_bool *cancel, char *err, size_t errlen)
{
    size_t plen = strlen(path) + sizeof ".part";
    char *part = tm_malloc(plen);
    if (!part) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(part, plen, "%s.part", path);
    int rc = 0;
    int fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot create %s: %s", part, strerror(errno));
        tm_free(part);
        return rc;
    }
    if (ftruncate(fd, (off_t)v->size) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot size %s: %s", part, strerror(errno));
        goto out_unlink;
    }
    tgt_image_job_t j = {.v = v, .fd = fd, .part = part, .progress = progress, .arg = arg, .cancel = cancel};
    pthread_mutex_init(&j.mu, NULL);
    pthread_t th[TGT_IMAGE_THREADS];
    unsigned started = 0;
    uint64_t pieces = (v->size + TGT_IMAGE_PIECE - 1) / TGT_IMAGE_PIECE;
    for (; started < TGT_IMAGE_THREADS && started < pieces; started++)
        if (pthread_create(&th[started], NULL, tgt__worker, &j) != 0)
            break;
    if (started == 0 && pieces > 0)
        tgt__worker(&j); /* no thread could start: do it here */
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.rc) {
        rc = j.rc;
        snprintf(err, errlen, "%s", j.err);
        goto out_unlink;
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
    close(fd);
    tm_free(part);
    return 0;
out_unlink:
    close(fd);
    unlink(part);
    tm_free(part);
    return rc;
}
