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
 * read-only; only a test failover's MACHINE/DISK@test and a failover's
 * MACHINE/DISK@failover are writable, below). A read that fails
 * verification (a damaged journal record)
 * gets EIO, never wrong bytes, and is logged with the reader's message
 * naming the machine, disk, point and write.
 *
 * Threads: opens and listings run on a pool of TGT_OPEN_THREADS threads,
 * reads on another of TGT_READ_THREADS (workers.h says why not libuv's
 * pool); the loop thread only decodes, dispatches and replies, so reads
 * never block the loop, nor ingest or the API on the same loop. Connections
 * that open the same disk at the same point share one export and its
 * readers (at most one reader per read thread, reused, never one per read),
 * and its chunk cache (chunks.h): each 1 MiB chunk's extents, loaded by
 * the first read of the chunk with one index scan, kept for the next reads
 * up to a cap per export (least recently used first out).
 *
 * Every function here is called on the loop's thread. The process must
 * ignore SIGPIPE (nbd.h).
 */
#ifndef TM_TARGET_EXPORT_H
#define TM_TARGET_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "journal/journal.h"
#include "points/points.h"
#include "target/chunks.h"

/* Threads that resolve selectors and list exports; each open of `latest`
 * may hold one for as long as processing takes to catch up. */
#define TGT_OPEN_THREADS 4u
/* Threads that rebuild reads: each holds one reader (about 2 MiB of
 * buffers) per export it reads. */
#define TGT_READ_THREADS 4u
/* Threads that commit failovers (each fills one machine's overlays). */
#define TGT_FILL_THREADS 2u

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

/* The cap of each export's chunk cache, in bytes, for exports made from
 * now on (TGT_CHUNKS_DEFAULT_CAP until set; 0: none, every read scans the
 * index). Any thread. */
void tgt_exports_set_chunk_cache(tgt_exports_t *x, size_t cap);

/* The chunk caches of every export so far: what is kept now, and counts
 * since the start. Any thread. */
typedef struct tgt_chunk_stats {
    uint64_t entries, bytes;
    uint64_t hits, misses, evictions, stale;
} tgt_chunk_stats_t;
void tgt_exports_chunk_stats(tgt_exports_t *x, tgt_chunk_stats_t *out);

/*
 * Stop: stop listening, close every connection, wait for the opens and
 * reads in flight (queued reads are dropped; an open waiting for
 * `latest` is waited for), stop commits at their next step, release every
 * export and its pin, end every session (test overlays removed, failover
 * overlays kept and flushed, on the loop: an fdatasync of each overlay's
 * data file and map), join the threads, then call cb(arg) on the loop (cb
 * may be NULL). x is invalid from this call on.
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

/*
 * Failover (architecture.md, "Failover flows"): a machine's disks served
 * writable as MACHINE/DISK@failover over one overlay per disk,
 * DIR/MACHINE/DISK.overlay, on top of one point (the appliance passes
 * DATA/failover). The failed-over machine runs from these disks, so what
 * it writes is production data: each overlay's bitmap is stored beside it
 * (DISK.overlay.map, docs/failover-overlay.md), and every write completed
 * before a FLUSH, or a write with FUA, survives a crash or a restart of the
 * appliance. Nothing reaches the journal or the index.
 *
 * A failover runs beside a test failover of the same machine (separate
 * sessions and folders). The @failover exports are writable with FLUSH
 * and FUA, and advertise multi-conn (every connection to a disk writes its
 * one overlay, and a flush covers all of it); they are listed by
 * NBD_OPT_LIST while the failover runs. Opening MACHINE/DISK@failover
 * while none runs gets NBD_REP_ERR_UNKNOWN and a sentence saying so.
 *
 * Called on the loop's thread; the callbacks come on it too.
 */

/*
 * Serve the machine's disks (their names and sizes from pts_machine) at
 * point seq (resolved by the caller), pinned (pts_pin) for as long as the
 * failover runs or until it is committed. keep false: new, empty overlays
 * (stale files truncated). keep true: the overlays of an earlier run
 * reopened (after a restart), each checked (its map's magic, version,
 * checksums, disk, size and point: a bad or torn map is an error naming
 * the file, never served as data), and any missing made new. seq 0 (keep
 * true only): a committed machine: the standalone overlays found in
 * DIR/MACHINE/, with no point and nothing asked of the index (its records
 * may be gone). The work runs on an open thread; cb(arg, status, seq, msg)
 * follows on the loop, always, when this returns 0 (status: 0, or
 * TM_ENOTFOUND, TM_ENOPOINT, TM_ECORRUPT, TM_EVERSION, TM_EINVAL, -errno,
 * -ESHUTDOWN, with msg saying why; a failed start closes what it opened
 * and removes nothing). Errors returned at once (cb is not called), with
 * err: TM_EINVAL (not a machine name, an empty dir, seq 0 without keep),
 * -EBUSY (a failover of the machine is starting, running, or still closing
 * after a stop that kept its files), -ESHUTDOWN, -ENOMEM.
 */
int tgt_failover_start(tgt_exports_t *x, const char *machine, uint64_t seq, const char *dir, bool keep,
                       tgt_test_cb cb, void *arg, char *err, size_t errlen);

/*
 * End the machine's failover: its connections are closed (a request in
 * flight gets ESHUTDOWN), new opens are refused, a commit in progress is
 * stopped (its callback gets -ECANCELED). remove: the overlays and their
 * maps are removed and their space freed at once (a change of recovery
 * point, a cancel), and a new failover may start at once. Otherwise they
 * are kept, flushed when the last connection has gone; a new start waits
 * for that (-EBUSY until then). The pin goes with the last connection.
 * 0, TM_ENOTFOUND (none runs), -EBUSY (still starting), with err.
 */
int tgt_failover_stop(tgt_exports_t *x, const char *machine, bool remove, char *err, size_t errlen);

/* The machine's failover: 0 with the point when one runs (0 for a
 * committed one), -EBUSY while one starts, TM_ENOTFOUND when none. */
int tgt_failover_point(const tgt_exports_t *x, const char *machine, uint64_t *seq);

/*
 * Commit the machine's failover: on a fill thread (never the loop), every
 * overlay is filled with the blocks still read from the point while
 * clients go on reading and writing (overlay.h, tgt_ov_fill), marked
 * standalone, durably; then, on the loop, the pin is released and
 * cb(arg, status, 0, msg) follows: 0 (the point's data is no longer
 * needed: the caller may delete it), -ECANCELED (the failover was
 * stopped), -ESHUTDOWN (the exports are stopping), or the error of a read
 * of the point or of an overlay, with msg. What was filled stays; a commit
 * may be asked again. Errors returned at once (cb not called), with err:
 * TM_ENOTFOUND, -EBUSY (still starting, or a commit already runs),
 * -ESHUTDOWN. A committed failover commits again at once.
 */
int tgt_failover_commit(tgt_exports_t *x, const char *machine, tgt_test_cb cb, void *arg, char *err, size_t errlen);

/* A commit's progress: bytes of the machine's disks gone over so far and
 * their total (equal once committed; done 0 before a commit). 0,
 * TM_ENOTFOUND, -EBUSY (still starting). */
int tgt_failover_progress(const tgt_exports_t *x, const char *machine, uint64_t *done, uint64_t *total);

#endif
