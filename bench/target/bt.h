/*
 * bench_target internals: the served disk (bt_disk.c: a journal, an index,
 * a replica base folded by retention and a raw twin of the same bytes), a
 * minimal NBD client (bt_nbd.c), time to first byte (bt_first.c), the two
 * servers (bt_serve.c: tidemark's exports on a loop thread, qemu-nbd as a
 * child process) and small helpers (bt_util.c). Only bench/target/
 * includes this.
 */
#ifndef TM_BENCH_TARGET_BT_H
#define TM_BENCH_TARGET_BT_H

#include <stdbool.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench/journal/bj.h"
#include "journal/journal.h"
#include "points/points.h"

#define BT_MACHINE "bench-m1"
#define BT_DISK_NAME "vda"
/* The initial copy travels in writes of this size (WIRE_MAX_WRITE). */
#define BT_COPY_WRITE (1u << 20)

/* ---- the served disk (bt_disk.c) -------------------------------------- */

typedef struct bt_disk_cfg {
    const char *dir;      /* scratch: journal/, index/, base/, raw.img inside */
    uint64_t size;        /* the disk, a multiple of 1 MiB */
    double changed_pct;   /* of it written after the base, in distinct slots */
    uint32_t wsize;       /* bytes per changed write (a power of two, 4 KiB .. 1 MiB) */
    uint64_t seed;
} bt_disk_cfg_t;

typedef struct bt_disk {
    bt_disk_cfg_t cfg;
    char raw[PATH_MAX];    /* the raw twin qemu-nbd serves */
    char base[PATH_MAX];   /* the replica base image (pts_base_path) */
    jnl_t *jnl;
    pts_t *pts;
    uint32_t mid;
    uint64_t base_seq;     /* the base holds the disk as of this point */
    uint64_t point;        /* the point served: base + the changes */
    uint64_t next_seq;     /* the stream goes on here */
    uint64_t changed_writes, changed_bytes;
    uint64_t jnl_bytes;    /* what the journal wrote for it all */
    double feed_s, process_s, fold_s; /* setup, untimed */
    unsigned fold_passes;
    uint64_t fresh_rng;    /* offsets of the fresh batches (bt_disk_fresh) */
} bt_disk_t;

/*
 * Make the disk: a machine's initial copy of the whole disk (1 MiB writes,
 * data about half compressible, then SYNCED) and a point there; then
 * changed_pct of it rewritten in distinct random wsize slots and a point at
 * the end; then retention folds everything up to the first point into the
 * replica base (the first point pinned so the horizon stops there), so the
 * served point reads about (100 - changed_pct)% from the base and the rest
 * from the journal. The same bytes go into the raw twin as they are made.
 * 0, or a negative error (printed).
 */
int bt_disk_make(const bt_disk_cfg_t *cfg, bt_disk_t **out);
void bt_disk_free(bt_disk_t *d);
/* Close the journal and the index (for another process to open them). */
void bt_disk_close_stores(bt_disk_t *d);

/*
 * A fresh machine state for a time-to-first-byte measurement: one batch
 * of 16 writes at random wsize slots and a crash tag, received now,
 * processed (pts_sync), so latest-processed names a point no export has
 * opened. *point gets it, *off the offset of one of its writes.
 */
int bt_disk_fresh(bt_disk_t *d, uint64_t *point, uint64_t *off);

/* ---- a minimal NBD client (bt_nbd.c) ---------------------------------- */

/* A connected TCP socket to 127.0.0.1:port (TCP_NODELAY), or -errno. */
int bt_nbd_connect(int port);

/* Fixed-newstyle handshake and NBD_OPT_GO of name, no structured replies.
 * 0 with the export's size, or a negative error with err saying why
 * (the server's refusal text included). */
int bt_nbd_go(int fd, const char *name, uint64_t *size, char *err, size_t errlen);

/* Connect and NBD_OPT_GO: the socket, or a negative error (err says why). */
int bt_nbd_open(int port, const char *name, uint64_t *size, char *err, size_t errlen);

/* Send NBD_CMD_DISC and close. */
void bt_nbd_close(int fd);

typedef struct bt_reads_result {
    double secs;         /* first request sent to last reply received */
    uint64_t reads, bytes;
    uint64_t sum;        /* sum over the reads of XXH3-64(data, seed = offset) when asked */
} bt_reads_result_t;

/*
 * Read n ranges of len bytes at offs[i] over fd, keeping up to qd requests
 * in flight (simple replies; a reply's data goes to one scratch buffer).
 * With hash, out->sum adds up a hash of each reply by its offset (the same
 * for any order of replies). lat (may be NULL) gets each read's latency in
 * ns, request sent to its data received. 0, or a
 * negative error with err saying why (an NBD error names the offset).
 */
int bt_nbd_reads(int fd, const uint64_t *offs, size_t n, uint32_t len, unsigned qd, bool hash, uint64_t *lat,
                 bt_reads_result_t *out, char *err, size_t errlen);

/* ---- time to first byte (bt_first.c) ---------------------------------- */

typedef struct bt_first {
    double total_s;   /* asking to open the export .. the first read's data received */
    double open_s;    /* connect + handshake + NBD_OPT_GO answered */
    double read_s;    /* the first 4 KiB read: request sent .. data received */
    uint64_t sum;     /* XXH3-64 of the 4 KiB read (seed = offset) */
} bt_first_t;

/*
 * Time to first byte of an export: from asking to open name on port (a
 * new connection, the handshake, NBD_OPT_GO) to the reply to a 4 KiB read
 * at off. 0 or a negative error with err saying why. Kept apart from the
 * rest so that its start can become a failover request (the API's job)
 * without touching the throughput passes.
 */
int bt_first_byte(int port, const char *name, uint64_t off, bt_first_t *out, char *err, size_t errlen);

/* ---- from a failover request (bt_failover.c) -------------------------- */

typedef struct bt_fo {
    double job_s;       /* POST /v1/jobs (failover, latest-processed) .. its job seen succeeded */
    double open_read_s; /* then MACHINE/DISK@failover opened and a 4 KiB read answered */
    double total_s;     /* the request .. the first byte */
} bt_fo_t;

/*
 * Run `tidemark serve` on dir (journal/, index/, base/: nothing else may
 * have them open), ask it to fail the machine over at latest-processed
 * with a cold page cache, and time it to the first 4 KiB read at off of
 * MACHINE/DISK@failover. The appliance is stopped after. 0 or an error
 * with err saying why.
 */
int bt_failover_first_byte(const char *dir, uint64_t off, bt_fo_t *out, char *err, size_t errlen);

/* ---- the servers (bt_serve.c) ------------------------------------------ */

typedef struct bt_tidemark bt_tidemark_t;

/* tgt_exports_start on 127.0.0.1:0 with a loop on a thread of its own.
 * 0 or an error (printed). */
int bt_tidemark_start(pts_t *pts, jnl_t *jnl, bt_tidemark_t **out);
int bt_tidemark_port(const bt_tidemark_t *t);
/* Stop the exports from their thread, join it, close the loop. */
void bt_tidemark_stop(bt_tidemark_t *t);

typedef struct bt_qemu {
    pid_t pid;
    int port;
} bt_qemu_t;

/* qemu-nbd --read-only --persistent -f raw -x name --cache=writeback
 * --aio=threads -b 127.0.0.1 -p PORT raw, started and waited for until it
 * accepts connections (it dies with us). 0 or an error (printed). */
int bt_qemu_start(const char *raw, const char *name, bt_qemu_t *q);
/* Its peak resident set (VmHWM), KiB; 0 when unknown. */
long bt_qemu_peak_rss_kib(const bt_qemu_t *q);
void bt_qemu_stop(bt_qemu_t *q);

/* ---- helpers (bt_util.c) ----------------------------------------------- */

/* CPU seconds of this process's threads so far, by job: the benchmark's
 * main thread (the NBD client), the exports' read threads (tm-nbd-read),
 * and every other thread (the exports' loop, the journal, the points
 * stage, RocksDB). From /proc/self/task; clock-tick resolution. */
typedef struct bt_tcpu {
    double client_s, read_s, other_s;
} bt_tcpu_t;
void bt_thread_cpu(bt_tcpu_t *out);
/* xorshift64*: the next of *x (never seeded with 0). */
uint64_t bt_rand(uint64_t *x);
/* n distinct slots out of total, in a random order (tm_free it); NULL on -ENOMEM. */
uint32_t *bt_pick_slots(uint64_t total, uint64_t n, uint64_t seed);

#endif
