/* The journal's system calls: the real ones, or a caller's table for fault
 * injection (SQLite's syscall table), plus full-length read/write loops. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "journal/journal_int.h"

static int jnl__sys_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags | O_CLOEXEC, mode);
}

static int jnl__sys_fallocate(int fd, off_t off, off_t len)
{
    int rc = posix_fallocate(fd, off, len);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

void jnl__io_resolve(jnl_io_t *out, const jnl_io_t *in)
{
    jnl_io_t real = {
        .open = jnl__sys_open,
        .close = close,
        .pread = pread,
        .pwrite = pwrite,
        .fdatasync = fdatasync,
        .fsync = fsync,
        .fallocate = jnl__sys_fallocate,
        .rename = rename,
        .unlink = unlink,
    };
    *out = real;
    if (!in)
        return;
#define JNL__TAKE(f) \
    if (in->f)       \
    out->f = in->f
    JNL__TAKE(open);
    JNL__TAKE(close);
    JNL__TAKE(pread);
    JNL__TAKE(pwrite);
    JNL__TAKE(fdatasync);
    JNL__TAKE(fsync);
    JNL__TAKE(fallocate);
    JNL__TAKE(rename);
    JNL__TAKE(unlink);
#undef JNL__TAKE
}

int jnl__pread_full(const jnl_io_t *io, int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = io->pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* callers never read past what they know exists */
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int jnl__pwrite_full(const jnl_io_t *io, int fd, const void *buf, size_t len, uint64_t off)
{
    for (;;) {
        ssize_t n = io->pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        /* On a regular file a short write means the device or the space ran
         * out partway: a failure, handled like any other (Redis aof.c). */
        return (size_t)n == len ? 0 : -EIO;
    }
}

int jnl__fsync_dir(const jnl_io_t *io, const char *dir)
{
    int fd = io->open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return -errno;
    int rc = io->fsync(fd) < 0 ? -errno : 0;
    io->close(fd);
    return rc;
}

char *jnl__path(const char *dir, const char *fmt, uint64_t n)
{
    char name[64];
    snprintf(name, sizeof name, fmt, (unsigned long long)n);
    size_t len = strlen(dir) + 1 + strlen(name) + 1;
    char *p = tm_malloc(len);
    if (p)
        snprintf(p, len, "%s/%s", dir, name);
    return p;
}
