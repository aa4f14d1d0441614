/* Raw image files as NBD exports; the contract is in nbd_file.h. */
#include "nbd/nbd_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

#define NBD_FILE_ZERO_CHUNK (64u << 10) /* bytes per pwrite when zeroes must be written out */

typedef struct nbd_file_export {
    nbd_file_backend_t *fb;
    struct nbd_file_export *next;
    char *name;
    char *path;
    int fd;
    uint64_t size;
    bool read_only;
    unsigned refs; /* opens not yet released */
} nbd_file_export_t;

struct nbd_file_backend {
    uv_loop_t *loop;
    nbd_file_export_t *exports; /* in the order added */
    unsigned queued;            /* work items not yet completed */
};

typedef struct nbd_file_work {
    uv_work_t w;
    nbd_file_export_t *ex;
    nbd_io_t *io;
    nbd_file_cb cb;
    void *arg;
    int status;
} nbd_file_work_t;

/* ---- on the thread pool ---------------------------------------------------- */

static int nbd_file__pread(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* the file shrank under the export */
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int nbd_file__pwrite(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int nbd_file__sync(int fd)
{
    return fdatasync(fd) < 0 ? -errno : 0;
}

static bool nbd_file__unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOSYS || err == EINVAL;
}

static int nbd_file__zero(int fd, uint64_t off, uint64_t len, bool may_punch)
{
    /* A hole reads as zeroes and frees the space; ZERO_RANGE keeps it
     * allocated (what NO_HOLE asks for). Where the file system has neither,
     * the zeroes are written. */
    if (may_punch && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    if (!nbd_file__unsupported(errno))
        return -errno;
    static const uint8_t zeroes[NBD_FILE_ZERO_CHUNK];
    while (len > 0) {
        size_t n = len < sizeof zeroes ? (size_t)len : sizeof zeroes;
        int rc = nbd_file__pwrite(fd, zeroes, n, off);
        if (rc < 0)
            return rc;
        off += n;
        len -= n;
    }
    return 0;
}

static void nbd_file__work(uv_work_t *w)
{
    nbd_file_work_t *k = w->data;
    nbd_io_t *io = k->io;
    int fd = k->ex->fd;
    int rc = 0;
    switch (io->kind) {
    case NBD_IO_READ:
        rc = nbd_file__pread(fd, io->buf, io->length, io->offset);
        break;
    case NBD_IO_WRITE:
        rc = nbd_file__pwrite(fd, io->buf, io->length, io->offset);
        break;
    case NBD_IO_FLUSH:
        rc = nbd_file__sync(fd);
        break;
    case NBD_IO_TRIM:
        /* Advisory: where holes cannot be punched, keeping the data is correct. */
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)io->offset, (off_t)io->length) < 0 &&
            !nbd_file__unsupported(errno))
            rc = -errno;
        break;
    case NBD_IO_ZERO:
        rc = nbd_file__zero(fd, io->offset, io->length, !(io->flags & NBD_IO_NO_HOLE));
        break;
    }
    if (rc == 0 && (io->flags & NBD_IO_FUA) && io->kind != NBD_IO_READ && io->kind != NBD_IO_FLUSH)
        rc = nbd_file__sync(fd);
    k->status = rc;
}

/* ---- on the loop ------------------------------------------------------------- */

static void nbd_file__after(uv_work_t *w, int status)
{
    nbd_file_work_t *k = w->data;
    nbd_io_t *io = k->io;
    nbd_file_cb cb = k->cb;
    void *arg = k->arg;
    int rc = status == UV_ECANCELED ? -ECANCELED : k->status;
    if (rc < 0 && rc != -ECANCELED)
        tm_debug("nbd: file '%s': I/O at %llu+%u failed: %s", k->ex->path, (unsigned long long)io->offset, io->length,
                 tm_strerror(rc));
    k->ex->fb->queued--;
    tm_free(k);
    cb(io, rc, arg);
}

static nbd_file_work_t *nbd_file__queue(nbd_file_export_t *ex, nbd_io_t *io, nbd_file_cb cb, void *arg)
{
    nbd_file_work_t *k = tm_malloc(sizeof *k);
    if (k == NULL) {
        cb(io, -ENOMEM, arg);
        return NULL;
    }
    k->w.data = k;
    k->ex = ex;
    k->io = io;
    k->cb = cb;
    k->arg = arg;
    k->status = 0;
    int rc = uv_queue_work(ex->fb->loop, &k->w, nbd_file__work, nbd_file__after);
    if (rc < 0) {
        tm_free(k);
        cb(io, rc, arg);
        return NULL;
    }
    ex->fb->queued++;
    return k;
}

void nbd_file_submit(void *export, nbd_io_t *io, nbd_file_cb cb, void *arg)
{
    nbd_file__queue(export, io, cb, arg);
}

/* ---- as an nbd backend ------------------------------------------------------ */

static void nbd_file__done(nbd_io_t *io, int status, void *arg)
{
    (void)arg;
    io->data = NULL;
    nbd_io_done(io, status);
}

/* The same for every kind: the work function looks at io->kind. io->data
 * keeps the work item so that cancel() can find it. */
static void nbd_file__op(nbd_io_t *io)
{
    nbd_file_work_t *k = nbd_file__queue(io->export, io, nbd_file__done, NULL);
    if (k != NULL)
        io->data = k;
}

static void nbd_file__cancel(nbd_io_t *io)
{
    nbd_file_work_t *k = io->data;
    /* Fails (harmlessly) once a pool thread has started the work. */
    if (k != NULL)
        uv_cancel((uv_req_t *)&k->w);
}

static void nbd_file__open(void *backend, nbd_open_t *op)
{
    nbd_file_backend_t *fb = backend;
    for (nbd_file_export_t *ex = fb->exports; ex != NULL; ex = ex->next) {
        if (strcmp(ex->name, op->name) == 0) {
            ex->refs++;
            op->export = ex;
            op->size = ex->size;
            op->read_only = ex->read_only;
            op->multi_conn = true;
            nbd_open_done(op, 0);
            return;
        }
    }
    nbd_open_done(op, -ENOENT);
}

static void nbd_file__list(void *backend, nbd_list_t *op)
{
    nbd_file_backend_t *fb = backend;
    int rc = 0;
    for (nbd_file_export_t *ex = fb->exports; ex != NULL && rc == 0; ex = ex->next)
        rc = nbd_list_add(op, ex->name, NULL);
    nbd_list_done(op, rc);
}

static void nbd_file__release(void *export)
{
    nbd_file_export_t *ex = export;
    ex->refs--;
}

const nbd_backend_ops_t nbd_file_ops = {
    .open = nbd_file__open,
    .list = nbd_file__list,
    .read = nbd_file__op,
    .write = nbd_file__op,
    .flush = nbd_file__op,
    .trim = nbd_file__op,
    .zero = nbd_file__op,
    .cancel = nbd_file__cancel,
    .release = nbd_file__release,
};

/* ---- managing exports -------------------------------------------------------- */

int nbd_file_backend_new(uv_loop_t *loop, nbd_file_backend_t **out)
{
    *out = NULL;
    nbd_file_backend_t *fb = tm_calloc(1, sizeof *fb);
    if (fb == NULL)
        return -ENOMEM;
    fb->loop = loop;
    *out = fb;
    return 0;
}

int nbd_file_backend_add(nbd_file_backend_t *fb, const char *name, const char *path, bool read_only)
{
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > NBD_MAX_NAME)
        return -EINVAL;
    nbd_file_export_t **tail = &fb->exports;
    for (; *tail != NULL; tail = &(*tail)->next)
        if (strcmp((*tail)->name, name) == 0)
            return -EEXIST;

    int rc;
    nbd_file_export_t *ex = tm_calloc(1, sizeof *ex);
    if (ex == NULL)
        return -ENOMEM;
    ex->fb = fb;
    ex->fd = -1;
    ex->read_only = read_only;
    ex->name = tm_strdup(name);
    ex->path = tm_strdup(path);
    if (ex->name == NULL || ex->path == NULL) {
        rc = -ENOMEM;
        goto out_free;
    }
    ex->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (ex->fd < 0) {
        rc = -errno;
        goto out_free;
    }
    off_t end = lseek(ex->fd, 0, SEEK_END);
    if (end < 0) {
        rc = -errno;
        goto out_close;
    }
    ex->size = (uint64_t)end;
    *tail = ex;
    tm_debug("nbd: exporting '%s' as '%s' (%llu bytes%s)", path, name, (unsigned long long)ex->size,
             read_only ? ", read-only" : "");
    return 0;

out_close:
    close(ex->fd);
out_free:
    tm_free(ex->name);
    tm_free(ex->path);
    tm_free(ex);
    return rc;
}

int nbd_file_backend_free(nbd_file_backend_t *fb)
{
    if (fb == NULL)
        return 0;
    if (fb->queued > 0)
        return -EBUSY;
    for (nbd_file_export_t *ex = fb->exports; ex != NULL; ex = ex->next)
        if (ex->refs > 0)
            return -EBUSY;
    while (fb->exports != NULL) {
        nbd_file_export_t *ex = fb->exports;
        fb->exports = ex->next;
        if (close(ex->fd) < 0)
            tm_warn("nbd: closing '%s': %s", ex->path, tm_strerror(-errno));
        tm_free(ex->name);
        tm_free(ex->path);
        tm_free(ex);
    }
    tm_free(fb);
    return 0;
}

const char *nbd_file_export_name(const void *export)
{
    return ((const nbd_file_export_t *)export)->name;
}

uint64_t nbd_file_export_size(const void *export)
{
    return ((const nbd_file_export_t *)export)->size;
}
