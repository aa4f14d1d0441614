/*
 * Crash test (after SQLite's walcrash.test): a child process appends records
 * of seeded random sizes, several in flight at once, and reports each LSN on a
 * pipe as soon as its callback says it is durable. The parent kills the child
 * with SIGKILL at a seeded moment, reopens the journal and checks that every
 * reported LSN is there byte for byte, that LSNs run from 1 without a gap,
 * that recovery saw a clean end or a torn tail (never an error), and that the
 * journal goes on working across another reopen.
 *
 * Payloads are derived from (seed, lsn): the child is the only appender of a
 * fresh journal, so its k-th append gets LSN k and the parent can regenerate
 * every record.
 *
 *   TIDEMARK_CRASH_TRIALS=N   run N trials (default 50)
 *   TIDEMARK_CRASH_SEED=S     run the one trial with seed S (printed on failure)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "base/err.h"
#include "journal/journal.h"
#include "support/tmt.h"
#include "support/tmt_jnl.h"

#define CRASH_SEG (1u << 20)
#define INFLIGHT 8
#define MAX_PAYLOAD (256u << 10)
#define CHILD_LIMIT 100000u
#define DEFAULT_TRIALS 50
#define BASE_SEED 0x7e5da11ull

/* What record `lsn` of a trial looks like. */
typedef struct spec {
    size_t len;
    uint8_t type;
    bool soft;     /* compressible bytes */
    bool compress; /* JNL_APPEND_COMPRESS */
} spec_t;

static spec_t spec_of(uint64_t seed, uint64_t lsn)
{
    tmt_rng_t r;
    tmt_rng_seed(&r, tmt_mix(seed ^ 0x5bec, lsn));
    spec_t s;
    uint64_t cls = tmt_rng_next(&r) % 10;
    if (cls < 4)
        s.len = (size_t)tmt_rng_range(&r, 1, 256);
    else if (cls < 8)
        s.len = (size_t)tmt_rng_range(&r, 257, 16 << 10);
    else
        s.len = (size_t)tmt_rng_range(&r, 16 << 10, MAX_PAYLOAD);
    s.soft = tmt_rng_next(&r) % 2 == 0;
    s.compress = tmt_rng_next(&r) % 3 != 0;
    s.type = (uint8_t)(1 + lsn % 255);
    return s;
}

static void payload_of(uint64_t seed, uint64_t lsn, const spec_t *s, uint8_t *buf)
{
    tmt_fill(buf, s->len, seed, lsn, s->soft);
}

/* ---- the child ----------------------------------------------------------- */

typedef struct child {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned busy;
    int wfd;
    jnl_append_req_t reqs[INFLIGHT];
    bool used[INFLIGHT];
} child_t;

static void child_done(jnl_append_req_t *req, int status)
{
    child_t *c = req->data;
    if (status != 0)
        _exit(20); /* no fault is injected here: any failure is a bug */
    uint64_t lsn = req->lsn;
    if (write(c->wfd, &lsn, sizeof lsn) != (ssize_t)sizeof lsn)
        _exit(21);
    pthread_mutex_lock(&c->mu);
    c->used[req - c->reqs] = false;
    c->busy--;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void child_main(const char *dir, uint64_t seed, int wfd)
{
    tm_log_set_level(TM_LOG_WARN);
    static child_t c;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    c.wfd = wfd;
    jnl_options_t o = {.segment_size = CRASH_SEG, .max_record = MAX_PAYLOAD};
    jnl_t *j = NULL;
    if (jnl_open(dir, &o, &j) != 0)
        _exit(10);
    uint8_t *buf = malloc(MAX_PAYLOAD);
    if (buf == NULL)
        _exit(11);
    for (uint64_t k = 1; k <= CHILD_LIMIT; k++) {
        /* Build before taking a slot: the payload is copied by jnl_append. */
        spec_t s = spec_of(seed, k);
        payload_of(seed, k, &s, buf);
        pthread_mutex_lock(&c.mu);
        while (c.busy == INFLIGHT)
            pthread_cond_wait(&c.cv, &c.mu);
        unsigned slot = 0;
        while (c.used[slot])
            slot++;
        c.used[slot] = true;
        c.busy++;
        pthread_mutex_unlock(&c.mu);
        jnl_append_req_t *req = &c.reqs[slot];
        req->data = &c;
        jnl_buf_t b = {buf, s.len};
        int rc = jnl_append(j, req, s.type, &b, 1, s.compress ? JNL_APPEND_COMPRESS : 0, child_done);
        if (rc != 0)
            _exit(12);
        if (req->lsn != k)
            _exit(13);
    }
    jnl_close(j);
    _exit(0);
}

/* ---- the parent ------------------------------------------------------------ */

#define CHECK(cond, ...) cr_assert((cond), "seed %llu (rerun: TIDEMARK_CRASH_SEED=%llu): %s", ULL(seed), ULL(seed), \
                                   tmt__fmt(__VA_ARGS__))
#define ULL(x) ((unsigned long long)(x))

static char tmt__msg[512];
static const char *tmt__fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tmt__fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmt__msg, sizeof tmt__msg, fmt, ap);
    va_end(ap);
    return tmt__msg;
}

/* Read one LSN; false at end of file. */
static bool read_ack(int fd, uint64_t *lsn)
{
    uint8_t *p = (uint8_t *)lsn;
    size_t got = 0;
    while (got < sizeof *lsn) {
        ssize_t n = read(fd, p + got, sizeof *lsn - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

/* Every record 1..durable is the one the child appended; returns durable. */
static uint64_t verify_log(uint64_t seed, jnl_t *j, uint8_t *buf)
{
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    jnl_reader_t *r;
    int rc = jnl_reader_open(j, 0, &r);
    CHECK(rc == 0, "reader_open: %s", tmt_errname(rc));
    uint64_t want = 1;
    for (;;) {
        jnl_record_t rec;
        rc = jnl_reader_next(r, &rec);
        if (rc == -EAGAIN)
            break;
        CHECK(rc == 0, "reader at LSN %llu: %s", ULL(want), tmt_errname(rc));
        CHECK(rec.lsn == want, "LSN %llu where %llu was due", ULL(rec.lsn), ULL(want));
        spec_t s = spec_of(seed, want);
        CHECK(rec.len == s.len, "LSN %llu length %u, want %zu", ULL(want), rec.len, s.len);
        CHECK(rec.type == s.type, "LSN %llu type %u, want %u", ULL(want), rec.type, s.type);
        payload_of(seed, want, &s, buf);
        CHECK(memcmp(rec.data, buf, s.len) == 0, "LSN %llu bytes differ", ULL(want));
        want++;
    }
    jnl_reader_close(r);
    CHECK(want - 1 == st.durable_lsn, "read up to %llu, durable_lsn %llu", ULL(want - 1), ULL(st.durable_lsn));
    CHECK(st.next_lsn == st.durable_lsn + 1, "next_lsn %llu after durable %llu", ULL(st.next_lsn),
          ULL(st.durable_lsn));
    return st.durable_lsn;
}

/* Across trials, to show what the kills hit (printed with --verbose). */
static struct {
    unsigned trials, clean, torn, empty, unacked_kept;
    uint64_t records, max_seg;
} sum;

/* The trial's folder, removed by the suite's fini if a check stops it. */
static char dir[PATH_MAX];

static void cleanup(void)
{
    tmt_rmtree(dir);
}

TestSuite(crash, .fini = cleanup);

static void run_trial(uint64_t seed)
{
    tmt_mkdtemp(dir, "crash");
    tmt_log_clear();
    tmt_rng_t rng;
    tmt_rng_seed(&rng, tmt_mix(seed, 0xdead));
    uint64_t kill_after; /* acknowledged LSNs to see before the kill */
    uint64_t delay_us;
    if (tmt_rng_next(&rng) % 4 == 0) {
        kill_after = 0;
        delay_us = tmt_rng_range(&rng, 0, 20000);
    } else {
        kill_after = tmt_rng_range(&rng, 1, 120);
        delay_us = tmt_rng_next(&rng) % 2 ? tmt_rng_range(&rng, 0, 2000) : 0;
    }

    int fds[2];
    CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        child_main(dir, seed, fds[1]);
        _exit(99);
    }
    close(fds[1]);

    static bool acked[CHILD_LIMIT + 1];
    memset(acked, 0, sizeof acked);
    uint64_t nacks = 0, max_acked = 0, lsn;
    bool early_eof = false;
    while (nacks < kill_after) {
        if (!read_ack(fds[0], &lsn)) {
            early_eof = true;
            break;
        }
        CHECK(lsn >= 1 && lsn <= CHILD_LIMIT && !acked[lsn], "bad or repeated ack %llu", ULL(lsn));
        acked[lsn] = true;
        nacks++;
        if (lsn > max_acked)
            max_acked = lsn;
    }
    if (delay_us > 0) {
        struct timespec ts = {(time_t)(delay_us / 1000000), (long)(delay_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    /* Acks written before the kill count too. */
    while (read_ack(fds[0], &lsn)) {
        CHECK(lsn >= 1 && lsn <= CHILD_LIMIT && !acked[lsn], "bad or repeated ack %llu", ULL(lsn));
        acked[lsn] = true;
        nacks++;
        if (lsn > max_acked)
            max_acked = lsn;
    }
    close(fds[0]);
    CHECK(!early_eof && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
          "the child stopped on its own (exit %d, signal %d) after %llu acks", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
          WIFSIGNALED(status) ? WTERMSIG(status) : 0, ULL(nacks));

    uint8_t *buf = malloc(MAX_PAYLOAD);
    jnl_options_t o = {.segment_size = CRASH_SEG, .max_record = MAX_PAYLOAD};
    jnl_t *j = NULL;
    int rc = jnl_open(dir, &o, &j);
    CHECK(rc == 0, "reopen after the kill: %s; log:\n%s", tmt_errname(rc), tmt_log_text());
    jnl_stats_t st;
    jnl_get_stats(j, &st);
    CHECK(st.end_kind == JNL_END_CLEAN || st.end_kind == JNL_END_TORN ||
              (st.end_kind == JNL_END_EMPTY && max_acked == 0),
          "end_kind %d (%s)", st.end_kind, st.end_reason);
    CHECK(st.durable_lsn >= max_acked, "durable_lsn %llu below the acknowledged %llu (%s at %llu:%llu)",
          ULL(st.durable_lsn), ULL(max_acked), st.end_reason, ULL(st.end_pos.seg), ULL(st.end_pos.off));
    uint64_t durable = verify_log(seed, j, buf);
    sum.trials++;
    sum.clean += st.end_kind == JNL_END_CLEAN;
    sum.torn += st.end_kind == JNL_END_TORN;
    sum.empty += st.end_kind == JNL_END_EMPTY;
    sum.unacked_kept += durable > max_acked;
    sum.records += durable;
    if (st.end_pos.seg > sum.max_seg)
        sum.max_seg = st.end_pos.seg;

    /* The journal goes on: more appends, a clean close, the same log again. */
    for (uint64_t k = durable + 1; k <= durable + 5; k++) {
        spec_t s = spec_of(seed, k);
        payload_of(seed, k, &s, buf);
        uint64_t got = 0;
        rc = jnl_append_wait(j, s.type, buf, s.len, s.compress ? JNL_APPEND_COMPRESS : 0, &got);
        CHECK(rc == 0, "append after recovery: %s", tmt_errname(rc));
        CHECK(got == k, "append after recovery got LSN %llu, want %llu", ULL(got), ULL(k));
    }
    jnl_close(j);
    jnl_destroy(j);
    rc = jnl_open(dir, &o, &j);
    CHECK(rc == 0, "second reopen: %s; log:\n%s", tmt_errname(rc), tmt_log_text());
    jnl_get_stats(j, &st);
    CHECK(st.end_kind == JNL_END_CLEAN, "second reopen end_kind %d (%s)", st.end_kind, st.end_reason);
    CHECK(verify_log(seed, j, buf) == durable + 5, "second reopen lost records");
    jnl_close(j);
    jnl_destroy(j);
    free(buf);
    tmt_rmtree(dir);
    dir[0] = '\0';
}

Test(crash, seeded_kills, .timeout = 170)
{
    tmt_log_capture();
    uint64_t one = tmt_env_u64("TIDEMARK_CRASH_SEED", 0);
    if (one != 0) {
        run_trial(one);
        return;
    }
    uint64_t trials = tmt_env_u64("TIDEMARK_CRASH_TRIALS", DEFAULT_TRIALS);
    for (uint64_t t = 0; t < trials; t++)
        run_trial(BASE_SEED + t);
    cr_log_info("%u trials: %u clean ends, %u torn tails, %u empty; %u kept records past the last ack; "
                "%llu records recovered in all; up to %llu segments",
                sum.trials, sum.clean, sum.torn, sum.empty, sum.unacked_kept, ULL(sum.records), ULL(sum.max_seg));
}
