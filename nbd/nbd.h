/*
 * An NBD server on a libuv loop: the fixed newstyle handshake and simple
 * replies, over exports that a backend provides. A leaf module: the tap agent
 * (local disk images) and the appliance (disks rebuilt at a point) both link
 * it; it depends on base/ and libuv only. nbd/README.md has the design notes;
 * the protocol is NetworkBlockDevice's doc/proto.md.
 *
 * What a client gets:
 *   - options NBD_OPT_GO, NBD_OPT_INFO (replying NBD_INFO_EXPORT, then
 *     NBD_INFO_BLOCK_SIZE 1 / 4096 / NBD_MAX_REQUEST, and NBD_INFO_NAME when
 *     asked), NBD_OPT_LIST, NBD_OPT_ABORT and the old NBD_OPT_EXPORT_NAME;
 *     every other option (structured replies, meta contexts, TLS, ...) gets
 *     NBD_REP_ERR_UNSUP;
 *   - commands READ, WRITE, FLUSH, TRIM, WRITE_ZEROES (FUA and NO_HOLE
 *     honoured) and DISC, several in flight per connection, replied to in
 *     completion order;
 *   - an error reply for a request that is out of range, oversize, on a
 *     read-only export or unknown, and the connection goes on; a connection
 *     that breaks the protocol (bad magic, unknown client flags) is closed
 *     with a log line, and every other connection carries on.
 *
 * Threads: everything here runs on the thread of the loop the server was
 * created on. Backend operations are called on that thread and must complete
 * (nbd_open_done, nbd_list_done, nbd_io_done) on that thread too; a backend
 * that works elsewhere hands its results back through uv_async_t or
 * uv_queue_work, as the file backend (nbd/nbd_file.h) does.
 *
 * The process must ignore SIGPIPE (as with any libuv program that writes to
 * sockets): a client that goes away while a reply is being written would
 * otherwise end it.
 */
#ifndef TM_NBD_H
#define TM_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Named limits. Every length from a client is compared with one of these
 * before anything is allocated for it. */
#define NBD_MAX_REQUEST (32u << 20) /* READ/WRITE payload; advertised as the maximum block size */
#define NBD_MAX_OPTION (64u << 10)  /* option data during the handshake */
#define NBD_MAX_NAME 4096u          /* export names and messages (proto.md's string limit) */
#define NBD_PREFERRED_BLOCK 4096u   /* advertised preferred block size */

typedef struct nbd_server nbd_server_t;

/* ---- what a backend sees ---------------------------------------------- */

/* Asking for an export by name (NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_EXPORT_NAME). */
typedef struct nbd_open {
    /* In: the name the client asked for, NUL-terminated (a name with a NUL
     * inside never gets here). Valid until nbd_open_done(). */
    const char *name;

    /* Out, set by the backend before nbd_open_done(op, 0). */
    void *export;    /* the backend's handle; passed back in every nbd_io_t */
    uint64_t size;   /* bytes */
    bool read_only;  /* writes, trims and zeroes get EPERM without reaching the backend */
    bool multi_conn; /* every connection to this name sees the same disk, and a
                        flush or FUA on one covers writes completed on every
                        connection to it (NBD_FLAG_CAN_MULTI_CONN); a client
                        then may split one copy over several connections */

    /* Out on failure, optional: a sentence for the client (copied at once). */
    const char *message;
} nbd_open_t;

/*
 * Finish an open, exactly once, on the loop thread, possibly from inside the
 * backend's open(). status 0 means the export fields are set and the server
 * now holds one reference that it gives back with release(). Failures reach
 * the client as: -ENOENT NBD_REP_ERR_UNKNOWN, -EPERM/-EACCES
 * NBD_REP_ERR_POLICY, -EINVAL NBD_REP_ERR_INVALID, -ESHUTDOWN
 * NBD_REP_ERR_SHUTDOWN, anything else NBD_REP_ERR_UNKNOWN with the error's
 * text (after NBD_OPT_EXPORT_NAME, which cannot carry an error, the
 * connection is closed instead).
 */
void nbd_open_done(nbd_open_t *op, int status);

/* Listing the exports (NBD_OPT_LIST). Opaque. */
typedef struct nbd_list nbd_list_t;

/* Name one export in a listing; description may be NULL. Loop thread, between
 * list() and nbd_list_done(). Returns 0, -EINVAL for a name or description
 * over NBD_MAX_NAME bytes, or -ENOMEM. */
int nbd_list_add(nbd_list_t *op, const char *name, const char *description);

/* Finish a listing, exactly once, on the loop thread, possibly from inside
 * list(). A status < 0 ends the listing with NBD_REP_ERR_POLICY (after the
 * exports already added) instead of NBD_REP_ACK. */
void nbd_list_done(nbd_list_t *op, int status);

typedef enum nbd_io_kind {
    NBD_IO_READ,
    NBD_IO_WRITE,
    NBD_IO_FLUSH,
    NBD_IO_TRIM,
    NBD_IO_ZERO,
} nbd_io_kind_t;

#define NBD_IO_FUA 0x1u     /* WRITE, TRIM, ZERO: persist the range before completing */
#define NBD_IO_NO_HOLE 0x2u /* ZERO: write zeroes, do not deallocate */

/*
 * One transmission request handed to the backend. The server owns it and
 * its buffer; the backend may read and (for READ) fill buf until it calls
 * nbd_io_done(), and not after. offset + length is within the export's size;
 * length is at most NBD_MAX_REQUEST for READ and WRITE (TRIM and ZERO may
 * cover up to 4 GiB - 1); length and offset are 0 for FLUSH.
 */
typedef struct nbd_io {
    nbd_io_kind_t kind;
    uint32_t flags;  /* NBD_IO_* */
    uint64_t offset;
    uint32_t length;
    uint8_t *buf;    /* READ: fill length bytes; WRITE: the data; NULL otherwise */
    void *export;    /* what open() returned */
    void *data;      /* the backend's, untouched by the server */
} nbd_io_t;

/*
 * Complete an io: 0 or a negative errno, exactly once, on the loop thread,
 * possibly from inside the operation that started it. Errors reach the
 * client as NBD error values: EPERM, EIO, ENOMEM, EINVAL, ENOSPC (also for
 * EDQUOT and EFBIG), EOVERFLOW, ESHUTDOWN; any other errno as EIO. A READ
 * that fails sends no data.
 */
void nbd_io_done(nbd_io_t *io, int status);

/*
 * The backend: how the server finds exports and does I/O on them. Every
 * operation may complete synchronously or later. An optional operation that
 * is NULL is not offered to clients (its transmission flag stays clear).
 */
typedef struct nbd_backend_ops {
    /* Required. Look the export up by op->name. */
    void (*open)(void *backend, nbd_open_t *op);
    /* Optional; NULL refuses NBD_OPT_LIST with NBD_REP_ERR_POLICY. */
    void (*list)(void *backend, nbd_list_t *op);
    /* Required: read io->length bytes at io->offset into io->buf. */
    void (*read)(nbd_io_t *io);
    /* Optional; NULL makes every export read-only. */
    void (*write)(nbd_io_t *io);
    /* Optional; make every completed write durable. Offers FLUSH and FUA:
     * write, trim and zero must then honour NBD_IO_FUA. */
    void (*flush)(nbd_io_t *io);
    /* Optional; drop the range (advisory: doing nothing is correct). */
    void (*trim)(nbd_io_t *io);
    /* Optional; make the range read as zeroes (a hole unless NBD_IO_NO_HOLE). */
    void (*zero)(nbd_io_t *io);
    /* Optional; called when the server closes with this io in flight: the
     * backend may complete it early (any status; no reply is sent). */
    void (*cancel)(nbd_io_t *io);
    /* Required. Give back one successful open's reference, after the last
     * io on it completed. */
    void (*release)(void *export);
} nbd_backend_ops_t;

/* ---- the server ------------------------------------------------------- */

typedef struct nbd_server_stats {
    uint64_t conns_accepted;
    uint64_t conns_open;     /* at this moment */
    uint64_t conns_dropped;  /* closed by the server for breaking the protocol */
    uint64_t requests;       /* transmission requests decoded */
    uint64_t request_errors; /* of those, answered with an error */
    uint64_t bytes_read;     /* payload bytes sent for successful READs */
    uint64_t bytes_written;  /* payload bytes of successful WRITEs */
} nbd_server_stats_t;

/*
 * Make a server on loop over backend (ops and the backend pointer passed to
 * open() and list()); it serves nothing until nbd_server_listen(). ops must
 * outlive the server. Returns 0, -EINVAL (ops without open, read or
 * release), -ENOMEM, or a libuv error.
 */
int nbd_server_new(uv_loop_t *loop, const nbd_backend_ops_t *ops, void *backend, nbd_server_t **out);

/*
 * Listen on addr (base/addr.h): "HOST:PORT" with a numeric IPv4 host or
 * "localhost" ("127.0.0.1:10809")
 * or "[IPv6]:PORT" ("[::1]:0"); port 0 picks a free port (read it back with
 * nbd_server_port()). Once per server. Returns 0, -EINVAL for a malformed
 * address, -EBUSY when already listening, or the bind/listen error.
 */
int nbd_server_listen(nbd_server_t *srv, const char *addr);

/* The bound port, or a negative error when not listening. */
int nbd_server_port(const nbd_server_t *srv);

void nbd_server_get_stats(const nbd_server_t *srv, nbd_server_stats_t *out);

/*
 * Close, at once, every connection serving `export` (a handle the backend
 * gave in nbd_open_t): replies in flight are dropped and release() comes as
 * for any closed connection. For a backend that takes an export away (a
 * test failover's clean-up). Returns how many connections it closed.
 */
unsigned nbd_server_drop_export(nbd_server_t *srv, void *export);

typedef void (*nbd_close_cb)(void *arg);

/*
 * Stop listening and close every connection: reading stops, in-flight
 * backend operations are offered to cancel() and waited for (their replies
 * are not sent), every open export is released, every handle is closed.
 * Then the server frees itself and calls cb(arg) (cb may be NULL) from the
 * loop; after that the loop holds nothing of the server, so uv_loop_close()
 * succeeds once the backend's own work is done. Call once; srv is invalid
 * from this call on.
 */
void nbd_server_close(nbd_server_t *srv, nbd_close_cb cb, void *arg);

#endif
