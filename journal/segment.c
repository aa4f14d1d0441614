/* Segment files: listing a journal folder, and getting the next segment
 * file ready (an existing left-over, a spare, or a new preallocated file). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "journal/journal_int.h"

static int jnl__cmp_seg(const void *a, const void *b)
{
    const jnl_seg_file_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int jnl__read_hdr(const jnl_io_t *io, const char *dir, jnl_seg_file_t *sf)
{
    char *path = jnl__path(dir, JNL_SEG_NAME_FMT, sf->seq);
    if (!path)
        return -ENOMEM;
    int rc = 0;
    int fd = io->open(path, O_RDONLY, 0);
    if (fd < 0) {
        rc = -errno;
        goto out_free_path;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out_close;
    }
    sf->file_size = (uint64_t)st.st_size;
    uint8_t buf[JNL_SEG_HDR_LEN];
    if (sf->file_size < JNL_SEG_HDR_LEN) {
        sf->verdict = JNL_HDR_NOT_A_SEGMENT;
        goto out_close;
    }
    rc = jnl__pread_full(io, fd, buf, sizeof buf, 0);
    if (rc == 0)
        sf->verdict = jnl_seg_hdr_decode(buf, sizeof buf, &sf->hdr);
out_close:
    io->close(fd);
out_free_path:
    tm_free(path);
    return rc;
}

int jnl__list(const jnl_io_t *io, const char *dir, jnl_seg_file_t **segs_out, size_t *nsegs_out,
              uint64_t **spares_out, size_t *nspares_out)
{
    jnl_seg_file_t *segs = NULL;
    uint64_t *spares = NULL;
    size_t nsegs = 0, nspares = 0, cap_s = 0, cap_p = 0;
    int rc = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t n;
        if (jnl_parse_seg_name(de->d_name, &n)) {
            if ((rc = tm_grow((void **)&segs, &cap_s, nsegs + 1, sizeof *segs)) != 0)
                goto out_closedir;
            memset(&segs[nsegs], 0, sizeof segs[nsegs]);
            segs[nsegs++].seq = n;
        } else if (jnl_parse_spare_name(de->d_name, &n)) {
            if ((rc = tm_grow((void **)&spares, &cap_p, nspares + 1, sizeof *spares)) != 0)
                goto out_closedir;
            spares[nspares++] = n;
        }
    }
    if (nsegs > 1)
        qsort(segs, nsegs, sizeof *segs, jnl__cmp_seg);
    for (size_t i = 0; i < nsegs && rc == 0; i++)
        rc = jnl__read_hdr(io, dir, &segs[i]);
out_closedir:
    closedir(d);
    if (rc) {
        tm_free(segs);
        tm_free(spares);
        return rc;
    }
    *segs_out = segs;
    *nsegs_out = nsegs;
    *spares_out = spares;
    *nspares_out = nspares;
    return 0;
}

/* Open the file for a new segment: a left-over of an interrupted roll, else
 * a spare renamed into place, else a new file. Every path ends preallocated
 * to full size, so a write never finds the disk full halfway through. */
static int jnl__seg_file(jnl_t *j, uint64_t seq, uint64_t size, bool *dir_changed)
{
    char *path = jnl__path(j->dir, JNL_SEG_NAME_FMT, seq);
    if (!path)
        return -ENOMEM;
    bool created = false;
    int fd = j->io.open(path, O_RDWR, 0);
    if (fd < 0 && errno == ENOENT) {
        pthread_mutex_lock(&j->mu);
        bool have_spare = j->nspares > 0;
        uint64_t spare = have_spare ? j->spares[--j->nspares] : 0;
        pthread_mutex_unlock(&j->mu);
        if (have_spare) {
            char *spath = jnl__path(j->dir, JNL_SPARE_NAME_FMT, spare);
            if (spath && j->io.rename(spath, path) == 0) {
                *dir_changed = true;
                fd = j->io.open(path, O_RDWR, 0);
            } else {
                /* The spare could not be used; a new file will do. */
                tm_warn("journal: could not reuse spare segment %llu: %s", (unsigned long long)spare,
                        spath ? strerror(errno) : "out of memory");
            }
            tm_free(spath);
        }
        if (fd < 0) {
            fd = j->io.open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
            created = fd >= 0;
            if (created)
                *dir_changed = true;
        }
    }
    if (fd < 0) {
        int e = errno;
        tm_free(path);
        return -e;
    }
    if (j->io.fallocate(fd, 0, (off_t)size) < 0) {
        int e = errno;
        j->io.close(fd);
        /* Leave no half-made file for the next attempt to trip over. */
        if (created)
            j->io.unlink(path);
        tm_free(path);
        return -e;
    }
    tm_free(path);
    return fd;
}

int jnl__seg_prepare(jnl_t *j, const jnl_seg_hdr_t *hdr, bool *dir_changed)
{
    int fd = jnl__seg_file(j, hdr->seq, hdr->segment_size, dir_changed);
    if (fd < 0)
        return fd;
    /* The whole first block is written so no byte of an earlier header
     * survives between the header and the first record. */
    uint8_t block[JNL_SEG_DATA_OFF];
    memset(block, 0, sizeof block);
    jnl_seg_hdr_encode(hdr, block);
    int rc = jnl__pwrite_full(&j->io, fd, block, sizeof block, 0);
    if (rc < 0) {
        j->io.close(fd);
        return rc;
    }
    return fd;
}

uint64_t jnl__disk_bytes(const char *dir)
{
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    uint64_t n;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (!jnl_parse_seg_name(de->d_name, &n) && !jnl_parse_spare_name(de->d_name, &n))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, 0) == 0)
            total += (uint64_t)st.st_blocks * 512u;
    }
    closedir(d);
    return total;
}
