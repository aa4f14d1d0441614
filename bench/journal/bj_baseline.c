/*
 * The baseline a journal run is compared with: the same number of bytes,
 * written sequentially to a fresh file on the same filesystem in the same
 * number of batches, with an fdatasync after each batch. It is what group
 * commit costs with no journal around it: no headers, no checksums, no
 * copies, no threads. A second variant writes into a file preallocated
 * up front, as the journal's segments are, without the journal's cost of
 * preallocating them as it goes.
 */
#include "bench/journal/bj.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"

/* Write len bytes from the pool, as one write() when the pool is large enough. */
static int bj__write_chunk(int fd, uint64_t len, const bj_pool_t *pool, size_t *pool_off)
{
    while (len > 0) {
        if (*pool_off >= pool->len)
            *pool_off = 0;
        size_t n = pool->len - *pool_off;
        if (n > len)
            n = (size_t)len;
        ssize_t w = write(fd, pool->base + *pool_off, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        len -= (uint64_t)w;
        *pool_off += (size_t)w;
    }
    return 0;
}

int bj_run_baseline(const char *path, uint64_t total, uint64_t chunks, bool prealloc, const bj_pool_t *pool,
                    bj_base_result_t *out)
{
    int rc = 0;
    size_t pool_off = 0;

    memset(out, 0, sizeof *out);
    if (chunks == 0 || total == 0)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        fprintf(stderr, "bench_journal: baseline: open %s: %s\n", path, strerror(errno));
        return rc;
    }
    if (prealloc) {
        int e = posix_fallocate(fd, 0, (off_t)total);
        if (e == 0 && fsync(fd) != 0)
            e = errno;
        if (e != 0) {
            rc = -e;
            fprintf(stderr, "bench_journal: baseline: fallocate: %s\n", strerror(e));
            goto out_close;
        }
    }

    /* Spread the remainder over the first chunks so every chunk is the mean, +-1 byte. */
    uint64_t each = total / chunks, extra = total % chunks;
    uint64_t t0 = tm_mono_ns();
    for (uint64_t i = 0; i < chunks; i++) {
        if (bj_interrupted) {
            rc = -EINTR;
            goto out_close;
        }
        uint64_t len = each + (i < extra ? 1 : 0);
        uint64_t t1 = tm_mono_ns();
        rc = bj__write_chunk(fd, len, pool, &pool_off);
        if (rc != 0) {
            fprintf(stderr, "bench_journal: baseline: write: %s\n", strerror(-rc));
            goto out_close;
        }
        uint64_t t2 = tm_mono_ns();
        if (fdatasync(fd) != 0) {
            rc = -errno;
            fprintf(stderr, "bench_journal: baseline: fdatasync: %s\n", strerror(errno));
            goto out_close;
        }
        out->write_ns += t2 - t1;
        out->sync_ns += tm_mono_ns() - t2;
        out->bytes += len;
        out->syncs++;
    }
    out->secs = (double)(tm_mono_ns() - t0) / 1e9;

out_close:
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (unlink(path) != 0 && rc == 0)
        rc = -errno;
    return rc;
}
