/*
 * One journal run of a cell: N logical appenders, each keeping exactly one
 * append outstanding. An appender's completion callback (on the journal's
 * writer thread) records the append's latency and submits the appender's
 * next append at once, so while the writer syncs batch k, the callbacks of
 * batch k-1 have queued up to N records for batch k+1: the batch size
 * follows from N the way it would with N agents waiting for their acks.
 *
 * That puts the copy and checksum of the next appends (jnl_append's work)
 * on the writer thread, between one batch's sync and the next batch's
 * write. With cfg->submit_thread the callback only hands the appender to a
 * submitter thread of ours, the way the event loop will take completions,
 * so that work can overlap the writer's I/O.
 */
#include "bench/journal/bj.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "journal/journal.h"

/* Latencies kept per run at most; later appends still count, unsampled. */
#define BJ_MAX_LAT (16u << 20)
#define BJ_REC_TYPE 1

struct bj_run;

typedef struct bj_appender {
    jnl_append_req_t req; /* req.data points back here */
    struct bj_run *run;
    uint64_t submit_ns;
    uint64_t seq; /* appends this appender submitted, to vary the payload */
    unsigned id;
    struct bj_appender *next_ready; /* in the submitter's queue */
} bj_appender_t;

typedef struct bj_run {
    jnl_t *j;
    const bj_cfg_t *cfg;
    const bj_pool_t *pool;
    atomic_bool stop;          /* time is up: submit nothing more */
    atomic_uint_fast64_t issued; /* payload bytes claimed by submissions */
    atomic_uint_fast64_t done_records;
    atomic_uint_fast64_t done_bytes;
    atomic_int error; /* first failure, 0 if none */
    uint64_t *lat;    /* ns per append, submit to callback */
    size_t lat_cap;
    atomic_size_t lat_n;
    pthread_mutex_t mu; /* guards active, t_end */
    pthread_cond_t cv;
    unsigned active; /* appenders that will still complete something */
    uint64_t t_end;
    /* submit_thread mode: appenders whose append completed, to resubmit */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    bj_appender_t *ready;
    bool quit;
} bj_run_t;

static void bj__on_durable(jnl_append_req_t *req, int status);

/*
 * The journal's system calls, timed: with them the report can split the
 * writer's time per batch into pwrite, fdatasync, segment rolls and the
 * rest (encoding, copying, checksums, callbacks, wake-ups). jnl_io_t has no
 * context pointer, so the tally is global: one journal runs at a time.
 */
enum { BJ_IO_PWRITE, BJ_IO_FDATASYNC, BJ_IO_ROLL, BJ_IO_N };

static struct {
    atomic_uint_fast64_t ns[BJ_IO_N];
    atomic_uint_fast64_t n[BJ_IO_N];
} bj_io_tally;

static void bj__tally(int kind, uint64_t t0, bool count)
{
    atomic_fetch_add(&bj_io_tally.ns[kind], tm_mono_ns() - t0);
    if (count)
        atomic_fetch_add(&bj_io_tally.n[kind], 1);
}

static int bj__io_open(const char *path, int flags, mode_t mode)
{
    uint64_t t0 = tm_mono_ns();
    int fd = open(path, flags | O_CLOEXEC, mode);
    /* Opens for reading belong to recovery, not to the run. */
    if (flags & (O_WRONLY | O_RDWR))
        bj__tally(BJ_IO_ROLL, t0, false);
    return fd;
}

static ssize_t bj__io_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    uint64_t t0 = tm_mono_ns();
    ssize_t n = pwrite(fd, buf, len, off);
    bj__tally(BJ_IO_PWRITE, t0, true);
    return n;
}

static int bj__io_fdatasync(int fd)
{
    uint64_t t0 = tm_mono_ns();
    int rc = fdatasync(fd);
    bj__tally(BJ_IO_FDATASYNC, t0, true);
    return rc;
}

static int bj__io_fsync(int fd)
{
    /* The journal fsyncs only folders, after creating or renaming a segment. */
    uint64_t t0 = tm_mono_ns();
    int rc = fsync(fd);
    bj__tally(BJ_IO_ROLL, t0, false);
    return rc;
}

static int bj__io_fallocate(int fd, off_t off, off_t len)
{
    uint64_t t0 = tm_mono_ns();
    int rc = posix_fallocate(fd, off, len);
    bj__tally(BJ_IO_ROLL, t0, true);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

static const jnl_io_t bj_io = {
    .open = bj__io_open,
    .pwrite = bj__io_pwrite,
    .fdatasync = bj__io_fdatasync,
    .fsync = bj__io_fsync,
    .fallocate = bj__io_fallocate,
};

static void bj__tally_snap(uint64_t ns[BJ_IO_N], uint64_t n[BJ_IO_N])
{
    for (int k = 0; k < BJ_IO_N; k++) {
        ns[k] = atomic_load(&bj_io_tally.ns[k]);
        n[k] = atomic_load(&bj_io_tally.n[k]);
    }
}

static void bj__set_error(bj_run_t *run, int rc)
{
    int expect = 0;
    atomic_compare_exchange_strong(&run->error, &expect, rc);
}

/* The appender submits nothing more; the last one to stop ends the run. */
static void bj__retire(bj_appender_t *a)
{
    bj_run_t *run = a->run;
    pthread_mutex_lock(&run->mu);
    if (--run->active == 0) {
        run->t_end = tm_mono_ns();
        pthread_cond_signal(&run->cv);
    }
    pthread_mutex_unlock(&run->mu);
}

static void bj__submit(bj_appender_t *a)
{
    bj_run_t *run = a->run;
    size_t size = run->cfg->record;

    if (atomic_load(&run->stop) || atomic_load(&run->error) != 0)
        goto retire;
    if (atomic_fetch_add(&run->issued, size) + size > run->cfg->budget)
        goto retire;

    /* A different slice of the pool per append, so no two neighbours repeat. */
    size_t span = run->pool->len - size + 1;
    size_t off = (size_t)(((uint64_t)a->id * 7919u + a->seq * 104729u) * 64u % span);
    jnl_buf_t buf = {run->pool->base + off, size};
    a->seq++;
    a->submit_ns = tm_mono_ns();
    int rc = jnl_append(run->j, &a->req, BJ_REC_TYPE, &buf, 1, 0, bj__on_durable);
    if (rc != 0) {
        bj__set_error(run, rc);
        goto retire;
    }
    return;

retire:
    bj__retire(a);
}

static void bj__on_durable(jnl_append_req_t *req, int status)
{
    bj_appender_t *a = req->data;
    bj_run_t *run = a->run;
    uint64_t now = tm_mono_ns();

    if (status != 0) {
        bj__set_error(run, status);
        bj__retire(a);
        return;
    }
    size_t i = atomic_fetch_add(&run->lat_n, 1);
    if (i < run->lat_cap)
        run->lat[i] = now - a->submit_ns;
    atomic_fetch_add(&run->done_records, 1);
    atomic_fetch_add(&run->done_bytes, run->cfg->record);
    if (!run->cfg->submit_thread) {
        bj__submit(a);
        return;
    }
    pthread_mutex_lock(&run->qmu);
    a->next_ready = run->ready;
    run->ready = a;
    pthread_cond_signal(&run->qcv);
    pthread_mutex_unlock(&run->qmu);
}

static void *bj__submitter(void *arg)
{
    bj_run_t *run = arg;
    pthread_mutex_lock(&run->qmu);
    while (!run->quit) {
        if (!run->ready) {
            pthread_cond_wait(&run->qcv, &run->qmu);
            continue;
        }
        bj_appender_t *list = run->ready;
        run->ready = NULL;
        pthread_mutex_unlock(&run->qmu);
        while (list) {
            bj_appender_t *a = list;
            list = a->next_ready;
            bj__submit(a);
        }
        pthread_mutex_lock(&run->qmu);
    }
    pthread_mutex_unlock(&run->qmu);
    return NULL;
}

/* Wait until every appender retired, raising `stop` at the deadline or on a signal. */
static void bj__wait(bj_run_t *run, uint64_t deadline_ns)
{
    pthread_mutex_lock(&run->mu);
    while (run->active > 0) {
        uint64_t now = tm_mono_ns();
        if (now >= deadline_ns || bj_interrupted)
            atomic_store(&run->stop, true);
        /* Wake at least every 100 ms to notice a signal. */
        uint64_t until = now + 100000000u;
        if (!atomic_load(&run->stop) && deadline_ns < until)
            until = deadline_ns;
        struct timespec ts = {(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
        pthread_cond_timedwait(&run->cv, &run->mu, &ts);
    }
    pthread_mutex_unlock(&run->mu);
}

static int bj__run_init(bj_run_t *run, const bj_cfg_t *cfg, const bj_pool_t *pool)
{
    pthread_condattr_t ca;
    memset(run, 0, sizeof *run);
    run->cfg = cfg;
    run->pool = pool;
    atomic_init(&run->stop, false);
    atomic_init(&run->issued, 0);
    atomic_init(&run->done_records, 0);
    atomic_init(&run->done_bytes, 0);
    atomic_init(&run->error, 0);
    atomic_init(&run->lat_n, 0);

    pthread_mutex_init(&run->mu, NULL);
    pthread_mutex_init(&run->qmu, NULL);
    pthread_cond_init(&run->qcv, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&run->cv, &ca);
    pthread_condattr_destroy(&ca);

    /* Room for every append the byte budget allows, capped. */
    uint64_t cap = cfg->budget / cfg->record + cfg->appenders + 1;
    run->lat_cap = cap > BJ_MAX_LAT ? BJ_MAX_LAT : (size_t)cap;
    run->lat = tm_malloc(run->lat_cap * sizeof *run->lat);
    if (!run->lat)
        return -ENOMEM;
    /* Touch it now so page faults do not land inside the measurement. */
    memset(run->lat, 0, run->lat_cap * sizeof *run->lat);
    return 0;
}

static void bj__run_free(bj_run_t *run)
{
    pthread_cond_destroy(&run->cv);
    pthread_mutex_destroy(&run->mu);
    pthread_cond_destroy(&run->qcv);
    pthread_mutex_destroy(&run->qmu);
    tm_free(run->lat);
}

int bj_run_journal(const char *dir, const bj_cfg_t *cfg, const bj_pool_t *pool, bj_jnl_result_t *out)
{
    bj_run_t run;
    jnl_stats_t s0, s1;
    bj_appender_t *apps = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    if (pool->len < cfg->record)
        return TM_EINVAL;
    rc = bj__run_init(&run, cfg, pool);
    if (rc != 0)
        goto out_free_run;
    apps = tm_calloc(cfg->appenders, sizeof *apps);
    if (!apps) {
        rc = -ENOMEM;
        goto out_free_run;
    }

    jnl_options_t opts = {.io = &bj_io}; /* defaults otherwise: 64 MiB segments */
    rc = jnl_open(dir, &opts, &run.j);
    if (rc != 0) {
        fprintf(stderr, "bench_journal: jnl_open %s: %s\n", dir, tm_strerror(rc));
        goto out_free_apps;
    }
    jnl_get_stats(run.j, &s0);
    uint64_t io_ns0[BJ_IO_N], io_n0[BJ_IO_N], io_ns1[BJ_IO_N], io_n1[BJ_IO_N];
    bj__tally_snap(io_ns0, io_n0);

    run.active = cfg->appenders;
    for (unsigned i = 0; i < cfg->appenders; i++) {
        apps[i].req.data = &apps[i];
        apps[i].run = &run;
        apps[i].id = i;
    }
    pthread_t submitter;
    if (cfg->submit_thread && (rc = -pthread_create(&submitter, NULL, bj__submitter, &run)) != 0) {
        jnl_close(run.j);
        jnl_destroy(run.j);
        goto out_free_apps;
    }
    uint64_t t0 = tm_mono_ns();
    for (unsigned i = 0; i < cfg->appenders; i++)
        bj__submit(&apps[i]);
    bj__wait(&run, t0 + (uint64_t)(cfg->seconds * 1e9));
    if (cfg->submit_thread) {
        pthread_mutex_lock(&run.qmu);
        run.quit = true;
        pthread_cond_signal(&run.qcv);
        pthread_mutex_unlock(&run.qmu);
        pthread_join(submitter, NULL);
    }

    /* Every callback has run; the stats now cover exactly this run's appends. */
    jnl_get_stats(run.j, &s1);
    bj__tally_snap(io_ns1, io_n1);
    jnl_close(run.j);
    jnl_destroy(run.j);

    rc = atomic_load(&run.error);
    if (rc != 0) {
        fprintf(stderr, "bench_journal: append failed: %s\n", tm_strerror(rc));
        goto out_free_apps;
    }

    out->secs = (double)(run.t_end - t0) / 1e9;
    out->records = atomic_load(&run.done_records);
    out->payload_bytes = atomic_load(&run.done_bytes);
    out->batches = s1.batches - s0.batches;
    out->disk_bytes = s1.bytes_written - s0.bytes_written;
    out->write_ns = io_ns1[BJ_IO_PWRITE] - io_ns0[BJ_IO_PWRITE];
    out->writes = io_n1[BJ_IO_PWRITE] - io_n0[BJ_IO_PWRITE];
    out->sync_ns = io_ns1[BJ_IO_FDATASYNC] - io_ns0[BJ_IO_FDATASYNC];
    out->syncs = io_n1[BJ_IO_FDATASYNC] - io_n0[BJ_IO_FDATASYNC];
    out->roll_ns = io_ns1[BJ_IO_ROLL] - io_ns0[BJ_IO_ROLL];
    out->rolls = io_n1[BJ_IO_ROLL] - io_n0[BJ_IO_ROLL];

    size_t n = atomic_load(&run.lat_n);
    if (n > run.lat_cap)
        n = run.lat_cap;
    bj_sort_u64(run.lat, n);
    out->lat_kept = n;
    out->p50_us = (double)bj_percentile(run.lat, n, 0.50) / 1e3;
    out->p99_us = (double)bj_percentile(run.lat, n, 0.99) / 1e3;
    out->max_us = n ? (double)run.lat[n - 1] / 1e3 : 0;

out_free_apps:
    tm_free(apps);
out_free_run:
    bj__run_free(&run);
    return rc;
}
