/*
 * Fault loops (after SQLite's do_faultsim_test): a jnl_io_t counts the
 * journal's system calls and fails the Nth one. For N = 1, 2, ... a whole
 * scenario runs (open, ~40 appends of mixed sizes across a few small
 * segments, some concurrent, close) until one completes without the fault
 * firing. Each run asserts that every operation succeeded or failed with the
 * expected code, then reopens with the real calls and checks the guarantees:
 * every acknowledged record is there byte for byte; after a transient fault
 * nothing else is; after a persistent one at most the failed batch's records
 * follow the acknowledged prefix, contiguous.
 *
 * Modes: transient (only call N fails; jnl_recover() is called after a
 * failure and the scenario carries on) and persistent (call N and every
 * later one fail), each with EIO and ENOSPC; plus a short pwrite (the Nth
 * pwrite writes half its bytes), transient and persistent.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "base/clock.h"
#include "base/err.h"
#include "journal/format.h"
#include "journal/journal.h"
#include "support/tmt.h"
#include "support/tmt_jnl.h"

#define SEG (64u << 10)
/* max_record must fit a segment (the default, 8 MiB, does not fit 64 KiB). */
#define MAXREC_OPT (32u << 10)
#define PREFILL 3
#define NREC 40
#define NHEAL 2
#define LSN_CAP (PREFILL + NREC + NHEAL + 1) /* LSNs a run can reach, plus one */
#define MAX_N 5000
#define WAIT_MS 20000
#define ULL(x) ((unsigned long long)(x))

/* ---- the faulty system calls ---------------------------------------------- */

typedef enum { F_TRANSIENT, F_PERSISTENT } fmode_t;

static struct {
    pthread_mutex_t mu;
    bool armed;
    fmode_t mode;
    bool short_write; /* count pwrites only; the Nth writes half */
    int err;
    unsigned long target;
    unsigned long calls;
    unsigned long fired; /* calls failed */
    char first[16];      /* name of the first failed call */
} F = {.mu = PTHREAD_MUTEX_INITIALIZER};

static bool hit(const char *name, bool is_pwrite)
{
    pthread_mutex_lock(&F.mu);
    bool h = false;
    if (F.armed && (!F.short_write || is_pwrite)) {
        unsigned long n = ++F.calls;
        h = n == F.target || (F.mode == F_PERSISTENT && n > F.target);
        if (h && F.fired++ == 0)
            snprintf(F.first, sizeof F.first, "%s", name);
    }
    pthread_mutex_unlock(&F.mu);
    return h;
}

static int f_open(const char *path, int flags, mode_t mode)
{
    if (hit("open", false)) {
        errno = F.err;
        return -1;
    }
    return open(path, flags, mode);
}

static int f_close(int fd)
{
    if (hit("close", false)) {
        close(fd); /* Linux releases the descriptor even when close fails */
        errno = F.err;
        return -1;
    }
    return close(fd);
}

static ssize_t f_pread(int fd, void *buf, size_t len, off_t off)
{
    if (hit("pread", false)) {
        errno = F.err;
        return -1;
    }
    return pread(fd, buf, len, off);
}

static ssize_t f_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (hit("pwrite", true)) {
        if (F.short_write && len > 1)
            return pwrite(fd, buf, len / 2, off);
        errno = F.err;
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

static int f_fdatasync(int fd)
{
    if (hit("fdatasync", false)) {
        errno = F.err;
        return -1;
    }
    return fdatasync(fd);
}

static int f_fsync(int fd)
{
    if (hit("fsync", false)) {
        errno = F.err;
        return -1;
    }
    return fsync(fd);
}

static int f_fallocate(int fd, off_t off, off_t len)
{
    if (hit("fallocate", false)) {
        errno = F.err;
        return -1;
    }
    int rc = posix_fallocate(fd, off, len);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

static int f_rename(const char *from, const char *to)
{
    if (hit("rename", false)) {
        errno = F.err;
        return -1;
    }
    return rename(from, to);
}

static int f_unlink(const char *path)
{
    if (hit("unlink", false)) {
        errno = F.err;
        return -1;
    }
    return unlink(path);
}

static const jnl_io_t fault_io = {
    .open = f_open,
    .close = f_close,
    .pread = f_pread,
    .pwrite = f_pwrite,
    .fdatasync = f_fdatasync,
    .fsync = f_fsync,
    .fallocate = f_fallocate,
    .rename = f_rename,
    .unlink = f_unlink,
};

static void arm(unsigned long n, fmode_t mode, int err, bool short_write)
{
    pthread_mutex_lock(&F.mu);
    F.armed = true;
    F.mode = mode;
    F.err = err;
    F.short_write = short_write;
    F.target = n;
    F.calls = 0;
    F.fired = 0;
    F.first[0] = '\0';
    pthread_mutex_unlock(&F.mu);
}

static unsigned long disarm(void)
{
    pthread_mutex_lock(&F.mu);
    F.armed = false;
    unsigned long fired = F.fired;
    pthread_mutex_unlock(&F.mu);
    return fired;
}

/* ---- the scenario ---------------------------------------------------------- */

static size_t rec_len(uint64_t id)
{
    return 100 + (size_t)(tmt_mix(0xfa17, id) % 8000);
}

static void rec_bytes(uint64_t id, uint8_t *buf)
{
    tmt_fill(buf, rec_len(id), 0xfa17, id, id % 3 == 0);
}

/* Per run: what each append became. Record ids: 0..PREFILL-1 are the
 * prefill, PREFILL.. the scenario's. */
typedef struct run {
    uint64_t n;
    fmode_t mode;
    int err;      /* the injected -errno as the journal reports it */
    bool short_write;
    uint64_t acked_id[LSN_CAP];  /* LSN -> id + 1 of the acked append */
    uint64_t failed_id[LSN_CAP]; /* LSN -> id + 1 of a failed append with that LSN */
    bool heal;    /* persistent: clear the fault after the appends, jnl_recover() */
    bool healed;  /* ...and it worked: nothing but acknowledged records may remain */
    bool open_failed;
    unsigned acked, failed, refused;
    uint64_t last_seg; /* segment of the last acknowledged append */
} run_t;

static char msgbuf[768];
static run_t *cur;

static const char *ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *ctx(const char *fmt, ...)
{
    int k = snprintf(msgbuf, sizeof msgbuf, "[%s %s%s, fault at call %llu (%s)] ",
                     cur->mode == F_TRANSIENT ? "transient" : "persistent", tmt_errname(cur->err),
                     cur->short_write ? " short-pwrite" : "", ULL(cur->n), F.first[0] ? F.first : "not fired");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msgbuf + k, sizeof msgbuf - (size_t)k, fmt, ap);
    va_end(ap);
    return msgbuf;
}

#define CHECK(cond, ...) cr_assert((cond), "%s", ctx(__VA_ARGS__))

static bool allowed(int rc)
{
    return rc == cur->err || rc == TM_EFAILED;
}

static void prefill(const char *dir)
{
    jnl_options_t o = {.segment_size = SEG, .max_record = MAXREC_OPT};
    jnl_t *j = tmt_open(dir, &o);
    static uint8_t buf[8200];
    for (uint64_t id = 0; id < PREFILL; id++) {
        rec_bytes(id, buf);
        uint64_t lsn;
        cr_assert_eq(jnl_append_wait(j, 1, buf, rec_len(id), 0, &lsn), 0);
        cr_assert_eq(lsn, id + 1);
        cur->acked_id[lsn] = id + 1;
    }
    jnl_close(j);
    jnl_destroy(j);
}

static void note_ack(uint64_t lsn, uint64_t id)
{
    CHECK(lsn >= 1 && lsn < LSN_CAP, "acked LSN %llu out of range", ULL(lsn));
    CHECK(cur->acked_id[lsn] == 0, "LSN %llu acknowledged twice (ids %llu and %llu)", ULL(lsn),
          ULL(cur->acked_id[lsn] - 1), ULL(id));
    cur->acked_id[lsn] = id + 1;
    cur->acked++;
}

/* A reader pass on the journal under fault: whatever it returns as data is an
 * acknowledged record, byte for byte. */
static void read_under_fault(jnl_t *j, uint8_t *buf)
{
    jnl_reader_t *r;
    int rc = jnl_reader_open(j, 0, &r);
    if (rc != 0) {
        CHECK(allowed(rc), "reader_open under fault: %s", tmt_errname(rc));
        return;
    }
    for (;;) {
        jnl_record_t rec;
        rc = jnl_reader_next(r, &rec);
        if (rc == -EAGAIN)
            break;
        if (rc != 0) {
            CHECK(allowed(rc), "reader_next under fault: %s", tmt_errname(rc));
            break;
        }
        CHECK(rec.lsn < LSN_CAP && cur->acked_id[rec.lsn] != 0,
              "the reader returned LSN %llu, which was never acknowledged", ULL(rec.lsn));
        uint64_t id = cur->acked_id[rec.lsn] - 1;
        rec_bytes(id, buf);
        CHECK(rec.len == rec_len(id) && memcmp(rec.data, buf, rec.len) == 0,
              "the reader returned other bytes for LSN %llu", ULL(rec.lsn));
    }
    jnl_reader_close(r);
}

static void scenario(const char *dir, uint8_t *buf)
{
    jnl_options_t o = {.segment_size = SEG, .max_record = MAXREC_OPT, .retry_ms = 5, .io = &fault_io};
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    if (rc != 0) {
        CHECK(rc == cur->err, "jnl_open: %s", tmt_errname(rc));
        cur->open_failed = true;
        if (cur->mode == F_PERSISTENT)
            return;
        rc = jnl_open(dir, &o, &j);
        CHECK(rc == 0, "jnl_open after a transient fault: %s", tmt_errname(rc));
    }

    static tmt_req_t reqs[NREC];
    memset(reqs, 0, sizeof reqs);
    tmt_group_t g;
    tmt_group_init(&g);
    unsigned i = 0;
    /* After a failed batch the writer starts a fresh segment, so the next
     * acknowledged record is the first of its segment. */
    bool expect_fresh = false;
    while (i < NREC) {
        unsigned gs = 1 + (i * 7) % 4; /* 1..4 appends in flight together */
        unsigned first = i;
        bool failure = false;
        int sync_rc[4] = {0};
        for (unsigned k = 0; k < gs && i < NREC; k++, i++) {
            uint64_t id = PREFILL + i;
            rec_bytes(id, buf);
            reqs[i].id = id;
            sync_rc[k] = tmt_append(&g, &reqs[i], j, (uint8_t)(1 + id % 200), buf, rec_len(id),
                                    id % 3 == 0 ? JNL_APPEND_COMPRESS : 0);
            if (sync_rc[k] != 0) {
                CHECK(sync_rc[k] == TM_EFAILED, "jnl_append of id %llu: %s", ULL(id), tmt_errname(sync_rc[k]));
                cur->refused++;
                failure = true;
            }
        }
        CHECK(tmt_group_wait(&g, WAIT_MS), "callbacks did not run within %d ms", WAIT_MS);
        for (unsigned k = first; k < i; k++) {
            if (sync_rc[k - first] != 0) {
                CHECK(reqs[k].calls == 0, "a refused append's callback ran");
                continue;
            }
            CHECK(reqs[k].calls == 1, "callback of id %llu ran %u times", ULL(reqs[k].id), reqs[k].calls);
            if (reqs[k].status == 0) {
                note_ack(reqs[k].req.lsn, reqs[k].id);
                cur->last_seg = reqs[k].req.pos.seg;
                CHECK(!expect_fresh || reqs[k].req.pos.off == JNL_SEG_DATA_OFF,
                      "LSN %llu, the first acknowledged after a failure, is at %llu:%llu, not at the start of a "
                      "fresh segment",
                      ULL(reqs[k].req.lsn), ULL(reqs[k].req.pos.seg), ULL(reqs[k].req.pos.off));
                expect_fresh = false;
                continue;
            }
            expect_fresh = true;
            CHECK(reqs[k].status == cur->err, "callback status of id %llu: %s", ULL(reqs[k].id),
                  tmt_errname(reqs[k].status));
            uint64_t l = reqs[k].req.lsn;
            CHECK(l >= 1 && l < LSN_CAP, "failed append LSN %llu", ULL(l));
            if (cur->failed_id[l] == 0)
                cur->failed_id[l] = reqs[k].id + 1;
            cur->failed++;
            failure = true;
        }
        if (failure) {
            rc = jnl_recover(j);
            jnl_stats_t st;
            jnl_get_stats(j, &st);
            if (cur->mode == F_TRANSIENT) {
                CHECK(rc == 0, "jnl_recover after a transient fault: %s", tmt_errname(rc));
                CHECK(st.error == 0, "stats.error %s after recovery", tmt_errname(st.error));
            } else {
                CHECK(rc == 0 || allowed(rc), "jnl_recover under a persistent fault: %s", tmt_errname(rc));
                CHECK(rc != 0 || st.error == 0, "stats.error %s after a recovery that worked", tmt_errname(st.error));
                CHECK(rc == 0 || st.error == cur->err, "stats.error %s while failed", tmt_errname(st.error));
            }
        }
    }
    if (cur->heal && F.fired > 0) {
        /* The condition clears: recovery works and appends resume, with the
         * next LSN after the acknowledged ones. */
        disarm();
        rc = jnl_recover(j);
        CHECK(rc == 0, "jnl_recover once the fault is gone: %s", tmt_errname(rc));
        uint64_t max_acked = 0;
        for (uint64_t l = 1; l < LSN_CAP; l++)
            if (cur->acked_id[l] != 0)
                max_acked = l;
        for (uint64_t id = PREFILL + NREC; id < PREFILL + NREC + NHEAL; id++) {
            rec_bytes(id, buf);
            tmt_req_t hr = {0};
            rc = tmt_append(&g, &hr, j, 1, buf, rec_len(id), 0);
            CHECK(rc == 0, "append after the fault cleared: %s", tmt_errname(rc));
            CHECK(tmt_group_wait(&g, WAIT_MS), "callback after the fault cleared");
            CHECK(hr.status == 0, "append after the fault cleared: status %s", tmt_errname(hr.status));
            CHECK(hr.req.lsn == ++max_acked, "LSN %llu after the fault cleared, want %llu", ULL(hr.req.lsn),
                  ULL(max_acked));
            CHECK(id > PREFILL + NREC || hr.req.pos.off == JNL_SEG_DATA_OFF,
                  "the first record after recovery is at %llu:%llu, not at the start of a fresh segment",
                  ULL(hr.req.pos.seg), ULL(hr.req.pos.off));
            note_ack(hr.req.lsn, id);
        }
        cur->healed = true;
    }
    read_under_fault(j, buf);
    jnl_close(j);
    jnl_destroy(j);
    tmt_group_destroy(&g);
}

/* Reopen with the real calls and check what survived. */
static void verify(const char *dir, uint8_t *buf)
{
    jnl_options_t o = {.segment_size = SEG, .max_record = MAXREC_OPT};
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    CHECK(rc == 0, "reopen with the real calls: %s; log:\n%s", tmt_errname(rc), tmt_log_text());
    uint64_t max_acked = 0;
    for (uint64_t l = 1; l < LSN_CAP; l++)
        if (cur->acked_id[l] != 0)
            max_acked = l;

    tmt_rec_t *recs;
    size_t n = tmt_read_all(j, 0, &recs);
    CHECK(n >= max_acked, "%zu records after reopen, acknowledged up to LSN %llu", n, ULL(max_acked));
    for (size_t k = 0; k < n; k++) {
        uint64_t l = recs[k].lsn;
        CHECK(l == k + 1, "LSN %llu at place %zu: LSNs must run from 1 without a gap", ULL(l), k + 1);
        uint64_t id;
        if (l <= max_acked) {
            CHECK(cur->acked_id[l] != 0, "LSN %llu present but never acknowledged, below acknowledged %llu", ULL(l),
                  ULL(max_acked));
            id = cur->acked_id[l] - 1;
        } else {
            CHECK(cur->mode == F_PERSISTENT && !cur->healed,
                  "LSN %llu present after a %s though only up to %llu was acknowledged", ULL(l),
                  cur->healed ? "recovered fault" : "transient fault", ULL(max_acked));
            CHECK(cur->failed_id[l] != 0, "LSN %llu present but no append of the failed batch had it", ULL(l));
            id = cur->failed_id[l] - 1;
        }
        rec_bytes(id, buf);
        CHECK(recs[k].len == rec_len(id) && memcmp(recs[k].data, buf, recs[k].len) == 0,
              "LSN %llu: not the bytes of append id %llu", ULL(l), ULL(id));
    }
    tmt_recs_free(recs, n);
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    CHECK(st.durable_lsn == n, "durable_lsn %llu, %zu records read", ULL(st.durable_lsn), n);

    /* And it takes appends again. */
    uint64_t lsn = 0;
    rc = jnl_append_wait(j, 1, "again", 5, 0, &lsn);
    CHECK(rc == 0 && lsn == n + 1, "append after reopen: %s, LSN %llu", tmt_errname(rc), ULL(lsn));
    jnl_close(j);
    jnl_destroy(j);
}

/* The run's folder, removed by the suite's fini if a check stops it. */
static char dir[PATH_MAX];

static void cleanup(void)
{
    tmt_rmtree(dir);
}

TestSuite(faults, .fini = cleanup);

static void fault_loop_heal(fmode_t mode, int err, bool short_write, bool heal)
{
    tmt_log_capture();
    tm_log_set_level(TM_LOG_WARN);
    static run_t r;
    static uint8_t buf[8200];
    cur = &r;
    unsigned long n;
    unsigned runs_failed = 0, runs_refused = 0, runs_open_failed = 0;
    for (n = 1; n <= MAX_N; n++) {
        memset(&r, 0, sizeof r);
        r.n = n;
        r.mode = mode;
        r.err = -err;
        r.short_write = short_write;
        r.heal = heal;
        tmt_mkdtemp(dir, "faults");
        tmt_log_clear();
        prefill(dir);
        arm(n, mode, err, short_write);
        scenario(dir, buf);
        unsigned long fired = disarm();
        runs_failed += r.failed > 0;
        runs_refused += r.refused > 0;
        runs_open_failed += r.open_failed;
        verify(dir, buf);
        tmt_rmtree(dir);
        dir[0] = '\0';
        if (fired == 0) {
            CHECK(r.acked == NREC && r.failed == 0 && r.refused == 0, "no fault, yet %u acked, %u failed, %u refused",
                  r.acked, r.failed, r.refused);
            CHECK(r.last_seg >= 3, "the scenario should span several segments, ended in %llu", ULL(r.last_seg));
            break;
        }
    }
    cr_assert_leq(n, MAX_N, "the scenario never ran without a fault");
    cr_log_info("%s %s%s%s: %lu runs; %u with failed callbacks, %u with refused appends, %u with a failed open",
                mode == F_TRANSIENT ? "transient" : "persistent", tmt_errname(-err), short_write ? " short-pwrite" : "",
                heal ? " then cleared" : "", n, runs_failed, runs_refused, runs_open_failed);
}

static void fault_loop(fmode_t mode, int err, bool short_write)
{
    fault_loop_heal(mode, err, short_write, false);
}

Test(faults, transient_eio, .timeout = 280)
{
    fault_loop(F_TRANSIENT, EIO, false);
}

Test(faults, transient_enospc, .timeout = 280)
{
    fault_loop(F_TRANSIENT, ENOSPC, false);
}

Test(faults, persistent_eio, .timeout = 280)
{
    fault_loop(F_PERSISTENT, EIO, false);
}

Test(faults, persistent_enospc, .timeout = 280)
{
    fault_loop(F_PERSISTENT, ENOSPC, false);
}

Test(faults, transient_short_pwrite, .timeout = 280)
{
    fault_loop(F_TRANSIENT, EIO, true);
}

Test(faults, persistent_short_pwrite, .timeout = 280)
{
    fault_loop(F_PERSISTENT, EIO, true);
}

Test(faults, persistent_eio_then_cleared, .timeout = 280)
{
    fault_loop_heal(F_PERSISTENT, EIO, false, true);
}

Test(faults, persistent_short_pwrite_then_cleared, .timeout = 280)
{
    fault_loop_heal(F_PERSISTENT, EIO, true, true);
}

/* Without jnl_recover(): once the condition clears, the writer's own retry
 * (asked for by an append, at most every retry_ms) makes the journal usable
 * again. Appends are polled because the retry is timed by design. */
Test(faults, writer_retries_by_itself, .timeout = 60)
{
    tmt_log_capture();
    static run_t r;
    cur = &r;
    memset(&r, 0, sizeof r);
    r.mode = F_PERSISTENT;
    r.err = -EIO;
    tmt_mkdtemp(dir, "faults");
    prefill(dir);
    jnl_options_t o = {.segment_size = SEG, .max_record = MAXREC_OPT, .retry_ms = 20, .io = &fault_io};
    jnl_t *j = tmt_open(dir, &o);
    uint64_t lsn;
    cr_assert_eq(jnl_append_wait(j, 1, "ok", 2, 0, &lsn), 0);
    cr_assert_eq(lsn, PREFILL + 1);

    /* Every call from now on fails. */
    arm(1, F_PERSISTENT, EIO, false);
    r.n = 1;
    int rc = jnl_append_wait(j, 1, "lost", 4, 0, &lsn);
    CHECK(rc == -EIO, "append under the fault: %s", tmt_errname(rc));
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    CHECK(st.error == -EIO, "stats.error %s", tmt_errname(st.error));
    CHECK(st.durable_lsn == PREFILL + 1, "durable_lsn %llu", ULL(st.durable_lsn));
    rc = jnl_append_wait(j, 1, "refused", 7, 0, &lsn);
    CHECK(rc == TM_EFAILED || rc == -EIO, "append while failed: %s", tmt_errname(rc));
    disarm();

    uint64_t deadline = tm_mono_ns() + 10ull * 1000000000u;
    for (;;) {
        rc = jnl_append_wait(j, 1, "back", 4, 0, &lsn);
        if (rc == 0)
            break;
        CHECK(rc == TM_EFAILED, "append while the retry is pending: %s", tmt_errname(rc));
        CHECK(tm_mono_ns() < deadline, "the writer never retried on its own");
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    CHECK(lsn == PREFILL + 2, "LSN %llu after the retry, want %u", ULL(lsn), PREFILL + 2);
    jnl_get_stats(j, &st);
    CHECK(st.error == 0, "stats.error %s after the retry", tmt_errname(st.error));
    jnl_close(j);
    jnl_destroy(j);

    j = tmt_open(dir, &(jnl_options_t){.segment_size = SEG, .max_record = MAXREC_OPT});
    tmt_rec_t *recs;
    size_t n = tmt_read_all(j, 0, &recs);
    CHECK(n == PREFILL + 2, "%zu records after reopen", n);
    CHECK(recs[PREFILL].len == 2 && memcmp(recs[PREFILL].data, "ok", 2) == 0, "LSN %u", PREFILL + 1);
    CHECK(recs[PREFILL + 1].len == 4 && memcmp(recs[PREFILL + 1].data, "back", 4) == 0,
          "LSN %u is the record appended after the retry, not the lost one", PREFILL + 2);
    tmt_recs_free(recs, n);
    jnl_close(j);
    jnl_destroy(j);
    tmt_rmtree(dir);
}

/* A short pwrite counts as -EIO (the design's rule, after Redis). It fails
 * the batch (its record is not acknowledged and not there after reopen),
 * rather than being carried on from where it stopped. */
Test(faults, short_pwrite_fails_the_batch, .timeout = 60)
{
    tmt_log_capture();
    static run_t r;
    cur = &r;
    memset(&r, 0, sizeof r);
    r.mode = F_TRANSIENT;
    r.err = -EIO;
    r.short_write = true;
    r.n = 1;
    tmt_mkdtemp(dir, "faults");
    jnl_options_t o = {.segment_size = SEG, .max_record = MAXREC_OPT, .io = &fault_io};
    jnl_t *j = tmt_open(dir, &o);
    uint64_t lsn;
    cr_assert_eq(jnl_append_wait(j, 1, "a", 1, 0, &lsn), 0);

    static uint8_t big[1000];
    memset(big, 'b', sizeof big);
    arm(1, F_TRANSIENT, EIO, true); /* the next pwrite takes half its bytes */
    int rc = jnl_append_wait(j, 1, big, sizeof big, 0, &lsn);
    unsigned long fired = disarm();
    CHECK(fired == 1, "the short write happened");
    CHECK(rc == -EIO, "append whose write came up short: %s (want EIO)", tmt_errname(rc));
    rc = jnl_recover(j);
    CHECK(rc == 0, "jnl_recover: %s", tmt_errname(rc));
    cr_assert_eq(jnl_append_wait(j, 1, "c", 1, 0, &lsn), 0);
    CHECK(lsn == 2, "LSN %llu for the append after the failed one, want 2", ULL(lsn));
    jnl_close(j);
    jnl_destroy(j);

    j = tmt_open(dir, &(jnl_options_t){.segment_size = SEG, .max_record = MAXREC_OPT});
    tmt_rec_t *recs;
    size_t n = tmt_read_all(j, 0, &recs);
    CHECK(n == 2 && recs[1].len == 1 && recs[1].data[0] == 'c', "after reopen: %zu records", n);
    tmt_recs_free(recs, n);
    jnl_close(j);
    jnl_destroy(j);
    tmt_rmtree(dir);
}
