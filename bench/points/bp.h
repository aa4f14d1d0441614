/*
 * bench_points internals: feeding ingest-format batches into a journal the
 * way ingest does (bp_feed.c), the two workloads (bp_load.c: pre-encoded
 * batches at random offsets; bp_rebuild.c: the 4 GiB disk with 10% changed
 * and its raw and qcow2 twins), and small process and file helpers
 * (bp_util.c). Only bench/points/ includes this.
 */
#ifndef TM_BENCH_POINTS_BP_H
#define TM_BENCH_POINTS_BP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/journal/bj.h"
#include "journal/journal.h"

#define BP_MACHINE "bench-m1"
#define BP_DISK_NAME "vda"

/* ---- feeding a journal (bp_feed.c) ------------------------------------ */

/* One batch: a RECORDS frame body as an agent sends it (its header's
 * first_seq already the one asked for). */
typedef struct bp_batch {
    const uint8_t *body;
    size_t len;
    uint16_t count;     /* writes in it */
    uint64_t raw_bytes; /* their data, uncompressed */
} bp_batch_t;

/* Fill *out with the batch starting at stream sequence first_seq: 0, 1 when
 * there is no more, or a negative error. The body must stay valid until the
 * next call. */
typedef int (*bp_next_fn)(void *arg, uint64_t first_seq, bp_batch_t *out);

typedef struct bp_feed_result {
    double secs;          /* first append to the last one durable */
    uint64_t batches;     /* journal records appended */
    uint64_t writes;      /* writes in them */
    uint64_t raw_bytes;   /* the writes' data, uncompressed */
    uint64_t jnl_bytes;   /* what the journal wrote (its stats) */
    uint64_t fsyncs;      /* its write + fdatasync rounds */
} bp_feed_result_t;

/* Append the machine's disks record (journal type 2), then a batch holding
 * the disk's SYNCED at sequence 1, and wait for both: the stream goes on
 * at sequence 2. */
int bp_append_disks(jnl_t *j, const char *machine, const char *disk, uint64_t size);

/*
 * Append batches from next() as ingest does (journal type 1: ingest's batch
 * header, then the body, journal flags 0), keeping up to `inflight` appends
 * outstanding, until next() says there is no more; then wait until all are
 * durable. *seq is the first sequence to use and is advanced past the last.
 */
int bp_feed(jnl_t *j, const char *machine, unsigned inflight, bp_next_fn next, void *arg, uint64_t *seq,
            bp_feed_result_t *out);

/* ---- pre-encoded batches at random offsets (bp_load.c) ---------------- */

typedef struct bp_pool bp_pool_t;

typedef struct bp_pool_cfg {
    uint32_t wsize;      /* bytes per write */
    unsigned per_batch;  /* writes per batch */
    uint64_t disk_size;  /* offsets are random multiples of wsize below this */
    uint64_t total;      /* write bytes to produce in all */
    uint64_t seed;
} bp_pool_cfg_t;

/* Encode a pool of distinct batches (about 32 MiB); next() hands them out in
 * turn with first_seq and the offsets rewritten. 0 or -ENOMEM. */
int bp_pool_new(const bp_pool_cfg_t *cfg, bp_pool_t **out);
void bp_pool_free(bp_pool_t *p);
int bp_pool_next(void *pool, uint64_t first_seq, bp_batch_t *out);

/* ---- processing rate and `latest` (bp_proc.c) ------------------------- */

typedef struct bp_proc_result {
    bp_feed_result_t feed; /* the ingest side: appends made durable */
    double proc_s;         /* pts_open until pts_sync returned: everything indexed */
    double proc_cpu_s;     /* this process's CPU time meanwhile (processor + RocksDB) */
    uint64_t extents;      /* indexed (pts stats) */
    uint64_t records;      /* journal records processed */
} bp_proc_result_t;

/* Feed cfg's workload into a fresh journal in dir/name (pre-warmed from
 * warm unless NULL), then open the points stage on it and time processing.
 * The folder is removed after. */
int bp_proc_run(const char *dir, const char *name, const bp_pool_cfg_t *cfg, unsigned inflight,
                const bj_pool_t *warm, bp_proc_result_t *out);

typedef struct bp_latest_result {
    bp_feed_result_t feed; /* the backlog, appended while no processor ran */
    double open_s;         /* pts_open (the processor starts inside) */
    double latest_s;       /* pts_cut_latest: process everything, cut the point */
} bp_latest_result_t;

/* A machine the index knows (its first batch processed, the processor
 * stopped), then cfg's workload appended as a backlog, then pts_open and
 * pts_cut_latest timed. */
int bp_latest_run(const char *dir, const char *name, const bp_pool_cfg_t *cfg, unsigned inflight,
                  const bj_pool_t *warm, bp_latest_result_t *out);

/* ---- the rebuild comparison (bp_rebuild.c) ---------------------------- */

typedef struct bp_rebuild bp_rebuild_t;

typedef struct bp_rebuild_cfg {
    const char *dir;     /* scratch: rebuild/ is made inside */
    uint64_t size;       /* the disk, a multiple of 64 KiB */
    double changed_pct;  /* of it written, in distinct 64 KiB slots */
    uint64_t seed;
    unsigned inflight;   /* outstanding appends while feeding the journal */
    bool drop_caches;    /* drop the page cache before each timed rebuild */
} bp_rebuild_cfg_t;

/* Figures of the untimed preparation. */
typedef struct bp_rebuild_setup {
    uint64_t writes, changed_bytes;
    uint64_t jnl_bytes;    /* what the journal wrote for them */
    uint64_t chain_bytes;  /* the 10 overlays on disk */
    double sources_s;      /* journal + raw reference + tenths, and processing */
    double process_s;      /* pts_open to pts_sync of those writes */
    double chain_s;        /* building the qcow2 chain */
    bool caches_dropped;   /* drop_caches asked for and working */
} bp_rebuild_setup_t;

/* One round: each rebuild to its last write, and to its data on disk. */
typedef struct bp_rebuild_result {
    double tm_nosync_s, tm_sync_s, tm_cpu_s;
    double fine_nosync_s, fine_sync_s; /* the reader with a 4 KiB hole check (bench's own writer) */
    double cp_nosync_s, cp_sync_s;
    double q_nosync_s, q_sync_s;
    uint64_t tm_alloc, fine_alloc, cp_alloc, q_alloc; /* bytes each output takes on disk */
    bool verified;       /* tidemark's output equals the raw reference */
    bool chain_verified; /* so does qemu-img's (checked in round 0) */
} bp_rebuild_result_t;

/* Make the journal (processed), the raw reference and the qcow2 chain.
 * 0, or a negative error (printed). */
int bp_rebuild_prepare(const bp_rebuild_cfg_t *cfg, bp_rebuild_t **out, bp_rebuild_setup_t *su);
/* The three timed rebuilds, then the comparisons. warm (NULL: none) is the
 * pool the pre-warm scratch is written from. TM_ECORRUPT when an output
 * differs from the reference (the files are kept). */
int bp_rebuild_round(bp_rebuild_t *r, unsigned round, bool drop, const bj_pool_t *warm, bp_rebuild_result_t *res);
void bp_rebuild_free(bp_rebuild_t *r);

/* ---- helpers (bp_util.c) ---------------------------------------------- */

/* Run argv (argv[0] looked up in PATH), stdout and stderr to ours unless
 * quiet (then to /dev/null); wall seconds in *secs. 0, or -1 after printing
 * why (exit status or signal). */
int bp_run(char *const argv[], bool quiet, double *secs);
/* fsync the file at path; seconds in *secs. 0 or -errno. */
int bp_fsync_path(const char *path, double *secs);
/* Bytes the file at path takes on disk (st_blocks * 512); 0 on error. */
uint64_t bp_allocated(const char *path);
/* CPU seconds (user + system) this process used so far, all threads. */
double bp_cpu_secs(void);

#endif
