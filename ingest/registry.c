/* DATA/machines.conf: loading, and atomic replacement on `machine add`. */
#include "ingest/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

#define INGEST_REG_LINE_MAX 512

void ingest_hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int ingest__hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ingest_hex_decode(const char *hex, uint8_t *out, size_t n)
{
    if (strlen(hex) != 2 * n)
        return TM_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = ingest__hexval(hex[2 * i]), lo = ingest__hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return TM_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int ingest__reg_path(const char *data_dir, const char *suffix, char *out, size_t len)
{
    int n = snprintf(out, len, "%s/%s%s", data_dir, INGEST_REGISTRY_FILE, suffix);
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

void ingest_registry_free(ingest_registry_t *r)
{
    tm_free(r->v);
    memset(r, 0, sizeof *r);
}

const ingest_reg_entry_t *ingest_registry_find(const ingest_registry_t *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].name, name) == 0)
            return &r->v[i];
    return NULL;
}

/* One line into r; 0 or TM_EINVAL with why in err, -ENOMEM. */
static int ingest__reg_line(ingest_registry_t *r, char *s, char *why, size_t wlen)
{
    char *save = NULL;
    char *kw = strtok_r(s, " \t\r\n", &save);
    if (!kw || kw[0] == '#')
        return 0;
    char *name = strtok_r(NULL, " \t\r\n", &save);
    char *hex = strtok_r(NULL, " \t\r\n", &save);
    char *extra = strtok_r(NULL, " \t\r\n", &save);
    if (strcmp(kw, "machine") != 0 || !name || !hex || extra) {
        snprintf(why, wlen, "expected 'machine NAME SECRET'");
        return TM_EINVAL;
    }
    if (!wire_name_ok(name)) {
        snprintf(why, wlen, "'%s' is not a machine name (1-%u of [A-Za-z0-9._-], not starting with . or -)", name,
                 WIRE_MAX_NAME);
        return TM_EINVAL;
    }
    if (ingest_registry_find(r, name)) {
        snprintf(why, wlen, "machine '%s' is listed twice", name);
        return TM_EINVAL;
    }
    if (tm_grow((void **)&r->v, &r->cap, r->n + 1, sizeof r->v[0]) != 0)
        return -ENOMEM;
    ingest_reg_entry_t *e = &r->v[r->n];
    if (ingest_hex_decode(hex, e->secret, INGEST_SECRET_LEN) != 0) {
        snprintf(why, wlen, "the secret of '%s' is not %u hex digits", name, INGEST_SECRET_HEX);
        return TM_EINVAL;
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    r->n++;
    return 0;
}

int ingest_registry_load(const char *data_dir, ingest_registry_t *r, char *err, size_t errlen)
{
    char path[PATH_MAX];
    char line[INGEST_REG_LINE_MAX];
    char why[160];
    unsigned lineno = 0;
    struct stat st;
    int rc;

    ingest_registry_free(r);
    rc = ingest__reg_path(data_dir, "", path, sizeof path);
    if (rc) {
        snprintf(err, errlen, "%s: %s", data_dir, tm_strerror(rc));
        return rc;
    }
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, tm_strerror(rc));
        return rc;
    }
    if (fstat(fileno(f), &st) == 0) {
        r->mtime = st.st_mtim;
        r->size = (long long)st.st_size;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (strlen(line) == sizeof line - 1 && line[sizeof line - 2] != '\n') {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            rc = TM_EINVAL;
            goto out_close;
        }
        rc = ingest__reg_line(r, line, why, sizeof why);
        if (rc == -ENOMEM) {
            snprintf(err, errlen, "%s: %s", path, tm_strerror(rc));
            goto out_close;
        }
        if (rc) {
            snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
            goto out_close;
        }
    }
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: read error", path);
    }
out_close:
    fclose(f);
    if (rc) {
        struct timespec keep = r->mtime;
        long long size = r->size;
        ingest_registry_free(r);
        /* Remember the bad file's stamp so it is not re-read at every hello. */
        r->mtime = keep;
        r->size = size;
    }
    return rc;
}

int ingest_registry_changed(const char *data_dir, const ingest_registry_t *r)
{
    char path[PATH_MAX];
    struct stat st;
    if (ingest__reg_path(data_dir, "", path, sizeof path) != 0)
        return 0;
    if (stat(path, &st) != 0)
        return r->mtime.tv_sec != 0 || r->mtime.tv_nsec != 0;
    return st.st_mtim.tv_sec != r->mtime.tv_sec || st.st_mtim.tv_nsec != r->mtime.tv_nsec ||
           (long long)st.st_size != r->size;
}

/* Write all of buf to fd; 0 or -errno. */
static int ingest__write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Write the registry r to path.tmp, fsync, rename over path, fsync the folder. */
static int ingest__reg_replace(const char *data_dir, const ingest_registry_t *r, char *err, size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    char line[32 + WIRE_MAX_NAME + INGEST_SECRET_HEX];
    char hex[INGEST_SECRET_HEX + 1];
    int rc = ingest__reg_path(data_dir, "", path, sizeof path);
    if (rc == 0)
        rc = ingest__reg_path(data_dir, ".tmp", tmp, sizeof tmp);
    if (rc) {
        snprintf(err, errlen, "%s: %s", data_dir, tm_strerror(rc));
        return rc;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", tmp, tm_strerror(rc));
        return rc;
    }
    /* A umask cannot loosen this, but an old temporary file kept its mode. */
    if (fchmod(fd, 0600) != 0) {
        rc = -errno;
        goto out_unlink;
    }
    const char *head = "# Machines allowed to stream to this appliance: machine NAME SECRET.\n"
                       "# Written by `tidemark machine add`; keep it private (mode 0600).\n";
    rc = ingest__write_all(fd, head, strlen(head));
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        ingest_hex_encode(r->v[i].secret, INGEST_SECRET_LEN, hex);
        int n = snprintf(line, sizeof line, "machine %s %s\n", r->v[i].name, hex);
        rc = ingest__write_all(fd, line, (size_t)n);
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (rc)
        goto out_unlink;
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        goto out_unlink;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = -errno;
        goto out_unlink;
    }
    int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        rc = -errno;
        if (dfd >= 0)
            close(dfd);
        snprintf(err, errlen, "%s: fsync of the folder: %s", data_dir, tm_strerror(rc));
        return rc;
    }
    close(dfd);
    return 0;

out_unlink:
    snprintf(err, errlen, "%s: %s", tmp, tm_strerror(rc));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

int ingest_registry_add(const char *data_dir, const char *name, char secret_hex[INGEST_SECRET_HEX + 1], char *err,
                        size_t errlen)
{
    ingest_registry_t r = {0};
    char lock[PATH_MAX];
    int rc;

    if (!wire_name_ok(name)) {
        snprintf(err, errlen, "'%s' is not a machine name: 1-%u characters of [A-Za-z0-9._-], not starting with . or -",
                 name, WIRE_MAX_NAME);
        return TM_EINVAL;
    }
    rc = ingest__reg_path(data_dir, ".lock", lock, sizeof lock);
    if (rc) {
        snprintf(err, errlen, "%s: %s", data_dir, tm_strerror(rc));
        return rc;
    }
    /* The lock file only serializes writers; readers never take it. */
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", lock, tm_strerror(rc));
        return rc;
    }
    if (flock(lfd, LOCK_EX) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: lock: %s", lock, tm_strerror(rc));
        goto out_close_lock;
    }
    rc = ingest_registry_load(data_dir, &r, err, errlen);
    if (rc)
        goto out_free;
    if (ingest_registry_find(&r, name)) {
        snprintf(err, errlen, "machine '%s' is already registered; its secret was printed when it was added", name);
        rc = -EEXIST;
        goto out_free;
    }
    rc = tm_grow((void **)&r.v, &r.cap, r.n + 1, sizeof r.v[0]);
    if (rc) {
        snprintf(err, errlen, "%s", tm_strerror(rc));
        goto out_free;
    }
    ingest_reg_entry_t *e = &r.v[r.n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    rc = tm_random_bytes(e->secret, sizeof e->secret);
    if (rc) {
        snprintf(err, errlen, "no random bytes for the secret: %s", tm_strerror(rc));
        goto out_free;
    }
    r.n++;
    rc = ingest__reg_replace(data_dir, &r, err, errlen);
    if (rc == 0)
        ingest_hex_encode(e->secret, INGEST_SECRET_LEN, secret_hex);

out_free:
    ingest_registry_free(&r);
out_close_lock:
    close(lfd); /* drops the lock */
    return rc;
}
