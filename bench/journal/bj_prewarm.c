/*
 * Page-cache pre-warming before each timed run.
 *
 * Why: on a virtual machine whose balloon device reports free pages to the
 * host (virtio-balloon free page reporting), memory that has been free for
 * a couple of seconds is handed back to the host, and the next write that
 * lands on it faults it in again: measured here, buffered writes into such
 * memory copy at ~0.3-0.5 GB/s instead of ~3-4 GB/s. Which side of the
 * comparison gets cold memory would then depend on the order of the runs
 * (a run that starts right after another run deleted its files reuses warm
 * pages), not on the code under test. Writing and deleting a scratch file
 * of the size the next run will write, just before it, gives the journal
 * and the baseline the same start: warm, recently freed page cache. The
 * scratch is never synced; deleted at once, it costs no disk writes.
 */
#include "bench/journal/bj.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BJ_WARM_CHUNK (1u << 20)

int bj_prewarm(const char *path, uint64_t bytes, const bj_pool_t *pool)
{
    int rc = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        fprintf(stderr, "bench_journal: prewarm: open %s: %s\n", path, strerror(errno));
        return rc;
    }
    size_t chunk = pool->len < BJ_WARM_CHUNK ? pool->len : BJ_WARM_CHUNK;
    while (bytes > 0 && !bj_interrupted) {
        size_t n = bytes < chunk ? (size_t)bytes : chunk;
        ssize_t w = write(fd, pool->base, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            fprintf(stderr, "bench_journal: prewarm: write: %s\n", strerror(errno));
            break;
        }
        bytes -= (uint64_t)w;
    }
    /* Unlink first: with no name left, closing drops the dirty pages unwritten. */
    if (unlink(path) != 0 && rc == 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}
