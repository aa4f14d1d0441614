/*
 * A backend for the NBD server that exports raw image files (or block
 * devices) by name, read-only or writable. Every disk call runs on the libuv
 * thread pool (uv_queue_work), so the loop never waits for a disk:
 * pread/pwrite, fdatasync for FLUSH and FUA, fallocate(PUNCH_HOLE) for TRIM,
 * a hole or ZERO_RANGE (or written zeroes where the file system has neither)
 * for WRITE_ZEROES.
 *
 * Every connection to an export shares one descriptor, so a flush on one
 * connection covers writes completed on all of them: exports advertise
 * NBD_FLAG_CAN_MULTI_CONN.
 *
 * Threads: all calls on the loop thread given to nbd_file_backend_new(),
 * which must be the server's. Callers that wrap this backend (the tap agent)
 * call nbd_file_submit() from their own operations and finish the io
 * themselves.
 */
#ifndef TM_NBD_FILE_H
#define TM_NBD_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "nbd/nbd.h"

typedef struct nbd_file_backend nbd_file_backend_t;

/* The operations to give nbd_server_new() with the backend as its pointer. */
extern const nbd_backend_ops_t nbd_file_ops;

/* Returns 0 or -ENOMEM. */
int nbd_file_backend_new(uv_loop_t *loop, nbd_file_backend_t **out);

/*
 * Export the file at path as name (opened at once, its size read now and
 * fixed for the export's life). Exports are listed in the order added.
 * Returns 0, -EEXIST for a name already exported, -EINVAL for an empty name
 * or one over NBD_MAX_NAME bytes, -ENOMEM, or the open/lseek error.
 */
int nbd_file_backend_add(nbd_file_backend_t *fb, const char *name, const char *path, bool read_only);

/*
 * Close every file and free the backend. Call after the server using it has
 * closed (nbd_server_close's callback) and its queued work has finished;
 * returns -EBUSY, and frees nothing, while an export is still open or work
 * is queued.
 */
int nbd_file_backend_free(nbd_file_backend_t *fb);

/* An export's name and size, for wrappers (export as given by open()). */
const char *nbd_file_export_name(const void *export);
uint64_t nbd_file_export_size(const void *export);

typedef void (*nbd_file_cb)(nbd_io_t *io, int status, void *arg);

/*
 * Run io (any kind, with its flags) on the file of export, on the thread
 * pool; cb(io, status, arg) follows exactly once on the loop thread, with 0
 * or a negative errno (-ENOMEM synchronously when no work item could be
 * made). io->buf must stay valid until then; io->data is not used.
 */
void nbd_file_submit(void *export, nbd_io_t *io, nbd_file_cb cb, void *arg);

#endif
