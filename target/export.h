/*
 * Disks at points, served read-only over NBD by name: the NBD exports of
 * `tidemark serve` (architecture.md, "NBD exports"). Built on the NBD server
 * module (nbd/nbd.h) with a backend of its own, and on the rebuild reader
 * (reader.h): every read is rebuilt on demand from the index, the journal
 * and the replica base, verified, with no full copy first.
 *
 * Export names are MACHINE/DISK@SELECTOR, the selector being anything
 * pts_resolve takes: latest, latest-processed, latest-app, a point id, or
 * @TIME in RFC 3339 (web1/disk0@@2026-11-27T10:00:00Z). Opening one:
 *   - checks the machine and the disk, resolves the selector and pins the
 *     point (pts_pin), so retention keeps what it needs for as long as the
 *     export is open; `latest` first waits for everything received to be
 *     processed and cuts a point there;
 *   - refuses with the NBD error nbd_open_done maps and a sentence saying
 *     what is wrong: NBD_REP_ERR_INVALID for a name that is not
 *     MACHINE/DISK@SELECTOR or a selector that is not one,
 *     NBD_REP_ERR_UNKNOWN for an unknown machine or disk or a selector
 *     that names no point (and for a failure to resolve, with its text).
 * The export's size is the disk's size as the processor knows it now.
 *
 * Several connections: a point id names the same bytes on every connection
 * (multi_conn is set). latest, latest-processed and latest-app are resolved
 * at each open, so two connections may get two points; those opens leave
 * multi_conn clear, for clients that split a copy over connections
 * (nbdcopy) to use one. (The nbd module advertises CAN_MULTI_CONN on every
 * read-only export for now, whatever the backend says.) @TIME in the past
 * names the same point at every open once what was received by then is
 * processed, and is treated as fixed.
 *
 * Listing (NBD_OPT_LIST, `nbdinfo --list`) names, for each machine that has
 * a processed point, each of its disks as MACHINE/DISK@latest-processed,
 * and also as MACHINE/DISK@latest-app when the machine has an app-consistent
 * point. Not `latest`: listing clients open what they list (nbdinfo --list
 * asks NBD_OPT_INFO of every name), and opening `latest` waits for
 * processing and cuts a point; a listing must do neither. Only names that
 * open at once are listed.
 *
 * Reads: READ only; writes, trims and zeroes get EPERM (the exports are
 * read-only; only a test failover's MACHINE/DISK@test is writable, below). A read that fails verification (a damaged journal record)
 * gets EIO, never wrong bytes, and is logged with the reader's message
 * naming the machine, disk, point and write.
 *
 * Threads: opens and listings run on a pool of TGT_OPEN_THREADS threads,
 * reads on another of TGT_READ_THREADS (workers.h says why not libuv's
 * pool); the loop thread only decodes, dispatches and replies, so reads
 * never block the loop, nor ingest or the API on the same loop. Connections
 * that open the same disk at the same point share one export and its
 * readers (at most one reader per read thread, reused, never one per read).
 *
 * Every function here is called on the loop's thread. The process must
 * ignore SIGPIPE (nbd.h).
 */
#ifndef TM_TARGET_EXPORT_H
#define TM_TARGET_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "journal/journal.h"
#include "points/points.h"

/* Threads that resolve selectors and list exports; each open of `latest`
 * may hold one for as long as processing takes to catch up. */
#define TGT_OPEN_THREADS 4u
/* Threads that rebuild reads: each holds one reader (about 2 MiB of
 * buffers) per export it reads. */
#define TGT_READ_THREADS 4u

typedef struct tgt_exports tgt_exports_t;

/*
 * Serve every disk of every machine pts knows, at any point, on
 * listen_addr ("HOST:PORT", "[V6]:PORT"; port 0 picks a free port). pts and
 * jnl must outlive the exports. On failure err says why and nothing serves:
 * TM_EINVAL (a bad address), -ENOMEM, or the thread, bind or listen error;
 * handles made before the failure finish closing on the loop's next run.
 */
int tgt_exports_start(uv_loop_t *loop, pts_t *pts, jnl_t *jnl, const char *listen_addr, tgt_exports_t **out,
                      char *err, size_t errlen);

/* The address listened on, with the port bound ("127.0.0.1:40123"). */
void tgt_exports_address(const tgt_exports_t *x, char *buf, size_t len);

/* The bound port (for tests and logs), or a negative error. */
int tgt_exports_port(const tgt_exports_t *x);

/*
 * Stop: stop listening, close every connection, wait for the opens and
 * reads in flight (queued reads are dropped; an open waiting for
 * `latest` is waited for), release every export and its pin, join the
 * threads, then call cb(arg) on the loop (cb may be NULL). x is invalid
 * from this call on.
 */
void tgt_exports_stop(tgt_exports_t *x, void (*cb)(void *arg), void *arg);

/*
 * Test failover (architecture.md): a machine's disks served writable as
 * MACHINE/DISK@test over a copy-on-write overlay on top of one point, so
 * the failed-over machine can be booted and tried while replication and
 * point building carry on. Writes, trims, write-zeroes and flushes go to
 * one sparse file per disk (overlay.h), DIR/MACHINE/DISK.overlay; reads
 * take the blocks written there from it and the rest from the point
 * through the reader. Nothing reaches the journal or the index: the point
 * and every other export of it never change. The point is pinned for as
 * long as the test runs.
 *
 * The @test exports are writable, with FLUSH and FUA (fdatasync of the
 * overlay); they advertise no multi-conn (a flush covers the overlay's
 * file, but that is not promised to clients yet). Several connections to
 * one of them share its overlay. Opening MACHINE/DISK@test while no test
 * failover of the machine runs gets NBD_REP_ERR_UNKNOWN and a sentence
 * saying so. They are not listed (NBD_OPT_LIST).
 *
 * One test failover per machine at a time. Called on the loop's thread.
 */

/* The end of tgt_test_start, on the loop: status 0 and the point (seq) the
 * test runs at, or an error and a sentence saying why (msg, valid during
 * the call): the selector's (as for an export open), -ESHUTDOWN when the
 * exports stop first, or the error making the overlays. */
typedef void (*tgt_test_cb)(void *arg, int status, uint64_t seq, const char *msg);

/*
 * Start a test failover of machine at selector (anything pts_resolve
 * takes; `latest` waits for processing and cuts a point), with its
 * overlays in dir/MACHINE/ (made if missing; the appliance passes
 * DATA/test). The selector is resolved, the point pinned and the overlays
 * made on an open thread; cb(arg, ...) follows on the loop, always, when
 * this returns 0. Errors returned at once (cb is not called), with err
 * saying why: TM_EINVAL (a name that is not one), -EBUSY (a test failover
 * of the machine is starting or running: err names it), -ESHUTDOWN, or
 * -ENOMEM.
 */
int tgt_test_start(tgt_exports_t *x, const char *machine, const char *selector, const char *dir, tgt_test_cb cb,
                   void *arg, char *err, size_t errlen);

/*
 * End the machine's test failover: the connections to its @test exports are
 * closed (a request in flight gets ESHUTDOWN), new opens are refused, the overlay files are removed and their space
 * freed at once; the pin goes when the last connection does. A new test
 * failover of the machine may start as soon as this returns. 0,
 * TM_ENOTFOUND (none runs), -EBUSY (it is still starting: clean up after
 * its callback), with err saying why; an overlay that cannot be removed is
 * logged, and the cleanup goes on.
 */
int tgt_test_cleanup(tgt_exports_t *x, const char *machine, char *err, size_t errlen);

/* The machine's test failover: 0 with the point when one runs, -EBUSY
 * while one starts, TM_ENOTFOUND when none. */
int tgt_test_point(const tgt_exports_t *x, const char *machine, uint64_t *seq);

#endif
