/*
 * Power loss (after SQLite's crash VFS, src/test6.c): a jnl_io_t remembers
 * every write that no fdatasync of its file has made durable yet. At a seeded
 * call the power goes: that call and every later one fail, the journal is
 * closed, and then each write still pending is, sector by sector and by the
 * seed, kept, dropped (the old bytes put back) or garbled. A reopen with the
 * real calls must find every acknowledged record byte for byte, LSNs from 1
 * without a gap, a clean end or a torn tail (never corruption: only the one
 * unfinished batch can be damaged), and nothing after the acknowledged
 * prefix but records of the batch that was in flight.
 *
 * A SIGKILL (test_crash.c) keeps the page cache, so it cannot catch an
 * acknowledgement sent before the data was synced; this test does.
 *
 *   TIDEMARK_POWERLOSS_TRIALS=N   run N trials (default 60)
 *   TIDEMARK_POWERLOSS_SEED=S     run the one trial with seed S
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "base/err.h"
#include "journal/format.h"
#include "journal/journal.h"
#include "support/tmt.h"
#include "support/tmt_jnl.h"

#define SEG (64u << 10)
#define MAXREC_OPT (32u << 10)
#define NREC 40
#define SECTOR 512
#define WAIT_MS 20000
#define DEFAULT_TRIALS 60
#define BASE_SEED 0x90e7105eull
#define ULL(x) ((unsigned long long)(x))

/* ---- the power-loss system calls ------------------------------------------ */

typedef struct pending {
    dev_t dev;
    ino_t ino;
    off_t off;
    size_t len;
    uint8_t *old; /* the bytes before the write */
} pending_t;

static struct {
    pthread_mutex_t mu;
    unsigned long calls;
    unsigned long crash_at; /* 0: never */
    bool dead;
    pending_t *pend;
    size_t npend, cap;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Count the call; true when the power is (now) off. */
static bool off(void)
{
    pthread_mutex_lock(&P.mu);
    P.calls++;
    if (P.crash_at != 0 && P.calls >= P.crash_at)
        P.dead = true;
    bool d = P.dead;
    pthread_mutex_unlock(&P.mu);
    return d;
}

static int p_open(const char *path, int flags, mode_t mode)
{
    if (off()) {
        errno = EIO;
        return -1;
    }
    return open(path, flags, mode);
}

static int p_close(int fd)
{
    if (off()) {
        close(fd);
        errno = EIO;
        return -1;
    }
    return close(fd);
}

static ssize_t p_pread(int fd, void *buf, size_t len, off_t o)
{
    if (off()) {
        errno = EIO;
        return -1;
    }
    return pread(fd, buf, len, o);
}

static ssize_t p_pwrite(int fd, const void *buf, size_t len, off_t o)
{
    if (off()) {
        errno = EIO;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    pending_t p = {.dev = st.st_dev, .ino = st.st_ino, .off = o, .len = len, .old = calloc(1, len ? len : 1)};
    ssize_t got = pread(fd, p.old, len, o); /* past the end reads as zeros */
    (void)got;
    ssize_t n = pwrite(fd, buf, len, o);
    if (n <= 0) {
        free(p.old);
        return n;
    }
    p.len = (size_t)n;
    pthread_mutex_lock(&P.mu);
    if (P.npend == P.cap) {
        P.cap = P.cap ? P.cap * 2 : 64;
        P.pend = realloc(P.pend, P.cap * sizeof *P.pend);
    }
    P.pend[P.npend++] = p;
    pthread_mutex_unlock(&P.mu);
    return n;
}

static int p_fdatasync(int fd)
{
    if (off()) {
        errno = EIO;
        return -1;
    }
    if (fdatasync(fd) != 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    /* Everything written to this file is durable now. */
    pthread_mutex_lock(&P.mu);
    size_t k = 0;
    for (size_t i = 0; i < P.npend; i++) {
        if (P.pend[i].dev == st.st_dev && P.pend[i].ino == st.st_ino)
            free(P.pend[i].old);
        else
            P.pend[k++] = P.pend[i];
    }
    P.npend = k;
    pthread_mutex_unlock(&P.mu);
    return 0;
}

static int p_fsync(int fd)
{
    if (off()) {
        errno = EIO;
        return -1;
    }
    return fsync(fd);
}

static int p_fallocate(int fd, off_t o, off_t len)
{
    if (off()) {
        errno = EIO;
        return -1;
    }
    int rc = posix_fallocate(fd, o, len);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return 0;
}

static int p_rename(const char *from, const char *to)
{
    if (off()) {
        errno = EIO;
        return -1;
    }
    return rename(from, to);
}

static int p_unlink(const char *path)
{
    if (off()) {
        errno = EIO;
        return -1;
    }
    return unlink(path);
}

static const jnl_io_t power_io = {
    .open = p_open,
    .close = p_close,
    .pread = p_pread,
    .pwrite = p_pwrite,
    .fdatasync = p_fdatasync,
    .fsync = p_fsync,
    .fallocate = p_fallocate,
    .rename = p_rename,
    .unlink = p_unlink,
};

static void power_reset(unsigned long crash_at)
{
    pthread_mutex_lock(&P.mu);
    for (size_t i = 0; i < P.npend; i++)
        free(P.pend[i].old);
    P.npend = 0;
    P.calls = 0;
    P.crash_at = crash_at;
    P.dead = false;
    pthread_mutex_unlock(&P.mu);
}

/* Apply the loss to what is still pending, newest first so overlapping
 * writes unwind to the oldest bytes. Returns how many sectors changed. */
static unsigned lose_power(const char *dir, uint64_t seed)
{
    tmt_rng_t rng;
    tmt_rng_seed(&rng, tmt_mix(seed, 0x1055));
    unsigned changed = 0;
    pthread_mutex_lock(&P.mu);
    P.dead = true;
    for (size_t i = P.npend; i-- > 0;) {
        pending_t *p = &P.pend[i];
        /* Find the file by inode: renames since the write do not matter, an
         * unlinked file is gone anyway. */
        DIR *d = opendir(dir);
        cr_assert_not_null(d);
        char path[PATH_MAX * 2];
        bool found = false;
        struct dirent *e;
        while (!found && (e = readdir(d)) != NULL) {
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            found = stat(path, &st) == 0 && st.st_dev == p->dev && st.st_ino == p->ino;
        }
        closedir(d);
        if (!found)
            continue;
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        cr_assert(fd >= 0);
        for (size_t s = 0; s < p->len; s += SECTOR) {
            size_t n = p->len - s < SECTOR ? p->len - s : SECTOR;
            uint64_t what = tmt_rng_next(&rng) % 3;
            if (what == 0)
                continue; /* the sector made it */
            uint8_t junk[SECTOR];
            const uint8_t *src = p->old + s;
            if (what == 2) {
                tmt_fill(junk, n, seed, i * 4096 + s, false);
                src = junk;
            }
            cr_assert_eq(pwrite(fd, src, n, p->off + (off_t)s), (ssize_t)n);
            changed++;
        }
        close(fd);
        free(p->old);
    }
    P.npend = 0;
    pthread_mutex_unlock(&P.mu);
    return changed;
}

/* ---- the scenario ------------------------------------------------------------ */

static uint64_t cur_seed;
static unsigned long cur_crash_at; /* kept for messages after the reset */
static char msg[512];

static const char *ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *ctx(const char *fmt, ...)
{
    int k = snprintf(msg, sizeof msg, "seed %llu (rerun: TIDEMARK_POWERLOSS_SEED=%llu), power off at call %lu: ",
                     ULL(cur_seed), ULL(cur_seed), cur_crash_at);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    va_end(ap);
    return msg;
}

#define CHECK(cond, ...) cr_assert((cond), "%s", ctx(__VA_ARGS__))

static size_t rec_len(uint64_t seed, uint64_t id)
{
    return 1 + (size_t)(tmt_mix(seed, id) % 9000);
}

static void rec_bytes(uint64_t seed, uint64_t id, uint8_t *buf)
{
    tmt_fill(buf, rec_len(seed, id), seed, id, id % 2 == 0);
}

typedef struct outcome {
    uint64_t acked_id[NREC + 2];  /* LSN -> id + 1 */
    uint64_t failed_id[NREC + 2]; /* LSN -> id + 1 of the first failed append with it */
    unsigned acked;
} outcome_t;

/* Append NREC records in small concurrent groups until done; failures after
 * the power went are expected (EIO in callbacks, TM_EFAILED refusals). */
static void scenario(const char *dir, uint64_t seed, outcome_t *out, uint8_t *buf)
{
    jnl_options_t o = {.segment_size = SEG, .max_record = MAXREC_OPT, .retry_ms = 1, .io = &power_io};
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    if (rc != 0) {
        CHECK(rc == -EIO, "jnl_open: %s", tmt_errname(rc));
        return;
    }
    static tmt_req_t reqs[NREC];
    memset(reqs, 0, sizeof reqs);
    tmt_group_t g;
    tmt_group_init(&g);
    unsigned i = 0;
    while (i < NREC) {
        unsigned first = i, gs = 1 + (unsigned)(tmt_mix(seed, i) % 4);
        int sync_rc[4];
        for (unsigned k = 0; k < gs && i < NREC; k++, i++) {
            rec_bytes(seed, i, buf);
            reqs[i].id = i;
            sync_rc[k] = tmt_append(&g, &reqs[i], j, 1, buf, rec_len(seed, i), i % 3 == 0 ? JNL_APPEND_COMPRESS : 0);
            CHECK(sync_rc[k] == 0 || sync_rc[k] == TM_EFAILED, "jnl_append: %s", tmt_errname(sync_rc[k]));
        }
        CHECK(tmt_group_wait(&g, WAIT_MS), "callbacks did not run");
        for (unsigned k = first; k < i; k++) {
            if (sync_rc[k - first] != 0)
                continue;
            uint64_t l = reqs[k].req.lsn;
            CHECK(reqs[k].calls == 1 && l >= 1 && l <= NREC, "append %u: %u callbacks, LSN %llu", k, reqs[k].calls,
                  ULL(l));
            if (reqs[k].status == 0) {
                CHECK(out->acked_id[l] == 0, "LSN %llu acknowledged twice", ULL(l));
                out->acked_id[l] = k + 1;
                out->acked++;
            } else {
                CHECK(reqs[k].status == -EIO, "callback status %s", tmt_errname(reqs[k].status));
                if (out->failed_id[l] == 0)
                    out->failed_id[l] = k + 1;
            }
        }
    }
    jnl_close(j);
    jnl_destroy(j);
    tmt_group_destroy(&g);
}

static void verify(const char *dir, uint64_t seed, const outcome_t *out, uint8_t *buf)
{
    jnl_options_t o = {.segment_size = SEG, .max_record = MAXREC_OPT};
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    CHECK(rc == 0, "reopen after the power loss: %s; log:\n%s", tmt_errname(rc), tmt_log_text());
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    uint64_t max_acked = 0;
    for (uint64_t l = 1; l <= NREC; l++)
        if (out->acked_id[l])
            max_acked = l;
    CHECK(st.end_kind == JNL_END_CLEAN || st.end_kind == JNL_END_TORN ||
              (st.end_kind == JNL_END_EMPTY && max_acked == 0),
          "end_kind %d (%s)", st.end_kind, st.end_reason);
    tmt_rec_t *recs;
    size_t n = tmt_read_all(j, 0, &recs);
    CHECK(n >= max_acked, "%zu records after the power loss; acknowledged up to LSN %llu (end: %s at %llu:%llu)", n,
          ULL(max_acked), st.end_reason, ULL(st.end_pos.seg), ULL(st.end_pos.off));
    for (size_t k = 0; k < n; k++) {
        uint64_t l = recs[k].lsn;
        CHECK(l == k + 1, "LSN %llu at place %zu", ULL(l), k + 1);
        uint64_t id1 = l <= max_acked ? out->acked_id[l] : (l <= NREC ? out->failed_id[l] : 0);
        CHECK(id1 != 0, "LSN %llu is there but was %s", ULL(l),
              l <= max_acked ? "never acknowledged (a gap before acknowledged records)" : "never in flight");
        rec_bytes(seed, id1 - 1, buf);
        CHECK(recs[k].len == rec_len(seed, id1 - 1) && memcmp(recs[k].data, buf, recs[k].len) == 0,
              "LSN %llu: not the bytes of append %llu", ULL(l), ULL(id1 - 1));
    }
    tmt_recs_free(recs, n);
    uint64_t lsn;
    rc = jnl_append_wait(j, 1, "after", 5, 0, &lsn);
    CHECK(rc == 0 && lsn == n + 1, "append after the power loss: %s, LSN %llu", tmt_errname(rc), ULL(lsn));
    jnl_close(j);
    jnl_destroy(j);
}

static struct {
    unsigned trials, torn, sectors, acked;
} sum;

/* The trial's folder, removed by the suite's fini if a check stops it. */
static char dir[PATH_MAX];

static void cleanup(void)
{
    tmt_rmtree(dir);
}

TestSuite(powerloss, .fini = cleanup);

static void run_trial(uint64_t seed, unsigned long total_calls)
{
    cur_seed = seed;
    tmt_mkdtemp(dir, "power");
    tmt_log_clear();
    static uint8_t buf[9001];
    static outcome_t out;
    memset(&out, 0, sizeof out);
    tmt_rng_t rng;
    tmt_rng_seed(&rng, tmt_mix(seed, 0xca11));
    cur_crash_at = 1 + tmt_rng_next(&rng) % total_calls;
    power_reset(cur_crash_at);
    scenario(dir, seed, &out, buf);
    sum.sectors += lose_power(dir, seed);
    power_reset(0);
    verify(dir, seed, &out, buf);
    sum.trials++;
    sum.acked += out.acked;
    tmt_rmtree(dir);
    dir[0] = '\0';
}

Test(powerloss, seeded, .timeout = 170)
{
    tmt_log_capture();
    tm_log_set_level(TM_LOG_WARN);
    static uint8_t buf[9001];
    static outcome_t out;

    /* A run without power loss: how many calls the scenario makes. */
    tmt_mkdtemp(dir, "power");
    cur_seed = BASE_SEED;
    cur_crash_at = 0;
    power_reset(0);
    scenario(dir, BASE_SEED, &out, buf);
    unsigned long total = P.calls;
    cr_assert_eq(out.acked, NREC, "every append is acknowledged without a power loss");
    power_reset(0);
    verify(dir, BASE_SEED, &out, buf);
    tmt_rmtree(dir);
    dir[0] = '\0';

    uint64_t one = tmt_env_u64("TIDEMARK_POWERLOSS_SEED", 0);
    if (one != 0) {
        run_trial(one, total);
        return;
    }
    uint64_t trials = tmt_env_u64("TIDEMARK_POWERLOSS_TRIALS", DEFAULT_TRIALS);
    for (uint64_t t = 0; t < trials; t++)
        run_trial(BASE_SEED + t, total);
    cr_log_info("%u trials over %lu calls: %u records acknowledged before the power went, %u sectors lost or "
                "garbled",
                sum.trials, total, sum.acked, sum.sectors);
}
