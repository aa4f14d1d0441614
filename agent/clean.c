/* Clean-shutdown markers beside the tap's images; the rules are in clean.h. */
#include "agent/clean.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

#define CLEAN_MAGIC "tidemark-tap-clean 1"

static int clean_path(const char *image, const char *suffix, char *out, size_t len)
{
    int n = snprintf(out, len, "%s%s%s", image, AGENT_CLEAN_SUFFIX, suffix);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Sync the folder holding path, so a rename or unlink in it is durable. */
static int sync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    /* some file systems cannot sync a folder; the rename or unlink stands */
    return rc == -EINVAL ? 0 : rc;
}

int agent_clean_take(const char *image, const char *machine, const char *disk, uint64_t size, uint64_t *seq)
{
    char path[PATH_MAX], text[AGENT_CLEAN_MAX + 1];
    int rc = clean_path(image, "", path, sizeof path);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    ssize_t n = read(fd, text, AGENT_CLEAN_MAX);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    if (unlink(path) != 0 || (rc = sync_dir_of(path)) != 0)
        return rc ? rc : -errno;
    char m[80], d[80], magic[32];
    unsigned long long sz, sq;
    if (n <= 0 || sscanf(text, "%31[^\n]\nmachine %79s\ndisk %79s\nsize %llu\nseq %llu\n", magic, m, d, &sz,
                         &sq) != 5 ||
        strcmp(magic, CLEAN_MAGIC) != 0) {
        tm_warn("tap: %s is not a clean-shutdown marker this agent reads; ignored", path);
        return 0;
    }
    if (strcmp(m, machine) != 0 || strcmp(d, disk) != 0 || sz != size) {
        tm_warn("tap: %s names machine %s, disk %s of %llu bytes, not this one; ignored", path, m, d, sz);
        return 0;
    }
    *seq = sq;
    return 1;
}

int agent_clean_put(const char *image, int image_fd, const char *machine, const char *disk, uint64_t size,
                    uint64_t seq)
{
    char path[PATH_MAX], tmp[PATH_MAX], text[AGENT_CLEAN_MAX];
    int rc = clean_path(image, "", path, sizeof path);
    if (rc == 0)
        rc = clean_path(image, ".tmp", tmp, sizeof tmp);
    if (rc)
        return rc;
    /* what the marker vouches for must be on the disk before it is */
    if (fsync(image_fd) != 0 && errno != EINVAL)
        return -errno;
    int n = snprintf(text, sizeof text, CLEAN_MAGIC "\nmachine %s\ndisk %s\nsize %" PRIu64 "\nseq %" PRIu64 "\n",
                     machine, disk, size, seq);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    rc = write(fd, text, (size_t)n) == n && fsync(fd) == 0 ? 0 : (errno ? -errno : -EIO);
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return sync_dir_of(path);
}
