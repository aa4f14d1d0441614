/*
 * bench_journal internals: one journal run, one baseline run, and the small
 * helpers they share. Only bench/journal/ includes this.
 */
#ifndef TM_BENCH_JOURNAL_BJ_H
#define TM_BENCH_JOURNAL_BJ_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Set by SIGINT/SIGTERM: runs stop early and report -EINTR. */
extern volatile sig_atomic_t bj_interrupted;

/* What one cell asks of one journal run. */
typedef struct bj_cfg {
    size_t record;      /* payload bytes per append */
    unsigned appenders; /* logical appenders, each with one append outstanding */
    double seconds;     /* stop submitting after this long ... */
    uint64_t budget;    /* ... or once this many payload bytes were submitted */
    bool submit_thread; /* resubmit from a thread of our own, not the callback */
} bj_cfg_t;

/* Incompressible bytes the appends and the baseline take their data from. */
typedef struct bj_pool {
    const uint8_t *base;
    size_t len;
} bj_pool_t;

typedef struct bj_jnl_result {
    double secs;            /* first submit to last completion */
    uint64_t records;       /* appends made durable */
    uint64_t payload_bytes; /* their payload */
    uint64_t batches;       /* write + fdatasync rounds (jnl stats delta) */
    uint64_t disk_bytes;    /* bytes the journal wrote (jnl stats delta) */
    uint64_t lat_kept;      /* latencies recorded (capped array) */
    double p50_us, p99_us, max_us;
    /* Time the journal spent in its system calls (timed through jnl_io_t). */
    uint64_t write_ns, writes;     /* pwrite */
    uint64_t sync_ns, syncs;       /* fdatasync */
    uint64_t roll_ns, rolls;       /* new segments: open, fallocate, fsync (rolls = fallocates) */
} bj_jnl_result_t;

typedef struct bj_base_result {
    double secs;    /* first write to last fdatasync */
    uint64_t bytes; /* bytes written */
    uint64_t syncs; /* fdatasync calls */
    uint64_t write_ns, sync_ns;
} bj_base_result_t;

/*
 * Open a fresh journal in dir (which must not hold one), run the cell's
 * appenders until the time or byte budget is used, wait for every
 * completion, close. 0 or a negative code (printed to stderr).
 */
int bj_run_journal(const char *dir, const bj_cfg_t *cfg, const bj_pool_t *pool, bj_jnl_result_t *out);

/*
 * Write total bytes to a new file at path as `chunks` sequential write()
 * batches of (nearly) equal size, fdatasync after each; unlink it after.
 * With prealloc the file is first fallocated to its final size and synced,
 * untimed (the strictest bar: no allocation while timing). 0 or -errno
 * (printed to stderr).
 */
int bj_run_baseline(const char *path, uint64_t total, uint64_t chunks, bool prealloc, const bj_pool_t *pool,
                    bj_base_result_t *out);

/*
 * Write `bytes` to a new scratch file at path and delete it unsynced, so
 * the next run's page cache comes from warm, just-freed memory (see
 * bj_prewarm.c for why). 0 or -errno.
 */
int bj_prewarm(const char *path, uint64_t bytes, const bj_pool_t *pool);

/* Median of v[0..n) (sorts v); 0 for n == 0. */
double bj_median(double *v, size_t n);

/* Nearest-rank percentile p (0..1) of sorted v[0..n); 0 for n == 0. */
uint64_t bj_percentile(const uint64_t *sorted, size_t n, double p);

void bj_sort_u64(uint64_t *v, size_t n);

/* Remove path and everything below it; 0 or -errno. */
int bj_rmtree(const char *path);

/* Fill buf with pseudo-random bytes (xorshift; incompressible to lz4). */
void bj_fill_random(uint8_t *buf, size_t len, uint64_t seed);

/* "64 KiB", "1 MiB", "100 B" into buf; returns buf. */
const char *bj_size_str(uint64_t v, char *buf, size_t len);
/* bj_prewarm() of a file in tmpdir, for a run about to write `bytes`. */
int bj_prewarm_in(const char *tmpdir, uint64_t bytes, const bj_pool_t *pool);

/* "64K", "1M", "4096" (K/M/G, optional "iB"/"B") -> bytes; false when
 * malformed or zero. */
bool bj_parse_size(const char *s, uint64_t *out);
/* A comma-separated list of sizes, at most max of them, into out. */
/* Write back dirty pages, then drop clean caches (root only). true when it worked. */
bool bj_drop_caches(void);
/* Free bytes for an unprivileged writer of the file system holding path; 0 on error. */
uint64_t bj_free_bytes(const char *path);
/* True when path is on a tmpfs (figures would mean nothing for a disk). */
bool bj_on_tmpfs(const char *path);
/* Peak resident set of this process, KiB. */
long bj_peak_rss_kib(void);
/* A decimal number in [lo, hi] (no sign, nothing after it). */
bool bj_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

bool bj_parse_list(const char *arg, uint64_t *out, unsigned max, unsigned *n);

#endif
