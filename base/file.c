/* Small files replaced whole, and read whole (file.h). */
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"

static int tm__write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int tm_file_replace(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    int m = snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    if (n < 0 || (size_t)n >= sizeof path || m < 0 || (size_t)m >= sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (fchmod(fd, mode) != 0 || (rc = tm__write_all(fd, data, len)) != 0 || fsync(fd) != 0)
        rc = rc ? rc : -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    /* the rename itself is durable only once the folder is */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    if (fsync(dfd) != 0)
        rc = -errno;
    close(dfd);
    return rc;
}

int tm_file_read(const char *path, size_t max, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out_close;
    }
    if ((size_t)st.st_size > max) {
        rc = -EFBIG;
        goto out_close;
    }
    if (!(buf = tm_malloc((size_t)st.st_size + 1))) {
        rc = -ENOMEM;
        goto out_close;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto out_free;
        }
        if (r == 0)
            break; /* shrank meanwhile: what there is */
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    close(fd);
    return 0;
out_free:
    tm_free(buf);
out_close:
    close(fd);
    return rc;
}
